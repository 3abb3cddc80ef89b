//! The Rasa source against stores written by Rasa's own code (open-source Rasa, its
//! `SQLTrackerStore`, `DialogueStateTracker` and events; `support::rasa_real`), on SQLite and on
//! PostgreSQL, through the built binary: sessions with the channel's metadata, forms completed
//! and cancelled, slots, a tracker erased and its ids handed out again, microsecond stamps.
//! The hand-written stores of `tests/rasa.rs` keep the odd rows Rasa never writes.

mod support;

use serde_json::json;
use support::rasa_real::{Rasa, Steps, at, rasa, sqlite_url};
use support::{Fixture, Mail, Output, SmtpServer, mails, pg};

const SOURCE: &str = "kind = \"rasa\"\nbot_name = \"Lead Bot\"\ncomplete_on_actions = [\"action_submit_lead\"]";

/// A fixture reading `rasa.db` in its folder, written by Rasa; `extra` goes into `[source]`.
fn on_sqlite(server: &SmtpServer, extra: &str) -> Option<(Fixture, Rasa, String)> {
    let rasa = rasa()?;
    let f = Fixture::new(server.port());
    f.use_source(&format!("{SOURCE}\nurl = \"sqlite://rasa.db\"\n{extra}"));
    let url = sqlite_url(&f.dir.path().join("rasa.db"));
    Some((f, rasa, url))
}

/// The same on a new database of the test cluster.
fn on_postgres(server: &SmtpServer, extra: &str) -> Option<(Fixture, Rasa, String)> {
    let rasa = rasa()?;
    let cluster = pg::cluster()?;
    let url = cluster.database();
    let f = Fixture::new(server.port());
    f.use_source(&format!("{SOURCE}\nurl = \"{url}\"\n{extra}"));
    Some((f, rasa, url))
}

fn subjects(m: &[Mail]) -> Vec<&str> {
    m.iter().map(|m| m.subject.as_str()).collect()
}

/// Warnings past the first run's note.
fn warnings(out: &Output) -> String {
    out.stderr_past_first_run()
}

/// Nine visitors who fill the lead form, a minute apart from 09:00 (stamps with microseconds),
/// after one who left two days before (history on a first run); then `last` does the same.
fn busy_morning(last: &str) -> Steps {
    let mut steps = Steps::new().lead_gives("old", "Olga Old", "olga@example.com", at("2026-11-22T09:00:00Z", 109_600));
    for i in 0..9 {
        let start = at(&format!("2026-11-24T09:0{i}:00Z"), 109_600 + i);
        steps =
            steps.lead_completes(&format!("v{i}"), &format!("Visitor {i}"), &format!("v{i}@example.com"), "555", start);
    }
    steps.lead_completes(last, "Zed Last", "zed@example.com", "556", at("2026-11-24T09:20:00Z", 300_001))
}

/// The first run after the busy morning: the nine and the last one completed, the one from two
/// days before recorded as history.
fn first_run(f: &Fixture, server: &SmtpServer) {
    let out = f.run_at("2026-11-24T09:40:00Z", &[], 0);
    assert_eq!(warnings(&out), "");
    let m = mails(server);
    assert_eq!(m.len(), 10, "{:#?}", subjects(&m));
    assert!(m.iter().all(|m| m.text.contains("finished the chat")), "{:#?}", subjects(&m));
    assert!(!m.iter().any(|m| m.subject.contains("Olga")), "history: {:#?}", subjects(&m));
}

/// Rasa erases a visitor's tracker and the last one's (`DELETE /conversations/<id>/tracker`),
/// then a new visitor chats and leaves midway. The next runs send that one email, and nothing else: no
/// "resumed" for the finished chats, no email for the history, no warning (an erasure is
/// routine; `-v` says what happened).
fn erased_then_one_new_chat(f: &Fixture, server: &SmtpServer, rasa: &Rasa, url: &str) -> (Vec<i64>, Vec<i64>) {
    let before = rasa.write(url, &busy_morning("zed"));
    first_run(f, server);
    let after = rasa.write(
        url,
        &Steps::new().delete("v3").delete("zed").lead_gives(
            "new",
            "Nina New",
            "nina@example.com",
            at("2026-11-24T10:00:00Z", 250_042),
        ),
    );
    let out = f.run_at("2026-11-24T10:10:00Z", &["-v"], 0);
    assert!(!out.stderr.contains(" warn: "), "{}", out.stderr);
    assert!(out.stderr.contains("were deleted"), "says what happened: {}", out.stderr);
    assert_eq!(mails(server).len(), 10, "Nina may still be typing");
    let out = f.run_at("2026-11-24T10:45:00Z", &[], 0);
    assert_eq!(out.stderr, "");
    let m = mails(server);
    assert_eq!(m.len(), 11, "{:#?}", subjects(&m[10..]));
    assert!(m[10].subject.starts_with("Lead Bot: chat with Nina New [#"), "{}", m[10].subject);
    assert!(m[10].text.contains("left the chat with Lead Bot midway"), "{}", m[10].text);
    assert!(m[10].text.contains("Visitor: nina@example.com"), "{}", m[10].text);
    let id = m[10].message_id.split('@').next().unwrap();
    assert_eq!(id.matches('.').count(), 3, "<chat.HASH.STATE.COVERED@...>, no suffix: {}", m[10].message_id);
    let out = f.run_at("2026-11-25T10:45:00Z", &[], 0);
    assert_eq!(out.stderr, "");
    assert_eq!(mails(server).len(), 11, "nothing twice");
    (before, after)
}

#[test]
fn an_erased_tracker_whose_ids_sqlite_hands_out_again_is_one_new_email_and_no_warning() {
    let server = SmtpServer::start();
    let Some((f, rasa, url)) = on_sqlite(&server, "") else { return };
    let (before, after) = erased_then_one_new_chat(&f, &server, &rasa, &url);
    // What the test is about: the erased tracker's ids were handed out again.
    let (read, erased) = (*before.last().unwrap(), after[1]);
    assert!(erased < read && after[2] <= read, "ids reused: read through {read}, then {after:?}");
}

/// The erased visitor comes back at once (the same sender id, the widget remembers it): the new
/// session begins on the very ids handed out again, so it has the erased one's name. A new
/// chat, a new thread, sent once.
#[test]
fn an_erased_visitor_who_comes_back_is_a_new_chat() {
    let server = SmtpServer::start();
    let Some((f, rasa, url)) = on_sqlite(&server, "") else { return };
    rasa.write(&url, &busy_morning("zed"));
    first_run(&f, &server);
    let zed = mails(&server).into_iter().find(|m| m.subject.contains("Zed Last")).unwrap();
    rasa.write(
        &url,
        &Steps::new().delete("zed").lead_gives("zed", "Zed Again", "zed@example.com", at("2026-11-24T10:00:00Z", 7)),
    );
    let out = f.run_at("2026-11-24T10:45:00Z", &[], 0);
    assert_eq!(out.stderr, "");
    let m = mails(&server);
    assert_eq!(m.len(), 11, "{:#?}", subjects(&m[10..]));
    assert!(m[10].subject.starts_with("Lead Bot: chat with Zed Again [#"), "{}", m[10].subject);
    // A new thread (the reference in the subject is the conversation's name, which Rasa's ids
    // gave it again).
    assert_eq!(m[10].in_reply_to, None, "{}", m[10].subject);
    assert_ne!(m[10].message_id, zed.message_id);
    assert!(m[10].text.contains("left the chat with Lead Bot midway"), "{}", m[10].text);
    f.run_at("2026-11-25T10:45:00Z", &[], 0);
    assert_eq!(mails(&server).len(), 11, "nothing twice");
}

/// The same, when the visitor back goes through the same steps before the next run: a new
/// message now sits at the very id, in the very conversation name, of the last one read of the
/// erased chat. It is the new chat's, read with the rest of it.
#[test]
fn an_erased_visitor_back_on_the_same_ids_and_steps_is_read_whole() {
    let server = SmtpServer::start();
    let Some((f, rasa, url)) = on_sqlite(&server, "") else { return };
    rasa.write(&url, &busy_morning("zed"));
    first_run(&f, &server);
    rasa.write(
        &url,
        &Steps::new().delete("zed").lead_completes(
            "zed",
            "Zed Again",
            "zed2@example.com",
            "557",
            at("2026-11-24T10:00:00Z", 7),
        ),
    );
    let out = f.run_at("2026-11-24T10:01:00Z", &[], 0);
    assert_eq!(out.stderr, "");
    let m = mails(&server);
    assert_eq!(m.len(), 11, "{:#?}", subjects(&m[10..]));
    assert!(m[10].subject.starts_with("Lead Bot: chat with Zed Again [#"), "{}", m[10].subject);
    assert!(m[10].text.contains("Zed Again finished the chat"), "{}", m[10].text);
    assert!(m[10].text.contains("Visitor: hi, I'd like a quote") && m[10].text.contains("zed2@example.com"));
    assert_eq!(m[10].in_reply_to, None);
    f.run_at("2026-11-25T10:45:00Z", &[], 0);
    assert_eq!(mails(&server).len(), 11, "nothing twice");
}

/// Erased, and nothing written since (the highest id now below the last one read): quiet;
/// the next chat, on the ids handed out again, is read once.
#[test]
fn an_erased_tracker_with_nothing_after_it_is_read_on_quietly() {
    let server = SmtpServer::start();
    let Some((f, rasa, url)) = on_sqlite(&server, "") else { return };
    let read = *rasa.write(&url, &busy_morning("zed")).last().unwrap();
    first_run(&f, &server);
    let left = rasa.write(&url, &Steps::new().delete("zed"))[0];
    assert!(left < read);
    let out = f.run_at("2026-11-24T10:00:00Z", &["-v"], 0);
    assert!(!out.stderr.contains(" warn: "), "{}", out.stderr);
    assert!(out.stderr.contains(&format!("up to id {read}, were deleted with 1 conversation")), "{}", out.stderr);
    assert_eq!(mails(&server).len(), 10);
    rasa.write(
        &url,
        &Steps::new().lead_completes("new", "Nina New", "nina@example.com", "555", at("2026-11-24T10:05:00Z", 5)),
    );
    let out = f.run_at("2026-11-24T10:06:00Z", &[], 0);
    assert_eq!(out.stderr, "");
    let m = mails(&server);
    assert_eq!(m.len(), 11, "{:#?}", subjects(&m[10..]));
    assert!(m[10].subject.starts_with("Lead Bot: chat with Nina New [#") && m[10].text.contains("finished"));
    f.run_at("2026-11-25T10:45:00Z", &[], 0);
    assert_eq!(mails(&server).len(), 11, "nothing twice");
}

#[test]
fn an_erased_tracker_on_postgres_is_one_new_email_and_no_warning() {
    let server = SmtpServer::start();
    let Some((f, rasa, url)) = on_postgres(&server, "") else { return };
    erased_then_one_new_chat(&f, &server, &rasa, &url);
}

/// A store restored from yesterday's copy (the newest rows lost, a chat that was already
/// emailed cut short) and new rows on the ids handed out again: a real reason to read it all
/// again and line the state up by time. Rasa's stamps have microseconds: what was emailed is
/// recognised as emailed, to the microsecond, and only the new chat is sent.
#[test]
fn a_store_restored_from_a_copy_is_lined_up_by_time_to_the_microsecond() {
    let server = SmtpServer::start();
    let Some((f, rasa, url)) = on_sqlite(&server, "") else { return };
    let db = f.dir.path().join("rasa.db");
    let copy = f.dir.path().join("rasa.db.copy");
    rasa.write(
        &url,
        &busy_morning("zed").lead_gives("kim", "Kim Cut", "kim@example.com", at("2026-11-24T09:25:00Z", 999)),
    );
    std::fs::copy(&db, &copy).unwrap();
    rasa.write(
        &url,
        &Steps::new().user(
            "kim",
            at("2026-11-24T09:25:40Z", 123_456),
            "555 0199",
            "inform",
            &["lead_form", "action_submit_lead", "utter_goodbye", "action_listen"],
        ),
    );
    let out = f.run_at("2026-11-24T09:40:00Z", &[], 0);
    assert_eq!(warnings(&out), "");
    assert_eq!(mails(&server).len(), 11);

    std::fs::copy(&copy, &db).unwrap();
    rasa.write(
        &url,
        &Steps::new().lead_gives("new", "Nina New", "nina@example.com", at("2026-11-24T10:00:00Z", 250_042)),
    );
    let out = f.run_at("2026-11-24T10:45:00Z", &[], 0);
    assert!(out.stderr.contains("restored from a backup") || out.stderr.contains("renumbered"), "{}", out.stderr);
    let m = mails(&server);
    assert_eq!(m.len(), 12, "{:#?}", subjects(&m[11..]));
    assert!(m[11].subject.starts_with("Lead Bot: chat with Nina New [#"), "{}", m[11].subject);
    let out = f.run_at("2026-11-25T10:45:00Z", &[], 0);
    assert_eq!(out.stderr, "");
    assert_eq!(mails(&server).len(), 12, "nothing twice");
}

/// Idleness counts from Rasa's stamp to the microsecond: a visitor whose last word came 400
/// microseconds past 09:00 is not idle for 30 minutes at 09:30:00.000.
#[test]
fn idleness_counts_from_the_microsecond_rasa_stamped() {
    let server = SmtpServer::start();
    let Some(on) = on_sqlite(&server, "") else { return };
    idleness_to_the_microsecond(&server, on);
}

/// The same in PostgreSQL's `double precision`.
#[test]
fn idleness_counts_from_the_microsecond_rasa_stamped_on_postgres() {
    let server = SmtpServer::start();
    let Some(on) = on_postgres(&server, "") else { return };
    idleness_to_the_microsecond(&server, on);
}

fn idleness_to_the_microsecond(server: &SmtpServer, (f, rasa, url): (Fixture, Rasa, String)) {
    rasa.write(
        &url,
        &Steps::new().lead_gives("ivy", "Ivy Chen", "ivy@example.com", at("2026-11-24T08:59:39Z", 700_400)),
    );
    f.run_at("2026-11-24T09:00:01Z", &[], 0);
    f.run_at("2026-11-24T09:30:00Z", &[], 0);
    assert!(mails(server).is_empty(), "29:59.9996 is not 30 minutes");
    f.run_at("2026-11-24T09:30:01Z", &[], 0);
    let m = mails(server);
    assert_eq!(m.len(), 1);
    assert!(m[0].text.contains("[2026-11-24 09:00] Visitor: ivy@example.com"), "{}", m[0].text);
}

/// Rasa's sessions: a visitor's first message starts one (`action_session_start`,
/// `session_started`, the channel's metadata in `session_started_metadata` before and after);
/// after 60 minutes without a word, the next message starts another: two conversations, two
/// threads. Rasa's own slot is not something the visitor said: no warning about it.
#[test]
fn sessions_with_the_channels_metadata_are_two_chats_and_no_warning() {
    let server = SmtpServer::start();
    let Some((f, rasa, url)) = on_sqlite(&server, "") else { return };
    let channel = json!({ "page": "https://example.com/pricing", "utm_source": "newsletter" });
    let start = at("2026-11-24T09:00:00Z", 109_600);
    rasa.write(
        &url,
        &Steps::new()
            .user_from(
                "ada",
                start,
                "hi, I'd like a quote",
                "request_quote",
                channel.clone(),
                &["lead_form", "action_listen"],
            )
            .user("ada", start + 10.0, "Ada Lovelace", "inform", &["lead_form", "action_listen"])
            .user_from("ada", start + 7_200.000_3, "me again", "greet", channel, &["utter_greet", "action_listen"]),
    );
    let out = f.run_at("2026-11-24T11:40:00Z", &[], 0);
    assert_eq!(warnings(&out), "");
    let m = mails(&server);
    assert_eq!(m.len(), 2, "{:#?}", subjects(&m));
    assert_ne!(support::identifier(&m[0].subject), support::identifier(&m[1].subject), "two threads");
    assert!(m.iter().all(|m| !m.subject.starts_with("Re: ")), "{:#?}", subjects(&m));
    let again = m.iter().find(|m| m.text.contains("Visitor: me again")).unwrap();
    assert!(!again.text.contains("Visitor: Ada Lovelace"), "{}", again.text);
    assert!(m.iter().all(|m| !m.text.contains("session_started_metadata")), "Rasa's own slot");
}

/// A form Rasa completes (`active_loop` null right after `action lead_form`) is a finished chat
/// with `complete_on_forms`; the form's slots are the visitor's fields.
#[test]
fn a_form_rasa_completes_is_a_finished_chat() {
    let server = SmtpServer::start();
    let Some(on) = on_sqlite(&server, "complete_on_forms = [\"lead_form\"]") else { return };
    a_form_completed(&server, on);
}

#[test]
fn a_form_rasa_completes_on_postgres_is_a_finished_chat() {
    let server = SmtpServer::start();
    let Some(on) = on_postgres(&server, "complete_on_forms = [\"lead_form\"]") else { return };
    a_form_completed(&server, on);
}

fn a_form_completed(server: &SmtpServer, (f, rasa, url): (Fixture, Rasa, String)) {
    rasa.write(
        &url,
        &Steps::new().lead_completes(
            "ann",
            "Ann Ames",
            "ann@example.com",
            "+1 555 0100",
            at("2026-11-24T09:00:00Z", 1),
        ),
    );
    let out = f.run_at("2026-11-24T09:01:00Z", &[], 0);
    assert_eq!(warnings(&out), "");
    let m = mails(server);
    assert_eq!(m.len(), 1);
    assert!(m[0].text.contains("Ann Ames finished the chat"), "{}", m[0].text);
    for field in ["name: Ann Ames", "email: ann@example.com", "phone: +1 555 0100"] {
        assert!(m[0].text.contains(field), "{field}: {}", m[0].text);
    }
    assert!(m[0].text.contains("Lead Bot: Thanks, we will be in touch!"), "{}", m[0].text);
    assert_eq!(m[0].reply_to.as_deref(), Some("ann@example.com"));
}

/// "stop" in the middle of the form: Rasa rejects the form (`action_execution_rejected`),
/// deactivates it (`action_deactivate_loop`, `active_loop` null). Not finished: abandoned.
#[test]
fn a_form_cancelled_with_stop_is_abandoned_not_finished() {
    let server = SmtpServer::start();
    let Some((f, rasa, url)) = on_sqlite(&server, "complete_on_forms = [\"lead_form\"]") else { return };
    rasa.write(&url, &Steps::new().lead_cancels("ivy", "Ivy Chen", at("2026-11-24T09:00:00Z", 1)));
    let out = f.run_at("2026-11-24T09:01:00Z", &[], 0);
    assert_eq!(warnings(&out), "");
    assert!(mails(&server).is_empty(), "not finished: she may still come back");
    f.run_at("2026-11-24T09:40:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 1);
    assert!(m[0].text.contains("left the chat with Lead Bot midway"), "{}", m[0].text);
    assert!(!m[0].text.contains("finished"), "{}", m[0].text);
}

/// Slots set by the channel or an action, with the channel's metadata on the event: fields of
/// the visitor like the form's.
#[test]
fn slots_with_the_channels_metadata_are_the_visitors_fields() {
    let server = SmtpServer::start();
    let Some(on) = on_sqlite(&server, "") else { return };
    slots_with_metadata(&server, on);
}

#[test]
fn slots_with_the_channels_metadata_on_postgres_are_the_visitors_fields() {
    let server = SmtpServer::start();
    let Some(on) = on_postgres(&server, "") else { return };
    slots_with_metadata(&server, on);
}

fn slots_with_metadata(server: &SmtpServer, (f, rasa, url): (Fixture, Rasa, String)) {
    let start = at("2026-11-24T09:00:00Z", 500_000);
    rasa.write(
        &url,
        &Steps::new()
            .user("sam", start, "hi, I'd like a quote", "request_quote", &["lead_form", "action_listen"])
            .slots("sam", start + 1.0, json!({ "plan": "pro" }), json!({ "channel": "web", "ip": "203.0.113.9" }))
            .user("sam", start + 10.000_7, "Sam Lee", "inform", &["lead_form", "action_listen"])
            .user("sam", start + 20.3, "sam@example.com", "inform", &["lead_form", "action_listen"]),
    );
    let out = f.run_at("2026-11-24T09:40:00Z", &[], 0);
    assert_eq!(warnings(&out), "");
    let m = mails(server);
    assert_eq!(m.len(), 1);
    assert!(m[0].text.contains("plan: pro") && m[0].text.contains("email: sam@example.com"), "{}", m[0].text);
    assert!(!m[0].text.contains("203.0.113.9"), "event metadata is not a field: {}", m[0].text);
}

/// A custom `action_session_start` (the assistant's own, on its action server) writes no
/// `session_started`: Rasa's store still splits sessions at `action_session_start`. Two
/// sessions two hours apart are two chats, two threads.
#[test]
fn sessions_begun_by_a_custom_session_start_are_two_chats() {
    let server = SmtpServer::start();
    let Some((f, rasa, url)) = on_sqlite(&server, "") else { return };
    let start = at("2026-11-24T09:00:00Z", 42);
    rasa.write(
        &url,
        &Steps::new()
            .user_custom_start("bea", start, "hi, I'd like a quote", "request_quote", &["lead_form", "action_listen"])
            .user("bea", start + 10.0, "Bea Blue", "inform", &["lead_form", "action_listen"])
            .user_custom_start(
                "bea",
                start + 7_200.5,
                "what are your prices?",
                "ask_prices",
                &["utter_prices", "action_listen"],
            ),
    );
    let out = f.run_at("2026-11-24T11:40:00Z", &[], 0);
    assert_eq!(warnings(&out), "");
    let m = mails(&server);
    assert_eq!(m.len(), 2, "{:#?}", subjects(&m));
    assert!(m.iter().all(|m| !m.subject.starts_with("Re: ") && m.in_reply_to.is_none()), "{:#?}", subjects(&m));
    let prices = m.iter().find(|m| m.text.contains("Visitor: what are your prices?")).unwrap();
    assert!(!prices.text.contains("Visitor: Bea Blue"), "{}", prices.text);
}

/// The report on a form bot: each question is a bot line written after `action lead_form` (the
/// response's name only in the event's metadata), each answer fills a slot. A step is named by
/// what the form asked, not all `lead_form`; the answers that filled a slot are not questions
/// the visitors asked.
#[test]
fn the_report_on_a_form_bot_names_each_step_by_what_the_form_asked() {
    let server = SmtpServer::start();
    let Some((f, rasa, url)) = on_sqlite(&server, "") else { return };
    let t = |minute: u32| at(&format!("2026-11-24T09:{minute:02}:00Z"), 123);
    let steps = Steps::new()
        .user("a", t(0), "hi, I'd like a quote", "request_quote", &["lead_form", "action_listen"])
        .user("b", t(1), "hi, I'd like a quote", "request_quote", &["lead_form", "action_listen"])
        .user("b", t(2), "Bob Brown", "inform", &["lead_form", "action_listen"])
        .lead_gives("c", "Cy Cyan", "cy@example.com", t(3))
        .lead_completes("d", "Di Dunn", "di@example.com", "555 0100", t(4));
    rasa.write(&url, &steps);
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    let cy = mails(&server).into_iter().find(|m| m.subject.contains("Cy Cyan")).unwrap();
    let step = cy.text.split("at step ").nth(1).and_then(|s| s.split(" (").next()).unwrap_or_default();
    assert!(step != "lead_form" && step.contains("phone"), "{}", cy.text);
    let report = f.run(&["report", "--format", "json", "--now", "2026-11-24T10:00:00Z"]);
    assert_eq!(report.code, 0, "{}", report.stderr);
    let json: serde_json::Value = serde_json::from_str(&report.stdout).unwrap();
    let bot = &json["bots"][0];
    let steps: Vec<(&str, &str, u64)> = bot["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["step"].as_str().unwrap(), s["question"].as_str().unwrap(), s["stopped"].as_u64().unwrap()))
        .collect();
    let questions: Vec<(&str, u64)> = steps.iter().map(|(_, q, n)| (*q, *n)).collect();
    assert_eq!(
        questions,
        [("What's your name?", 1), ("Your email?", 1), ("And your phone?", 1), ("Thanks, we will be in touch!", 0)],
        "{steps:#?}"
    );
    assert!(steps.iter().all(|(s, _, _)| *s != "lead_form"), "{steps:#?}");
    let asked = bot["asks"].to_string();
    for answer in ["Bob Brown", "Cy Cyan", "cy@example.com", "Di Dunn", "555 0100"] {
        assert!(!asked.contains(answer), "{answer} filled a slot: {asked}");
    }
}

/// Chat widgets send Rasa's built-in `/session_start` on a page load: Rasa logs it as a user
/// message, then starts a session. It is no line of the visitor's: no "resumed" email for a
/// finished chat, and a session begun by it is a chat only once the visitor writes.
#[test]
fn a_page_load_that_starts_a_session_is_not_the_visitor_writing() {
    let server = SmtpServer::start();
    let Some((f, rasa, url)) = on_sqlite(&server, "") else { return };
    let start = at("2026-11-24T09:00:00Z", 109_600);
    let reload = ["action_session_start", "action_listen"];
    rasa.write(&url, &Steps::new().lead_completes("sue", "Sue Park", "sue@example.com", "+1 555 0100", start));
    f.run_at("2026-11-24T09:05:00Z", &[], 0);
    rasa.write(
        &url,
        &Steps::new()
            .user("sue", start + 600.0, "/session_start", "session_start", &reload)
            .user("sue", start + 660.0, "hi", "greet", &["utter_greet", "action_listen"])
            // A first visit that only loaded the page.
            .user("fay", start + 5.0, "/session_start", "session_start", &reload),
    );
    let out = f.run_at("2026-11-24T10:00:00Z", &[], 0);
    assert_eq!(warnings(&out), "");
    let m = mails(&server);
    assert_eq!(m.len(), 2, "Sue's finished chat, and her chat after the reload: {:#?}", subjects(&m));
    assert!(
        m.iter().all(|m| !m.text.contains("/session_start")),
        "{:#?}",
        m.iter().map(|m| &m.text).collect::<Vec<_>>()
    );
    assert!(m.iter().all(|m| !m.subject.starts_with("Re: ")), "no resumed reply: {:#?}", subjects(&m));
    let hi = m.iter().find(|m| m.text.lines().any(|l| l.ends_with("Visitor: hi"))).expect("the chat after the reload");
    assert_eq!(hi.header("X-Chat-State").as_deref(), Some("abandoned"));
}

/// A reminder or an external event (`trigger_intent`) is Rasa's own message, invisible to the
/// visitor (`EXTERNAL: <intent>`, `is_external`): the bot speaking after it is no visitor back,
/// and a session it starts has no visitor in it.
#[test]
fn a_reminder_is_not_the_visitor_coming_back() {
    let server = SmtpServer::start();
    let Some((f, rasa, url)) = on_sqlite(&server, "") else { return };
    let start = at("2026-11-24T09:00:00Z", 109_600);
    let remind = ["utter_reminder", "action_listen"];
    rasa.write(&url, &Steps::new().lead_completes("xena", "Xena Wu", "xena@example.com", "+1 555 0101", start));
    f.run_at("2026-11-24T09:05:00Z", &[], 0);
    rasa.write(
        &url,
        &Steps::new()
            .external("xena", start + 2_400.0, "EXTERNAL_reminder", &remind)
            // Hours later: Rasa starts a session for the reminder itself.
            .external("xena", start + 10_800.0, "EXTERNAL_reminder", &remind),
    );
    let out = f.run_at("2026-11-24T14:00:00Z", &[], 0);
    assert_eq!(warnings(&out), "");
    let m = mails(&server);
    assert_eq!(m.len(), 1, "the finished chat only: {:#?}", subjects(&m));
    assert_eq!(m[0].header("X-Chat-State").as_deref(), Some("completed"));
    let report = f.run(&["report", "--format", "json", "--now", "2026-11-24T14:00:00Z"]);
    assert!(!report.stdout.contains("EXTERNAL"), "not something a visitor asked: {}", report.stdout);
}
