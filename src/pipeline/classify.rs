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
    /// The source's chats have a last step to reach (`Source::has_last_step`): a chat that
    /// reached it is judged at once. An LLM chat has none: it is judged only once quiet.
    pub last_step: bool,
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
    let quiet = rules.now - c.last_activity >= rules.abandon_after;
    if !rules.last_step {
        // An LLM chat: never judged while active, even after a `complete_on` match (the
        // visitor may ask more); once quiet, finished if a message since the last email matched.
        return match (quiet, c.ended, c.emails) {
            (false, _, _) => Decision::Wait,
            (true, true, _) => Decision::Notify(ChatState::Completed),
            (true, false, 0) => Decision::Notify(ChatState::Ended),
            (true, false, _) => Decision::Notify(ChatState::Resumed),
        };
    }
    if c.ended {
        return Decision::Notify(ChatState::Completed);
    }
    if quiet {
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
        Timing { now: at(now_minute), abandon_after: TimeDelta::minutes(30), baseline_before: None, last_step: true }
    }

    /// A source whose chats have no last step (an LLM bot's).
    fn llm(now_minute: i64) -> Timing {
        Timing { last_step: false, ..rules(now_minute) }
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
    fn decision_table_without_a_last_step() {
        // (last_message, last_activity minute, ended (a complete_on match not yet covered),
        //  covered_through, emails, now minute, expected)
        let table = [
            (5, 0, false, 5, 0, 100, Nothing),           // all covered
            (5, 0, true, 5, 1, 100, Nothing),            // covered, whatever matched
            (5, 0, false, 0, 0, 29, Wait),               // still chatting
            (5, 0, true, 0, 0, 1, Wait),                 // matched complete_on, but still active
            (5, 0, true, 0, 0, 29, Wait),                // ... up to the edge of abandon_after
            (5, 0, true, 0, 0, 30, Notify(Completed)),   // quiet after a match: completed
            (5, 0, false, 0, 0, 30, Notify(Ended)),      // exactly abandon_after quiet: ended
            (5, 0, false, 0, 0, 31, Notify(Ended)),      // never Abandoned
            (9, 40, false, 5, 1, 69, Wait),              // came back, still chatting
            (9, 40, false, 5, 1, 70, Notify(Resumed)),   // came back and went quiet again
            (9, 40, true, 5, 1, 41, Wait),               // came back and matched, still active
            (9, 40, true, 5, 1, 70, Notify(Completed)),  // came back, matched, went quiet
            (9, 40, true, 5, 2, 500, Notify(Completed)), // after two earlier emails
            (9, 50, false, 5, 0, 80, Notify(Ended)),     // baseline-covered history, then new activity
        ];
        for (i, (last_message, activity, ended, covered_through, emails, now, expected)) in
            table.into_iter().enumerate()
        {
            let c = Tracked { last_message, last_activity: at(activity), ended, covered_through, emails };
            assert_eq!(classify(&c, &llm(now)), expected, "row {i}: {c:?} at minute {now}");
        }
        // The first run's baseline applies the same.
        let old = Tracked { last_message: 3, last_activity: at(0), ended: true, covered_through: 0, emails: 0 };
        assert_eq!(classify(&old, &Timing { baseline_before: Some(at(50)), ..llm(120) }), Baseline);
    }

    #[test]
    fn an_llm_chat_gives_ended_then_resumed_then_completed() {
        // Asks about prices and goes quiet; comes back the next day; comes back again and the
        // bot books the demo (complete_on), then the visitor says thanks and goes.
        let mut c = Tracked { last_message: 4, last_activity: at(0), ended: false, covered_through: 0, emails: 0 };
        let mut sent = Vec::new();
        for (now, new_message) in [
            (10, None),
            (40, None),
            (1440, Some((8, false))),
            (1460, None),
            (1470, None),
            (3000, Some((12, true))),
            (3001, Some((13, false))),
            (3020, None),
            (3031, None),
            (4000, None),
        ] {
            if let Some((id, ends)) = new_message {
                c.last_message = id;
                c.last_activity = at(now);
                c.ended |= ends;
            }
            if let Notify(state) = classify(&c, &llm(now)) {
                sent.push((now, state));
                c.covered_through = c.last_message;
                c.ended = false;
                c.emails += 1;
            }
        }
        assert_eq!(sent, vec![(40, Ended), (1470, Resumed), (3031, Completed)]);
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
