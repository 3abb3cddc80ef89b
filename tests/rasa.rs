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
    rasa.answers("s1", "2026-11-24T09:01:00Z", "phone", "+44 20 7946 0000");
    rasa.action("s1", "2026-11-24T09:01:00Z", "lead_form");
    rasa.slot("s1", "2026-11-24T09:01:00Z", "phone", json!("+44 20 7946 0000"));
    rasa.slot("s1", "2026-11-24T09:01:00Z", "requested_slot", serde_json::Value::Null);
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
    rasa.bot("good", "2026-11-24T09:00:35Z", "utter_anything_else", "Anything else?");
    let out = f.run_at("2026-11-24T10:00:00Z", &[], 0);
    let stderr = out.stderr_past_first_run();
    let lines: Vec<&str> = stderr.lines().collect();
    let shown = f.dir.path().join("rasa.db").display().to_string();
    for (row, why) in [
        (not_json, "data is not JSON"),
        (no_text, "a user event without text"),
        (unknown, "event type \"teleport\" is not one chat-notifier knows"),
    ] {
        let prefix = format!("chat-notifier: warn: rasa {shown}: events row {row} skipped: ");
        assert!(lines.iter().any(|l| l.starts_with(&prefix) && l.contains(why)), "{prefix}{why} in {lines:#?}");
    }
    assert_eq!(
        lines.len(),
        3,
        "{lines:#?} (row {ignored}, a restart, and row {list}, a list slot, are nothing to report)"
    );
    let m = mails(&server);
    assert_eq!(m.len(), 1, "Jane's email went out");
    assert!(m[0].text.contains("interests: pricing, demo"), "a list slot's items: {}", m[0].text);
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
        check
            .stderr
            .contains("none of complete_on_actions / complete_on_forms / complete_on_flows (utter_bye) appears"),
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

/// Rasa Pro writes a `bot_turn_ended` after every turn, and other events that say nothing about
/// the visitor; every channel with metadata sets Rasa's own slot `session_started_metadata` to
/// an object twice per session. None of it is a warning.
#[test]
fn rasa_pro_turn_events_and_rasas_own_metadata_slot_are_read_in_silence() {
    let server = SmtpServer::start();
    let (f, rasa) = Fixture::rasa(server.port(), "");
    let turn_ended = |when: &str| {
        rasa.event("pro", when, "bot_turn_ended", json!({ "metadata": { "latency_breakdown": {} } }));
    };
    let channel = json!({ "user_agent": "Mozilla/5.0", "page": "https://example.com/pricing" });
    rasa.session_from_channel("pro", "2026-11-24T09:00:00Z", channel);
    rasa.event("pro", "2026-11-24T09:00:00Z", "flow_started", json!({ "flow_id": "lead_flow" }));
    rasa.user("pro", "2026-11-24T09:00:01Z", "hi, I'd like a quote", "request_quote");
    rasa.form_runs("pro", "2026-11-24T09:00:02Z", None, ("name", "utter_ask_name", "What's your name?"));
    turn_ended("2026-11-24T09:00:02Z");
    rasa.answers("pro", "2026-11-24T09:00:10Z", "name", "Pia Pro");
    rasa.event("pro", "2026-11-24T09:00:10Z", "memory_set", json!({ "key": "k", "value": { "a": 1 } }));
    rasa.form_runs(
        "pro",
        "2026-11-24T09:00:11Z",
        Some(("name", "Pia Pro")),
        ("email", "utter_ask_email", "Your email?"),
    );
    turn_ended("2026-11-24T09:00:11Z");
    rasa.answers("pro", "2026-11-24T09:00:20Z", "email", "pia@example.com");
    rasa.event("pro", "2026-11-24T09:00:20Z", "undo", json!({}));
    rasa.form_runs(
        "pro",
        "2026-11-24T09:00:21Z",
        Some(("email", "pia@example.com")),
        ("phone", "utter_ask_phone", "Phone?"),
    );
    rasa.event("pro", "2026-11-24T09:00:21Z", "user_silence_timeout", json!({ "timeout": 10 }));
    rasa.event("pro", "2026-11-24T09:00:21Z", "flow_cancelled", json!({ "flow_id": "lead_flow", "step_id": "ask" }));
    rasa.event("pro", "2026-11-24T09:00:22Z", "inactive", json!({}));
    rasa.event("pro", "2026-11-24T09:00:22Z", "session_ended", json!({}));
    turn_ended("2026-11-24T09:00:22Z");

    let out = f.run_at("2026-11-24T10:00:00Z", &[], 0);
    assert_eq!(out.stderr_past_first_run(), "", "nothing to report");
    let m = mails(&server);
    assert_eq!(m.len(), 1);
    assert!(m[0].text.contains("email: pia@example.com"), "{}", m[0].text);
    assert!(!m[0].text.contains("session_started_metadata") && !m[0].text.contains("Mozilla"), "{}", m[0].text);
    let out = f.run_at("2026-11-24T11:00:00Z", &[], 0);
    assert_eq!(out.stderr, "");
}

/// Rasa Pro's CALM assistants have flows, not forms: `complete_on_flows` names the flows whose
/// `flow_completed` (`flow_id`, `step_id`, as `rasa.shared.core.events.FlowCompleted` writes it)
/// means the visitor finished; a cancelled flow, or another flow completing, does not.
#[test]
fn complete_on_flows_names_the_flows_whose_completion_finishes_the_chat() {
    let server = SmtpServer::start();
    let (f, rasa) = Fixture::rasa(server.port(), "");
    f.use_source("kind = \"rasa\"\nurl = \"rasa.db\"\nbot_name = \"Calm Bot\"\ncomplete_on_flows = [\"lead_flow\"]");
    let calm = |sender: &str, name: &str, minute: u32, end: &str| {
        let t = |s: u32| format!("2026-11-24T09:{minute:02}:{s:02}Z");
        rasa.session(sender, &t(0));
        rasa.user(sender, &t(1), "I want a quote", "request_quote");
        rasa.event(sender, &t(1), "flow_started", json!({ "flow_id": "lead_flow" }));
        rasa.say(sender, &t(2), "utter_ask_name", "What's your name?");
        rasa.event(sender, &t(2), "bot_turn_ended", json!({}));
        rasa.answers(sender, &t(10), "name", name);
        rasa.event(
            sender,
            &t(11),
            "flow_completed",
            json!({ "flow_id": "pattern_collect_information", "step_id": "END" }),
        );
        rasa.say(sender, &t(11), "utter_ask_email", "Your email?");
        rasa.answers(sender, &t(20), "email", &format!("{sender}@example.com"));
        rasa.event(sender, &t(21), end, json!({ "flow_id": "lead_flow", "step_id": "END" }));
        rasa.say(sender, &t(21), "utter_goodbye", "Thanks!");
        rasa.event(sender, &t(21), "bot_turn_ended", json!({}));
    };
    calm("done", "Dora Done", 0, "flow_completed");
    calm("gone", "Gil Gone", 1, "flow_cancelled");

    let out = f.run_at("2026-11-24T10:00:00Z", &[], 0);
    assert_eq!(out.stderr_past_first_run(), "");
    let m = mails(&server);
    assert_eq!(m.len(), 2);
    let done = m.iter().find(|m| m.subject.contains("Dora Done")).unwrap();
    assert!(done.text.contains("Dora Done finished the chat"), "{}", done.text);
    let gone = m.iter().find(|m| m.subject.contains("Gil Gone")).unwrap();
    assert!(gone.text.contains("left the chat with Calm Bot midway"), "a cancelled flow: {}", gone.text);
    let check = f.run(&["check"]);
    assert!(check.stdout.contains("completion seen: lead_flow"), "{}{}", check.stdout, check.stderr);

    f.use_source("kind = \"export\"\nurl = \"export.sqlite\"\ncomplete_on_flows = [\"lead_flow\"]");
    let check = f.run(&["check"]);
    assert_ne!(check.code, 0);
    assert!(check.stdout.contains("source.complete_on_flows: does not apply to kind = \"export\""), "{}", check.stdout);
}

/// "stop" in the middle of a form: Rasa rejects the form's run, deactivates it with
/// `action_deactivate_loop`, and writes `active_loop` null. That is a cancelled form, not a
/// finished one: only `active_loop` null right after the form's own action finishes it.
#[test]
fn a_cancelled_form_is_not_a_finished_one() {
    let server = SmtpServer::start();
    let (f, rasa) = Fixture::rasa(server.port(), "");
    f.use_source("kind = \"rasa\"\nurl = \"rasa.db\"\nbot_name = \"Lead Bot\"\ncomplete_on_forms = [\"lead_form\"]");
    rasa.lead_who_leaves("ivy", "Ivy Chen", "ivy@example.com", 0);
    rasa.stops("ivy", "2026-11-24T09:00:30Z");
    rasa.lead_who_leaves("bob", "Bob Ray", "bob@example.com", 1);
    rasa.finishes("bob", "+1 555 0101", "2026-11-24T09:01:30Z");

    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 2);
    let ivy = m.iter().find(|m| m.subject.contains("Ivy Chen")).unwrap();
    assert!(!ivy.text.contains("finished the chat"), "{}", ivy.text);
    assert!(ivy.text.contains("Ivy Chen left the chat with Lead Bot midway"), "{}", ivy.text);
    let bob = m.iter().find(|m| m.subject.contains("Bob Ray")).unwrap();
    assert!(bob.text.contains("Bob Ray finished the chat"), "{}", bob.text);
    let leads = f.run(&["leads", "--format", "json", "--now", "2026-11-24T10:00:00Z"]);
    let leads: serde_json::Value = serde_json::from_str(&leads.stdout).unwrap();
    let names: Vec<&str> = leads.as_array().unwrap().iter().filter_map(|l| l["name"].as_str()).collect();
    assert_eq!(names, ["Ivy Chen"], "Ivy is a lead to follow up, Bob finished");
}

/// A custom `action_session_start` may write no `session_started`: Rasa (and Rasa Pro's store)
/// still begins a new session there, and so does chat-notifier: the next day's chat is a
/// conversation and a thread of its own, not the old one resumed.
#[test]
fn a_session_begun_by_a_custom_session_start_action_is_a_conversation_of_its_own() {
    let server = SmtpServer::start();
    let (f, rasa) = Fixture::rasa(server.port(), "");
    rasa.lead_who_leaves("s1", "Ada", "ada@example.com", 0);
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    let first = mails(&server);
    assert_eq!(first.len(), 1);

    let start = rasa.custom_session("s1", "2026-11-25T10:00:00Z");
    rasa.slot("s1", "2026-11-25T10:00:00Z", "name", json!("Ada"));
    rasa.user("s1", "2026-11-25T10:00:05Z", "one more question", "ask");
    rasa.say("s1", "2026-11-25T10:00:06Z", "utter_answer", "Sure, ask away.");
    f.run_at("2026-11-25T11:00:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 2);
    assert!(!m[1].subject.starts_with("Re: "), "a new session is a new thread: {}", m[1].subject);
    assert!(!m[1].text.contains("came back"), "{}", m[1].text);
    assert!(m[1].text.contains("Visitor: one more question") && !m[1].text.contains("Visitor: ada@"), "{}", m[1].text);
    assert_eq!(conversation_ids(&f), ["s1/2".to_owned(), format!("s1/{start}")]);
}

/// The conversations the state tracks, by id.
fn conversation_ids(f: &Fixture) -> Vec<String> {
    let conn = rusqlite::Connection::open(&f.state).unwrap();
    let mut stmt = conn.prepare("SELECT id FROM conversations ORDER BY id").unwrap();
    stmt.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
}

/// The build to upgrade from: `CHAT_NOTIFIER_UPGRADE_FROM`, else the build under test.
fn upgrade_from() -> std::path::PathBuf {
    std::env::var_os("CHAT_NOTIFIER_UPGRADE_FROM").map_or_else(support::bin, std::path::PathBuf::from)
}

/// Where Rasa's sessions begin decides the conversations' ids, and the state keeps threads by
/// them: a state written before sessions began at `action_session_start` keeps its ids
/// (`sender/{id of session_started}`). Run with `CHAT_NOTIFIER_UPGRADE_FROM=<older build>`,
/// the first run is that build's.
#[test]
fn rasa_conversation_ids_survive_an_upgrade_and_nothing_is_sent_again() {
    let server = SmtpServer::start();
    let (f, rasa) = Fixture::rasa(server.port(), "");
    rasa.lead_who_leaves("jane", "Jane Doe", "jane@example.com", 0);
    rasa.lead_who_leaves("sam", "Sam Lee", "sam@example.com", 1);
    let out = std::process::Command::new(upgrade_from())
        .args([std::ffi::OsStr::new("--config"), f.config.as_os_str()])
        .args(["run", "--now", "2026-11-24T09:35:00Z"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let before = mails(&server);
    assert_eq!(before.len(), 2);
    // action_session_start (1), session_started (2): Jane's chat is "jane/2"; Sam's events
    // follow Jane's 23.
    assert_eq!(conversation_ids(&f), ["jane/2", "sam/25"]);

    rasa.finishes("jane", "+1 555 0100", "2026-11-24T09:50:00Z");
    f.run_at("2026-11-24T09:51:00Z", &[], 0);
    let all = mails(&server);
    assert_eq!(all.len(), 3, "Jane's finish, and nothing sent again");
    let jane = before.iter().find(|m| m.subject.contains("Jane Doe")).unwrap();
    assert_eq!(all[2].subject, format!("Re: {}", jane.subject));
    assert_eq!(all[2].in_reply_to.as_deref(), Some(jane.message_id.as_str()));
    assert_eq!(conversation_ids(&f), ["jane/2", "sam/25"]);
    f.run_at("2026-11-25T09:00:00Z", &[], 0);
    assert_eq!(server.received().len(), 3);
}

/// A form asks its questions as `bot` events after `action <form>`, the response's name only in
/// their metadata: the report names each step by the slot it asked for (`utter_ask_email`),
/// not `lead_form` for all; the answers that filled a slot are not "what they ask"; and a lead's
/// last step is where the email says they stopped.
#[test]
fn the_report_names_a_forms_steps_by_the_slot_asked_and_answers_are_not_questions() {
    let server = SmtpServer::start();
    let (f, rasa) = Fixture::rasa(server.port(), "");
    rasa.lead_who_leaves("jane", "Jane Doe", "jane@example.com", 0);
    rasa.lead_who_leaves("sam", "Sam Lee", "sam@example.com", 1);
    // Ann asks about prices at the email question; the form asks again, and she leaves at the
    // phone question.
    let t = |s: u32| format!("2026-11-24T09:02:{s:02}Z");
    rasa.session("ann", &t(0));
    rasa.user("ann", &t(1), "hi, I'd like a quote", "request_quote");
    rasa.form_runs("ann", &t(2), None, ("name", "utter_ask_name", "What's your name?"));
    rasa.answers("ann", &t(10), "name", "Ann Ask");
    rasa.form_runs("ann", &t(11), Some(("name", "Ann Ask")), ("email", "utter_ask_email", "Your email?"));
    rasa.user("ann", &t(20), "how much does it cost?", "ask_prices");
    rasa.event("ann", &t(20), "action_execution_rejected", json!({ "name": "lead_form", "policy": null }));
    rasa.say("ann", &t(21), "utter_prices", "Plans start at $10 a month.");
    rasa.action("ann", &t(21), "lead_form");
    rasa.bot("ann", &t(21), "utter_ask_email", "Your email?");
    rasa.action("ann", &t(21), "action_listen");
    rasa.answers("ann", &t(30), "email", "ann@example.com");
    rasa.form_runs("ann", &t(31), Some(("email", "ann@example.com")), ("phone", "utter_ask_phone", "And your phone?"));
    // Leo gives his name and leaves at the email question.
    let t = |s: u32| format!("2026-11-24T09:03:{s:02}Z");
    rasa.session("leo", &t(0));
    rasa.user("leo", &t(1), "hi, I'd like a quote", "request_quote");
    rasa.form_runs("leo", &t(2), None, ("name", "utter_ask_name", "What's your name?"));
    rasa.answers("leo", &t(10), "name", "Leo Left");
    rasa.form_runs("leo", &t(11), Some(("name", "Leo Left")), ("email", "utter_ask_email", "Your email?"));

    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    let ann = mails(&server).into_iter().find(|m| m.subject.contains("Ann Ask")).unwrap();
    let leads = f.run(&["leads", "--format", "json", "--now", "2026-11-24T10:00:00Z"]);
    let leads: serde_json::Value = serde_json::from_str(&leads.stdout).unwrap();
    let lead = leads.as_array().unwrap().iter().find(|l| l["name"] == "Ann Ask").unwrap();
    let emailed = ann.text.split_once("midway, at step ").and_then(|(_, rest)| rest.split_once(" (")).unwrap().0;
    assert_eq!(lead["last_step"].as_str(), Some(emailed), "leads and the email name the same last step");
    assert!(ann.text.contains("midway, at step utter_ask_phone (\"And your phone?\")"), "{}", ann.text);

    let report = f.run(&["report", "--format", "json", "--now", "2026-11-24T10:00:00Z"]);
    let json: serde_json::Value = serde_json::from_str(&report.stdout).unwrap();
    let bot = &json["bots"][0];
    let steps: Vec<(&str, &str, u64, bool)> = bot["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let question = s["question"].as_str().unwrap_or("");
            (s["step"].as_str().unwrap(), question, s["stopped"].as_u64().unwrap(), s["worst"].as_bool().unwrap())
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("utter_ask_name", "What's your name?", 0, false),
            ("utter_ask_email", "Your email?", 1, false),
            ("utter_prices", "Plans start at $10 a month.", 0, false),
            ("utter_ask_phone", "And your phone?", 3, true),
        ]
    );
    let asks: Vec<(&str, &str, u64)> = bot["asks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|a| {
            let step = a["step"].as_str().unwrap();
            a["top"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |t| (step, t["text"].as_str().unwrap(), t["count"].as_u64().unwrap()))
        })
        .collect();
    assert_eq!(
        asks,
        [("", "hi, I'd like a quote", 4), ("utter_ask_email", "how much does it cost?", 1)],
        "what they ask, without the names and addresses they gave"
    );
}

/// A Rasa timestamp that is no time (NaN, negative, past the year 9999, infinite) is named as
/// what it is and its row skipped: never dated 1970 or 1811 in an email. On SQLite (a text
/// `'NaN'` in the column: SQLite stores a NaN float as NULL) and on PostgreSQL, where
/// `double precision` holds NaN and infinities as they are.
#[test]
fn rasa_timestamps_that_are_no_time_are_named_and_their_rows_skipped() {
    let server = SmtpServer::start();
    let (f, rasa) = Fixture::rasa(server.port(), "");
    timestamps_that_are_no_time(&server, &f, &rasa);
}

#[test]
fn rasa_timestamps_that_are_no_time_on_postgres_are_named_and_their_rows_skipped() {
    let server = SmtpServer::start();
    let Some(cluster) = support::pg::cluster() else { return };
    let url = cluster.database();
    let rasa = support::rasa::RasaStore::create_postgres(cluster.client(&url));
    let f = Fixture::new(server.port());
    f.use_source(&format!("kind = \"rasa\"\nurl = \"{url}\"\nbot_name = \"Lead Bot\""));
    timestamps_that_are_no_time(&server, &f, &rasa);
}

fn timestamps_that_are_no_time(server: &SmtpServer, f: &Fixture, rasa: &support::rasa::RasaStore) {
    rasa.lead_who_leaves("tia", "Tia Time", "tia@example.com", 0);
    let mut bad = Vec::new();
    for (stamp, why) in [
        (json!("NaN"), "timestamp is NaN, not a time"),
        (json!(-5e9), "timestamp -5000000000 is before 1970"),
        (json!(1e15), "timestamp 1000000000000000 is after the year 9999"),
        (json!("Infinity"), "timestamp is infinite"),
        (json!("-inf"), "timestamp is infinite"),
    ] {
        let text = format!("a line stamped {stamp}");
        let id = rasa.event_at("tia", stamp, "user", json!({ "text": text, "parse_data": {} }));
        bad.push((id, why, text));
    }
    // A session whose start is stamped NaN: the chat has no start date, rather than 1970.
    rasa.event("zed", "2026-11-24T09:05:00Z", "action", json!({ "name": "action_session_start" }));
    let zed = rasa.event_at("zed", json!("NaN"), "session_started", json!({}));
    rasa.user("zed", "2026-11-24T09:05:01Z", "hello, I'm Zed", "greet");
    rasa.slot("zed", "2026-11-24T09:05:01Z", "email", json!("zed@example.com"));
    rasa.say("zed", "2026-11-24T09:05:02Z", "utter_greet", "Hi Zed!");

    let out = f.run_at("2026-11-24T10:00:00Z", &[], 0);
    let stderr = out.stderr_past_first_run();
    for (row, why, _) in bad.iter().chain([&(zed, "timestamp is NaN, not a time", String::new())]) {
        let said = stderr.lines().any(|l| {
            l.starts_with("chat-notifier: warn: rasa ") && l.ends_with(&format!(": events row {row} skipped: {why}"))
        });
        assert!(said, "row {row}: {why} in {stderr}");
    }
    assert_eq!(stderr.lines().count(), 6, "{stderr}");
    let m = mails(server);
    assert_eq!(m.len(), 2);
    for mail in &m {
        for (_, _, text) in &bad {
            assert!(!mail.text.contains(text.as_str()), "{}", mail.text);
        }
        for year in ["1970", "1811", "+33658"] {
            assert!(!mail.text.contains(year) && !mail.html.contains(year), "{}", mail.text);
        }
    }
    let zed = m.iter().find(|m| m.text.contains("hello, I'm Zed")).unwrap();
    assert!(!zed.text.contains("Chat started:"), "{}", zed.text);
    let out = f.run_at("2026-11-24T11:00:00Z", &[], 0);
    assert_eq!(out.stderr, "", "each reported once");
}
