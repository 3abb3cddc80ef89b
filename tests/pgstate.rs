//! The state on PostgreSQL (`state = "postgresql://..."`, a database of the test cluster,
//! `support::pg`): the pipeline's behaviours as on a SQLite file, every command on it, the
//! schema migrated once by hosts that start together, the run lease (a dead holder replaced
//! once its lease lapses, a paused run stopping before it sends more), the config fingerprint
//! of each host, and `state copy` from a SQLite file with its threads.

mod support;

use std::time::{Duration, Instant};

use support::smtp::Behavior;
use support::{Fixture, SmtpServer, mails, pg};

/// A fixture whose state is a new database of the test cluster; `extra` goes at the top level
/// of the config. None where no PostgreSQL server runs.
fn on_postgres(server: &SmtpServer, extra: &str) -> Option<(Fixture, String)> {
    let cluster = pg::cluster()?;
    let url = cluster.database();
    let f = Fixture::new(server.port());
    use_state(&f, &url, extra);
    Some((f, url))
}

/// Points the fixture's config at the state `url`.
fn use_state(f: &Fixture, url: &str, extra: &str) {
    let text = std::fs::read_to_string(&f.config).unwrap();
    let text = text.replace("state = \"state.sqlite\"", &format!("state = \"{url}\"\n{extra}"));
    std::fs::write(&f.config, text).unwrap();
}

fn client(url: &str) -> postgres::Client {
    pg::cluster().unwrap().client(url)
}

/// The outbox as (conversation, status, message id), oldest first.
fn outbox(url: &str) -> Vec<(String, String, String)> {
    client(url)
        .query("SELECT conversation_id, status, message_id FROM outbox ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

/// Waits (bounded) until `f` holds.
fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(60), "waited a minute for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_thread_started_on_a_postgres_state_continues_there() {
    let server = SmtpServer::start();
    let Some((f, url)) = on_postgres(&server, "") else { return };
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    let first = f.run_at("2026-11-24T09:10:00Z", &[], 0);
    assert!(server.received().is_empty(), "{}", first.stderr);
    f.run_at("2026-11-24T09:31:00Z", &[], 0);
    f.visitor("c1", "2026-11-25T08:00:00Z", Some("phone"), "+1 555 0100");
    f.end("c1", "2026-11-25T08:00:01Z");
    f.run_at("2026-11-25T08:01:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 2);
    assert_eq!(m[1].subject, format!("Re: {}", m[0].subject));
    assert_eq!(m[1].in_reply_to.as_deref(), Some(m[0].message_id.as_str()));
    assert_eq!(m[1].references, std::slice::from_ref(&m[0].message_id));
    // Everything is in the database: no state file was made beside the config.
    assert!(!f.dir.path().join("state.sqlite").exists());
    let rows = outbox(&url);
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|(c, status, _)| c == "c1" && status == "sent"), "{rows:?}");
    // A run with nothing to do is quiet.
    let idle = f.run_at("2026-11-25T09:00:00Z", &[], 0);
    assert_eq!(idle.stderr, "");
    assert_eq!(server.received().len(), 2);
}

#[test]
fn an_email_the_server_refused_goes_again_with_the_same_message_id() {
    let server = SmtpServer::start();
    let Some((f, url)) = on_postgres(&server, "") else { return };
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    f.run_at("2026-11-24T09:10:00Z", &[], 0);
    server.set(Behavior::RejectMail("451 4.3.0 later".into()));
    // Exit 3: an email waits after a failure, as on a state file.
    f.run_at("2026-11-24T09:31:00Z", &[], 3);
    assert!(server.received().is_empty());
    let waiting = outbox(&url);
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].1, "pending");
    server.set(Behavior::Accept);
    f.run_at("2026-11-24T09:40:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 1);
    assert_eq!(format!("<{}>", m[0].message_id.trim_matches(['<', '>'])), waiting[0].2, "the queued Message-ID");
    assert_eq!(outbox(&url)[0].1, "sent");
}

#[test]
fn a_digest_goes_out_from_a_postgres_state() {
    let server = SmtpServer::start();
    let Some((f, url)) = on_postgres(&server, "") else { return };
    f.daily_digest(server.port());
    f.gives_name_only("anon1", "Ann", "2026-11-24T10:00:00Z");
    f.gives_name_only("anon2", "Ben", "2026-11-24T11:00:00Z");
    f.run_at("2026-11-24T12:00:00Z", &[], 0);
    assert!(server.received().is_empty(), "listed for the digest, not emailed");
    let listed: i64 =
        client(&url).query_one("SELECT count(*) FROM digest_items WHERE sent_in IS NULL", &[]).unwrap().get(0);
    assert_eq!(listed, 2);
    f.run_at("2026-11-25T08:05:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 1, "one digest");
    assert!(m[0].text.contains("Ann") && m[0].text.contains("Ben"), "{}", m[0].text);
    f.run_at("2026-11-25T09:05:00Z", &[], 0);
    assert_eq!(server.received().len(), 1, "sent once");
}

#[test]
fn status_check_prune_and_a_dry_run_work_on_a_postgres_state() {
    let server = SmtpServer::start();
    let Some((f, url)) = on_postgres(&server, "state_password_env = \"STATE_PW\"") else { return };
    let env = [("STATE_PW", "s3cret-pw")];
    // Before any run: check says so, status has nothing, and neither creates the schema.
    let check = f.run_with_env(&["check"], &env);
    assert!(check.stdout.contains("(no schema yet: the first run creates it)"), "{}", check.stdout);
    let status = f.run_with_env(&["status"], &env);
    assert_eq!(status.code, 0, "{}", status.stderr);

    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    f.lead_who_leaves("c2", "John Roe", "john@example.com", 1);
    // A dry run prints and changes nothing in the database, not even a schema.
    let dry = f.run_with_env(&["run", "--now", "2026-11-24T09:40:00Z", "--dry-run"], &env);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert!(dry.stdout.contains("Jane Doe"), "{}", dry.stdout);
    assert!(server.received().is_empty());
    let tables: i64 =
        client(&url).query_one("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", &[]).unwrap().get(0);
    assert_eq!(tables, 0, "check, status and a dry run create nothing");
    let out = f.run_with_env(&["run", "--now", "2026-11-24T09:40:00Z"], &env);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(server.received().len(), 2, "the dry run left everything to send");
    // A dry run on a state with rows: its copies are temporary, the real rows as they were.
    let before = outbox(&url);
    f.visitor("c1", "2026-11-24T10:00:00Z", Some("phone"), "+1 555 0100");
    f.end("c1", "2026-11-24T10:00:01Z");
    let dry = f.run_with_env(&["run", "--now", "2026-11-24T10:05:00Z", "--dry-run"], &env);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert!(dry.stdout.contains("In-Reply-To"), "{}", dry.stdout);
    assert_eq!(outbox(&url), before);

    let status = f.run_with_env(&["status", "--now", "2026-11-24T09:45:00Z", "--json"], &env);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(status.stdout.contains("c1") && status.stdout.contains("c2"), "{}", status.stdout);
    let check = f.run_with_env(&["check"], &env);
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
    let line = check.stdout.lines().find(|l| l.starts_with("state")).unwrap();
    let shown = url.replace("?sslmode=disable", "");
    assert!(line.contains(&shown), "{line}");
    assert!(line.contains("PostgreSQL, schema 18") && line.contains("2 conversations"), "{line}");
    assert!(line.contains("lease: free (last held by") && line.contains("(run)"), "{line}");
    assert!(line.contains("last run on") && line.contains("this host's settings"), "{line}");
    assert!(!check.stdout.contains("s3cret-pw"));

    let prune = f.run_with_env(&["prune", "--older-than", "1d", "--now", "2026-12-24T00:00:00Z"], &env);
    assert_eq!(prune.code, 0, "{}", prune.stderr);
    assert!(outbox(&url).is_empty(), "the settled conversations' emails are forgotten");
    let left: i64 = client(&url).query_one("SELECT count(*) FROM conversations", &[]).unwrap().get(0);
    assert_eq!(left, 0);
}

/// An error about the state names its URL without the password, in one line.
#[test]
fn a_state_that_cannot_be_reached_is_named_without_its_password() {
    let server = SmtpServer::start();
    let Some(cluster) = pg::cluster() else { return };
    let f = Fixture::new(server.port());
    let url = format!("postgresql://nobody_here@127.0.0.1:{}/none?sslmode=disable", cluster.port);
    use_state(&f, &url, "state_password_env = \"STATE_PW\"");
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    let out = f.run_with_env(&["run", "--now", "2026-11-24T09:40:00Z"], &[("STATE_PW", "s3cret-pw")]);
    assert_ne!(out.code, 0);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("state postgresql://nobody_here@127.0.0.1"), "{}", out.stderr);
    assert!(!out.stderr.contains("s3cret-pw"), "{}", out.stderr);
}

/// Two hosts whose cron fires at the same instant on an empty database: one creates the
/// schema, the other waits for it, and both run.
#[test]
fn two_processes_starting_on_an_empty_database_migrate_it_once() {
    let server = SmtpServer::start();
    let Some((f, url)) = on_postgres(&server, "") else { return };
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    let start = || {
        std::process::Command::new(support::bin())
            .args([std::ffi::OsStr::new("--config"), f.config.as_os_str()])
            .args(["-v", "run", "--now", "2026-11-24T09:40:00Z"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (start(), start());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let stderr = format!("{}{}", String::from_utf8_lossy(&a.stderr), String::from_utf8_lossy(&b.stderr));
    // Each runs, or finds the other's run in progress (exit 4) once the schema is there.
    let codes = [a.status.code(), b.status.code()];
    assert!(codes.contains(&Some(0)) && codes.iter().all(|c| [Some(0), Some(4)].contains(c)), "{codes:?} {stderr}");
    assert_eq!(stderr.matches("state schema migrated from 0 to 18").count(), 1, "{stderr}");
    let versions: Vec<i32> = client(&url)
        .query("SELECT version FROM schema_version ORDER BY version", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, (1..=18).collect::<Vec<_>>());
    assert_eq!(server.received().len(), 1, "one email, whichever host sent it");
}

/// A host that died holding the lease: the next run waits for nothing (it exits at once while
/// the lease holds) and takes over once it has lapsed by the database's clock.
#[test]
fn a_dead_hosts_lease_is_taken_over_once_it_lapses() {
    let server = SmtpServer::start();
    let Some((f, url)) = on_postgres(&server, "state_lease = \"3s\"") else { return };
    f.run_at("2026-11-24T09:00:00Z", &[], 0); // the schema
    // A holder that renewed its lease a moment ago, and then died.
    let renewed = |seconds: u32| {
        client(&url)
            .batch_execute(&format!(
                "UPDATE lease SET holder = 'far-away pid 4242 (run) #dead', acquired_at = clock_timestamp(), \
                 expires_at = clock_timestamp() + interval '{seconds} seconds', released_at = NULL"
            ))
            .unwrap()
    };
    renewed(600);
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    // Exit 4, as when another run holds a state file's lock.
    let held = f.run_at("2026-11-24T09:40:00Z", &[], 4);
    assert!(
        held.stderr.contains("another run is in progress (the lease in")
            && held.stderr.contains("is held by far-away pid 4242 (run)"),
        "{}",
        held.stderr
    );
    assert!(server.received().is_empty());
    renewed(1);
    wait_until("the lease to lapse", || {
        client(&url).query_one("SELECT expires_at < clock_timestamp() FROM lease", &[]).unwrap().get(0)
    });
    let took = f.run_at("2026-11-24T09:40:30Z", &[], 0);
    assert!(took.stderr.contains("took the run lease over from far-away pid 4242 (run) #dead"), "{}", took.stderr);
    assert_eq!(server.received().len(), 1);
    let released: bool = client(&url).query_one("SELECT released_at IS NOT NULL FROM lease", &[]).unwrap().get(0);
    assert!(released, "a run that ends gives the lease back");
}

/// A run paused mid-send (SIGSTOP) past its lease: another host takes over and sends what is
/// left; the paused one, continued, stops before its next email. At most the email it was
/// sending when paused goes twice.
#[test]
fn a_run_that_lost_its_lease_stops_before_sending_more() {
    let server = SmtpServer::start();
    let Some((f, url)) = on_postgres(&server, "state_lease = \"6s\"") else { return };
    // More emails than the run can be past when it is paused, however late the pause comes.
    for (i, id) in ["c1", "c2", "c3", "c4", "c5"].into_iter().enumerate() {
        f.lead_who_leaves(id, &format!("Lead {i}"), &format!("lead{i}@example.com"), i as u32);
    }
    f.run_at("2026-11-24T09:10:00Z", &[], 0); // the schema and the chats, nothing due yet
    server.set(Behavior::StallAfterData(Duration::from_secs(2)));
    let mut paused = std::process::Command::new(support::bin())
        .args([std::ffi::OsStr::new("--config"), f.config.as_os_str()])
        .args(["run", "--now", "2026-11-24T09:40:00Z"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The first email accepted: the run is in the middle of its second.
    wait_until("the first email", || !server.received().is_empty());
    unsafe { libc::kill(paused.id() as i32, libc::SIGSTOP) };
    wait_until("the paused run's lease to lapse", || {
        client(&url).query_one("SELECT expires_at < clock_timestamp() FROM lease", &[]).unwrap().get(0)
    });
    server.set(Behavior::Accept);
    let other = f.run_at("2026-11-24T09:41:00Z", &[], 0);
    assert!(other.stderr.contains("took the run lease over from"), "{}", other.stderr);
    unsafe { libc::kill(paused.id() as i32, libc::SIGCONT) };
    let start = Instant::now();
    let status = loop {
        if let Some(status) = paused.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "the continued run did not end");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(paused.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("lease lapsed or was taken over") && stderr.contains("stops before sending"), "{stderr}");
    let subjects: Vec<String> = mails(&server).into_iter().map(|m| m.subject).collect();
    for i in 0..5 {
        let n = subjects.iter().filter(|s| s.contains(&format!("Lead {i}"))).count();
        assert!((1..=2).contains(&n), "Lead {i}: {n} emails: {subjects:?}");
    }
    assert!(subjects.len() <= 6, "at most the one being sent went twice: {subjects:?}");
    assert!(outbox(&url).iter().all(|(_, status, _)| status == "sent"));
}

/// Two hosts sharing a state with different configs: the second says so in one line, naming
/// both hosts; `check` shows both fingerprints.
#[test]
fn a_host_whose_config_differs_from_the_last_runs_says_so() {
    let server = SmtpServer::start();
    let Some((f, url)) = on_postgres(&server, "") else { return };
    f.run_at("2026-11-24T09:00:00Z", &[], 0);
    client(&url).batch_execute("UPDATE last_run SET host = 'other-host', fingerprint = '0123456789abcdef'").unwrap();
    let out = f.run_at("2026-11-24T09:01:00Z", &[], 0);
    let lines: Vec<&str> = out.stderr.lines().filter(|l| l.contains("different configs")).collect();
    assert_eq!(lines.len(), 1, "{}", out.stderr);
    assert!(lines[0].contains("the last run on other-host") && lines[0].contains("0123456789abcdef"), "{}", lines[0]);
    // Same settings on the same host: nothing said.
    let again = f.run_at("2026-11-24T09:02:00Z", &[], 0);
    assert_eq!(again.stderr, "");
    let check = f.run(&["check"]);
    let line = check.stdout.lines().find(|l| l.starts_with("state")).unwrap();
    let fingerprint: String = client(&url).query_one("SELECT fingerprint FROM last_run", &[]).unwrap().get(0);
    assert!(line.contains(&format!("with settings {fingerprint}; this host's settings {fingerprint}")), "{line}");
}

/// Moving over: a thread started on a state file continues on PostgreSQL after `state copy`,
/// with the same thread (In-Reply-To, References, subject); a second copy into the same
/// database is refused in one line, changing nothing.
#[test]
fn state_copy_moves_a_state_file_and_its_threads_continue() {
    let server = SmtpServer::start();
    let Some(cluster) = pg::cluster() else { return };
    let url = cluster.database();
    let f = Fixture::new(server.port());
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    f.lead_who_leaves("c2", "John Roe", "john@example.com", 1);
    f.run_at("2026-11-24T09:40:00Z", &[], 0);
    assert_eq!(server.received().len(), 2);
    let copy = f.run_with_env(&["state", "copy", "--to", &url, "--password-env", "PW"], &[("PW", "unused")]);
    assert_eq!(copy.code, 0, "{}{}", copy.stdout, copy.stderr);
    assert!(copy.stdout.contains("2 conversations, 2 emails"), "{}", copy.stdout);
    let on_file = std::fs::read_to_string(&f.config).unwrap();
    use_state(&f, &url, "");
    f.visitor("c1", "2026-11-25T08:00:00Z", Some("phone"), "+1 555 0100");
    f.end("c1", "2026-11-25T08:00:01Z");
    let out = f.run_at("2026-11-25T08:01:00Z", &[], 0);
    assert!(!out.stderr.contains("first run"), "the copy carries the first run's record: {}", out.stderr);
    let m = mails(&server);
    assert_eq!(m.len(), 3, "only Jane's new state: {:?}", m.iter().map(|m| &m.subject).collect::<Vec<_>>());
    let first = m.iter().find(|x| x.subject.contains("Jane Doe")).unwrap();
    assert_eq!(m[2].subject, format!("Re: {}", first.subject));
    assert_eq!(m[2].in_reply_to.as_deref(), Some(first.message_id.as_str()));
    assert_eq!(m[2].references, std::slice::from_ref(&first.message_id));
    let ids: i64 = client(&url).query_one("SELECT count(DISTINCT id) FROM outbox", &[]).unwrap().get(0);
    assert_eq!(ids, 3, "new outbox ids follow the copied ones");
    // Into a database that holds a state: refused, nothing changed.
    let before = outbox(&url);
    std::fs::write(&f.config, on_file).unwrap();
    let again = f.run(&["state", "copy", "--to", &url]);
    assert_ne!(again.code, 0);
    assert_eq!(again.stderr.lines().count(), 1, "{}", again.stderr);
    assert!(again.stderr.contains("is not empty"), "{}", again.stderr);
    assert_eq!(outbox(&url), before);
}

/// The usual deployment: the chats and the state on the same PostgreSQL server (the source's
/// rows read within its commit window are remembered in the state), emails written by a folder
/// transport (marked sent a page at a time): each conversation once, threads kept.
#[test]
fn chats_and_state_both_on_postgres_with_a_folder_transport() {
    let server = SmtpServer::start();
    let Some(cluster) = pg::cluster() else { return };
    let source = cluster.database();
    let mut db = pg::PgExport { client: cluster.client(&source) };
    db.client.batch_execute(pg::EXPORT_SCHEMA).unwrap();
    let state = cluster.database();
    let f = Fixture::new(server.port());
    f.use_source(&format!("kind = \"export\"\nurl = \"{source}\""));
    use_state(&f, &state, "");
    f.set_transport("kind = \"folder\"\npath = \"outbox\"");
    for i in 0..5 {
        db.lead_who_leaves(&format!("c{i}"), &format!("Lead {i}"), &format!("lead{i}@example.com"), i);
    }
    f.run_at("2026-11-24T09:10:00Z", &[], 0);
    let remembered: i64 = client(&state).query_one("SELECT count(*) FROM recent_rows", &[]).unwrap().get(0);
    assert!(remembered > 0, "the source's commit window is kept in the state");
    f.run_at("2026-11-24T09:40:00Z", &[], 0);
    let written = || std::fs::read_dir(f.dir.path().join("outbox")).map_or(0, |d| d.count());
    assert_eq!(written(), 5);
    let rows = outbox(&state);
    assert_eq!(rows.len(), 5);
    assert!(rows.iter().all(|(_, status, _)| status == "sent"), "{rows:?}");
    db.message("c3", "2026-11-24T10:00:00Z", "visitor", None, None, Some("phone"), "+1 555 0100");
    db.message("c3", "2026-11-24T10:00:01Z", "bot", Some("done"), Some("end_conversation"), None, "Thanks!");
    f.run_at("2026-11-24T10:01:00Z", &[], 0);
    assert_eq!(written(), 6);
    let thread: String =
        client(&state).query_one("SELECT thread FROM conversations WHERE id = 'c3'", &[]).unwrap().get(0);
    assert_eq!(thread.split(' ').count(), 2, "{thread}");
    let idle = f.run_at("2026-11-24T11:00:00Z", &[], 0);
    assert_eq!(idle.stderr, "");
    assert_eq!(written(), 6);
}
