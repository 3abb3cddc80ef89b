//! Export schema v1 (see README): the contract a bot runtime writes for us, in a SQLite file or
//! a PostgreSQL database. Read only, never holding a lock longer than one statement: the
//! runtime may be writing while we read. All SQL against the export lives here; rows become
//! domain types here, and a malformed row becomes a warning naming its id.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};

use super::sql::{Cell, Db, Param};
use super::{Batch, Source, Visit};
use crate::domain::{Activity, Author, Conversation, Message, ends_flow, text};

pub struct Export {
    db: Db,
    /// "export /path/to/export.sqlite", or the URL without its password.
    name: String,
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
/// resync after the export's ids changed. Not part of a normal run, so not in QUERIES. Each
/// conversations row comes just before its messages (its id column NULL, sorted first): the
/// two indexes merged in one pass, not the conversation looked up again for every message (a
/// third of the report's time).
const EVERYTHING_SQL: &str = "SELECT NULL, c.id, NULL, NULL, NULL, NULL, NULL, NULL, \
     c.id, c.bot_id, c.visitor_id, c.started_at, c.page_url FROM conversations c \
     UNION ALL SELECT m.id, m.conversation_id, m.sent_at, m.sender, m.input_type, m.body, m.gambit_id, m.field, \
     NULL, NULL, NULL, NULL, NULL FROM messages m WHERE m.id <= ?1 ORDER BY 2, 1 NULLS FIRST";
/// The one scan: a handful of rows, read once per run.
const BOTS_SQL: &str = "SELECT id, name FROM bots";
/// The queries whose cost must follow what changed, not the export's size, with parameters of
/// the types they take (public for the query-plan tests against a real PostgreSQL).
pub fn queries() -> [(&'static str, &'static str, Vec<Param>); 5] {
    let ids = || vec![Param::Texts(vec![])];
    [
        ("messages", ACTIVITY_SQL, vec![Param::Int(0), Param::Int(0)]),
        ("messages", TRANSCRIPTS_SQL, ids()),
        ("conversations", CONVERSATIONS_SQL, ids()),
        ("messages", ANCHOR_SQL, vec![Param::Int(0)]),
        ("messages", LAST_ID_SQL, vec![]),
    ]
}

impl Export {
    pub fn open_sqlite(path: &Path) -> Result<Self> {
        let name = format!("export {}", path.display());
        if !path.is_file() {
            bail!("{name}: no such file");
        }
        let db = Db::sqlite(path).with_context(|| format!("{name}: opening"))?;
        Export::on(db, name)
    }

    pub fn open_postgres(url: &str, password: Option<&str>) -> Result<Self> {
        let name = format!("export {}", super::sql::shown_url(url));
        let db = Db::postgres(url, password).with_context(|| format!("{name}: connecting"))?;
        Export::on(db, name)
    }

    fn on(db: Db, name: String) -> Result<Self> {
        let mut export = Export { db, name, bots: HashMap::new() };
        export.check_schema()?;
        export.bots = export.read_bots()?;
        Ok(export)
    }

    /// Fails with one line naming the store and what is missing, before any state is touched.
    fn check_schema(&self) -> Result<()> {
        // Preparing the queries a run makes checks every table and column they need.
        for (tables, sql, params) in queries().into_iter().chain([("bots", BOTS_SQL, vec![])]) {
            let prepared = self.db.prepare(sql, &params).with_context(|| self.name.clone())?;
            if let Err(why) = prepared {
                bail!("{}: not export schema v1 ({tables}): {why}", self.name);
            }
        }
        if !self.db.has_index("messages", "conversation_id").with_context(|| self.context("reading the schema"))? {
            log::warn!(
                "{}: no index on messages(conversation_id, id) as schema v1 asks; \
                 transcripts are read by scanning, which is slow on a large export",
                self.name
            );
        }
        Ok(())
    }

    fn read_bots(&self) -> Result<HashMap<String, String>> {
        let rows = self.db.rows(BOTS_SQL, &[]).with_context(|| self.context("reading bots"))?;
        Ok(rows.iter().map(|r| (display(&r[0]).unwrap_or_default(), display(&r[1]).unwrap_or_default())).collect())
    }

    /// A conversation from the five columns of a conversations row; none when the row is
    /// missing (a LEFT JOIN) or its id is unusable.
    fn conversation(&self, row: &[Cell]) -> Option<Conversation> {
        let id = text(&row[0], "id").ok()??.to_owned();
        let bot_id = display(&row[1]).unwrap_or_default();
        Some(Conversation {
            id,
            bot_name: self.bots.get(&bot_id).cloned().unwrap_or_else(|| bot_id.clone()),
            bot_id,
            visitor_id: display(&row[2]).unwrap_or_default(),
            started_at: display(&row[3]).and_then(|s| DateTime::parse_from_rfc3339(s.trim()).ok()),
            page_url: display(&row[4]),
        })
    }

    fn context(&self, what: &str) -> String {
        format!("{}: {what}", self.name)
    }
}

impl Source for Export {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn describe(&self) -> Result<String> {
        let kind = if self.db.is_postgres() { "PostgreSQL" } else { "SQLite" };
        Ok(format!("{} (export schema v1 on {kind}, {} bot(s))", self.name, self.bots.len()))
    }

    fn commit_window(&self) -> i64 {
        if self.db.is_postgres() { super::POSTGRES_COMMIT_WINDOW } else { 0 }
    }

    /// Up to `limit` messages with an id above `after`, oldest first. Each call is one
    /// statement, so one consistent snapshot.
    fn activity_after(&self, after: i64, limit: usize, skip: &HashSet<i64>) -> Result<Batch> {
        let mut batch = Batch::default();
        let params = [Param::Int(after), Param::Int(limit as i64)];
        self.db
            .each(ACTIVITY_SQL, &params, |row| {
                let Some(id) = row[0].int() else { return Ok(()) };
                batch.through = Some(id);
                if skip.contains(&id) {
                    return Ok(());
                }
                batch.rows += 1;
                batch.ids.push((id, id));
                batch.anchor = anchor(&row[1..3]);
                match activity(row, id) {
                    Ok(a) => {
                        // Usable, but not as written: said once, here, where each row is read once.
                        if let Some(why) = body_flaw(&row[5]) {
                            log::warn!("{}: messages row {id}: {why}", self.name);
                        }
                        batch.activity.push(a);
                    }
                    Err(why) => log::warn!("{}: messages row {id} skipped: {why}", self.name),
                }
                Ok(())
            })
            .with_context(|| self.context("reading messages"))?;
        Ok(batch)
    }

    /// The conversations among `ids`, with their bots' names. One statement for a whole page:
    /// a statement per conversation costs a file lock each, and a re-prepare each when the
    /// export has been ANALYZEd.
    fn conversations(&self, ids: &[&str]) -> Result<HashMap<String, Conversation>> {
        let mut out = HashMap::with_capacity(ids.len());
        let page = [Param::Texts(ids.iter().map(|id| (*id).to_owned()).collect())];
        self.db
            .each(CONVERSATIONS_SQL, &page, |row| {
                if let Some(c) = self.conversation(row) {
                    out.insert(c.id.clone(), c);
                }
                Ok(())
            })
            .with_context(|| self.context("reading conversations"))?;
        Ok(out)
    }

    /// The transcripts of a page of conversations, each up to its own `through`: the last
    /// message this run has read of it. A message written since must not slip into an email
    /// that does not cover it.
    fn transcripts(&self, wanted: &[(&str, i64)], f: &mut dyn FnMut(&str, Message)) -> Result<()> {
        let through: HashMap<&str, i64> = wanted.iter().copied().collect();
        let page = [Param::Texts(through.keys().map(|id| (*id).to_owned()).collect())];
        self.db
            .each(TRANSCRIPTS_SQL, &page, |row| {
                let Some(id) = row[0].int() else { return Ok(()) };
                // Rows that fail here were reported when first read; leave them out quietly.
                let Ok(a) = activity(row, id) else { return Ok(()) };
                if through.get(a.conversation_id.as_str()).is_none_or(|&t| id > t) {
                    return Ok(());
                }
                f(&a.conversation_id, message(row, id, a.sent_at, a.author));
                Ok(())
            })
            .with_context(|| self.context("reading transcripts"))
    }

    /// The highest message id (an index lookup).
    fn last_message_id(&self) -> Result<i64> {
        Ok(self.db.int(LAST_ID_SQL, &[]).with_context(|| self.context("reading messages"))?.unwrap_or(0))
    }

    /// The row at `id` as `Batch::anchor` describes it; none when there is no such row.
    fn anchor_at(&self, id: i64) -> Result<Option<String>> {
        let row = self.db.one(ANCHOR_SQL, &[Param::Int(id)]).with_context(|| self.context("reading messages"))?;
        Ok(row.map(|r| anchor(&r)))
    }

    /// How many message rows have an id at or below `id`: one pass over the primary key, so a
    /// periodic check, not a per-run one.
    fn count_through(&self, id: i64) -> Result<i64> {
        let sql = "SELECT count(*) FROM messages WHERE id <= ?1";
        Ok(self.db.int(sql, &[Param::Int(id)]).with_context(|| self.context("counting messages"))?.unwrap_or(0))
    }

    /// About how many conversations there are (no count, no scan). Only for progress bars.
    fn about_how_many_conversations(&self) -> u64 {
        let sql = if self.db.is_postgres() {
            "SELECT reltuples::int8 FROM pg_class WHERE relname = 'conversations'"
        } else {
            "SELECT coalesce(max(rowid), 0) FROM conversations"
        };
        self.db.int(sql, &[]).ok().flatten().unwrap_or(0).max(0) as u64
    }

    /// Calls `f` with every conversation's messages with ids up to `through`, one conversation at
    /// a time (its row, when the export has one): the memory is one conversation's, whatever
    /// the export's size. Returns how many rows were read, bad ones included.
    fn each_conversation(&self, through: i64, f: &mut Visit) -> Result<i64> {
        // The conversations row last read, and the conversation whose messages are being read.
        let mut row_of: Option<Conversation> = None;
        let mut current: Option<(String, Option<Conversation>)> = None;
        // The messages of `current` are the first `len`; those after are kept for their
        // strings' buffers, written over by the next conversation's (a pass over every message
        // of the export allocated five strings a message).
        let mut messages: Vec<Message> = Vec::new();
        let mut len = 0;
        let mut read = 0;
        self.db
            .each(EVERYTHING_SQL, &[Param::Int(through)], |row| {
                if matches!(row[0], Cell::Null) {
                    row_of = self.conversation(&row[8..13]);
                    return Ok(());
                }
                read += 1;
                let Some(id) = row[0].int() else { return Ok(()) };
                let Ok((conversation_id, sent_at, author, _)) = columns(row) else { return Ok(()) };
                if let Some((done, conversation)) = current.take_if(|(c, _)| c != conversation_id) {
                    f(&done, conversation.as_ref(), &messages[..len])?;
                    len = 0;
                }
                if current.is_none() {
                    let conversation = row_of.take_if(|c| c.id == conversation_id);
                    current = Some((conversation_id.to_owned(), conversation));
                }
                match messages.get_mut(len) {
                    Some(m) => refill(m, row, id, sent_at, author),
                    None => messages.push(message(row, id, sent_at, author)),
                }
                len += 1;
                Ok(())
            })
            .with_context(|| self.context("reading every conversation"))?;
        if let Some((id, conversation)) = &current {
            f(id, conversation.as_ref(), &messages[..len])?;
        }
        Ok(read)
    }
}

/// The row at the watermark, as the next run will look for it: its conversation and time as
/// written. Renumbered ids or a restored export put another row (or none) at that id.
fn anchor(cells: &[Cell]) -> String {
    format!("{}\u{1f}{}", cells[0].lossy().unwrap_or_default(), cells[1].lossy().unwrap_or_default())
}

/// A message from a row whose activity columns were read already (`columns`); the columns
/// after them are `body, gambit_id, field`.
fn message(row: &[Cell], id: i64, sent_at: DateTime<Utc>, author: Author) -> Message {
    Message {
        id,
        sent_at,
        author,
        input_type: display(&row[4]),
        body: row[5].lossy_str().map(|b| text::body(&b).into_owned()).unwrap_or_default(),
        gambit_id: display(&row[6]),
        field: display(&row[7]),
    }
}

/// `message`, written over `m` in place, reusing its strings' buffers.
fn refill(m: &mut Message, row: &[Cell], id: i64, sent_at: DateTime<Utc>, author: Author) {
    fn set(to: &mut String, from: &str) {
        to.clear();
        to.push_str(from);
    }
    fn set_display(to: &mut Option<String>, cell: &Cell) {
        match (to.as_mut(), cell.lossy_str()) {
            (_, None) => *to = None,
            (Some(to), Some(from)) => set(to, &text::line(&from)),
            (None, Some(from)) => *to = Some(text::line(&from).into_owned()),
        }
    }
    (m.id, m.sent_at, m.author) = (id, sent_at, author);
    set_display(&mut m.input_type, &row[4]);
    match row[5].lossy_str() {
        Some(b) => set(&mut m.body, &text::body(&b)),
        None => m.body.clear(),
    }
    set_display(&mut m.gambit_id, &row[6]);
    set_display(&mut m.field, &row[7]);
}

/// Reads the activity columns of a row; the error says why the row cannot be used.
fn activity(row: &[Cell], id: i64) -> std::result::Result<Activity, String> {
    let (conversation_id, sent_at, author, ends) = columns(row)?;
    Ok(Activity { id, conversation_id: conversation_id.to_owned(), sent_at, author, ends })
}

/// The activity columns of a row, borrowed: conversation, time, sender, whether it ends the flow.
fn columns(row: &[Cell]) -> std::result::Result<(&str, DateTime<Utc>, Author, bool), String> {
    let conversation_id = text(&row[1], "conversation_id")?.ok_or("conversation_id is NULL")?;
    if conversation_id.trim().is_empty() {
        return Err("conversation_id is blank".into());
    }
    let sent_at = text(&row[2], "sent_at")?.ok_or("sent_at is NULL")?;
    let sent_at = DateTime::parse_from_rfc3339(sent_at.trim())
        .map_err(|_| format!("sent_at {sent_at:?} is not an RFC 3339 timestamp"))?
        .with_timezone(&Utc);
    let author = match text(&row[3], "sender")? {
        Some("bot") => Author::Bot,
        Some("visitor") => Author::Visitor,
        Some(other) => return Err(format!("unknown sender {:?}", text::line(other))),
        None => return Err("sender is NULL".into()),
    };
    let ends = ends_flow(author, text(&row[4], "input_type")?);
    Ok((conversation_id, sent_at, author, ends))
}

/// What is wrong with a usable row's body, if anything: it is shown anyway, as best it can be.
fn body_flaw(body: &Cell) -> Option<&'static str> {
    match body {
        Cell::Null => Some("body is NULL; shown as empty"),
        Cell::Text(b) if std::str::from_utf8(b).is_err() => {
            Some("body is not valid UTF-8; shown with replacement characters")
        }
        _ => None,
    }
}

/// A TEXT column that must be valid: NULL is `None`, anything unreadable an error.
fn text<'r>(cell: &'r Cell, name: &str) -> std::result::Result<Option<&'r str>, String> {
    match cell {
        Cell::Null => Ok(None),
        Cell::Text(bytes) => std::str::from_utf8(bytes).map(Some).map_err(|_| format!("{name} is not valid UTF-8")),
        Cell::Int(_) => Err(format!("{name} is Integer, not text")),
        Cell::Real(_) => Err(format!("{name} is Real, not text")),
    }
}

/// A one-line display column (a name, a step, a field, a URL), cleaned for every output.
fn display(cell: &Cell) -> Option<String> {
    cell.lossy_str().map(|s| text::line(&s).into_owned())
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;
    use rusqlite::types::Value;

    use super::*;

    #[test]
    fn no_query_scans_the_export() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("export.sqlite");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(include_str!("../../examples/export-day1.sql")).unwrap();
        conn.execute_batch("ANALYZE").unwrap();
        Export::open_sqlite(&path).unwrap();
        let conn = Connection::open(&path).unwrap();
        rusqlite::vtab::array::load_module(&conn).unwrap();
        for (_, sql, _) in queries() {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
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

    /// The report's pass merges the two tables' indexes: each conversation is read once, not
    /// once per message, and no message is sorted.
    #[test]
    fn the_whole_export_is_read_as_one_merge() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(include_str!("../../examples/export-day1.sql")).unwrap();
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {EVERYTHING_SQL}")).unwrap();
        let plan: Vec<String> = stmt.query_map([0], |r| r.get(3)).unwrap().collect::<rusqlite::Result<_>>().unwrap();
        assert!(plan.iter().any(|p| p == "MERGE (UNION ALL)"), "{plan:#?}");
        assert!(plan.iter().any(|p| p == "SCAN m USING INDEX messages_by_conversation"), "{plan:#?}");
        // Only the conversations side, one row per id, is ordered by its NULL id column.
        assert_eq!(plan.iter().filter(|p| p.contains("TEMP B-TREE")).count(), 1, "{plan:#?}");
        assert!(!plan.iter().any(|p| p.starts_with("SEARCH")), "{plan:#?}");
    }

    /// Every conversation with messages is visited once, with its row when the export has one;
    /// one with no messages is not; the count is of messages rows read, bad ones included.
    #[test]
    fn each_conversation_pairs_messages_with_their_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("export.sqlite");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE bots (id TEXT PRIMARY KEY, name TEXT NOT NULL);
             CREATE TABLE conversations (id TEXT PRIMARY KEY, bot_id TEXT NOT NULL, visitor_id TEXT NOT NULL,
                 started_at TEXT NOT NULL, page_url TEXT);
             CREATE TABLE messages (id INTEGER PRIMARY KEY, conversation_id TEXT NOT NULL, sent_at TEXT NOT NULL,
                 sender TEXT NOT NULL, gambit_id TEXT, input_type TEXT, field TEXT, body TEXT);
             CREATE INDEX messages_by_conversation ON messages(conversation_id, id);
             INSERT INTO bots VALUES ('lead', 'Lead Bot');
             INSERT INTO conversations VALUES ('a', 'lead', 'v-a', '2026-11-24T09:00:00Z', NULL),
                 ('b-silent', 'lead', 'v-b', '2026-11-24T09:00:00Z', NULL),
                 ('d', 'lead', 'v-d', '2026-11-24T09:00:00Z', 'https://example.com/');
             INSERT INTO messages (id, conversation_id, sent_at, sender, body, gambit_id, field) VALUES
                 (1, 'd', '2026-11-24T09:00:01Z', 'visitor', NULL, NULL, NULL),
                 (2, 'a', '2026-11-24T09:00:02Z', 'robot', 'bad sender', NULL, NULL),
                 (3, 'c-no-row', '2026-11-24T09:00:03Z', 'visitor', 'who am I
                     and more', 'ask', 'name'),
                 (4, 'a', '2026-11-24T09:00:04Z', 'visitor', 'a much longer line than the others', NULL, 'email'),
                 (5, 'd', '2026-11-24T09:00:05Z', 'bot', 'welcome', 'greet', NULL),
                 (6, 'a', '2026-11-24T09:00:06Z', 'bot', 'later', NULL, NULL);",
        )
        .unwrap();
        let export = Export::open_sqlite(&path).unwrap();
        let mut seen = Vec::new();
        let read = export
            .each_conversation(5, &mut |id, conversation, messages| {
                let ids: Vec<i64> = messages.iter().map(|m| m.id).collect();
                seen.push((id.to_owned(), conversation.map(|c| c.visitor_id.clone()), ids));
                // Written over the buffers of the conversation before: the same as read afresh.
                let mut afresh = Vec::new();
                export.transcripts(&[(id, 5)], &mut |_, m| afresh.push(m)).unwrap();
                assert_eq!(messages, afresh, "{id}");
                Ok(())
            })
            .unwrap();
        assert_eq!(read, 5);
        let v = |s: &str| Some(s.to_owned());
        assert_eq!(
            seen,
            [("a".into(), v("v-a"), vec![4]), ("c-no-row".into(), None, vec![3]), ("d".into(), v("v-d"), vec![1, 5])]
        );
    }
}
