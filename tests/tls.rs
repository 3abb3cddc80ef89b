//! TLS to the mail server: required when configured, certificates verified unless the owner
//! explicitly opts out for a local relay, never a silent fall back to plain text.

mod support;

use support::{Fixture, SmtpServer, TlsMode, mails};

const NOW: &str = "2026-11-25T00:00:00Z";

fn smtp(f: &Fixture, port: u16, security: &str, extra: &str) {
    f.set_transport(&format!(
        "kind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"{security}\"\ntimeout = \"5s\"\n{extra}"
    ));
}

#[test]
fn starttls_verifies_the_certificate_unless_told_otherwise() {
    let server = SmtpServer::start_with(TlsMode::StartTls);
    let f = Fixture::new(server.port());
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);

    smtp(&f, server.port(), "starttls", "");
    let out = f.run_at(NOW, &[], 3);
    assert!(out.stderr.to_lowercase().contains("certificate"), "{}", out.stderr);
    assert_eq!(server.attempts(), 0, "no MAIL FROM, in plain text or otherwise");
    assert_eq!(f.outbox().iter().map(|r| r.status.as_str()).collect::<Vec<_>>(), ["pending"]);

    smtp(&f, server.port(), "starttls", "accept_invalid_certs = true");
    f.run_at(NOW, &[], 0);
    let received = server.received();
    assert_eq!(received.len(), 1);
    assert!(received[0].tls, "sent after STARTTLS");
    assert_eq!(mails(&server)[0].reply_to.as_deref(), Some("jane@example.com"));
}

#[test]
fn implicit_tls_sends_over_tls_from_the_first_byte() {
    let server = SmtpServer::start_with(TlsMode::Implicit);
    let f = Fixture::new(server.port());
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    smtp(&f, server.port(), "tls", "");
    let out = f.run_at(NOW, &[], 3);
    assert!(out.stderr.to_lowercase().contains("certificate"), "{}", out.stderr);
    smtp(&f, server.port(), "tls", "accept_invalid_certs = true");
    f.run_at(NOW, &[], 0);
    let received = server.received();
    assert_eq!(received.len(), 1);
    assert!(received[0].tls);
}

#[test]
fn starttls_required_means_no_plain_text_fallback() {
    let server = SmtpServer::start(); // offers no STARTTLS
    let f = Fixture::new(server.port());
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    smtp(&f, server.port(), "starttls", "accept_invalid_certs = true");
    let out = f.run_at(NOW, &[], 3);
    assert!(out.stderr.contains("not sent"), "{}", out.stderr);
    assert_eq!(server.attempts(), 0, "nothing sent in plain text");
    assert!(server.received().is_empty());
}
