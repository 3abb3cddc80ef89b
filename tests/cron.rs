//! What cron and the owner see when something is wrong: one clear line, a documented exit
//! code, and no state touched; and what one bad row does (nothing to the rest).

mod support;

use std::os::unix::fs::PermissionsExt;

use support::{Fixture, SmtpServer, mails};

fn one_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {stderr:?}");
    assert!(lines[0].starts_with("chat-notifier: error: "), "{stderr}");
    lines[0]
}

#[test]
fn config_errors_name_the_file_and_key_and_touch_nothing() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.lead_who_leaves("c1", "Jane", "jane@example.com", 0);
    let good = std::fs::read_to_string(&f.config).unwrap();
    let cases = [
        (good.replace("time_zone = \"UTC\"", "time_zone = \"UTC\"\ncolour = \"red\""), "colour"),
        (good.replace("timeout = \"5s\"", "timeout = 5"), "transport.timeout"),
        (good.replace("timeout = \"5s\"", "timeout = \"soon\""), "transport.timeout"),
        (good.replace("to = [\"Owner <owner@example.com>\"]", "to = [\"owner at example\"]"), "mail.to"),
        (good.replace("time_zone = \"UTC\"", "abandon_after = \"-3m\""), "abandon_after"),
        (good.replace("time_zone = \"UTC\"", "templates = \"no-such-folder\""), "templates"),
        (good.replace("security = \"none\"", "security = \"none\"\npassword = \"hunter2\""), "password"),
    ];
    for (text, key) in cases {
        std::fs::write(&f.config, &text).unwrap();
        let out = f.run_at("2026-11-24T10:00:00Z", &[], 1);
        let line = one_line(&out.stderr);
        assert!(line.contains("notifier.toml") && line.contains(key), "{line} should name the file and {key}");
        assert!(!line.contains("hunter2"), "{line}");
        assert!(!f.state.exists(), "no state file after a config error");
    }
    assert!(server.received().is_empty());

    let out = std::process::Command::new(support::bin())
        .args(["--config", "/nonexistent/notifier.toml", "run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(one_line(&String::from_utf8_lossy(&out.stderr)).contains("/nonexistent/notifier.toml"));

    let out = f.run(&["run", "--now", "yesterday"]);
    assert_eq!(out.code, 2, "usage errors are clap's exit code 2");
}

#[test]
fn a_broken_export_is_one_line_naming_it_and_leaves_state_alone() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.lead_who_leaves("c1", "Jane", "jane@example.com", 0);
    f.run_at("2026-11-24T09:01:00Z", &[], 0);
    let before = f.state_dump();

    let export = f.export.clone();
    std::fs::rename(&export, f.dir.path().join("moved.sqlite")).unwrap();
    let line = one_line(&f.run_at("2026-11-24T10:00:00Z", &[], 1).stderr).to_owned();
    assert!(line.contains("export.sqlite") && line.contains("no such file"), "{line}");

    std::fs::write(&export, "this is not a database, just text that is long enough to be read as a header.....")
        .unwrap();
    let line = one_line(&f.run_at("2026-11-24T10:00:00Z", &[], 1).stderr).to_owned();
    assert!(line.contains("export.sqlite") && line.contains("not a SQLite database"), "{line}");

    std::fs::remove_file(&export).unwrap();
    let conn = rusqlite::Connection::open(&export).unwrap();
    conn.execute_batch(&support::SCHEMA_V1.replace("  body TEXT NOT NULL);", "  text TEXT NOT NULL);")).unwrap();
    drop(conn);
    let line = one_line(&f.run_at("2026-11-24T10:00:00Z", &[], 1).stderr).to_owned();
    assert!(line.contains("export.sqlite") && line.contains("messages") && line.contains("body"), "{line}");

    std::fs::remove_file(&export).unwrap();
    let conn = rusqlite::Connection::open(&export).unwrap();
    conn.execute_batch(support::SCHEMA_V1).unwrap();
    conn.execute_batch("DROP TABLE bots;").unwrap();
    drop(conn);
    let line = one_line(&f.run_at("2026-11-24T10:00:00Z", &[], 1).stderr).to_owned();
    assert!(line.contains("export.sqlite") && line.contains("no such table: bots"), "{line}");

    assert!(f.state_dump() == before, "state untouched by a broken export");
    assert!(server.received().is_empty());
}

#[test]
fn bad_rows_are_reported_once_and_the_rest_goes_out() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    // Exports are not always constrained: no NOT NULL here.
    f.sql(
        "DROP TABLE messages;
         CREATE TABLE messages (id INTEGER PRIMARY KEY, conversation_id TEXT, sent_at TEXT, sender TEXT,
                                gambit_id TEXT, input_type TEXT, field TEXT, body TEXT);
         CREATE INDEX messages_by_conversation ON messages(conversation_id, id);",
    );
    f.lead_who_leaves("good", "Jane Doe", "jane@example.com", 0);
    let bad_time = f.visitor("good", "yesterday at noon", None, "when?");
    let bad_sender = f.message("good", "2026-11-24T09:00:30Z", "robot", None, None, None, "beep");
    let null_sent = f.message("good", "2026-11-24T09:00:31Z", "visitor", None, None, None, "x");
    f.sql(&format!("UPDATE messages SET sent_at = NULL WHERE id = {null_sent}"));
    let null_conv = f.visitor("good", "2026-11-24T09:00:32Z", None, "orphan");
    f.sql(&format!("UPDATE messages SET conversation_id = NULL WHERE id = {null_conv}"));
    let ghost = f.visitor("ghost", "2026-11-24T09:00:33Z", None, "my conversation row is missing");
    let blank = f.visitor("", "2026-11-24T09:00:33Z", None, "my conversation id is blank");
    f.visitor("good", "2026-11-24T09:00:34Z", None, "null body follows");
    let null_body = f.visitor("good", "2026-11-24T09:00:35Z", None, "");
    f.sql(&format!("UPDATE messages SET body = NULL WHERE id = {null_body}"));
    let bad_utf8 = f.visitor("good", "2026-11-24T09:00:36Z", None, "");
    f.sql(&format!("UPDATE messages SET body = CAST(X'6869FF2021' AS TEXT) WHERE id = {bad_utf8}"));
    f.visitor("good", "2026-11-24T09:00:37Z", None, "bell\u{7} and escape\u{1b}[31m red");
    f.visitor("good", "2026-11-24T09:00:38Z", None, &"big ".repeat(250_000));

    let out = f.run_at("2026-11-24T10:00:00Z", &[], 0);
    let stderr = out.stderr_past_first_run();
    let warnings: Vec<&str> = stderr.lines().collect();
    for (row, why) in [
        (bad_time, " skipped: sent_at \"yesterday at noon\" is not an RFC 3339 timestamp"),
        (bad_sender, " skipped: unknown sender \"robot\""),
        (null_sent, " skipped: sent_at is NULL"),
        (null_conv, " skipped: conversation_id is NULL"),
        (blank, " skipped: conversation_id is blank"),
        (null_body, ": body is NULL; shown as empty"),
        (bad_utf8, ": body is not valid UTF-8; shown with replacement characters"),
    ] {
        let line = format!("chat-notifier: warn: export {}: messages row {row}{why}", f.export.display());
        assert!(warnings.contains(&line.as_str()), "{line} in {warnings:#?}");
    }
    let ghost = format!("messages rows {ghost} point to conversation \"ghost\", which has no conversations row yet");
    assert!(warnings.iter().any(|w| w.contains(&ghost)), "{ghost} in {warnings:#?}");
    assert_eq!(warnings.len(), 8, "{warnings:#?}");

    let m = mails(&server);
    assert_eq!(m.len(), 1);
    assert!(m[0].subject.contains("Jane Doe"));
    assert!(m[0].text.contains("hi\u{FFFD} !"), "invalid UTF-8 shown with a replacement character");
    assert!(m[0].text.contains("big big"));
    assert!(!m[0].text.contains("beep"));

    let out = f.run_at("2026-11-24T11:00:00Z", &[], 0);
    assert_eq!(out.stderr, "", "each bad row is reported once");
}

#[test]
fn state_is_owner_only_and_secrets_stay_out_of_output() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.lead_who_leaves("c1", "Jane", "jane@example.com", 0);
    let config = std::fs::read_to_string(&f.config).unwrap().replace(
        "security = \"none\"",
        "security = \"none\"\nusername = \"notifier\"\npassword_env = \"CHAT_NOTIFIER_TEST_PASSWORD\"",
    );
    std::fs::write(&f.config, config).unwrap();

    let out = f.run_at("2026-11-24T10:00:00Z", &["--dry-run", "-vv"], 0);
    assert!(out.stdout.contains("Subject: "), "the dry run needs no password");
    assert!(!f.state.exists());

    // A real run reads the password when it builds the transport: missing, it says which variable.
    let out = f.run_at("2026-11-24T10:00:00Z", &[], 1);
    assert!(one_line(&out.stderr).contains("CHAT_NOTIFIER_TEST_PASSWORD is not set"), "{}", out.stderr);

    f.write_config(server.port(), "");
    f.run_at("2026-11-24T10:00:00Z", &["-v"], 0);
    for file in [f.state.clone(), f.dir.path().join("state.sqlite.lock")] {
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
}

#[test]
fn info_logs_name_emails_not_their_contents() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    let out = f.run_at("2026-11-24T10:00:00Z", &["-v"], 0);
    let stderr = out.stderr_past_first_run();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("chat-notifier: info: sent abandoned email for #"), "{}", lines[0]);
    assert!(!out.stderr.contains("Jane") && !out.stderr.contains("jane@"), "{}", out.stderr);
}

#[test]
fn an_export_without_the_contract_index_warns_and_still_works() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.sql("DROP INDEX messages_by_conversation;");
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    let out = f.run_at("2026-11-24T10:00:00Z", &[], 0);
    assert_eq!(out.stderr_past_first_run().lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("no index on messages(conversation_id, id)"), "{}", out.stderr);
    assert_eq!(mails(&server).len(), 1);
}
