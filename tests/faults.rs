//! Faults injected for real: an SMTP server that refuses at each stage, stalls past the
//! timeout or hangs after taking a message; the process killed (SIGKILL) at each step
//! boundary; the bot runtime writing the export while runs read it. Every time: nothing is
//! lost, and the only duplicate is the one message in flight at a kill, with its Message-ID.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use support::{Behavior, Fixture, Mail, SmtpServer, assert_each_once, mails};

const NOW: &str = "2026-11-25T00:00:00Z";

fn leads(f: &Fixture, n: u32) -> Vec<String> {
    (0..n)
        .map(|i| {
            let id = format!("c{i:04}");
            f.lead_who_leaves(&id, &format!("Visitor {i}"), "v@example.com", i % 60);
            id
        })
        .collect()
}

#[test]
fn refusals_at_mail_rcpt_and_data_keep_everything_queued() {
    for (stage, behavior) in [
        ("MAIL", Behavior::RejectMail("451 4.3.0 mail server temporarily rejected message".into())),
        ("RCPT", Behavior::RejectRcpt("450 4.2.0 mailbox busy".into())),
        (
            "DATA",
            Behavior::RejectDataContaining { needle: String::new(), reply: "452 4.3.1 insufficient storage".into() },
        ),
    ] {
        let server = SmtpServer::start();
        let f = Fixture::new(server.port());
        leads(&f, 3);
        server.set(behavior);
        let out = f.run_at(NOW, &[], 3);
        assert_eq!(out.stderr.matches("not sent (attempt 1)").count(), 3, "{stage}: every one tried: {}", out.stderr);
        assert!(server.received().is_empty(), "{stage}");
        let queued: HashSet<String> =
            f.outbox().into_iter().filter(|r| r.status == "pending" && r.attempts == 1).map(|r| r.message_id).collect();
        assert_eq!(queued.len(), 3, "{stage}");

        server.set(Behavior::Accept);
        f.run_at(NOW, &[], 0);
        assert_each_once(&server, 3, 0, stage);
        let sent: HashSet<String> = mails(&server).into_iter().map(|m| format!("<{}>", m.message_id)).collect();
        assert_eq!(sent, queued, "{stage}: same Message-IDs");
    }
}

#[test]
fn a_server_that_stalls_past_the_timeout_loses_nothing() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    std::fs::write(
        &f.config,
        std::fs::read_to_string(&f.config).unwrap().replace("timeout = \"5s\"", "timeout = \"1s\""),
    )
    .unwrap();
    leads(&f, 2);
    server.set(Behavior::StallAfterData(Duration::from_secs(3)));
    let started = Instant::now();
    let out = f.run_at(NOW, &[], 3);
    assert!(started.elapsed() < Duration::from_secs(3), "gave up at the timeout: {:?}", started.elapsed());
    assert!(out.stderr.contains("did not answer within the timeout"), "{}", out.stderr);
    assert_eq!(f.outbox().iter().filter(|r| r.status == "pending").count(), 2, "both wait");

    server.set(Behavior::Accept);
    f.run_at(NOW, &[], 0);
    // The stalled message may have been taken by the server before we gave up: at most that
    // one twice, with one Message-ID.
    assert_each_once(&server, 2, 1, "");
}

#[test]
fn killed_between_acceptance_and_marking_resends_only_that_email() {
    for accepted_before_kill in [0, 3] {
        let server = SmtpServer::start();
        let f = Fixture::new(server.port());
        leads(&f, 6);
        server.set(Behavior::HangAfterData { accept: accepted_before_kill });
        let mut child = f.spawn(&["run", "--now", NOW]);
        server.wait_for(accepted_before_kill + 1);
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let in_flight = Mail::read(&server.received()[accepted_before_kill]).message_id;

        server.set(Behavior::Accept);
        f.run_at(NOW, &[], 0);
        assert_each_once(&server, 6, 1, "");
        let copies = mails(&server).iter().filter(|m| m.message_id == in_flight).count();
        assert_eq!(copies, 2, "the in-flight email, and only it, went twice");
        f.run_at(NOW, &[], 0);
        assert_eq!(server.received().len(), 7);
    }
}

/// Pipelined, the next email's MAIL, RCPT and DATA go out while the one before is being marked
/// sent (`Mailer::begin`). Killed the moment they arrive: the one before may go twice (it is
/// the one in flight), the next goes once, nothing is lost.
#[test]
fn killed_while_the_next_envelope_goes_out_resends_at_most_the_one_before() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    leads(&f, 4);
    let mut child = f.spawn(&["run", "--now", NOW]);
    server.set(Behavior::KillOnMail { pid: child.id(), nth: 2 });
    let status = child.wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL), "{status}");
    let first = mails(&server);
    assert_eq!(first.len(), 1, "killed before the second email's message went: {:?}", server.verbs());
    let last_mail = server.verbs().iter().rposition(|v| v == "MAIL").unwrap();
    assert!(server.pipelined()[last_mail], "MAIL, RCPT and DATA came together");

    server.set(Behavior::Accept);
    f.run_at(NOW, &[], 0);
    assert_each_once(&server, 4, 1, "after the kill");
    let twice: Vec<String> = mails(&server)
        .iter()
        .map(|m| m.message_id.clone())
        .filter(|id| mails(&server).iter().filter(|m| m.message_id == *id).count() > 1)
        .collect();
    assert!(twice.iter().all(|id| *id == first[0].message_id), "only the one in flight may go twice: {twice:?}");
}

#[test]
fn killed_at_any_moment_of_a_large_backfill_nothing_is_lost() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    // Every email on its own, as with a burst limit above the backfill (the flood guard is
    // tested in tests/inbox.rs).
    f.mail_setting("burst = 1000");
    let n = 400;
    for i in 0..n {
        let id = format!("c{i:04}");
        f.lead_who_leaves(&id, &format!("Visitor {i}"), "v@example.com", i % 60);
        f.end(&id, "2026-11-24T09:59:00Z");
    }
    let mut kills = 0;
    for delay_ms in [2, 8, 20, 45, 90, 150] {
        let mut child = f.spawn(&["run", "--backfill", "--now", NOW]);
        std::thread::sleep(Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        child.wait().unwrap();
    }
    f.run_at(NOW, &["--backfill"], 0);
    assert!(kills > 0, "the runs were killed mid-way");
    assert_each_once(&server, n as usize, kills, "");
}

#[test]
fn runs_while_the_bot_runtime_writes_lose_nothing_and_never_see_half_a_batch() {
    for journal in ["wal", "delete"] {
        let server = SmtpServer::start();
        let f = Fixture::new(server.port());
        // About what is read beside a writer, not the flood guard: a run slowed down by a busy
        // machine can find more than 50 chats due and list the rest in a summary.
        f.mail_setting("burst = 1000");
        f.sql(&format!("PRAGMA journal_mode = {journal};"));
        let export = f.export.clone();
        let n = 150;
        // The writer waits for the runs at two points, so that however busy the machine is,
        // at least two runs end while it still has chats to write (no race to lose).
        let runs_done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = runs_done.clone();
        let writer = std::thread::spawn(move || {
            let conn = rusqlite::Connection::open(&export).unwrap();
            conn.busy_timeout(Duration::from_secs(10)).unwrap();
            for i in 0..n {
                let wait_for = match i {
                    50 => 1,
                    100 => 2,
                    _ => 0,
                };
                let waiting = std::time::Instant::now();
                while seen.load(std::sync::atomic::Ordering::SeqCst) < wait_for {
                    assert!(waiting.elapsed() < Duration::from_secs(120), "no run ended in two minutes");
                    std::thread::sleep(Duration::from_millis(5));
                }
                // One chat, written as the runtime writes it: its final answer and the end
                // step in one transaction.
                let id = format!("w{i:04}");
                let tx = conn.unchecked_transaction().unwrap();
                tx.execute("INSERT INTO conversations VALUES (?1, 'lead', 'v', '2026-11-24T23:00:00Z', NULL)", [&id])
                    .unwrap();
                for (sender, input_type, field, body) in [
                    ("bot", Some("text"), None, "Name?".to_owned()),
                    ("visitor", None, Some("name"), format!("Writer {i}")),
                    ("visitor", None, Some("final"), format!("final answer {i}")),
                    ("bot", Some("end_conversation"), None, "Bye".to_owned()),
                ] {
                    tx.execute(
                        "INSERT INTO messages (conversation_id, sent_at, sender, input_type, field, body) \
                         VALUES (?1, '2026-11-24T23:00:00Z', ?2, ?3, ?4, ?5)",
                        rusqlite::params![id, sender, input_type, field, body],
                    )
                    .unwrap();
                }
                tx.commit().unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        let mut runs = 0;
        while !writer.is_finished() {
            let out = f.run_at(NOW, &[], 0);
            assert_eq!(out.stderr_past_first_run(), "", "{journal}: a run beside a writer is a normal run");
            runs += 1;
            runs_done.store(runs, std::sync::atomic::Ordering::SeqCst);
        }
        writer.join().unwrap();
        f.run_at(NOW, &[], 0);
        assert!(runs >= 2, "{journal}: runs while the writer wrote");
        assert_each_once(&server, n, 0, "");
        for m in mails(&server) {
            let i: u32 = m.subject.split("Writer ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
            assert!(m.text.contains(&format!("final answer {i}")), "{journal}: whole batch in {}", m.subject);
        }
    }
}

#[test]
fn an_export_replaced_by_a_fresh_full_copy_resends_nothing() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    leads(&f, 3);
    f.run_at(NOW, &[], 0);
    assert_eq!(server.received().len(), 3);
    // The runtime writes a new full export beside the old one and renames it over.
    let fresh = f.dir.path().join("export.new");
    rusqlite::Connection::open(&f.export).unwrap().execute("VACUUM INTO ?1", [fresh.to_str().unwrap()]).unwrap();
    std::fs::rename(&fresh, &f.export).unwrap();
    f.run_at("2026-11-25T01:00:00Z", &[], 0);
    assert_eq!(server.received().len(), 3);
}

#[test]
fn an_outage_uses_up_none_of_an_emails_attempts() {
    let server = SmtpServer::start();
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let f = Fixture::new(dead_port);
    f.write_config(dead_port, "max_attempts = 2");
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    for minute in 0..3 {
        f.run_at(&format!("2026-11-24T10:0{minute}:00Z"), &[], 3);
    }
    // The server is back and refuses the email once, for good as far as it knows.
    f.write_config(server.port(), "max_attempts = 2");
    server.set(Behavior::RejectDataContaining { needle: "Jane Doe".into(), reply: "550 5.7.1 rejected".into() });
    let out = f.run_at("2026-11-24T10:05:00Z", &[], 3);
    assert!(!out.stderr.contains("parked"), "one refusal of two allowed: {}", out.stderr);
    server.set(Behavior::Accept);
    f.run_at("2026-11-24T10:10:00Z", &[], 0);
    assert_eq!(mails(&server).len(), 1, "sent once the server takes it");
}
