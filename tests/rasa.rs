//! Rasa's SQL tracker store as the source, on SQLite as Rasa writes it by default: the same
//! emails, guarantees and commands as the export, through the built binary.

mod support;

use serde_json::json;
use support::{Fixture, SmtpServer, mails};

#[test]
fn a_rasa_lead_who_leaves_and_comes_back_to_finish_is_two_emails_in_one_thread() {
    let server = SmtpServer::start();
    let (f, rasa) = Fixture::rasa(server.port(), "");
    rasa.lead_who_leaves("4a1c9e", "Jane Doe", "jane@example.com", 0);
    rasa.lead_who_leaves("77bd02", "Sam Lee", "sam@example.com", 1);

    let out = f.run_at("2026-11-24T09:10:00Z", &[], 0);
    assert_eq!(out.stderr, "", "still typing: nothing");
    f.run_at("2026-11-24T09:35:00Z", &[], 0);
    let first = mails(&server);
    assert_eq!(first.len(), 2);
    let jane = first.iter().find(|m| m.subject.contains("Jane Doe")).unwrap();
    assert!(jane.subject.starts_with("Lead Bot: chat with Jane Doe [#"), "{}", jane.subject);
    assert_eq!(jane.reply_to.as_deref(), Some("jane@example.com"), "the email slot is the Reply-To");
    assert!(
        jane.text.contains("left the chat with Lead Bot midway, at step utter_ask_phone (\"And your phone?\")"),
        "{}",
        jane.text
    );
    assert!(jane.text.contains("email: jane@example.com") && jane.text.contains("name: Jane Doe"), "{}", jane.text);
    assert!(
        jane.text.contains("Visitor: hi, I'd like a quote") && !jane.text.contains("requested_slot"),
        "{}",
        jane.text
    );

    // Back within Rasa's session (60 minutes): finishes the form; the same conversation.
    rasa.finishes("4a1c9e", "+1 555 0100", "2026-11-24T09:50:00Z");
    f.run_at("2026-11-24T09:51:00Z", &[], 0);
    let all = mails(&server);
    assert_eq!(all.len(), 3);
    let done = &all[2];
    assert_eq!(done.subject, format!("Re: {}", jane.subject));
    assert_eq!(done.in_reply_to.as_deref(), Some(jane.message_id.as_str()));
    assert!(done.text.contains("came back and finished"), "{}", done.text);
    assert!(done.text.contains("phone: +1 555 0100"), "{}", done.text);
    assert!(done.text.contains("Lead Bot: Thanks, we will be in touch!"), "{}", done.text);

    // Nothing new: nothing sent, nothing said.
    let out = f.run_at("2026-11-25T09:00:00Z", &[], 0);
    assert_eq!(out.stderr, "");
    assert_eq!(server.received().len(), 3);
}

#[test]
fn a_form_that_completes_and_a_new_session_are_what_they_mean() {
    let server = SmtpServer::start();
    let (f, rasa) = Fixture::rasa(server.port(), "complete_on_forms = [\"lead_form\"]");
    f.use_source("kind = \"rasa\"\nurl = \"rasa.db\"\ncomplete_on_forms = [\"lead_form\"]");
    rasa.lead_who_leaves("s1", "Ada", "ada@example.com", 0);
    rasa.user("s1", "2026-11-24T09:01:00Z", "+44 20 7946 0000", "inform");
    rasa.slot("s1", "2026-11-24T09:01:00Z", "phone", json!("+44 20 7946 0000"));
    rasa.active_loop("s1", "2026-11-24T09:01:00Z", None);
    f.run_at("2026-11-24T09:02:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 1, "completed at once: the form deactivated after it ran");
    assert!(m[0].subject.starts_with("Rasa bot: chat with Ada [#"), "the default bot name: {}", m[0].subject);
    assert!(m[0].text.contains("Ada finished the chat"), "{}", m[0].text);

    // The next day, a new session of the same sender: a new conversation, its own thread.
    rasa.session("s1", "2026-11-25T10:00:00Z");
    rasa.slot("s1", "2026-11-25T10:00:00Z", "name", json!("Ada"));
    rasa.user("s1", "2026-11-25T10:00:05Z", "one more question", "ask");
    f.run_at("2026-11-25T11:00:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 2);
    assert!(!m[1].subject.starts_with("Re: "), "a new session is a new thread: {}", m[1].subject);
    assert_ne!(support::identifier(&m[1].subject), support::identifier(&m[0].subject));
    let earlier = support::identifier(&m[0].subject);
    assert!(m[1].text.contains("Visitor: one more question") && !m[1].text.contains("Visitor: +44"), "{}", m[1].text);
    // The same sender is the same person: the earlier session shows, with what was said there.
    assert!(
        m[1].text.contains(&format!("Ada chatted before:\n  #{earlier}, Rasa bot, completed on 2026-11-24")),
        "{}",
        m[1].text
    );
    assert!(
        m[1].text.contains(&format!("phone: +44 20 7946 0000 (in an earlier chat, #{earlier}, 2026-11-24)")),
        "{}",
        m[1].text
    );
    assert_eq!(m[1].reply_to.as_deref(), Some("ada@example.com"), "the address from the earlier chat");
}

#[test]
fn bad_rasa_rows_are_named_and_skipped_and_the_rest_goes_out() {
    let server = SmtpServer::start();
    let (f, rasa) = Fixture::rasa(server.port(), "");
    rasa.lead_who_leaves("good", "Jane Doe", "jane@example.com", 0);
    let not_json = rasa.user("good", "2026-11-24T09:00:30Z", "x", "inform");
    f.sql_on(&f.dir.path().join("rasa.db"), &format!("UPDATE events SET data = '{{not json' WHERE id = {not_json}"));
    let list = rasa.slot("good", "2026-11-24T09:00:31Z", "interests", json!(["pricing", "demo"]));
    let no_text = rasa.event("good", "2026-11-24T09:00:32Z", "user", json!({ "parse_data": {} }));
    let unknown = rasa.event("good", "2026-11-24T09:00:33Z", "teleport", json!({}));
    let ignored = rasa.event("good", "2026-11-24T09:00:34Z", "restart", json!({}));
    let out = f.run_at("2026-11-24T10:00:00Z", &[], 0);
    let stderr = out.stderr_past_first_run();
    let lines: Vec<&str> = stderr.lines().collect();
    let shown = f.dir.path().join("rasa.db").display().to_string();
    for (row, why) in [
        (not_json, "data is not JSON"),
        (list, "slot \"interests\" holds a list, not a value a field can show"),
        (no_text, "a user event without text"),
        (unknown, "event type \"teleport\" is not one chat-notifier knows"),
    ] {
        let prefix = format!("chat-notifier: warn: rasa {shown}: events row {row} skipped: ");
        assert!(lines.iter().any(|l| l.starts_with(&prefix) && l.contains(why)), "{prefix}{why} in {lines:#?}");
    }
    assert_eq!(lines.len(), 4, "{lines:#?} (row {ignored}, a restart, is nothing to report)");
    assert_eq!(mails(&server).len(), 1, "Jane's email went out");
    let out = f.run_at("2026-11-24T11:00:00Z", &[], 0);
    assert_eq!(out.stderr, "", "each reported once");
}

#[test]
fn the_event_brokers_table_or_no_store_at_all_is_one_line() {
    let server = SmtpServer::start();
    let (f, _rasa) = Fixture::rasa(server.port(), "");
    let db = f.dir.path().join("rasa.db");
    std::fs::remove_file(&db).unwrap();
    f.sql_on(&db, "CREATE TABLE events (id INTEGER PRIMARY KEY, sender_id VARCHAR(255) NOT NULL, data TEXT)");
    let out = f.run_at("2026-11-24T10:00:00Z", &[], 1);
    assert!(out.stderr.contains("is Rasa's SQL event broker's, not the tracker store's"), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1);
    std::fs::remove_file(&db).unwrap();
    let out = f.run_at("2026-11-24T10:00:00Z", &[], 1);
    assert!(out.stderr.contains(&format!("rasa {}: no such file", db.display())), "{}", out.stderr);
    assert!(!f.state.exists(), "state untouched");
}

#[test]
fn check_status_preview_and_report_read_rasa_too() {
    let server = SmtpServer::start();
    let (f, rasa) = Fixture::rasa(server.port(), "");
    rasa.lead_who_leaves("s1", "Jane Doe", "jane@example.com", 0);
    rasa.lead_who_leaves("s2", "Sam Lee", "sam@example.com", 1);
    rasa.finishes("s2", "555", "2026-11-24T09:02:00Z");
    let check = f.run(&["check"]);
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
    assert!(
        check.stdout.contains("(Rasa tracker store): 2 senders, ")
            && check.stdout.contains("completion seen: action_submit_lead"),
        "{}",
        check.stdout
    );
    f.use_source("kind = \"rasa\"\nurl = \"rasa.db\"\ncomplete_on_actions = [\"utter_bye\"]");
    let check = f.run(&["check"]);
    assert!(
        check.stderr.contains("none of complete_on_actions / complete_on_forms (utter_bye) appears"),
        "{}",
        check.stderr
    );
    f.use_source(
        "kind = \"rasa\"\nurl = \"rasa.db\"\nbot_name = \"Lead Bot\"\ncomplete_on_actions = [\"action_submit_lead\"]",
    );

    // Rasa's session start: action_session_start (1), session_started (2): the conversation is "s1/2".
    let preview = f.run(&["preview", "s1/2", "--now", "2026-11-24T10:00:00Z"]);
    assert_eq!(preview.code, 0, "{}", preview.stderr);
    assert!(preview.stdout.contains("Subject: Lead Bot: chat with Jane Doe [#"), "{}", preview.stdout);
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    let status = f.run(&["status", "--json", "--now", "2026-11-24T10:00:00Z"]);
    assert!(
        status.stdout.contains("\"notified\": 2") && status.stdout.contains("\"bot\": \"Lead Bot\""),
        "{}",
        status.stdout
    );
    let report = f.run(&["report", "--format", "json", "--now", "2026-11-24T10:00:00Z"]);
    let json: serde_json::Value = serde_json::from_str(&report.stdout).unwrap();
    let bot = &json["bots"][0];
    assert_eq!(bot["bot_id"], "rasa");
    assert_eq!(bot["conversations"], 2);
    assert_eq!(bot["completed"], 1);
    assert_eq!(bot["leads_to_follow_up"], 1, "Jane left her email and never finished");
    assert_eq!(bot["steps"][0]["question"], "What's your name?", "steps named by what the bot asked");
}
