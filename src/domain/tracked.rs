//! A conversation's progress between runs, as the state keeps it and a run folds new messages
//! into it: what the classifier judges.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::Activity;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_790_000_000 + minute * 60, 0).unwrap()
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
}
