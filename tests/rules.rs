//! The owner's rules, through the built binary and a real SMTP server: which emails, to whom.

mod support;

use support::{Fixture, SmtpServer, mails};

#[test]
fn a_phone_given_later_yields_exactly_one_email_then() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.write_config(server.port(), "[notify]\nrequire_fields = [\"phone\"]");
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    f.run_at("2026-11-24T12:00:00Z", &[], 0);
    assert!(server.received().is_empty(), "no phone yet: nothing");

    // Back the next day, gives the phone, leaves again.
    f.visitor("c1", "2026-11-25T09:00:00Z", Some("phone"), "+1 555 0100");
    f.run_at("2026-11-25T09:10:00Z", &[], 0);
    assert!(server.received().is_empty(), "may still be typing");
    f.run_at("2026-11-25T09:31:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 1);
    assert!(m[0].subject.starts_with("Lead Bot: chat with Jane Doe [#"), "{}", m[0].subject);
    assert!(m[0].text.contains("phone: +1 555 0100") && m[0].text.contains("Your email?"), "everything so far");
    f.run_at("2026-11-25T12:00:00Z", &[], 0);
    assert_eq!(server.received().len(), 1, "exactly one");

    // Finishing later still threads under that email.
    f.end("c1", "2026-11-26T09:00:00Z");
    f.run_at("2026-11-26T09:01:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 2);
    assert_eq!(m[1].subject, format!("Re: {}", m[0].subject));
    assert_eq!(m[1].in_reply_to.as_deref(), Some(m[0].message_id.as_str()));
}

#[test]
fn each_bot_goes_to_its_own_people_with_its_own_subject_zone_and_timing() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.write_config(
        server.port(),
        r#"[[bots]]
id = "support"
to = ["Help Desk <help@example.com>"]
cc = ["lead@example.com"]
abandon_after = "5m"
time_zone = "America/New_York"
[bots.notify]
subject = "Support ticket from {{ visitor.display }} ({{ bot.name }})"
"#,
    );
    f.lead_who_leaves("sales-1", "Sam Lee", "sam@example.com", 0);
    f.conversation_of("support", "help-1", "2026-11-24T09:00:00Z");
    f.bot("help-1", "2026-11-24T09:00:00Z", "ask_issue", "text", "What can we help with?");
    f.visitor("help-1", "2026-11-24T09:00:30Z", Some("name"), "Alex Kim");

    // Ten minutes idle: support's 5 minutes are up, lead's 30 are not.
    f.run_at("2026-11-24T09:10:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].rcpt_to, ["help@example.com", "lead@example.com"]);
    assert!(m[0].subject.starts_with("Support ticket from Alex Kim (support bot) [#"), "{}", m[0].subject);
    assert!(m[0].text.contains("[2026-11-24 04:00] support bot: What can we help with?"), "{}", m[0].text);

    f.run_at("2026-11-24T09:40:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 2);
    assert_eq!(m[1].rcpt_to, ["owner@example.com"], "bots not listed use the defaults");
    assert!(m[1].subject.starts_with("Lead Bot: chat with Sam Lee [#"));
}

#[test]
fn only_the_states_asked_for_and_no_empty_emails() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.write_config(server.port(), "[notify]\non = [\"completed\"]");
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    f.conversation("silent", "2026-11-24T09:00:00Z");
    f.bot("silent", "2026-11-24T09:00:00Z", "ask_name", "text", "Hi! What's your name?");
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    assert!(server.received().is_empty(), "abandoned emails are off");
    f.end("c1", "2026-11-24T11:00:00Z");
    f.run_at("2026-11-24T11:01:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 1);
    assert!(m[0].text.contains("Jane Doe finished the chat"), "{}", m[0].text);

    // With every state on, a chat where the visitor never wrote still sends nothing.
    f.write_config(server.port(), "");
    f.run_at("2026-11-24T12:00:00Z", &[], 0);
    assert_eq!(server.received().len(), 1);
}

#[test]
fn changing_the_rules_sends_what_became_due_and_never_resends() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.write_config(server.port(), "[notify]\non = [\"completed\"]");
    f.lead_who_leaves("left", "Jane Doe", "jane@example.com", 0);
    f.lead_who_leaves("done", "Sam Lee", "sam@example.com", 1);
    f.end("done", "2026-11-24T09:01:30Z");
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    assert_eq!(mails(&server).len(), 1);

    f.write_config(server.port(), "[notify]\non = [\"completed\", \"abandoned\", \"resumed\"]");
    let out = f.run_at("2026-11-24T10:05:00Z", &["-v"], 0);
    assert!(out.stderr.contains("rules changed: 1 held conversation(s)"), "{}", out.stderr);
    let m = mails(&server);
    assert_eq!(m.len(), 2, "the held abandoned chat now goes, the completed one not again");
    assert!(m[1].text.contains("Jane Doe left the chat"), "{}", m[1].text);
    f.run_at("2026-11-24T11:00:00Z", &[], 0);
    assert_eq!(server.received().len(), 2);
}

#[test]
fn a_disabled_bot_sends_nothing_until_enabled() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.write_config(server.port(), "[[bots]]\nid = \"lead\"\nenabled = false");
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    assert!(server.received().is_empty());
    f.write_config(server.port(), "[[bots]]\nid = \"lead\"\nenabled = true");
    f.run_at("2026-11-24T10:05:00Z", &[], 0);
    assert_eq!(server.received().len(), 1);
}

#[test]
fn check_catches_a_template_error_before_any_run() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    let templates = f.dir.path().join("my-templates");
    std::fs::create_dir(&templates).unwrap();
    std::fs::write(
        templates.join("abandoned.html"),
        "{% extends \"base.html\" %}\n{% block headline %}\n{{ visitor.nme }}{% endblock %}\n",
    )
    .unwrap();
    f.write_config(server.port(), "templates = \"my-templates\"");

    let out = f.run(&["check"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    let line = out.stdout.lines().find(|l| l.starts_with("templates")).unwrap();
    assert!(line.contains("FAILED") && line.contains("abandoned.html") && line.contains("line 3"), "{line}");
    assert!(out.stdout.lines().any(|l| l.starts_with("source     ok")), "{}", out.stdout);
    assert!(!f.state.exists(), "check creates nothing");

    std::fs::write(
        templates.join("abandoned.html"),
        "{% extends \"base.html\" %}\n{% block headline %}{{ visitor.display }} left (custom){% endblock %}\n",
    )
    .unwrap();
    let out = f.run(&["check", "--smtp"]);
    assert_eq!(out.code, 0, "{}", out.stdout);
    assert!(out.stdout.contains(&format!("smtp 127.0.0.1:{}: connected", server.port())), "{}", out.stdout);
    assert!(server.received().is_empty(), "check sends nothing");

    // The custom template is what the run then uses.
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    assert!(mails(&server)[0].html.contains("Jane Doe left (custom)"));

    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    f.write_config(dead, "");
    let out = f.run(&["check", "--smtp"]);
    assert_eq!(out.code, 1);
    assert!(out.stdout.lines().any(|l| l.starts_with("transport  FAILED")), "{}", out.stdout);
}

#[test]
fn prune_also_forgets_conversations_held_back_for_long() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.write_config(server.port(), "[notify]\nrequire_fields = [\"phone\"]");
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    assert_eq!(f.state_rows("SELECT id FROM conversations WHERE held_through > 0"), [["Text(\"c1\")"]]);
    let out = f.run(&["-v", "prune", "--older-than", "90d", "--now", "2027-03-01T00:00:00Z"]);
    assert!(out.stderr.contains("pruned 1 conversation(s)"), "{}", out.stderr);
    assert!(f.tracked().is_empty());
}

/// `ended` (an LLM bot's chat that went quiet) is a state like the others wherever one is named:
/// `notify.on`, a bot's own, a digest's `states`; `check` tries an owner's `ended` templates
/// (finding an error in one, with its file and line); and a flow bot's chats are judged as
/// before (with `on` naming completed and ended only, its abandoned chat is held back).
#[test]
fn the_ended_state_is_accepted_wherever_states_are_named() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    let templates = f.dir.path().join("my-templates");
    std::fs::create_dir(&templates).unwrap();
    std::fs::write(
        templates.join("ended.txt"),
        "{% extends \"base.txt\" %}\n{% block headline %}\n{{ visitor.nme }}{% endblock %}\n",
    )
    .unwrap();
    f.write_config(
        server.port(),
        "templates = \"my-templates\"\n[notify]\non = [\"completed\", \"ended\"]\n\
         digest = { states = [\"ended\"], unless_fields = [\"email\"], at = \"08:00\" }\n\
         [[bots]]\nid = \"support\"\n[bots.notify]\non = [\"ended\", \"resumed\"]",
    );
    let out = f.run(&["check"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let line = out.stdout.lines().find(|l| l.starts_with("templates")).unwrap();
    assert!(line.contains("FAILED") && line.contains("ended.txt") && line.contains("line 3"), "{line}");

    std::fs::write(
        templates.join("ended.txt"),
        "{% extends \"base.txt\" %}\n{% block headline %}{{ visitor.display }}: {{ state }}{% endblock %}\n",
    )
    .unwrap();
    let out = f.run(&["check"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);

    f.lead_who_leaves("left", "Jane Doe", "jane@example.com", 0);
    f.lead_who_leaves("done", "Sam Lee", "sam@example.com", 1);
    f.end("done", "2026-11-24T09:01:30Z");
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 1, "the completed chat only: abandoned emails are off");
    assert!(m[0].text.starts_with("Sam Lee finished the chat with Lead Bot."), "{}", m[0].text);
}
