//! What the owner can ask: status, completions, the man page. Through the built binary.

mod support;

use support::{Behavior, Fixture, SmtpServer};

#[test]
fn status_lists_each_conversation_where_it_stands_and_changes_nothing() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.write_config(server.port(), "[[bots]]\nid = \"support\"\n[bots.notify]\nrequire_fields = [\"phone\"]");
    f.lead_who_leaves("sent", "Sam Lee", "sam@example.com", 0);
    f.end("sent", "2026-11-24T09:00:30Z");
    f.lead_who_leaves("refused", "Rita Refused", "rita@example.com", 1);
    f.conversation_of("support", "held", "2026-11-24T09:02:00Z");
    f.visitor("held", "2026-11-24T09:02:10Z", Some("name"), "Hal Held");
    server.set(Behavior::RejectDataContaining { needle: "Rita Refused".into(), reply: "451 4.3.0 later".into() });
    f.run_at("2026-11-24T10:00:00Z", &[], 3);
    f.lead_who_leaves("typing", "Tina Typing", "tina@example.com", 58);
    f.visitor("typing", "2026-11-24T10:04:00Z", None, "still here");
    f.run_at("2026-11-24T10:05:00Z", &[], 3);

    let before = f.state_dump();
    let out = f.run(&["status", "--now", "2026-11-24T10:06:00Z"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("0 parked, 1 failed, 0 pending, 1 waiting, 1 held, 1 notified"), "{}", out.stdout);
    let standing =
        |visitor: &str| lines.iter().find(|l| l.contains(visitor)).map(|l| l.split_whitespace().collect::<Vec<_>>());
    assert!(standing("Rita Refused").unwrap().contains(&"failed"));
    assert!(lines.iter().any(|l| l.contains("Rita Refused") && l.contains("451")), "the last error: {}", out.stdout);
    assert!(standing("Tina Typing").unwrap().contains(&"waiting"));
    assert!(standing("Hal Held").unwrap().contains(&"held"));
    assert!(standing("Sam Lee").unwrap().contains(&"notified"));
    assert!(f.state_dump() == before, "status changes no state");

    let out = f.run(&["status", "--json", "--now", "2026-11-24T10:06:00Z", "--bot", "support"]);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    let rows = json["conversations"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["state"], "held");
    assert_eq!(rows[0]["visitor"], "Hal Held");
    assert_eq!(json["summary"]["held"], 1);

    let out = f.run(&["status", "--state", "failed", "--now", "2026-11-24T10:06:00Z"]);
    assert_eq!(out.stdout.lines().count(), 3, "summary, header, one row: {}", out.stdout);
}

#[test]
fn completions_and_man_page_come_from_the_command_line_definition() {
    let f = Fixture::new(1);
    std::fs::remove_file(&f.config).unwrap(); // they need no config
    for shell in ["bash", "zsh", "fish"] {
        let out = f.run(&["completions", shell]);
        assert_eq!(out.code, 0, "{shell}: {}", out.stderr);
        for word in ["chat-notifier", "prune", "status", "dry-run"] {
            assert!(out.stdout.contains(word), "{shell} completions name {word}");
        }
    }
    let out = f.run(&["man"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains(".TH chat-notifier 1"), "{}", &out.stdout[..200.min(out.stdout.len())]);
    assert!(out.stdout.contains("prune") && out.stdout.contains("check"));
    let version = f.run(&["--version"]);
    assert_eq!(version.stdout.trim(), format!("chat-notifier {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn preview_shows_the_next_email_and_the_last_one_exactly_as_sent() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    let sent = support::Mail::read(&server.received()[0]);
    let identifier = support::identifier(&sent.subject).to_owned();

    // --last, by identifier as the subject shows it: the same email, body rendered again.
    let out = f.run(&["preview", &format!("[#{identifier}]"), "--last"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains(&format!("Message-ID: <{}>", sent.message_id)), "{}", out.stdout);
    let text = out.stdout.split_once("\n\n").unwrap().1.split("\n======").next().unwrap();
    assert_eq!(text.trim_end(), sent.text.trim_end(), "the body as it was sent");

    // The visitor is back: the next email, in the same thread, not sent and not recorded.
    f.visitor("c1", "2026-11-25T09:00:00Z", Some("phone"), "<b>555</b>");
    let before = f.state_dump();
    let html = f.dir.path().join("preview.html");
    let out = f.run(&["preview", "c1", "--now", "2026-11-25T09:05:00Z", "--html", html.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains(&format!("Subject: Re: {}", sent.subject)), "{}", out.stdout);
    assert!(out.stdout.contains(&format!("In-Reply-To: <{}>", sent.message_id)));
    assert!(out.stdout.contains("came back to the chat"), "{}", out.stdout);
    assert!(out.stderr.contains("the visitor wrote 5 min ago"), "{}", out.stderr);
    assert!(std::fs::read_to_string(&html).unwrap().contains("&lt;b&gt;555&lt;&#x2f;b&gt;"));
    assert!(f.state_dump() == before, "preview changes no state");
    assert_eq!(server.received().len(), 1);

    let out = f.run(&["preview", "nope"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("no conversation with id or identifier \"nope\""), "{}", out.stderr);
}
