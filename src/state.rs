//! The notifier's own SQLite file: what each conversation's emails have covered, the thread
//! each belongs to, and the outbox through which every email passes. Never the export.
//!
//! The outbox is what makes sending safe: an email is recorded as pending in the same
//! transaction that marks its messages covered, then sent, then marked sent. A crash or an
//! SMTP failure in between leaves it pending, and the next run sends it again with the same
//! Message-ID.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use rusqlite::backup::Backup;
use rusqlite::{Connection, OptionalExtension, Row, Savepoint, TransactionBehavior, params};

use crate::classify::{ChatState, Seen, Tracked};
use crate::render::Email;
use crate::thread::Thread;

/// Append-only: each entry moves the schema one version on (PRAGMA user_version).
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE progress (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    watermark      INTEGER NOT NULL,  -- highest export messages.id read
    baseline_done  INTEGER NOT NULL   -- the first run's decisions are committed
);
INSERT INTO progress (id, watermark, baseline_done) VALUES (1, 0, 0);

CREATE TABLE conversations (
    id               TEXT PRIMARY KEY,
    last_message     INTEGER NOT NULL,
    last_activity    INTEGER NOT NULL,            -- unix milliseconds
    ended            INTEGER NOT NULL DEFAULT 0,  -- an uncovered message ends the flow
    covered_through  INTEGER NOT NULL DEFAULT 0,
    emails           INTEGER NOT NULL DEFAULT 0,
    subject          TEXT,                        -- the thread's subject, fixed by its first email
    thread           TEXT NOT NULL DEFAULT ''     -- Message-IDs sent, root first, space separated
) WITHOUT ROWID;
-- The conversations with messages no email covers yet: all a run has to look at.
CREATE INDEX conversations_open ON conversations (id) WHERE last_message > covered_through;

CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY,
    conversation_id  TEXT NOT NULL,
    state            TEXT NOT NULL,
    covers_through   INTEGER NOT NULL,
    message_id       TEXT NOT NULL UNIQUE,
    created_at       INTEGER NOT NULL,  -- unix milliseconds; the Date header
    status           TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'parked')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    sent_at          INTEGER,
    mail_from        TEXT NOT NULL,
    mail_to          TEXT NOT NULL,
    mail_cc          TEXT NOT NULL,
    reply_to         TEXT,
    subject          TEXT NOT NULL,
    in_reply_to      TEXT,
    refs             TEXT,
    text_body        TEXT,  -- the bodies are dropped once sent: the file grows with
    html_body        TEXT   -- conversations, not with transcripts
);
CREATE INDEX outbox_pending ON outbox (id) WHERE status = 'pending';
CREATE INDEX outbox_by_conversation ON outbox (conversation_id);
"#,
    r#"
-- The open index covers what decides whether a conversation may be due, so the ones that can
-- only wait are skipped without reading their rows.
DROP INDEX conversations_open;
CREATE INDEX conversations_open ON conversations (id, ended, last_activity) WHERE last_message > covered_through;
"#,
    r#"
-- Held: judged and not emailed under the owner's rules, through this message. Held messages
-- are not covered: the conversation is looked at again when the visitor writes more, or when
-- the rules change (progress.rules, their fingerprint, differs).
ALTER TABLE conversations ADD COLUMN held_through INTEGER NOT NULL DEFAULT 0;
ALTER TABLE progress ADD COLUMN rules TEXT;
DROP INDEX conversations_open;
CREATE INDEX conversations_open ON conversations (id, ended, last_activity)
    WHERE last_message > covered_through AND last_message > held_through;
"#,
];

/// The two reads every run makes, each through its partial index: they cost what is open or
/// pending, not the number of conversations ever seen.
const OPEN_SQL: &str = "SELECT id, last_message, last_activity, ended, covered_through, emails, subject, thread \
     FROM conversations WHERE last_message > covered_through AND last_message > held_through \
     AND (ended OR last_activity <= ?3) AND id > ?1 ORDER BY id LIMIT ?2";
/// The outbox columns `pending_row` reads, in its order.
macro_rules! outbox_columns {
    () => {
        "id, conversation_id, state, attempts, message_id, created_at, mail_from, mail_to, mail_cc, reply_to, \
         subject, in_reply_to, refs, text_body, html_body, covers_through"
    };
}
const PENDING_SQL: &str =
    concat!("SELECT ", outbox_columns!(), " FROM outbox WHERE status = 'pending' AND id > ?1 ORDER BY id LIMIT ?2");
const LAST_SENT_SQL: &str = concat!(
    "SELECT ",
    outbox_columns!(),
    " FROM outbox WHERE conversation_id = ?1 AND status = 'sent' ORDER BY id DESC LIMIT 1"
);

/// Held for a whole run; the OS releases it when the process ends, however it ends.
pub struct RunLock {
    _file: File,
}

/// `None` when another run holds the lock.
pub fn try_lock(state_path: &Path) -> Result<Option<RunLock>> {
    let path = sibling(state_path, ".lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("state lock {}: opening", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(RunLock { _file: file })),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(e).with_context(|| format!("state lock {}: locking", path.display())),
    }
}

pub fn lock_path(state_path: &Path) -> PathBuf {
    sibling(state_path, ".lock")
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub watermark: i64,
    pub baseline_done: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    pub id: String,
    pub tracked: Tracked,
    pub thread: Thread,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub id: i64,
    pub conversation_id: String,
    pub state: ChatState,
    /// The last message the email covers.
    pub covers_through: i64,
    pub attempts: u32,
    pub email: Email,
}

pub struct State {
    conn: Connection,
}

impl State {
    pub fn open(path: &Path) -> Result<Self> {
        let shown = path.display();
        // Create it owner-only before SQLite does: it holds visitors' details. SQLite gives
        // its -wal and -shm files the same permissions.
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("state {shown}: creating"))?;
        let mut conn = Connection::open(path).with_context(|| format!("state {shown}: opening"))?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "wal")
            .with_context(|| format!("state {shown}: not a chat-notifier state file"))?;
        // WAL with synchronous=NORMAL can lose the last commits on power loss, never corrupt:
        // a lost "sent" mark means one re-send with the same Message-ID.
        conn.pragma_update(None, "synchronous", "normal")?;
        migrate(&mut conn).with_context(|| format!("state {shown}: migrating"))?;
        Ok(State { conn })
    }

    /// For commands that only look (status, preview): no file is created, nothing migrated.
    pub fn open_read_only(path: &Path) -> Result<Self> {
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("state {}: opening", path.display()))?;
        let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version != MIGRATIONS.len() {
            bail!(
                "state {}: schema {version}, this chat-notifier reads {}; run it once first",
                path.display(),
                MIGRATIONS.len()
            );
        }
        Ok(State { conn })
    }

    /// A throwaway copy of the state at `path` (empty when there is none yet), for a dry run:
    /// the same code as a real run, on a file deleted when the returned path is dropped.
    pub fn scratch_copy(path: &Path) -> Result<(Self, tempfile::TempPath)> {
        let scratch = tempfile::Builder::new()
            .prefix("chat-notifier-dry-run-")
            .suffix(".sqlite")
            .tempfile()
            .context("dry run: creating a scratch copy of the state")?
            .into_temp_path();
        if path.exists() {
            let source = Connection::open(path).with_context(|| format!("state {}: opening", path.display()))?;
            let mut copy = Connection::open(&scratch)?;
            Backup::new(&source, &mut copy)?
                .run_to_completion(1024, Duration::ZERO, None)
                .with_context(|| format!("state {}: copying for a dry run", path.display()))?;
        }
        let state = State::open(&scratch)?;
        // Nothing in a scratch copy needs to survive a crash.
        state.conn.execute_batch("PRAGMA journal_mode = memory; PRAGMA synchronous = off;")?;
        Ok((state, scratch))
    }

    pub fn progress(&self) -> Result<Progress> {
        Ok(self.conn.query_row("SELECT watermark, baseline_done FROM progress", [], |r| {
            Ok(Progress { watermark: r.get(0)?, baseline_done: r.get(1)? })
        })?)
    }

    /// Runs `f` as one transaction: all of it is committed, or none.
    pub fn atomically<T>(&mut self, f: impl FnOnce(&Tx) -> Result<T>) -> Result<T> {
        let tx = Tx(self.conn.savepoint()?);
        let out = f(&tx)?;
        tx.0.commit()?;
        Ok(out)
    }

    /// A page of the conversations with uncovered messages that may be due: ended, or idle
    /// since `idle_since` or earlier. In id order after `after`.
    pub fn open_conversations(&self, idle_since: DateTime<Utc>, after: &str, limit: usize) -> Result<Vec<Open>> {
        let mut stmt = self.conn.prepare_cached(OPEN_SQL)?;
        let rows = stmt.query_map(params![after, limit as i64, idle_since.timestamp_millis()], open_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// A page of the emails waiting to go out, oldest first, after outbox id `after`.
    pub fn pending(&self, after: i64, limit: usize) -> Result<Vec<Pending>> {
        let mut stmt = self.conn.prepare_cached(PENDING_SQL)?;
        let rows = stmt.query_map(params![after, limit as i64], pending_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn mark_sent(&self, outbox_id: i64, at: DateTime<Utc>) -> Result<()> {
        self.conn.execute(
            "UPDATE outbox SET status = 'sent', sent_at = ?2, attempts = attempts + 1, last_error = NULL, \
             text_body = NULL, html_body = NULL WHERE id = ?1",
            params![outbox_id, at.timestamp_millis()],
        )?;
        Ok(())
    }

    /// Records a failed attempt; `park` takes the email out of the retry queue for good.
    pub fn mark_failed(&self, outbox_id: i64, error: &str, park: bool) -> Result<()> {
        self.conn.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, \
             status = CASE WHEN ?3 THEN 'parked' ELSE status END WHERE id = ?1",
            params![outbox_id, error, park],
        )?;
        Ok(())
    }

    /// Deletes conversations whose every message is covered or held back, idle since before
    /// `before`, with no email waiting, and their email records. Returns (conversations, emails) deleted.
    /// A maintenance step: it reads the whole conversations table.
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

    /// What the state knows of one conversation, whatever it stands.
    pub fn conversation(&self, id: &str) -> Result<Option<Open>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, last_message, last_activity, ended, covered_through, emails, subject, thread \
                 FROM conversations WHERE id = ?1",
                [id],
                open_row,
            )
            .optional()?)
    }

    /// The conversation whose identifier (the one in its subject) is `identifier`. A scan of
    /// the conversations: for commands run by hand.
    pub fn find_by_identifier(&self, identifier: &str) -> Result<Option<String>> {
        let mut stmt = self.conn.prepare("SELECT id FROM conversations")?;
        let ids = stmt.query_map([], |r| r.get::<_, String>(0))?;
        for id in ids {
            let id = id?;
            if crate::thread::identifier(&id) == identifier {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// The last email sent for a conversation, and what the email before it covered (0 if none).
    pub fn last_sent(&self, conversation_id: &str) -> Result<Option<(Pending, i64)>> {
        let Some(last) = self.conn.query_row(LAST_SENT_SQL, [conversation_id], pending_row).optional()? else {
            return Ok(None);
        };
        let before: i64 = self.conn.query_row(
            "SELECT coalesce(max(covers_through), 0) FROM outbox WHERE conversation_id = ?1 AND id < ?2",
            params![conversation_id, last.id],
            |r| r.get(0),
        )?;
        Ok(Some((last, before)))
    }

    /// When the rules that hold emails back differ from the last run's, makes every held
    /// conversation open again, so that what the new rules make due is not lost. Returns how
    /// many were reopened; a full read of the conversations, once per change of rules.
    pub fn reopen_held_if_rules_changed(&mut self, fingerprint: &str) -> Result<usize> {
        self.atomically(|tx| {
            let stored: Option<String> = tx.0.query_row("SELECT rules FROM progress", [], |r| r.get(0))?;
            if stored.as_deref() == Some(fingerprint) {
                return Ok(0);
            }
            let reopened =
                tx.0.execute("UPDATE conversations SET held_through = 0 WHERE held_through > covered_through", [])?;
            tx.0.execute("UPDATE progress SET rules = ?1", [fingerprint])?;
            Ok(reopened)
        })
    }

    pub fn count_pending(&self) -> Result<usize> {
        Ok(self.conn.query_row("SELECT count(*) FROM outbox WHERE status = 'pending'", [], |r| r.get(0))?)
    }
}

/// The writes of one transaction; see `State::atomically`.
pub struct Tx<'c>(Savepoint<'c>);

impl Tx<'_> {
    /// Folds a batch of new messages into the conversations they belong to and moves the
    /// watermark past them.
    pub fn track<'a>(&self, seen: impl IntoIterator<Item = (&'a str, Seen)>, watermark: i64) -> Result<()> {
        let mut upsert = self.0.prepare_cached(
            "INSERT INTO conversations (id, last_message, last_activity, ended) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (id) DO UPDATE SET last_message = max(last_message, excluded.last_message), \
             last_activity = max(last_activity, excluded.last_activity), ended = ended OR excluded.ended",
        )?;
        for (id, s) in seen {
            upsert.execute(params![id, s.last_message, s.last_activity.timestamp_millis(), s.ended])?;
        }
        self.0.execute("UPDATE progress SET watermark = ?1", [watermark])?;
        Ok(())
    }

    /// Marks a conversation's messages through `through` covered without an email.
    pub fn cover(&self, conversation_id: &str, through: i64) -> Result<()> {
        self.0
            .prepare_cached("UPDATE conversations SET covered_through = ?2, ended = 0 WHERE id = ?1")?
            .execute(params![conversation_id, through])?;
        Ok(())
    }

    /// Records that the rules hold this conversation back, as judged through `through`.
    pub fn hold(&self, conversation_id: &str, through: i64) -> Result<()> {
        self.0
            .prepare_cached("UPDATE conversations SET held_through = ?2 WHERE id = ?1")?
            .execute(params![conversation_id, through])?;
        Ok(())
    }

    /// Queues an email and marks what it covers, as one step.
    pub fn queue(&self, conversation_id: &str, state: ChatState, covers_through: i64, email: &Email) -> Result<()> {
        self.0
            .prepare_cached(
                "INSERT INTO outbox (conversation_id, state, covers_through, message_id, created_at, mail_from, \
                 mail_to, mail_cc, reply_to, subject, in_reply_to, refs, text_body, html_body) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )?
            .execute(params![
                conversation_id,
                state.as_str(),
                covers_through,
                email.message_id,
                email.date.timestamp_millis(),
                email.from.to_string(),
                email.to.to_string(),
                email.cc.to_string(),
                email.reply_to.as_ref().map(ToString::to_string),
                email.subject,
                email.in_reply_to,
                email.references,
                email.text,
                email.html,
            ])?;
        // The thread's subject is fixed by its first email; a reply stores its "Re: " form
        // nowhere, so every reply carries the root subject exactly once prefixed.
        self.0
            .prepare_cached(
                "UPDATE conversations SET covered_through = ?2, ended = 0, emails = emails + 1, \
                 subject = coalesce(subject, ?3), thread = ltrim(thread || ' ' || ?4) WHERE id = ?1",
            )?
            .execute(params![conversation_id, covers_through, email.subject, email.message_id])?;
        Ok(())
    }

    pub fn finish_baseline(&self) -> Result<()> {
        self.0.execute("UPDATE progress SET baseline_done = 1", [])?;
        Ok(())
    }
}

fn open_row(r: &Row) -> rusqlite::Result<Open> {
    Ok(Open {
        id: r.get(0)?,
        tracked: Tracked {
            last_message: r.get(1)?,
            last_activity: millis(r.get(2)?),
            ended: r.get(3)?,
            covered_through: r.get(4)?,
            emails: r.get(5)?,
        },
        thread: Thread {
            subject: r.get(6)?,
            message_ids: r.get::<_, String>(7)?.split_whitespace().map(str::to_owned).collect(),
        },
    })
}

fn pending_row(r: &Row) -> rusqlite::Result<Pending> {
    let bad =
        |i: usize, what: String| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, what.into());
    let state: String = r.get(2)?;
    let mailboxes = |i: usize| -> rusqlite::Result<lettre::message::Mailboxes> {
        let s: String = r.get(i)?;
        if s.is_empty() {
            return Ok(lettre::message::Mailboxes::new());
        }
        s.parse().map_err(|e| bad(i, format!("{e}")))
    };
    Ok(Pending {
        id: r.get(0)?,
        conversation_id: r.get(1)?,
        state: ChatState::parse(&state).ok_or_else(|| bad(2, format!("unknown state {state:?}")))?,
        covers_through: r.get(15)?,
        attempts: r.get(3)?,
        email: Email {
            message_id: r.get(4)?,
            date: millis(r.get(5)?),
            from: r.get::<_, String>(6)?.parse().map_err(|e| bad(6, format!("{e}")))?,
            to: mailboxes(7)?,
            cc: mailboxes(8)?,
            reply_to: r
                .get::<_, Option<String>>(9)?
                .map(|s| s.parse().map_err(|e| bad(9, format!("{e}"))))
                .transpose()?,
            subject: r.get(10)?,
            in_reply_to: r.get(11)?,
            references: r.get(12)?,
            text: r.get::<_, Option<String>>(13)?.unwrap_or_default(),
            html: r.get::<_, Option<String>>(14)?.unwrap_or_default(),
        },
    })
}

fn millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn migrate(conn: &mut Connection) -> Result<()> {
    // Most runs find the schema current: no write transaction for them.
    let current: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if current == MIGRATIONS.len() {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
    let version: usize = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > MIGRATIONS.len() {
        bail!("written by a newer chat-notifier (schema {version}, this one knows {})", MIGRATIONS.len());
    }
    for migration in &MIGRATIONS[version..] {
        tx.execute_batch(migration)?;
    }
    tx.pragma_update(None, "user_version", MIGRATIONS.len())?;
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrating_twice_is_a_no_op() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        conn.execute("UPDATE progress SET watermark = 7", []).unwrap();
        migrate(&mut conn).unwrap();
        let (watermark, version): (i64, usize) = conn
            .query_row("SELECT watermark, (SELECT user_version FROM pragma_user_version) FROM progress", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((watermark, version), (7, MIGRATIONS.len()));
    }

    #[test]
    fn each_run_reads_through_a_partial_index() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        for (sql, index) in [(OPEN_SQL, "conversations_open"), (PENDING_SQL, "outbox_pending")] {
            let params = rusqlite::params_from_iter(["", "0", "0"].iter().take(if sql == OPEN_SQL { 3 } else { 2 }));
            let plan: String = conn.query_row(&format!("EXPLAIN QUERY PLAN {sql}"), params, |r| r.get(3)).unwrap();
            assert!(plan.starts_with("SEARCH") && plan.contains(index), "{sql}: {plan}");
        }
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        assert!(migrate(&mut conn).unwrap_err().to_string().contains("newer"));
    }

    #[test]
    fn second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.sqlite");
        let first = try_lock(&state).unwrap();
        assert!(first.is_some());
        assert!(try_lock(&state).unwrap().is_none());
        drop(first);
        assert!(try_lock(&state).unwrap().is_some());
    }
}
