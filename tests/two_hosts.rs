//! Two hosts, one state: two processes with two configs and two working folders run `run` in
//! loops, as cron on two machines would, against one state while the bot runtime adds chats,
//! through the built binary and a real SMTP server that counts emails by Message-ID. The state
//! is a parameter: a SQLite file (two processes on one host: the lock file must give the same
//! guarantees) or PostgreSQL through PgBouncer in transaction mode (two hosts: the lease row).
//! Every email exactly once; a host SIGKILLed mid-send replaced by the other, at most the email
//! in flight twice, with its Message-ID; PgBouncer stopped and started again mid-run; two hosts
//! starting on an empty database at the same instant. Every wait is bounded; nothing passes
//! or fails on how fast the machine is.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::{Behavior, Mail, SmtpServer, assert_each_once, mails};

/// Every chat is a lead who left at the phone question on the morning before this.
const NOW: &str = "2026-11-25T00:00:00Z";

/// How long a test waits for what must happen (emails, a takeover past the lease): far past
/// what it takes on a busy machine; reached only when something is wrong.
/// The PostgreSQL state's password (the test cluster trusts every local login; the hosts send it
/// all the same): in no line a run writes.
const PASSWORD: &str = "s3cret-state-pw";

const PATIENCE: Duration = Duration::from_secs(300);

/// Where the hosts keep their state: the setting their configs share.
enum StateAt {
    /// One SQLite file both processes name (two processes on one host).
    Sqlite(PathBuf),
    /// A PostgreSQL URL through PgBouncer, and the same database's URL without it, for the
    /// test's own look at its tables.
    Postgres { url: String, direct: String },
}

impl StateAt {
    fn setting(&self) -> String {
        match self {
            StateAt::Sqlite(path) => path.display().to_string(),
            StateAt::Postgres { url, .. } => url.clone(),
        }
    }

    /// More top-level settings: on PostgreSQL a short lease (a takeover comes this long after a
    /// host stops renewing it) and a password from the environment (`PASSWORD`), which no line
    /// may show.
    fn extra(&self) -> &'static str {
        match self {
            StateAt::Sqlite(_) => "",
            StateAt::Postgres { .. } => "state_lease = \"6s\"\nstate_password_env = \"STATE_PASSWORD\"\n",
        }
    }
}

/// The shared export, the two hosts' configs and the SMTP server they send to.
struct Hosts {
    root: tempfile::TempDir,
    export: PathBuf,
    configs: [PathBuf; 2],
    server: SmtpServer,
    state: StateAt,
}

/// One run of a host: how it ended and what it said.
#[derive(Debug)]
struct RunRecord {
    code: Option<i32>,
    signal: Option<i32>,
    stderr: String,
}

/// A host's cron: `run` again and again until told to stop.
struct Looper {
    stop: Arc<AtomicBool>,
    current: Arc<Mutex<Option<Child>>>,
    records: Arc<Mutex<Vec<RunRecord>>>,
    handle: Option<JoinHandle<()>>,
}

impl Hosts {
    fn new(state: impl FnOnce(&Path) -> StateAt) -> Hosts {
        let root = tempfile::tempdir().unwrap();
        let export = root.path().join("export.sqlite");
        let conn = rusqlite::Connection::open(&export).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL;").unwrap();
        conn.execute_batch(support::SCHEMA_V1).unwrap();
        let server = SmtpServer::start();
        let state = state(root.path());
        let configs = ["host-a", "host-b"].map(|host| {
            let dir = root.path().join(host);
            std::fs::create_dir(&dir).unwrap();
            let config = dir.join("notifier.toml");
            // The same settings on both hosts; a slow server is waited for (a host is killed
            // while it waits, not given up on).
            std::fs::write(
                &config,
                format!(
                    "export = {export:?}\nstate = {state:?}\ntime_zone = \"UTC\"\n{extra}\n[mail]\n\
                     from = \"Chat Notifier <notifier@example.com>\"\nto = [\"Owner <owner@example.com>\"]\n\
                     burst = 100000\n\n[transport]\nkind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {port}\n\
                     security = \"none\"\ntimeout = \"120s\"\n",
                    export = export.display().to_string(),
                    state = state.setting(),
                    extra = state.extra(),
                    port = server.port(),
                ),
            )
            .unwrap();
            config
        });
        Hosts { root, export, configs, server, state }
    }

    /// `chat-notifier --config <host's> ARGS`, from the host's folder, stderr to a file.
    fn command(&self, host: usize, args: &[&str]) -> Command {
        let mut c = Command::new(support::bin());
        c.arg("--config").arg(&self.configs[host]).args(args).env("STATE_PASSWORD", PASSWORD);
        c.current_dir(self.configs[host].parent().unwrap()).stdin(Stdio::null()).stdout(Stdio::null());
        c
    }

    /// One run on `host`, waited for.
    fn run(&self, host: usize) -> RunRecord {
        let out = self.command(host, &["run", "--now", NOW]).stderr(Stdio::piped()).output().unwrap();
        RunRecord {
            code: out.status.code(),
            signal: std::os::unix::process::ExitStatusExt::signal(&out.status),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Starts `host`'s loop of runs.
    fn start(&self, host: usize) -> Looper {
        let stop = Arc::new(AtomicBool::new(false));
        let current = Arc::new(Mutex::new(None::<Child>));
        let records = Arc::new(Mutex::new(Vec::new()));
        let (stop2, current2, records2) = (stop.clone(), current.clone(), records.clone());
        let dir = self.configs[host].parent().unwrap().to_owned();
        let mut command = self.command(host, &["run", "--now", NOW]);
        let handle = std::thread::spawn(move || {
            for n in 0.. {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let err_path = dir.join(format!("run-{n}.err"));
                command.stderr(std::fs::File::create(&err_path).unwrap());
                *current2.lock().unwrap() = Some(command.spawn().unwrap());
                let status = loop {
                    // Held while looked at: a child is killed only before it was reaped.
                    if let Some(status) = current2.lock().unwrap().as_mut().unwrap().try_wait().unwrap() {
                        break status;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                };
                current2.lock().unwrap().take();
                records2.lock().unwrap().push(RunRecord {
                    code: status.code(),
                    signal: std::os::unix::process::ExitStatusExt::signal(&status),
                    stderr: std::fs::read_to_string(&err_path).unwrap(),
                });
            }
        });
        Looper { stop, current, records, handle: Some(handle) }
    }

    /// Adds `n` chats to the export, one transaction each, as the bot runtime would while the
    /// hosts run; from a thread of its own.
    fn writer(&self, first: usize, n: usize) -> JoinHandle<()> {
        let export = self.export.clone();
        std::thread::spawn(move || {
            let mut conn = rusqlite::Connection::open(&export).unwrap();
            conn.busy_timeout(Duration::from_secs(60)).unwrap();
            for i in first..first + n {
                add_lead(&mut conn, i);
                // Chats arrive over a while, between and during runs.
                std::thread::sleep(Duration::from_millis(25));
            }
        })
    }

    /// Waits until `n` distinct emails arrived; panics past `PATIENCE`.
    fn wait_for_distinct(&self, n: usize, what: &str, loopers: &[&Looper]) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let distinct: std::collections::HashSet<String> =
                mails(&self.server).into_iter().map(|m| m.message_id).collect();
            if distinct.len() >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: {} of {n} emails arrived; {}",
                distinct.len(),
                summary(loopers)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The host whose run is in the middle of an SMTP conversation with the test's server: the
    /// one of the running children holding a connection to its port.
    fn sending(&self, loopers: &[&Looper]) -> Option<usize> {
        let port = format!("{:04X}", self.server.port());
        let mut inodes = Vec::new();
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            for line in std::fs::read_to_string(table).unwrap_or_default().lines().skip(1) {
                let f: Vec<&str> = line.split_whitespace().collect();
                // Connected (01) to the server's port, from the client's side.
                if f.len() > 9 && f[2].ends_with(&format!(":{port}")) && f[3] == "01" {
                    inodes.push(format!("socket:[{}]", f[9]));
                }
            }
        }
        loopers.iter().position(|l| {
            let Some(pid) = l.current.lock().unwrap().as_ref().map(Child::id) else { return false };
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .into_iter()
                .flatten()
                .flatten()
                .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| inodes.iter().any(|i| Path::new(i) == t)))
        })
    }
}

impl Looper {
    /// Stops the loop after the run under way; every run's record.
    fn finish(mut self) -> Vec<RunRecord> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.take().unwrap().join().unwrap();
        std::mem::take(&mut *self.records.lock().unwrap())
    }

    /// Runs ended so far.
    fn ended(&self) -> usize {
        self.records.lock().unwrap().len()
    }

    /// The host dies: its run under way SIGKILLed, no run after it. Every run's record.
    fn die(mut self) -> Vec<RunRecord> {
        self.kill();
        self.handle.take().unwrap().join().unwrap();
        std::mem::take(&mut *self.records.lock().unwrap())
    }

    fn kill(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(child) = self.current.lock().unwrap().as_mut() {
            let _ = child.kill();
        }
    }
}

/// A test that failed stops its hosts before their folders go.
impl Drop for Looper {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            self.kill();
            let _ = handle.join();
        }
    }
}

/// What the hosts' runs did so far, for a failure's message: how many ended each way, and each
/// line they wrote once (the times and pids in them aside).
fn summary(loopers: &[&Looper]) -> String {
    let mut ends = std::collections::BTreeMap::new();
    let mut lines = std::collections::BTreeSet::new();
    for l in loopers {
        for r in l.records.lock().unwrap().iter() {
            *ends.entry(format!("{:?}/{:?}", r.code, r.signal)).or_insert(0) += 1;
            for line in r.stderr.lines() {
                lines.insert(line.chars().filter(|c| !c.is_ascii_digit()).collect::<String>());
            }
        }
    }
    format!("runs ended (code/signal: count) {ends:?}, saying {lines:#?}")
}

/// A visitor who gives name and email, then leaves at the phone question: one abandoned email.
fn add_lead(conn: &mut rusqlite::Connection, i: usize) {
    let id = format!("c{i:04}");
    let at = |s: u32| format!("2026-11-24T{:02}:{:02}:{s:02}Z", 8 + i / 60 % 12, i % 60);
    let tx = conn.transaction().unwrap();
    tx.execute(
        "INSERT INTO conversations VALUES (?1, 'lead', ?2, ?3, 'https://example.com/pricing')",
        rusqlite::params![id, format!("visitor-{id}"), at(0)],
    )
    .unwrap();
    let name = format!("Visitor {i}");
    for (s, sender, gambit, input, field, body) in [
        (0, "bot", Some("ask_name"), Some("text"), None, "What's your name?"),
        (10, "visitor", None, None, Some("name"), name.as_str()),
        (11, "bot", Some("ask_email"), Some("email"), None, "Your email?"),
        (20, "visitor", None, None, Some("email"), "v@example.com"),
        (21, "bot", Some("ask_phone"), Some("phone"), None, "And your phone?"),
    ] {
        tx.execute(
            "INSERT INTO messages (conversation_id, sent_at, sender, gambit_id, input_type, field, body) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            rusqlite::params![id, at(s), sender, gambit, input, field, body],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

/// What a run may say besides nothing: the first run's note, and that the other host holds the
/// lock (or lease).
fn expected_line(line: &str) -> bool {
    line.starts_with(support::FIRST_RUN)
        || line.contains("another run is in progress")
        // After a host died holding the lease, the host that takes it over says so.
        || line.contains("took the run lease over from")
}

/// Every run ended by itself, 0 or 4 (the other host's run holds the state), saying nothing
/// else; some of each host's runs did the work.
fn assert_clean(host: &str, records: &[RunRecord]) {
    assert!(!records.is_empty(), "{host} ran");
    for r in records {
        assert!(matches!(r.code, Some(0 | 4)), "{host}: a run ended {r:?}");
        for line in r.stderr.lines() {
            assert!(expected_line(line), "{host}: {line:?} in {r:?}");
        }
        assert!(!r.stderr.contains(PASSWORD), "{host}: {r:?}");
    }
}

/// Two hosts in loops while chats arrive: every email exactly once.
fn every_email_once(hosts: &Hosts) {
    let n = 80;
    let (a, b) = (hosts.start(0), hosts.start(1));
    let writer = hosts.writer(0, n);
    writer.join().unwrap();
    hosts.wait_for_distinct(n, "while both hosts run", &[&a, &b]);
    // The loops go on until the hosts met: a run found the other's holding the state (they
    // overlap within a few runs; a busy machine only makes it take longer).
    let deadline = Instant::now() + PATIENCE;
    while ![&a, &b].iter().any(|l| l.records.lock().unwrap().iter().any(|r| r.code == Some(4))) {
        assert!(Instant::now() < deadline, "the two hosts' runs never overlapped");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (ra, rb) = (a.finish(), b.finish());
    assert_clean("host a", &ra);
    assert_clean("host b", &rb);
    // No host died: no lease lapsed, none was taken over.
    assert!(!ra.iter().chain(&rb).any(|r| r.stderr.contains("took the run lease over")), "{ra:?} {rb:?}");
    for host in 0..2 {
        let last = hosts.run(host);
        assert_eq!(last.code, Some(0), "{last:?}");
    }
    assert_each_once(&hosts.server, n, 0, "two hosts in loops");
}

/// A host SIGKILLed while the SMTP server holds its email (taken, not answered): the other
/// host takes over (after the lease, on PostgreSQL) and sends the rest; only the email in
/// flight goes twice, with its Message-ID. Returns how long the takeover took.
fn killed_mid_send(hosts: &Hosts) -> Duration {
    let n = 60;
    let accepted_before = 10;
    hosts.server.set(Behavior::HangAfterData { accept: accepted_before });
    let (a, b) = (hosts.start(0), hosts.start(1));
    let writer = hosts.writer(0, n);
    wait_received(&hosts.server, accepted_before + 1, &[&a, &b]);
    let in_flight = Mail::read(&hosts.server.received()[accepted_before]).message_id;
    // The run holding the email is found among the two hosts' (it waits for the answer until
    // its 120 s timeout, far past this).
    let deadline = Instant::now() + PATIENCE;
    let sender = loop {
        if let Some(host) = hosts.sending(&[&a, &b]) {
            break host;
        }
        assert!(Instant::now() < deadline, "no host's run holds the connection to the SMTP server");
        std::thread::sleep(Duration::from_millis(20));
    };
    let (dead, alive) = if sender == 0 { (a, b) } else { (b, a) };
    // The server takes the next emails at once (the one it holds stays held): set before the
    // kill, so that the host left never meets the hang.
    hosts.server.set(Behavior::Accept);
    // Counted before the kill: the host left may take over and send everything before the
    // writer below is joined (the lock file is free the moment the holder dies).
    let before = hosts.server.received().len();
    let dead_records = dead.die();
    let killed_at = Instant::now();
    assert_eq!(dead_records.last().and_then(|r| r.signal), Some(libc::SIGKILL), "{:?}", dead_records.last());
    writer.join().unwrap();
    // The first email after the kill comes from the host left.
    let deadline = Instant::now() + PATIENCE;
    while hosts.server.received().len() == before {
        assert!(Instant::now() < deadline, "the host left never took over; {}", summary(&[&alive]));
        std::thread::sleep(Duration::from_millis(20));
    }
    let takeover = killed_at.elapsed();
    hosts.wait_for_distinct(n, "after the kill", &[&alive]);
    let alive_records = alive.finish();
    assert_clean("the host left", &alive_records);
    assert_clean("the host killed, before", &dead_records[..dead_records.len() - 1]);
    let last = hosts.run(1 - sender);
    assert_eq!(last.code, Some(0), "{last:?}");
    assert_each_once(&hosts.server, n, 1, "one host killed mid-send");
    let twice: Vec<String> = {
        let all = mails(&hosts.server);
        let mut ids: Vec<String> = all.iter().map(|m| m.message_id.clone()).collect();
        ids.sort();
        ids.windows(2).filter(|w| w[0] == w[1]).map(|w| w[0].clone()).collect()
    };
    assert_eq!(twice, vec![in_flight], "the email in flight at the kill went twice, no other");
    takeover
}

/// Waits (up to `PATIENCE`) until the server has received `n` messages.
fn wait_received(server: &SmtpServer, n: usize, loopers: &[&Looper]) {
    let deadline = Instant::now() + PATIENCE;
    while server.received().len() < n {
        assert!(
            Instant::now() < deadline,
            "the server received {} of {n}; {}",
            server.received().len(),
            summary(loopers)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Two hosts start their first run on an empty state at the same instant: the schema is made
/// once, both runs end cleanly, the chats go once.
fn starting_together(make: &dyn Fn(&Path) -> StateAt, rounds: usize) -> Vec<Hosts> {
    (0..rounds)
        .map(|_| {
            let hosts = Hosts::new(make);
            let mut conn = rusqlite::Connection::open(&hosts.export).unwrap();
            for i in 0..5 {
                add_lead(&mut conn, i);
            }
            // Both started, then both let go at once: the closest two cron jobs come.
            let go = Arc::new(std::sync::Barrier::new(2));
            let runs: Vec<JoinHandle<RunRecord>> = (0..2)
                .map(|host| {
                    let mut command = hosts.command(host, &["run", "--now", NOW]);
                    command.stderr(Stdio::piped());
                    let go = go.clone();
                    std::thread::spawn(move || {
                        go.wait();
                        let out = command.output().unwrap();
                        RunRecord {
                            code: out.status.code(),
                            signal: None,
                            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                        }
                    })
                })
                .collect();
            let records: Vec<RunRecord> = runs.into_iter().map(|h| h.join().unwrap()).collect();
            assert_clean("two hosts starting together", &records);
            assert!(records.iter().any(|r| r.code == Some(0)), "one of them ran: {records:?}");
            let last = hosts.run(0);
            assert_eq!(last.code, Some(0), "{last:?}");
            assert_each_once(&hosts.server, 5, 0, "two hosts starting together");
            hosts
        })
        .collect()
}

// ---- SQLite: two processes on one host, one state file, the lock file between them ----

fn sqlite(dir: &Path) -> StateAt {
    StateAt::Sqlite(dir.join("state.sqlite"))
}

#[test]
fn sqlite_two_processes_in_loops_send_every_email_once() {
    every_email_once(&Hosts::new(sqlite));
}

#[test]
fn sqlite_a_process_killed_mid_send_is_replaced_and_only_its_email_goes_twice() {
    let takeover = killed_mid_send(&Hosts::new(sqlite));
    eprintln!("sqlite: the other process sent {takeover:.1?} after the kill");
}

#[test]
fn sqlite_two_processes_starting_on_no_state_make_it_once() {
    for hosts in starting_together(&sqlite, 5) {
        let StateAt::Sqlite(path) = &hosts.state else { unreachable!() };
        let conn = rusqlite::Connection::open(path).unwrap();
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, 18, "every migration, once");
        drop(hosts.root);
    }
}

// ---- PgBouncer, as the PostgreSQL scenarios put it between the hosts and the state ----

/// The support itself: queries go through in transaction mode; stopped, a connection through it
/// fails; started again, on the same port, they go through again.
#[test]
fn pgbouncer_passes_queries_in_transaction_mode_and_restarts_on_its_port() {
    let Some(mut bouncer) = support::pgbouncer::start() else { return };
    let cluster = support::pg::cluster().unwrap();
    let url = bouncer.in_front_of(&cluster.database());
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    // Transaction mode: a session's server connection is not its own, so a session-level
    // advisory lock taken through it is not held for the session (what the state must avoid).
    let one: i32 = client.query_one("SELECT 1", &[]).unwrap().get(0);
    assert_eq!(one, 1);
    let mut admin = postgres::Client::connect(&bouncer.url("pgbouncer"), postgres::NoTls).expect("PgBouncer's console");
    let pools = admin.simple_query("SHOW POOLS").unwrap();
    let modes: Vec<String> = pools
        .iter()
        .filter_map(|m| match m {
            // The console's own pool ("pgbouncer") aside.
            postgres::SimpleQueryMessage::Row(r) if r.get("database") != Some("pgbouncer") => {
                r.get("pool_mode").map(str::to_owned)
            }
            _ => None,
        })
        .collect();
    assert!(!modes.is_empty() && modes.iter().all(|m| m == "transaction"), "{modes:?}");
    let port = bouncer.port;
    bouncer.stop();
    assert!(client.query_one("SELECT 1", &[]).is_err(), "the connection dropped with PgBouncer");
    assert!(postgres::Client::connect(&url, postgres::NoTls).is_err(), "nothing answers on {port}");
    bouncer.restart();
    assert_eq!(bouncer.port, port);
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let one: i32 = client.query_one("SELECT 1", &[]).unwrap().get(0);
    assert_eq!(one, 1);
}

// ---- PostgreSQL through PgBouncer in transaction mode: two hosts, the lease row between them ----

/// A new database on the test cluster, reached through `bouncer`.
fn postgres(bouncer: &support::pgbouncer::PgBouncer) -> impl Fn(&Path) -> StateAt + '_ {
    |_| {
        let direct = support::pg::cluster().unwrap().database();
        StateAt::Postgres { url: bouncer.in_front_of(&direct), direct }
    }
}

#[test]
fn postgres_two_hosts_in_loops_through_pgbouncer_send_every_email_once() {
    let Some(bouncer) = support::pgbouncer::start() else { return };
    every_email_once(&Hosts::new(postgres(&bouncer)));
}

#[test]
fn postgres_a_host_killed_mid_send_is_replaced_after_its_lease_and_only_its_email_goes_twice() {
    let Some(bouncer) = support::pgbouncer::start() else { return };
    let takeover = killed_mid_send(&Hosts::new(postgres(&bouncer)));
    eprintln!("postgresql: the other host sent {takeover:.1?} after the kill (lease 6s)");
}

/// PgBouncer killed while a run is in the middle of sending (the SMTP server slow to answer),
/// kept down while both hosts' runs meet it, then started again on its port: each run that
/// met the outage says so in one line naming the state's URL (no password), exits 1, and
/// nothing is lost; at most the email in flight went twice, with its Message-ID.
#[test]
fn postgres_pgbouncer_stopped_and_restarted_mid_run_one_line_nothing_lost() {
    let Some(mut bouncer) = support::pgbouncer::start() else { return };
    let hosts = Hosts::new(postgres(&bouncer));
    let StateAt::Postgres { url, .. } = &hosts.state else { unreachable!() };
    let n = 40;
    hosts.server.set(Behavior::StallAfterData(Duration::from_secs(2)));
    let writer = hosts.writer(0, n);
    let (a, b) = (hosts.start(0), hosts.start(1));
    wait_received(&hosts.server, 3, &[&a, &b]);
    // A run is mid-send: its email taken, the answer 2 s away.
    bouncer.stop();
    let (ended_a, ended_b) = (a.ended(), b.ended());
    let deadline = Instant::now() + PATIENCE;
    while a.ended() < ended_a + 3 || b.ended() < ended_b + 3 {
        assert!(Instant::now() < deadline, "the hosts' runs never ended while PgBouncer was down");
        std::thread::sleep(Duration::from_millis(20));
    }
    bouncer.restart();
    hosts.server.set(Behavior::Accept);
    writer.join().unwrap();
    hosts.wait_for_distinct(n, "after PgBouncer came back", &[&a, &b]);
    let (failed, records): (Vec<RunRecord>, Vec<RunRecord>) =
        a.finish().into_iter().chain(b.finish()).partition(|r| r.code == Some(1));
    assert!(failed.len() >= 6, "the runs while PgBouncer was down failed: {failed:?}, {} others", records.len());
    let shown = url.split('?').next().unwrap();
    for r in &failed {
        let lines: Vec<&str> = r.stderr.lines().filter(|l| !expected_line(l)).collect();
        assert_eq!(lines.len(), 1, "one line: {r:?}");
        assert!(lines[0].contains(shown), "names the state {shown}: {r:?}");
    }
    assert_clean("the hosts", &records);
    for r in &failed {
        assert!(!r.stderr.contains(PASSWORD), "{r:?}");
    }
    for host in 0..2 {
        let last = hosts.run(host);
        assert_eq!(last.code, Some(0), "{last:?}");
    }
    assert_each_once(&hosts.server, n, 1, "PgBouncer restarted mid-run");
}

#[test]
fn postgres_two_hosts_starting_on_an_empty_database_migrate_it_once() {
    let Some(bouncer) = support::pgbouncer::start() else { return };
    for hosts in starting_together(&postgres(&bouncer), 5) {
        let StateAt::Postgres { direct, .. } = &hosts.state else { unreachable!() };
        let mut client = postgres::Client::connect(direct, postgres::NoTls).unwrap();
        let rows =
            client.query("SELECT version, count(*) FROM schema_version GROUP BY version ORDER BY 1", &[]).unwrap();
        let versions: Vec<(i64, i64)> = rows.iter().map(|r| (r.get::<_, i32>(0).into(), r.get(1))).collect();
        assert_eq!(versions, (1..=18).map(|v| (v, 1)).collect::<Vec<_>>(), "every migration, once");
    }
}
