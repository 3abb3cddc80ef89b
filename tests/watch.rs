//! `chat-notifier watch` (issue 29), through the built binary: the pipeline in one long-lived
//! process. A chat completed while it runs is emailed within seconds; an abandoned one at
//! `abandon_after`, not at the next interval; `run` beside it exits 4; SIGTERM in the middle of
//! a send loses nothing and sends nothing twice; SIGHUP with a broken config keeps the old one;
//! an SMTP server down, the export deleted, PostgreSQL restarted: one line each way, every
//! email delivered; memory flat over many cycles.

mod support;

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use support::pg::{self, EXPORT_SCHEMA, PgExport};
use support::smtp::free_port;
use support::{Behavior, Fixture, SmtpServer, assert_each_once, bin, mails};

/// A running watcher, its stderr collected line by line; killed if a test fails first.
struct Watcher {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Watcher {
    /// `chat-notifier --config <fixture> ARGS watch`, once it holds the state (its line is in
    /// the lock file).
    fn start(f: &Fixture, args: &[&str]) -> Watcher {
        Watcher::start_with_env(f, args, &[])
    }

    fn start_with_env(f: &Fixture, args: &[&str], env: &[(&str, &str)]) -> Watcher {
        // The state's first run done, on what the export has: the chats a test adds are new.
        if !f.state.exists() {
            let first = f.run(&["run"]);
            assert_eq!((first.code, first.stderr.as_str()), (0, ""));
        }
        let mut child = Command::new(bin())
            .envs(env.iter().copied())
            .arg("--config")
            .arg(&f.config)
            .args(args)
            .arg("watch")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let (lines, pipe) = (Arc::clone(&stderr), child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                lines.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        let mut w = Watcher { child, stderr };
        let lock = f.dir.path().join("state.sqlite.lock");
        let mine = format!("watch pid {} since ", w.child.id());
        w.until(Duration::from_secs(30), "the watcher to hold the state", |w| {
            std::fs::read_to_string(&lock).is_ok_and(|t| t.starts_with(&mine)) || w.ended()
        });
        assert!(!w.ended(), "the watcher ended at start: {}", w.stderr());
        w
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn ended(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    /// Waits (bounded) until `done`, polling; fails naming `what` and the stderr so far.
    fn until(&mut self, limit: Duration, what: &str, mut done: impl FnMut(&mut Self) -> bool) -> Duration {
        let start = Instant::now();
        while !done(self) {
            assert!(start.elapsed() < limit, "waited {limit:?} for {what}; stderr:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(10));
        }
        start.elapsed()
    }

    /// Waits until stderr has a line containing `needle`.
    fn line(&mut self, needle: &str) {
        self.until(Duration::from_secs(60), &format!("a line with {needle:?}"), |w| w.stderr().contains(needle));
    }

    fn signal(&self, signal: libc::c_int) {
        assert_eq!(unsafe { libc::kill(self.child.id() as libc::pid_t, signal) }, 0);
    }

    /// SIGTERM, then its exit code and how long it took to exit.
    fn stop(&mut self) -> (i32, Duration) {
        self.signal(libc::SIGTERM);
        let mut code = None;
        let took = self.until(Duration::from_secs(30), "the watcher to exit after SIGTERM", |w| {
            code = w.child.try_wait().unwrap().map(|s| s.code().unwrap_or(-1));
            code.is_some()
        });
        (code.unwrap(), took)
    }

    /// Resident memory now, KiB.
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap();
        line.trim().trim_end_matches("kB").trim().parse().unwrap()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A chat that reaches its end now, a commit per message as a bot writes them.
fn completed(f: &Fixture, id: &str) {
    f.conversation(id, &now());
    f.bot(id, &now(), "ask_name", "text", "What's your name?");
    f.visitor(id, &now(), Some("name"), "Jane Doe");
    f.end(id, &now());
}

fn completed_is_emailed_within_seconds(wal: bool) {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    if wal {
        f.sql("PRAGMA journal_mode = WAL;");
    }
    // An interval of an hour: only the write can wake the watcher in time.
    watch_settings(&f, "interval = \"1h\"");
    let mut w = Watcher::start(&f, &[]);
    completed(&f, "c1");
    let committed = Instant::now();
    w.until(Duration::from_secs(30), "the email", |_| !server.received().is_empty());
    let latency = committed.elapsed();
    // Generous for a loaded machine; the real figures are in BENCHMARKS.md.
    assert!(latency < Duration::from_secs(30), "{latency:?}");
    completed(&f, "c2");
    w.until(Duration::from_secs(30), "the second email", |_| server.received().len() == 2);
    let (code, took) = w.stop();
    assert_eq!(code, 0, "{}", w.stderr());
    assert!(took < Duration::from_secs(10), "exited {took:?} after SIGTERM");
    assert_eq!(w.stderr(), "", "quiet while all is well");
    assert_each_once(&server, 2, 0, "watch");
}

#[test]
fn a_chat_completed_while_watching_is_emailed_within_seconds() {
    completed_is_emailed_within_seconds(false);
}

#[test]
fn a_chat_completed_in_a_wal_export_is_emailed_within_seconds() {
    completed_is_emailed_within_seconds(true);
}

/// `[watch]` keys, appended to a fixture's config.
fn watch_settings(f: &Fixture, keys: &str) {
    let text = std::fs::read_to_string(&f.config).unwrap();
    std::fs::write(&f.config, format!("{text}\n[watch]\n{keys}\n")).unwrap();
}

#[test]
fn an_abandoned_chat_is_judged_at_abandon_after_not_at_the_next_interval() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.write_config(server.port(), "abandon_after = \"3s\"");
    watch_settings(&f, "interval = \"1h\"");
    let mut w = Watcher::start(&f, &[]);
    f.conversation("a1", &now());
    f.bot("a1", &now(), "ask_name", "text", "What's your name?");
    f.visitor("a1", &now(), Some("name"), "Jane Doe");
    f.bot("a1", &now(), "ask_email", "email", "And your email?");
    let last = Instant::now();
    let took = w.until(Duration::from_secs(30), "the abandoned chat's email", |_| !server.received().is_empty());
    assert!(last.elapsed() >= Duration::from_secs(3) - Duration::from_millis(50), "judged early: {took:?}");
    assert_eq!(mails(&server)[0].header("X-Chat-State").as_deref(), Some("abandoned"));
    assert_eq!(w.stop().0, 0);
    assert_eq!(w.stderr(), "");
}

#[test]
fn run_while_watching_exits_4_and_status_names_the_watcher() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    let mut w = Watcher::start(&f, &[]);
    let out = f.run(&["run"]);
    assert_eq!(out.code, 4, "{}", out.stderr);
    let pid = w.child.id();
    // The line names the watcher, not "another run".
    assert!(out.stderr.contains(&format!("a watcher (pid {pid}, since ")), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    let status = f.run(&["status"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(status.stdout.contains(&format!("watcher (pid {pid}) holds the state since ")), "{}", status.stdout);
    let json = f.run(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(json["held_by"]["pid"], pid);
    assert_eq!(json["held_by"]["watching"], true);
    // A second watcher is turned away as a run is.
    let second = f.run(&["watch"]);
    assert_eq!(second.code, 4, "{}", second.stderr);
    assert_eq!(w.stop().0, 0);
    let status = f.run(&["status"]);
    assert!(!status.stdout.contains("holds the state"), "{}", status.stdout);
    assert_eq!(f.run(&["run"]).code, 0, "the lock is free once the watcher is gone");
}

#[test]
fn sigterm_mid_send_loses_nothing_and_sends_nothing_twice() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    // The first email is taken, the second read and never answered: SIGTERM comes then.
    server.set(Behavior::HangAfterData { accept: 1 });
    let mut w = Watcher::start(&f, &[]);
    completed(&f, "t1");
    completed(&f, "t2");
    w.until(Duration::from_secs(30), "the second email in flight", |_| server.received().len() == 2);
    let (code, took) = w.stop();
    assert_eq!(code, 0, "{}", w.stderr());
    assert!(took < Duration::from_secs(15), "exited {took:?} after SIGTERM");
    let in_flight = mails(&server)[1].message_id.clone();
    server.set(Behavior::Accept);
    let out = f.run(&["run"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let all = mails(&server);
    assert_eq!(all.len(), 3, "the one in flight again, nothing else");
    assert_eq!(all[2].message_id, in_flight, "the same Message-ID");
    assert_ne!(all[0].message_id, in_flight);
    assert!(f.outbox().iter().all(|r| r.status == "sent"));
}

#[test]
fn sighup_with_a_broken_config_keeps_the_old_one_running_and_says_why() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    let mut w = Watcher::start(&f, &[]);
    let good = std::fs::read_to_string(&f.config).unwrap();
    std::fs::write(&f.config, good.replace("[mail]", "abandon_after = \"soon\"\n[mail]")).unwrap();
    w.signal(libc::SIGHUP);
    w.line("abandon_after");
    let said = w.stderr();
    assert_eq!(said.lines().count(), 1, "one line: {said}");
    assert!(
        said.contains(&f.config.display().to_string()) && said.contains("goes on with the config it had"),
        "{said}"
    );
    completed(&f, "h1");
    w.until(Duration::from_secs(30), "the email, under the old config", |_| server.received().len() == 1);
    // A good config again: taken without a word.
    std::fs::write(&f.config, &good).unwrap();
    w.signal(libc::SIGHUP);
    completed(&f, "h2");
    w.until(Duration::from_secs(30), "the second email", |_| server.received().len() == 2);
    assert_eq!(w.stop().0, 0);
    assert_eq!(w.stderr(), said, "nothing more said");
}

#[test]
fn smtp_down_then_back_is_one_line_each_way_and_every_email_goes() {
    let port = free_port();
    let f = Fixture::new(port);
    watch_settings(&f, "retry_max = \"1s\"");
    let mut w = Watcher::start(&f, &[]);
    completed(&f, "s1");
    completed(&f, "s2");
    w.line("not sent");
    // Down for a while: many tries, one line.
    std::thread::sleep(Duration::from_secs(6));
    let down = w.stderr();
    assert_eq!(down.lines().count(), 1, "one line while down:\n{down}");
    // When it is tried again: the watcher's retry_max, not cron's next run.
    assert!(down.contains("retried by the watcher within 1s"), "{down}");
    let server = SmtpServer::start_at(port);
    w.until(Duration::from_secs(30), "both emails", |_| server.received().len() == 2);
    w.line("recovered");
    assert_eq!(w.stop().0, 0);
    let said = w.stderr();
    assert_eq!(said.lines().count(), 2, "one line each way:\n{said}");
    assert_each_once(&server, 2, 0, "smtp back");
}

#[test]
fn the_export_deleted_then_restored_is_one_line_each_way() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    watch_settings(&f, "retry_max = \"1s\"");
    let mut w = Watcher::start(&f, &[]);
    completed(&f, "d1");
    w.until(Duration::from_secs(30), "the first email", |_| server.received().len() == 1);
    let aside = f.dir.path().join("export.sqlite.aside");
    std::fs::rename(&f.export, &aside).unwrap();
    w.line("no such file");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(w.stderr().lines().count(), 1, "one line while it is gone:\n{}", w.stderr());
    std::fs::rename(&aside, &f.export).unwrap();
    completed(&f, "d2");
    w.until(Duration::from_secs(30), "the chat completed after the restore", |_| server.received().len() == 2);
    w.line("recovered");
    assert_eq!(w.stop().0, 0);
    assert_eq!(w.stderr().lines().count(), 2, "{}", w.stderr());
    assert_each_once(&server, 2, 0, "export restored");
}

#[test]
fn postgresql_restarted_is_one_line_each_way_and_the_chat_goes() {
    let Some(cluster) = pg::cluster() else { return };
    let server = SmtpServer::start();
    let url = cluster.database();
    let mut db = PgExport { client: cluster.client(&url) };
    db.client.batch_execute(EXPORT_SCHEMA).unwrap();
    let f = Fixture::new(server.port());
    f.use_source(&format!("kind = \"export\"\nurl = \"{url}\""));
    watch_settings(&f, "interval = \"1s\"\nretry_max = \"1s\"");
    let mut w = Watcher::start(&f, &[]);
    cluster.restart();
    // The next cycle finds its connection cut: one line.
    w.line("the watcher tries again");
    let mut db = PgExport { client: cluster.client(&url) };
    db.client.execute("INSERT INTO conversations VALUES ('p1', 'lead', 'v-p1', $1, NULL)", &[&now()]).unwrap();
    db.message("p1", &now(), "bot", Some("ask_name"), Some("text"), None, "What's your name?");
    db.message("p1", &now(), "visitor", None, None, Some("name"), "Jane Doe");
    db.message("p1", &now(), "bot", Some("done"), Some("end_conversation"), None, "Thanks!");
    w.until(Duration::from_secs(60), "the email after the restart", |_| server.received().len() == 1);
    // The restart cut the watcher's connection: one line, and one when it recovered.
    w.line("recovered");
    let said = w.stderr();
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(lines.len(), 2, "{said}");
    assert!(lines[0].contains("chat-notifier: error: export postgresql://"), "{said}");
    assert_eq!(w.stop().0, 0);
    assert_each_once(&server, 1, 0, "postgres restarted");
}

#[test]
fn memory_stays_flat_over_many_cycles() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    // -vv: one "ingest:" line per cycle, to count them.
    let mut w = Watcher::start(&f, &["-vv"]);
    let cycles = |w: &Watcher| w.stderr().matches("ingest: ").count();
    let mut samples = Vec::new();
    for i in 0..400 {
        // Each message its own commit, each waking a cycle.
        let before = cycles(&w);
        f.conversation(&format!("m{i}"), &now());
        f.visitor(&format!("m{i}"), &now(), None, "hello");
        w.until(Duration::from_secs(30), "a cycle for the write", |w| cycles(w) > before);
        if i % 50 == 49 {
            samples.push(w.rss());
        }
    }
    assert!(cycles(&w) >= 400);
    assert_eq!(w.stop().0, 0);
    // After warming up (the first samples), no growth beyond allocator noise.
    let (warm, last) = (samples[1], *samples.last().unwrap());
    assert!(last <= warm + 2048, "RSS grew from {warm} KiB to {last} KiB over the cycles: {samples:?}");
}

/// Reads the datagrams systemd would get until one contains `needle` (bounded); all of them.
fn datagrams_until(socket: &std::os::unix::net::UnixDatagram, needle: &str) -> Vec<String> {
    socket.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.iter().any(|g: &String| g.contains(needle)) {
        let n = socket.recv(&mut buf).unwrap_or_else(|e| panic!("waiting for {needle:?} after {got:?}: {e}"));
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    got
}

fn tells_systemd(abstract_socket: bool) {
    use std::os::unix::net::UnixDatagram;
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    let (socket, name) = if abstract_socket {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("chat-notifier-test-{}-{}", std::process::id(), f.dir.path().display());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        (UnixDatagram::bind_addr(&addr).unwrap(), format!("@{name}"))
    } else {
        let path = f.dir.path().join("notify.sock");
        (UnixDatagram::bind(&path).unwrap(), path.display().to_string())
    };
    // A watchdog of 0.4 s: a ping every 0.2 s while it waits.
    let env = [("NOTIFY_SOCKET", name.as_str()), ("WATCHDOG_USEC", "400000")];
    let mut w = Watcher::start_with_env(&f, &["-v"], &env);
    let first = datagrams_until(&socket, "READY=1");
    assert!(first.last().unwrap().contains("STATUS=watching"), "{first:?}");
    let pings = datagrams_until(&socket, "WATCHDOG=1");
    datagrams_until(&socket, "WATCHDOG=1");
    assert!(pings.iter().all(|p| !p.contains("READY")), "{pings:?}");
    completed(&f, "n1");
    completed(&f, "n2");
    w.until(Duration::from_secs(30), "both emails", |_| server.received().len() == 2);
    assert_eq!(w.stop().0, 0);
    // Fails (bounded) unless systemd is told the watcher stops.
    datagrams_until(&socket, "STOPPING=1");
    // -v: one line per email, as run says it.
    let said = w.stderr();
    let sent: Vec<&str> = said.lines().filter(|l| l.starts_with("chat-notifier: info: sent ")).collect();
    assert_eq!(sent.len(), 2, "{said}");
}

#[test]
fn it_tells_systemd_ready_status_and_watchdog_on_a_socket_path() {
    tells_systemd(false);
}

#[test]
fn it_tells_systemd_on_an_abstract_socket() {
    tells_systemd(true);
}

#[test]
fn a_rasa_sqlite_store_is_watched_for_writes_too() {
    let server = SmtpServer::start();
    let (f, rasa) = Fixture::rasa(server.port(), "");
    // An interval of an hour: only the write can wake the watcher in time.
    watch_settings(&f, "interval = \"1h\"");
    let mut w = Watcher::start(&f, &[]);
    rasa.session("r1", &now());
    rasa.user("r1", &now(), "hi, I'd like a quote", "greet");
    rasa.action("r1", &now(), "action_submit_lead");
    w.until(Duration::from_secs(30), "the Rasa chat's email", |_| server.received().len() == 1);
    assert_eq!(mails(&server)[0].header("X-Chat-State").as_deref(), Some("completed"));
    assert_eq!(w.stop().0, 0);
    assert_eq!(w.stderr(), "");
}

/// The lock file removed (or replaced) under a watcher: a cron run would lock another file and
/// send alongside. The watcher notices before it sends again, and exits 1 with one line.
#[test]
fn a_watcher_whose_lock_file_is_removed_stops_before_sending_and_exits_1() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    watch_settings(&f, "interval = \"1h\"");
    let mut w = Watcher::start(&f, &[]);
    std::fs::remove_file(f.dir.path().join("state.sqlite.lock")).unwrap();
    // A write wakes it: it must not send this chat, a run would send it too.
    completed(&f, "l1");
    let mut code = None;
    w.until(Duration::from_secs(30), "the watcher to exit", |w| {
        code = w.child.try_wait().unwrap().map(|s| s.code().unwrap_or(-1));
        code.is_some()
    });
    assert_eq!(code, Some(1), "{}", w.stderr());
    let said = w.stderr();
    assert_eq!(said.lines().count(), 1, "one line: {said}");
    assert!(said.contains("state.sqlite.lock") && said.contains("removed or replaced"), "{said}");
    assert!(server.received().is_empty(), "sent after losing its lock");
    // The next run sends it, once.
    let out = f.run(&["run"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_each_once(&server, 1, 0, "after the watcher stopped");
}

/// `chat-notifier --config <fixture> watch` with `env`, expected to end by itself: its exit code
/// and stderr (killed, and the test failed, if it is still running after a generous bound).
fn watch_exits(f: &Fixture, env: &[(&str, &str)]) -> (i32, String) {
    let child = Command::new(bin())
        .envs(env.iter().copied())
        .arg("--config")
        .arg(&f.config)
        .arg("watch")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output().unwrap()));
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(out) => (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned()),
        Err(_) => {
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let out = rx.recv().unwrap();
            panic!("still running after 30s; stderr:\n{}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

/// What no retry brings back (the state not a state, a password's variable not set) ends the
/// watcher at start, exit 1 and one line, as it ends `run`; it is not tried again forever.
#[test]
fn an_unusable_state_or_an_unset_password_ends_the_watcher_at_start_with_exit_1() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    std::fs::create_dir(&f.state).unwrap();
    let (code, said) = watch_exits(&f, &[]);
    assert_eq!(code, 1, "{said}");
    assert_eq!(said.lines().count(), 1, "one line: {said}");
    assert!(said.contains("state.sqlite"), "{said}");
    std::fs::remove_dir(&f.state).unwrap();
    assert_eq!(f.run(&["run"]).code, 0);
    // The [transport] table is the config's last.
    let config = std::fs::read_to_string(&f.config).unwrap();
    std::fs::write(&f.config, format!("{config}\nusername = \"notifier\"\npassword_env = \"WATCH_TEST_UNSET\"\n"))
        .unwrap();
    let (code, said) = watch_exits(&f, &[]);
    assert_eq!(code, 1, "{said}");
    assert_eq!(said.lines().count(), 1, "one line: {said}");
    assert!(said.contains("WATCH_TEST_UNSET is not set"), "{said}");
    // Set, it starts.
    let mut w = Watcher::start_with_env(&f, &[], &[("WATCH_TEST_UNSET", "x")]);
    assert_eq!(w.stop().0, 0, "{}", w.stderr());
}

/// A reloaded config whose transport password's variable is not set would fail every send:
/// SIGHUP refuses it (one line, the old config goes on) and `check` says so too.
#[test]
fn sighup_with_a_password_variable_not_set_keeps_the_old_config_and_check_fails() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    let mut w = Watcher::start(&f, &[]);
    // The [transport] table is the config's last.
    let good = std::fs::read_to_string(&f.config).unwrap();
    std::fs::write(&f.config, format!("{good}\nusername = \"notifier\"\npassword_env = \"WATCH_TEST_UNSET\"\n"))
        .unwrap();
    let check = f.run(&["check"]);
    assert_eq!(check.code, 1, "{}{}", check.stdout, check.stderr);
    assert!(check.stdout.contains("WATCH_TEST_UNSET is not set"), "{}", check.stdout);
    w.signal(libc::SIGHUP);
    w.line("WATCH_TEST_UNSET");
    let said = w.stderr();
    assert_eq!(said.lines().count(), 1, "one line: {said}");
    assert!(said.contains("goes on with the config it had"), "{said}");
    completed(&f, "k1");
    w.until(Duration::from_secs(30), "the email, under the old config", |_| server.received().len() == 1);
    assert_eq!(w.stop().0, 0);
    assert_eq!(w.stderr(), said, "nothing more said");
    assert_each_once(&server, 1, 0, "old config kept");
}

/// A `WATCHDOG_USEC` of 1 (a unit mixed up) must not make the watcher ping in a busy loop: its
/// period has a floor (100 ms), so a second brings a handful of datagrams, not thousands.
#[test]
fn a_tiny_watchdog_period_does_not_make_it_spin() {
    use std::os::unix::net::UnixDatagram;
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    let path = f.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let name = path.display().to_string();
    let env = [("NOTIFY_SOCKET", name.as_str()), ("WATCHDOG_USEC", "1")];
    let mut w = Watcher::start_with_env(&f, &[], &env);
    datagrams_until(&socket, "READY=1");
    // Every datagram for one second (each read bounded by what is left of it).
    let start = Instant::now();
    let mut count = 0;
    let mut buf = [0u8; 4096];
    while let Some(left) = Duration::from_secs(1).checked_sub(start.elapsed()).filter(|d| !d.is_zero()) {
        socket.set_read_timeout(Some(left)).unwrap();
        if socket.recv(&mut buf).is_ok() {
            count += 1;
        }
    }
    // At most ten pings a second by the floor, and a status or two; never thousands.
    assert!(count <= 50, "{count} datagrams in one second");
    assert_eq!(w.stop().0, 0, "{}", w.stderr());
}
