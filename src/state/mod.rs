//! The notifier's own state, a SQLite file (the default) or a PostgreSQL database several hosts
//! share (`db.rs` runs the same statements on either, `pg.rs` keeps PostgreSQL's schema,
//! `lease.rs` its run lease): what each conversation's emails have covered, the thread
//! each belongs to, and the outbox through which every email passes. Never the export. All SQL
//! on the state lives in this module: `tracking` (what a run folds in and decides),
//! `notices` (the alarms, digests and summaries that are about no one conversation), `outbox`
//! (what is sent), `inspect` (what the hand-run commands read).
//!
//! The outbox is what makes sending safe: an email is recorded as pending in the same
//! transaction that marks its messages covered, then sent, then marked sent. A crash or an
//! SMTP failure in between leaves it pending, and the next run sends it again with the same
//! Message-ID.

mod copy;
pub(crate) mod db;
mod deliveries;
mod inspect;
pub mod lease;
mod lock;
mod notices;
mod outbox;
mod pg;
mod tracking;

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rusqlite::backup::Backup;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use db::{Conn, args};

pub use copy::{Copied, copy};
pub use deliveries::{Delivery, DestinationStanding, ParkedDelivery, THREAD_LOST};
pub use inspect::{Standing, StatusPage, StatusRow, Summary};
pub use lock::{Holder, LockLost, holder};
pub use notices::{DigestItem, Watched, alert_key};
pub use outbox::{Kind, Pending, Unreadable};
pub use tracking::{Covered, DueCursor, Known, Open, Progress, Resync};

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
    r#"
-- What survives the export being restored or regenerated with other ids (see tracking.rs):
-- covered_at, the latest activity an email (or the first run) covered, recognises covered
-- messages by their time instead of their id; anchor is the row at the watermark as read, so a
-- changed row there is noticed; read_count (rows read at or below the watermark) and
-- audited_at let a periodic count notice rows inserted below it.
ALTER TABLE conversations ADD COLUMN covered_at INTEGER;
UPDATE conversations SET covered_at = last_activity WHERE covered_through >= last_message AND covered_through > 0;
-- Messages whose conversations row had not arrived yet: when that was first seen.
ALTER TABLE conversations ADD COLUMN missing_since INTEGER;
ALTER TABLE progress ADD COLUMN anchor TEXT;
ALTER TABLE progress ADD COLUMN read_count INTEGER;
UPDATE progress SET read_count = 0 WHERE watermark = 0;
ALTER TABLE progress ADD COLUMN audited_at INTEGER NOT NULL DEFAULT 0;
"#,
    r#"
-- The ids read within a source's commit window (PostgreSQL: ids committed out of order), so a
-- run that reads the window again reads none of them twice.
CREATE TABLE recent_ids (id INTEGER PRIMARY KEY);
"#,
    r#"
-- Who each conversation is with, learned when it is first judged: an email about one shows
-- the person's other conversations (pipeline/people.rs), found through this index.
ALTER TABLE conversations ADD COLUMN visitor_id TEXT;
ALTER TABLE conversations ADD COLUMN bot_id TEXT;
CREATE INDEX conversations_by_visitor ON conversations (visitor_id) WHERE visitor_id IS NOT NULL;
"#,
    r#"
-- The filtering headers of a queued email (X-Chat-State, X-Chat-Bot, List-Id, Thread-Topic),
-- as a JSON array of [name, value]: a retry carries the same ones.
ALTER TABLE outbox ADD COLUMN headers TEXT;
"#,
    r#"
-- Emails sent in the last hour or day, for the rate limits: a range of this index.
CREATE INDEX outbox_sent ON outbox (sent_at) WHERE status = 'sent';
"#,
    r#"
-- The last email's Outlook conversation index (Thread-Index, base64), which the next extends.
ALTER TABLE conversations ADD COLUMN thread_index TEXT;
"#,
    r#"
-- Each bot's latest message as read, for the silent-source alarm (notices.rs), and the alarm's
-- own thread: silent_since is the latest message's time when an alert went out, until chats
-- come in again. Seeded with what the state knows, so a bot silent since the upgrade is seen.
CREATE TABLE bots (
  id TEXT PRIMARY KEY, name TEXT, last_activity INTEGER NOT NULL, silent_since INTEGER,
  subject TEXT, thread TEXT NOT NULL DEFAULT '', thread_index TEXT) WITHOUT ROWID;
INSERT INTO bots (id, last_activity)
  SELECT bot_id, max(last_activity) FROM conversations WHERE bot_id IS NOT NULL GROUP BY bot_id;
-- Conversations waiting for their digest (entry: what the digest says of each, as JSON), and
-- the digest's key once it is queued.
CREATE TABLE digest_items (
  conversation_id TEXT NOT NULL, digest TEXT NOT NULL, listed_at INTEGER NOT NULL, entry TEXT NOT NULL,
  sent_in TEXT);
CREATE INDEX digest_waiting ON digest_items (digest) WHERE sent_in IS NULL;
CREATE INDEX digest_items_by_conversation ON digest_items (conversation_id) WHERE sent_in IS NULL;
-- An email the flood guard listed in a summary instead of sending it is 'summarised': SQLite
-- cannot change a CHECK in place, so the outbox is copied into a table that allows it.
CREATE TABLE outbox_new (
    id               INTEGER PRIMARY KEY,
    conversation_id  TEXT NOT NULL,
    state            TEXT NOT NULL,
    covers_through   INTEGER NOT NULL,
    message_id       TEXT NOT NULL UNIQUE,
    created_at       INTEGER NOT NULL,
    status           TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'parked', 'summarised')),
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
    text_body        TEXT,
    html_body        TEXT,
    headers          TEXT
);
INSERT INTO outbox_new SELECT id, conversation_id, state, covers_through, message_id, created_at, status, attempts,
    last_error, sent_at, mail_from, mail_to, mail_cc, reply_to, subject, in_reply_to, refs, text_body, html_body, headers
  FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;
CREATE INDEX outbox_pending ON outbox (id) WHERE status = 'pending';
CREATE INDEX outbox_by_conversation ON outbox (conversation_id);
CREATE INDEX outbox_sent ON outbox (sent_at) WHERE status = 'sent';
"#,
    r#"
-- The open conversations by when they may be due: a run reads the ended ones and those idle
-- past the shortest abandon_after (a range of conversations_idle), never the ones still typing.
CREATE INDEX conversations_ended ON conversations (id)
    WHERE last_message > covered_through AND last_message > held_through AND ended;
CREATE INDEX conversations_idle ON conversations (last_activity, id)
    WHERE last_message > covered_through AND last_message > held_through AND NOT ended;
-- What status lists first of those held back by the rules: the most recent.
CREATE INDEX conversations_held ON conversations (last_activity, id, last_message, covered_through, held_through)
    WHERE held_through > covered_through AND last_message <= held_through;
-- The open index also carries the columns its condition names, so status counts the open
-- conversations from the index alone, not from each one's row.
DROP INDEX conversations_open;
CREATE INDEX conversations_open ON conversations (id, ended, last_activity, last_message, covered_through, held_through)
    WHERE last_message > covered_through AND last_message > held_through;
"#,
    r#"
-- The emails waiting or parked, which status lists and leaves out of its counts, found without
-- reading the sent ones (kept until prune: after a backfill, hundreds of thousands).
CREATE INDEX outbox_waiting ON outbox (conversation_id) WHERE status IN ('pending', 'parked');
"#,
    r#"
-- How many conversations are open and how many held (inspect.rs' OPEN and HELD), kept by the
-- writes themselves so that status need not count 200,000 index entries. A write that leaves
-- both standings as they were (a new message in a chat still going) writes nothing here.
CREATE TABLE tallies (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    open  INTEGER NOT NULL,
    held  INTEGER NOT NULL
);
INSERT INTO tallies SELECT 1,
    (SELECT count(*) FROM conversations WHERE last_message > covered_through AND last_message > held_through),
    (SELECT count(*) FROM conversations WHERE held_through > covered_through AND last_message <= held_through);
CREATE TRIGGER tallies_insert AFTER INSERT ON conversations BEGIN
    UPDATE tallies SET
        open = open + (NEW.last_message > NEW.covered_through AND NEW.last_message > NEW.held_through),
        held = held + (NEW.held_through > NEW.covered_through AND NEW.last_message <= NEW.held_through);
END;
CREATE TRIGGER tallies_update AFTER UPDATE OF last_message, covered_through, held_through ON conversations
WHEN (OLD.last_message > OLD.covered_through AND OLD.last_message > OLD.held_through)
        <> (NEW.last_message > NEW.covered_through AND NEW.last_message > NEW.held_through)
    OR (OLD.held_through > OLD.covered_through AND OLD.last_message <= OLD.held_through)
        <> (NEW.held_through > NEW.covered_through AND NEW.last_message <= NEW.held_through)
BEGIN
    UPDATE tallies SET
        open = open + (NEW.last_message > NEW.covered_through AND NEW.last_message > NEW.held_through)
            - (OLD.last_message > OLD.covered_through AND OLD.last_message > OLD.held_through),
        held = held + (NEW.held_through > NEW.covered_through AND NEW.last_message <= NEW.held_through)
            - (OLD.held_through > OLD.covered_through AND OLD.last_message <= OLD.held_through);
END;
CREATE TRIGGER tallies_delete AFTER DELETE ON conversations BEGIN
    UPDATE tallies SET
        open = open - (OLD.last_message > OLD.covered_through AND OLD.last_message > OLD.held_through),
        held = held - (OLD.held_through > OLD.covered_through AND OLD.last_message <= OLD.held_through);
END;
"#,
    r#"
-- The last outbox row the flood guard has judged: mail.burst is about the emails one run adds,
-- not about those an earlier run queued that still wait for the hourly limit.
ALTER TABLE progress ADD COLUMN guarded_through INTEGER NOT NULL DEFAULT 0;
"#,
    r#"
-- The failures of an email that count toward max_attempts (a permanent refusal, the connection
-- lost in its own transaction); attempts counts every try, an outage's too.
ALTER TABLE outbox ADD COLUMN refusals INTEGER NOT NULL DEFAULT 0;
"#,
    r#"
-- The rows read within a source's commit window, each by its position (what the watermark
-- orders) and a key of its own: a source read by time (Flowise on PostgreSQL) gives rows
-- positions that two rows may share, so a row is recognised by its key. Other sources: the key
-- is the id.
CREATE TABLE recent_rows (position INTEGER NOT NULL, key INTEGER NOT NULL, PRIMARY KEY (position, key))
    WITHOUT ROWID;
INSERT INTO recent_rows (position, key) SELECT id, id FROM recent_ids;
DROP TABLE recent_ids;
"#,
    r#"
-- Notifications for the destinations beside email (signed webhooks, Slack): one row per
-- notification and destination, queued in the transaction that decides it, as an email is in
-- the outbox; `key` is the idempotency key sent on every try, `document` the JSON sent (dropped
-- once delivered), `not_before` when a server that asked for room (Retry-After) gets the next.
CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY,
    destination     TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    state           TEXT NOT NULL,
    key             TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    document        TEXT,
    status          TEXT NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    refusals        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    not_before      INTEGER,
    sent_at         INTEGER,
    UNIQUE (destination, key)
);
CREATE INDEX deliveries_waiting ON deliveries (destination, id) WHERE status IN ('pending', 'parked');
-- What went to a destination lately, for its max_per_hour.
CREATE INDEX deliveries_sent ON deliveries (destination, sent_at) WHERE status = 'sent';
-- A conversation's thread at a destination that threads (Slack's thread_ts): what a
-- Message-ID is to email. Never a secret.
CREATE TABLE destination_threads (
    destination     TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    root            TEXT NOT NULL,
    PRIMARY KEY (destination, conversation_id)
) WITHOUT ROWID;
"#,
    r#"
-- The last deliveries row the destinations' flood guard has judged (each destination's `burst`
-- is about the notifications one run adds, as mail.burst is, never about those an earlier run
-- queued that still wait); what was queued before this version is judged already. A table of
-- one row, not a progress column, so that a state taken back to an earlier schema by hand
-- migrates again. A notification listed in a summary instead of going one by one is
-- 'summarised'.
CREATE TABLE IF NOT EXISTS deliveries_guard (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    guarded_through INTEGER NOT NULL
);
INSERT OR IGNORE INTO deliveries_guard (id, guarded_through) SELECT 1, coalesce(max(id), 0) FROM deliveries;
"#,
];

/// The page cache of a big run (`State::for_big_run`), in KiB: about what the state will hold
/// (100 bytes a message read), within these bounds. With random ids a big first run writes its
/// pages in no order, and a cache smaller than the state spills them to the WAL again and again:
/// at 300,000 chats, 1,026 MB written with 64 MB of cache, 728 MB with 384 MB, for a 306 MB state
/// (issue 27).
const BIG_RUN_CACHE_KIB: (i64, i64) = (64 * 1024, 1024 * 1024);
/// A WAL left this big by a run is checkpointed and truncated at its end (`State::after_run`).
const BIG_WAL: u64 = 4 << 20;

/// Where the state is: a SQLite file (the default), or a PostgreSQL database that several hosts
/// may share (`state = "postgresql://..."`, its password from `state_password_env` or
/// `state_password_file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum At {
    File(PathBuf),
    Postgres {
        url: String,
        password_env: Option<String>,
        password_file: Option<PathBuf>,
        /// How long the run lease lasts unless renewed (`lease.rs`).
        lease: Duration,
    },
}

impl At {
    /// Where the config's state is, with what it takes to open it.
    pub fn of(config: &crate::config::Config) -> At {
        match config.state_url() {
            Some(url) => At::Postgres {
                url: url.to_owned(),
                password_env: config.state_password_env.clone(),
                password_file: config.state_password_file.clone(),
                lease: config.state_lease.and_then(|s| s.0.to_std().ok()).unwrap_or(lease::DEFAULT_LENGTH),
            },
            None => At::File(config.state.clone()),
        }
    }

    /// As errors and notes name it: the file's path, or the URL without its password.
    pub fn shown(&self) -> String {
        match self {
            At::File(path) => path.display().to_string(),
            At::Postgres { url, .. } => crate::pgconn::shown_url(url),
        }
    }

    fn connect(&self) -> Result<postgres::Client> {
        let At::Postgres { url, password_env, password_file, .. } = self else {
            bail!("state {}: not a PostgreSQL state", self.shown());
        };
        let password = crate::config::read_secret(
            "state_password_env",
            "state_password_file",
            password_env.as_deref(),
            password_file.as_deref(),
        )?;
        crate::pgconn::connect_postgres(url, password.as_deref(), "state")
            .with_context(|| format!("state {}: connecting", self.shown()))
    }
}

/// Held for a whole run. A file lock: the OS releases it when the process ends, however it
/// ends. A lease (PostgreSQL): released when dropped, and lapsed when its holder stops
/// renewing it (`lease.rs`).
pub struct RunLock {
    held: Held,
}

enum Held {
    /// The lock file held, and its path: `renew` asks whether the file there is still it.
    File { file: File, path: PathBuf },
    /// The run lease, and the state as lines name it.
    Lease { lease: lease::Lease, shown: String },
}

impl RunLock {
    /// Keeps the lock, asked by a watcher between its cycles and by every run right before it
    /// sends: for a file, whether the file held is still the one at its path (`lock.rs`); for
    /// a lease, extended. False when it was lost (the lock file removed or replaced; the lease
    /// lapsed or taken by another holder): the run must stop sending.
    pub fn renew(&mut self) -> Result<bool> {
        match &mut self.held {
            Held::File { file, path } => lock::still_held(file, path),
            Held::Lease { lease, .. } => lease.renew(),
        }
    }

    /// `renew`, as an error naming the lock when it is lost: asked right before sending.
    pub fn ensure_held(&mut self) -> Result<()> {
        if self.renew()? {
            return Ok(());
        }
        match &self.held {
            Held::File { path, .. } => Err(LockLost(path.clone()).into()),
            Held::Lease { shown, .. } => {
                bail!(
                    "state {shown}: this run's lease lapsed or was taken over (a long pause?); it stops before sending"
                )
            }
        }
    }

    /// Writes "watch pid N since RFC3339" into the lock file, for `status` (`lock.rs`); a lease
    /// names its holder's command itself.
    pub fn announce_watcher(&mut self, since: chrono::DateTime<chrono::Utc>) -> Result<()> {
        match &mut self.held {
            Held::File { file, .. } => lock::announce_watcher(file, since),
            Held::Lease { .. } => Ok(()),
        }
    }

    /// What a run checks before each email or notification: none for a file lock.
    pub fn watch(&self) -> Option<lease::Watch> {
        match &self.held {
            Held::File { .. } => None,
            Held::Lease { lease, .. } => Some(lease.watch()),
        }
    }
}

/// `None` when another run holds the lock (or the lease).
pub fn try_lock(at: &At) -> Result<Option<RunLock>> {
    match at {
        At::File(state_path) => try_lock_file(state_path),
        At::Postgres { lease, .. } => {
            let client = at.connect()?;
            let shown = at.shown();
            let taken = lease::Lease::try_take(client, shown.clone(), *lease)
                .with_context(|| format!("state {shown}: taking the run lease"))?;
            Ok(taken.map(|lease| RunLock { held: Held::Lease { lease, shown } }))
        }
    }
}

/// Who holds the lock, in words for the line of a run (or a watcher) turned away: the lock
/// file's holder (`lock.rs`: a watcher since when, or another run), or the lease's.
pub fn held_by(at: &At) -> String {
    match at {
        At::File(path) => lock::held_by(path),
        At::Postgres { .. } => {
            let holder = at.connect().and_then(|mut c| lease::holder(&mut c)).ok().flatten();
            format!("another run is in progress ({})", held_words(&at.shown(), holder))
        }
    }
}

/// The lease's holder, in words, for a run the lease refused.
fn held_words(shown: &str, holder: Option<lease::Holder>) -> String {
    match holder {
        Some(h) if h.held => format!("the lease in {shown} is held by {}", h.describe()),
        // Given back between the refusal and this look: that run has just ended.
        Some(h) => format!("the lease in {shown} was held a moment ago by {}", h.holder),
        None => format!("the lease in {shown} is held"),
    }
}

fn try_lock_file(state_path: &Path) -> Result<Option<RunLock>> {
    let path = lock_path(state_path);
    refuse_symlink(&path, "state lock")?;
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .with_context(|| format!("state lock {}: opening", path.display()))?;
    owner_only(&file).with_context(|| format!("state lock {}: setting mode 0600", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(RunLock { held: Held::File { file, path } })),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(e).with_context(|| format!("state lock {}: locking", path.display())),
    }
}

pub fn lock_path(state_path: &Path) -> PathBuf {
    let mut s = state_path.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// Refuses a symbolic link at the state's path, its lock's, or SQLite's `-wal` and `-shm`
/// beside it: a run would write visitors' details wherever one points, or change the mode of
/// what it names (as root, any file), and a command that only reads would create SQLite's
/// files beside the target. Every way of opening the state, and `check`, ask this first.
pub fn refuse_links(path: &Path) -> Result<()> {
    refuse_symlink(path, "state")?;
    refuse_symlink(&lock_path(path), "state lock")?;
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        refuse_symlink(Path::new(&side), "state")?;
    }
    Ok(())
}

/// A symlink at the state's path could make us write visitors' details wherever it points
/// (or create its target): refused, with the path.
fn refuse_symlink(path: &Path, what: &str) -> Result<()> {
    if path.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()) {
        bail!("{what} {}: is a symbolic link; refusing to follow it (give the real path)", path.display());
    }
    Ok(())
}

/// 0600 whatever the file was created with: it holds visitors' details.
fn owner_only(file: &File) -> std::io::Result<()> {
    if file.metadata()?.permissions().mode() & 0o777 != 0o600 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

pub struct State {
    conn: Conn,
    /// As errors and notes name the state: the file's path, or the URL without its password.
    path: PathBuf,
    /// The file had no schema when opened: this run is its first.
    pub created: bool,
    /// A dry run's PostgreSQL state: its copies live in one transaction that is never
    /// committed, and each `atomically` is a savepoint within it.
    scratch: bool,
    /// The run's lease, checked before each email or notification is sent (`may_send`).
    lease: Option<lease::Watch>,
    /// Tuned for a big run (`for_big_run`).
    big_run: bool,
    /// A dry run's scratch file keeps no rollback journal (`scratch_copy`): a step that fails
    /// cannot be undone there, so none may follow it.
    unjournaled: Unjournaled,
    /// On PostgreSQL, how long a transaction of this run may wait on it between statements before
    /// the server ends its session (`idle_in_transaction_session_timeout`): the lease's length. A
    /// host paused mid-transaction (a frozen VM, SIGSTOP) would otherwise keep its row locks, and
    /// the host that took its lapsed lease over would wait on them for ever.
    idle_limit: Duration,
}

impl State {
    pub fn open(path: &Path) -> Result<Self> {
        State::open_as(path, path)
    }

    /// Opens the state wherever it is, creating or upgrading its schema.
    pub fn open_at(at: &At) -> Result<Self> {
        match at {
            At::File(path) => State::open(path),
            At::Postgres { lease, .. } => {
                let mut client = at.connect()?;
                let shown = at.shown();
                let created = pg::migrate(&mut client).with_context(|| format!("state {shown}: migrating"))?;
                Ok(State { idle_limit: *lease, ..State::of_pg(client, &shown, created) })
            }
        }
    }

    fn of_pg(client: postgres::Client, shown: &str, created: bool) -> Self {
        State {
            conn: Conn::Pg(Box::new(std::cell::RefCell::new(db::PgConn::new(client)))),
            path: PathBuf::from(shown),
            created,
            scratch: false,
            lease: None,
            big_run: false,
            unjournaled: Unjournaled::No,
            idle_limit: lease::DEFAULT_LENGTH,
        }
    }

    /// Opens the file at `path`, naming it `shown_as` in errors and notes (a dry run's scratch
    /// copy is named as the state it copies).
    fn open_as(path: &Path, shown_as: &Path) -> Result<Self> {
        let shown = shown_as.display();
        refuse_links(path)?;
        // Create it owner-only before SQLite does, and make an existing one owner-only: it
        // holds visitors' details. SQLite gives its -wal and -shm files the same permissions.
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .with_context(|| format!("state {shown}: opening"))?;
        owner_only(&file).with_context(|| format!("state {shown}: setting mode 0600"))?;
        for suffix in ["-wal", "-shm"] {
            let mut side = path.as_os_str().to_owned();
            side.push(suffix);
            let side = Path::new(&side);
            if let Ok(f) = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(side) {
                owner_only(&f).with_context(|| format!("state {}: setting mode 0600", side.display()))?;
            }
        }
        let mut conn = Connection::open(path).with_context(|| format!("state {shown}: opening"))?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.set_prepared_statement_cache_capacity(STATEMENTS);
        compile_once(&conn)?;
        conn.pragma_update(None, "journal_mode", "wal").map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::NotADatabase) => anyhow::anyhow!("state {shown}: not a chat-notifier state file"),
            _ => anyhow::Error::new(e).context(format!("state {shown}: opening")),
        })?;
        // WAL with synchronous=NORMAL can lose the last commits on power loss, never corrupt:
        // a lost "sent" mark means one re-send with the same Message-ID.
        conn.pragma_update(None, "synchronous", "normal")?;
        known_version(&conn, shown_as)?;
        let created = migrate(&mut conn).with_context(|| format!("state {shown}: migrating"))?;
        Ok(State {
            conn: Conn::Sqlite(conn),
            path: shown_as.to_owned(),
            created,
            scratch: false,
            lease: None,
            big_run: false,
            unjournaled: Unjournaled::No,
            idle_limit: Duration::ZERO,
        })
    }

    /// For commands that only look, where there may be no state yet: None when there is none.
    pub fn open_if_there(path: &Path) -> Result<Option<Self>> {
        refuse_links(path)?;
        if path.exists() { State::open_read_only(path).map(Some) } else { Ok(None) }
    }

    /// `open_if_there`, wherever the state is: for PostgreSQL, none when no run has created its
    /// schema yet.
    pub fn open_if_there_at(at: &At) -> Result<Option<Self>> {
        match at {
            At::File(path) => State::open_if_there(path),
            At::Postgres { .. } => {
                let mut client = at.connect()?;
                let shown = at.shown();
                match pg::known_version(&mut client).with_context(|| format!("state {shown}: reading"))? {
                    None => Ok(None),
                    Some(v) if v == MIGRATIONS.len() => Ok(Some(State::of_pg(client, &shown, false))),
                    Some(v) if v > MIGRATIONS.len() => bail!(
                        "state {shown}: written by a newer chat-notifier (schema {v}, this one knows {})",
                        MIGRATIONS.len()
                    ),
                    Some(v) => bail!(
                        "state {shown}: schema {v}, this chat-notifier reads {}; a run (`chat-notifier run`) upgrades it",
                        MIGRATIONS.len()
                    ),
                }
            }
        }
    }

    /// For commands that only look (status, preview): no file is created, nothing migrated.
    pub fn open_read_only(path: &Path) -> Result<Self> {
        refuse_links(path)?;
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("state {}: opening", path.display()))?;
        conn.set_prepared_statement_cache_capacity(STATEMENTS);
        compile_once(&conn)?;
        let version = known_version(&conn, path)?;
        if version != MIGRATIONS.len() {
            bail!(
                "state {}: schema {version}, this chat-notifier reads {}; a run (`chat-notifier run`) upgrades it",
                path.display(),
                MIGRATIONS.len()
            );
        }
        Ok(State {
            conn: Conn::Sqlite(conn),
            path: path.to_owned(),
            created: false,
            scratch: false,
            lease: None,
            big_run: false,
            unjournaled: Unjournaled::No,
            idle_limit: Duration::ZERO,
        })
    }

    /// `open_read_only`, wherever the state is.
    pub fn open_read_only_at(at: &At) -> Result<Self> {
        match at {
            At::File(path) => State::open_read_only(path),
            At::Postgres { .. } => State::open_if_there_at(at)?
                .with_context(|| format!("state {}: no schema yet (the first run creates it)", at.shown())),
        }
    }

    /// The schema version of the state file at `path`, and the one this build writes: for
    /// `check`, which neither creates nor migrates it.
    pub fn schema_of(path: &Path) -> Result<(usize, usize)> {
        refuse_links(path)?;
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("state {}: opening", path.display()))?;
        let version = known_version(&conn, path)?;
        Ok((version, MIGRATIONS.len()))
    }

    /// What `check` says of a PostgreSQL state, changing nothing: its URL (without password),
    /// its schema version, the run lease's holder, and the last run's host and settings beside
    /// this host's (`this_host`, `Config::settings_fingerprint`).
    pub fn check_postgres(at: &At, this_host: &str) -> Result<String> {
        let shown = at.shown();
        let mut client = at.connect()?;
        let version = match pg::known_version(&mut client).with_context(|| format!("state {shown}: reading"))? {
            None => return Ok(format!("{shown} (no schema yet: the first run creates it)")),
            Some(v) if v > MIGRATIONS.len() => bail!(
                "state {shown}: written by a newer chat-notifier (schema {v}, this one knows {})",
                MIGRATIONS.len()
            ),
            Some(v) if v < MIGRATIONS.len() => {
                return Ok(format!("{shown} (schema {v}: the next run upgrades it to {})", MIGRATIONS.len()));
            }
            Some(v) => v,
        };
        let lease = lease::holder(&mut client).with_context(|| format!("state {shown}: reading the lease"))?;
        let last = pg::last_run(&mut client).with_context(|| format!("state {shown}: reading the last run"))?;
        let state = State::of_pg(client, &shown, false);
        let s = state.summary()?;
        let mut line = format!(
            "{shown} (PostgreSQL, schema {version}; {} conversations, {} emails waiting, {} parked; lease: {}",
            s.conversations,
            s.waiting,
            s.parked,
            lease.map_or_else(|| "never taken".to_owned(), |h| h.describe()),
        );
        if let Some((host, fingerprint, at)) = last {
            line.push_str(&format!("; last run on {host} at {at} with settings {fingerprint}"));
        }
        line.push_str(&format!("; this host's settings {this_host})"));
        Ok(line)
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
        let existed = path.exists();
        refuse_links(path)?;
        if existed {
            let source = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
                .with_context(|| format!("state {}: opening", path.display()))?;
            known_version(&source, path)?;
            let mut copy = Connection::open(&scratch)?;
            Backup::new(&source, &mut copy)?
                .run_to_completion(1024, Duration::ZERO, None)
                .with_context(|| format!("state {}: copying for a dry run", path.display()))?;
        }
        // Errors and notes name the real file, not the copy.
        let mut state = State::open_as(&scratch, path)?;
        // Nothing in a scratch copy needs to survive a crash, nor a failed step: a dry run stops
        // at its first error (`Unjournaled`). Keeping no journal is about a tenth of a big
        // preview's CPU time (issue 27, 100,000 chats), and the 13 MB a journal in memory held.
        state.conn.batch("PRAGMA journal_mode = off; PRAGMA synchronous = off;")?;
        state.unjournaled = Unjournaled::Intact;
        Ok((state, scratch))
    }

    /// `scratch_copy`, wherever the state is. On PostgreSQL the copy is a set of temporary
    /// tables (which the session finds before the real ones) made in one transaction that is
    /// rolled back when the run ends: the real tables are only read, and nothing of them is
    /// locked against a real run on another host. A database with no schema yet gets one in
    /// that transaction only.
    pub fn scratch_copy_at(at: &At) -> Result<(Self, Option<tempfile::TempPath>)> {
        match at {
            At::File(path) => State::scratch_copy(path).map(|(s, p)| (s, Some(p))),
            At::Postgres { .. } => {
                let mut client = at.connect()?;
                let shown = at.shown();
                let fresh =
                    pg::known_version(&mut client).with_context(|| format!("state {shown}: reading"))?.is_none();
                if fresh {
                    // No schema yet: made in the dry run's own transaction, never committed, so
                    // that the database stays as it was.
                    client
                        .batch_execute(&format!("BEGIN;\n{}", pg::migrations()[0]))
                        .map_err(crate::pgconn::pg_error)
                        .with_context(|| format!("state {shown}: a schema for a dry run"))?;
                } else {
                    pg::migrate(&mut client).with_context(|| format!("state {shown}: migrating"))?;
                    pg::scratch(&mut client).with_context(|| format!("state {shown}: copying for a dry run"))?;
                }
                let mut state = State::of_pg(client, &shown, false);
                state.scratch = true;
                let created = !state.progress()?.baseline_done && state.progress()?.watermark == 0;
                state.created = created;
                Ok((state, None))
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_postgres(&self) -> bool {
        self.conn.is_postgres()
    }

    /// Records this run's host and settings fingerprint on a shared (PostgreSQL) state; when
    /// the last run was on another host with other settings, says so in one line. Nothing on a
    /// SQLite file, which one host has.
    pub fn record_run(&mut self, fingerprint: &str) -> Result<()> {
        if !self.conn.is_postgres() {
            return Ok(());
        }
        let me = lease::host();
        let last = self.context(self.conn.query_opt(
            "SELECT host, fingerprint, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
             FROM last_run WHERE id = 1",
            args![],
            |r| Ok((r.get::<String>(0)?, r.get::<String>(1)?, r.get::<String>(2)?)),
        ))?;
        if let Some((host, theirs, at)) = last
            && host != me
            && theirs != fingerprint
        {
            log::warn!(
                "state {}: this host ({me}) runs with settings {fingerprint}, the last run on {host} at {at} with \
                 {theirs}: the hosts sharing this state have different configs",
                self.path.display()
            );
        }
        self.context(self.conn.execute(
            "INSERT INTO last_run AS l (id, host, fingerprint, at) VALUES (1, ?1, ?2, now()) \
             ON CONFLICT (id) DO UPDATE SET host = excluded.host, fingerprint = excluded.fingerprint, at = excluded.at",
            args![me, fingerprint],
        ))?;
        Ok(())
    }

    /// Checks the run's lease before each email or notification is sent.
    pub fn guard_with(&mut self, lease: Option<lease::Watch>) {
        self.lease = lease;
    }

    /// Whether this run may still send: always for a file lock; for a lease, while it holds
    /// (an error naming the state when another host may have taken over).
    pub fn may_send(&self) -> Result<()> {
        match &self.lease {
            Some(watch) if !watch.holds() => bail!(
                "state {}: this run's lease lapsed or was taken over (a long pause?); it stops before sending \
                 or writing more, and the run holding the lease now sends what is left",
                self.path.display()
            ),
            _ => Ok(()),
        }
    }

    /// Runs `f` as one transaction: all of it is committed, or none. A run that lost its lease
    /// (a long pause) commits nothing: another host's run may have moved the state on since this
    /// one read it.
    pub fn atomically<T>(&mut self, f: impl FnOnce(&Tx) -> Result<T>) -> Result<T> {
        self.transaction(true, f)
    }

    /// `atomically` for the record of what was sent, which holds whatever became of the lease:
    /// the email went, and the run that has the lease now must not send it again.
    fn record_sent<T>(&mut self, f: impl FnOnce(&Tx) -> Result<T>) -> Result<T> {
        self.transaction(false, f)
    }

    fn transaction<T>(&mut self, guarded: bool, f: impl FnOnce(&Tx) -> Result<T>) -> Result<T> {
        let shown = self.path.display().to_string();
        self.unjournaled_intact()?;
        let pg_begin;
        let (begin, commit, rollback) = match (&self.conn, self.scratch) {
            (Conn::Pg(_), false) => {
                pg_begin = format!(
                    "BEGIN; SET LOCAL idle_in_transaction_session_timeout = {}",
                    self.idle_limit.as_millis().max(1000)
                );
                (pg_begin.as_str(), "COMMIT", "ROLLBACK")
            }
            _ => {
                ("SAVEPOINT chat_notifier", "RELEASE chat_notifier", "ROLLBACK TO chat_notifier; RELEASE chat_notifier")
            }
        };
        // Within `in_one_transaction` a step is no savepoint of its own: its error ends the
        // enclosing transaction, and a nested savepoint made SQLite copy every page a step
        // touched into a statement journal first (5 GB of temporary files in a 100k first run).
        if self.conn.sqlite_conn().is_some_and(|c| !c.is_autocommit()) {
            let result = f(&Tx(&self.conn)).map_err(|e| e.context(format!("state {shown}")))?;
            return if guarded { self.may_send().map(|()| result) } else { Ok(result) };
        }
        self.conn.batch(begin).with_context(|| format!("state {shown}: starting a transaction"))?;
        let tx = Tx(&self.conn);
        let result = f(&tx).map_err(|e| e.context(format!("state {shown}")));
        let result = match result {
            Ok(out) if guarded => self.may_send().map(|()| out),
            other => other,
        };
        match result {
            Ok(out) => match self.conn.batch(commit) {
                Ok(()) => Ok(out),
                Err(e) => {
                    let _ = self.conn.batch(rollback);
                    self.spoil();
                    Err(e.context(format!("state {shown}: committing")))
                }
            },
            Err(e) => {
                let _ = self.conn.batch(rollback);
                self.spoil();
                Err(e)
            }
        }
    }

    /// A scratch file without a journal after a step failed: nothing more is written to it (a
    /// rollback there undoes nothing), so a dry run never goes on from a half-written step.
    fn unjournaled_intact(&self) -> Result<()> {
        match self.unjournaled {
            Unjournaled::Spoiled => bail!(
                "state {}: dry run: an earlier step failed on the scratch copy, which keeps no journal to undo it; \
                 the preview stops here",
                self.path.display()
            ),
            Unjournaled::No | Unjournaled::Intact => Ok(()),
        }
    }

    /// A step failed: on a scratch file without a journal, what it wrote stays.
    fn spoil(&mut self) {
        if self.unjournaled == Unjournaled::Intact {
            self.unjournaled = Unjournaled::Spoiled;
        }
    }

    /// Runs `f` with all it writes, its own `atomically` steps included (each then no transaction
    /// of its own: an error in one must end `f`), as one transaction:
    /// the boundary a big run chooses (a first run's tracking of a million chats), so that a
    /// page of the state written by many steps goes to the file once, not once per step. A
    /// crash, or an error in `f`, leaves none of it. On PostgreSQL each step stays its own
    /// transaction: the tuning is the state file's. Within one already, `f` is part of it.
    pub fn in_one_transaction<T>(&mut self, f: impl FnOnce(&mut State) -> Result<T>) -> Result<T> {
        if self.conn.sqlite_conn().is_none_or(|c| !c.is_autocommit()) {
            return f(self);
        }
        let shown = self.path.display().to_string();
        self.unjournaled_intact()?;
        self.conn.batch("SAVEPOINT big_run").with_context(|| format!("state {shown}: starting a transaction"))?;
        match f(self) {
            Ok(out) => match self.conn.batch("RELEASE big_run") {
                Ok(()) => Ok(out),
                Err(e) => {
                    self.spoil();
                    Err(e.context(format!("state {shown}: committing")))
                }
            },
            Err(e) => {
                // The error is what the caller hears of; a failed rollback leaves the
                // transaction to end with the connection, which rolls it back too.
                let _ = self.conn.batch("ROLLBACK TO big_run; RELEASE big_run");
                self.spoil();
                Err(e)
            }
        }
    }

    /// SQLite-only tuning while a big run lasts (a first run over a big store of `rows` messages):
    /// a page cache that holds the pages a large transaction rewrites (`BIG_RUN_CACHE_KIB`),
    /// instead of SQLite's 2 MB, which spills them to the WAL again and again; statement
    /// journals in memory.
    pub fn for_big_run(&mut self, rows: i64) -> Result<()> {
        self.big_run = true;
        let (least, most) = BIG_RUN_CACHE_KIB;
        let kib = (rows / 10).clamp(least, most);
        match self.conn.sqlite_conn() {
            Some(c) => self.context(
                c.execute_batch(&format!("PRAGMA cache_size = -{kib}; PRAGMA temp_store = MEMORY")).map_err(Into::into),
            ),
            None => Ok(()),
        }
    }

    /// `for_big_run` was called: the rest of the run may choose large transactions too.
    pub fn is_big_run(&self) -> bool {
        self.big_run
    }

    /// SQLite-only, at the end of every run: when the run's writes left a big WAL, its pages
    /// go into the file now and the WAL is truncated, so the next run (cron's idle one, minutes
    /// later) does not begin by reading and checkpointing it. A run that wrote little pays a
    /// `stat`.
    pub fn after_run(&self) -> Result<()> {
        let Some(c) = self.conn.sqlite_conn() else { return Ok(()) };
        let mut wal = c.path().map(std::ffi::OsString::from).unwrap_or_default();
        wal.push("-wal");
        if std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) >= BIG_WAL {
            self.context(c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).map_err(Into::into))?;
        }
        Ok(())
    }

    /// Adds the state's name to an error, which otherwise names only the statement.
    fn context<T>(&self, result: Result<T>) -> Result<T> {
        result.with_context(|| format!("state {}", self.path.display()))
    }
}

/// Whether a state can undo a failed step: every state can but a dry run's scratch file, which
/// keeps no journal (`State::scratch_copy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unjournaled {
    /// A journal undoes a failed step.
    No,
    /// No journal, and no step has failed.
    Intact,
    /// No journal, and a step failed: what it wrote may be there in part.
    Spoiled,
}

/// Statements kept compiled per SQLite connection: every one a run uses, without evictions.
const STATEMENTS: usize = 128;

/// The writes of one transaction; see `State::atomically`.
pub struct Tx<'c>(&'c Conn);

fn schema_version(conn: &Connection) -> rusqlite::Result<usize> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}

/// The schema version of the state at `path`, refused when this chat-notifier cannot read or
/// upgrade it: a newer one wrote it (this one would misread it, and a run must not write it back
/// in an older shape), it has tables but no version (another program's database, or one
/// damaged), or a version no chat-notifier writes.
fn known_version(conn: &Connection, path: &Path) -> Result<usize> {
    let shown = path.display();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .with_context(|| format!("state {shown}: reading"))?;
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema WHERE type = 'table'", [], |r| r.get(0))
        .with_context(|| format!("state {shown}: reading"))?;
    match usize::try_from(version) {
        Ok(v) if v > MIGRATIONS.len() => {
            bail!("state {shown}: written by a newer chat-notifier (schema {v}, this one knows {})", MIGRATIONS.len())
        }
        Ok(0) if tables > 0 => {
            bail!("state {shown}: has tables but no schema version: not a chat-notifier state file, or a damaged one")
        }
        Ok(v) => Ok(v),
        Err(_) => bail!(
            "state {shown}: schema version {version} is none chat-notifier writes: not a chat-notifier state file, \
             or a damaged one"
        ),
    }
}

/// Brings the schema up to date; true when the file had none (a first run).
fn migrate(conn: &mut Connection) -> Result<bool> {
    // Most runs find the schema current: no write transaction for them.
    if schema_version(conn)? == MIGRATIONS.len() {
        return Ok(false);
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
    let version = schema_version(&tx)?;
    if version > MIGRATIONS.len() {
        bail!("written by a newer chat-notifier (schema {version}, this one knows {})", MIGRATIONS.len());
    }
    for migration in &MIGRATIONS[version..] {
        tx.execute_batch(migration)?;
    }
    tx.pragma_update(None, "user_version", MIGRATIONS.len())?;
    tx.commit()?;
    Ok(version == 0)
}

/// A mail thread as the state stores it: the root's subject, the Message-IDs space separated,
/// the last email's Thread-Index in base64.
fn thread(subject: Option<String>, message_ids: &str, index: Option<String>) -> crate::domain::thread::Thread {
    use base64::Engine as _;
    crate::domain::thread::Thread {
        subject,
        message_ids: message_ids.split_whitespace().map(str::to_owned).collect(),
        index: index.and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok()),
    }
}

fn millis(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Plans each statement once, whatever is bound to it later (SQLite's query planner stability
/// guarantee). Without it a statement is compiled again for every new value where a partial
/// index's condition was proved with the value in mind (`visitor_id = ?1` gives `visitor_id IS
/// NOT NULL`): the person lookup, once per email, was a fifth of a backfill.
fn compile_once(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrating_twice_is_a_no_op() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert!(migrate(&mut conn).unwrap(), "a first run");
        conn.execute("UPDATE progress SET watermark = 7", []).unwrap();
        assert!(!migrate(&mut conn).unwrap());
        let (watermark, version): (i64, usize) = conn
            .query_row("SELECT watermark, (SELECT user_version FROM pragma_user_version) FROM progress", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((watermark, version), (7, MIGRATIONS.len()));
    }

    /// SQLite compiles a statement again whenever a bound value changes, if a partial index's
    /// condition was proved with that value in mind (`visitor_id = ?1` for `visitor_id IS NOT
    /// NULL`): once per email of a backfill for the person lookup, a fifth of its time. The
    /// query planner's stability guarantee turns that off.
    #[test]
    fn statements_are_compiled_once_whatever_is_bound() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = State::open(&dir.path().join("state.sqlite")).unwrap();
        state
            .atomically(|tx| {
                for i in 0..20 {
                    tx.0.execute(
                        "INSERT INTO conversations (id, last_message, last_activity, visitor_id) VALUES (?1, 1, 0, ?2)",
                        db::args![format!("c{i}"), format!("v{}", i % 5)],
                    )?;
                }
                Ok(())
            })
            .unwrap();
        for i in 0..20 {
            let (others, total) = state.others(&format!("v{}", i % 5), &format!("c{i}"), 5).unwrap();
            assert_eq!((others.len(), total), (3, 3));
        }
        for sql in [tracking::OTHERS_COUNT_SQL, tracking::OTHERS_SQL] {
            let stmt = state.conn.sqlite_conn().unwrap().prepare_cached(sql).unwrap();
            assert_eq!(stmt.get_status(rusqlite::StatementStatus::RePrepare), 0, "{sql}");
        }
    }

    #[test]
    fn each_run_reads_through_a_partial_index() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        for (sql, index, n) in [
            (tracking::ENDED_SQL, "conversations_ended", 2),
            (tracking::IDLE_SQL, "conversations_idle", 4),
            (tracking::UNFINISHED_SQL, "conversations_open", 2),
            (outbox::PENDING_SQL, "outbox_pending", 2),
        ] {
            let params = rusqlite::params_from_iter(["", "0", "0", "0"].iter().take(n));
            let plan: String = conn.query_row(&format!("EXPLAIN QUERY PLAN {sql}"), params, |r| r.get(3)).unwrap();
            assert!(plan.starts_with("SEARCH") && plan.contains(index), "{sql}: {plan}");
        }
    }

    /// status counts the open and the held conversations from the tallies, reading only the
    /// conversations with an email queued (by id), and finds the queued emails without reading
    /// the sent ones (which stay until `prune`).
    #[test]
    fn status_counts_from_the_tallies_and_the_queued_emails() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        let plan = |sql: &str| -> Vec<String> {
            let sql = format!("EXPLAIN QUERY PLAN {sql}");
            conn.prepare(&sql).unwrap().query_map([], |r| r.get(3)).unwrap().collect::<Result<_, _>>().unwrap()
        };
        let outbox_by_index = |plan: &[String]| {
            plan.iter().filter(|l| l.contains("outbox")).all(|l| l.contains("USING INDEX outbox_waiting"))
        };
        for (_, condition, tally) in inspect::COUNTED {
            let plan = plan(&inspect::count_sql(condition, tally));
            let conversations: Vec<&String> = plan.iter().filter(|l| l.contains("conversations")).collect();
            assert!(!conversations.is_empty() && conversations.iter().all(|l| l.contains("(id=?)")), "{plan:?}");
            assert!(outbox_by_index(&plan), "{plan:?}");
        }
        let listing = plan(inspect::WAITING_EMAILS_SQL);
        assert!(outbox_by_index(&listing) && listing.iter().any(|l| l.contains("outbox")), "{listing:?}");
    }

    proptest::proptest! {
        /// The tallies the triggers keep are what counting says, after any writes, on a state
        /// that had conversations before the tallies' migration as on a new one.
        #[test]
        fn the_tallies_are_what_counting_says(
            before in proptest::collection::vec((0..6u8, 0..5usize, 0..6i64, 0..6i64, 0..6i64), 0..20),
            after in proptest::collection::vec((0..6u8, 0..5usize, 0..6i64, 0..6i64, 0..6i64), 1..40),
        ) {
            let mut conn = Connection::open_in_memory().unwrap();
            let tallied = MIGRATIONS.iter().position(|m| m.contains("CREATE TABLE tallies")).unwrap();
            for migration in &MIGRATIONS[..tallied] {
                conn.execute_batch(migration).unwrap();
            }
            conn.pragma_update(None, "user_version", tallied).unwrap();
            let write = |conn: &Connection, (op, id, a, b, c): (u8, usize, i64, i64, i64)| {
                let id = format!("c{id}");
                let set = |column: &str| format!("UPDATE conversations SET {column} = ?2 WHERE id = ?1");
                match op {
                    // As ingest writes a message: a new conversation, or a later message.
                    0 => conn.execute(
                        "INSERT INTO conversations (id, last_message, last_activity, ended, covered_through, \
                         held_through) VALUES (?1, ?2, 0, false, ?3, ?4) \
                         ON CONFLICT (id) DO UPDATE SET last_message = max(last_message, excluded.last_message)",
                        rusqlite::params![id, a, b, c],
                    ),
                    1 => conn.execute(&set("covered_through"), rusqlite::params![id, a]),
                    2 => conn.execute(&set("held_through"), rusqlite::params![id, a]),
                    3 => conn.execute(&set("last_message"), rusqlite::params![id, a]),
                    4 => conn.execute(
                        "UPDATE conversations SET last_message = ?2, covered_through = ?3, held_through = ?4 \
                         WHERE id = ?1",
                        rusqlite::params![id, a, b, c],
                    ),
                    _ => conn.execute("DELETE FROM conversations WHERE id = ?1", [id]),
                }
                .unwrap();
            };
            for w in before {
                write(&conn, w);
            }
            migrate(&mut conn).unwrap();
            let counted = |conn: &Connection| -> (i64, i64, i64, i64) {
                conn.query_row(
                    &format!(
                        "SELECT open, held, (SELECT count(*) FROM conversations WHERE {}), \
                         (SELECT count(*) FROM conversations WHERE {}) FROM tallies",
                        inspect::COUNTED[0].1,
                        inspect::COUNTED[1].1
                    ),
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .unwrap()
            };
            let (open, held, open_counted, held_counted) = counted(&conn);
            proptest::prop_assert_eq!((open, held), (open_counted, held_counted), "after the migration");
            for w in after {
                write(&conn, w);
                let (open, held, open_counted, held_counted) = counted(&conn);
                proptest::prop_assert_eq!((open, held), (open_counted, held_counted), "after {:?}", w);
            }
        }
    }

    /// What an idle run reads is what is due: 20,000 chats still in progress cost it nothing
    /// (counted in SQLite's virtual machine steps, not in time).
    #[test]
    fn a_run_reads_the_due_conversations_not_the_ones_in_progress() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        let insert = "INSERT INTO conversations (id, last_message, last_activity, ended, covered_through) \
                      VALUES (?1, 1, ?2, ?3, 0)";
        for i in 0..20_000 {
            conn.execute(insert, rusqlite::params![format!("typing-{i:05}"), 1_000_000 + i, false]).unwrap();
        }
        for i in 0..3 {
            conn.execute(insert, rusqlite::params![format!("idle-{i}"), 10 + i, false]).unwrap();
            conn.execute(insert, rusqlite::params![format!("ended-{i}"), 1_000_000 + i, true]).unwrap();
        }
        let read = |sql: &str, params: &[&dyn rusqlite::ToSql]| {
            let mut stmt = conn.prepare(sql).unwrap();
            let ids: Vec<String> = stmt.query_map(params, |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap();
            (ids, stmt.get_status(rusqlite::StatementStatus::VmStep))
        };
        let (idle, steps) = read(tracking::IDLE_SQL, &[&"", &500, &1000, &i64::MIN]);
        assert_eq!(idle, ["idle-0", "idle-1", "idle-2"]);
        assert!(steps < 200, "{steps} steps");
        let (ended, steps) = read(tracking::ENDED_SQL, &[&"", &500]);
        assert_eq!(ended, ["ended-0", "ended-1", "ended-2"]);
        assert!(steps < 200, "{steps} steps");
    }

    #[test]
    fn a_person_is_found_through_the_visitor_index() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        // The statements a run executes, not a copy of them.
        for sql in [tracking::OTHERS_COUNT_SQL, tracking::OTHERS_SQL] {
            let sql = format!("EXPLAIN QUERY PLAN {sql}");
            let plan: Vec<String> = conn
                .prepare(&sql)
                .unwrap()
                .query_map(rusqlite::params!["v", "c", 5], |r| r.get(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let conversations = plan.iter().find(|l| l.contains("conversations")).unwrap();
            assert!(
                conversations.starts_with("SEARCH") && conversations.contains("conversations_by_visitor"),
                "{sql}: {plan:?}"
            );
        }
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        assert!(migrate(&mut conn).unwrap_err().to_string().contains("newer"));
    }

    /// A lease given back between a run's refusal and its look at the holder is said as such,
    /// never "held by free".
    #[test]
    fn a_lease_given_back_meanwhile_is_not_said_held() {
        let holder = |held, released| lease::Holder {
            holder: "vm pid 1 (run) #1".into(),
            acquired_at: "2026-12-07T12:00:00Z".into(),
            expires_at: "2026-12-07T12:01:00Z".into(),
            held,
            released,
        };
        let given_back = held_words("postgresql://db/s", Some(holder(false, true)));
        assert_eq!(given_back, "the lease in postgresql://db/s was held a moment ago by vm pid 1 (run) #1");
        let held = held_words("postgresql://db/s", Some(holder(true, false)));
        assert!(held.starts_with("the lease in postgresql://db/s is held by vm pid 1 (run) #1 since"), "{held}");
    }

    #[test]
    fn a_dry_run_goes_no_further_than_a_failed_step_on_its_scratch_copy() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("state.sqlite");
        let (mut scratch, _file) = State::scratch_copy(&real).unwrap();
        scratch.atomically(|tx| tx.set_anchor(Some("c1|t"), Some(1), None)).unwrap();
        let failed: Result<()> = scratch.atomically(|tx| {
            tx.finish_baseline()?;
            anyhow::bail!("a bad row")
        });
        assert_eq!(format!("{:#}", failed.unwrap_err()), format!("state {}: a bad row", real.display()));
        // The copy keeps no journal: what the failed step wrote may be there, so nothing more is.
        for next in [scratch.atomically(|tx| tx.finish_baseline()), scratch.in_one_transaction(|_| Ok(()))] {
            let e = format!("{:#}", next.unwrap_err());
            assert!(e.contains("an earlier step failed on the scratch copy"), "{e}");
            assert!(e.contains(&real.display().to_string()), "named as the state it copies: {e}");
        }
        assert!(!real.exists(), "the real state is never created by a dry run");

        // A real state undoes the failed step and goes on.
        let mut state = State::open(&real).unwrap();
        let failed: Result<()> = state.atomically(|tx| {
            tx.finish_baseline()?;
            anyhow::bail!("a bad row")
        });
        assert!(failed.is_err());
        assert!(!state.progress().unwrap().baseline_done, "rolled back");
        state.atomically(|tx| tx.finish_baseline()).unwrap();
        assert!(state.progress().unwrap().baseline_done);
    }

    #[test]
    fn second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.sqlite");
        let at = At::File(state);
        let first = try_lock(&at).unwrap();
        assert!(first.is_some());
        assert!(try_lock(&at).unwrap().is_none());
        drop(first);
        assert!(try_lock(&at).unwrap().is_some());
    }
}
