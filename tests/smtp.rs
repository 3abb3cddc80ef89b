//! The SMTP client against hostile servers and men in the middle: bytes injected before TLS or
//! ahead of the message, replies dribbled a byte at a time, a connection dropped on one email,
//! a refusal in Latin-1, a login offered in clear, an internationalised domain, a server that
//! offers PIPELINING and does not honour it. Each through the built binary, against the test
//! server on 127.0.0.1 (real TLS where TLS is the point).

mod support;

use std::io::Read;
use std::process::Child;
use std::time::{Duration, Instant};

use support::{Behavior, Fixture, SmtpServer, TlsMode, mails};

const NOW: &str = "2026-11-25T00:00:00Z";

fn transport(f: &Fixture, port: u16, security: &str, timeout: &str) {
    f.set_transport(&format!(
        "kind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"{security}\"\ntimeout = \"{timeout}\"\n\
         accept_invalid_certs = true\n"
    ));
}

fn statuses(f: &Fixture) -> Vec<(String, String, u32)> {
    f.outbox().into_iter().map(|r| (r.conversation_id, r.status, r.attempts)).collect()
}

/// Waits for a spawned run to end, at most `bound`; a run still going then is killed and the
/// test fails. The exit code and stderr.
fn ends_within(mut child: Child, bound: Duration) -> (i32, String, Duration) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
            return (status.code().unwrap_or(-1), stderr, started.elapsed());
        }
        if started.elapsed() > bound {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("the run was still going after {bound:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A man in the middle answers the 220 to STARTTLS and, in the same packet, scripted answers
/// to what the client sends inside TLS (EHLO, MAIL, RCPT, DATA, the message), while the real
/// server refuses the MAIL. Read from the buffer kept across the switch, they made the email
/// count as sent and lost it. Anything buffered when TLS begins drops the connection.
#[test]
fn bytes_injected_after_the_220_to_starttls_drop_the_connection() {
    let server = SmtpServer::start_with(TlsMode::StartTls);
    let f = Fixture::new(server.port());
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    transport(&f, server.port(), "starttls", "5s");
    let injected = b"250 injected hello\r\n250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n250 2.0.0 queued\r\n";
    server.set(Behavior::InjectAfterStarttls(injected.to_vec()));

    let out = f.run_at(NOW, &[], 3);
    let said = format!(
        "the server sent data after its 220 to STARTTLS, before TLS began ({} bytes): refusing it (response injection)",
        injected.len()
    );
    assert!(out.stderr.contains(&said), "{}", out.stderr);
    assert_eq!(server.attempts(), 0, "no MAIL went");
    assert_eq!(statuses(&f), [("c1".to_owned(), "pending".to_owned(), 1)], "the email waits");

    server.set(Behavior::Accept);
    f.run_at(NOW, &[], 0);
    let received = server.received();
    assert_eq!(received.len(), 1);
    assert!(received[0].tls, "over TLS");
}

/// Over implicit TLS, a server sends "250 queued" with its 354, before the message, then
/// refuses the message: read as the answer to it, the email counted as sent and was lost. An
/// answer nothing asked for drops the connection before the message goes.
#[test]
fn an_answer_sent_ahead_of_the_message_is_refused_over_implicit_tls() {
    let server = SmtpServer::start_with(TlsMode::Implicit);
    let f = Fixture::new(server.port());
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    transport(&f, server.port(), "tls", "5s");
    server.set(Behavior::InjectWith354(b"250 2.0.0 queued\r\n".to_vec()));

    let out = f.run_at(NOW, &[], 3);
    assert!(
        out.stderr.contains(
            "the server sent data nothing asked for after its answer to DATA (18 bytes): refusing it (response injection)"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(f.outbox()[0].status, "pending", "not counted as sent");

    server.set(Behavior::Accept);
    f.run_at(NOW, &[], 0);
    assert_eq!(server.received().len(), 1);
    assert!(server.received()[0].tls);
}

/// Every reply a byte at a time, 300 ms apart, with `timeout = "1s"`: each read gets a byte
/// well within the timeout, and a per-read timeout never fires (the run held the lock for
/// minutes). The timeout bounds the whole reply: the run ends soon after it, the email
/// queued, and the lock free for the next run.
#[test]
fn a_server_that_dribbles_its_replies_is_given_up_at_the_timeout() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    transport(&f, server.port(), "none", "1s");
    server.set(Behavior::Dribble(Duration::from_millis(300)));

    // The greeting alone takes 10 s at this pace; the old client needed minutes per email.
    let (code, stderr, _) = ends_within(f.spawn(&["run", "--now", NOW]), Duration::from_secs(8));
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("did not answer within the timeout"), "{stderr}");
    assert_eq!(f.outbox()[0].status, "pending");

    server.set(Behavior::Accept);
    f.run_at(NOW, &[], 0); // not 4: the lock was released
    assert_eq!(mails(&server).len(), 1);
}

/// Each answer within the timeout (8 bytes, 200 ms apart: 1.4 s of `timeout = "2s"`), but the
/// email's dialogue as a whole far past it: the timeout bounds the whole email, so a server
/// cannot stretch a run by answering just in time.
#[test]
fn a_whole_emails_dialogue_is_bounded_by_the_timeout() {
    let server = SmtpServer::start();
    server.without_pipelining();
    let f = Fixture::new(server.port());
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    f.lead_who_leaves("c2", "Sam Lee", "sam@example.com", 1);
    transport(&f, server.port(), "none", "2s");
    server.set(Behavior::DribbleTransaction(Duration::from_millis(200)));

    // MAIL, RCPT, DATA and the message's answer take some 11 s an email at this pace.
    let (code, stderr, _) = ends_within(f.spawn(&["run", "--now", NOW]), Duration::from_secs(9));
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("did not answer within the timeout"), "{stderr}");
    assert!(server.received().is_empty());
    let waiting = statuses(&f);
    assert_eq!(waiting.iter().filter(|(_, s, _)| s == "pending").count(), 2, "{waiting:?}");
    assert_eq!(waiting.iter().map(|(_, _, a)| a).sum::<u32>(), 1, "one tried, then the batch stopped: {waiting:?}");

    server.set(Behavior::Accept);
    f.run_at(NOW, &[], 0);
    assert_eq!(mails(&server).len(), 2);
}

/// The server closes the connection on one email's DATA, every time (or, over TLS, corrupts
/// the stream there). It was "unavailable", no attempt that counts, and oldest first it went
/// first on every run: nothing was ever delivered. Lost in its own transaction, it is that
/// email's attempt: the others go on a new connection in the same run, and it is parked after
/// `max_attempts`. Over plain text and over STARTTLS.
#[test]
fn an_email_whose_data_drops_the_connection_is_parked_and_the_others_go() {
    for (tls, behavior, lost) in [
        (TlsMode::Plain, Behavior::CloseOnDataContaining("Bad Apple".into()), "the server closed the connection"),
        (TlsMode::StartTls, Behavior::CloseOnDataContaining("Bad Apple".into()), "close_notify"),
        (TlsMode::StartTls, Behavior::CorruptTlsOnDataContaining("Bad Apple".into()), "TLS: "),
    ] {
        let server = SmtpServer::start_with(tls);
        let f = Fixture::new(server.port());
        f.write_config(server.port(), "max_attempts = 2");
        if tls == TlsMode::StartTls {
            transport(&f, server.port(), "starttls", "5s");
        }
        f.lead_who_leaves("c1", "Bad Apple", "bad@example.com", 0);
        f.lead_who_leaves("c2", "Jane Doe", "jane@example.com", 1);
        f.lead_who_leaves("c3", "Sam Lee", "sam@example.com", 2);
        server.set(behavior.clone());

        let out = f.run_at("2026-11-24T10:00:00Z", &[], 3);
        let sent: Vec<String> = mails(&server).iter().map(|m| m.subject.clone()).collect();
        assert_eq!(sent.len(), 2, "{behavior:?}: the others went in the same run: {sent:?}\n{}", out.stderr);
        assert!(sent.iter().all(|s| !s.contains("Bad Apple")), "{sent:?}");
        assert!(server.received().iter().all(|r| r.tls == (tls == TlsMode::StartTls)));
        let said = "not sent (attempt 1): the connection was lost during this email's transaction: ";
        assert!(out.stderr.contains(said) && out.stderr.contains(lost), "{behavior:?}: {}", out.stderr);
        assert!(!out.stderr.contains("http"), "said in words, no link to a manual: {}", out.stderr);
        assert_eq!(statuses(&f)[0], ("c1".to_owned(), "pending".to_owned(), 1), "oldest first, tried first");

        let out = f.run_at("2026-11-24T10:05:00Z", &[], 3);
        assert!(out.stderr.contains("parked after 2 attempts: the connection was lost"), "{}", out.stderr);
        assert_eq!(
            statuses(&f),
            [("c1", "parked", 2), ("c2", "sent", 1), ("c3", "sent", 1)].map(|(c, s, a)| (
                c.to_owned(),
                s.to_owned(),
                a
            ))
        );
        let out = f.run_at("2026-11-24T10:10:00Z", &[], 0);
        assert_eq!(out.stderr, "");
        assert_eq!(mails(&server).len(), 2, "each delivered once");
    }
}

/// A refusal whose text is Latin-1 ("refusée"): read as text it was "stream did not contain
/// valid UTF-8", the server unavailable, the queue blocked. Replies are bytes: the code says
/// permanent, the text is shown lossily; parked after `max_attempts`, the others go.
#[test]
fn a_refusal_in_latin_1_is_a_refusal() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.write_config(server.port(), "max_attempts = 2");
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    f.lead_who_leaves("c2", "Sam Lee", "sam@example.com", 1);
    server.set(Behavior::RawReplyToDataContaining {
        needle: "Jane Doe".into(),
        reply: b"550 5.7.1 Adresse refus\xe9e \x1b[31m\r\n".to_vec(),
    });

    let out = f.run_at("2026-11-24T10:00:00Z", &[], 3);
    assert!(
        out.stderr.contains("not sent (attempt 1): permanent error (550): 5.7.1 Adresse refus\u{FFFD}e \u{FFFD}[31m"),
        "the text lossily, no escape reaches the terminal: {}",
        out.stderr
    );
    let sent = mails(&server);
    assert_eq!(sent.len(), 1);
    assert!(sent[0].subject.contains("Sam Lee"));

    let out = f.run_at("2026-11-24T10:05:00Z", &[], 3);
    assert!(out.stderr.contains("parked after 2 refusals: permanent error (550)"), "{}", out.stderr);
    assert_eq!(statuses(&f)[0], ("c1".to_owned(), "parked".to_owned(), 2));
}

/// `security = "none"` with a login sent AUTH PLAIN in clear to any host, and `check` said ok.
/// A login without TLS goes only to this machine (msmtp's rule): elsewhere the config is
/// refused, by `check` (with or without `--smtp`) and `run` alike, with the reason.
#[test]
fn a_login_without_tls_goes_only_to_this_machine() {
    let server = SmtpServer::start();
    server.require_login("notifier", "s3cret");
    let f = Fixture::new(server.port());
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    let login = |host: &str| {
        f.set_transport(&format!(
            "kind = \"smtp\"\nhost = \"{host}\"\nport = {}\nsecurity = \"none\"\ntimeout = \"5s\"\n\
             username = \"notifier\"\npassword_env = \"NOTIFIER_PASSWORD\"\n",
            server.port()
        ));
    };
    let env = [("NOTIFIER_PASSWORD", "s3cret")];

    login("mail.example.com");
    for args in [&["check"][..], &["check", "--smtp"], &["run", "--now", NOW]] {
        let out = f.run_with_env(args, &env);
        assert_eq!(out.code, 1, "{args:?}: {}{}", out.stdout, out.stderr);
        let said = format!("{}{}", out.stdout, out.stderr);
        assert!(
            said.contains("transport: username: no login without TLS: security = \"none\" would send the password in clear to \"mail.example.com\""),
            "{args:?}: {said}"
        );
        assert!(!said.contains("s3cret"));
    }
    assert_eq!(server.connections(), 0);

    // This machine, by any of its names: the login goes, in clear, where nothing can read it.
    for host in ["localhost", "::1", "127.0.0.1"] {
        login(host);
        let out = f.run_with_env(&["check"], &env);
        assert_eq!(out.code, 0, "{host}: {}", out.stdout);
    }
    let out = f.run_with_env(&["check", "--smtp"], &env);
    assert!(out.stdout.contains("connected and logged in as notifier"), "{}", out.stdout);
    let out = f.run_with_env(&["run", "--now", NOW], &env);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(server.received().len(), 1);
}

/// `from = "...@exämple.com"`: Message-ID and List-Id went out as encoded words (no longer
/// Message-IDs to a client that threads on them) and From as raw 8-bit. In the IDNA form
/// (`xn--exmple-cua.com`) wherever ASCII is needed, the envelope too: a 7-bit message, no
/// SMTPUTF8 needed, a thread that holds.
#[test]
fn an_internationalised_domain_goes_out_in_its_idna_form() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    let config = std::fs::read_to_string(&f.config).unwrap();
    let config = config
        .replace("notifier@example.com", "notifier@exämple.com")
        .replace("owner@example.com", "owner@bücher.example");
    std::fs::write(&f.config, config).unwrap();
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    let out = f.run_at("2026-11-24T10:00:00Z", &["--dry-run"], 0);
    assert!(out.stdout.contains("From: Chat Notifier <notifier@xn--exmple-cua.com>"), "{}", out.stdout);
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    f.visitor("c1", "2026-11-24T10:01:00Z", Some("phone"), "+1 555 0100");
    f.end("c1", "2026-11-24T10:01:05Z");
    f.run_at("2026-11-24T10:02:00Z", &[], 0);

    let received = server.received();
    assert_eq!(received.len(), 2);
    for r in &received {
        assert_eq!(r.mail_from, "notifier@xn--exmple-cua.com");
        assert_eq!(r.rcpt_to, ["owner@xn--bcher-kva.example"]);
    }
    // Mail::read checks that each is 7-bit, every header line clean.
    let m = mails(&server);
    assert!(m[0].message_id.ends_with("@xn--exmple-cua.com"), "{}", m[0].message_id);
    assert_eq!(m[0].header("From").as_deref(), Some("\"Chat Notifier\" <notifier@xn--exmple-cua.com>"));
    assert_eq!(m[0].header("To").as_deref(), Some("Owner <owner@xn--bcher-kva.example>"));
    assert_eq!(m[0].header("List-Id").as_deref(), Some("\"Lead Bot\" <b_lead.chat-notifier.xn--exmple-cua.com>"));
    assert_eq!(m[1].in_reply_to.as_deref(), Some(m[0].message_id.as_str()), "the second in the first's thread");
    assert_eq!(m[1].references, [m[0].message_id.clone()]);
}

/// A local part that is not ASCII can only go with SMTPUTF8 (RFC 6531): where the server does
/// not offer it, nothing 8-bit is written and the email waits, with the reason; where it does,
/// MAIL says SMTPUTF8 and the address goes as it is.
#[test]
fn an_address_that_needs_smtputf8_goes_only_where_it_is_offered() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    let config = std::fs::read_to_string(&f.config).unwrap().replace("owner@example.com", "zoë@example.com");
    std::fs::write(&f.config, config).unwrap();
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    let out = f.run_at(NOW, &[], 3);
    assert!(
        out.stderr
            .contains("the address \"zoë@example.com\" needs SMTPUTF8 (RFC 6531), which the server does not offer"),
        "{}",
        out.stderr
    );
    assert_eq!(server.attempts(), 0, "no MAIL written");
    assert_eq!(f.outbox()[0].status, "pending");

    server.offer_smtputf8();
    f.run_at(NOW, &[], 0);
    assert_eq!(server.mail_commands(), ["MAIL FROM:<notifier@example.com> SMTPUTF8"]);
    let received = server.received();
    assert_eq!(received[0].rcpt_to, ["zoë@example.com"]);
}

/// A server that offers PIPELINING and reads one command at a time, dropping what came with
/// it: the pipelined RCPT and DATA are never answered, and every run timed out. After such a
/// timeout the email is sent again at once, one command at a time, and the rest of the run
/// goes that way.
#[test]
fn a_server_that_offers_pipelining_and_drops_pipelined_commands_gets_one_at_a_time() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    f.lead_who_leaves("c2", "Sam Lee", "sam@example.com", 1);
    f.lead_who_leaves("c3", "Ann Bee", "ann@example.com", 2);
    transport(&f, server.port(), "none", "1s");
    server.set(Behavior::DiscardPipelined);

    let out = f.run_at(NOW, &["-v"], 0);
    assert!(out.stderr.contains("sending one command at a time for the rest of this run"), "{}", out.stderr);
    assert_eq!(mails(&server).len(), 3, "each once");
    assert_eq!(server.connections(), 2, "the stalled one, then one for the rest");
    assert!(statuses(&f).iter().all(|(_, s, a)| s == "sent" && *a == 1), "no attempt counted: {:?}", statuses(&f));
}

/// A leads who leave: "Bad Apple" first (oldest first, tried first), then two others.
fn bad_apple_first(f: &Fixture) {
    f.lead_who_leaves("c1", "Bad Apple", "bad@example.com", 0);
    f.lead_who_leaves("c2", "Jane Doe", "jane@example.com", 1);
    f.lead_who_leaves("c3", "Sam Lee", "sam@example.com", 2);
}

fn refusals(f: &Fixture) -> Vec<String> {
    f.state_rows("SELECT refusals FROM outbox ORDER BY id").into_iter().map(|r| r[0].clone()).collect()
}

/// The server answers one email's message with what is no answer to it: garbage, a 1xx, a 354,
/// a 10 MB line, a reply of endless lines, a 250 and then another, a code that is not digits, a
/// reply whose lines carry different codes. Each was "unavailable", every run, the email's
/// attempts past `max_attempts` and never parked, the emails behind it never tried. A protocol
/// broken in one email's transaction is that email's failure: the others go on a new
/// connection, and it is parked after `max_attempts`.
#[test]
fn a_bad_answer_to_one_emails_message_is_that_emails_failure_and_the_others_go() {
    let huge = [b"250 ".as_slice(), &vec![b'A'; 10_000_000], b"\r\n"].concat();
    let endless = b"250-still going\r\n".repeat(150);
    for (reply, said) in [
        (b"hello there\r\n".to_vec(), "not an SMTP answer: \"hello there\""),
        (b"199 what\r\n".to_vec(), "not an SMTP answer: \"199 what\""),
        (b"354 more\r\n".to_vec(), "the server answered the message with 354, which the message cannot get"),
        (huge, "an SMTP answer line longer than 4096 bytes"),
        (endless, "an SMTP answer of too many lines"),
        (
            b"250 ok\r\n250 extra\r\n".to_vec(),
            "the server sent data nothing asked for after its answer to the message (11 bytes): refusing it (response \
             injection)",
        ),
        (b"5\xff0 weird\r\n".to_vec(), "not an SMTP answer: \"5 0 weird\""),
        (b"550-rejected\r\n250 ok\r\n".to_vec(), "an SMTP answer whose lines carry different codes (550, then 250)"),
    ] {
        let server = SmtpServer::start();
        let f = Fixture::new(server.port());
        f.write_config(server.port(), "max_attempts = 2");
        bad_apple_first(&f);
        server.set(Behavior::RawReplyToDataContaining { needle: "Bad Apple".into(), reply });

        let out = f.run_at("2026-11-24T10:00:00Z", &[], 3);
        let sent: Vec<String> = mails(&server).iter().map(|m| m.subject.clone()).collect();
        assert_eq!(sent.len(), 2, "{said}: the others went in the same run: {sent:?}\n{}", out.stderr);
        assert!(sent.iter().all(|s| !s.contains("Bad Apple")), "{sent:?}");
        let line = format!(
            "not sent (attempt 1): the server broke the protocol in this email's transaction: {said}; it is retried \
             next run (1 of max_attempts = 2 failures of its own)"
        );
        assert!(out.stderr.contains(&line), "{line}\n{}", out.stderr);
        assert_eq!(statuses(&f)[0], ("c1".to_owned(), "pending".to_owned(), 1));
        assert_eq!(refusals(&f), ["Integer(1)", "Integer(0)", "Integer(0)"]);

        let out = f.run_at("2026-11-24T10:05:00Z", &[], 3);
        assert!(
            out.stderr.contains(&format!(
                "parked after 2 attempts: the server broke the protocol in this email's transaction: {said}"
            )),
            "{}",
            out.stderr
        );
        assert_eq!(statuses(&f)[0], ("c1".to_owned(), "parked".to_owned(), 2));
        f.run_at("2026-11-24T10:10:00Z", &[], 0);
        assert_eq!(mails(&server).len(), 2, "each of the others once");
    }
}

/// A 354 to MAIL or to RCPT, or a 250 to DATA: answers the command cannot get (RFC 5321
/// 4.3.2). The first two were taken as success and the email counted as sent; each is a
/// protocol broken in the email's transaction, parked after `max_attempts` (here 1: "1
/// attempt", in the singular), the message never sent.
#[test]
fn answers_a_command_cannot_get_are_no_success() {
    for (verb, reply, said) in [
        ("MAIL", "354 go on\r\n", "the server answered MAIL with 354, which MAIL cannot get"),
        ("RCPT", "354 go on\r\n", "the server answered RCPT with 354, which RCPT cannot get"),
        ("DATA", "250 2.0.0 ok\r\n", "the server answered DATA with 250, which DATA cannot get"),
    ] {
        for pipelining in [true, false] {
            let server = SmtpServer::start();
            if !pipelining {
                server.without_pipelining();
            }
            let f = Fixture::new(server.port());
            f.write_config(server.port(), "max_attempts = 1");
            f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
            server.set(Behavior::Misanswer { verb: verb.into(), reply: reply.as_bytes().to_vec() });

            let out = f.run_at(NOW, &[], 3);
            let line =
                format!("parked after 1 attempt: the server broke the protocol in this email's transaction: {said}");
            assert!(out.stderr.contains(&line), "{verb} {pipelining}: {line}\n{}", out.stderr);
            assert!(server.received().is_empty(), "{verb} {pipelining}: no message went");
            assert_eq!(statuses(&f), [("c1".to_owned(), "parked".to_owned(), 1)]);
        }
    }
}

/// Mail to a bot with 120 recipients, a server that takes the 100 every server must (RFC 5321
/// 4.5.3.1.8) and answers "452 4.5.3 Too many recipients" past them: taken for throttling, the
/// queue stalled for ever with exit 0. At most 100 recipients go in one transaction, the rest
/// in further transactions of the same message.
#[test]
fn more_than_100_recipients_go_in_transactions_of_100() {
    let server = SmtpServer::start();
    server.limit_recipients(100);
    let f = Fixture::new(server.port());
    let to: Vec<String> = (0..120).map(|i| format!("\"Owner {i} <owner{i}@example.com>\"")).collect();
    let config = std::fs::read_to_string(&f.config).unwrap().replace("\"Owner <owner@example.com>\"", &to.join(", "));
    std::fs::write(&f.config, config).unwrap();
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    f.lead_who_leaves("c2", "Sam Lee", "sam@example.com", 1);

    let out = f.run_at(NOW, &[], 0);
    assert!(!out.stderr.contains("throttling"), "{}", out.stderr);
    let received = server.received();
    let sizes: Vec<usize> = received.iter().map(|r| r.rcpt_to.len()).collect();
    assert_eq!(sizes, [100, 20, 100, 20], "two transactions an email");
    let m = mails(&server);
    for pair in [&received[..2], &received[2..]] {
        let mut all: Vec<&String> = pair.iter().flat_map(|r| &r.rcpt_to).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 120, "every recipient once");
        assert_eq!(pair[0].data, pair[1].data, "the same message");
    }
    assert_ne!(m[0].message_id, m[2].message_id);
    assert!(statuses(&f).iter().all(|(_, s, a)| s == "sent" && *a == 1), "{:?}", statuses(&f));
}

/// A server that takes fewer recipients than an email has (50 of 60): "452 4.5.3" is that
/// email's own failure (RFC 3463: too many recipients, no rate limit): each email is tried, the
/// run does not back off, and it is parked after `max_attempts`.
#[test]
fn too_many_recipients_is_the_emails_own_failure_not_throttling() {
    let server = SmtpServer::start();
    server.limit_recipients(50);
    let f = Fixture::new(server.port());
    f.write_config(server.port(), "max_attempts = 2");
    let to: Vec<String> = (0..60).map(|i| format!("\"owner{i}@example.com\"")).collect();
    let config = std::fs::read_to_string(&f.config).unwrap().replace("\"Owner <owner@example.com>\"", &to.join(", "));
    std::fs::write(&f.config, config).unwrap();
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    f.lead_who_leaves("c2", "Sam Lee", "sam@example.com", 1);

    let out = f.run_at(NOW, &[], 3);
    assert!(!out.stderr.contains("throttling"), "{}", out.stderr);
    let line = "not sent (attempt 1): too many recipients for the server (452): 4.5.3 Too many recipients; it is \
                retried next run (1 of max_attempts = 2 failures of its own)";
    assert_eq!(out.stderr.matches(line).count(), 2, "each tried: {}", out.stderr);
    let out = f.run_at(NOW, &[], 3);
    assert_eq!(out.stderr.matches("parked after 2 refusals: too many recipients for the server (452)").count(), 2);
    assert!(server.received().is_empty());
}

/// A reply that ends exactly where the client's buffer does (4, 8 or 16 KiB), with more sent
/// behind it: the rest waits in the socket, or in TLS, unread. It was read as the next email's
/// answer (the innocent email got the "554" sent after the first's "250"). What was received
/// past the last answer owed, in the buffer, in TLS or in the socket, is refused: the email it
/// came with is not counted as sent, and the next goes on a new connection, its own answers
/// its own.
#[test]
fn bytes_left_unread_after_an_answer_are_never_the_next_emails_answer() {
    for tls in [TlsMode::Plain, TlsMode::Implicit] {
        for size in [4096, 8192, 16384] {
            let server = SmtpServer::start_with(tls);
            let f = Fixture::new(server.port());
            if tls == TlsMode::Implicit {
                transport(&f, server.port(), "tls", "5s");
            }
            f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
            f.lead_who_leaves("c2", "Sam Lee", "sam@example.com", 1);
            let late = b"554 5.7.1 late refusal\r\n";
            server.set(Behavior::ReplyOfSizeThen { needle: "Jane Doe".into(), size, late: late.to_vec() });

            let out = f.run_at(NOW, &[], 3);
            let said = format!(
                "the server sent data nothing asked for after its answer to the message ({} bytes): refusing it \
                 (response injection)",
                late.len()
            );
            assert!(out.stderr.contains(&said), "{tls:?} {size}: {}", out.stderr);
            assert!(!out.stderr.contains("554"), "{tls:?} {size}: no email got the late answer: {}", out.stderr);
            let rows = f.outbox();
            assert_eq!((rows[0].status.as_str(), rows[0].attempts), ("pending", 1), "{tls:?} {size}");
            assert_eq!((rows[1].status.as_str(), rows[1].last_error.as_deref()), ("sent", None), "{tls:?} {size}");
        }
    }
}

/// A server that offers PIPELINING and answers pipelined commands "503 bad sequence": every
/// email was refused for good and parked. The email goes again at once, one command at a
/// time, and so does the rest of the run; no attempt counted.
#[test]
fn a_server_that_refuses_pipelined_commands_with_503_gets_one_at_a_time() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    f.lead_who_leaves("c2", "Sam Lee", "sam@example.com", 1);
    f.lead_who_leaves("c3", "Ann Bee", "ann@example.com", 2);
    server.set(Behavior::RefusePipelined);

    let out = f.run_at(NOW, &["-v"], 0);
    assert!(out.stderr.contains("sending one command at a time for the rest of this run"), "{}", out.stderr);
    assert_eq!(mails(&server).len(), 3, "each once");
    assert!(statuses(&f).iter().all(|(_, s, a)| s == "sent" && *a == 1), "{:?}", statuses(&f));
    assert_eq!(refusals(&f), ["Integer(0)"; 3]);
}

/// A server that echoes what AUTH gave it ("535 ... bad credentials: PLAIN <base64>"): the
/// base64 of the password was printed and stored in the outbox, shown by `status`. Masked:
/// never on stderr, in the state or in `status`. And an outage's line says it counts toward
/// no limit, so "attempt 2" with `max_attempts` is no riddle.
#[test]
fn credentials_a_server_echoes_are_never_shown_or_stored() {
    use base64::Engine as _;
    let server = SmtpServer::start();
    server.require_login("notifier", "Hunter2Secret");
    server.echo_auth();
    let f = Fixture::new(server.port());
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    f.set_transport(&format!(
        "kind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\ntimeout = \"5s\"\n\
         username = \"notifier\"\npassword_env = \"NOTIFIER_PASSWORD\"\n",
        server.port()
    ));
    let env = [("NOTIFIER_PASSWORD", "Hunter2Secret")];
    let plain = base64::engine::general_purpose::STANDARD.encode("\0notifier\0Hunter2Secret");
    for _ in 0..2 {
        let out = f.run_with_env(&["run", "--now", NOW], &env);
        assert_eq!(out.code, 3, "{}", out.stderr);
        assert!(out.stderr.contains("permanent error (535): 5.7.8 bad credentials: PLAIN ***"), "{}", out.stderr);
        assert!(!out.stderr.contains(&plain) && !out.stderr.contains(plain.trim_end_matches('=')));
    }
    assert_eq!(server.auth_lines(), [format!("AUTH PLAIN {plain}"), format!("AUTH PLAIN {plain}")], "it was echoed");
    let out = f.run_with_env(&["run", "--now", NOW], &env);
    assert!(
        out.stderr.contains("not sent (attempt 3): connecting to the SMTP server: permanent error (535)")
            && out.stderr.contains("it is retried next run (not its own failure; 0 of max_attempts = 5 so far)"),
        "{}",
        out.stderr
    );
    let stored = f.outbox()[0].last_error.clone().unwrap();
    assert!(stored.contains("bad credentials: PLAIN ***") && !stored.contains(&plain[..20]), "{stored}");
    let status = f.run(&["status", "--now", NOW]);
    assert!(!status.stdout.contains(&plain[..20]) && !status.stderr.contains(&plain[..20]), "{}", status.stdout);
}

/// `host = "localhost."` with `security = "none"` and a login: glibc looks a name with the
/// root's dot up in DNS, not in /etc/hosts, and whoever answered got the password in clear.
/// Only `localhost` as written, or a loopback address, is this machine for the config.
#[test]
fn localhost_with_the_roots_dot_is_not_this_machine() {
    let server = SmtpServer::start();
    server.require_login("notifier", "s3cret");
    let f = Fixture::new(server.port());
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    let login = |host: &str, port: u16| {
        f.set_transport(&format!(
            "kind = \"smtp\"\nhost = \"{host}\"\nport = {port}\nsecurity = \"none\"\ntimeout = \"5s\"\n\
             username = \"notifier\"\npassword_env = \"NOTIFIER_PASSWORD\"\n"
        ));
    };
    let env = [("NOTIFIER_PASSWORD", "s3cret")];
    for host in ["localhost.", "LOCALHOST.", "127.0.0.1."] {
        login(host, server.port());
        let out = f.run_with_env(&["check"], &env);
        assert_eq!(out.code, 1, "{host}: {}{}", out.stdout, out.stderr);
        let said = format!("{}{}", out.stdout, out.stderr);
        assert!(
            said.contains(&format!(
                "no login without TLS: security = \"none\" would send the password in clear to {host:?}"
            )),
            "{host}: {said}"
        );
    }
    assert_eq!(server.connections(), 0);
}

/// Before a login in clear, the client checks that the address it reached is this machine's,
/// whatever the name said: here `localhost` made to name this machine's network address
/// (/etc/hosts replaced in a mount namespace, as a DNS answer for `localhost.` would), where a
/// test server listens. The old client sent it AUTH PLAIN.
#[test]
fn a_login_in_clear_goes_only_to_an_address_on_this_machine() {
    let f = Fixture::new(1);
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    let login = |host: &str, port: u16| {
        f.set_transport(&format!(
            "kind = \"smtp\"\nhost = \"{host}\"\nport = {port}\nsecurity = \"none\"\ntimeout = \"5s\"\n\
             username = \"notifier\"\npassword_env = \"NOTIFIER_PASSWORD\"\n"
        ));
    };
    // This machine's address on its network, where the route to anywhere goes out.
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").and_then(|s| s.connect("192.0.2.1:9").map(|()| s));
    let ip = match probe.and_then(|s| s.local_addr()) {
        Ok(a) if !a.ip().is_loopback() && !a.ip().is_unspecified() => a.ip(),
        other => {
            assert!(std::env::var_os("CI").is_none(), "CI must run this: no network address ({other:?})");
            eprintln!("skipped: this machine has no network address");
            return;
        }
    };
    let outside = SmtpServer::start_on(ip, TlsMode::Plain);
    outside.require_login("notifier", "s3cret");
    login("localhost", outside.port());
    let hosts = f.config.with_file_name("hosts");
    std::fs::write(&hosts, format!("{ip} localhost\n")).unwrap();
    let script = format!(
        "mount --bind {} /etc/hosts && NOTIFIER_PASSWORD=s3cret {} --config {} run --now {NOW}",
        hosts.display(),
        support::bin().display(),
        f.config.display()
    );
    let Some(out) = support::in_namespace(&script) else { return };
    assert_eq!(out.code, 3, "{}", out.stderr);
    let said = format!("no login in clear: \"localhost\" is {ip}, not this machine; the password was not sent");
    assert!(out.stderr.contains(&said), "{}", out.stderr);
    assert_eq!(outside.auth_lines(), Vec::<String>::new(), "no AUTH went");
}

/// A 452 to a RCPT after others were taken, with no enhanced code, is the server's limit on
/// recipients (RFC 5321 4.5.3.1.10): the email's own failure, never throttling (its words "too
/// many" made it throttling: every run backed off, exit 0). One with another enhanced code
/// (4.2.2, a mailbox full) stays a temporary refusal that counts toward nothing.
#[test]
fn a_452_to_a_later_recipient_is_a_limit_on_recipients_unless_it_says_otherwise() {
    for (reply, counts) in [("452 too many recipients in one message", true), ("452 4.2.2 mailbox full", false)] {
        let server = SmtpServer::start();
        let f = Fixture::new(server.port());
        let config = std::fs::read_to_string(&f.config)
            .unwrap()
            .replace("\"Owner <owner@example.com>\"", "\"Owner <owner@example.com>\", \"Deputy <deputy@example.com>\"");
        std::fs::write(&f.config, config).unwrap();
        f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
        f.lead_who_leaves("c2", "Sam Lee", "sam@example.com", 1);
        server.set(Behavior::RejectRcptTo { address: "deputy@example.com".into(), reply: reply.into() });

        let out = f.run_at(NOW, &[], 3);
        assert!(!out.stderr.contains("throttling"), "{reply}: {}", out.stderr);
        let (said, toward) = if counts {
            (
                "too many recipients for the server (452): too many recipients in one message",
                "1 of max_attempts = 5 failures of its own",
            )
        } else {
            ("transient error (452): 4.2.2 mailbox full", "not its own failure; 0 of max_attempts = 5 so far")
        };
        let line = format!("not sent (attempt 1): {said}; it is retried next run ({toward})");
        assert_eq!(out.stderr.matches(&line).count(), 2, "{reply}: each tried: {}", out.stderr);
        let expected = if counts { "Integer(1)" } else { "Integer(0)" };
        assert_eq!(refusals(&f), [expected; 2], "{reply}");
    }
}
