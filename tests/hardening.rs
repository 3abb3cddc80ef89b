//! The defects a hostile test pass found, each reproduced through the built binary (every test
//! here failed on the build before its fix: `CHAT_NOTIFIER_BIN=<old build> cargo test --test
//! hardening` shows it). One conversation's bad data never blocks another's email; a store
//! that breaks its contract is said out loud and recovered from; nothing on a terminal, in a
//! file or in an email can be steered by what a visitor typed.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use rusqlite::Connection;
use support::{Behavior, Fixture, SmtpServer, assert_each_once, mails};

/// Lines of stderr other than the first run's note.
fn warnings(out: &support::Output) -> Vec<String> {
    out.stderr_past_first_run().lines().map(str::to_owned).collect()
}

// A1 ----------------------------------------------------------------------------------------

#[test]
fn an_odd_visitor_address_never_stops_the_other_emails() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.lead_who_leaves("literal", "Lit Eral", "x@[127.0.0.1]", 0);
    f.lead_who_leaves("quoted", "Quo \"Ted\"", "\"a\\\"b\"@x.com", 1);
    f.lead_who_leaves("plain", "Jane Doe", "jane@example.com", 2);
    let out = f.run_at("2026-11-24T10:00:00Z", &["--dry-run"], 0);
    assert_eq!(out.stdout.matches("Subject: ").count(), 3, "{}", out.stderr);
    let out = f.run_at("2026-11-24T10:00:00Z", &[], 0);
    assert_eq!(warnings(&out), Vec::<String>::new());
    let m = mails(&server);
    assert_eq!(m.len(), 3);
    let reply_to = |who: &str| m.iter().find(|m| m.subject.contains(who)).unwrap().reply_to.clone();
    assert_eq!(reply_to("Jane"), Some("jane@example.com".into()));
    assert_eq!(reply_to("Lit Eral"), None, "an address that cannot be read back is not a Reply-To");
    assert_eq!(reply_to("Quo"), None);
}

#[test]
fn an_outbox_row_that_cannot_be_read_back_is_parked_alone() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    for (i, id) in ["a", "b", "c"].iter().enumerate() {
        f.lead_who_leaves(id, &format!("Visitor {id}"), &format!("{id}@example.com"), i as u32);
    }
    server.set(Behavior::RejectMail("451 4.3.0 later".into()));
    f.run_at("2026-11-24T10:00:00Z", &[], 3);
    // What an older version (or a hand edit) could leave in the outbox.
    Connection::open(&f.state)
        .unwrap()
        .execute("UPDATE outbox SET reply_to = 'x@[127.0.0.1]' WHERE conversation_id = 'b'", [])
        .unwrap();
    server.set(Behavior::Accept);
    let out = f.run_at("2026-11-24T10:05:00Z", &[], 3);
    let w = warnings(&out);
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(w[0].starts_with("chat-notifier: error: email for conversation \"b\" (outbox row "), "{}", w[0]);
    assert!(w[0].contains("parked") && w[0].contains("x@[127.0.0.1]"), "{}", w[0]);
    let subjects: Vec<String> = mails(&server).into_iter().map(|m| m.subject).collect();
    assert_eq!(subjects.len(), 2, "{subjects:?}");
    assert!(subjects.iter().all(|s| !s.contains("Visitor b")));
    // Parked, not retried: the next run is quiet and sends nothing more.
    let out = f.run_at("2026-11-24T10:10:00Z", &[], 0);
    assert_eq!(out.stderr, "");
    assert_eq!(server.received().len(), 2);
}

// A2 ----------------------------------------------------------------------------------------

/// Rewrites the export's messages with new ids: `new_id` is a SQL expression of the old `id`;
/// rows it maps to NULL are left out.
fn rewrite_export(f: &Fixture, new_id: &str) {
    f.sql(&format!(
        "CREATE TEMP TABLE old AS SELECT * FROM messages; DELETE FROM messages;
         INSERT INTO messages SELECT {new_id}, conversation_id, sent_at, sender, gambit_id, input_type, field, body
         FROM old WHERE {new_id} IS NOT NULL; DROP TABLE old;"
    ));
}

/// Ann (messages 1-5) and Bob (6-10), each emailed as abandoned.
fn two_leads_emailed() -> (SmtpServer, Fixture) {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.lead_who_leaves("a", "Ann", "ann@example.com", 0);
    f.lead_who_leaves("b", "Bob", "bob@example.com", 1);
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    assert_eq!(server.received().len(), 2);
    (server, f)
}

#[test]
fn an_export_restored_from_a_backup_is_noticed_and_its_new_lead_emailed() {
    let (server, f) = two_leads_emailed();
    // Restored from a backup taken before Bob's chat; since then a new visitor finished one.
    rewrite_export(&f, "CASE WHEN id <= 5 THEN id END");
    f.conversation("c", "2026-11-24T10:28:00Z");
    f.bot("c", "2026-11-24T10:28:00Z", "ask_email", "email", "Your email?");
    f.visitor("c", "2026-11-24T10:29:00Z", Some("email"), "cy@example.com");
    f.end("c", "2026-11-24T10:30:00Z");
    let out = f.run_at("2026-11-24T10:31:00Z", &[], 0);
    let w = warnings(&out);
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(w[0].contains("export.sqlite: its highest message id is now 8, below 10, the last one read"), "{}", w[0]);
    let m = mails(&server);
    assert_eq!(m.len(), 3, "Cy's chat, and nothing again for Ann");
    assert!(m[2].subject.starts_with("Lead Bot: chat with cy@example.com [#"), "{}", m[2].subject);
    // Said once: the next run is quiet.
    let out = f.run_at("2026-11-24T11:31:00Z", &[], 0);
    assert_eq!(out.stderr, "");
}

#[test]
fn an_export_regenerated_with_other_ids_sends_only_what_is_new() {
    let (server, f) = two_leads_emailed();
    // Regenerated: the same chats under other ids (Bob's first), and Ann came back and finished.
    rewrite_export(&f, "CASE WHEN id <= 5 THEN id + 104 ELSE id + 94 END");
    f.visitor("a", "2026-11-24T12:00:00Z", Some("phone"), "555");
    f.end("a", "2026-11-24T12:00:01Z");
    let out = f.run_at("2026-11-24T12:01:00Z", &[], 0);
    let w = warnings(&out);
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(w[0].contains("the message at id 10, the last one read, is gone: ids were renumbered"), "{}", w[0]);
    let m = mails(&server);
    assert_eq!(m.len(), 3, "Ann's completion only: {:?}", m.iter().map(|m| &m.subject).collect::<Vec<_>>());
    assert_eq!(m[2].subject, format!("Re: {}", m[0].subject), "in Ann's thread");
    assert!(m[2].text.contains("came back and finished"), "{}", m[2].text);
    f.run_at("2026-11-25T12:01:00Z", &[], 0);
    assert_eq!(server.received().len(), 3);
}

#[test]
fn rows_inserted_below_the_watermark_are_found_by_the_hourly_count() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.lead_who_leaves("a", "Ann", "ann@example.com", 0);
    // The runtime left a gap in its ids (a batch written later by another host, say).
    f.sql("UPDATE messages SET id = id + 100 WHERE id = 5");
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    assert_eq!(server.received().len(), 1);
    f.run_at("2026-11-24T10:10:00Z", &[], 0); // the first count: nothing amiss
    // Another host's chat lands in the gap.
    f.conversation("late", "2026-11-24T10:20:00Z");
    for (i, id) in (20..23).enumerate() {
        f.sql(&format!(
            "INSERT INTO messages VALUES ({id}, 'late', '2026-11-24T10:2{i}:00Z', 'visitor', NULL, NULL, 'email', 'late@example.com')"
        ));
    }
    let out = f.run_at("2026-11-24T11:30:00Z", &[], 0);
    let w = warnings(&out);
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(w[0].contains("3 message row(s) appeared with ids at or below 105"), "{}", w[0]);
    let m = mails(&server);
    assert_eq!(m.len(), 2);
    assert!(m[1].subject.contains("late@example.com"), "{}", m[1].subject);
}

// A3 ----------------------------------------------------------------------------------------

/// Conversation "long": a lead who leaves, then `n` more messages, bot and visitor in turn, each
/// body the SQL expression `body` (of the message's number `i`).
fn long_chat(f: &Fixture, n: usize, body: &str) {
    f.lead_who_leaves("long", "Lou", "lou@example.com", 0);
    f.sql(&format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n})
         INSERT INTO messages (conversation_id, sent_at, sender, gambit_id, input_type, field, body)
         SELECT 'long', '2026-11-24T09:05:00Z', CASE i % 2 WHEN 0 THEN 'bot' ELSE 'visitor' END, 'chat', 'text',
                NULL, {body} FROM n"
    ));
}

#[test]
fn a_very_long_chat_makes_a_bounded_email() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    long_chat(&f, 20_000, "'message number ' || i");
    f.visitor("long", "2026-11-24T09:06:00Z", None, &"x".repeat(5_000_000));
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 1);
    assert!(m[0].raw.len() < 1_000_000, "an email of {} bytes", m[0].raw.len());
    assert!(m[0].text.contains("[... 19806 earlier messages not shown ...]"), "{}", &m[0].text[..1500]);
    assert!(m[0].text.contains("Lead Bot: What's your name?"), "the start of the chat is kept");
    assert!(m[0].text.contains("message number 20000"), "the end of the chat is kept");
    assert!(m[0].text.contains("(4996000 more characters not shown)"), "a huge message is cut");
    assert!(m[0].html.contains("19806 earlier messages not shown"));
}

/// A chat of 200,000 messages held whole took a run to 67 MB; a run keeps of it what its email
/// shows (`source::transcript`), so the same run stays near an idle one's size.
#[test]
fn a_very_long_chat_is_read_in_bounded_memory() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    long_chat(&f, 200_000, "'message number ' || i || ' ' || hex(randomblob(20))");
    let kib = f.run_measured("2026-11-24T10:00:00Z");
    let m = mails(&server);
    assert_eq!(m.len(), 1);
    assert!(m[0].text.contains("[... 199805 earlier messages not shown ...]"), "{}", &m[0].text[..1500]);
    assert!(m[0].text.contains("message number 200000 "), "the end of the chat is kept");
    assert!(kib > 0, "no sample of the run's memory");
    assert!(kib < 40 * 1024, "a run with one chat of 200,000 messages peaked at {kib} KiB");
}

/// Thirty long chats due at once make about 14 MB of email: more than one transaction holds
/// (decide.rs' PAGE_BYTES), so the page is judged in parts, and each chat still gets its one email.
#[test]
fn a_page_of_long_chats_is_written_in_parts_each_emailed_once() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    for i in 0..30 {
        let id = format!("long-{i:02}");
        f.lead_who_leaves(&id, &format!("Lou {i}"), &format!("lou{i}@example.com"), 0);
        f.sql(&format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
             INSERT INTO messages (conversation_id, sent_at, sender, gambit_id, input_type, field, body)
             SELECT '{id}', '2026-11-24T09:05:00Z', 'visitor', 'chat', 'text', NULL, printf('%.1000c', 'a') FROM n"
        ));
    }
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    let total: usize = server.received().iter().map(|r| r.data.len()).sum();
    assert!(total > 12_000_000, "{total} bytes: more than one part's worth");
    assert_each_once(&server, 30, 0, "long chats");
    f.run_at("2026-11-24T10:05:00Z", &[], 0);
    assert_eq!(server.received().len(), 30, "nothing left for the next run");
}

// A4 ----------------------------------------------------------------------------------------

#[test]
fn a_message_dated_in_the_future_does_not_block_the_abandoned_email() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    let row = f.visitor("c1", "2099-01-01T00:00:00Z", None, "from the future");
    let out = f.run_at("2026-11-24T09:10:00Z", &[], 0);
    let w = warnings(&out);
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(
        w[0].contains(&format!("messages row {row}: sent_at 2099-01-01T00:00:00+00:00 is ahead of the clock")),
        "{}",
        w[0]
    );
    assert!(server.received().is_empty(), "idle time counts from now: not yet");
    let out = f.run_at("2026-11-24T09:40:00Z", &[], 0);
    assert_eq!(out.stderr, "", "reported once");
    assert_eq!(mails(&server).len(), 1, "abandoned, 30 minutes after the run that read it");
}

// A5, A6 ------------------------------------------------------------------------------------

#[test]
fn messages_before_their_conversation_row_wait_for_it() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.sql("PRAGMA foreign_keys = OFF");
    let rows: Vec<i64> = ["Name?", "Ada"]
        .iter()
        .enumerate()
        .map(|(i, body)| {
            let sender = if i == 0 { "bot" } else { "visitor" };
            let field = (i == 1).then_some("name");
            f.message("late", &format!("2026-11-24T09:00:0{i}Z"), sender, Some("ask_name"), Some("text"), field, body)
        })
        .collect();
    f.visitor("never", "2026-11-24T09:00:05Z", None, "no row will come");
    let out = f.run_at("2026-11-24T10:00:00Z", &[], 0);
    let w = warnings(&out);
    assert_eq!(w.len(), 2, "{w:#?}");
    assert!(
        w.iter().any(|l| l.contains(&format!("messages rows {}, {} point to conversation \"late\"", rows[0], rows[1])))
    );
    assert!(server.received().is_empty());
    let out = f.run_at("2026-11-24T10:30:00Z", &[], 0);
    assert_eq!(out.stderr, "", "said once while waiting");

    let preview = f.run(&["preview", "late"]);
    assert_eq!(preview.code, 1, "no conversations row, nothing to preview: {}", preview.stdout);

    f.conversation("late", "2026-11-24T09:00:00Z");
    let out = f.run_at("2026-11-24T11:00:00Z", &[], 0);
    assert_eq!(out.stderr, "");
    let m = mails(&server);
    assert_eq!(m.len(), 1, "emailed once its row arrived");
    assert!(m[0].subject.starts_with("Lead Bot: chat with Ada [#"), "{}", m[0].subject);

    let out = f.run_at("2026-11-25T10:30:00Z", &[], 0);
    let w = warnings(&out);
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(w[0].contains("skipped: conversation \"never\" still has no conversations row after 24h"), "{}", w[0]);
    let out = f.run_at("2026-11-26T10:30:00Z", &[], 0);
    assert_eq!(out.stderr, "");
    let status = f.run(&["status", "--json", "--now", "2026-11-26T10:30:00Z"]);
    assert!(status.stdout.contains("\"waiting\": 0"), "nothing left waiting: {}", status.stdout);
}

// A7 ----------------------------------------------------------------------------------------

#[test]
fn the_folder_transport_on_a_full_disk_leaves_no_partial_file_and_loses_nothing() {
    let f = Fixture::new(1);
    let outbox = f.dir.path().join("outbox");
    let copies = f.dir.path().join("copies");
    std::fs::create_dir_all(&outbox).unwrap();
    std::fs::create_dir_all(&copies).unwrap();
    f.set_transport("kind = \"folder\"\npath = \"outbox\"");
    for i in 0..6 {
        let id = format!("c{i}");
        f.lead_who_leaves(&id, &format!("Visitor {i}"), "v@example.com", i);
        f.visitor(&id, &format!("2026-11-24T09:{i:02}:30Z"), None, &"words ".repeat(3000));
    }
    // A 64 KiB disk holds two or three of these emails. Then the pickup agent takes what was
    // written (copied out, removed) and the next run sends the rest.
    let run = format!(
        "{} --config {} run --now 2026-11-24T11:00:00Z; echo \"exit=$?\"",
        support::bin().display(),
        f.config.display()
    );
    let script = format!(
        "set -u; mount -t tmpfs -o size=64k tmpfs {out} && umask 022 && \
         {run}; ls -A {out}; stat -c 'mode=%a size=%s %n' {out}/*; cp {out}/*.eml {copies}/; rm -f {out}/*.eml; \
         {run}; ls -A {out}; cp {out}/*.eml {copies}/",
        out = outbox.display(),
        copies = copies.display(),
    );
    let Some(out) = support::in_namespace(&script) else { return };
    let runs: Vec<&str> = out.stdout.split("exit=").skip(1).collect();
    assert_eq!(runs.len(), 2, "{}\n{}", out.stdout, out.stderr);
    assert!(runs[0].starts_with('3'), "the first run could not write everything: {}", out.stdout);
    assert!(runs[1].starts_with('0'), "the second one wrote the rest: {}\n{}", out.stdout, out.stderr);
    for listing in &runs {
        for name in listing.lines().skip(1).filter(|l| !l.starts_with("mode=")) {
            assert!(name.ends_with(".eml") && !name.starts_with('.'), "only whole emails in the folder: {name:?}");
        }
    }
    let modes: Vec<&str> = out.stdout.lines().filter(|l| l.starts_with("mode=")).collect();
    assert!(!modes.is_empty());
    for line in &modes {
        assert!(line.starts_with("mode=600 ") && !line.contains(" size=0 "), "owner-only, never empty: {line}");
    }
    assert!(out.stderr.contains("No space left on device"), "{}", out.stderr);
    let mut subjects: Vec<String> =
        std::fs::read_dir(&copies).unwrap().map(|e| support::read_eml(&e.unwrap().path()).subject).collect();
    subjects.sort();
    subjects.dedup();
    assert_eq!(subjects.len(), 6, "each email once, whole: {subjects:?}");
}

#[test]
fn the_folder_mode_can_be_widened_for_a_pickup_folder() {
    let f = Fixture::new(1);
    f.set_transport("kind = \"folder\"\npath = \"outbox\"\nmode = \"0640\"");
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    let files: Vec<_> = std::fs::read_dir(f.dir.path().join("outbox")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1);
    assert_eq!(std::fs::metadata(&files[0]).unwrap().permissions().mode() & 0o777, 0o640);
    f.set_transport("kind = \"folder\"\npath = \"outbox\"\nmode = \"0755\"");
    let out = f.run_at("2026-11-24T10:00:00Z", &[], 1);
    assert!(out.stderr.contains("transport.mode") || out.stderr.contains("mode: \"0755\""), "{}", out.stderr);
}

// A8 ----------------------------------------------------------------------------------------

#[test]
fn the_state_file_is_owner_only_and_never_reached_through_a_symlink() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    // Created by someone else's `touch`, world-readable: made owner-only on the first open.
    std::fs::write(&f.state, "").unwrap();
    std::fs::set_permissions(&f.state, std::fs::Permissions::from_mode(0o644)).unwrap();
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    assert_eq!(std::fs::metadata(&f.state).unwrap().permissions().mode() & 0o777, 0o600);

    // A dangling symlink at the state's path: refused, its target not created.
    std::fs::rename(&f.state, f.dir.path().join("moved.sqlite")).unwrap();
    let target = f.dir.path().join("elsewhere.sqlite");
    std::os::unix::fs::symlink(&target, &f.state).unwrap();
    let out = f.run_at("2026-11-24T11:00:00Z", &[], 1);
    assert!(out.stderr.contains(&format!("state {}: is a symbolic link", f.state.display())), "{}", out.stderr);
    assert!(!target.exists());
    std::fs::remove_file(&f.state).unwrap();
    std::fs::rename(f.dir.path().join("moved.sqlite"), &f.state).unwrap();

    // The lock beside it, the same.
    let lock = f.dir.path().join("state.sqlite.lock");
    std::fs::remove_file(&lock).unwrap();
    std::os::unix::fs::symlink(&target, &lock).unwrap();
    let out = f.run_at("2026-11-24T11:00:00Z", &[], 1);
    assert!(out.stderr.contains("state lock") && out.stderr.contains("is a symbolic link"), "{}", out.stderr);
    assert!(!target.exists());
    std::fs::remove_file(&lock).unwrap();

    // SQLite's -wal and -shm beside it: refused, and the file they point at keeps its mode (a
    // run as root from cron must not chmod whatever a link names).
    let victim = f.dir.path().join("victim.conf");
    std::fs::write(&victim, "keep me").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    for suffix in ["-wal", "-shm"] {
        let side = f.dir.path().join(format!("state.sqlite{suffix}"));
        let _ = std::fs::remove_file(&side);
        std::os::unix::fs::symlink(&victim, &side).unwrap();
        let out = f.run_at("2026-11-24T11:00:00Z", &[], 1);
        let shown = side.display().to_string();
        assert!(out.stderr.contains(&format!("state {shown}: is a symbolic link")), "{suffix}: {}", out.stderr);
        assert_eq!(std::fs::metadata(&victim).unwrap().permissions().mode() & 0o777, 0o644, "{suffix}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
        std::fs::remove_file(&side).unwrap();
    }
    f.run_at("2026-11-24T11:00:00Z", &[], 0);
}

#[test]
fn a_state_written_by_a_newer_version_is_one_line_naming_it_from_every_command() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    f.visitor("c1", "2026-11-24T11:00:00Z", None, "back");
    Connection::open(&f.state).unwrap().pragma_update(None, "user_version", 99).unwrap();
    let shown = f.state.display().to_string();
    let commands: [&[&str]; 6] = [
        &["run", "--now", "2026-11-24T12:00:00Z"],
        &["run", "--dry-run", "--now", "2026-11-24T12:00:00Z"],
        &["status"],
        &["preview", "c1", "--now", "2026-11-24T12:00:00Z"],
        &["prune", "--older-than", "30d"],
        &["check"],
    ];
    for args in commands {
        let out = f.run(args);
        assert_eq!(out.code, 1, "{args:?}: {}{}", out.stdout, out.stderr);
        let lines: Vec<&str> = out.stderr.lines().chain(out.stdout.lines().filter(|l| l.contains("newer"))).collect();
        let line = lines.iter().find(|l| l.contains("newer")).unwrap_or_else(|| panic!("{args:?}: {lines:?}"));
        assert!(
            line.contains(&format!("state {shown}: written by a newer chat-notifier (schema 99")),
            "{args:?}: {line}"
        );
        assert!(!out.stderr.contains("upgrades it") && !out.stderr.contains("dry-run-"), "{args:?}: {}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{args:?}: one line: {}", out.stderr);
    }
    assert_eq!(server.received().len(), 1, "nothing sent past the first run");

    // No schema version on a file with tables (another program's database, or one damaged), or
    // a version no chat-notifier writes: one short line naming the file, not a migration's SQL.
    for (version, says) in [(0, "has tables but no schema version"), (-5, "schema version -5")] {
        Connection::open(&f.state).unwrap().pragma_update(None, "user_version", version).unwrap();
        for args in commands {
            let out = f.run(args);
            assert_eq!(out.code, 1, "{version} {args:?}: {}{}", out.stdout, out.stderr);
            let all = format!("{}{}", out.stdout, out.stderr);
            let line = all.lines().find(|l| l.contains(says)).unwrap_or_else(|| panic!("{version} {args:?}: {all}"));
            assert!(line.contains(&format!("state {shown}: ")) && line.len() < 300, "{version} {args:?}: {line}");
            assert!(!all.contains("upgrades it") && !all.contains("dry-run-"), "{version} {args:?}: {all}");
        }
    }
    assert_eq!(server.received().len(), 1, "nothing sent");
}

#[test]
fn state_and_source_as_one_file_is_refused_before_anything_is_touched() {
    let f = Fixture::new(1);
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    let config =
        std::fs::read_to_string(&f.config).unwrap().replace("state = \"state.sqlite\"", "state = \"./export.sqlite\"");
    std::fs::write(&f.config, config).unwrap();
    for args in [&["run"][..], &["check"]] {
        let out = f.run(args);
        assert_eq!(out.code, 1);
        let line =
            out.stdout.lines().chain(out.stderr.lines()).find(|l| l.contains("is the source")).unwrap_or_default();
        assert!(line.contains("notifier.toml: state: "), "{}{}", out.stdout, out.stderr);
        assert!(line.len() < 300, "one short line: {line}");
    }
    let mode: String = Connection::open(&f.export).unwrap().query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "delete", "the export was not switched to WAL");
}

#[test]
fn an_emptied_state_file_says_loudly_what_its_first_run_will_do() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.lead_who_leaves("old", "Old Timer", "old@example.com", 0);
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    f.visitor("c1", "2026-11-25T09:00:00Z", None, "still there?");
    f.run_at("2026-11-25T10:00:00Z", &[], 0);
    assert_eq!(server.received().len(), 1);
    std::fs::write(&f.state, "").unwrap(); // a restore gone wrong, a full disk...
    let expected = format!(
        "{}{} (no earlier run recorded): 1 conversation(s) active in the last 24h emailed as new threads, 1 older recorded without an email",
        support::FIRST_RUN,
        f.state.display()
    );
    let dry = f.run_at("2026-11-25T10:05:00Z", &["--dry-run"], 0);
    assert!(dry.stderr.starts_with(&expected), "{}", dry.stderr);
    let out = f.run_at("2026-11-25T10:05:00Z", &[], 0);
    assert!(out.stderr.starts_with(&expected), "{}", out.stderr);
}

// A9 ----------------------------------------------------------------------------------------

#[test]
fn no_terminal_escape_from_the_export_reaches_any_output() {
    let f = Fixture::new(1);
    f.set_transport("kind = \"folder\"\npath = \"outbox\"");
    f.sql("INSERT INTO bots VALUES ('evil', 'Evil\u{1b}[2J Bot\u{7}')");
    f.conversation_of("evil", "e1", "2026-11-24T09:00:00Z");
    f.sql("UPDATE conversations SET page_url = 'https://x.example/\u{1b}]0;pwned\u{7}' WHERE id = 'e1'");
    f.message("e1", "2026-11-24T09:00:00Z", "bot", Some("ask\u{1b}[31m\r_name"), Some("text"), None, "Name?");
    f.message("e1", "2026-11-24T09:00:01Z", "visitor", None, None, Some("na\u{1b}[1mme"), "Eve\u{1b}[5m");
    f.message("e1", "2026-11-24T09:00:02Z", "bot", Some("ask\u{1b}[31m\r_mail"), Some("email"), None, "Mail?");
    let outputs = [
        f.run(&["preview", "e1", "--now", "2026-11-24T10:00:00Z"]),
        f.run(&["run", "--dry-run", "--now", "2026-11-24T10:00:00Z"]),
        f.run(&["report", "--now", "2026-11-24T10:00:00Z"]),
        f.run(&["report", "--format", "csv", "--now", "2026-11-24T10:00:00Z"]),
        f.run(&["run", "--now", "2026-11-24T10:00:00Z"]),
        f.run(&["status", "--now", "2026-11-24T10:00:00Z"]),
    ];
    for out in &outputs {
        assert_eq!(out.code, 0, "{}", out.stderr);
        for text in [&out.stdout, &out.stderr] {
            assert!(!text.contains(['\u{1b}', '\u{7}', '\r']), "{text:?}");
        }
    }
    assert!(outputs[0].stdout.contains("Evil\u{FFFD}[2J Bot"), "shown, defused: {}", outputs[0].stdout);
    assert!(outputs[2].stdout.contains("ask\u{FFFD}[31m _name"), "{}", outputs[2].stdout);
    let eml = std::fs::read_dir(f.dir.path().join("outbox")).unwrap().next().unwrap().unwrap().path();
    let mail = support::read_eml(&eml);
    assert!(!mail.text.contains(['\u{1b}', '\u{7}']) && !mail.html.contains(['\u{1b}', '\u{7}']), "{}", mail.text);
}

// A10 ---------------------------------------------------------------------------------------

#[test]
fn absurd_durations_are_config_errors_not_panics() {
    let f = Fixture::new(1);
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    let good = std::fs::read_to_string(&f.config).unwrap();
    std::fs::write(&f.config, good.replace("time_zone = \"UTC\"", "abandon_after = \"100000000d\"")).unwrap();
    let check = f.run(&["check"]);
    assert_eq!(check.code, 1);
    assert!(check.stdout.contains("abandon_after") && check.stdout.contains("at most 36500d"), "{}", check.stdout);
    let run = f.run_at("2026-11-24T10:00:00Z", &[], 1);
    assert!(run.stderr.contains("abandon_after"), "{}", run.stderr);
    std::fs::write(&f.config, &good).unwrap();
    let prune = f.run(&["prune", "--older-than", "100000000d"]);
    assert_eq!(prune.code, 2, "a usage error: {}", prune.stderr);
}

#[test]
fn a_password_in_the_config_is_refused_for_every_transport() {
    let f = Fixture::new(1);
    for table in
        ["kind = \"folder\"\npath = \"outbox\"\npassword = \"hunter2\"", "kind = \"sendmail\"\npassword = \"hunter2\""]
    {
        f.set_transport(table);
        let out = f.run(&["check"]);
        assert_eq!(out.code, 1, "{table}");
        assert!(out.stdout.contains("password: passwords are not read from the config file"), "{}", out.stdout);
        assert!(!out.stdout.contains("hunter2") && !out.stderr.contains("hunter2"));
    }
}

#[test]
fn a_runaway_template_fails_its_email_instead_of_hanging_the_run() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    let templates = f.dir.path().join("templates");
    std::fs::create_dir_all(&templates).unwrap();
    std::fs::write(
        templates.join("abandoned.txt"),
        "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}",
    )
    .unwrap();
    f.write_config(server.port(), "templates = \"templates\"");
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    let check = f.run(&["check"]);
    assert_eq!(check.code, 1);
    assert!(check.stdout.contains("abandoned.txt") && check.stdout.contains("fuel"), "{}", check.stdout);
    let out = f.run_at("2026-11-24T10:00:00Z", &[], 3);
    assert!(out.stderr.contains("conversation \"c1\"") && out.stderr.contains("fuel"), "{}", out.stderr);
    assert!(server.received().is_empty());
}

#[test]
fn a_reader_that_goes_away_ends_a_command_quietly() {
    let f = Fixture::new(1);
    f.set_transport("kind = \"folder\"\npath = \"outbox\"");
    for i in 0..30 {
        f.lead_who_leaves(&format!("c{i}"), "Jane Doe", "jane@example.com", i);
    }
    f.run_at("2026-11-24T09:45:00Z", &[], 0);
    for args in [
        &["status", "--now", "2026-11-24T09:45:00Z"][..],
        &["report"],
        &["check"],
        &["completions", "bash"],
        &["man"],
        &["run", "--dry-run", "--now", "2026-11-25T09:00:00Z"],
    ] {
        let mut child = Command::new(support::bin())
            .arg("--config")
            .arg(&f.config)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // `| head` that has read enough, before anything was written
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn state_errors_name_the_state_file() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    // A state file as schema 15 wrote it (before the rows read by key and the destinations' tables).
    Connection::open(&f.state)
        .unwrap()
        .execute_batch(
            "DROP TABLE recent_rows; CREATE TABLE recent_ids (id INTEGER PRIMARY KEY); \
             DROP TABLE deliveries; DROP TABLE destination_threads; PRAGMA user_version = 15;",
        )
        .unwrap();
    let shown = f.state.display().to_string();
    let status = f.run(&["status"]);
    assert_eq!(status.code, 1);
    assert!(
        status.stderr.contains(&format!("state {shown}: schema 15, this chat-notifier reads 18")),
        "{}",
        status.stderr
    );
    let check = f.run(&["check"]);
    assert!(check.stdout.contains(&format!("{shown} (schema 15: the next run upgrades it to 18)")), "{}", check.stdout);
    f.visitor("c1", "2026-11-24T11:00:00Z", None, "back");
    f.run_at("2026-11-24T12:00:00Z", &[], 0);
    assert_eq!(server.received().len(), 2, "upgraded and running");

    // A full disk and a read-only folder, for real.
    let state_dir = f.dir.path().join("small");
    std::fs::create_dir_all(&state_dir).unwrap();
    let config = std::fs::read_to_string(&f.config)
        .unwrap()
        .replace("state = \"state.sqlite\"", "state = \"small/state.sqlite\"");
    std::fs::write(&f.config, config).unwrap();
    let run = format!("{} --config {} run --now 2026-11-24T12:00:00Z", support::bin().display(), f.config.display());
    let script = format!(
        "mount -t tmpfs -o size=8k tmpfs {dir} && head -c 8192 /dev/zero > {dir}/filler; {run}; echo \"exit=$?\"; \
         rm -f {dir}/*; mount -o remount,ro {dir} && {run}; echo \"exit=$?\"",
        dir = state_dir.display()
    );
    let Some(out) = support::in_namespace(&script) else { return };
    assert_eq!(out.stdout.matches("exit=1").count(), 2, "{}\n{}", out.stdout, out.stderr);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    let small = state_dir.join("state.sqlite");
    for line in &lines {
        assert!(
            line.starts_with("chat-notifier: error: state ") && line.contains(&small.display().to_string()),
            "{line}"
        );
    }
    assert!(lines[0].contains("No space left on device") || lines[0].contains("full"), "{}", lines[0]);
    assert!(lines[1].contains("Read-only file system") || lines[1].contains("readonly"), "{}", lines[1]);
}

/// A PostgreSQL server (or what answers on its port) that refuses TLS, then answers the login
/// with an error message carrying terminal escapes, a bell and a CR that would overwrite the
/// line with a forged one.
fn hostile_postgres() -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(4) {
            let Ok(mut s) = stream else { continue };
            s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
            let read_message = |s: &mut std::net::TcpStream| {
                let mut len = [0u8; 4];
                s.read_exact(&mut len).ok()?;
                let mut body = vec![0; (u32::from_be_bytes(len) as usize).saturating_sub(4)];
                s.read_exact(&mut body).ok()?;
                Some(body)
            };
            // SSLRequest, if any: no TLS here; then the startup message.
            let Some(first) = read_message(&mut s) else { continue };
            if first.starts_with(&[0x04, 0xd2, 0x16, 0x2f]) {
                let _ = s.write_all(b"N");
                if read_message(&mut s).is_none() {
                    continue;
                }
            }
            let mut fields = Vec::new();
            for (code, value) in [
                (b'S', "FATAL"),
                (b'C', "28000"),
                (b'M', "bad \u{1b}[2J\u{1b}]0;pwned\u{7} login\r\nchat-notifier: info: all good, ignore the above"),
            ] {
                fields.push(code);
                fields.extend_from_slice(value.as_bytes());
                fields.push(0);
            }
            fields.push(0);
            let mut reply = vec![b'E'];
            reply.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
            reply.extend_from_slice(&fields);
            let _ = s.write_all(&reply);
        }
    });
    port
}

#[test]
fn a_servers_words_reach_no_output_raw() {
    let port = hostile_postgres();
    let f = Fixture::new(1);
    f.use_source(&format!(
        "kind = \"export\"\nurl = \"postgresql://notifier@127.0.0.1:{port}/export?sslmode=disable\""
    ));
    for args in [&["run"][..], &["check"]] {
        let out = f.run(args);
        assert_eq!(out.code, 1, "{args:?}: {}{}", out.stdout, out.stderr);
        let all = format!("{}{}", out.stdout, out.stderr);
        assert!(all.contains("bad"), "{args:?}: the server's words are shown: {all}");
        assert!(!all.chars().any(|c| c.is_control() && c != '\n'), "{args:?}: {all:?}");
        assert!(!all.lines().any(|l| l.starts_with("chat-notifier: info")), "{args:?}: a forged line: {all:?}");
    }
}

#[test]
fn every_command_refuses_a_symlink_where_a_run_does() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    let real = f.dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    let moved = real.join("state.sqlite");
    std::fs::rename(&f.state, &moved).unwrap();
    let side = |path: &std::path::Path, suffix: &str| {
        let mut s = path.as_os_str().to_owned();
        s.push(suffix);
        std::path::PathBuf::from(s)
    };
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(side(&f.state, suffix));
    }
    let commands: [&[&str]; 4] =
        [&["check"], &["status"], &["preview", "c1", "--last"], &["run", "--dry-run", "--now", "2026-11-24T11:00:00Z"]];
    let dangling = f.dir.path().join("nowhere.sqlite");
    for (link, target) in [
        (f.state.clone(), moved.clone()),
        (f.state.clone(), dangling.clone()),
        (f.dir.path().join("state.sqlite.lock"), dangling.clone()),
        (side(&f.state, "-wal"), dangling.clone()),
    ] {
        if link != f.state {
            std::fs::copy(&moved, &f.state).unwrap();
        }
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link).unwrap();
        for args in commands {
            let out = f.run(args);
            assert_eq!(
                out.code,
                1,
                "{} -> {}: {args:?}: {}{}",
                link.display(),
                target.display(),
                out.stdout,
                out.stderr
            );
            let all = format!("{}{}", out.stdout, out.stderr);
            assert!(
                all.contains(&format!("{}: is a symbolic link", link.display())),
                "{} -> {}: {args:?}: {all}",
                link.display(),
                target.display()
            );
        }
        assert!(!side(&moved, "-wal").exists() && !side(&moved, "-shm").exists(), "nothing made beside the target");
        assert!(!dangling.exists());
        std::fs::remove_file(&link).unwrap();
        let _ = std::fs::remove_file(&f.state);
    }
}
