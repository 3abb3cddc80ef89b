//! The SMTP client against hostile servers and men in the middle: a login offered in clear,
//! an internationalised domain. Each through the built binary, against the test server on
//! 127.0.0.1.

mod support;

use support::{Fixture, SmtpServer, mails};

const NOW: &str = "2026-11-25T00:00:00Z";

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
