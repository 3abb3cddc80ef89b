//! Dify as a source, through the built binary: a PostgreSQL database made with Dify's table
//! definitions (`tests/fixtures/dify`), rows written as Dify's API writes them
//! (`support::dify`), emails received by a real SMTP server. Each run has a fixed "now".

mod support;

use chat_notifier::source::dify as source;
use support::dify::{self as dy, Ask, CHAT_APP, FLOW_APP};
use support::{Mail, SmtpServer, assert_each_once, mails, pg};

const JANE: &str = "c0000000-0000-4000-8000-000000000001";
const BOB: &str = "c0000000-0000-4000-8000-000000000002";
const EVE: &str = "c0000000-0000-4000-8000-000000000003";
const JANE_USER: &str = "e0000000-0000-4000-8000-000000000001";
const BOB_USER: &str = "e0000000-0000-4000-8000-000000000002";
const EVE_USER: &str = "e0000000-0000-4000-8000-000000000003";

/// A Dify database (a new one on the test cluster) and a fixture reading it; `extra` goes into
/// the `[source]` table. None where no PostgreSQL server runs.
fn fixture(port: u16, extra: &str) -> Option<(support::Fixture, dy::DifyDb, String)> {
    let cluster = pg::cluster()?;
    let url = cluster.database();
    let db = dy::DifyDb::create(cluster.client(&url));
    let f = support::Fixture::new(port);
    f.use_source(&format!("kind = \"dify\"\nurl = \"{url}\"\n{extra}"));
    Some((f, db, url))
}

fn msg(n: u32) -> String {
    format!("d0000000-0000-4000-8000-{n:012}")
}

fn mail_about<'a>(mails: &'a [Mail], needle: &str) -> &'a Mail {
    mails.iter().find(|m| m.text.contains(needle)).unwrap_or_else(|| panic!("no mail with {needle}"))
}

/// The web app's chats: Jane's with her start form (work_email mapped to email), an answer being
/// written at one run and filled at the next (read as activity then: the chat is quiet only
/// 30 minutes after the answer), Bob's whose answer never came (said as a note), Eve's whose
/// reply failed (a note with Dify's error, escaped); each one email, one thread.
#[test]
fn an_answer_being_written_waits_and_one_that_never_came_or_failed_is_said_as_a_note() {
    let server = SmtpServer::start();
    let Some((f, mut db, _)) = fixture(server.port(), "fields = { email = \"work_email\" }") else { return };
    db.end_user(JANE_USER, CHAT_APP, "sess-jane", None);
    db.end_user(BOB_USER, CHAT_APP, "sess-bob", None);
    db.end_user(EVE_USER, CHAT_APP, "sess-eve", None);
    let inputs = r#"{"work_email": "jane@example.com", "company": "Acme \u00c9tudes", "budget": null, "brief": {"dify_model_identity": "__dify__file__", "type": "document"}}"#;
    db.ask(&Ask { inputs, ..Ask::web(&msg(1), JANE, JANE_USER, "2026-12-07 09:00:00", "How much is the Pro plan?") });
    db.answer(&msg(1), "2026-12-07 09:00:04", "| Plan | Price |\n|---|---|\n| **Pro** | $29/mo |");
    db.rename(JANE, "2026-12-07 09:00:06", "Pro plan pricing");
    db.ask(&Ask::web(&msg(2), JANE, JANE_USER, "2026-12-07 09:01:00", "Is there a yearly discount?"));
    let out = f.run_at("2026-12-07T09:05:00Z", &[], 0);
    assert_eq!((out.stderr.as_str(), server.received().len()), ("", 0), "active: nothing yet");

    // The reply ends: `_save_message` writes the answer at 09:06.
    db.answer(&msg(2), "2026-12-07 09:06:00", "Yes: 20% off when you pay yearly.");
    db.ask(&Ask::web(&msg(3), BOB, BOB_USER, "2026-12-07 09:10:00", "Are you there?"));
    db.ask(&Ask::web(&msg(4), EVE, EVE_USER, "2026-12-07 09:12:00", "<img src=x onerror=alert(1)> help"));
    db.fail(&msg(4), "2026-12-07 09:12:03", "[openai] Error code: 429 <script>alert(2)</script>");
    let out = f.run_at("2026-12-07T09:35:00Z", &[], 0);
    assert_eq!(server.received().len(), 0, "quiet since the answer at 09:06, not the question: {}", out.stderr);
    f.run_at("2026-12-07T09:37:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 1, "Jane's chat, once quiet");
    let jane = &m[0];
    assert!(jane.subject.starts_with("Support Bot: "), "{}", jane.subject);
    assert_eq!(jane.reply_to.as_deref(), Some("jane@example.com"), "the start form's work_email");
    assert_eq!(jane.header("X-Chat-State").as_deref(), Some("ended"));
    assert_eq!(jane.header("X-Chat-Bot").as_deref(), Some(CHAT_APP));
    for said in [
        "email: jane@example.com",
        "company: Acme Études",
        "Visitor: How much is the Pro plan?",
        "| **Pro** | $29/mo |",
        "Visitor: Is there a yearly discount?",
        "Support Bot: Yes: 20% off when you pay yearly.",
    ] {
        assert!(jane.text.contains(said), "{said:?} in\n{}", jane.text);
    }
    assert!(jane.html.contains("<strong>Pro</strong>"), "markdown rendered: {}", jane.html);
    assert!(!jane.text.contains("budget") && !jane.text.contains("brief:"), "unset and file inputs: {}", jane.text);

    let out = f.run_at("2026-12-07T09:45:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 3, "Bob's and Eve's: {}", out.stderr);
    let bob = mail_about(&m, "Are you there?");
    assert!(bob.text.contains(&format!("Note: {}", source::NO_REPLY)), "{}", bob.text);
    assert!(!bob.text.contains("Support Bot: No reply"), "never as the bot's words: {}", bob.text);
    let eve = mail_about(&m, "help");
    assert!(eve.text.contains("Note: The bot's reply failed: [openai] Error code: 429"), "{}", eve.text);
    assert!(!eve.text.contains("Support Bot:"), "{}", eve.text);
    assert!(!eve.html.contains("<script>") && !eve.html.contains("<img src=x"), "escaped: {}", eve.html);
    assert!(eve.html.contains("&lt;img src=x onerror=alert(1)&gt; help"), "{}", eve.html);
    let ids: std::collections::HashSet<&str> = m.iter().map(|m| support::identifier(&m.subject)).collect();
    assert_eq!(ids.len(), 3, "one thread per chat");
    let out = f.run_at("2026-12-07T11:00:00Z", &[], 0);
    assert_eq!((out.stderr.as_str(), server.received().len()), ("", 3), "nothing more, quietly");
}

/// A conversation renamed after its email (its `updated_at` moves, no message) sends nothing; one
/// soft-deleted (Dify up to 1.7) or deleted outright (since 1.8: the row at once, its messages
/// later) before its email is due sends nothing, quietly, and blocks no other chat.
#[test]
fn renamed_and_deleted_conversations_send_nothing_and_block_nothing() {
    let server = SmtpServer::start();
    let Some((f, mut db, _)) = fixture(server.port(), "") else { return };
    for (i, (chat, user)) in [(JANE, JANE_USER), (BOB, BOB_USER), (EVE, EVE_USER)].into_iter().enumerate() {
        db.end_user(user, CHAT_APP, &format!("sess-{i}"), None);
        let n = i as u32 * 10;
        db.ask(&Ask::web(&msg(n + 1), chat, user, "2026-12-07 09:00:00", &format!("Question {i}")));
        db.answer(&msg(n + 1), "2026-12-07 09:00:03", &format!("Answer {i}"));
    }
    f.run_at("2026-12-07T09:05:00Z", &[], 0);
    db.soft_delete(BOB);
    db.hard_delete(EVE);
    let out = f.run_at("2026-12-07T09:31:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 1, "Jane's only: {}", out.stderr);
    assert!(m[0].text.contains("Question 0"), "{}", m[0].text);
    assert_eq!(out.stderr, "", "deleted chats are passed over quietly");
    db.rename(JANE, "2026-12-07 09:40:00", "A new title");
    db.delete_messages(EVE);
    // A new chat after the deletions is read as ever.
    const NEW: &str = "c0000000-0000-4000-8000-000000000004";
    db.ask(&Ask::web(&msg(40), NEW, EVE_USER, "2026-12-07 09:41:00", "Eve's new chat"));
    db.answer(&msg(40), "2026-12-07 09:41:02", "Hello again");
    let out = f.run_at("2026-12-07T10:30:00Z", &[], 0);
    assert_eq!(out.stderr, "");
    let m = mails(&server);
    assert_eq!(m.len(), 2, "renamed: no email; Eve's new chat: one");
    assert!(m[1].text.contains("Eve's new chat"), "{}", m[1].text);
    let out = f.run_at("2026-12-07T12:00:00Z", &[], 0);
    assert_eq!((out.stderr.as_str(), server.received().len()), ("", 2));
}

/// Only the web app's and the API's chats by default; the debugger's when listed; an unknown
/// value, a SQLite path and a late-write window not shorter than `abandon_after` are refused in
/// one line naming the key.
#[test]
fn invoke_from_chooses_the_chats_read_and_bad_keys_are_refused_naming_them() {
    let server = SmtpServer::start();
    let Some((f, mut db, url)) = fixture(server.port(), "") else { return };
    db.end_user(JANE_USER, CHAT_APP, "sess-jane", Some("crm-42"));
    db.ask(&Ask {
        invoke_from: "service-api",
        ..Ask::web(&msg(1), JANE, JANE_USER, "2026-12-07 09:00:00", "From the API")
    });
    db.answer(&msg(1), "2026-12-07 09:00:02", "ok");
    const ACCOUNT: &str = "acc00000-0000-4000-8000-000000000001";
    db.ask(&Ask { invoke_from: "debugger", ..Ask::web(&msg(2), BOB, ACCOUNT, "2026-12-07 09:00:00", "Builder test") });
    db.answer(&msg(2), "2026-12-07 09:00:02", "ok");
    f.run_at("2026-12-07T09:40:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 1);
    assert!(m[0].text.contains("From the API"), "{}", m[0].text);
    let visitors = f.state_rows(&format!("SELECT visitor_id FROM conversations WHERE id = '{JANE}'"));
    assert_eq!(visitors, [[r#"Text("crm-42")"#]], "the embedding site's user id is the person");

    f.use_source(&format!(
        "kind = \"dify\"\nurl = \"{url}\"\ninvoke_from = [\"web-app\", \"service-api\", \"debugger\"]"
    ));
    db.ask(&Ask { invoke_from: "debugger", ..Ask::web(&msg(3), BOB, ACCOUNT, "2026-12-07 09:50:00", "Builder again") });
    db.answer(&msg(3), "2026-12-07 09:50:02", "ok");
    f.run_at("2026-12-07T10:30:00Z", &[], 0);
    assert!(mails(&server).iter().any(|m| m.text.contains("Builder again")), "listed: read");

    for (table, key) in [
        (
            format!("kind = \"dify\"\nurl = \"{url}\"\ninvoke_from = [\"web\"]"),
            "source.invoke_from: \"web\" is not a Dify invoke_from",
        ),
        ("kind = \"dify\"\nurl = \"dify.db\"".to_owned(), "source.url: Dify keeps its chats in PostgreSQL"),
        (
            format!("kind = \"dify\"\nurl = \"{url}\"\nlate_writes = \"30m\""),
            "source.late_writes: 30m is not shorter than abandon_after (30m)",
        ),
        (
            format!("kind = \"dify\"\nurl = \"{url}\"\nchat_types = [\"EXTERNAL\"]"),
            "source.chat_types: does not apply to kind = \"dify\"",
        ),
    ] {
        f.use_source(&table);
        let out = f.run(&["check"]);
        assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
        let said: Vec<&str> = out.stdout.lines().chain(out.stderr.lines()).filter(|l| l.contains(key)).collect();
        assert_eq!(said.len(), 1, "{key} once in {}{}", out.stdout, out.stderr);
    }
}

/// A chatflow app's message, its start form's name given with Dify's `\uXXXX` escapes.
fn flow<'a>(message: &'a str, chat: &'a str, user: &'a str, at: &'a str, query: &'a str) -> Ask<'a> {
    Ask { app: FLOW_APP, inputs: r#"{"name": "J\u00e9r\u00f4me"}"#, ..Ask::web(message, chat, user, at, query) }
}

/// A chatflow's conversation variables give fields (the latest written wins, over the start
/// form's); a list is named once and left out; a variable that is not JSON is named once and
/// its chat still goes, as does the good chat beside it; across devices, the email given is the
/// person.
#[test]
fn a_chatflow_s_variables_give_fields_and_a_bad_row_is_named_once_beside_a_good_chat() {
    let server = SmtpServer::start();
    let Some((f, mut db, _)) = fixture(server.port(), "") else { return };
    db.end_user(JANE_USER, FLOW_APP, "sess-phone", None);
    db.end_user(BOB_USER, FLOW_APP, "sess-laptop", None);
    let (m1, m2) = (msg(1), msg(2));
    db.ask(&flow(&m1, JANE, JANE_USER, "2026-12-07 09:00:00", "I want a demo"));
    db.variable("f0000000-0000-4000-8000-000000000001", JANE, FLOW_APP, "2026-12-07 09:00:02",
        r#"{"id":"x","name":"email","value_type":"string","value":"old@example.com","selector":["conversation","email"]}"#);
    db.variable(
        "f0000000-0000-4000-8000-000000000002",
        JANE,
        FLOW_APP,
        "2026-12-07 09:00:02",
        r#"{"id":"y","name":"topics","value_type":"array[string]","value":["a","b"]}"#,
    );
    db.variable("f0000000-0000-4000-8000-000000000001", JANE, FLOW_APP, "2026-12-07 09:00:05",
        r#"{"id":"x","name":"email","value_type":"string","value":"Jerome@Example.com","selector":["conversation","email"]}"#);
    db.answer(&m1, "2026-12-07 09:00:06", "Booked for Monday.");
    let out = f.run_at("2026-12-07T09:40:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 1, "{}", out.stderr);
    let first = &m[0];
    assert!(first.subject.contains("Jérôme"), "the \\u escapes decoded: {}", first.subject);
    assert_eq!(first.reply_to.as_deref(), Some("Jerome@Example.com"), "the latest value: {}", first.text);
    assert!(!first.text.contains("old@example.com") && !first.text.contains("topics"), "{}", first.text);
    let stderr = out.stderr_past_first_run();
    let named: Vec<&str> = stderr.lines().collect();
    assert_eq!(named.len(), 1, "once: {stderr}");
    assert!(
        named[0].contains(FLOW_APP)
            && named[0].contains(JANE)
            && named[0].contains("conversation variable \"topics\" holds a list"),
        "{}",
        named[0]
    );

    // From another device: a bad variable beside a good one, and a good chat beside it.
    db.ask(&flow(&m2, BOB, BOB_USER, "2026-12-07 10:00:00", "Me again, from my laptop"));
    db.variable("f0000000-0000-4000-8000-000000000003", BOB, FLOW_APP, "2026-12-07 10:00:01", "{not json");
    db.variable(
        "f0000000-0000-4000-8000-000000000004",
        BOB,
        FLOW_APP,
        "2026-12-07 10:00:02",
        r#"{"id":"z","name":"email","value_type":"string","value":"jerome@example.com"}"#,
    );
    db.answer(&m2, "2026-12-07 10:00:04", "Welcome back.");
    db.end_user(EVE_USER, FLOW_APP, "sess-eve", None);
    db.ask(&flow(&msg(3), EVE, EVE_USER, "2026-12-07 10:00:00", "Eve here"));
    db.answer(&msg(3), "2026-12-07 10:00:03", "Hi Eve");
    let out = f.run_at("2026-12-07T10:40:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 3, "{}", out.stderr);
    let second = mail_about(&m, "from my laptop");
    assert!(second.text.contains(support::identifier(&first.subject)), "the same person: {}", second.text);
    assert!(mail_about(&m, "Eve here").text.contains("Hi Eve"));
    let named: Vec<&str> = out.stderr.lines().filter(|l| l.contains("data is not JSON")).collect();
    assert_eq!(named.len(), 1, "once a run: {}", out.stderr);
    assert!(
        named[0].contains(BOB) && named[0].contains("f0000000-0000-4000-8000-000000000003"),
        "the conversation and the variable named: {}",
        named[0]
    );
    assert!(out.stderr.lines().all(|l| l.contains(FLOW_APP)), "{}", out.stderr);
}

/// check names the database and what it found, and the index a run needs where Dify's schema
/// lacks it; every command works; no query a run makes scans a table; a phrase of
/// `complete_on_phrases` in an answer finishes the chat.
#[test]
fn every_command_works_and_no_query_scans_a_table() {
    let server = SmtpServer::start();
    let source = "fields = { email = \"work_email\" }\ncomplete_on_phrases = [\"you're WELCOME\"]";
    let Some((f, mut db, _)) = fixture(server.port(), source) else { return };
    db.end_user(JANE_USER, CHAT_APP, "sess-jane", None);
    db.ask(&Ask {
        inputs: r#"{"work_email":"jane@example.com"}"#,
        ..Ask::web(&msg(1), JANE, JANE_USER, "2026-12-07 09:00:00", "Price?")
    });
    db.answer(&msg(1), "2026-12-07 09:00:02", "$29");
    db.ask(&Ask::web(&msg(2), JANE, JANE_USER, "2026-12-07 09:01:00", "Thanks"));
    db.answer(&msg(2), "2026-12-07 09:01:02", "You're welcome");
    db.end_user(BOB_USER, CHAT_APP, "sess-bob", None);
    db.ask(&Ask {
        inputs: r#"{"work_email":"bob@example.com"}"#,
        ..Ask::web(&msg(3), BOB, BOB_USER, "2026-12-07 09:02:00", "Do you ship to Brazil?")
    });
    db.answer(&msg(3), "2026-12-07 09:02:02", "We do.");
    let check = f.run(&["check"]);
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
    assert!(check.stdout.contains("(Dify): 2 app(s), 2 conversations, 3 messages"), "{}", check.stdout);
    assert!(!check.stdout.contains("CREATE INDEX"), "Dify's schema has them: {}", check.stdout);
    for (sql, params) in source::queries() {
        let plan = pg::plan(&mut db.client, &sql, &params);
        assert!(!plan.contains("Seq Scan"), "{sql}\n{plan}");
    }
    db.client.batch_execute("DROP INDEX message_created_at_idx; DROP INDEX message_app_id_idx").unwrap();
    let check = f.run(&["check"]);
    assert!(check.stdout.contains(source::INDEXES[0].2), "{}", check.stdout);
    db.client.batch_execute(source::INDEXES[0].2).unwrap();

    let now = ["--now", "2026-12-07T09:40:00Z"];
    let preview = f.run(&[&["preview", JANE][..], &now].concat());
    assert_eq!(preview.code, 0, "{}", preview.stderr);
    assert!(preview.stdout.contains("You're welcome"), "{}", preview.stdout);
    f.run_at(now[1], &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 2);
    let jane = mail_about(&m, "Price?");
    assert_eq!(jane.header("X-Chat-State").as_deref(), Some("completed"), "the phrase, in any case");
    assert_eq!(mail_about(&m, "Brazil").header("X-Chat-State").as_deref(), Some("ended"));
    let status = f.run(&[&["status", "--all"][..], &now].concat());
    assert!(status.code == 0 && status.stdout.contains("Support Bot"), "{}{}", status.stdout, status.stderr);
    let report = f.run(&[&["report", "--format", "json"][..], &now].concat());
    assert_eq!(report.code, 0, "{}", report.stderr);
    for step in ["message 1", "message 2", "Price?"] {
        assert!(report.stdout.contains(step), "{step} in {}", report.stdout);
    }
    let leads = f.run(&[&["leads", "--format", "csv"][..], &now].concat());
    assert_eq!(leads.code, 0, "{}", leads.stderr);
    assert!(leads.stdout.contains("bob@example.com"), "{}", leads.stdout);
    assert!(!leads.stdout.contains("jane@example.com"), "completed: no lead to follow up: {}", leads.stdout);
}

/// Runs while a writer adds exchanges as Dify does (the row, then its answer; rows committed out
/// of their `created_at` order): each chat is emailed exactly once, none lost.
#[test]
fn a_run_while_a_writer_adds_exchanges_sends_each_chat_once() {
    let server = SmtpServer::start();
    let Some((f, db, url)) = fixture(server.port(), "") else { return };
    drop(db);
    const CHATS: u32 = 24;
    let writer = std::thread::spawn(move || {
        let mut db = dy::DifyDb { client: pg::cluster().unwrap().client(&url) };
        for i in 0..CHATS {
            let chat = format!("c1000000-0000-4000-8000-{i:012}");
            let user = format!("e1000000-0000-4000-8000-{i:012}");
            db.end_user(&user, CHAT_APP, &format!("sess-{i}"), None);
            // Stamped in an order other than the one committed in, within a minute.
            let second = (i * 7) % 60;
            for turn in 0..2u32 {
                let id = msg(1000 + i * 2 + turn);
                let at = format!("2026-12-07 09:{:02}:{second:02}", 2 + turn);
                db.ask(&Ask::web(&id, &chat, &user, &at, &format!("chat {i} turn {turn}")));
                db.answer(&id, &format!("2026-12-07 09:{:02}:{:02}", 2 + turn, (second + 1) % 60), "ok");
            }
        }
    });
    let mut runs = 0;
    while !writer.is_finished() || runs == 0 {
        f.run_at("2026-12-07T09:05:00Z", &[], 0);
        runs += 1;
    }
    writer.join().unwrap();
    f.run_at("2026-12-07T09:05:00Z", &[], 0);
    f.run_at("2026-12-07T09:45:00Z", &[], 0);
    assert_each_once(&server, CHATS as usize, 0, "dify writer");
    let m = mails(&server);
    for i in 0..CHATS {
        let mail = mail_about(&m, &format!("chat {i} turn 0"));
        assert!(mail.text.contains(&format!("chat {i} turn 1")), "both turns: {}", mail.text);
    }
    f.run_at("2026-12-07T11:00:00Z", &[], 0);
    assert_eq!(server.received().len(), CHATS as usize, "nothing twice");
}

/// A row stamped far ahead of the clock (a host's clock set wrong) or before 1970 is named by
/// `check`, waits (or is never read), and delays no other chat.
#[test]
fn rows_dated_far_ahead_or_before_1970_are_named_by_check_and_block_nothing() {
    let server = SmtpServer::start();
    let Some((f, mut db, _)) = fixture(server.port(), "") else { return };
    for (n, (chat, user, at, query)) in [
        (JANE, JANE_USER, "2026-12-07 09:00:00", "On time"),
        (BOB, BOB_USER, "2099-06-01 09:00:00", "From the future"),
        (EVE, EVE_USER, "1969-12-31 23:00:00", "From the past"),
    ]
    .into_iter()
    .enumerate()
    {
        db.end_user(user, CHAT_APP, user, None);
        let id = msg(n as u32 + 1);
        db.ask(&Ask::web(&id, chat, user, at, query));
        db.answer(&id, at, "ok");
    }
    let check = f.run(&["check"]);
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
    assert!(
        check.stderr.contains("1 messages row(s) are stamped more than a day ahead of the clock"),
        "{}",
        check.stderr
    );
    assert!(check.stderr.contains("1 messages row(s) have a created_at before 1970, never read"), "{}", check.stderr);
    let out = f.run_at("2026-12-07T09:40:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 1, "{}", out.stderr);
    assert!(m[0].text.contains("On time"), "{}", m[0].text);
    let out = f.run_at("2026-12-07T11:00:00Z", &[], 0);
    assert_eq!((out.stderr.as_str(), server.received().len()), ("", 1), "quiet, nothing twice");
}

/// A chatflow paused at a human input step (`status = 'paused'`, a partial answer) is a reply
/// still being written: never emailed as the bot's words (a note says it is paused); the row
/// rewritten with the final answer (`status` normal, a new `updated_at`) is read again, as new
/// activity: Jane's final answer finishes her chat, Bob's still paused one is said as a note.
#[test]
fn a_paused_answer_rewritten_later_is_read_again_and_never_shown_as_final() {
    let server = SmtpServer::start();
    let Some((f, mut db, _)) = fixture(server.port(), "complete_on_phrases = [\"refund approved\"]") else { return };
    db.end_user(JANE_USER, FLOW_APP, "sess-jane", None);
    db.end_user(BOB_USER, FLOW_APP, "sess-bob", None);
    db.ask(&flow(&msg(1), JANE, JANE_USER, "2026-12-07 09:00:00", "Refund please"));
    db.pause(&msg(1), "2026-12-07 09:00:04", "Your request needs approval by our team.");
    db.ask(&flow(&msg(2), BOB, BOB_USER, "2026-12-07 09:00:00", "Refund me too"));
    db.pause(&msg(2), "2026-12-07 09:00:04", "Bob's request needs approval by our team.");
    let out = f.run_at("2026-12-07T09:05:00Z", &[], 0);
    assert_eq!(server.received().len(), 0, "{}", out.stderr);
    db.answer(&msg(1), "2026-12-07 09:07:00", "Refund approved: the money is on its way.");
    let out = f.run_at("2026-12-07T09:40:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 2, "{}", out.stderr);
    let jane = mail_about(&m, "Refund please");
    assert_eq!(jane.header("X-Chat-State").as_deref(), Some("completed"), "the rewritten answer read: {}", jane.text);
    assert!(jane.text.contains("Lead Flow: Refund approved"), "{}", jane.text);
    let bob = mail_about(&m, "Refund me too");
    assert!(bob.text.contains(&format!("Note: {}", source::PAUSED_REPLY)), "{}", bob.text);
    assert!(!bob.text.contains("Lead Flow: Bob's request"), "never as the bot's words: {}", bob.text);
    let out = f.run_at("2026-12-07T11:00:00Z", &[], 0);
    assert_eq!((out.stderr.as_str(), server.received().len()), ("", 2), "nothing twice");
}

/// A read-only role and the URL it connects with: SELECT on Dify's tables but `lacking`.
fn role_lacking(db: &mut dy::DifyDb, url: &str, lacking: &str) -> String {
    let database = url.rsplit('/').next().and_then(|d| d.split('?').next()).unwrap();
    let role = format!("ro_{database}_{}", lacking.len());
    let tables = ["apps", "conversations", "messages", "end_users", "workflow_conversation_variables"];
    let grants: Vec<&str> = tables.into_iter().filter(|t| *t != lacking).collect();
    db.client
        .batch_execute(&format!("CREATE ROLE {role} LOGIN; GRANT SELECT ON {} TO {role};", grants.join(", ")))
        .unwrap();
    url.replace("postgres@", &format!("{role}@"))
}

/// `check` tries every table a run reads: a role lacking SELECT on `end_users` or
/// `workflow_conversation_variables` fails check in one line naming the table and the URL, not
/// only every run after it.
#[test]
fn check_names_a_table_the_role_cannot_read() {
    let server = SmtpServer::start();
    let Some((f, mut db, url)) = fixture(server.port(), "") else { return };
    for table in ["end_users", "workflow_conversation_variables"] {
        let ro = role_lacking(&mut db, &url, table);
        f.use_source(&format!("kind = \"dify\"\nurl = \"{ro}\""));
        let check = f.run(&["check"]);
        assert_eq!(check.code, 1, "{}{}", check.stdout, check.stderr);
        let all = format!("{}{}", check.stdout, check.stderr);
        let said: Vec<&str> = all.lines().filter(|l| l.contains(&format!("reading table {table}"))).collect();
        assert_eq!(said.len(), 1, "{all}");
        assert!(said[0].contains("127.0.0.1") && said[0].contains("permission denied"), "{}", said[0]);
    }
}

/// One start form value Dify stored but JSON cannot read (a lone surrogate escape, as Python's
/// json.dumps writes and PostgreSQL's json type keeps; nesting past the parser's depth) leaves
/// out that variable only, in one line: the name, the email (Reply-To) and the rest are read,
/// and the subject never takes the name of the end user's earlier chat.
#[test]
fn an_unreadable_start_form_value_leaves_out_only_that_variable() {
    let server = SmtpServer::start();
    let Some((f, mut db, _)) = fixture(server.port(), "fields = { email = \"work_email\" }") else { return };
    db.end_user(JANE_USER, CHAT_APP, "sess-jane", None);
    let first = r#"{"name": "Jane Roe", "work_email": "jane@example.com"}"#;
    db.ask(&Ask { inputs: first, ..Ask::web(&msg(1), JANE, JANE_USER, "2026-12-07 09:00:00", "First chat") });
    db.answer(&msg(1), "2026-12-07 09:00:02", "ok");
    f.run_at("2026-12-07T09:40:00Z", &[], 0);
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    let odd = format!(r#"{{"name": "Ann Other", "odd": "\ud800", "deep": {deep}, "work_email": "ann@example.com"}}"#);
    db.ask(&Ask { inputs: &odd, ..Ask::web(&msg(2), BOB, JANE_USER, "2026-12-07 10:00:00", "Second chat") });
    db.answer(&msg(2), "2026-12-07 10:00:02", "ok");
    let out = f.run_at("2026-12-07T10:40:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 2, "{}", out.stderr);
    let second = mail_about(&m, "Second chat");
    assert!(second.subject.contains("Ann Other") && !second.subject.contains("Jane"), "{}", second.subject);
    assert_eq!(second.reply_to.as_deref(), Some("ann@example.com"), "{}", second.text);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "one line per variable left out: {}", out.stderr);
    assert!(
        lines.iter().any(|l| l.contains("\"odd\"")) && lines.iter().any(|l| l.contains("\"deep\"")),
        "{}",
        out.stderr
    );
}

/// Every error line names the source's URL: `check` where the role cannot read `apps`, `report`
/// where it cannot read `workflow_conversation_variables`.
#[test]
fn error_lines_name_the_source_url() {
    let server = SmtpServer::start();
    let Some((f, mut db, url)) = fixture(server.port(), "") else { return };
    let ro = role_lacking(&mut db, &url, "apps");
    f.use_source(&format!("kind = \"dify\"\nurl = \"{ro}\""));
    let check = f.run(&["check"]);
    let all = format!("{}{}", check.stdout, check.stderr);
    let line = all.lines().find(|l| l.contains("permission denied for table apps")).unwrap_or_else(|| panic!("{all}"));
    assert!(check.code == 1 && line.contains(&ro), "{all}");
    let ro = role_lacking(&mut db, &url, "workflow_conversation_variables");
    f.use_source(&format!("kind = \"dify\"\nurl = \"{ro}\""));
    let report = f.run(&["report", "--now", "2026-12-07T09:40:00Z"]);
    assert_eq!(report.code, 1, "{}{}", report.stdout, report.stderr);
    let line =
        report.stderr.lines().find(|l| l.contains("permission denied")).unwrap_or_else(|| panic!("{}", report.stderr));
    assert!(line.contains(&ro) && line.contains("workflow_conversation_variables"), "{line}");
}

/// `email` in any case is the email, also where `fields` maps the email to another variable
/// the chat did not set: `EMAIL` is the Reply-To and the person.
#[test]
fn an_email_variable_in_capitals_is_the_email_under_a_fields_mapping() {
    let server = SmtpServer::start();
    let Some((f, mut db, _)) = fixture(server.port(), "fields = { email = \"work_email\" }") else { return };
    db.end_user(JANE_USER, CHAT_APP, "sess-jane", None);
    let inputs = r#"{"EMAIL": "Pat@Example.com", "Name": "Pat"}"#;
    db.ask(&Ask { inputs, ..Ask::web(&msg(1), JANE, JANE_USER, "2026-12-07 09:00:00", "Hello") });
    db.answer(&msg(1), "2026-12-07 09:00:02", "Hi");
    let out = f.run_at("2026-12-07T09:40:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 1, "{}", out.stderr);
    assert_eq!(m[0].reply_to.as_deref(), Some("Pat@Example.com"), "{}", m[0].text);
    let visitors = f.state_rows(&format!("SELECT visitor_id FROM conversations WHERE id = '{JANE}'"));
    assert_eq!(visitors, [[r#"Text("pat@example.com")"#]], "the email given is the person");
}
