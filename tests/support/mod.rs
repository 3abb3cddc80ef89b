//! What the integration tests share: a real export file written through SQLite, a config
//! pointing at a real SMTP server on 127.0.0.1, the built binary run as cron runs it, and a
//! strict reading of what the server received.
#![allow(dead_code, unused_imports)] // each test binary uses its own part of this

pub mod dify;
pub mod flowise;
pub mod http;
pub mod llm;
pub mod pg;
pub mod pgbouncer;
pub mod rasa;
pub mod rasa_real;
pub mod smtp;
pub mod typebot;

use std::path::{Path, PathBuf};
use std::process::Command;

use rusqlite::{Connection, params};
use tempfile::TempDir;

pub use smtp::{Behavior, Received, SmtpServer, TlsMode};

pub const SCHEMA_V1: &str = "
CREATE TABLE bots (id TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE conversations (
  id TEXT PRIMARY KEY, bot_id TEXT NOT NULL REFERENCES bots(id), visitor_id TEXT NOT NULL,
  started_at TEXT NOT NULL, page_url TEXT);
CREATE TABLE messages (
  id INTEGER PRIMARY KEY, conversation_id TEXT NOT NULL REFERENCES conversations(id),
  sent_at TEXT NOT NULL, sender TEXT NOT NULL, gambit_id TEXT, input_type TEXT, field TEXT,
  body TEXT NOT NULL);
CREATE INDEX messages_by_conversation ON messages(conversation_id, id);
INSERT INTO bots VALUES ('lead', 'Lead Bot');
";

/// The binary under test: the one cargo built, or `CHAT_NOTIFIER_BIN`, which runs the same
/// tests against another build (how a fix's test is shown to fail on the build before it).
pub fn bin() -> PathBuf {
    std::env::var_os("CHAT_NOTIFIER_BIN")
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_chat-notifier")), PathBuf::from)
}

pub struct Fixture {
    pub dir: TempDir,
    pub export: PathBuf,
    pub state: PathBuf,
    pub config: PathBuf,
    conn: Connection,
}

pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// The line every first run with history writes (see `decide`).
pub const FIRST_RUN: &str = "chat-notifier: warn: first run on state ";

impl Output {
    /// stderr without the first run's note, for tests about something else.
    pub fn stderr_past_first_run(&self) -> String {
        self.stderr.lines().filter(|l| !l.starts_with(FIRST_RUN)).map(|l| format!("{l}\n")).collect()
    }
}

impl Fixture {
    /// An export with one bot and a config sending over plain SMTP to `port`.
    pub fn new(port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let export = dir.path().join("export.sqlite");
        let conn = Connection::open(&export).unwrap();
        conn.execute_batch(SCHEMA_V1).unwrap();
        let fixture = Fixture {
            state: dir.path().join("state.sqlite"),
            config: dir.path().join("notifier.toml"),
            export,
            dir,
            conn,
        };
        fixture.write_config(port, "");
        fixture
    }

    /// Writes the config; `extra` goes at the top level.
    pub fn write_config(&self, port: u16, extra: &str) {
        let text = format!(
            r#"export = "export.sqlite"
state = "state.sqlite"
time_zone = "UTC"
{extra}
[mail]
from = "Chat Notifier <notifier@example.com>"
to = ["Owner <owner@example.com>"]

[transport]
kind = "smtp"
host = "127.0.0.1"
port = {port}
security = "none"
timeout = "5s"
"#
        );
        std::fs::write(&self.config, text).unwrap();
    }

    /// A Rasa tracker store (SQLite, `rasa.db`) as the source instead of the export; `extra` goes
    /// into the `[source]` table.
    pub fn rasa(port: u16, extra: &str) -> (Self, rasa::RasaStore) {
        let f = Fixture::new(port);
        let store = rasa::RasaStore::create(&f.dir.path().join("rasa.db"));
        f.use_source(&format!(
            "kind = \"rasa\"\nurl = \"sqlite://rasa.db\"\nbot_name = \"Lead Bot\"\n\
             complete_on_actions = [\"action_submit_lead\"]\n{extra}"
        ));
        (f, store)
    }

    /// A Typebot database (a new one on the test cluster, the lead flow published) as the
    /// source; `extra` goes into the `[source]` table. None where no PostgreSQL server runs.
    pub fn typebot(port: u16, extra: &str) -> Option<(Self, typebot::TypebotDb, String)> {
        let cluster = pg::cluster()?;
        let url = cluster.database();
        let db = typebot::TypebotDb::create(cluster.client(&url));
        let f = Fixture::new(port);
        f.use_source(&format!("kind = \"typebot\"\nurl = \"{url}\"\n{extra}"));
        Some((f, db, url))
    }

    /// Puts a `[source]` table with these keys in place of `export = ...`.
    pub fn use_source(&self, table: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap().replace("export = \"export.sqlite\"\n", "");
        let (head, tail) = text.split_once("[mail]").unwrap();
        let head = head.split("[source]").next().unwrap();
        std::fs::write(&self.config, format!("{head}[source]\n{table}\n\n[mail]{tail}")).unwrap();
    }

    /// Adds a line to the `[mail]` table (`burst = 5`).
    pub fn mail_setting(&self, line: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap().replacen("[mail]\n", &format!("[mail]\n{line}\n"), 1);
        std::fs::write(&self.config, text).unwrap();
    }

    /// Replaces the `[transport]` table.
    pub fn set_transport(&self, table: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let head = text.split("[transport]").next().unwrap();
        std::fs::write(&self.config, format!("{head}[transport]\n{table}\n")).unwrap();
    }

    /// Runs SQL on another database file (a source that is not the export).
    pub fn sql_on(&self, db: &Path, sql: &str) {
        Connection::open(db).unwrap().execute_batch(sql).unwrap();
    }

    pub fn sql(&self, sql: &str) {
        self.conn.execute_batch(sql).unwrap();
    }

    pub fn conversation(&self, id: &str, started_at: &str) {
        self.conversation_of("lead", id, started_at);
    }

    /// A conversation with another bot, created in the export if new.
    pub fn conversation_of(&self, bot: &str, id: &str, started_at: &str) {
        self.conn.execute("INSERT OR IGNORE INTO bots VALUES (?1, ?1 || ' bot')", [bot]).unwrap();
        self.conn
            .execute(
                "INSERT INTO conversations VALUES (?1, ?2, ?3, ?4, 'https://example.com/pricing')",
                params![id, bot, format!("visitor-{id}"), started_at],
            )
            .unwrap();
    }

    pub fn bot(&self, conversation: &str, at: &str, gambit: &str, input_type: &str, body: &str) -> i64 {
        self.message(conversation, at, "bot", Some(gambit), Some(input_type), None, body)
    }

    pub fn visitor(&self, conversation: &str, at: &str, field: Option<&str>, body: &str) -> i64 {
        self.message(conversation, at, "visitor", None, None, field, body)
    }

    pub fn end(&self, conversation: &str, at: &str) -> i64 {
        self.bot(conversation, at, "done", "end_conversation", "Thanks, we will be in touch!")
    }

    #[allow(clippy::too_many_arguments)]
    pub fn message(
        &self,
        conversation: &str,
        at: &str,
        sender: &str,
        gambit: Option<&str>,
        input_type: Option<&str>,
        field: Option<&str>,
        body: &str,
    ) -> i64 {
        self.conn
            .execute(
                "INSERT INTO messages (conversation_id, sent_at, sender, gambit_id, input_type, field, body) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![conversation, at, sender, gambit, input_type, field, body],
            )
            .unwrap();
        self.conn.last_insert_rowid()
    }

    /// A visitor who gives a name only and leaves at the email question.
    pub fn gives_name_only(&self, id: &str, name: &str, at: &str) {
        self.conversation(id, at);
        self.bot(id, at, "ask_name", "text", "What's your name?");
        self.visitor(id, at, Some("name"), name);
        self.bot(id, at, "ask_email", "email", "And your email?");
    }

    /// SMTP to `port` with a digest at 08:00 of the chats abandoned without an email or phone.
    pub fn daily_digest(&self, port: u16) {
        self.set_transport(&format!(
            "kind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\n[notify]\n\
             digest = {{ states = [\"abandoned\"], unless_fields = [\"email\", \"phone\"], at = \"08:00\" }}"
        ));
    }

    /// A visitor who gives name and email, then stops at the phone question.
    pub fn lead_who_leaves(&self, id: &str, name: &str, email: &str, minute: u32) {
        let at = |s: u32| format!("2026-11-24T09:{minute:02}:{s:02}Z");
        self.conversation(id, &at(0));
        self.bot(id, &at(0), "ask_name", "text", "What's your name?");
        self.visitor(id, &at(10), Some("name"), name);
        self.bot(id, &at(11), "ask_email", "email", "Your email?");
        self.visitor(id, &at(20), Some("email"), email);
        self.bot(id, &at(21), "ask_phone", "phone", "And your phone?");
    }

    /// `chat-notifier --config <fixture> ARGS`, as cron would start it: no stdin, from
    /// another working directory.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_env(args, &[])
    }

    pub fn run_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let out = Command::new(bin())
            .envs(env.iter().copied())
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .current_dir(std::env::temp_dir())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Starts `chat-notifier --config <fixture> ARGS` without waiting for it.
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        Command::new(bin())
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// `run --now NOW`, checked to exit 0, with the peak resident memory (KiB) its process had
    /// shortly before it ended: the kernel's high-water mark (`VmHWM`, which only grows), read
    /// every millisecond while it runs. Not `wait4`'s figure: a child spawned with vfork counts
    /// the test process's own peak in it.
    pub fn run_measured(&self, now: &str) -> u64 {
        let mut child = Command::new(bin())
            .args([std::ffi::OsStr::new("--config"), self.config.as_os_str()])
            .args(["run", "--now", now])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Until the exec, /proc shows the test process; the kernel names a process after its file.
        let name: String = bin().file_name().unwrap().to_string_lossy().chars().take(15).collect();
        let path = format!("/proc/{}/status", child.id());
        let mut peak = 0;
        loop {
            let status = std::fs::read_to_string(&path).unwrap_or_default();
            let field = |key: &str| status.lines().find_map(|l| l.strip_prefix(key)).map(str::trim);
            if field("Name:") == Some(name.as_str())
                && let Some(kib) = field("VmHWM:").and_then(|v| v.trim_end_matches("kB").trim().parse().ok())
            {
                peak = peak.max(kib);
            }
            if let Some(exit) = child.try_wait().unwrap() {
                assert!(exit.success(), "run at {now}: {exit}");
                return peak;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// `run --now NOW ARGS`, checked to exit with `code`.
    pub fn run_at(&self, now: &str, args: &[&str], code: i32) -> Output {
        let mut all = vec!["run", "--now", now];
        all.extend_from_slice(args);
        let out = self.run(&all);
        assert_eq!(out.code, code, "exit code of run at {now} {args:?}; stderr:\n{}", out.stderr);
        out
    }

    /// Every row of every table of the state file, for before/after comparisons.
    pub fn state_dump(&self) -> Vec<Vec<String>> {
        ["progress", "conversations", "outbox"]
            .iter()
            .flat_map(|t| self.state_rows(&format!("SELECT '{t}', * FROM {t} ORDER BY 2")))
            .collect()
    }

    /// The outbox, oldest first, as typed rows.
    pub fn outbox(&self) -> Vec<OutboxRow> {
        let conn = Connection::open(&self.state).unwrap();
        let mut stmt = conn
            .prepare(
                "SELECT conversation_id, state, covers_through, message_id, status, attempts, last_error, subject \
                 FROM outbox ORDER BY id",
            )
            .unwrap();
        stmt.query_map([], |r| {
            Ok(OutboxRow {
                conversation_id: r.get(0)?,
                state: r.get(1)?,
                covers_through: r.get(2)?,
                message_id: r.get(3)?,
                status: r.get(4)?,
                attempts: r.get(5)?,
                last_error: r.get(6)?,
                subject: r.get(7)?,
            })
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    /// The ids of the conversations the state tracks, in order.
    pub fn tracked(&self) -> Vec<String> {
        let conn = Connection::open(&self.state).unwrap();
        let mut stmt = conn.prepare("SELECT id FROM conversations ORDER BY id").unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
    }

    pub fn state_rows(&self, sql: &str) -> Vec<Vec<String>> {
        let conn = Connection::open(&self.state).unwrap();
        let mut stmt = conn.prepare(sql).unwrap();
        let n = stmt.column_count();
        stmt.query_map([], |r| {
            (0..n).map(|i| r.get::<_, rusqlite::types::Value>(i).map(|v| format!("{v:?}"))).collect()
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }
}

/// One outbox row, as the tests look at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub conversation_id: String,
    pub state: String,
    pub covers_through: i64,
    pub message_id: String,
    pub status: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub subject: String,
}

/// A received email, read strictly: the raw header block is checked line by line, then
/// mail-parser decodes it.
#[derive(Debug)]
pub struct Mail {
    pub raw: String,
    pub rcpt_to: Vec<String>,
    /// Header names as written, in order.
    pub header_names: Vec<String>,
    pub subject: String,
    pub message_id: String,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    pub reply_to: Option<String>,
    pub text: String,
    pub html: String,
}

/// The headers chat-notifier writes; anything else in a message is a defect (or an injection).
pub const OUR_HEADERS: &[&str] = &[
    "Message-ID",
    "Date",
    "From",
    "To",
    "Cc",
    "Reply-To",
    "Subject",
    "In-Reply-To",
    "References",
    "Auto-Submitted",
    "X-Auto-Response-Suppress",
    "X-Chat-State",
    "X-Chat-Bot",
    "List-Id",
    "Thread-Topic",
    "Thread-Index",
    "MIME-Version",
    "Content-Type",
];

impl Mail {
    /// A header's value as written, unfolded; none when absent.
    pub fn header(&self, name: &str) -> Option<String> {
        let block = self.raw.split("\r\n\r\n").next()?;
        let unfolded = block.replace("\r\n ", " ").replace("\r\n\t", " ");
        unfolded.split("\r\n").find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }

    pub fn read(r: &Received) -> Mail {
        let raw = r.text();
        assert!(raw.is_ascii(), "a 7-bit message");
        for line in raw.split("\r\n") {
            assert!(!line.contains('\n') && !line.contains('\r'), "bare CR or LF in {line:?}");
            assert!(line.len() <= 998, "line of {} octets", line.len());
        }
        let header_block = raw.split("\r\n\r\n").next().unwrap();
        let header_names: Vec<String> = header_block
            .split("\r\n")
            .filter(|l| !l.starts_with([' ', '\t']))
            .map(|l| l.split(':').next().unwrap().to_owned())
            .collect();
        for name in &header_names {
            assert!(OUR_HEADERS.contains(&name.as_str()), "unexpected header {name:?} in\n{header_block}");
        }
        for once in ["Date", "From", "Message-ID", "Subject", "To"] {
            assert_eq!(header_names.iter().filter(|n| *n == once).count(), 1, "{once} exactly once");
        }
        let parsed = mail_parser::MessageParser::default().parse(raw.as_bytes()).expect("parses as RFC 5322");
        let list = |v: &mail_parser::HeaderValue| -> Vec<String> {
            match v {
                mail_parser::HeaderValue::Text(t) => vec![t.to_string()],
                mail_parser::HeaderValue::TextList(l) => l.iter().map(|t| t.to_string()).collect(),
                _ => vec![],
            }
        };
        Mail {
            rcpt_to: r.rcpt_to.clone(),
            subject: parsed.subject().expect("Subject").to_owned(),
            message_id: parsed.message_id().expect("Message-ID").to_owned(),
            in_reply_to: list(parsed.in_reply_to()).into_iter().next(),
            references: list(parsed.references()),
            reply_to: parsed.reply_to().and_then(|a| a.first()).and_then(|a| a.address()).map(str::to_owned),
            text: parsed.body_text(0).expect("text part").replace("\r\n", "\n"),
            html: parsed.body_html(0).expect("html part").replace("\r\n", "\n"),
            header_names,
            raw,
        }
    }
}

/// An .eml file the folder transport wrote, read as strictly as a received email.
pub fn read_eml(path: &Path) -> Mail {
    Mail::read(&Received { tls: false, mail_from: String::new(), rcpt_to: vec![], data: std::fs::read(path).unwrap() })
}

/// Runs `script` with `sh` as root of new user and mount namespaces, where it may mount a
/// tmpfs of its own (a full or read-only disk, for real, without touching the machine's).
/// None where this machine allows no user namespaces: the test is skipped, except under CI.
pub fn in_namespace(script: &str) -> Option<Output> {
    let out = Command::new("unshare").args(["-rm", "sh", "-c", script]).stdin(std::process::Stdio::null()).output();
    let out = match out {
        Ok(out) => out,
        Err(e) => return unavailable(&format!("unshare: {e}")),
    };
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if stderr.starts_with("unshare: ") {
        return unavailable(&stderr);
    }
    Some(Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    })
}

fn unavailable(why: &str) -> Option<Output> {
    assert!(std::env::var_os("CI").is_none(), "CI must run the namespace tests: {why}");
    eprintln!("skipped: no user namespaces here ({why})");
    None
}

/// Each of `expected` conversations got its one email, at most `allowed_dups` sent twice, and a
/// Message-ID seen twice is the same email both times; `label` names the case in failures.
pub fn assert_each_once(server: &SmtpServer, expected: usize, allowed_dups: usize, label: &str) {
    let all = mails(server);
    let mut by_id: std::collections::HashMap<String, Vec<&Mail>> = std::collections::HashMap::new();
    for m in &all {
        by_id.entry(m.message_id.clone()).or_default().push(m);
    }
    assert_eq!(by_id.len(), expected, "{label}: distinct emails");
    for copies in by_id.values() {
        assert!(copies.iter().all(|c| c.subject == copies[0].subject && c.text == copies[0].text), "{label}");
    }
    let subjects: std::collections::HashSet<&str> = all.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(subjects.len(), expected, "{label}: one email per conversation");
    assert!(
        all.len() - expected <= allowed_dups,
        "{label}: {} duplicates, at most {allowed_dups}",
        all.len() - expected
    );
}

/// Runs SQL on a fixture's state file, as a crash or a hand edit leaves it.
pub fn sql_on_state(f: &Fixture, sql: &str) {
    Connection::open(&f.state).unwrap().execute_batch(sql).unwrap();
}

pub fn mails(server: &SmtpServer) -> Vec<Mail> {
    server.received().iter().map(Mail::read).collect()
}

/// The identifier at the end of a subject: `... [#XXXX-XXXX-XXXX]`.
pub fn identifier(subject: &str) -> &str {
    let start = subject.rfind("[#").expect("identifier in subject") + 2;
    subject[start..].strip_suffix(']').expect("subject ends with the identifier")
}

pub fn load_sql(db: &Path, file: &str) {
    let sql = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap();
    Connection::open(db).unwrap().execute_batch(&sql).unwrap();
}
