//! Typebot as a source, on a real PostgreSQL server (the test cluster, `support::pg`) holding
//! Typebot's tables, a published lead flow and results written the way the engine writes them
//! (`support::typebot`), through the built binary.

mod support;

use chat_notifier::source::typebot;
use serde_json::json;
use support::typebot::{ASK_EMAIL, ASK_NAME, ASK_PHONE, CLOSING, LEAD_BOT, RESULT_INDEX, WELCOME};
use support::{Fixture, SmtpServer, mails, pg};

#[test]
fn the_lead_path_gives_two_emails_in_one_thread_with_the_flow_s_own_words() {
    let server = SmtpServer::start();
    let Some((f, mut db, _)) = Fixture::typebot(server.port(), "") else { return };
    db.lead_who_leaves("res_jane", "Jane Doe", "jane@example.com", 0);
    f.run_at("2026-11-24T09:10:00Z", &[], 0);
    assert!(server.received().is_empty(), "still within abandon_after");
    f.run_at("2026-11-24T09:31:00Z", &[], 0);
    db.finishes("res_jane", "+15550100", "2026-11-24T10:00:00Z");
    f.run_at("2026-11-24T10:01:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 2, "abandoned, then completed");
    assert!(m[0].subject.starts_with("Lead Bot: chat with Jane Doe [#"), "{}", m[0].subject);
    assert_eq!(m[0].reply_to.as_deref(), Some("jane@example.com"));
    assert_eq!(m[0].header("X-Chat-Bot").as_deref(), Some(LEAD_BOT));
    assert!(m[0].text.contains(&format!("at step i_phone (\"{ASK_PHONE}\")")), "{}", m[0].text);
    // The bot's lines are the flow's bubbles, its variables filled in, in the chat's order.
    let bot_lines: Vec<&str> = m[1].text.lines().filter_map(|l| l.split_once("] Lead Bot: ").map(|(_, t)| t)).collect();
    assert_eq!(
        bot_lines,
        [WELCOME, ASK_NAME, &ASK_EMAIL.replace("{{Name}}", "Jane Doe"), ASK_PHONE, CLOSING],
        "{}",
        m[1].text
    );
    assert!(m[1].text.contains("[2026-11-24 10:00] Visitor: +15550100"), "{}", m[1].text);
    assert_eq!(m[1].subject, format!("Re: {}", m[0].subject));
    assert_eq!(m[1].in_reply_to.as_deref(), Some(m[0].message_id.as_str()));
    assert!(m[1].text.contains("came back and finished"), "{}", m[1].text);
    let out = f.run_at("2026-11-25T10:00:00Z", &[], 0);
    assert_eq!((out.stderr.as_str(), server.received().len()), ("", 2), "nothing more, quietly");
}

/// Typebot records completion by flipping `isCompleted` on the result, with no row and no
/// time: a run finds it among the open chats, before abandon_after could call them abandoned.
#[test]
fn a_completion_is_found_by_the_in_place_flip() {
    let server = SmtpServer::start();
    let Some((f, mut db, _)) = Fixture::typebot(server.port(), "") else { return };
    db.lead_who_leaves("res_sam", "Sam Lee", "sam@example.com", 0);
    db.answer("res_sam", "i_phone", "+15550199", "2026-11-24T09:00:30Z");
    f.run_at("2026-11-24T09:01:00Z", &[], 0);
    assert!(server.received().is_empty(), "answered everything, not flagged yet: in progress");
    db.complete("res_sam");
    f.run_at("2026-11-24T09:02:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].header("X-Chat-State").as_deref(), Some("completed"));
    assert!(m[0].text.contains(CLOSING), "{}", m[0].text);
    f.run_at("2026-11-24T12:00:00Z", &[], 0);
    assert_eq!(server.received().len(), 1, "completed once, never abandoned after");
}

#[test]
fn fields_follow_the_owner_s_mapping_and_people_are_who_they_say_they_are() {
    let server = SmtpServer::start();
    let Some((f, mut db, _)) = Fixture::typebot(server.port(), "fields = { email = \"Work email\" }") else { return };
    // This flow keeps the email in a variable of another name, set by a block, not an input;
    // a hidden field came with the page.
    db.start("res_1", LEAD_BOT, "2026-11-24T09:00:00Z");
    db.answer("res_1", "i_name", "Ana Souza", "2026-11-24T09:00:10Z");
    db.set_variable("res_1", "v_work", "Work email", json!("ana@acme.example"));
    db.set_variable("res_1", "v_utm", "utm_source", json!("newsletter"));
    f.run_at("2026-11-24T09:31:00Z", &[], 0);
    // The next day, a new result (Typebot keeps no visitor id) with the same email.
    db.start("res_2", LEAD_BOT, "2026-11-25T09:00:00Z");
    db.answer("res_2", "i_name", "Ana", "2026-11-25T09:00:10Z");
    db.set_variable("res_2", "v_work", "Work email", json!("ANA@acme.example "));
    f.run_at("2026-11-25T09:31:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 2);
    assert_eq!(m[0].reply_to.as_deref(), Some("ana@acme.example"), "the mapped variable is the email");
    assert!(m[0].text.contains("utm_source: newsletter"), "{}", m[0].text);
    assert!(m[1].text.contains(support::identifier(&m[0].subject)), "the same person: {}", m[1].text);
}

/// Results from before "AnswerV2" keep their answers in the legacy "Answer" table: shown first.
#[test]
fn legacy_answers_show_before_the_new_ones() {
    let server = SmtpServer::start();
    let Some((f, mut db, _)) = Fixture::typebot(server.port(), "") else { return };
    db.start("res_old", LEAD_BOT, "2026-11-24T09:00:00Z");
    db.client
        .batch_execute(
            r#"INSERT INTO "Answer" ("createdAt", "resultId", "blockId", "groupId", "variableId", content)
               VALUES ('2026-11-24 09:00:10', 'res_old', 'i_name', 'g_lead', 'v_name', 'Old Timer')"#,
        )
        .unwrap();
    db.answer("res_old", "i_email", "old@example.com", "2026-11-24T09:00:20Z");
    f.run_at("2026-11-24T09:31:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 1);
    let visitor: Vec<&str> = m[0].text.lines().filter(|l| l.contains("] Visitor: ")).collect();
    assert_eq!(visitor, ["[2026-11-24 09:00] Visitor: Old Timer", "[2026-11-24 09:00] Visitor: old@example.com"]);
}

/// Bad input: each one line naming what and where, skipped, and nothing else lost.
#[test]
fn bad_rows_and_flows_are_named_once_and_skipped() {
    let server = SmtpServer::start();
    let Some((f, mut db, url)) = Fixture::typebot(server.port(), "") else { return };
    // A typebot whose published flow has a shape this version does not know.
    db.publish("clx_newer", "Newer Bot", &json!({"nodes": []}));
    db.start("res_newer", "clx_newer", "2026-11-24T09:00:00Z");
    db.answer("res_newer", "n_1", "hello from a newer flow", "2026-11-24T09:00:05Z");
    // A variable holding a list; an answer with empty content.
    db.lead_who_leaves("res_list", "Lia", "lia@example.com", 1);
    db.set_variable("res_list", "v_tags", "Tags", json!(["a", "b"]));
    let empty = db.answer("res_list", "i_phone", "  ", "2026-11-24T09:01:30Z");
    // A result whose typebot is gone (a database without Typebot's foreign keys).
    let mut admin = pg::cluster().unwrap().client(&url);
    admin.batch_execute(r#"ALTER TABLE "Result" DROP CONSTRAINT "Result_typebotId_fkey""#).unwrap();
    db.start("res_orphan", "clx_deleted", "2026-11-24T09:02:00Z");
    let orphan = db.answer("res_orphan", "i_name", "Olga", "2026-11-24T09:02:10Z");
    // An answer to a block since edited out of the flow.
    db.lead_who_leaves("res_edited", "Eve", "eve@example.com", 3);
    db.answer("res_edited", "i_removed", "an answer to an old question", "2026-11-24T09:03:30Z");

    let out = f.run_at("2026-11-24T10:00:00Z", &[], 0);
    let stderr = out.stderr_past_first_run();
    let warnings: Vec<&str> = stderr.lines().collect();
    let expected_rows = [
        format!("\"AnswerV2\" row {empty} skipped: an empty answer"),
        format!("\"AnswerV2\" row {orphan} skipped: its result \"res_orphan\"'s typebot \"clx_deleted\" is gone"),
    ];
    for expected in &expected_rows {
        assert_eq!(warnings.iter().filter(|w| w.contains(expected.as_str())).count(), 1, "{expected}: {warnings:#?}");
    }
    assert_eq!(
        warnings.iter().filter(|w| w.contains("typebot clx_newer has a shape chat-notifier does not know")).count(),
        1,
        "{warnings:#?}"
    );
    assert_eq!(
        warnings.iter().filter(|w| w.contains("result res_list: variable \"Tags\" holds a list")).count(),
        1,
        "{warnings:#?}"
    );
    assert_eq!(warnings.len(), 4, "{warnings:#?}");
    let m = mails(&server);
    let about =
        |name: &str| m.iter().find(|m| m.text.contains(name)).unwrap_or_else(|| panic!("no email about {name}"));
    assert!(about("hello from a newer flow").subject.starts_with("Newer Bot: "), "the answers alone, still emailed");
    assert!(about("Lia").text.contains("lia@example.com"));
    assert!(about("Eve").text.contains("Visitor: an answer to an old question"), "an answer whose block is gone");
    assert_eq!(m.len(), 3, "Olga's answer has no bot to email about");
    let out = f.run_at("2026-11-24T11:00:00Z", &[], 0);
    assert_eq!(out.stderr, "", "each said once");
}

#[test]
fn a_database_of_another_typebot_version_is_named_by_check() {
    let server = SmtpServer::start();
    let Some((f, _db, url)) = Fixture::typebot(server.port(), "") else { return };
    // Typebot's first "AnswerV2" had no "createdAt".
    let mut admin = pg::cluster().unwrap().client(&url);
    admin.batch_execute(r#"ALTER TABLE "AnswerV2" DROP COLUMN "createdAt""#).unwrap();
    let out = f.run(&["check"]);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let line = out.stdout.lines().find(|l| l.starts_with("source")).unwrap_or_default();
    assert!(
        line.contains("FAILED  typebot postgresql://postgres@127.0.0.1:")
            && line.contains("not a Typebot database this version reads")
            && line.contains("\"AnswerV2\" (id, \"createdAt\", \"blockId\", content, \"resultId\")"),
        "{}",
        out.stdout
    );
}

/// status, preview, report, leads and check all read Typebot.
#[test]
fn every_command_works_on_typebot() {
    let server = SmtpServer::start();
    let Some((f, mut db, _)) = Fixture::typebot(server.port(), "") else { return };
    db.lead_who_leaves("res_jane", "Jane Doe", "jane@example.com", 0);
    db.lead_who_leaves("res_sam", "Sam Lee", "sam@example.com", 5);
    db.finishes("res_sam", "+15550199", "2026-11-24T09:06:00Z");
    let check = f.run(&["check"]);
    assert!(check.stdout.contains("(Typebot): 1 typebot(s), 1 published, 5 answers"), "{}", check.stdout);
    assert!(check.stdout.contains("no index on \"AnswerV2\"(\"resultId\")"), "{}", check.stdout);
    let dry = f.run_at("2026-11-24T09:40:00Z", &["--dry-run"], 0);
    assert!(dry.stdout.contains("Subject: Lead Bot: chat with Jane Doe"), "{}", dry.stdout);
    f.run_at("2026-11-24T09:40:00Z", &[], 0);
    assert_eq!(server.received().len(), 2);
    let status = f.run(&["status", "--now", "2026-11-24T09:41:00Z"]);
    assert!(
        status.stdout.starts_with("0 parked, 0 failed, 0 pending, 0 waiting, 0 held, 2 notified"),
        "{}",
        status.stdout
    );
    assert!(status.stdout.lines().any(|l| l.contains("Lead Bot") && l.contains("Jane Doe")), "{}", status.stdout);
    let report = f.run(&["report", "--now", "2026-11-24T12:00:00Z", "--format", "json"]);
    assert_eq!(report.code, 0, "{}", report.stderr);
    let json: serde_json::Value = serde_json::from_str(&report.stdout).unwrap();
    let bot = &json["bots"][0];
    assert_eq!(
        (bot["bot_name"].as_str(), bot["conversations"].as_u64(), bot["completed"].as_u64()),
        (Some("Lead Bot"), Some(2), Some(1))
    );
    // Steps are named by the question asked there.
    let phone = bot["steps"].as_array().unwrap().iter().find(|s| s["step"] == "i_phone").expect("the phone step");
    assert_eq!(phone["question"].as_str(), Some(ASK_PHONE), "{phone}");
    let leads = f.run(&["leads", "--now", "2026-11-24T12:00:00Z", "--format", "csv"]);
    assert!(leads.stdout.contains("Jane Doe,jane@example.com,,Lead Bot,i_phone,"), "{}", leads.stdout);
    assert!(!leads.stdout.contains("sam@example.com"), "Sam finished: not a lead to follow up");
    let jane = mails(&server).into_iter().find(|m| m.subject.contains("Jane")).unwrap();
    let preview = f.run(&["preview", "--last", support::identifier(&jane.subject)]);
    assert_eq!(preview.code, 0, "{}", preview.stderr);
    assert!(preview.stdout.contains("at step i_phone (\"And a phone number to reach you?\")"), "{}", preview.stdout);
}

/// Every query a run makes is served by an index once the recommended one on "resultId"
/// exists: with sequential scans priced out, a plan that still scans has none to use.
#[test]
fn no_query_a_run_makes_scans_typebot_s_tables() {
    let Some(cluster) = pg::cluster() else { return };
    let url = cluster.database();
    let mut client = cluster.client(&url);
    client.batch_execute(support::typebot::SCHEMA).unwrap();
    client.batch_execute(RESULT_INDEX).unwrap();
    for (sql, params) in typebot::queries() {
        let plan = pg::plan(&mut client, sql, &params);
        assert!(!plan.contains("Seq Scan"), "{sql}\n{plan}");
    }
}

/// Typebot's times are PostgreSQL timestamps, which hold `infinity`, `-infinity` and years past
/// what chat-notifier's times can hold: an answer at such a time is a bad row, named once and
/// skipped; a result created then is a chat like another, its start unknown. Nothing else lost.
#[test]
fn an_answer_at_infinity_is_a_bad_row_named_once() {
    let server = SmtpServer::start();
    let Some((f, mut db, _)) = Fixture::typebot(server.port(), "") else { return };
    db.lead_who_leaves("res_jane", "Jane Doe", "jane@example.com", 0);
    db.start("res_ivy", LEAD_BOT, "2026-11-24T09:01:00Z");
    db.answer("res_ivy", "i_name", "Ivy Chen", "2026-11-24T09:01:10Z");
    let mut bad = Vec::new();
    for value in ["infinity", "-infinity", "294276-12-31 23:59:59.999"] {
        let id: i32 = db
            .client
            .query_one(
                r#"INSERT INTO "AnswerV2" ("createdAt", "blockId", content, "resultId")
                   VALUES ($1::text::timestamp, 'i_email', 'ivy@example.com', 'res_ivy') RETURNING id"#,
                &[&value],
            )
            .unwrap()
            .get(0);
        bad.push(id);
    }
    db.lead_who_leaves("res_sam", "Sam Lee", "sam@example.com", 2);
    db.client.batch_execute(r#"UPDATE "Result" SET "createdAt" = '-infinity' WHERE id = 'res_sam'"#).unwrap();

    let out = f.run_at("2026-11-24T10:00:00Z", &[], 0);
    let stderr = out.stderr_past_first_run();
    let warnings: Vec<&str> = stderr.lines().collect();
    for (id, value) in [(bad[0], "infinity"), (bad[1], "-infinity"), (bad[2], "+294276-12-31T23:59:59.999+00:00")] {
        let line = format!("\"AnswerV2\" row {id} skipped: createdAt {value:?} is not a time");
        assert_eq!(warnings.iter().filter(|w| w.ends_with(&line)).count(), 1, "{line} in {warnings:#?}");
    }
    assert_eq!(warnings.len(), 3, "{warnings:#?}");
    let m = mails(&server);
    assert_eq!(m.len(), 3, "every chat emailed: {:?}", m.iter().map(|m| &m.subject).collect::<Vec<_>>());
    let ivy = m.iter().find(|m| m.subject.contains("Ivy Chen")).unwrap();
    assert!(!ivy.text.contains("ivy@example.com"), "the bad answers are left out: {}", ivy.text);
    let sam = m.iter().find(|m| m.subject.contains("Sam Lee")).unwrap();
    assert!(sam.text.contains(&format!("[2026-11-24 09:02] Lead Bot: {WELCOME}")), "{}", sam.text);
    let out = f.run_at("2026-11-24T11:00:00Z", &[], 0);
    assert_eq!(out.stderr, "", "each bad row is reported once");
    let report = f.run(&["report", "--now", "2026-11-24T12:00:00Z", "--format", "json"]);
    assert_eq!(report.code, 0, "{}", report.stderr);
    let status = f.run(&["status", "--now", "2026-11-24T12:00:00Z"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
}
