//! The Debian package's config (`packaging/deb/notifier.toml`, issue 28): what an owner must
//! fill is written under the reserved `.invalid` domain, and `check` names each such
//! placeholder on a line of its own, without trying to reach it. The package itself is built,
//! installed, checked as the service user and purged by `packaging/test-deb.sh` (`.ci/run`).

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use support::*;

/// The FAILED lines of a `check`'s stdout.
fn failed(stdout: &str) -> Vec<&str> {
    stdout.lines().filter(|l| l.get(11..17) == Some("FAILED")).collect()
}

#[test]
fn check_names_each_placeholder_on_its_own_line_and_reaches_for_none() {
    let f = Fixture::new(1);
    // Everything here is usable except the .invalid values: the export is a real file, the
    // state is creatable.
    std::fs::write(
        &f.config,
        r#"state = "state.sqlite"

[source]
kind = "export"
url = "postgresql://chat-notifier@db.your-domain.invalid:5432/chats?sslmode=verify-full"

[mail]
from = "Chat Notifier <notifier@your-domain.invalid>"
to = ["Owner <owner@your-domain.invalid>", "Sales <sales@example.com>"]
cc = ["boss@Your-Domain.INVALID"]
message_id_domain = "notifier.your-domain.invalid"

[transport]
kind = "smtp"
host = "smtp.your-domain.invalid"
username = "notifier@your-domain.invalid"
password_env = "SMTP_PASSWORD"

[[bots]]
id = "support"
to = ["help@your-domain.invalid"]
"#,
    )
    .unwrap();
    // --smtp too: a placeholder host is not looked up, nor is the unset password asked for.
    for args in [&["check"][..], &["check", "--smtp"]] {
        let out = f.run(args);
        assert_eq!(out.code, 1, "{args:?}: {}{}", out.stdout, out.stderr);
        let lines = failed(&out.stdout);
        let expected = [
            ("mail", "mail.from: notifier@your-domain.invalid is a placeholder"),
            ("mail", "mail.to: owner@your-domain.invalid is a placeholder"),
            ("mail", "mail.cc: boss@Your-Domain.INVALID is a placeholder"),
            ("mail", "mail.message_id_domain: notifier.your-domain.invalid is a placeholder"),
            ("mail", "bots[0] (id = \"support\").to: help@your-domain.invalid is a placeholder"),
            ("source", "source.url: db.your-domain.invalid is a placeholder"),
            ("transport", "transport.host: smtp.your-domain.invalid is a placeholder"),
            ("transport", "transport.username: notifier@your-domain.invalid is a placeholder"),
        ];
        assert_eq!(lines.len(), expected.len(), "{args:?}: one line per placeholder, nothing else: {}", out.stdout);
        for ((part, start), line) in expected.iter().zip(&lines) {
            assert_eq!(line[..11].trim_end(), *part, "{args:?}: {line}");
            assert!(line[19..].starts_with(start), "{args:?}: {line} should start {start:?}");
            assert!(line.contains("(the reserved .invalid domain): put "), "{args:?}: says why: {line}");
        }
        for ok in ["config", "templates", "state"] {
            assert!(out.stdout.lines().any(|l| l.starts_with(ok) && l.contains(" ok ")), "{args:?}: {}", out.stdout);
        }
        // Not reached for: no lookup, no connection, no password asked (it is not set).
        let all = format!("{}{}", out.stdout, out.stderr);
        for never in ["lookup", "connect", "SMTP_PASSWORD"] {
            assert!(!all.contains(never), "{args:?}: {never}: {all}");
        }
        assert_eq!(out.stderr.lines().count(), 1, "{args:?}: one closing line: {}", out.stderr);
        assert!(out.stderr.contains("check failed: 8 part(s) above"), "{args:?}: {}", out.stderr);
    }
    // Only a domain under .invalid is one: real addresses and hosts pass as before (the source
    // here the fixture's export, a real file).
    let text = std::fs::read_to_string(&f.config).unwrap().replace("invalid", "example").replace("INVALID", "COM");
    let url = "postgresql://chat-notifier@db.your-domain.example:5432/chats?sslmode=verify-full";
    std::fs::write(&f.config, text.replace(url, "export.sqlite")).unwrap();
    // The password's variable read as a run reads it: unset, the transport fails, as a run would.
    let out = f.run(&["check"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert_eq!(failed(&out.stdout).len(), 1, "{}", out.stdout);
    assert!(failed(&out.stdout)[0].starts_with("transport"), "{}", out.stdout);
    assert!(out.stdout.contains("SMTP_PASSWORD is not set"), "{}", out.stdout);
    let out = f.run_with_env(&["check"], &[("SMTP_PASSWORD", "x")]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(failed(&out.stdout).is_empty(), "{}", out.stdout);
}

#[test]
fn packaged_config_fails_check_only_on_its_placeholders() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/deb/notifier.toml");
    let dir = tempfile::tempdir().unwrap();
    // As installed, but with the state in a folder of the test's own (the real one may or may
    // not exist on this machine).
    let config = dir.path().join("notifier.toml");
    let text = std::fs::read_to_string(&shipped).unwrap();
    assert!(text.contains("state = \"/var/lib/chat-notifier/state.sqlite\""));
    std::fs::write(&config, text.replace("/var/lib/chat-notifier/state.sqlite", "state.sqlite")).unwrap();
    let out = std::process::Command::new(bin())
        .arg("--config")
        .arg(&config)
        .arg("check")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let keys: Vec<&str> = failed(&stdout).iter().map(|l| l[19..].split(": ").next().unwrap_or_default()).collect();
    assert_eq!(
        keys,
        ["mail.from", "mail.to", "source.url", "transport.host", "transport.username"],
        "the shipped config fails on its placeholders, one line each, and on nothing else: {stdout}"
    );
}

/// Every key `notifier.example.toml` documents (set or commented out), as `key =` at a line's
/// start after any `#`.
fn keys(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim_start_matches('#').trim_start();
            let (key, _) = l.split_once(" =")?;
            key.chars().all(|c| c.is_ascii_lowercase() || c == '_').then(|| key.to_owned())
        })
        .collect()
}

#[test]
fn packaged_config_documents_every_key_of_the_example() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = keys(&std::fs::read_to_string(root.join("notifier.example.toml")).unwrap());
    let shipped = keys(&std::fs::read_to_string(root.join("packaging/deb/notifier.toml")).unwrap());
    assert!(example.len() > 40, "the example documents its keys: {example:?}");
    let missing: Vec<_> = example.difference(&shipped).collect();
    assert!(missing.is_empty(), "packaging/deb/notifier.toml lacks {missing:?}");
}
