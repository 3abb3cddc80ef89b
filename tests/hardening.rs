//! The defects a hostile test pass found, each reproduced through the built binary (every test
//! here failed on the build before its fix: `CHAT_NOTIFIER_BIN=<old build> cargo test --test
//! hardening` shows it). One conversation's bad data never blocks another's email; a store
//! that breaks its contract is said out loud and recovered from; nothing on a terminal, in a
//! file or in an email can be steered by what a visitor typed.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use rusqlite::{Connection, params};
use support::{Behavior, Fixture, SmtpServer, identifier, mails};

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

/// Copies the export's rows into a new file with the given message ids (old id -> new id),
/// leaving out messages mapped to None.
fn rewrite_export(f: &Fixture, map: impl Fn(i64) -> Option<i64>) {
    let rows: Vec<(i64, String, String, String, Option<String>, Option<String>, Option<String>, String)> = {
        let conn = Connection::open(&f.export).unwrap();
        let mut stmt = conn.prepare("SELECT * FROM messages ORDER BY id").unwrap();
        stmt.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    };
    let conn = Connection::open(&f.export).unwrap();
    conn.execute("DELETE FROM messages", []).unwrap();
    for (id, c, at, sender, gambit, input, field, body) in rows {
        if let Some(new) = map(id) {
            conn.execute(
                "INSERT INTO messages VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![new, c, at, sender, gambit, input, field, body],
            )
            .unwrap();
        }
    }
}

#[test]
fn an_export_restored_from_a_backup_is_noticed_and_its_new_lead_emailed() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.lead_who_leaves("a", "Ann", "ann@example.com", 0);
    f.lead_who_leaves("b", "Bob", "bob@example.com", 1);
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    assert_eq!(server.received().len(), 2);
    // Restored from a backup taken before Bob's chat; since then a new visitor finished one.
    rewrite_export(&f, |id| (id <= 5).then_some(id));
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
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.lead_who_leaves("a", "Ann", "ann@example.com", 0);
    f.lead_who_leaves("b", "Bob", "bob@example.com", 1);
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    assert_eq!(server.received().len(), 2);
    // Regenerated: the same chats under other ids (Bob's first), and Ann came back and finished.
    rewrite_export(&f, |id| Some(if id <= 5 { id + 104 } else { id + 94 }));
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

#[test]
fn a_very_long_chat_makes_a_bounded_email() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.lead_who_leaves("long", "Lou", "lou@example.com", 0);
    f.sql(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
         INSERT INTO messages (conversation_id, sent_at, sender, gambit_id, input_type, field, body)
         SELECT 'long', '2026-11-24T09:05:00Z', CASE i % 2 WHEN 0 THEN 'bot' ELSE 'visitor' END, 'chat', 'text',
                NULL, 'message number ' || i FROM n",
    );
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
