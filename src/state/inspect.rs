//! What the hand-run commands read of the state: where each conversation stands (status), a
//! summary (check), a conversation by its identifier (preview), and the one maintenance write,
//! prune. These read whole tables: they are run by a person, not by cron.

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{State, millis};
use crate::mail::thread;

/// Where a conversation stands, most urgent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Standing {
    /// An email the server refused permanently, no longer retried.
    Parked,
    /// An email that failed and is retried next run.
    Failed,
    /// An email decided and not sent yet.
    Pending,
    /// New messages no email covers yet: the visitor may still be typing.
    Waiting,
    /// Held back by the notification rules until the visitor writes more.
    Held,
    /// Emailed in the past week.
    Notified,
}

impl Standing {
    pub const ALL: [Standing; 6] =
        [Standing::Parked, Standing::Failed, Standing::Pending, Standing::Waiting, Standing::Held, Standing::Notified];

    pub fn name(self) -> &'static str {
        match self {
            Standing::Parked => "parked",
            Standing::Failed => "failed",
            Standing::Pending => "pending",
            Standing::Waiting => "waiting",
            Standing::Held => "held",
            Standing::Notified => "notified",
        }
    }
}

/// One conversation that is not simply settled, under its most urgent standing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRow {
    pub conversation_id: String,
    /// As the state learned it when the conversation was first judged; none before.
    pub bot_id: Option<String>,
    pub standing: Standing,
    pub last_activity: DateTime<Utc>,
    pub emails: u32,
    pub last_error: Option<String>,
}

/// What `check` says of a state file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub conversations: i64,
    pub waiting: i64,
    pub parked: i64,
}

impl State {
    /// Every conversation that is not simply settled (see `Standing`), most urgent first,
    /// then most recent; "notified" means an email sent since `since`.
    pub fn status_rows(&self, since: DateTime<Utc>) -> Result<Vec<StatusRow>> {
        let mut stmt = self.context(self.conn.prepare(
            "SELECT id, 'waiting', last_activity, emails, NULL, bot_id FROM conversations \
               WHERE last_message > covered_through AND last_message > held_through \
             UNION ALL SELECT id, 'held', last_activity, emails, NULL, bot_id FROM conversations \
               WHERE held_through > covered_through AND last_message <= held_through \
             UNION ALL SELECT o.conversation_id, CASE WHEN o.status = 'parked' THEN 'parked' \
                 WHEN o.attempts > 0 THEN 'failed' ELSE 'pending' END, coalesce(c.last_activity, o.created_at), \
                 coalesce(c.emails, 0), o.last_error, c.bot_id \
               FROM outbox o LEFT JOIN conversations c ON c.id = o.conversation_id \
               WHERE o.status IN ('pending', 'parked') \
             UNION ALL SELECT o.conversation_id, 'notified', c.last_activity, c.emails, NULL, c.bot_id \
               FROM outbox o JOIN conversations c ON c.id = o.conversation_id WHERE o.status = 'sent' AND o.sent_at >= ?1",
        ))?;
        let raw = stmt.query_map([since.timestamp_millis()], |r| {
            let standing: String = r.get(1)?;
            Ok(StatusRow {
                conversation_id: r.get(0)?,
                standing: Standing::ALL.into_iter().find(|s| s.name() == standing).unwrap_or(Standing::Waiting),
                last_activity: millis(r.get(2)?),
                emails: r.get(3)?,
                last_error: r.get(4)?,
                bot_id: r.get(5)?,
            })
        });
        let mut by_id: std::collections::HashMap<String, StatusRow> = std::collections::HashMap::new();
        for row in self.context(raw)? {
            let row = self.context(row)?;
            match by_id.get(&row.conversation_id) {
                Some(seen) if seen.standing <= row.standing => {}
                _ => {
                    by_id.insert(row.conversation_id.clone(), row);
                }
            }
        }
        let mut rows: Vec<StatusRow> = by_id.into_values().collect();
        rows.sort_by(|a, b| a.standing.cmp(&b.standing).then(b.last_activity.cmp(&a.last_activity)));
        Ok(rows)
    }

    pub fn summary(&self) -> Result<Summary> {
        self.context(self.conn.query_row(
            "SELECT (SELECT count(*) FROM conversations), \
             (SELECT count(*) FROM outbox WHERE status = 'pending'), \
             (SELECT count(*) FROM outbox WHERE status = 'parked')",
            [],
            |r| Ok(Summary { conversations: r.get(0)?, waiting: r.get(1)?, parked: r.get(2)? }),
        ))
    }

    /// The conversation whose identifier (the one in its subject) is `identifier`. A scan of
    /// the conversations: for commands run by hand.
    pub fn find_by_identifier(&self, identifier: &str) -> Result<Option<String>> {
        let mut stmt = self.context(self.conn.prepare("SELECT id FROM conversations"))?;
        for id in self.context(stmt.query_map([], |r| r.get::<_, String>(0)))? {
            let id = self.context(id)?;
            if thread::identifier(&id) == identifier {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// Deletes conversations whose every message is covered or held back, idle since before
    /// `before`, with no email waiting, and their email records. Returns (conversations, emails)
    /// deleted. A maintenance step: it reads the whole conversations table.
    pub fn prune(&mut self, before: DateTime<Utc>) -> Result<(usize, usize)> {
        self.atomically(|tx| {
            tx.0.execute_batch(
                "CREATE TEMP TABLE IF NOT EXISTS settled (id TEXT PRIMARY KEY) WITHOUT ROWID; DELETE FROM settled;",
            )?;
            tx.0.execute(
                "INSERT INTO settled SELECT id FROM conversations c \
                 WHERE last_message <= max(covered_through, held_through) AND last_activity < ?1 AND NOT EXISTS \
                 (SELECT 1 FROM outbox o WHERE o.conversation_id = c.id AND o.status = 'pending')",
                [before.timestamp_millis()],
            )?;
            let emails = tx.0.execute("DELETE FROM outbox WHERE conversation_id IN settled", [])?;
            let conversations = tx.0.execute("DELETE FROM conversations WHERE id IN settled", [])?;
            Ok((conversations, emails))
        })
    }
}
