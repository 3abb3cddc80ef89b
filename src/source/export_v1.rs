//! Export schema v1 on SQLite (see README): the contract a bot runtime writes for us. Read
//! only, never holding a lock longer than one statement: the runtime may be writing while we
//! read. All SQL against the export lives here; rows become domain types here, and a malformed
//! row becomes a warning naming its id.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};

use super::{Activity, Author, Batch, Conversation, Message, Source, Visit, ends_flow};
use crate::text;

pub struct Export {
    conn: Connection,
    path: PathBuf,
    /// Bot names by id.
    bots: HashMap<String, String>,
}

// All SQL against the export. The activity columns come first, in the same order in every
// message query, so one function reads them from any. Every query a run makes is an index
// search: a run costs what is new, not the export's size (tests::no_query_scans_the_export).
const ACTIVITY_SQL: &str = "SELECT id, conversation_id, sent_at, sender, input_type, body FROM messages \
     WHERE id > ?1 ORDER BY id LIMIT ?2";
// The page queries start from the page's ids: CROSS JOIN fixes SQLite's loop order, so each id
// is an index lookup whatever the export's statistics say.
const TRANSCRIPTS_SQL: &str = "SELECT m.id, m.conversation_id, m.sent_at, m.sender, m.input_type, m.body, \
     m.gambit_id, m.field FROM rarray(?1) AS page CROSS JOIN messages m ON m.conversation_id = page.value ORDER BY m.id";
const CONVERSATIONS_SQL: &str = "SELECT c.id, c.bot_id, c.visitor_id, c.started_at, c.page_url \
     FROM rarray(?1) AS page CROSS JOIN conversations c ON c.id = page.value";
/// The row at the watermark, to notice an export whose ids changed: a primary key lookup.
const ANCHOR_SQL: &str = "SELECT conversation_id, sent_at FROM messages WHERE id = ?1";
const LAST_ID_SQL: &str = "SELECT coalesce(max(id), 0) FROM messages";
/// The whole export, one conversation after another: for the report, and for the one-off
/// resync after the export's ids changed. Not part of a normal run, so not in QUERIES.
const EVERYTHING_SQL: &str = "SELECT m.id, m.conversation_id, m.sent_at, m.sender, m.input_type, m.body, \
     m.gambit_id, m.field, c.id, c.bot_id, c.visitor_id, c.started_at, c.page_url \
     FROM messages m LEFT JOIN conversations c ON c.id = m.conversation_id \
     WHERE m.id <= ?1 ORDER BY m.conversation_id, m.id";
/// The one scan: a handful of rows, read once per run.
const BOTS_SQL: &str = "SELECT id, name FROM bots";
/// The queries whose cost must follow what changed, not the export's size.
const QUERIES: [(&str, &str); 5] = [
    ("messages", ACTIVITY_SQL),
    ("messages", TRANSCRIPTS_SQL),
    ("conversations", CONVERSATIONS_SQL),
    ("messages", ANCHOR_SQL),
    ("messages", LAST_ID_SQL),
];

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

    fn read_bots(&self) -> Result<HashMap<String, String>> {
        let mut stmt = self.conn.prepare(BOTS_SQL)?;
        let rows =
            stmt.query_map([], |r| Ok((display(r, 0).unwrap_or_default(), display(r, 1).unwrap_or_default())))?;
        rows.collect::<rusqlite::Result<_>>().with_context(|| self.context("reading bots"))
    }

    /// A conversation from the five columns of a conversations row starting at `at`; none
    /// when the row is missing (a LEFT JOIN) or its id is unusable.
    fn conversation(&self, row: &Row, at: usize) -> Option<Conversation> {
        let id = text(row, at, "id").ok()??.to_owned();
        let bot_id = display(row, at + 1).unwrap_or_default();
        Some(Conversation {
            id,
            bot_name: self.bots.get(&bot_id).cloned().unwrap_or_else(|| bot_id.clone()),
            bot_id,
            visitor_id: display(row, at + 2).unwrap_or_default(),
            started_at: display(row, at + 3).and_then(|s| DateTime::parse_from_rfc3339(s.trim()).ok()),
            page_url: display(row, at + 4),
        })
    }

    fn context(&self, what: &str) -> String {
        format!("export {}: {what}", self.path.display())
    }
}

impl Source for Export {
    fn name(&self) -> String {
        format!("export {}", self.path.display())
    }

    fn describe(&self) -> Result<String> {
        Ok(format!("{} (export schema v1, {} bot(s))", self.path.display(), self.bots.len()))
    }

    /// Up to `limit` messages with an id above `after`, oldest first. Each call is one
    /// statement, so one consistent snapshot, and ids only grow: nothing is half-read.
    fn activity_after(&self, after: i64, limit: usize) -> Result<Batch> {
        let mut stmt = self.conn.prepare_cached(ACTIVITY_SQL)?;
        let mut rows = stmt.query(params![after, limit as i64]).with_context(|| self.context("reading messages"))?;
        let mut batch = Batch::default();
        while let Some(row) = rows.next().with_context(|| self.context("reading messages"))? {
            let id: i64 = row.get(0)?;
            batch.through = Some(id);
            batch.rows += 1;
            batch.anchor = anchor(row);
            match activity(row, id) {
                Ok(a) => {
                    // Usable, but not as written: said once, here, where each row is read once.
                    if let Some(why) = body_flaw(row) {
                        log::warn!("export {}: messages row {id}: {why}", self.path.display());
                    }
                    batch.activity.push(a);
                }
                Err(why) => log::warn!("export {}: messages row {id} skipped: {why}", self.path.display()),
            }
        }
        Ok(batch)
    }

    /// The conversations among `ids`, with their bots' names. One statement for a whole page:
    /// a statement per conversation costs a file lock each, and a re-prepare each when the
    /// export has been ANALYZEd.
    fn conversations(&self, ids: &[&str]) -> Result<HashMap<String, Conversation>> {
        let mut stmt = self.conn.prepare_cached(CONVERSATIONS_SQL)?;
        let mut rows = stmt.query([id_array(ids.iter().copied())])?;
        let mut out = HashMap::with_capacity(ids.len());
        while let Some(row) = rows.next().with_context(|| self.context("reading conversations"))? {
            if let Some(c) = self.conversation(row, 0) {
                out.insert(c.id.clone(), c);
            }
        }
        Ok(out)
    }

    /// The transcripts of a page of conversations, each up to its own `through`: the last
    /// message this run has read of it. A message written since must not slip into an email
    /// that does not cover it.
    fn transcripts(&self, wanted: &[(&str, i64)]) -> Result<HashMap<String, Vec<Message>>> {
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

    /// The highest message id (an index lookup).
    fn last_message_id(&self) -> Result<i64> {
        self.conn.query_row(LAST_ID_SQL, [], |r| r.get(0)).with_context(|| self.context("reading messages"))
    }

    /// The row at `id` as `Batch::anchor` describes it; none when there is no such row.
    fn anchor_at(&self, id: i64) -> Result<Option<String>> {
        let mut stmt = self.conn.prepare_cached(ANCHOR_SQL)?;
        stmt.query_row([id], |r| Ok(anchor_of(r, 0))).optional().with_context(|| self.context("reading messages"))
    }

    /// How many message rows have an id at or below `id`: one pass over the primary key, so a
    /// periodic check, not a per-run one.
    fn count_through(&self, id: i64) -> Result<i64> {
        self.conn
            .query_row("SELECT count(*) FROM messages WHERE id <= ?1", [id], |r| r.get(0))
            .with_context(|| self.context("counting messages"))
    }

    /// About how many conversations there are (the largest rowid: no count, no scan); 0 when
    /// the table has no rowid. Only for progress bars.
    fn about_how_many_conversations(&self) -> u64 {
        self.conn.query_row("SELECT coalesce(max(rowid), 0) FROM conversations", [], |r| r.get(0)).unwrap_or(0)
    }

    /// Calls `f` with every conversation's messages with ids up to `through`, one conversation at
    /// a time (its row, when the export has one): the memory is one conversation's, whatever
    /// the export's size. Returns how many rows were read, bad ones included.
    fn each_conversation(&self, through: i64, f: &mut Visit) -> Result<i64> {
        let mut stmt = self.conn.prepare(EVERYTHING_SQL)?;
        let mut rows = stmt.query([through])?;
        let mut current: Option<(String, Option<Conversation>)> = None;
        let mut messages: Vec<Message> = Vec::new();
        let mut read = 0;
        while let Some(row) = rows.next().with_context(|| self.context("reading every conversation"))? {
            read += 1;
            let id: i64 = row.get(0)?;
            let Ok(a) = activity(row, id) else { continue };
            if current.as_ref().is_some_and(|(c, _)| *c != a.conversation_id) {
                let (id, conversation) = current.take().expect("checked");
                f(&id, conversation.as_ref(), &messages)?;
                messages.clear();
            }
            if current.is_none() {
                current = Some((a.conversation_id.clone(), self.conversation(row, 8)));
            }
            messages.push(message(row, &a));
        }
        if let Some((id, conversation)) = &current {
            f(id, conversation.as_ref(), &messages)?;
        }
        Ok(read)
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

/// The row at the watermark, as the next run will look for it: its conversation and time as
/// written. Renumbered ids or a restored export put another row (or none) at that id.
fn anchor(row: &Row) -> String {
    anchor_of(row, 1)
}

fn anchor_of(row: &Row, at: usize) -> String {
    let raw = |i| match row.get_ref(i) {
        Ok(ValueRef::Text(b) | ValueRef::Blob(b)) => String::from_utf8_lossy(b).into_owned(),
        Ok(ValueRef::Integer(n)) => n.to_string(),
        Ok(ValueRef::Real(f)) => f.to_string(),
        _ => String::new(),
    };
    format!("{}\u{1f}{}", raw(at), raw(at + 1))
}

/// A message from a row whose activity columns were read already; the columns after them are
/// `body, gambit_id, field`.
fn message(row: &Row, a: &Activity) -> Message {
    Message {
        id: a.id,
        sent_at: a.sent_at,
        author: a.author,
        input_type: display(row, 4),
        body: lossy(row, 5).map(|b| text::body(&b).into_owned()).unwrap_or_default(),
        gambit_id: display(row, 6),
        field: display(row, 7),
    }
}

/// Reads the activity columns of a row; the error says why the row cannot be used.
fn activity(row: &Row, id: i64) -> std::result::Result<Activity, String> {
    let conversation_id = text(row, 1, "conversation_id")?.ok_or("conversation_id is NULL")?;
    if conversation_id.trim().is_empty() {
        return Err("conversation_id is blank".into());
    }
    let sent_at = text(row, 2, "sent_at")?.ok_or("sent_at is NULL")?;
    let sent_at = DateTime::parse_from_rfc3339(sent_at.trim())
        .map_err(|_| format!("sent_at {sent_at:?} is not an RFC 3339 timestamp"))?
        .with_timezone(&Utc);
    let author = match text(row, 3, "sender")? {
        Some("bot") => Author::Bot,
        Some("visitor") => Author::Visitor,
        Some(other) => return Err(format!("unknown sender {:?}", text::line(other))),
        None => return Err("sender is NULL".into()),
    };
    let ends = ends_flow(author, text(row, 4, "input_type")?);
    Ok(Activity { id, conversation_id: conversation_id.to_owned(), sent_at, author, ends })
}

/// What is wrong with a usable row's body, if anything: it is shown anyway, as best it can be.
fn body_flaw(row: &Row) -> Option<&'static str> {
    match row.get_ref(5).ok()? {
        ValueRef::Null => Some("body is NULL; shown as empty"),
        ValueRef::Text(b) if std::str::from_utf8(b).is_err() => {
            Some("body is not valid UTF-8; shown with replacement characters")
        }
        _ => None,
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

/// Whatever is there, as text, with invalid UTF-8 replaced.
fn lossy(row: &Row, i: usize) -> Option<String> {
    match row.get_ref(i).ok()? {
        ValueRef::Null => None,
        ValueRef::Text(b) | ValueRef::Blob(b) => Some(String::from_utf8_lossy(b).into_owned()),
        ValueRef::Integer(n) => Some(n.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
    }
}

/// A one-line display column (a name, a step, a field, a URL), cleaned for every output.
fn display(row: &Row, i: usize) -> Option<String> {
    lossy(row, i).map(|s| text::line(&s).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_query_scans_the_export() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("export.sqlite");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(include_str!("../../examples/export-day1.sql")).unwrap();
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
