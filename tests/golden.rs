//! Whole emails pinned as golden files (`tests/golden/*.eml`), reviewed in diffs: each state,
//! a reply in a thread, a returning visitor, a digest, an alert and its all-clear, a flood
//! summary. A `.contains` check passes while the rest of an email is wrong; these do not. The
//! message is compared as the SMTP server on 127.0.0.1 received it, byte for byte, except the
//! MIME boundary (random per email), written `BOUNDARY`. After an intended change:
//! `GOLDEN_UPDATE=1 cargo test --test golden`, then read the diff.

mod support;

use std::path::PathBuf;

use support::{Fixture, Received, SmtpServer};

/// The message with its MIME boundary made constant.
fn normalized(r: &Received) -> String {
    let text = r.text();
    let boundary = text.split("boundary=\"").nth(1).and_then(|rest| rest.split('"').next()).map(str::to_owned);
    match boundary {
        Some(b) => text.replace(&b, "BOUNDARY"),
        None => text,
    }
}

/// Compares each message with its golden file, or writes them under `GOLDEN_UPDATE=1`.
fn pin(server: &SmtpServer, names: &[&str]) {
    let received = server.received();
    let subjects: Vec<String> = received
        .iter()
        .map(|r| r.text().lines().find(|l| l.starts_with("Subject:")).unwrap_or_default().to_owned())
        .collect();
    assert_eq!(received.len(), names.len(), "one golden file per email received: {subjects:#?}");
    let update = std::env::var_os("GOLDEN_UPDATE").is_some();
    let mut wrong = Vec::new();
    for (r, name) in received.iter().zip(names) {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(format!("{name}.eml"));
        let actual = normalized(r);
        if update {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if actual != expected {
            let line = actual.lines().zip(expected.lines()).position(|(a, e)| a != e).unwrap_or(0);
            wrong.push(format!(
                "{name}: differs from {} at line {}:\n  got:      {:?}\n  expected: {:?}",
                path.display(),
                line + 1,
                actual.lines().nth(line).unwrap_or_default(),
                expected.lines().nth(line).unwrap_or_default()
            ));
        }
    }
    assert!(wrong.is_empty(), "{}\n(GOLDEN_UPDATE=1 rewrites them; review the diff)", wrong.join("\n"));
}

#[test]
fn the_emails_of_a_lead_a_finished_chat_a_return_and_a_returning_visitor() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    // Jane leaves at the phone question: abandoned.
    f.lead_who_leaves("jane", "Jane <b>Doe</b>", "jane@example.com", 0);
    // Sam finishes in one go: completed.
    f.conversation("sam", "2026-11-24T09:05:00Z");
    f.bot("sam", "2026-11-24T09:05:00Z", "ask_name", "text", "What's your name?");
    f.visitor("sam", "2026-11-24T09:05:10Z", Some("name"), "Sam Lee");
    f.bot("sam", "2026-11-24T09:05:11Z", "ask_email", "email", "Your email?");
    f.visitor("sam", "2026-11-24T09:05:20Z", Some("email"), "sam@example.com");
    f.end("sam", "2026-11-24T09:05:21Z");
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    // Jane comes back and finishes: a reply in her thread.
    f.visitor("jane", "2026-11-24T11:00:00Z", Some("phone"), "+49 30 1234567");
    f.end("jane", "2026-11-24T11:00:01Z");
    f.run_at("2026-11-24T11:05:00Z", &[], 0);
    // Sam writes again after his email and leaves: resumed.
    f.visitor("sam", "2026-11-24T12:00:00Z", None, "One more thing: do you ship to Canada?");
    f.run_at("2026-11-24T13:00:00Z", &[], 0);
    // Jane, the same visitor, opens a second chat a day later and leaves it.
    f.sql(
        "INSERT INTO conversations VALUES ('jane2', 'lead', 'visitor-jane', '2026-11-25T09:00:00Z', \
         'https://example.com/contact')",
    );
    f.bot("jane2", "2026-11-25T09:00:00Z", "ask_name", "text", "What's your name?");
    f.visitor("jane2", "2026-11-25T09:00:10Z", Some("name"), "Jane Doe");
    f.run_at("2026-11-25T10:00:00Z", &[], 0);
    pin(&server, &["abandoned", "completed", "completed-reply", "resumed", "returning-visitor"]);
}

#[test]
fn the_emails_about_no_one_conversation() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.write_config(server.port(), "alert_if_silent = \"6h\"");
    f.mail_setting("burst = 2");
    for (i, name) in ["Ann", "Ben", "Cy"].iter().enumerate() {
        f.lead_who_leaves(&format!("c{i}"), name, &format!("{}@example.com", name.to_lowercase()), i as u32);
    }
    f.run_at("2026-11-24T10:00:00Z", &[], 0); // two one by one, one in a summary
    f.run_at("2026-11-24T16:00:00Z", &[], 0); // silent since 09:02: the alert
    f.lead_who_leaves("c3", "Dee", "dee@example.com", 0);
    f.sql(
        "UPDATE messages SET sent_at = replace(sent_at, 'T09', 'T17') WHERE conversation_id = 'c3'; \
         UPDATE conversations SET started_at = replace(started_at, 'T09', 'T17') WHERE id = 'c3'",
    );
    f.run_at("2026-11-24T17:45:00Z", &[], 0); // the all-clear, and Dee's own email
    pin(&server, &["flood-1", "flood-2", "flood-summary", "alert", "all-clear", "after-the-alarm"]);

    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.daily_digest(server.port());
    f.gives_name_only("anon1", "Ann", "2026-11-24T10:00:00Z");
    f.gives_name_only("anon2", "Ben", "2026-11-24T11:00:00Z");
    f.run_at("2026-11-24T12:00:00Z", &[], 0);
    f.run_at("2026-11-25T08:00:00Z", &[], 0);
    pin(&server, &["digest"]);
}

/// An LLM bot's chats (no last step, markdown answers), through the run the binary makes with
/// such a source (`support::llm`): a lead who asked about prices and went quiet (ended, never
/// "left midway"), came back the next day (resumed, in the same thread), and a chat the bot
/// finished (its `complete_on` matched), judged only once quiet.
#[test]
fn the_emails_of_an_llm_bot_ended_resumed_and_completed() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.conversation("ana", "2026-11-24T09:00:00Z");
    f.bot("ana", "2026-11-24T09:00:00Z", "lead form", "text", "Before we start: how can we reach you?");
    f.visitor("ana", "2026-11-24T09:00:20Z", Some("name"), "Ana Souza");
    f.visitor("ana", "2026-11-24T09:00:20Z", Some("email"), "ana@example.com");
    f.visitor("ana", "2026-11-24T09:00:20Z", Some("phone"), "+55 11 91234 5678");
    f.visitor("ana", "2026-11-24T09:01:00Z", None, "How much is it for a team of 20?");
    f.answer(
        "ana",
        "2026-11-24T09:01:09Z",
        1,
        "## Our plans\n\nFor **20 people**, two plans fit:\n\n| Plan | Per seat | 20 seats |\n|:--|--:|--:|\n\
         | Team | $12 | $240 |\n| Business | $20 | $400 |\n\n- *Team*: chat and email support\n\
         - *Business*: SSO, audit log and `priority` support\n\n> Prices are per month, billed yearly.\n\n\
         See [all plans](https://example.com/pricing) or <script>alert('x')</script> \
         ![a chart](https://tracker.example/open.gif).",
    );
    f.conversation("ben", "2026-11-24T09:10:00Z");
    f.visitor("ben", "2026-11-24T09:10:00Z", None, "Can I book a demo for Thursday?");
    f.bot("ben", "2026-11-24T09:10:05Z", "message 1", "end_conversation", "Booked: **Thursday 10:00**. See you then!");
    f.visitor("ben", "2026-11-24T09:10:30Z", None, "Great, thanks");
    // 09:35: Ben's demo is booked but he wrote 5 minutes ago: nothing yet. Ana is quiet: ended.
    assert_eq!(f.run_llm_at("2026-11-24T09:35:00Z"), 1);
    // Ben quiet too now: completed, not ended.
    assert_eq!(f.run_llm_at("2026-11-24T09:45:00Z"), 1);
    // Ana comes back the next day with one more question, and goes quiet again.
    f.visitor("ana", "2026-11-25T14:00:00Z", None, "Is there a discount for nonprofits?");
    f.answer("ana", "2026-11-25T14:00:06Z", 2, "Yes: **30% off** any plan. Reply with your registration number.");
    assert_eq!(f.run_llm_at("2026-11-25T14:20:00Z"), 0);
    assert_eq!(f.run_llm_at("2026-11-25T14:31:00Z"), 1);
    pin(&server, &["llm-ended", "llm-completed", "llm-resumed"]);
}
