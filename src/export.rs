//! Reads the bot runtime's export (schema v1, see README). Read only, never holding a lock
//! longer than one statement: the runtime may be writing while we read. All SQL against the
//! export lives here; rows become domain types here, and a malformed row becomes a warning.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, FixedOffset, Utc};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OpenFlags, Row, params};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sender {
    Bot,
    Visitor,
}

/// What a run needs of a new message to track its conversation: no body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    pub id: i64,
    pub conversation_id: String,
    pub sent_at: DateTime<Utc>,
    pub sender: Sender,
    /// The bot's end_conversation step.
    pub ends: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    pub id: String,
    pub bot_id: String,
    pub bot_name: String,
    pub visitor_id: String,
    pub started_at: Option<DateTime<FixedOffset>>,
    pub page_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: i64,
    pub sent_at: DateTime<Utc>,
    pub sender: Sender,
    pub gambit_id: Option<String>,
    pub input_type: Option<String>,
    pub field: Option<String>,
    pub body: String,
}

/// A batch of new activity, and how far it reached (bad rows included, so they are reported
/// once and never read again).
#[derive(Debug, Default)]
pub struct Batch {
    pub activity: Vec<Activity>,
    pub through: Option<i64>,
}

pub struct Export {
    conn: Connection,
    path: PathBuf,
    /// Bot names by id.
    bots: HashMap<String, String>,
}

// All SQL against the export. The activity columns come first, in the same order in the two
// message queries, so one function reads them from either. Every query is an index search:
// a run costs what is new, not the export's size (tests::no_query_scans_the_export).
const ACTIVITY_SQL: &str =
    "SELECT id, conversation_id, sent_at, sender, input_type FROM messages WHERE id > ?1 ORDER BY id LIMIT ?2";
// The page queries start from the page's ids: CROSS JOIN fixes SQLite's loop order, so each id
// is an index lookup whatever the export's statistics say.
const TRANSCRIPTS_SQL: &str = "SELECT m.id, m.conversation_id, m.sent_at, m.sender, m.input_type, m.gambit_id, \
     m.field, m.body FROM rarray(?1) AS page CROSS JOIN messages m ON m.conversation_id = page.value ORDER BY m.id";
const CONVERSATIONS_SQL: &str = "SELECT c.id, c.bot_id, c.visitor_id, c.started_at, c.page_url \
     FROM rarray(?1) AS page CROSS JOIN conversations c ON c.id = page.value";
/// The report's single pass: every conversation with its messages, in conversation order. Not
/// part of a run (it reads the whole export), so not in QUERIES.
const EVERYTHING_SQL: &str = "SELECT m.id, m.conversation_id, m.sent_at, m.sender, m.input_type, m.gambit_id, \
     m.field, m.body, c.bot_id, c.visitor_id, c.started_at, c.page_url \
     FROM conversations c JOIN messages m ON m.conversation_id = c.id ORDER BY c.id, m.id";
/// The one scan: a handful of rows, read once per run.
const BOTS_SQL: &str = "SELECT id, name FROM bots";
/// The queries whose cost must follow what changed, not the export's size.
const QUERIES: [(&str, &str); 3] =
    [("messages", ACTIVITY_SQL), ("messages", TRANSCRIPTS_SQL), ("conversations", CONVERSATIONS_SQL)];

impl Export {
    pub fn open(path: &Path) -> Result<Self> {
        let shown = path.display();
        if !path.is_file() {
            bail!("export {shown}: no such file");
        }
        let conn =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .with_context(|| format!("export {shown}: opening"))?;
        conn.busy_timeout(Duration::from_secs(10))?;
        rusqlite::vtab::array::load_module(&conn)?;
        let mut export = Export { conn, path: path.to_owned(), bots: HashMap::new() };
        export.check_schema()?;
        export.bots = export.read_bots()?;
        Ok(export)
    }

    /// Fails with one line naming the file and what is missing, before any state is touched.
    fn check_schema(&self) -> Result<()> {
        let shown = self.path.display();
        // Preparing the queries a run makes checks every table and column they need.
        for (tables, sql) in QUERIES.into_iter().chain([("bots", BOTS_SQL)]) {
            self.conn.prepare_cached(sql).map_err(|e| match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::NotADatabase) => anyhow::anyhow!("export {shown}: not a SQLite database"),
                _ => anyhow::anyhow!("export {shown}: not export schema v1 ({tables}): {}", sqlite_message(&e)),
            })?;
        }
        let indexed: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM pragma_index_list('messages') AS l \
             JOIN pragma_index_info(l.name) AS i WHERE i.seqno = 0 AND i.name = 'conversation_id')",
            [],
            |r| r.get(0),
        )?;
        if !indexed {
            log::warn!(
                "export {shown}: no index on messages(conversation_id, id) as schema v1 asks; \
                 transcripts are read by scanning, which is slow on a large export"
            );
        }
        Ok(())
    }

    /// Up to `limit` messages with an id above `after`, oldest first. Each call is one
    /// statement, so one consistent snapshot, and ids only grow: nothing is half-read.
    pub fn activity_after(&self, after: i64, limit: usize) -> Result<Batch> {
        let mut stmt = self.conn.prepare_cached(ACTIVITY_SQL)?;
        let mut rows = stmt.query(params![after, limit as i64]).with_context(|| self.context("reading messages"))?;
        let mut batch = Batch::default();
        while let Some(row) = rows.next().with_context(|| self.context("reading messages"))? {
            let id: i64 = row.get(0)?;
            batch.through = Some(id);
            match activity(row, id) {
                Ok(a) => batch.activity.push(a),
                Err(why) => log::warn!("export {}: messages row {id} skipped: {why}", self.path.display()),
            }
        }
        Ok(batch)
    }

    fn read_bots(&self) -> Result<HashMap<String, String>> {
        let mut stmt = self.conn.prepare(BOTS_SQL)?;
        let rows = stmt.query_map([], |r| Ok((lossy(r, 0).unwrap_or_default(), lossy(r, 1).unwrap_or_default())))?;
        rows.collect::<rusqlite::Result<_>>().with_context(|| self.context("reading bots"))
    }

    /// The conversations among `ids`, with their bots' names. One statement for a whole page:
    /// a statement per conversation costs a file lock each, and a re-prepare each when the
    /// export has been ANALYZEd.
    pub fn conversations(&self, ids: &[&str]) -> Result<HashMap<String, Conversation>> {
        let mut stmt = self.conn.prepare_cached(CONVERSATIONS_SQL)?;
        let rows = stmt.query_map([id_array(ids.iter().copied())], |row| {
            let bot_id = lossy(row, 1).unwrap_or_default();
            Ok(Conversation {
                id: lossy(row, 0).unwrap_or_default(),
                bot_name: self.bots.get(&bot_id).cloned().unwrap_or_else(|| bot_id.clone()),
                bot_id,
                visitor_id: lossy(row, 2).unwrap_or_default(),
                started_at: lossy(row, 3).and_then(|s| DateTime::parse_from_rfc3339(&s).ok()),
                page_url: lossy(row, 4),
            })
        })?;
        let mut out = HashMap::with_capacity(ids.len());
        for c in rows {
            let c = c.with_context(|| self.context("reading conversations"))?;
            out.insert(c.id.clone(), c);
        }
        Ok(out)
    }

    /// The transcripts of a page of conversations, each up to its own `through`: the last
    /// message this run has read of it. A message written since must not slip into an email
    /// that does not cover it.
    pub fn transcripts(&self, wanted: &[(&str, i64)]) -> Result<HashMap<String, Vec<Message>>> {
        let through: HashMap<&str, i64> = wanted.iter().copied().collect();
        let mut stmt = self.conn.prepare_cached(TRANSCRIPTS_SQL)?;
        let mut rows = stmt.query([id_array(through.keys().copied())])?;
        let mut out: HashMap<String, Vec<Message>> = HashMap::with_capacity(wanted.len());
        while let Some(row) = rows.next().with_context(|| self.context("reading transcripts"))? {
            let id: i64 = row.get(0)?;
            // Rows that fail here were reported when first read; leave them out quietly.
            let Ok(a) = activity(row, id) else { continue };
            if through.get(a.conversation_id.as_str()).is_none_or(|&t| id > t) {
                continue;
            }
            let message = message(row, &a);
            out.entry(a.conversation_id).or_default().push(message);
        }
        Ok(out)
    }

    /// The highest message id (an index lookup): how far a backfill has to read.
    pub fn last_message_id(&self) -> Result<i64> {
        Ok(self.conn.query_row("SELECT coalesce(max(id), 0) FROM messages", [], |r| r.get(0))?)
    }

    /// About how many conversations there are (the largest rowid: no count, no scan); 0 when
    /// the table has no rowid. Only for progress bars.
    pub fn about_how_many_conversations(&self) -> u64 {
        self.conn.query_row("SELECT coalesce(max(rowid), 0) FROM conversations", [], |r| r.get(0)).unwrap_or(0)
    }

    /// Calls `f` with every conversation and its messages, one conversation at a time: the
    /// memory is one conversation's, whatever the export's size.
    pub fn each_conversation(&self, mut f: impl FnMut(&Conversation, &[Message])) -> Result<()> {
        let mut stmt = self.conn.prepare(EVERYTHING_SQL)?;
        let mut rows = stmt.query([])?;
        let mut current: Option<Conversation> = None;
        let mut messages: Vec<Message> = Vec::new();
        while let Some(row) = rows.next().with_context(|| self.context("reading every conversation"))? {
            let id: i64 = row.get(0)?;
            let Ok(a) = activity(row, id) else { continue };
            if current.as_ref().is_some_and(|c| c.id != a.conversation_id) {
                f(current.as_ref().expect("checked"), &messages);
                messages.clear();
                current = None;
            }
            if current.is_none() {
                let bot_id = lossy(row, 8).unwrap_or_default();
                current = Some(Conversation {
                    id: a.conversation_id.clone(),
                    bot_name: self.bots.get(&bot_id).cloned().unwrap_or_else(|| bot_id.clone()),
                    bot_id,
                    visitor_id: lossy(row, 9).unwrap_or_default(),
                    started_at: lossy(row, 10).and_then(|s| DateTime::parse_from_rfc3339(&s).ok()),
                    page_url: lossy(row, 11),
                });
            }
            messages.push(message(row, &a));
        }
        if let Some(c) = &current {
            f(c, &messages);
        }
        Ok(())
    }

    fn context(&self, what: &str) -> String {
        format!("export {}: {what}", self.path.display())
    }
}

/// SQLite's own words, without the statement rusqlite appends to them.
fn sqlite_message(e: &rusqlite::Error) -> String {
    match e {
        rusqlite::Error::SqlInputError { msg, .. } | rusqlite::Error::SqliteFailure(_, Some(msg)) => msg.clone(),
        other => other.to_string(),
    }
}

fn id_array<'a>(ids: impl Iterator<Item = &'a str>) -> rusqlite::vtab::array::Array {
    std::rc::Rc::new(ids.map(|id| Value::Text(id.to_owned())).collect())
}

/// A message from a row of TRANSCRIPTS_SQL or EVERYTHING_SQL (same first eight columns), whose
/// activity columns were read already.
fn message(row: &Row, a: &Activity) -> Message {
    Message {
        id: a.id,
        sent_at: a.sent_at,
        sender: a.sender,
        input_type: lossy(row, 4),
        gambit_id: lossy(row, 5),
        field: lossy(row, 6),
        body: lossy(row, 7).unwrap_or_default(),
    }
}

/// Reads the activity columns of a row; the error says why the row cannot be used.
fn activity(row: &Row, id: i64) -> std::result::Result<Activity, String> {
    let conversation_id = text(row, 1, "conversation_id")?.ok_or("conversation_id is NULL")?;
    let sent_at = text(row, 2, "sent_at")?.ok_or("sent_at is NULL")?;
    let sent_at = DateTime::parse_from_rfc3339(sent_at.trim())
        .map_err(|_| format!("sent_at {sent_at:?} is not an RFC 3339 timestamp"))?
        .with_timezone(&Utc);
    let sender = sender(row)?;
    let ends = sender == Sender::Bot && text(row, 4, "input_type")? == Some("end_conversation");
    Ok(Activity { id, conversation_id: conversation_id.to_owned(), sent_at, sender, ends })
}

fn sender(row: &Row) -> std::result::Result<Sender, String> {
    match text(row, 3, "sender")? {
        Some("bot") => Ok(Sender::Bot),
        Some("visitor") => Ok(Sender::Visitor),
        Some(other) => Err(format!("unknown sender {other:?}")),
        None => Err("sender is NULL".into()),
    }
}

/// A TEXT column that must be valid: NULL is `None`, anything unreadable an error.
fn text<'r>(row: &'r Row, i: usize, name: &str) -> std::result::Result<Option<&'r str>, String> {
    match row.get_ref(i).map_err(|e| e.to_string())? {
        ValueRef::Null => Ok(None),
        ValueRef::Text(bytes) => std::str::from_utf8(bytes).map(Some).map_err(|_| format!("{name} is not valid UTF-8")),
        other => Err(format!("{name} is {:?}, not text", other.data_type())),
    }
}

/// A display column: whatever is there, as text, with invalid UTF-8 replaced.
fn lossy(row: &Row, i: usize) -> Option<String> {
    match row.get_ref(i).ok()? {
        ValueRef::Null => None,
        ValueRef::Text(b) | ValueRef::Blob(b) => Some(String::from_utf8_lossy(b).into_owned()),
        ValueRef::Integer(n) => Some(n.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_query_scans_the_export() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("export.sqlite");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(include_str!("../examples/export-day1.sql")).unwrap();
        conn.execute_batch("ANALYZE").unwrap();
        let export = Export::open(&path).unwrap();
        for (_, sql) in QUERIES {
            let mut stmt = export.conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let unbound = rusqlite::params_from_iter(std::iter::repeat_n(Value::Null, stmt.parameter_count()));
            let plan: Vec<String> =
                stmt.query_map(unbound, |r| r.get(3)).unwrap().collect::<rusqlite::Result<_>>().unwrap();
            for step in &plan {
                let scans_a_table = step.starts_with("SCAN") && !step.contains("VIRTUAL TABLE");
                assert!(!scans_a_table, "{sql}\n{plan:#?}");
            }
            assert!(plan.iter().any(|p| p.starts_with("SEARCH")), "{sql}\n{plan:#?}");
        }
    }
}
