//! The decision at the heart of a run: which conversations reached a new state. Pure: plain
//! data in, a decision out, so every rule is a row in a table test.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};

use crate::domain::{Activity, ChatState};

/// What the notifier remembers of one conversation between runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    /// Highest message id read from the export.
    pub last_message: i64,
    /// Latest `sent_at` among the messages read.
    pub last_activity: DateTime<Utc>,
    /// A message not yet covered by an email is the bot's end_conversation step.
    pub ended: bool,
    /// Highest message id covered by an email (or by the first run's baseline); 0 for none.
    pub covered_through: i64,
    /// Emails decided for this conversation so far.
    pub emails: u32,
}

impl Tracked {
    pub fn has_uncovered(&self) -> bool {
        self.last_message > self.covered_through
    }
}

/// What one batch of new messages says about one conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub last_message: i64,
    pub last_activity: DateTime<Utc>,
    pub ended: bool,
}

/// Folds a batch of new messages into one `Seen` per conversation.
pub fn fold(batch: &[Activity]) -> HashMap<&str, Seen> {
    let mut seen: HashMap<&str, Seen> = HashMap::new();
    for a in batch {
        seen.entry(a.conversation_id.as_str())
            .and_modify(|s| {
                s.last_message = s.last_message.max(a.id);
                s.last_activity = s.last_activity.max(a.sent_at);
                s.ended |= a.ends;
            })
            .or_insert(Seen { last_message: a.id, last_activity: a.sent_at, ended: a.ends });
    }
    seen
}

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
    fn fold_keeps_the_latest_of_each_conversation() {
        let a = |id, conv: &str, minute, ends| Activity {
            id,
            conversation_id: conv.into(),
            sent_at: at(minute),
            author: crate::domain::Author::Bot,
            ends,
        };
        // Timestamps out of order: the latest one counts, not the last read.
        let batch = [a(1, "x", 5, false), a(2, "y", 1, false), a(3, "x", 4, true), a(4, "x", 6, false)];
        let seen = fold(&batch);
        assert_eq!(seen.len(), 2);
        assert_eq!(seen["x"], Seen { last_message: 4, last_activity: at(6), ended: true });
        assert_eq!(seen["y"], Seen { last_message: 2, last_activity: at(1), ended: false });
    }

    #[test]
    fn state_names_round_trip() {
        for s in [Completed, Abandoned, Resumed] {
            assert_eq!(ChatState::parse(s.as_str()), Some(s));
        }
        assert_eq!(ChatState::parse("other"), None);
    }
}
