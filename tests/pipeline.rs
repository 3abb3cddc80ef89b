//! The whole pipeline through the built binary, against real SQLite files and a real SMTP
//! server on 127.0.0.1, asserting what the server received.

mod support;

use support::{Behavior, Fixture, Mail, SmtpServer, assert_each_once, identifier, mails};

#[test]
fn the_lead_path_is_two_emails_in_one_thread() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);

    // Still typing: nothing, and nothing printed (cron mails any output).
    let out = f.run_at("2026-11-24T09:20:00Z", &[], 0);
    assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("", ""));
    assert!(server.received().is_empty());

    // 30 minutes idle: abandoned.
    let out = f.run_at("2026-11-24T09:30:21Z", &[], 0);
    assert_eq!(out.stderr, "");
    let first = mails(&server);
    assert_eq!(first.len(), 1);
    let abandoned = &first[0];
    assert_eq!(abandoned.subject, format!("Lead Bot: chat with Jane Doe [#{}]", identifier(&abandoned.subject)));
    assert_eq!(abandoned.rcpt_to, ["owner@example.com"]);
    assert_eq!(abandoned.reply_to.as_deref(), Some("jane@example.com"));
    assert_eq!((abandoned.in_reply_to.as_deref(), abandoned.references.len()), (None, 0));
    assert!(abandoned.text.contains("left the chat with Lead Bot midway, at step ask_phone"), "{}", abandoned.text);
    assert!(abandoned.header_names.contains(&"Auto-Submitted".to_owned()));
    // Filterable: by state, by bot (Gmail's list:, Outlook rules, Sieve), and Outlook's topic.
    assert_eq!(abandoned.header("X-Chat-State").as_deref(), Some("abandoned"));
    assert_eq!(abandoned.header("X-Chat-Bot").as_deref(), Some("lead"));
    assert_eq!(abandoned.header("List-Id").as_deref(), Some("\"Lead Bot\" <b_lead.chat-notifier.example.com>"));
    assert_eq!(abandoned.header("Thread-Topic"), Some(abandoned.subject.clone()));

    // Nothing new: nothing sent.
    f.run_at("2026-11-24T10:30:00Z", &[], 0);
    assert_eq!(server.received().len(), 1);

    // Back the next day, finishes: the completed email lands in the same thread.
    f.visitor("c1", "2026-11-25T08:00:00Z", Some("phone"), "+1 555 0100");
    f.end("c1", "2026-11-25T08:00:01Z");
    f.run_at("2026-11-25T08:01:00Z", &[], 0);
    let all = mails(&server);
    assert_eq!(all.len(), 2);
    let completed = &all[1];
    assert_eq!(completed.subject, format!("Re: {}", abandoned.subject));
    assert_eq!(completed.in_reply_to.as_deref(), Some(abandoned.message_id.as_str()));
    assert_eq!(completed.references, std::slice::from_ref(&abandoned.message_id));
    assert_ne!(completed.message_id, abandoned.message_id);
    assert!(completed.text.contains("came back and finished"), "{}", completed.text);
    assert_eq!(completed.header("X-Chat-State").as_deref(), Some("completed"));
    assert_eq!(completed.header("Thread-Topic"), Some(abandoned.subject.clone()), "the topic without Re:");
    assert_eq!(completed.header("List-Id"), abandoned.header("List-Id"));
    // Outlook's conversation index: the root's 22 bytes, then the reply's 5 more after them.
    use base64::Engine as _;
    let index = |m: &Mail| base64::engine::general_purpose::STANDARD.decode(m.header("Thread-Index").unwrap()).unwrap();
    let (root, reply) = (index(abandoned), index(completed));
    assert_eq!((root.len(), reply.len()), (22, 27));
    assert_eq!(reply[..22], root[..], "the reply extends the root's index");
    // Microsoft's layout: a reserved 0x01, then the FILETIME's bits 63 to 24 (then the GUID).
    assert_eq!(root[0], 0x01);
    let mut filetime = [0u8; 8];
    filetime[3..].copy_from_slice(&root[1..6]);
    let unix = ((u64::from_be_bytes(filetime) << 24) as i64 - 116_444_736_000_000_000) / 10_000_000;
    let sent = chrono::DateTime::parse_from_rfc2822(&abandoned.header("Date").unwrap()).unwrap().timestamp();
    assert!((0..=2).contains(&(sent - unix)), "the root's time is its Date: {unix} vs {sent}");
    assert!(completed.text.contains("--- new since the last email ---\n[2026-11-25 08:00] Visitor: +1 555 0100"));
    assert!(completed.text.contains("phone: +1 555 0100"));

    f.run_at("2026-11-26T08:00:00Z", &[], 0);
    assert_eq!(server.received().len(), 2);
}

#[test]
fn one_go_is_one_email_and_resumed_chains_references() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.lead_who_leaves("quick", "Sam Lee", "sam@example.com", 0);
    f.end("quick", "2026-11-24T09:00:30Z");
    f.lead_who_leaves("slow", "Priya", "priya@example.com", 1);
    f.run_at("2026-11-24T09:05:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 1, "completed at once, the other may still be typing");
    assert!(m[0].subject.starts_with("Lead Bot: chat with Sam Lee [#"));
    assert!(m[0].text.contains("Sam Lee finished the chat"));

    f.run_at("2026-11-24T09:40:00Z", &[], 0); // slow: abandoned
    f.visitor("slow", "2026-11-24T12:00:00Z", None, "sorry, I was away");
    f.run_at("2026-11-24T12:10:00Z", &[], 0); // may still be typing
    assert_eq!(server.received().len(), 2);
    f.run_at("2026-11-24T12:30:00Z", &[], 0); // resumed
    f.visitor("slow", "2026-11-24T15:00:00Z", Some("phone"), "555");
    f.end("slow", "2026-11-24T15:00:01Z");
    f.run_at("2026-11-24T15:00:30Z", &[], 0); // completed
    let m = mails(&server);
    let slow: Vec<&Mail> = m.iter().filter(|m| m.subject.contains("Priya")).collect();
    assert_eq!(slow.len(), 3);
    assert!(slow[1].text.contains("came back to the chat with Lead Bot and left again"), "{}", slow[1].text);
    assert!(slow[2].text.contains("came back and finished"));
    assert_eq!(slow[1].subject, format!("Re: {}", slow[0].subject));
    assert_eq!(slow[2].subject, slow[1].subject);
    assert_eq!(slow[2].in_reply_to.as_deref(), Some(slow[1].message_id.as_str()));
    assert_eq!(slow[2].references, [slow[0].message_id.clone(), slow[1].message_id.clone()]);
}

#[test]
fn dry_run_prints_and_changes_nothing() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    f.end("c1", "2026-11-24T09:00:30Z");

    let out = f.run_at("2026-11-24T09:01:00Z", &["--dry-run"], 0);
    assert!(out.stdout.contains("Subject: Lead Bot: chat with Jane Doe [#"), "{}", out.stdout);
    assert!(out.stdout.contains("Reply-To: Jane Doe <jane@example.com>"));
    assert!(out.stdout.contains("Message-ID: <chat."));
    assert!(out.stdout.contains("Jane Doe finished the chat"));
    assert!(server.received().is_empty());
    assert!(!f.state.exists(), "a dry run on a fresh install leaves no state file");

    f.run_at("2026-11-24T09:01:00Z", &[], 0);
    assert_eq!(server.received().len(), 1);
    let sent_id = Mail::read(&server.received()[0]).message_id;
    assert!(out.stdout.contains(&format!("Message-ID: <{sent_id}>")), "the preview is the email that goes out");

    // With state, a dry run previews the next email without recording it.
    f.visitor("c1", "2026-11-24T10:00:00Z", None, "one more thing");
    let before = f.state_dump();
    let out = f.run_at("2026-11-24T11:00:00Z", &["--dry-run"], 0);
    assert!(out.stdout.contains("Subject: Re: Lead Bot: chat with Jane Doe"), "{}", out.stdout);
    assert!(f.state_dump() == before, "a dry run changes no state");
    f.run_at("2026-11-24T11:00:00Z", &[], 0);
    assert_eq!(server.received().len(), 2);
}

#[test]
fn hostile_visitor_text_cannot_touch_headers_or_html() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    let name = "Eve\r\nBcc: spy@evil.example\r\nX-Injected: yes";
    let email = "eve@example.com\r\nBcc: spy2@evil.example";
    f.conversation("evil", "2026-11-24T09:00:00Z");
    f.bot("evil", "2026-11-24T09:00:00Z", "ask_name", "text", "Name?");
    f.visitor("evil", "2026-11-24T09:00:01Z", Some("name"), name);
    f.visitor("evil", "2026-11-24T09:00:02Z", Some("email"), email);
    f.visitor("evil", "2026-11-24T09:00:03Z", None, "<script>alert('x')</script><img src=x onerror=alert(1)>");
    f.visitor("evil", "2026-11-24T09:00:04Z", None, &"A".repeat(3000));
    f.visitor("evil", "2026-11-24T09:00:04Z", None, "bare\rcarriage return, NUL\0 and escape\u{1b}[31m");
    f.end("evil", "2026-11-24T09:00:05Z");
    f.run_at("2026-11-24T09:01:00Z", &[], 0);

    let received = server.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].rcpt_to, ["owner@example.com"], "no recipient added");
    let m = Mail::read(&received[0]); // strict: no unknown header, lines <= 998 octets
    assert!(!m.header_names.iter().any(|h| h == "Bcc" || h == "X-Injected"), "{:?}", m.header_names);
    assert!(m.subject.starts_with("Lead Bot: chat with Eve Bcc: spy@evil.example X-Injected: yes"), "{}", m.subject);
    assert_eq!(m.reply_to, None, "an address with a line break in it is no address");
    assert!(!m.html.contains("<script>") && !m.html.contains("<img"), "{}", m.html);
    assert!(m.html.contains("&lt;script&gt;"));
    assert!(m.text.contains("<script>alert('x')</script>"), "the text part shows it as typed");
    assert!(m.text.contains(&"A".repeat(3000)), "a long line survives, wrapped by the transfer encoding");
    assert!(m.text.contains("bare\ncarriage return, NUL\u{FFFD} and escape\u{FFFD}[31m"), "{}", m.text);
    // What the visitor told the bot is one line per field: a line break in an answer cannot
    // start a line of its own that reads like another field (the transcript below keeps the
    // visitor's lines as typed).
    let told: Vec<&str> =
        m.text.lines().skip_while(|l| *l != "What they told the bot:").skip(1).take_while(|l| !l.is_empty()).collect();
    assert_eq!(
        told,
        ["  name: Eve Bcc: spy@evil.example X-Injected: yes", "  email: eve@example.com Bcc: spy2@evil.example"],
        "{}",
        m.text
    );
}

#[test]
fn first_run_skips_old_history_unless_backfill() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.lead_who_leaves("old", "Old Timer", "old@example.com", 0);
    f.lead_who_leaves("recent", "New Comer", "new@example.com", 5);
    // Three days later, "recent" gets a message; "old" has been idle since.
    f.visitor("recent", "2026-11-27T08:00:00Z", None, "hello again");
    let out = f.run_at("2026-11-27T09:00:00Z", &[], 0);
    let line = out.stderr.trim_end();
    assert!(line.starts_with(support::FIRST_RUN), "{line}");
    assert!(
        line.contains(
            "1 conversation(s) active in the last 24h emailed as new threads, 1 older recorded without an email"
        ),
        "{line}"
    );
    let m = mails(&server);
    assert_eq!(m.len(), 1);
    assert!(m[0].subject.contains("New Comer"));

    // After the first run nothing is skipped: a cron that was down for days catches up.
    f.visitor("old", "2026-11-27T09:00:00Z", None, "anyone there?");
    f.run_at("2026-12-01T09:00:00Z", &[], 0);
    assert_eq!(mails(&server).len(), 2);

    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.lead_who_leaves("old", "Old Timer", "old@example.com", 0);
    let out = f.run_at("2026-11-27T09:00:00Z", &["--backfill"], 0);
    assert!(
        out.stderr.contains("1 conversation(s) active in the last 24h emailed as new threads, 0 older"),
        "{}",
        out.stderr
    );
    assert_eq!(mails(&server).len(), 1);
}

#[test]
fn smtp_down_keeps_the_email_and_the_retry_carries_the_same_message_id() {
    let server = SmtpServer::start();
    // A port nothing listens on: bind one, note it, let it go.
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let f = Fixture::new(dead_port);
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    f.lead_who_leaves("c2", "Sam Lee", "sam@example.com", 1);

    let out = f.run_at("2026-11-24T10:00:00Z", &[], 3);
    assert!(out.stderr.contains("not sent (attempt 1)"), "{}", out.stderr);
    assert!(out.stderr.lines().all(|l| l.starts_with("chat-notifier: ")), "{}", out.stderr);
    let pending = f.outbox();
    assert_eq!(pending.len(), 2);
    assert!(pending.iter().all(|r| r.status == "pending"), "{pending:?}");
    assert_eq!(pending[0].attempts, 1);
    assert_eq!(pending[1].attempts, 0, "the batch stops at an unreachable server");

    f.write_config(server.port(), "");
    f.run_at("2026-11-24T11:00:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 2);
    assert_eq!(format!("<{}>", m[0].message_id), pending[0].message_id, "same Message-ID as first decided");
    assert_eq!(format!("<{}>", m[1].message_id), pending[1].message_id);
    assert!(m[0].raw.contains("Date: Tue, 24 Nov 2026 10:00:00 +0000"), "the Date of the decision");

    f.run_at("2026-11-24T12:00:00Z", &[], 0);
    assert_eq!(server.received().len(), 2);
}

#[test]
fn a_temporary_refusal_is_retried_next_run_with_the_same_message_id() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    server.set(Behavior::RejectRcpt("451 4.7.1 greylisted, try again later".into()));
    let out = f.run_at("2026-11-24T10:00:00Z", &[], 3);
    assert!(out.stderr.contains("451"), "{}", out.stderr);
    assert!(server.received().is_empty());
    let decided = f.outbox();
    assert_eq!(decided[0].attempts, 1);
    assert!(decided[0].last_error.as_deref().is_some_and(|e| e.contains("greylisted")), "{decided:?}");

    server.set(Behavior::Accept);
    f.run_at("2026-11-24T10:05:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 1);
    assert_eq!(format!("<{}>", m[0].message_id), decided[0].message_id);
}

#[test]
fn a_permanently_refused_email_is_parked_and_the_others_still_go() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.write_config(server.port(), "max_attempts = 2");
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    f.lead_who_leaves("c2", "Sam Lee", "sam@example.com", 1);
    server.set(Behavior::RejectDataContaining {
        needle: "Jane Doe".into(),
        reply: "550 5.7.1 rejected by policy".into(),
    });

    let out = f.run_at("2026-11-24T10:00:00Z", &[], 3);
    assert!(out.stderr.contains("not sent (attempt 1)"), "{}", out.stderr);
    let m = mails(&server);
    assert_eq!(m.len(), 1, "the other conversation went out in the same run");
    assert!(m[0].subject.contains("Sam Lee"));

    let out = f.run_at("2026-11-24T10:05:00Z", &[], 3);
    assert!(out.stderr.contains("parked after 2 refusals: permanent error (550)"), "{}", out.stderr);
    let parked: Vec<(String, u32)> =
        f.outbox().into_iter().filter(|r| r.status != "sent").map(|r| (r.status, r.attempts)).collect();
    assert_eq!(parked, [("parked".to_owned(), 2)]);

    let attempts = server.attempts();
    let out = f.run_at("2026-11-24T10:10:00Z", &[], 0);
    assert_eq!(out.stderr, "");
    assert_eq!(server.attempts(), attempts, "a parked email is not retried");
}

#[test]
fn smtp_login_reads_the_password_from_the_environment_or_a_file() {
    let server = SmtpServer::start();
    server.require_login("notifier", "s3cret pass");
    let f = Fixture::new(server.port());
    f.write_config(server.port(), "max_attempts = 1");
    let login = |how: &str| {
        let text = std::fs::read_to_string(&f.config).unwrap();
        let text = text.split("username = ").next().unwrap().trim_end().to_owned();
        std::fs::write(&f.config, format!("{text}\nusername = \"notifier\"\n{how}\n")).unwrap();
    };
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);

    // A wrong password: nothing sent, nothing parked (even with max_attempts = 1), exit 3.
    login("password_env = \"NOTIFIER_PASSWORD\"");
    let run = |at: &str, password: &str, code: i32| {
        let out = f.run_with_env(&["run", "--now", at], &[("NOTIFIER_PASSWORD", password)]);
        assert_eq!(out.code, code, "{}", out.stderr);
        out
    };
    let out = run("2026-11-24T10:00:00Z", "wrong", 3);
    assert!(out.stderr.contains("535"), "{}", out.stderr);
    assert!(!out.stderr.contains("wrong"), "no password in the log: {}", out.stderr);
    assert_eq!(f.outbox().iter().map(|r| r.status.as_str()).collect::<Vec<_>>(), ["pending"]);

    run("2026-11-24T10:05:00Z", "s3cret pass", 0);
    assert_eq!(mails(&server).len(), 1);

    std::fs::write(f.dir.path().join("password"), "s3cret pass\n").unwrap();
    login("password_file = \"password\"");
    f.lead_who_leaves("c2", "Sam Lee", "sam@example.com", 1);
    f.run_at("2026-11-24T11:00:00Z", &[], 0);
    assert_eq!(mails(&server).len(), 2);
}

#[test]
fn smtp_login_where_the_server_offers_only_auth_login() {
    let server = SmtpServer::start();
    server.require_login("notifier", "s3cret pass");
    server.offer_auth_login();
    let f = Fixture::new(server.port());
    // The [transport] table is the config's last.
    let config = std::fs::read_to_string(&f.config).unwrap();
    std::fs::write(&f.config, format!("{config}\nusername = \"notifier\"\npassword_env = \"NOTIFIER_PASSWORD\"\n"))
        .unwrap();
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    let out = f.run_with_env(&["run", "--now", "2026-11-24T10:00:00Z"], &[("NOTIFIER_PASSWORD", "wrong")]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("535"), "{}", out.stderr);
    let out = f.run_with_env(&["run", "--now", "2026-11-24T10:05:00Z"], &[("NOTIFIER_PASSWORD", "s3cret pass")]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_each_once(&server, 1, 0, "AUTH LOGIN");
}

#[test]
fn a_connection_the_server_closed_is_opened_again_for_the_next_email() {
    // lettre's pool found a closed connection with a NOOP before each email; the mailer finds
    // it by the send failing, and tries that email once more on a new connection.
    let server = SmtpServer::start();
    server.set(Behavior::CloseAfter { messages: 2 });
    let f = Fixture::new(server.port());
    for i in 0..5 {
        f.lead_who_leaves(&format!("c{i}"), &format!("Visitor {i}"), "v@example.com", i);
    }
    let out = f.run_at("2026-11-24T10:00:00Z", &[], 0);
    assert_eq!(out.stderr_past_first_run(), "", "nothing to warn about");
    assert_each_once(&server, 5, 0, "");
    assert_eq!(server.connections(), 3);
}

#[test]
fn one_connection_carries_the_whole_batch() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    for i in 0..5 {
        f.lead_who_leaves(&format!("c{i}"), &format!("Visitor {i}"), "v@example.com", i);
    }
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    assert_eq!(server.received().len(), 5);
    assert_eq!(server.connections(), 1);
    // Each email's MAIL, RCPT and DATA written at once (PIPELINING), then its message: two
    // round trips an email and nothing in between (lettre's pool asked NOOP before each), then
    // goodbye.
    let verbs = server.verbs();
    let each = ["MAIL", "RCPT", "DATA"];
    assert_eq!(verbs.first().map(String::as_str), Some("EHLO"), "{verbs:?}");
    assert_eq!(verbs[1..verbs.len() - 1], each.repeat(5), "{verbs:?}");
    assert_eq!(verbs.last().map(String::as_str), Some("QUIT"), "{verbs:?}");
    let pipelined = server.pipelined();
    assert_eq!(pipelined[1..pipelined.len() - 1], [true, true, false].repeat(5), "{verbs:?}");
    f.run_at("2026-11-24T10:05:00Z", &[], 0);
    assert_eq!(server.connections(), 1, "a run with nothing to send does not connect");
}

/// RFC 2920: a client pipelines only where the server says it may; otherwise each command
/// waits for its answer.
#[test]
fn without_pipelining_each_command_waits_for_its_answer() {
    let server = SmtpServer::start();
    server.without_pipelining();
    let f = Fixture::new(server.port());
    for i in 0..3 {
        f.lead_who_leaves(&format!("c{i}"), &format!("Visitor {i}"), "v@example.com", i);
    }
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    assert_each_once(&server, 3, 0, "without pipelining");
    assert!(!server.pipelined().contains(&true), "{:?} {:?}", server.verbs(), server.pipelined());
}

/// A server without ESMTP answers EHLO with 500: the client says HELO instead and sends without
/// any extension (RFC 5321 3.2).
#[test]
fn a_server_without_esmtp_is_greeted_with_helo() {
    let server = SmtpServer::start();
    server.without_esmtp();
    let f = Fixture::new(server.port());
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    assert_each_once(&server, 1, 0, "over HELO");
    assert_eq!(server.verbs()[..2], ["EHLO", "HELO"], "{:?}", server.verbs());
    assert!(!server.pipelined().contains(&true), "no PIPELINING without EHLO: {:?}", server.pipelined());
}

/// Pipelined, DATA is accepted when any recipient was: one refused recipient must not let the
/// message reach the others (the email is retried whole, and would reach them twice). The
/// connection is dropped instead of sending it; the email waits, the next run sends it once.
#[test]
fn one_refused_recipient_keeps_the_email_from_the_others() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.mail_setting("cc = [\"typo@example.con\"]");
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    f.lead_who_leaves("c2", "Sam Roe", "sam@example.com", 1);
    server
        .set(Behavior::RejectRcptTo { address: "typo@example.con".into(), reply: "450 4.1.2 domain not found".into() });
    let out = f.run_at("2026-11-24T10:00:00Z", &[], 3);
    assert!(out.stderr.contains("transient error (450): 4.1.2 domain not found"), "{}", out.stderr);
    assert_eq!(out.stderr.matches("not sent (attempt 1)").count(), 2, "{}", out.stderr);
    assert!(server.received().is_empty(), "the owner got a message whose email is still queued");
    server.set(Behavior::Accept);
    f.run_at("2026-11-24T10:05:00Z", &[], 0);
    assert_each_once(&server, 2, 0, "after the refusal");
    assert!(server.received().iter().all(|r| r.rcpt_to.len() == 2), "{:?}", server.received()[0].rcpt_to);
}

#[test]
fn a_second_run_while_one_holds_the_lock_exits_without_sending() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(f.dir.path().join("state.sqlite.lock"))
        .unwrap();
    lock.lock().unwrap();
    let started = std::time::Instant::now();
    let out = f.run_at("2026-11-24T10:00:00Z", &[], 4);
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "exits promptly");
    assert!(out.stderr.contains("another run is in progress"), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1);
    assert!(server.received().is_empty());
    drop(lock);
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    assert_eq!(server.received().len(), 1);
}

#[test]
fn overlapping_runs_send_each_email_once() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    for i in 0..20 {
        f.lead_who_leaves(&format!("c{i:02}"), &format!("Visitor {i}"), "v@example.com", i);
    }
    // The first run sends slowly: the others start while it is mid-batch, holding the lock.
    server.set(Behavior::StallAfterData(std::time::Duration::from_millis(100)));
    let first = f.spawn(&["run", "--now", "2026-11-25T00:00:00Z"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while server.received().is_empty() {
        assert!(std::time::Instant::now() < deadline, "the first run never sent");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let others: Vec<_> = (0..3).map(|_| f.spawn(&["run", "--now", "2026-11-25T00:00:00Z"])).collect();
    let codes: Vec<i32> = others.into_iter().map(|c| c.wait_with_output().unwrap().status.code().unwrap()).collect();
    let sent_meanwhile = server.received().len();
    assert_eq!(codes, [4, 4, 4], "each overlapping run found the lock held and left");
    assert!(sent_meanwhile < 20, "they overlapped the first run's batch ({sent_meanwhile} of 20 sent by then)");
    assert_eq!(first.wait_with_output().unwrap().status.code(), Some(0));
    f.run_at("2026-11-25T00:00:00Z", &[], 0); // whatever the overlapping runs left
    let mut ids: Vec<String> = mails(&server).into_iter().map(|m| m.message_id).collect();
    assert_eq!(ids.len(), 20);
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20, "no email twice");
}

#[test]
fn the_example_export_shows_all_three_states() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    std::fs::remove_file(&f.export).unwrap();
    support::load_sql(&f.export, "examples/export-day1.sql");
    let out = f.run_at("2026-11-20T12:00:00Z", &[], 0);
    assert!(
        out.stderr.contains("3 conversation(s) active in the last 24h emailed as new threads, 1 older"),
        "{}",
        out.stderr
    );
    support::load_sql(&f.export, "examples/export-day2.sql");
    f.run_at("2026-11-21T12:00:00Z", &[], 0);
    let headlines: Vec<String> =
        mails(&server).iter().map(|m| m.text.lines().next().unwrap().split(',').next().unwrap().to_owned()).collect();
    assert_eq!(
        headlines,
        // In a run, the finished chats first, then the idle ones, longest idle first.
        [
            "Sam Lee finished the chat with Lead Bot.",
            "Jane Doe left the chat with Lead Bot midway",
            "Priya Raman left the chat with Lead Bot midway",
            "Jane Doe came back and finished the chat with Lead Bot.",
            "alex.kim@example.net finished the chat with Help Desk.",
            "Priya Raman came back to the chat with Lead Bot and left again",
        ]
    );
}

#[test]
fn prune_forgets_settled_conversations_and_keeps_everything_else() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.lead_who_leaves("old", "Old Timer", "old@example.com", 0);
    f.end("old", "2026-11-24T09:00:30Z");
    f.lead_who_leaves("waiting", "Still Queued", "q@example.com", 1);
    f.end("waiting", "2026-11-24T09:01:30Z");
    server.set(Behavior::RejectDataContaining { needle: "Still Queued".into(), reply: "451 4.3.0 later".into() });
    f.run_at("2026-11-24T10:00:00Z", &[], 3);
    f.lead_who_leaves("recent", "New Comer", "new@example.com", 2);
    f.visitor("recent", "2027-03-01T09:00:00Z", None, "still typing");
    f.run_at("2027-03-01T09:05:00Z", &[], 3); // "recent" is open: the visitor may still be typing

    let out = f.run(&["-v", "prune", "--older-than", "90d", "--now", "2027-03-01T09:10:00Z"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("pruned 1 conversation(s)"), "{}", out.stderr);
    assert_eq!(f.tracked(), ["recent", "waiting"], "open and pending ones stay");
    assert_eq!(f.outbox().iter().filter(|r| r.status == "pending").count(), 1);

    // A forgotten conversation that comes back gets a fresh first email, with its whole transcript.
    server.set(Behavior::Accept);
    f.visitor("old", "2027-03-01T09:11:00Z", None, "hello again");
    f.run_at("2027-03-01T10:00:00Z", &[], 0);
    let back = mails(&server).into_iter().find(|m| m.text.contains("hello again")).unwrap();
    assert!(back.subject.starts_with("Lead Bot: chat with Old Timer [#"), "{}", back.subject);
    assert!(back.text.contains("Old Timer"));
}
