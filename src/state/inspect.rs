//! What the hand-run commands read of the state: where each conversation stands (status), a
//! summary (check), a conversation by its identifier (preview), and the one maintenance write,
//! prune. These read whole tables: they are run by a person, not by cron.

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::db::{Bind, Row, args};
use super::{State, millis};
use crate::domain::thread;

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

/// How many conversations stand where, and the most urgent of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusPage {
    pub counts: Vec<(Standing, usize)>,
    pub rows: Vec<StatusRow>,
}

/// What `check` says of a state file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub conversations: i64,
    pub waiting: i64,
    pub parked: i64,
}

/// Conversations with messages no email covers, or held back by the rules.
const OPEN: &str = "last_message > covered_through AND last_message > held_through";
const HELD: &str = "held_through > covered_through AND last_message <= held_through";
/// The conversations with an email waiting or parked: they stand there, whatever else holds.
/// Its condition is `outbox_waiting`'s, word for word, so that the index serves it.
const QUEUED_IDS: &str = "SELECT conversation_id FROM outbox WHERE status IN ('pending', 'parked')";

/// How many conversations meet `condition` and have no email queued: all of them, as the
/// writes keep their `tally` (migration 13), less those with an email queued, found from the
/// queued emails (`outbox_waiting`). Counting 200,000 open conversations' index entries was
/// most of what status took.
pub(super) fn count_sql(condition: &str, tally: &str) -> String {
    format!(
        "SELECT (SELECT {tally} FROM tallies) \
         - (SELECT count(*) FROM conversations WHERE {condition} AND id IN ({QUEUED_IDS}))"
    )
}

pub(super) const WAITING_EMAILS_SQL: &str = "SELECT o.conversation_id, CASE WHEN o.status = 'parked' THEN 'parked' \
     WHEN o.attempts > 0 THEN 'failed' ELSE 'pending' END, coalesce(c.last_activity, o.created_at), \
     coalesce(c.emails, 0), o.last_error, c.bot_id FROM outbox o LEFT JOIN conversations c ON c.id = o.conversation_id \
     WHERE o.status IN ('pending', 'parked')";

/// The standings counted from a tally: each one's condition and tally.
pub(super) const COUNTED: [(Standing, &str, &str); 2] =
    [(Standing::Waiting, OPEN, "open"), (Standing::Held, HELD, "held")];

fn status_row(r: &Row) -> Result<StatusRow> {
    let standing: String = r.get(1)?;
    Ok(StatusRow {
        conversation_id: r.get(0)?,
        standing: Standing::ALL.into_iter().find(|s| s.name() == standing).unwrap_or(Standing::Waiting),
        last_activity: millis(r.get(2)?),
        emails: r.get(3)?,
        last_error: r.get(4)?,
        bot_id: r.get(5)?,
    })
}

/// Each conversation once, under its most urgent standing; most urgent first, then most recent.
fn dedupe(raw: Vec<StatusRow>) -> Vec<StatusRow> {
    let mut by_id: std::collections::HashMap<String, StatusRow> = std::collections::HashMap::new();
    for row in raw {
        match by_id.get(&row.conversation_id) {
            Some(seen) if seen.standing <= row.standing => {}
            _ => {
                by_id.insert(row.conversation_id.clone(), row);
            }
        }
    }
    let mut rows: Vec<StatusRow> = by_id.into_values().collect();
    rows.sort_by(|a, b| a.standing.cmp(&b.standing).then(b.last_activity.cmp(&a.last_activity)));
    rows
}

impl State {
    /// Every conversation that is not simply settled (see `Standing`), most urgent first,
    /// then most recent; "notified" means an email sent since `since`.
    pub fn status_rows(&self, since: DateTime<Utc>) -> Result<Vec<StatusRow>> {
        let sql = format!(
            "SELECT id, 'waiting', last_activity, emails, NULL, bot_id FROM conversations WHERE {OPEN} \
             UNION ALL SELECT id, 'held', last_activity, emails, NULL, bot_id FROM conversations WHERE {HELD} \
             UNION ALL {WAITING_EMAILS_SQL} \
             UNION ALL SELECT o.conversation_id, 'notified', c.last_activity, c.emails, NULL, c.bot_id \
               FROM outbox o JOIN conversations c ON c.id = o.conversation_id WHERE o.status = 'sent' AND o.sent_at >= ?1",
        );
        let raw = self.conn.query_map(&sql, args![since.timestamp_millis()], status_row);
        Ok(dedupe(self.context(raw)?))
    }

    /// What `status` shows by default: how many conversations stand where (each under its most
    /// urgent standing, as `status_rows` counts them) and the `limit` most urgent, without
    /// reading every one: counts through the partial indexes, the rows listed a range of each.
    pub fn status_page(&self, since: DateTime<Utc>, limit: usize) -> Result<StatusPage> {
        let since = since.timestamp_millis();
        let count = |sql: &str, params: &[&dyn Bind]| -> Result<usize> { self.context(self.conn.one(sql, params)) };
        // The sent emails of the week whose conversations stand nowhere more urgent.
        let notified = format!(
            "FROM outbox o JOIN conversations c ON c.id = o.conversation_id WHERE o.status = 'sent' \
             AND o.sent_at >= ?1 AND NOT ({OPEN}) AND NOT ({HELD}) AND c.id NOT IN ({QUEUED_IDS})"
        );
        let mut rows = dedupe(self.status_query(WAITING_EMAILS_SQL, &[])?);
        let mut counts: Vec<(Standing, usize)> = [Standing::Parked, Standing::Failed, Standing::Pending]
            .map(|s| (s, rows.iter().filter(|r| r.standing == s).count()))
            .into();
        for (standing, condition, tally) in COUNTED {
            counts.push((standing, count(&count_sql(condition, tally), &[])?));
        }
        counts.push((
            Standing::Notified,
            count(&format!("SELECT count(DISTINCT o.conversation_id) {notified}"), &[&since])?,
        ));

        // Each listing names its index: the ended conversations are few (each run emails them),
        // but the planner would rather scan the open index, which covers more columns, whole.
        let listed = |standing: &str, index: &str, filter: &str, order: &str| {
            format!(
                "SELECT id, '{standing}', last_activity, emails, NULL, bot_id FROM conversations INDEXED BY {index} \
                 WHERE {filter} AND id NOT IN ({QUEUED_IDS}) ORDER BY {order} LIMIT ?1"
            )
        };
        let left = |rows: &Vec<StatusRow>| limit.saturating_sub(rows.len()) as i64;
        // Waiting: the ended ones (few: each run emails them) and the idle index read backwards.
        let mut open = self.status_query(
            &listed("waiting", "conversations_ended", &format!("{OPEN} AND ended"), "last_activity DESC"),
            &[&left(&rows)],
        )?;
        open.extend(self.status_query(
            &listed("waiting", "conversations_idle", &format!("{OPEN} AND NOT ended"), "last_activity DESC, id DESC"),
            &[&left(&rows)],
        )?);
        open.sort_by_key(|r| std::cmp::Reverse(r.last_activity));
        rows.extend(open);
        rows.truncate(limit);
        rows.extend(
            self.status_query(&listed("held", "conversations_held", HELD, "last_activity DESC"), &[&left(&rows)])?,
        );
        let sql = format!(
            "SELECT o.conversation_id, 'notified', max(c.last_activity), max(c.emails), NULL, max(c.bot_id) \
             {notified} GROUP BY o.conversation_id ORDER BY max(c.last_activity) DESC LIMIT ?2"
        );
        rows.extend(self.status_query(&sql, &[&since, &left(&rows)])?);
        rows.truncate(limit);
        Ok(StatusPage { counts, rows })
    }

    fn status_query(&self, sql: &str, params: &[&dyn Bind]) -> Result<Vec<StatusRow>> {
        self.context(self.conn.query_map(sql, params, status_row))
    }

    pub fn summary(&self) -> Result<Summary> {
        self.context(self.conn.query_row(
            "SELECT (SELECT count(*) FROM conversations), \
             (SELECT count(*) FROM outbox WHERE status = 'pending'), \
             (SELECT count(*) FROM outbox WHERE status = 'parked')",
            args![],
            |r| Ok(Summary { conversations: r.get(0)?, waiting: r.get(1)?, parked: r.get(2)? }),
        ))
    }

    /// The conversation whose identifier (the one in its subject) is `identifier`. A scan of
    /// the conversations: for commands run by hand.
    pub fn find_by_identifier(&self, identifier: &str) -> Result<Option<String>> {
        let ids = self.context(self.conn.query_map("SELECT id FROM conversations", args![], |r| r.get::<String>(0)))?;
        Ok(ids.into_iter().find(|id| thread::identifier(id) == identifier))
    }

    /// Deletes conversations whose every message is covered or held back, idle since before
    /// `before`, with no email or notification waiting (one held for a destination's digest
    /// too), and their email records. Returns (conversations, emails)
    /// deleted. A maintenance step: it reads the whole conversations table.
    pub fn prune(&mut self, before: DateTime<Utc>) -> Result<(usize, usize)> {
        self.atomically(|tx| {
            tx.0.batch(if tx.0.is_postgres() {
                "CREATE TEMP TABLE IF NOT EXISTS settled (id TEXT PRIMARY KEY) ON COMMIT DROP; DELETE FROM settled;"
            } else {
                "CREATE TEMP TABLE IF NOT EXISTS settled (id TEXT PRIMARY KEY) WITHOUT ROWID; DELETE FROM settled;"
            })?;
            tx.0.execute(
                "INSERT INTO settled SELECT id FROM conversations c \
                 WHERE last_message <= max(covered_through, held_through) AND last_activity < ?1 AND NOT EXISTS \
                 (SELECT 1 FROM outbox o WHERE o.conversation_id = c.id AND o.status = 'pending') AND NOT EXISTS \
                 (SELECT 1 FROM deliveries d WHERE d.conversation_id = c.id AND d.status IN ('pending', 'digest'))",
                args![before.timestamp_millis()],
            )?;
            tx.0.execute("DELETE FROM deliveries WHERE conversation_id IN (SELECT id FROM settled)", args![])?;
            tx.0.execute("DELETE FROM destination_threads WHERE conversation_id IN (SELECT id FROM settled)", args![])?;
            let mut emails =
                tx.0.execute("DELETE FROM outbox WHERE conversation_id IN (SELECT id FROM settled)", args![])?;
            let conversations =
                tx.0.execute("DELETE FROM conversations WHERE id IN (SELECT id FROM settled)", args![])?;
            // The notices sent before then (digests, summaries, alerts: their threads live in
            // `bots`), and what digests sent then listed.
            emails += tx.0.execute(
                "DELETE FROM outbox WHERE status = 'sent' AND sent_at < ?1 \
                 AND (conversation_id LIKE 'digest:%' OR conversation_id LIKE 'summary:%' \
                      OR conversation_id LIKE 'alert:%') \
                 AND conversation_id NOT IN (SELECT id FROM conversations)",
                args![before.timestamp_millis()],
            )?;
            tx.0.execute(
                "DELETE FROM digest_items WHERE sent_in IS NOT NULL AND listed_at < ?1",
                args![before.timestamp_millis()],
            )?;
            Ok((conversations, emails))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default view reads ranges and counts; it must say what reading everything says.
    #[test]
    fn the_status_page_agrees_with_the_full_read() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(&dir.path().join("state.sqlite")).unwrap();
        let at = |m: i64| 1_790_000_000_000 + m * 60_000;
        let conversation = "INSERT INTO conversations (id, last_message, last_activity, ended, covered_through, \
                            held_through, emails) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1)";
        // (id, last message, minute, ended, covered through, held through)
        let rows = [
            ("typing", 5, 50, false, 0, 0),
            ("ended", 5, 40, true, 0, 0),
            ("held", 5, 30, false, 0, 5),
            ("queued-and-open", 9, 60, false, 0, 0),
            ("notified", 5, 20, false, 5, 0),
            ("notified-then-typing", 9, 70, false, 5, 0),
            ("parked", 5, 10, false, 5, 0),
            ("old", 5, -20_000, false, 5, 0),
        ];
        for (id, last, minute, ended, covered, held) in rows {
            state
                .conn
                .execute(conversation, super::super::db::args![id, last, at(minute), ended, covered, held])
                .unwrap();
        }
        let outbox = "INSERT INTO outbox (conversation_id, state, covers_through, message_id, created_at, status, \
                      attempts, sent_at, mail_from, mail_to, mail_cc, subject) VALUES (?1, 'abandoned', 5, ?2, ?3, ?4, \
                      ?5, ?6, 'a@b.c', 'a@b.c', '', 's')";
        for (i, (id, status, attempts, sent)) in [
            ("queued-and-open", "pending", 1, None),
            ("notified", "sent", 1, Some(at(25))),
            ("notified-then-typing", "sent", 1, Some(at(26))),
            ("parked", "parked", 5, None),
            ("old", "sent", 1, Some(at(-20_000))),
        ]
        .into_iter()
        .enumerate()
        {
            state
                .conn
                .execute(outbox, super::super::db::args![id, format!("<m{i}@x>"), at(0), status, attempts, sent])
                .unwrap();
        }
        let since = millis(at(0));
        let full = state.status_rows(since).unwrap();
        for limit in [1, 3, 50] {
            let StatusPage { counts, rows: page } = state.status_page(since, limit).unwrap();
            let expected: Vec<_> = full.iter().take(limit).map(|r| (&r.conversation_id, r.standing)).collect();
            assert_eq!(page.iter().map(|r| (&r.conversation_id, r.standing)).collect::<Vec<_>>(), expected, "{limit}");
            for (standing, n) in counts {
                assert_eq!(n, full.iter().filter(|r| r.standing == standing).count(), "{standing:?}");
            }
        }
        let names: Vec<&str> = full.iter().map(|r| r.conversation_id.as_str()).collect();
        assert_eq!(names, ["parked", "queued-and-open", "notified-then-typing", "typing", "ended", "held", "notified"]);
    }
}
