//! Flowise as a source, through the built binary: its SQLite file and its PostgreSQL database
//! as Flowise 3.1.4 wrote them (`tests/fixtures/flowise`, `support::flowise`), and further rows
//! written as Flowise writes them. Each run has a fixed "now": the fixtures' rows are dated
//! 2026-12-07/08.

mod support;

use chat_notifier::source::flowise as source;
use support::flowise::{
    self as fw, GONE, INTERNAL, JANE, JANE_AGAIN, LEAD_BOT, LEAD_TITLE, Msg, NewLead, OLD_BOT, ORDER, ORPHAN_LEAD,
    SUPPORT_BOT,
};
use support::{Behavior, Fixture, Mail, SmtpServer, assert_each_once, mails, pg};

/// Adds text at the end of the config (a `[[bots]]` entry).
fn append_config(f: &Fixture, text: &str) {
    let config = std::fs::read_to_string(&f.config).unwrap();
    std::fs::write(&f.config, format!("{config}\n{text}\n")).unwrap();
}

/// Support Bot's chats finish when the agent looked an order up; the source's own phrase
/// matches nothing in the fixtures (the bot's list replaces it).
const SUPPORT_COMPLETES: &str =
    "[[bots]]\nid = \"7f0c2e1a-5b7d-4c1e-9a3f-2d6b8e4f1a02\"\ncomplete_on_tools = [\"order_lookup\"]";
const SOURCE_COMPLETES: &str = "complete_on_phrases = [\"our sales team will call you\"]";

fn mail_about<'a>(mails: &'a [Mail], needle: &str) -> &'a Mail {
    mails.iter().find(|m| m.subject.contains(needle)).unwrap_or_else(|| panic!("no mail about {needle}"))
}

fn skipped(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.contains("skipped")).collect()
}

/// The fixture's emails, on either database: Jane's chat with her lead's details and the lead
/// form, Support Bot's chat finished by its tool, the builder's test chat and the orphan lead
/// silent, the deleted chatflow's messages named once as bad rows; the next day, Jane's new
/// chat after "clear chat" (no lead row, only `leadEmail`) is hers: the same person.
fn the_fixture_s_chats_are_emailed(
    f: &Fixture,
    server: &SmtpServer,
    move_day_two: &dyn Fn(bool),
    gone_rows: [&str; 2],
) {
    move_day_two(false);
    let out = f.run_at("2026-12-07T12:00:00Z", &[], 0);
    let m = mails(server);
    assert_eq!(m.len(), 2, "Jane's and the order chat; not the builder's test; stderr:\n{}", out.stderr);
    let jane = mail_about(&m, "Jane Doe");
    assert!(jane.subject.starts_with("Lead Bot: chat with Jane Doe [#"), "{}", jane.subject);
    assert_eq!(jane.reply_to.as_deref(), Some("jane@example.com"));
    assert_eq!(jane.header("X-Chat-Bot").as_deref(), Some(LEAD_BOT));
    assert_eq!(jane.header("X-Chat-State").as_deref(), Some("ended"), "no complete_on matched: it went quiet");
    assert!(
        jane.html.contains("<table") && jane.html.contains("<strong>Pro</strong>"),
        "markdown rendered: {}",
        jane.html
    );
    for said in [
        "name: Jane Doe",
        "email: jane@example.com",
        LEAD_TITLE,
        "Visitor: Hi! How much does the Pro plan cost?",
        "| **Pro** | $29/mo | 5 |",
        "Visitor: Is there a discount if I pay yearly?",
        "> Offer valid for new customers.",
    ] {
        assert!(jane.text.contains(said), "{said:?} in\n{}", jane.text);
    }
    assert!(!jane.text.contains("phone:"), "the widget's '' is no phone: {}", jane.text);
    let order = mail_about(&m, "Support Bot");
    assert_eq!(order.header("X-Chat-State").as_deref(), Some("completed"), "order_lookup was called");
    assert_eq!(order.header("X-Chat-Bot").as_deref(), Some(SUPPORT_BOT));
    assert!(order.text.contains("Visitor: Where is my order #1042?"), "{}", order.text);
    assert!(!m.iter().any(|m| m.text.contains("Olga")), "an orphan lead is no chat");
    let bad = skipped(&out.stderr);
    assert_eq!(bad.len(), 2, "{}", out.stderr);
    for (line, row) in bad.iter().zip(gone_rows) {
        assert!(
            line.contains(row) && line.contains("its chatflow 7f0c2e1a-5b7d-4c1e-9a3f-2d6b8e4f1a03 is gone"),
            "{line}"
        );
    }
    assert!(!out.stderr.contains(ORPHAN_LEAD) && !out.stderr.contains(INTERNAL), "silent: {}", out.stderr);

    // The next day, after "clear chat": a new chatId with her leadEmail and no lead row.
    move_day_two(true);
    let out = f.run_at("2026-12-08T10:30:00Z", &[], 0);
    assert!(skipped(&out.stderr).is_empty(), "bad rows are named once: {}", out.stderr);
    let m = mails(server);
    assert_eq!(m.len(), 3);
    let again = &m[2];
    assert!(
        again.subject.starts_with("Lead Bot: chat with Jane Doe [#"),
        "named from her earlier chat: {}",
        again.subject
    );
    assert_eq!(again.reply_to.as_deref(), Some("jane@example.com"), "from leadEmail");
    assert_ne!(support::identifier(&again.subject), support::identifier(&jane.subject), "a chat of its own");
    assert!(again.text.contains(support::identifier(&jane.subject)), "the same person: {}", again.text);
    assert!(again.text.contains("Visitor: Hi again, I'd like to start the Pro trial."), "{}", again.text);
    let out = f.run_at("2026-12-08T12:00:00Z", &[], 0);
    assert_eq!((out.stderr.as_str(), server.received().len()), ("", 3), "nothing more, quietly");
}

/// Flowise's SQLite file: `move_day_two` keeps the next day's rows out until then (the
/// generator wrote them before the order chat; Flowise inserts them the next day).
#[test]
fn a_sqlite_file_s_chats_are_emailed_with_leads_tools_and_bad_rows_named_once() {
    let server = SmtpServer::start();
    let f = fw::sqlite(server.port(), SOURCE_COMPLETES);
    append_config(&f, SUPPORT_COMPLETES);
    let day_two = |now: bool| {
        let sql = if now {
            "INSERT INTO chat_message SELECT * FROM day_two; DROP TABLE day_two;"
        } else {
            "CREATE TABLE day_two AS SELECT * FROM chat_message WHERE \"chatId\" = 'c0a80001-2222-4a22-8a22-000000000002';
             DELETE FROM chat_message WHERE \"chatId\" = 'c0a80001-2222-4a22-8a22-000000000002';"
        };
        fw::sqlite_write(&f, sql);
    };
    the_fixture_s_chats_are_emailed(&f, &server, &day_two, ["row 13 (id 04a64dfe-", "row 14 (id 248fa2e4-"]);
}

#[test]
fn a_postgresql_database_s_chats_are_emailed_with_leads_tools_and_bad_rows_named_once() {
    let server = SmtpServer::start();
    let Some((f, client, _)) = fw::postgres(server.port(), SOURCE_COMPLETES) else { return };
    append_config(&f, SUPPORT_COMPLETES);
    let client = std::cell::RefCell::new(client);
    let day_two = |now: bool| {
        let sql = if now {
            "INSERT INTO chat_message SELECT * FROM day_two; DROP TABLE day_two;"
        } else {
            "CREATE TABLE day_two AS SELECT * FROM chat_message WHERE \"chatId\" = 'c0a80001-2222-4a22-8a22-000000000002';
             DELETE FROM chat_message WHERE \"chatId\" = 'c0a80001-2222-4a22-8a22-000000000002';"
        };
        client.borrow_mut().batch_execute(sql).unwrap();
    };
    the_fixture_s_chats_are_emailed(
        &f,
        &server,
        &day_two,
        ["row a2557740-3fa0-4164-85c0-ee660df716e8", "row 3141918a-040d-4cd7-aa6f-5219759491ac"],
    );
}

#[test]
fn the_builder_s_test_chats_are_emailed_only_when_chat_types_asks() {
    let server = SmtpServer::start();
    let f = fw::sqlite(server.port(), "chat_types = [\"EXTERNAL\", \"INTERNAL\"]");
    f.run_at("2026-12-07T12:00:00Z", &[], 0);
    let m = mails(&server);
    assert!(m.iter().any(|m| m.text.contains("Visitor: test")), "the INTERNAL chat is read now");
    assert_eq!(m.len(), 3, "{:?}", m.iter().map(|m| &m.subject).collect::<Vec<_>>());
}

#[test]
fn keys_that_do_not_apply_are_refused_naming_them() {
    for (source, expected) in [
        ("chat_types = [\"PUBLIC\"]", "source.chat_types: \"PUBLIC\" is not a Flowise chat type"),
        ("message_time_zone = \"Europe/Berlin\"", "source.message_time_zone: applies to Flowise on PostgreSQL only"),
        ("lead_time_zone = \"Europe/Berlin\"", "source.lead_time_zone: applies to Flowise on PostgreSQL only"),
        ("complete_on_tools = [\" \"]", "source.complete_on_tools: an empty entry"),
        ("fields = { email = \"E\" }", "source.fields: does not apply to kind = \"flowise\""),
    ] {
        let f = fw::sqlite(0, source);
        let out = f.run(&["check"]);
        assert_eq!(out.code, 1, "{source}");
        assert!(
            out.stdout.contains(expected) || out.stderr.contains(expected),
            "{source}: {}{}",
            out.stdout,
            out.stderr
        );
    }
    let f = Fixture::new(0);
    f.use_source("kind = \"rasa\"\nurl = \"rasa.db\"\ncomplete_on_phrases = [\"bye\"]");
    let out = f.run(&["check"]);
    assert!(out.stdout.contains("source.complete_on_phrases: does not apply to kind = \"rasa\""), "{}", out.stdout);
}

#[test]
fn every_command_works_on_a_flowise_file() {
    let server = SmtpServer::start();
    let f = fw::sqlite(server.port(), "");
    let check = f.run(&["check"]);
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
    assert!(check.stdout.contains("(Flowise): 2 chatflow(s), 14 messages, 2 leads"), "{}", check.stdout);
    for statement in source::INDEXES_SQLITE.map(|(_, _, s)| s) {
        assert!(check.stdout.contains(statement), "{statement} in {}", check.stdout);
    }
    let now = ["--now", "2026-12-07T12:00:00Z"];
    let jane = fw::conversation(LEAD_BOT, JANE);
    let preview = f.run(&[&["preview", jane.as_str()][..], &now].concat());
    assert_eq!(preview.code, 0, "{}", preview.stderr);
    assert!(preview.stdout.contains("Is there a discount if I pay yearly?"), "{}", preview.stdout);
    f.run_at(now[1], &[], 0);
    let last = f.run(&["preview", "--last", jane.as_str()]);
    assert_eq!(last.code, 0, "{}", last.stderr);
    assert!(last.stdout.contains("Subject: Lead Bot: chat with Jane Doe"), "{}", last.stdout);
    let status = f.run(&[&["status", "--all"][..], &now].concat());
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(status.stdout.contains("Lead Bot") && status.stdout.contains("Support Bot"), "{}", status.stdout);
    let report = f.run(&[&["report", "--format", "json"][..], &now].concat());
    assert_eq!(report.code, 0, "{}", report.stderr);
    let json: serde_json::Value = serde_json::from_str(&report.stdout).unwrap();
    let text = json.to_string();
    // The form's title is said by one chat only (the other, after "clear chat", had no form):
    // no text most chats share, so the report quotes none.
    for step in ["lead form", "message 1", "message 2", "Where is my order #1042?"] {
        assert!(text.contains(step), "{step} in {text}");
    }
    assert!(!text.contains("Olga") && !text.contains("Visitor: test"), "{text}");
    let leads = f.run(&[&["leads", "--format", "csv"][..], &now].concat());
    assert_eq!(leads.code, 0, "{}", leads.stderr);
    assert!(leads.stdout.contains("Jane Doe") && leads.stdout.contains("jane@example.com"), "{}", leads.stdout);
    assert!(!leads.stdout.contains("olga@example.org"), "an orphan lead: {}", leads.stdout);
    let table = f.run(&[&["report"][..], &now].concat());
    assert_eq!(table.code, 0, "{}", table.stderr);
}

/// A visitor's "clear chat" deletes the newest rows, and SQLite hands their rowids out again to
/// the next chat: that chat is read once, and the one erased is not emailed.
#[test]
fn a_deleted_tail_s_rowids_handed_out_again_are_read_once() {
    let server = SmtpServer::start();
    let f = fw::sqlite(server.port(), "");
    // Only Jane's chat and the order chat: rowids 1-4 and 7-10.
    fw::sqlite_write(
        &f,
        &format!("DELETE FROM chat_message WHERE \"chatId\" IN ('{JANE_AGAIN}', '{INTERNAL}', '{GONE}');"),
    );
    f.run_at("2026-12-07T11:20:00Z", &[], 0);
    assert_eq!(mails(&server).len(), 1, "Jane; the order chat is still going");
    // The order chat is cleared; a new chat takes rowids 7 and 8.
    fw::sqlite_write(&f, &format!("DELETE FROM chat_message WHERE \"chatId\" = '{ORDER}';"));
    let new_chat = "c0a80001-7777-4a77-8a77-000000000007";
    for m in [
        Msg::visitor(
            "0b7c1d2e-0000-4000-8000-000000000001",
            SUPPORT_BOT,
            new_chat,
            "2026-12-07 11:25:00.100",
            "Do you ship to Norway?",
        ),
        Msg::bot(
            "0b7c1d2e-0000-4000-8000-000000000002",
            SUPPORT_BOT,
            new_chat,
            "2026-12-07 11:25:04.900",
            "Yes, in 3-5 days.",
        ),
    ] {
        fw::sqlite_write(&f, &m.insert_sql());
    }
    let rowids: Vec<i64> = rusqlite::Connection::open(f.dir.path().join("database.sqlite"))
        .unwrap()
        .prepare(&format!("SELECT rowid FROM chat_message WHERE \"chatId\" = '{new_chat}' ORDER BY rowid"))
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    // SQLite gives max(rowid) + 1: the rowids read (up to 10) handed out again.
    assert_eq!(rowids, [5, 6], "rowids below the last one read");
    let out = f.run_at("2026-12-07T12:00:00Z", &[], 0);
    assert_eq!(out.stderr, "", "a chat erased is routine: no warning, no reading everything again");
    let m = mails(&server);
    assert_eq!(m.len(), 2, "{}", out.stderr);
    assert!(m[1].text.contains("Do you ship to Norway?") && !m[1].text.contains("order #1042"), "{}", m[1].text);
    f.run_at("2026-12-07T13:00:00Z", &[], 0);
    assert_eq!(server.received().len(), 2, "read once");
}

/// Bad input, each one line naming the row, skipped; every other chat emailed. A row whose
/// time is none has no place among rows read by time: `check` names it.
#[test]
fn bad_rows_are_named_once_and_block_nothing() {
    let server = SmtpServer::start();
    let f = fw::sqlite(server.port(), "");
    let chat = "c0a80001-8888-4a88-8a88-000000000008";
    let tools = Msg {
        used_tools: Some("[{\"tool\":"),
        ..Msg::bot("0b7c1d2e-0000-4000-8000-000000000011", SUPPORT_BOT, chat, "2026-12-07 11:20:00.000", "x")
    };
    let role = Msg {
        role: "systemMessage",
        ..Msg::bot("0b7c1d2e-0000-4000-8000-000000000012", SUPPORT_BOT, chat, "2026-12-07 11:20:01.000", "y")
    };
    let time = Msg::visitor("0b7c1d2e-0000-4000-8000-000000000013", SUPPORT_BOT, chat, "yesterday", "z");
    let fine =
        Msg::visitor("0b7c1d2e-0000-4000-8000-000000000014", SUPPORT_BOT, chat, "2026-12-07 11:20:02.000", "Hello?");
    for m in [&tools, &role, &time, &fine] {
        fw::sqlite_write(&f, &m.insert_sql());
    }
    let out = f.run_at("2026-12-07T12:00:00Z", &[], 0);
    let bad = skipped(&out.stderr);
    for (row, why) in [
        ("row 15 (id 0b7c1d2e-0000-4000-8000-000000000011)", "usedTools is not JSON"),
        (
            "row 16 (id 0b7c1d2e-0000-4000-8000-000000000012)",
            "role \"systemMessage\" is neither userMessage nor apiMessage",
        ),
    ] {
        assert_eq!(bad.iter().filter(|l| l.contains(row) && l.contains(why)).count(), 1, "{row}: {}", out.stderr);
    }
    // Rows are read by time: one with no time has no place among them. `check` names it.
    assert!(!out.stderr.contains("0b7c1d2e-0000-4000-8000-000000000013"), "{}", out.stderr);
    let check = f.run(&["check"]);
    assert!(
        check.stderr.contains(
            "1 chat_message row(s) have a createdDate that is no time, never read (the first: row 17 (id \
             0b7c1d2e-0000-4000-8000-000000000013), createdDate \"yesterday\")"
        ),
        "{}",
        check.stderr
    );
    let m = mails(&server);
    assert_eq!(m.len(), 3, "Jane, the order chat and this one");
    let this = m.iter().find(|m| m.text.contains("Visitor: Hello?")).unwrap();
    assert!(!this.text.contains("Visitor: z") && !this.text.contains(": y\n"), "{}", this.text);
    let out = f.run_at("2026-12-07T13:00:00Z", &[], 0);
    assert!(skipped(&out.stderr).is_empty(), "named once: {}", out.stderr);
}

/// Killed after the server took an email and before it was marked sent: the next run sends that
/// one again (the only duplicate) and the rest once; a run started meanwhile does nothing (4).
#[test]
fn killed_between_send_and_mark_resends_only_that_email_and_an_overlapping_run_waits() {
    let server = SmtpServer::start();
    let f = fw::sqlite(server.port(), "");
    fw::sqlite_write(&f, &format!("DELETE FROM chat_message WHERE \"chatId\" = '{JANE_AGAIN}';"));
    server.set(Behavior::HangAfterData { accept: 0 });
    let mut child = f.spawn(&["run", "--now", "2026-12-07T12:00:00Z"]);
    server.wait_for(1);
    let overlap = f.run(&["run", "--now", "2026-12-07T12:00:00Z"]);
    assert_eq!(overlap.code, 4, "{}", overlap.stderr);
    child.kill().unwrap();
    child.wait().unwrap();
    let in_flight = Mail::read(&server.received()[0]).message_id;
    server.set(Behavior::Accept);
    f.run_at("2026-12-07T12:00:00Z", &[], 0);
    assert_each_once(&server, 2, 1, "");
    assert_eq!(mails(&server).iter().filter(|m| m.message_id == in_flight).count(), 2);
    f.run_at("2026-12-07T13:00:00Z", &[], 0);
    assert_eq!(server.received().len(), 3, "{:?}", mails(&server).iter().map(|m| &m.subject).collect::<Vec<_>>());
}

/// PostgreSQL has no ordered id: rows are read by "createdDate" with a late-write window. A
/// visitor's question stamped before its answer but inserted after the answer was read, rows of
/// one timestamp inserted in separate transactions on both sides of what was read, and rows
/// inserted out of time order: each read once (the rows read equal the rows there), each chat
/// emailed once with its whole transcript.
#[test]
fn late_questions_equal_timestamps_and_out_of_order_inserts_are_read_exactly_once_on_postgres() {
    let server = SmtpServer::start();
    let Some((f, mut client, _)) = fw::postgres(server.port(), "") else { return };
    let mut write = |m: Msg| client.batch_execute(&m.insert_sql()).unwrap();
    let (late, tied) = ("c0a80001-9001-4a90-8a90-000000000001", "c0a80001-9002-4a90-8a90-000000000002");
    f.run_at("2026-12-08T12:00:00Z", &[], 0);
    let before = server.received().len();
    // A turn as Flowise writes it: the answer first, the question (stamped earlier) after.
    write(Msg::bot(
        "00000000-0000-4000-8000-0000000001f4",
        SUPPORT_BOT,
        late,
        "2026-12-08 13:00:07.250",
        "We open at 9.",
    ));
    // Three rows of one millisecond: tiebreaks (the uuid's low 64 bits modulo 1000) 500 now,
    // then 0 and 999, on either side of it, later.
    write(Msg::visitor(
        "00000000-0000-4000-8000-100000000114",
        SUPPORT_BOT,
        tied,
        "2026-12-08 13:00:08.000",
        "tie 500",
    ));
    f.run_at("2026-12-08T13:00:09Z", &[], 0);
    write(Msg::visitor(
        "00000000-0000-4000-8000-000000000000",
        SUPPORT_BOT,
        late,
        "2026-12-08 13:00:00.100",
        "When do you open?",
    ));
    write(Msg::visitor("00000000-0000-4000-8000-100000000308", SUPPORT_BOT, tied, "2026-12-08 13:00:08.000", "tie 0"));
    write(Msg::visitor(
        "00000000-0000-4000-8000-100000000307",
        SUPPORT_BOT,
        tied,
        "2026-12-08 13:00:08.000",
        "tie 999",
    ));
    f.run_at("2026-12-08T13:00:10Z", &[], 0);
    // Out of time order: a row stamped 13:05 inserted before one stamped 13:04.
    write(Msg::bot(
        "00000000-0000-4000-8000-200000000001",
        SUPPORT_BOT,
        tied,
        "2026-12-08 13:05:00.000",
        "All three noted.",
    ));
    f.run_at("2026-12-08T13:05:01Z", &[], 0);
    write(Msg::visitor(
        "00000000-0000-4000-8000-200000000002",
        SUPPORT_BOT,
        tied,
        "2026-12-08 13:04:00.000",
        "tie again",
    ));
    f.run_at("2026-12-08T13:05:02Z", &[], 0);
    f.run_at("2026-12-08T13:06:00Z", &[], 0);
    assert_eq!(server.received().len(), before, "nothing judged while the chats are active");
    let out = f.run_at("2026-12-08T13:40:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), before + 2, "{}", out.stderr);
    let late_mail = m.iter().find(|m| m.text.contains("We open at 9.")).unwrap();
    assert_eq!(late_mail.text.matches("Visitor: When do you open?").count(), 1, "{}", late_mail.text);
    let ask = late_mail.text.find("Visitor: When do you open?").unwrap();
    let answer = late_mail.text.find("Support Bot: We open at 9.").unwrap();
    assert!(ask < answer, "in the order they were said: {}", late_mail.text);
    let tied_mail = m.iter().find(|m| m.text.contains("tie 500")).unwrap();
    for line in
        ["Visitor: tie 0", "Visitor: tie 500", "Visitor: tie 999", "Visitor: tie again", "Bot: All three noted."]
    {
        assert_eq!(tied_mail.text.matches(line).count(), 1, "{line}: {}", tied_mail.text);
    }
    let read = &f.state_rows("SELECT read_count FROM progress")[0][0];
    assert_eq!(*read, format!("Integer({})", client_count(&f)), "every row read exactly once");
    f.run_at("2026-12-08T15:00:00Z", &[], 0);
    assert_eq!(server.received().len(), before + 2, "nothing more");
}

/// The hourly count of the rows at or below the watermark runs while a question is still
/// being written behind an answer already read: that is no row inserted out of order (no alarm,
/// no re-reading of everything), and the question is read by this very run.
#[test]
fn the_hourly_count_takes_a_question_written_late_for_what_it_is() {
    let server = SmtpServer::start();
    let Some((f, mut client, _)) = fw::postgres(server.port(), "") else { return };
    let chat = "c0a80001-9003-4a90-8a90-000000000003";
    f.run_at("2026-12-08T12:00:00Z", &[], 0);
    let before = server.received().len();
    let answer =
        Msg::bot("5b0e4a1c-7d2f-4e8a-9c3b-6f1d2e3a4b5c", SUPPORT_BOT, chat, "2026-12-08 13:00:07.250", "We open at 9.");
    client.batch_execute(&answer.insert_sql()).unwrap();
    f.run_at("2026-12-08T13:00:08Z", &[], 0);
    let question = Msg::visitor(
        "e2c4f6a8-1b3d-4f5e-8a7c-9d0e1f2a3b4c",
        SUPPORT_BOT,
        chat,
        "2026-12-08 13:00:00.100",
        "When do you open?",
    );
    client.batch_execute(&question.insert_sql()).unwrap();
    // An hour on: this run counts the rows again, and the chat has gone quiet.
    let out = f.run_at("2026-12-08T14:00:09Z", &[], 0);
    assert_eq!(out.stderr, "", "no alarm");
    let m = mails(&server);
    assert_eq!(m.len(), before + 1);
    let text = &m[before].text;
    assert!(text.find("Visitor: When do you open?").unwrap() < text.find("Bot: We open at 9.").unwrap(), "{text}");
    let read = &f.state_rows("SELECT read_count FROM progress")[0][0];
    assert_eq!(*read, format!("Integer({})", client_count(&f)), "every row read exactly once");
}

/// The rows a run reads on PostgreSQL: messages and leads.
fn client_count(f: &Fixture) -> i64 {
    let url = std::fs::read_to_string(&f.config).unwrap();
    let url = url.lines().find_map(|l| l.strip_prefix("url = \"")).unwrap().trim_end_matches('"').to_owned();
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    // Leads are rows of the time-ordered stream too.
    client
        .query_one("SELECT (SELECT count(*) FROM public.chat_message) + (SELECT count(*) FROM public.lead)", &[])
        .unwrap()
        .get(0)
}

/// With the statements `check` prints in place, no query a run makes scans a table.
#[test]
fn no_query_a_run_makes_scans_flowise_s_tables() {
    let server = SmtpServer::start();
    let f = fw::sqlite(server.port(), "");
    let conn = rusqlite::Connection::open(f.dir.path().join("database.sqlite")).unwrap();
    for (_, _, statement) in source::INDEXES_SQLITE {
        conn.execute_batch(statement).unwrap();
    }
    rusqlite::vtab::array::load_module(&conn).unwrap();
    for (sql, _) in source::sqlite_queries() {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let unbound =
            rusqlite::params_from_iter(std::iter::repeat_n(rusqlite::types::Value::Null, stmt.parameter_count()));
        let plan: Vec<String> = stmt.query_map(unbound, |r| r.get(3)).unwrap().collect::<Result<_, _>>().unwrap();
        assert!(!plan.iter().any(|p| p.starts_with("SCAN") && !p.contains("VIRTUAL TABLE")), "{sql}\n{plan:#?}");
    }
    let check = f.run(&["check"]);
    assert!(!check.stdout.contains("CREATE INDEX"), "the indexes are there: {}", check.stdout);

    let Some((f, mut client, _)) = fw::postgres(server.port(), "") else { return };
    let check = f.run(&["check"]);
    for (_, _, statement) in source::INDEXES_POSTGRES {
        assert!(check.stdout.contains(statement), "{statement} in {}", check.stdout);
        client.batch_execute(&statement.replace(" ON ", " ON public.")).unwrap();
    }
    client.batch_execute("SET search_path = public").unwrap();
    for (sql, params) in source::postgres_queries() {
        let plan = pg::plan(&mut client, &sql, &params);
        assert!(!plan.contains("Seq Scan"), "{sql}\n{plan}");
    }
    let check = f.run(&["check"]);
    assert!(!check.stdout.contains("CREATE INDEX"), "{}", check.stdout);
}

/// Without those indexes (a stock install whose owner has not made them yet) a run still reads
/// a page of chats in one pass over each table: never by an automatic index SQLite builds for
/// the query, which copies every message, text and all (1.69 s against 0.21 s for an incremental
/// run of 1,000 chats, 92 emails, in `bench/sources.sh`'s store).
#[test]
fn without_the_indexes_a_page_of_chats_is_one_pass_over_each_table() {
    let f = fw::sqlite(0, "");
    let conn = rusqlite::Connection::open(f.dir.path().join("database.sqlite")).unwrap();
    rusqlite::vtab::array::load_module(&conn).unwrap();
    for (sql, _) in source::sqlite_queries() {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let unbound =
            rusqlite::params_from_iter(std::iter::repeat_n(rusqlite::types::Value::Null, stmt.parameter_count()));
        let plan: Vec<String> = stmt.query_map(unbound, |r| r.get(3)).unwrap().collect::<Result<_, _>>().unwrap();
        assert!(!plan.iter().any(|p| p.contains("AUTOMATIC")), "{sql}\n{plan:#?}");
    }
}

/// On PostgreSQL, messages carry the Flowise process's wall time and leads the database's: with
/// the zones given wrong, a lead and its chat are whole hours apart, and `check` says so.
#[test]
fn check_warns_when_leads_and_messages_disagree_by_whole_hours() {
    let Some((f, _, _)) = fw::postgres(0, "lead_time_zone = \"America/New_York\"") else { return };
    let check = f.run(&["check"]);
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
    assert!(check.stderr.contains("leads are stamped 5 h after their chats' messages"), "{}", check.stderr);
    let Some((f, _, _)) = fw::postgres(0, "") else { return };
    let check = f.run(&["check"]);
    assert!(!check.stderr.contains("leads are stamped"), "{}", check.stderr);
}

/// A Flowise process in Berlin with its database in Berlin too writes the fixture's rows an hour
/// later in wall time: with the zones given, every time is the instant it was (emails in UTC
/// here), a chat quiet since 11:12 UTC is judged at 12:00 UTC, and `check` finds leads and
/// messages in step.
#[test]
fn wall_times_are_read_in_the_zones_flowise_and_its_database_wrote_them_in() {
    let server = SmtpServer::start();
    let zones = "message_time_zone = \"Europe/Berlin\"\nlead_time_zone = \"Europe/Berlin\"";
    let Some((f, mut client, _)) = fw::postgres(server.port(), zones) else { return };
    client
        .batch_execute(
            "UPDATE chat_message SET \"createdDate\" = \"createdDate\" + interval '1 hour';
             UPDATE lead SET \"createdDate\" = \"createdDate\" + interval '1 hour';
             DELETE FROM chat_message WHERE \"chatId\" = 'c0a80001-2222-4a22-8a22-000000000002';",
        )
        .unwrap();
    let check = f.run(&["check"]);
    assert!(!check.stderr.contains("leads are stamped"), "{}", check.stderr);
    f.run_at("2026-12-07T12:00:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 2, "Jane's chat and the order chat, quiet since 11:12 UTC");
    let jane = mail_about(&m, "Jane Doe");
    assert!(jane.text.contains("[2026-12-07 09:12] Visitor: Hi! How much does the Pro plan cost?"), "{}", jane.text);
    assert!(mail_about(&m, "Support Bot").text.contains("[2026-12-07 11:12] Visitor: Where is my order #1042?"));
}

/// Visitors' "clear chat" deletes their rows from PostgreSQL: a chat, then the newest one, with
/// a chat that stays between them. Routine: no warning when the rows go, none at the next hourly
/// count (the rows remembered within the late-write window include the ones gone), and nothing
/// emailed about chats that are gone; the chat that stays is emailed once.
#[test]
fn chats_cleared_on_postgres_are_routine_at_the_next_runs_and_the_hourly_count() {
    let server = SmtpServer::start();
    let Some((f, mut client, _)) = fw::postgres(server.port(), "") else { return };
    f.run_at("2026-12-08T12:00:00Z", &[], 0);
    let before = server.received().len();
    let (x, stays, y) = (
        "c0a80001-9004-4a90-8a90-000000000004",
        "c0a80001-9005-4a90-8a90-000000000005",
        "c0a80001-9006-4a90-8a90-000000000006",
    );
    for m in [
        Msg::visitor("3c1d5e7f-2a4b-4c6d-8e0f-1a2b3c4d5e01", SUPPORT_BOT, x, "2026-12-08 13:00:00.000", "x?"),
        Msg::bot("3c1d5e7f-2a4b-4c6d-8e0f-1a2b3c4d5e02", SUPPORT_BOT, x, "2026-12-08 13:00:05.000", "x."),
        Msg::visitor(
            "3c1d5e7f-2a4b-4c6d-8e0f-1a2b3c4d5e03",
            SUPPORT_BOT,
            stays,
            "2026-12-08 13:00:10.000",
            "Still here?",
        ),
        Msg::bot("3c1d5e7f-2a4b-4c6d-8e0f-1a2b3c4d5e04", SUPPORT_BOT, stays, "2026-12-08 13:00:15.000", "Yes."),
        Msg::visitor("3c1d5e7f-2a4b-4c6d-8e0f-1a2b3c4d5e05", SUPPORT_BOT, y, "2026-12-08 13:00:20.000", "y?"),
        Msg::bot("3c1d5e7f-2a4b-4c6d-8e0f-1a2b3c4d5e06", SUPPORT_BOT, y, "2026-12-08 13:00:25.000", "y."),
    ] {
        client.batch_execute(&m.insert_sql()).unwrap();
    }
    f.run_at("2026-12-08T13:00:30Z", &[], 0);
    client.batch_execute(&format!("DELETE FROM chat_message WHERE \"chatId\" IN ('{x}', '{y}')")).unwrap();
    let out = f.run_at("2026-12-08T13:20:00Z", &[], 0);
    assert_eq!(out.stderr, "", "the newest rows gone: read on from the last one still there");
    let out = f.run_at("2026-12-08T14:30:00Z", &[], 0);
    assert_eq!(out.stderr, "", "the hourly count");
    let m = mails(&server);
    assert_eq!(m.len(), before + 1, "only the chat that stays");
    assert!(m[before].text.contains("Visitor: Still here?"), "{}", m[before].text);
    let out = f.run_at("2026-12-08T16:30:00Z", &[], 0);
    assert_eq!((out.stderr.as_str(), server.received().len()), ("", before + 1));
}

/// A phrase the bot said finishes the chat (any case), for the one bot that names it, once the
/// chat has gone quiet.
#[test]
fn a_phrase_a_bot_said_finishes_its_chats() {
    let server = SmtpServer::start();
    let f = fw::sqlite(server.port(), "");
    append_config(&f, &format!("[[bots]]\nid = \"{SUPPORT_BOT}\"\ncomplete_on_phrases = [\"have a NICE day\"]"));
    // Not the next day's chat yet.
    fw::sqlite_write(&f, &format!("DELETE FROM chat_message WHERE \"chatId\" = '{JANE_AGAIN}';"));
    f.run_at("2026-12-07T11:20:00Z", &[], 0);
    assert_eq!(mails(&server).len(), 1, "Jane's; the order chat matched but is still active (11:12)");
    f.run_at("2026-12-07T12:00:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 2);
    assert_eq!(mail_about(&m, "Support Bot").header("X-Chat-State").as_deref(), Some("completed"));
    assert_eq!(mail_about(&m, "Jane Doe").header("X-Chat-State").as_deref(), Some("ended"));
}

/// A chatflow whose `chatbotConfig` is not JSON: one line naming it, its chats emailed without
/// a lead form.
#[test]
fn a_chatbot_config_that_is_not_json_is_named_and_its_chats_still_go() {
    let server = SmtpServer::start();
    let f = fw::sqlite(server.port(), "");
    fw::sqlite_write(&f, &format!("UPDATE chat_flow SET \"chatbotConfig\" = '{{\"leads\":' WHERE id = '{LEAD_BOT}';"));
    let out = f.run_at("2026-12-07T12:00:00Z", &[], 0);
    let lines: Vec<&str> = out.stderr.lines().filter(|l| l.contains("chatbotConfig")).collect();
    assert_eq!(lines.len(), 1, "{}", out.stderr);
    assert!(lines[0].contains(&format!("chat_flow {LEAD_BOT}: chatbotConfig is not JSON")), "{}", lines[0]);
    let jane = mails(&server).into_iter().find(|m| m.subject.contains("Jane Doe")).unwrap();
    assert!(!jane.text.contains(LEAD_TITLE) && jane.text.contains("email: jane@example.com"), "{}", jane.text);
}

/// Positions follow the stored wall time. When the Flowise process's clocks go back an hour
/// (Europe/Berlin, 2026-10-25 03:00 CEST to 02:00 CET), a chat written in the repeated hour
/// lands behind what was read, further than the late-write window: the hourly count finds it,
/// says so once and reads the store again whole; both chats are emailed, once each. (A wall time
/// of the repeated hour is ambiguous: it is taken as its first pass.)
#[test]
fn a_chat_in_the_hour_the_clocks_repeat_is_found_by_the_hourly_count() {
    let server = SmtpServer::start();
    let Some((f, mut client, _)) = fw::postgres(server.port(), "message_time_zone = \"Europe/Berlin\"") else { return };
    client.batch_execute("DELETE FROM chat_message; DELETE FROM lead;").unwrap();
    let (first, repeated) = ("c0a80001-9007-4a90-8a90-000000000007", "c0a80001-9008-4a90-8a90-000000000008");
    // 02:50 CEST = 00:50 UTC.
    for m in [
        Msg::visitor("4d2e6f80-3b5c-4d7e-9f10-2b3c4d5e6f01", SUPPORT_BOT, first, "2026-10-25 02:50:00.000", "Before?"),
        Msg::bot("4d2e6f80-3b5c-4d7e-9f10-2b3c4d5e6f02", SUPPORT_BOT, first, "2026-10-25 02:50:05.000", "Yes."),
    ] {
        client.batch_execute(&m.insert_sql()).unwrap();
    }
    let out = f.run_at("2026-10-25T00:51:00Z", &[], 0);
    assert_eq!(out.stderr, "");
    // 02:10 CET = 01:10 UTC: stored as 02:10, behind 02:50.
    for m in [
        Msg::visitor(
            "4d2e6f80-3b5c-4d7e-9f10-2b3c4d5e6f03",
            SUPPORT_BOT,
            repeated,
            "2026-10-25 02:10:00.000",
            "After?",
        ),
        Msg::bot(
            "4d2e6f80-3b5c-4d7e-9f10-2b3c4d5e6f04",
            SUPPORT_BOT,
            repeated,
            "2026-10-25 02:10:05.000",
            "Yes again.",
        ),
    ] {
        client.batch_execute(&m.insert_sql()).unwrap();
    }
    let out = f.run_at("2026-10-25T01:11:00Z", &[], 0);
    assert_eq!(out.stderr.matches("rows were inserted out of id order").count(), 1, "{}", out.stderr);
    f.run_at("2026-10-25T01:45:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 2, "{:?}", m.iter().map(|m| &m.subject).collect::<Vec<_>>());
    let later = m.iter().find(|m| m.text.contains("Visitor: After?")).unwrap();
    // A wall time the clocks show twice says not which: it is taken as the first (00:10 UTC).
    assert!(later.text.contains("[2026-10-25 00:10] Visitor: After?"), "{}", later.text);
    let out = f.run_at("2026-10-25T04:00:00Z", &[], 0);
    assert_eq!((out.stderr.as_str(), server.received().len()), ("", 2));
}

/// An LLM chat at a destination reads as its email does: the chat went quiet (never "came back
/// and left again", never "left"), with no "stopped at" (a count of messages and a whole answer
/// are no question).
#[test]
fn a_flowise_chat_reaches_slack_as_a_chat_that_went_quiet() {
    let server = SmtpServer::start();
    let api = support::http::HttpServer::slack();
    let f = fw::sqlite(server.port(), "");
    std::fs::write(f.dir.path().join("slack.token"), "xoxb-test-token\n").unwrap();
    let config = std::fs::read_to_string(&f.config).unwrap();
    std::fs::write(
        &f.config,
        format!(
            "{config}\n[[destinations]]\nname = \"sales\"\nkind = \"slack\"\ntoken_file = \"slack.token\"\n\
             channel = \"C0LEADS\"\napi_url = \"{}\"\ntimeout = \"5s\"\n",
            api.url("/api")
        ),
    )
    .unwrap();
    f.run_at("2026-12-07T12:00:00Z", &[], 0);
    let posted = api.posted();
    let jane = posted.iter().find(|p| p.body["text"].as_str().unwrap().contains("Jane Doe")).expect("Jane's chat");
    let text = jane.body["text"].as_str().unwrap();
    assert!(text.starts_with("Lead Bot: Jane Doe chatted; the chat has gone quiet ["), "{text}");
    let blocks = jane.body["blocks"].to_string();
    assert!(!blocks.contains("Stopped at"), "{blocks}");
    assert_eq!(jane.body["metadata"]["event_payload"]["state"], "ended");
}

/// The widget's lead form comes before the first message: a visitor who fills it and closes the
/// tab leaves a `lead` row and no message. That chat is emailed once quiet, as *ended*, with the
/// form and what they gave; when they write later, the chat goes on in the same thread
/// (*resumed*). A lead given later in a chat already emailed is new activity: the next email
/// carries it. An orphan lead stays silent; every row (leads too) is read once, and the hourly
/// counts find nothing amiss. `write` runs SQL as Flowise would; `times` are the two leads'
/// `createdDate`s as the database's default stamps them; `rows` counts messages and leads.
fn a_lead_alone_is_a_chat(
    f: &Fixture,
    server: &SmtpServer,
    write: &dyn Fn(&str),
    times: [&str; 3],
    rows: &dyn Fn() -> i64,
) {
    f.run_at("2026-12-08T12:00:00Z", &[], 0);
    let before = server.received().len();
    let lena = "c0a80001-9010-4a90-8a90-000000000010";
    let lead = |id, bot, chat, name, email, phone, at| NewLead { id, bot, chat, name, email, phone, at };
    write(
        &lead("8e1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a01", LEAD_BOT, lena, "Lena Lead", "lena@example.com", "", times[0])
            .insert_sql(),
    );
    let out = f.run_at("2026-12-08T13:05:00Z", &[], 0);
    assert_eq!((out.stderr.as_str(), server.received().len()), ("", before), "not judged while active");
    let out = f.run_at("2026-12-08T13:40:00Z", &[], 0);
    let m = mails(server);
    assert_eq!(m.len(), before + 1, "the lead alone is a chat; stderr:\n{}", out.stderr);
    let first = &m[before];
    assert!(first.subject.starts_with("Lead Bot: chat with Lena Lead [#"), "{}", first.subject);
    assert_eq!(first.header("X-Chat-State").as_deref(), Some("ended"));
    assert_eq!(first.reply_to.as_deref(), Some("lena@example.com"));
    for said in [LEAD_TITLE, "name: Lena Lead", "email: lena@example.com"] {
        assert!(first.text.contains(said), "{said:?} in\n{}", first.text);
    }
    assert!(!first.text.contains("phone:"), "{}", first.text);

    // She comes back and asks (the question written after the answer, as Flowise does);
    // meanwhile an orphan lead (its chatflow deleted), and Jane gives her phone in her chat of
    // this morning, emailed at noon.
    write(&format!(
        "{}{}{}{}",
        Msg::bot("8e1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a03", LEAD_BOT, lena, "2026-12-08 15:00:09.000", "Sure, when?")
            .insert_sql(),
        Msg::visitor(
            "8e1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a02",
            LEAD_BOT,
            lena,
            "2026-12-08 15:00:01.000",
            "Can I book a demo?"
        )
        .insert_sql(),
        lead(
            "8e1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a04",
            OLD_BOT,
            "c0a80001-9011-4a90-8a90-000000000011",
            "Otto Orphan",
            "otto@example.org",
            "",
            times[1],
        )
        .insert_sql(),
        lead(
            "8e1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a05",
            LEAD_BOT,
            JANE_AGAIN,
            "Jane Doe",
            "jane@example.com",
            "+1 555 0100",
            times[2]
        )
        .insert_sql(),
    ));
    let out = f.run_at("2026-12-08T15:01:00Z", &[], 0);
    assert_eq!((out.stderr.as_str(), server.received().len()), ("", before + 1), "active; the hourly count");
    let out = f.run_at("2026-12-08T15:40:00Z", &[], 0);
    assert_eq!(out.stderr, "", "the orphan lead is silent");
    let m = mails(server);
    assert_eq!(m.len(), before + 3, "{:?}", m.iter().map(|m| &m.subject).collect::<Vec<_>>());
    let again = m[before + 1..].iter().find(|m| m.subject.contains("Lena Lead")).expect("Lena's chat again");
    assert_eq!(again.subject, format!("Re: {}", first.subject));
    assert_eq!(again.in_reply_to.as_deref(), Some(first.message_id.as_str()), "in her thread");
    assert_eq!(again.header("X-Chat-State").as_deref(), Some("resumed"));
    assert!(again.text.contains("Visitor: Can I book a demo?"), "{}", again.text);
    // Her chat of this morning (no lead row then: named by its leadEmail), emailed at noon.
    let jane = m[before + 1..].iter().find(|m| m.subject.contains("jane@example.com")).expect("Jane's chat again");
    let noon = m[..before].iter().find(|m| m.subject.contains("jane@example.com")).expect("emailed at noon");
    assert_eq!(jane.subject, format!("Re: {}", noon.subject), "in that chat's thread");
    assert_eq!(jane.header("X-Chat-State").as_deref(), Some("resumed"));
    assert!(jane.text.contains("phone: +1 555 0100"), "the lead given later: {}", jane.text);
    assert!(!m.iter().any(|m| m.text.contains("Otto")), "an orphan lead is no chat");

    let out = f.run_at("2026-12-08T18:00:00Z", &[], 0);
    assert_eq!((out.stderr.as_str(), server.received().len()), ("", before + 3), "nothing more, quietly");
    let read = &f.state_rows("SELECT read_count FROM progress")[0][0];
    assert_eq!(*read, format!("Integer({})", rows()), "every message and lead read exactly once");
    let now = ["--now", "2026-12-08T18:00:00Z"];
    let leads = f.run(&[&["leads", "--format", "csv"][..], &now].concat());
    assert_eq!(leads.code, 0, "{}", leads.stderr);
    assert!(leads.stdout.contains("Lena Lead") && leads.stdout.contains("lena@example.com"), "{}", leads.stdout);
    assert!(!leads.stdout.contains("otto@example.org"), "an orphan lead: {}", leads.stdout);
    let report = f.run(&[&["report", "--format", "json"][..], &now].concat());
    assert_eq!(report.code, 0, "{}", report.stderr);
    // Among the report's leads, and not among what visitors ask: a lead is no question.
    assert_eq!(report.stdout.matches("\"name\": \"Lena Lead\"").count(), 1, "{}", report.stdout);
    assert_eq!(report.stdout.matches("Lena Lead").count(), 1, "{}", report.stdout);
}

#[test]
fn a_lead_with_no_message_yet_is_emailed_once_quiet_and_its_chat_goes_on_in_the_thread_on_sqlite() {
    let server = SmtpServer::start();
    let f = fw::sqlite(server.port(), "");
    let path = f.dir.path().join("database.sqlite");
    let rows = || {
        let conn = rusqlite::Connection::open(&path).unwrap();
        let sql = "SELECT (SELECT count(*) FROM chat_message) + (SELECT count(*) FROM lead)";
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    };
    // SQLite's datetime('now'): UTC, no fraction.
    let times = ["2026-12-08 13:00:00", "2026-12-08 15:00:02", "2026-12-08 15:00:03"];
    a_lead_alone_is_a_chat(&f, &server, &|sql| fw::sqlite_write(&f, sql), times, &rows);
}

#[test]
fn a_lead_with_no_message_yet_is_emailed_once_quiet_and_its_chat_goes_on_in_the_thread_on_postgres() {
    let server = SmtpServer::start();
    let Some((f, client, _)) = fw::postgres(server.port(), "") else { return };
    let client = std::cell::RefCell::new(client);
    let rows = || client_count(&f);
    // PostgreSQL's now(): microseconds.
    let times = ["2026-12-08 13:00:00.123456", "2026-12-08 15:00:02.5", "2026-12-08 15:00:03"];
    a_lead_alone_is_a_chat(&f, &server, &|sql| client.borrow_mut().batch_execute(sql).unwrap(), times, &rows);
}

/// On SQLite too rows are read by time: a question stamped before its answer and inserted after
/// it, past a run, is read once (within `late_writes`), shown before the answer, and the hourly
/// count takes it for what it is (no alarm).
#[test]
fn a_question_written_after_its_answer_is_read_once_and_in_order_on_sqlite() {
    let server = SmtpServer::start();
    let f = fw::sqlite(server.port(), "");
    let chat = "c0a80001-9003-4a90-8a90-000000000003";
    f.run_at("2026-12-08T12:00:00Z", &[], 0);
    let before = server.received().len();
    let answer =
        Msg::bot("5b0e4a1c-7d2f-4e8a-9c3b-6f1d2e3a4b5c", SUPPORT_BOT, chat, "2026-12-08 13:00:07.250", "We open at 9.");
    fw::sqlite_write(&f, &answer.insert_sql());
    f.run_at("2026-12-08T13:00:08Z", &[], 0);
    let question = Msg::visitor(
        "e2c4f6a8-1b3d-4f5e-8a7c-9d0e1f2a3b4c",
        SUPPORT_BOT,
        chat,
        "2026-12-08 13:00:00.100",
        "When do you open?",
    );
    fw::sqlite_write(&f, &question.insert_sql());
    let out = f.run_at("2026-12-08T14:00:09Z", &[], 0);
    assert_eq!(out.stderr, "", "no alarm");
    let m = mails(&server);
    assert_eq!(m.len(), before + 1);
    let text = &m[before].text;
    assert_eq!(text.matches("Visitor: When do you open?").count(), 1, "{text}");
    assert!(text.find("Visitor: When do you open?").unwrap() < text.find("Bot: We open at 9.").unwrap(), "{text}");
    let conn = rusqlite::Connection::open(f.dir.path().join("database.sqlite")).unwrap();
    let rows: i64 = conn
        .query_row("SELECT (SELECT count(*) FROM chat_message) + (SELECT count(*) FROM lead)", [], |r| r.get(0))
        .unwrap();
    let read = &f.state_rows("SELECT read_count FROM progress")[0][0];
    assert_eq!(*read, format!("Integer({rows})"), "every row read exactly once");
}

/// More rows than one page of each table (10,000), leads and messages at the very same times:
/// each page of both is cut at one whole timestamp, and every row is read exactly once (the
/// hourly count after agrees). The builder's chats and orphan leads: read, silent.
#[test]
fn pages_of_leads_and_messages_at_the_same_times_read_every_row_once() {
    let server = SmtpServer::start();
    let f = fw::sqlite(server.port(), "");
    f.run_at("2026-12-08T12:00:00Z", &[], 0);
    let n = 12_000;
    let at = "strftime('%Y-%m-%d %H:%M:%S', '2026-12-08 13:00:00', '+' || (i / 2) || ' seconds')";
    fw::sqlite_write(
        &f,
        &format!(
            r#"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n})
               INSERT INTO lead (id, chatflowid, name, email, phone, "chatId", "createdDate")
               SELECT printf('00000000-0000-4000-8000-%012d', i), '{OLD_BOT}', 'Otto', 'otto@example.org', '',
                      printf('c0a80001-9100-4a91-8a91-%012d', i), {at} FROM n;
               WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n})
               INSERT INTO chat_message (id, role, chatflowid, content, "createdDate", "chatType", "chatId",
                      "memoryType", "sessionId")
               SELECT printf('00000000-0000-4000-9000-%012d', i), 'userMessage', '{SUPPORT_BOT}', 'test',
                      {at} || '.000', 'INTERNAL', printf('c0a80001-9200-4a92-8a92-%012d', i / 3), 'Buffer Memory',
                      printf('c0a80001-9200-4a92-8a92-%012d', i / 3) FROM n;"#
        ),
    );
    let out = f.run_at("2026-12-08T17:00:00Z", &[], 0);
    assert_eq!(out.stderr, "", "silent");
    let conn = rusqlite::Connection::open(f.dir.path().join("database.sqlite")).unwrap();
    let rows: i64 = conn
        .query_row("SELECT (SELECT count(*) FROM chat_message) + (SELECT count(*) FROM lead)", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 2 * n + 16);
    let read = &f.state_rows("SELECT read_count FROM progress")[0][0];
    assert_eq!(*read, format!("Integer({rows})"), "every row read exactly once");
    assert!(!mails(&server).iter().any(|m| m.text.contains("Otto") || m.text.contains("Visitor: test")));
    let out = f.run_at("2026-12-08T18:30:00Z", &[], 0);
    assert_eq!(out.stderr, "", "the hourly count agrees");
}

/// A row inserted far behind what was read (beyond `late_writes`) is found by the hourly count,
/// which reads the store again whole: a chat that is a lead alone, emailed before, is recognised
/// (not emailed again), leads are counted with the messages, and the row found is emailed once.
#[test]
fn reading_the_store_again_whole_keeps_a_lead_alone_emailed_once() {
    let server = SmtpServer::start();
    let f = fw::sqlite(server.port(), "");
    f.run_at("2026-12-08T12:00:00Z", &[], 0);
    let before = server.received().len();
    let lena = "c0a80001-9010-4a90-8a90-000000000010";
    let lead = NewLead {
        id: "8e1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a01",
        bot: LEAD_BOT,
        chat: lena,
        name: "Lena Lead",
        email: "lena@example.com",
        phone: "",
        at: "2026-12-08 13:00:00",
    };
    fw::sqlite_write(&f, &lead.insert_sql());
    f.run_at("2026-12-08T13:40:00Z", &[], 0);
    assert_eq!(server.received().len(), before + 1);
    let behind = Msg::visitor(
        "8e1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a06",
        SUPPORT_BOT,
        "c0a80001-9012-4a90-8a90-000000000012",
        "2026-12-08 11:00:00.000",
        "Written long after it was stamped",
    );
    fw::sqlite_write(&f, &behind.insert_sql());
    let out = f.run_at("2026-12-08T14:50:00Z", &[], 0);
    assert_eq!(out.stderr.matches("rows were inserted out of id order").count(), 1, "{}", out.stderr);
    let m = mails(&server);
    assert_eq!(m.len(), before + 2, "{:?}", m.iter().map(|m| &m.subject).collect::<Vec<_>>());
    assert!(m[before + 1].text.contains("Visitor: Written long after it was stamped"), "{}", m[before + 1].text);
    let out = f.run_at("2026-12-08T16:00:00Z", &[], 0);
    assert_eq!((out.stderr.as_str(), server.received().len()), ("", before + 2), "nothing more, quietly");
}

/// Leads stamped in the database's zone and messages in the Flowise process's, both not UTC and
/// not each other's: a lead takes its place among the messages by the instant it was given,
/// is read once (the hourly count agrees) and its chat is judged by that instant.
#[test]
fn a_lead_in_the_database_s_zone_sits_among_messages_in_the_process_s_zone() {
    let server = SmtpServer::start();
    let zones = "message_time_zone = \"Europe/Berlin\"\nlead_time_zone = \"America/New_York\"";
    let Some((f, mut client, _)) = fw::postgres(server.port(), zones) else { return };
    client.batch_execute("DELETE FROM chat_message; DELETE FROM lead;").unwrap();
    f.run_at("2026-12-08T12:00:00Z", &[], 0);
    let lena = "c0a80001-9010-4a90-8a90-000000000010";
    // 13:00:00.5 UTC as New York writes it, then a turn at 13:00:05 and 13:00:09 UTC as Berlin does.
    let lead = NewLead {
        id: "8e1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a01",
        bot: LEAD_BOT,
        chat: lena,
        name: "Lena Lead",
        email: "lena@example.com",
        phone: "",
        at: "2026-12-08 08:00:00.5",
    };
    client.batch_execute(&lead.insert_sql()).unwrap();
    let out = f.run_at("2026-12-08T13:00:02Z", &[], 0);
    assert_eq!(out.stderr, "", "the lead is not ahead of the clock");
    for m in [
        Msg::visitor("8e1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a02", LEAD_BOT, lena, "2026-12-08 14:00:05.000", "A demo?"),
        Msg::bot("8e1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a03", LEAD_BOT, lena, "2026-12-08 14:00:09.000", "Sure."),
    ] {
        client.batch_execute(&m.insert_sql()).unwrap();
    }
    f.run_at("2026-12-08T13:00:10Z", &[], 0);
    f.run_at("2026-12-08T13:29:00Z", &[], 0);
    assert_eq!(server.received().len(), 0, "quiet since 13:00:09 UTC only");
    let out = f.run_at("2026-12-08T13:40:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 1, "{}", out.stderr);
    let text = &m[0].text;
    let (form, name, asked) = (
        text.find(&format!("] Lead Bot: {LEAD_TITLE}")).unwrap(),
        text.find("] Visitor: Lena Lead").unwrap(),
        text.find("] Visitor: A demo?").unwrap(),
    );
    assert!(form < name && name < asked, "the form and its answers before her question: {text}");
    assert!(text.contains("Chat started: 2026-12-08 13:00"), "at the lead's instant: {text}");
    let out = f.run_at("2026-12-08T15:00:00Z", &[], 0);
    assert_eq!((out.stderr.as_str(), server.received().len()), ("", 1), "the hourly count agrees");
    let read = &f.state_rows("SELECT read_count FROM progress")[0][0];
    assert_eq!(*read, format!("Integer({})", client_count(&f)), "every row read exactly once");
}

/// A row dated ahead of the clock (a Flowise host's clock set wrong, a row written by hand):
/// left for the run when its time has come, so the watermark never jumps ahead of the clock;
/// the chats written meanwhile are emailed when they go quiet, each once.
fn a_row_ahead_of_the_clock_delays_no_other_chat_and_sends_nothing_twice(
    f: &Fixture,
    server: &SmtpServer,
    write: &dyn Fn(&str),
) {
    f.run_at("2026-12-08T12:00:00Z", &[], 0);
    let before = server.received().len();
    // Every run's stderr, held to be empty at the end (what was sent is asserted first).
    let mut said = String::new();
    let mut run = |now: &str| said.push_str(&f.run_at(now, &[], 0).stderr);
    let (ahead, b, c) = (
        "c0a80001-9020-4a90-8a90-000000000020",
        "c0a80001-9021-4a90-8a90-000000000021",
        "c0a80001-9022-4a90-8a90-000000000022",
    );
    write(&format!(
        "{}{}{}",
        Msg::visitor(
            "9e1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a01",
            LEAD_BOT,
            ahead,
            "2026-12-08 14:30:00.000",
            "two hours ahead"
        )
        .insert_sql(),
        Msg::visitor("9e1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a02", LEAD_BOT, b, "2026-12-08 12:01:00.000", "Chat B asks")
            .insert_sql(),
        Msg::bot("9e1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a03", LEAD_BOT, b, "2026-12-08 12:01:05.000", "B answered")
            .insert_sql(),
    ));
    run("2026-12-08T12:02:00Z");
    assert_eq!(server.received().len(), before, "active");
    write(&format!(
        "{}{}",
        Msg::visitor("9e1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a04", LEAD_BOT, c, "2026-12-08 12:20:00.000", "Chat C asks")
            .insert_sql(),
        Msg::bot("9e1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a05", LEAD_BOT, c, "2026-12-08 12:20:05.000", "C answered")
            .insert_sql(),
    ));
    run("2026-12-08T12:40:00Z");
    let m = mails(server);
    assert_eq!(m.len(), before + 1, "B went quiet");
    assert!(m[before].text.contains("Visitor: Chat B asks"), "{}", m[before].text);
    run("2026-12-08T12:55:00Z");
    let m = mails(server);
    assert_eq!(m.len(), before + 2, "C went quiet at 12:50: emailed now, not at the hourly count");
    assert!(m[before + 1].text.contains("Visitor: Chat C asks"), "{}", m[before + 1].text);
    for now in ["2026-12-08T13:10:00Z", "2026-12-08T14:00:00Z"] {
        run(now);
        assert_eq!(server.received().len(), before + 2, "nothing new at {now}");
    }
    // Its time has come: read, and emailed once quiet.
    run("2026-12-08T14:35:00Z");
    assert_eq!(server.received().len(), before + 2, "active at 14:35");
    run("2026-12-08T15:10:00Z");
    let m = mails(server);
    assert_eq!(m.len(), before + 3, "{:?}", m.iter().map(|m| &m.subject).collect::<Vec<_>>());
    assert!(m[before + 2].text.contains("Visitor: two hours ahead"), "{}", m[before + 2].text);
    run("2026-12-08T18:00:00Z");
    assert_eq!(server.received().len(), before + 3, "nothing more");
    assert_eq!(said, "", "every run quiet: no row read ahead of the clock, no resync");
}

#[test]
fn a_row_ahead_of_the_clock_delays_no_other_chat_and_sends_nothing_twice_on_sqlite() {
    let server = SmtpServer::start();
    let f = fw::sqlite(server.port(), "");
    a_row_ahead_of_the_clock_delays_no_other_chat_and_sends_nothing_twice(&f, &server, &|sql| {
        fw::sqlite_write(&f, sql)
    });
}

#[test]
fn a_row_ahead_of_the_clock_delays_no_other_chat_and_sends_nothing_twice_on_postgres() {
    let server = SmtpServer::start();
    let Some((f, client, _)) = fw::postgres(server.port(), "") else { return };
    let client = std::cell::RefCell::new(client);
    a_row_ahead_of_the_clock_delays_no_other_chat_and_sends_nothing_twice(&f, &server, &|sql| {
        client.borrow_mut().batch_execute(sql).unwrap()
    });
}

/// A row dated years ahead is named by `check` as the other bad rows are (its rowid and id on
/// SQLite, its id on PostgreSQL), and left unread by runs until its time.
fn check_names_a_row_dated_far_ahead(f: &Fixture, write: &dyn Fn(&str), named: &str) {
    let id = "9e1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a10";
    write(
        &Msg::visitor(id, LEAD_BOT, "c0a80001-9023-4a90-8a90-000000000023", "2099-01-01 00:00:00.000", "far")
            .insert_sql(),
    );
    let out = f.run(&["check"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let line =
        out.stderr.lines().find(|l| l.contains("ahead of the clock")).unwrap_or_else(|| panic!("{}", out.stderr));
    assert!(
        line.contains(named) && line.contains("2099-01-01 00:00:00") && line.contains("1 chat_message row"),
        "{line}"
    );
    let out = f.run_at("2026-12-08T12:00:00Z", &[], 0);
    assert!(!out.stderr.contains("ahead"), "runs leave it for its time: {}", out.stderr);
}

#[test]
fn check_names_a_row_dated_far_ahead_on_sqlite() {
    let server = SmtpServer::start();
    let f = fw::sqlite(server.port(), "");
    check_names_a_row_dated_far_ahead(
        &f,
        &|sql| fw::sqlite_write(&f, sql),
        "row 15 (id 9e1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a10)",
    );
}

#[test]
fn check_names_a_row_dated_far_ahead_on_postgres() {
    let server = SmtpServer::start();
    let Some((f, client, _)) = fw::postgres(server.port(), "") else { return };
    let client = std::cell::RefCell::new(client);
    check_names_a_row_dated_far_ahead(
        &f,
        &|sql| client.borrow_mut().batch_execute(sql).unwrap(),
        "row 9e1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a10",
    );
}

/// The lead form's line is a chat's only where the chat has a lead: the widget shows the form
/// once, and keeps the lead in the browser after "clear chat" (Jane's chat of the next day has
/// her `leadEmail` and no lead row), so that chat never saw the form.
#[test]
fn the_lead_form_line_is_only_in_a_chat_with_a_lead() {
    let server = SmtpServer::start();
    let f = fw::sqlite(server.port(), "");
    // The next day's chat is inserted the next day, as in the fixture's story.
    fw::sqlite_write(
        &f,
        "CREATE TABLE day_two AS SELECT * FROM chat_message WHERE \"chatId\" = 'c0a80001-2222-4a22-8a22-000000000002';
         DELETE FROM chat_message WHERE \"chatId\" = 'c0a80001-2222-4a22-8a22-000000000002';",
    );
    f.run_at("2026-12-07T12:00:00Z", &[], 0);
    fw::sqlite_write(&f, "INSERT INTO chat_message SELECT * FROM day_two; DROP TABLE day_two;");
    f.run_at("2026-12-08T12:00:00Z", &[], 0);
    let m = mails(&server);
    let first = m.iter().find(|m| m.text.contains("How much does the Pro plan cost?")).expect("Jane's first chat");
    assert!(first.text.contains(LEAD_TITLE), "her lead: the form {}", first.text);
    let again = m.iter().find(|m| m.text.contains("Hi again")).expect("Jane's chat after clear chat");
    assert!(!again.text.contains(LEAD_TITLE), "no lead row, no form: {}", again.text);
    let report = f.run(&["report", "--now", "2026-12-08T12:00:00Z"]);
    assert_eq!(report.code, 0, "{}", report.stderr);
    let reached: Vec<&str> = report
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("lead form"))
        .map(|l| l.split_whitespace().nth(2).unwrap_or_default())
        .collect();
    assert_eq!(reached, ["1"], "one of Lead Bot's two chats saw the form:\n{}", report.stdout);
}

/// Flowise writing (a transaction holding its SQLite file past the busy timeout) is no other
/// database: run and check say the file is locked, and the next run reads it.
#[test]
fn a_locked_sqlite_file_is_said_to_be_locked_and_the_next_run_goes_on() {
    let server = SmtpServer::start();
    let f = fw::sqlite(server.port(), "");
    let writer = rusqlite::Connection::open(f.dir.path().join("database.sqlite")).unwrap();
    writer.execute_batch("BEGIN EXCLUSIVE").unwrap();
    for args in [&["check"][..], &["run", "--now", "2026-12-07T12:00:00Z"]] {
        let out = f.run(args);
        assert_eq!(out.code, 1, "{args:?}: {}{}", out.stdout, out.stderr);
        let said = format!("{}{}", out.stdout, out.stderr);
        let line = said.lines().find(|l| l.contains("database.sqlite")).unwrap_or_else(|| panic!("{args:?}: {said}"));
        assert!(line.contains("is locked") && !line.contains("not a Flowise database"), "{args:?}: {line}");
    }
    assert_eq!(server.received().len(), 0);
    writer.execute_batch("COMMIT").unwrap();
    let out = f.run_at("2026-12-07T12:00:00Z", &[], 0);
    assert_eq!(
        (out.stderr.lines().filter(|l| l.contains("locked")).count(), mails(&server).len()),
        (0, 2),
        "{}",
        out.stderr
    );
}

/// A chatflow deleted (Flowise deletes its messages with it) while a turn was being answered:
/// the chat read last is gone, and the rows written for it after are named once each in the
/// run that finds them (not again by the look for what was erased), and never after.
#[test]
fn rows_of_a_chatflow_deleted_before_they_were_written_are_named_once() {
    let server = SmtpServer::start();
    let f = fw::sqlite(server.port(), "");
    f.run_at("2026-12-08T12:00:00Z", &[], 0);
    let chat = "c0a80001-9024-4a90-8a90-000000000024";
    let row =
        |id, at, role: fn(&'static str, &'static str, &'static str, &'static str, &'static str) -> Msg<'static>| {
            role(id, SUPPORT_BOT, chat, at, "words").insert_sql()
        };
    fw::sqlite_write(
        &f,
        &format!(
            "{}{}",
            row("9e1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a21", "2026-12-08 12:01:00.000", Msg::visitor),
            row("9e1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a22", "2026-12-08 12:01:05.000", Msg::bot)
        ),
    );
    let mut said = f.run_at("2026-12-08T12:02:00Z", &[], 0).stderr;
    fw::sqlite_write(
        &f,
        &format!(
            "DELETE FROM chat_flow WHERE id = '{SUPPORT_BOT}'; DELETE FROM chat_message WHERE chatflowid = '{SUPPORT_BOT}';{}{}",
            row("9e1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a23", "2026-12-08 12:03:00.000", Msg::visitor),
            row("9e1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a24", "2026-12-08 12:03:05.000", Msg::bot)
        ),
    );
    for now in ["2026-12-08T12:05:00Z", "2026-12-08T12:40:00Z", "2026-12-08T14:00:00Z"] {
        said.push_str(&f.run_at(now, &[], 0).stderr);
    }
    for row in ["9e1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a23", "9e1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a24"] {
        assert_eq!(said.lines().filter(|l| l.contains(row) && l.contains("is gone")).count(), 1, "{row}: {said}");
    }
    assert_eq!(said.lines().count(), 2, "{said}");
}

/// A `createdDate` SQLite reads as a time but not in Flowise's form (a date alone, a Julian day
/// as a REAL): read at the time SQLite reads (the place the queries order it at), and named by
/// `check`.
#[test]
fn a_created_date_in_another_form_is_read_at_its_time_and_named_by_check() {
    let server = SmtpServer::start();
    let f = fw::sqlite(server.port(), "");
    f.run_at("2026-12-08T12:00:00Z", &[], 0);
    let (day, julian) = ("c0a80001-9025-4a90-8a90-000000000025", "c0a80001-9026-4a90-8a90-000000000026");
    fw::sqlite_write(
        &f,
        &format!(
            "{}{}",
            Msg::visitor("9e1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a31", LEAD_BOT, day, "2026-12-09", "A date alone")
                .insert_sql(),
            // 2461384.0: 2026-12-09 12:00 UTC.
            Msg::visitor("9e1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a32", LEAD_BOT, julian, "2026-12-08", "A Julian day")
                .insert_sql()
                .replace("'2026-12-08'", "2461384.0"),
        ),
    );
    let check = f.run(&["check"]);
    assert_eq!(check.code, 0, "{}{}", check.stdout, check.stderr);
    assert!(
        check.stderr.contains("2 chat_message row(s) have a createdDate not in Flowise's form")
            && check.stderr.contains("row 15 (id 9e1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a31), createdDate \"2026-12-09\""),
        "{}",
        check.stderr
    );
    let mut said = String::new();
    for now in ["2026-12-09T00:05:00Z", "2026-12-09T12:01:00Z", "2026-12-09T13:00:00Z"] {
        said.push_str(&f.run_at(now, &[], 0).stderr);
    }
    let m = mails(&server);
    for text in ["Visitor: A date alone", "Visitor: A Julian day"] {
        assert_eq!(m.iter().filter(|m| m.text.contains(text)).count(), 1, "{text}: {said}");
    }
    assert_eq!(said, "", "read as any row");
}
