//! The decision at the heart of a run: which conversations reached a new state. Pure: plain
//! data in, a decision out, so every rule is a row in a table test.

use chrono::{DateTime, TimeDelta, Utc};

use crate::domain::{ChatState, Tracked};

#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub now: DateTime<Utc>,
    pub abandon_after: TimeDelta,
    /// On a first run without --backfill: conversations idle since before this instant are
    /// recorded as covered without an email, so switching the tool on does not flood the inbox.
    pub baseline_before: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Every message is covered already.
    Nothing,
    /// The visitor may still be typing: look again next run.
    Wait,
    /// History from before the tool was switched on: covered, no email.
    Baseline,
    Notify(ChatState),
}

pub fn classify(c: &Tracked, rules: &Timing) -> Decision {
    if !c.has_uncovered() {
        return Decision::Nothing;
    }
    if rules.baseline_before.is_some_and(|horizon| c.last_activity < horizon) {
        return Decision::Baseline;
    }
    if c.ended {
        return Decision::Notify(ChatState::Completed);
    }
    if rules.now - c.last_activity >= rules.abandon_after {
        return Decision::Notify(if c.emails == 0 { ChatState::Abandoned } else { ChatState::Resumed });
    }
    Decision::Wait
}

#[cfg(test)]
mod tests {
    use super::*;
    use ChatState::*;
    use Decision::*;

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000 + minute * 60, 0).unwrap()
    }

    fn rules(now_minute: i64) -> Timing {
        Timing { now: at(now_minute), abandon_after: TimeDelta::minutes(30), baseline_before: None }
    }

    #[test]
    fn decision_table() {
        // (last_message, last_activity minute, ended, covered_through, emails, now minute, expected)
        let table = [
            (5, 0, false, 5, 0, 100, Nothing),          // all covered
            (5, 0, false, 5, 2, 100, Nothing),          // all covered after emails
            (5, 0, true, 0, 0, 1, Notify(Completed)),   // finished: no need to wait for idleness
            (5, 0, false, 0, 0, 29, Wait),              // may still be typing
            (5, 0, false, 0, 0, 30, Notify(Abandoned)), // exactly abandon_after idle
            (5, 0, false, 0, 0, 31, Notify(Abandoned)),
            (9, 0, false, 5, 1, 29, Wait),              // came back, still typing
            (9, 0, false, 5, 1, 30, Notify(Resumed)),   // came back and left again
            (9, 0, true, 5, 1, 0, Notify(Completed)),   // came back and finished
            (9, 0, true, 5, 2, 500, Notify(Completed)), // finished after two earlier emails
            (9, 50, false, 5, 0, 60, Wait),             // baseline-covered history, then new activity
            (9, 50, false, 5, 0, 80, Notify(Abandoned)),
        ];
        for (i, (last_message, activity, ended, covered_through, emails, now, expected)) in
            table.into_iter().enumerate()
        {
            let c = Tracked { last_message, last_activity: at(activity), ended, covered_through, emails };
            assert_eq!(classify(&c, &rules(now)), expected, "row {i}: {c:?} at minute {now}");
        }
    }

    #[test]
    fn first_run_baseline_covers_only_old_history() {
        let old = Tracked { last_message: 3, last_activity: at(0), ended: true, covered_through: 0, emails: 0 };
        let recent = Tracked { last_activity: at(100), ..old.clone() };
        let r = Timing { baseline_before: Some(at(50)), ..rules(120) };
        assert_eq!(classify(&old, &r), Baseline);
        assert_eq!(classify(&recent, &r), Notify(Completed));
        let covered = Tracked { covered_through: 3, ..old };
        assert_eq!(classify(&covered, &r), Nothing);
    }

    #[test]
    fn the_lead_path_gives_exactly_two_emails() {
        // The visitor gives an email and leaves; the next day comes back and finishes.
        let mut c = Tracked { last_message: 4, last_activity: at(0), ended: false, covered_through: 0, emails: 0 };
        let mut sent = Vec::new();
        for (now, new_message) in
            [(10, None), (40, None), (41, None), (1440, Some((8, true))), (1441, None), (2000, None)]
        {
            if let Some((id, ends)) = new_message {
                c.last_message = id;
                c.last_activity = at(now);
                c.ended |= ends;
            }
            if let Notify(state) = classify(&c, &rules(now)) {
                sent.push(state);
                c.covered_through = c.last_message;
                c.ended = false;
                c.emails += 1;
            }
        }
        assert_eq!(sent, vec![Abandoned, Completed]);
    }

    #[test]
    fn state_names_round_trip() {
        for s in ChatState::ALL {
            assert_eq!(ChatState::parse(s.as_str()), Some(s));
        }
        assert_eq!(ChatState::parse("other"), None);
    }
}
