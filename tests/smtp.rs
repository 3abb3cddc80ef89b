//! The SMTP client against hostile servers and men in the middle: a login offered in clear.
//! Each through the built binary, against the test server on 127.0.0.1.

mod support;

use support::{Fixture, SmtpServer};

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
