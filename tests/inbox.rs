//! The inbox is the product's screen and the mail provider a partner with limits: bursts are
//! spread over later runs within the owner's rate limits, and a provider that says it is
//! throttling is given room, with nothing lost, reordered or sent twice. Through the binary.

mod support;

use support::{Behavior, Fixture, SmtpServer, mails};

fn leads(f: &Fixture, n: u32) {
    for i in 0..n {
        f.lead_who_leaves(&format!("c{i}"), &format!("Visitor {i}"), &format!("v{i}@example.com"), i);
    }
}

#[test]
fn a_burst_over_the_hourly_limit_goes_out_over_later_runs_in_order() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    let config =
        std::fs::read_to_string(&f.config).unwrap().replace("[mail]\n", "[mail]\nmax_per_hour = 3\nmax_per_day = 6\n");
    std::fs::write(&f.config, config).unwrap();
    leads(&f, 7);
    let out = f.run_at("2026-11-24T10:00:00Z", &["-v"], 0);
    assert_eq!(server.received().len(), 3, "three this hour");
    assert!(out.stderr.contains("rate limit reached: the emails left wait in the outbox"), "{}", out.stderr);
    f.run_at("2026-11-24T10:30:00Z", &[], 0);
    assert_eq!(server.received().len(), 3, "still within the hour");
    let status = f.run(&["status", "--json", "--now", "2026-11-24T10:30:00Z"]);
    assert!(status.stdout.contains("\"pending\": 4"), "four wait: {}", status.stdout);
    assert!(
        status.stdout.contains("\"next_send\": \"2026-11-24T11:00:00Z\""),
        "and when the next goes: {}",
        status.stdout
    );
    let table = f.run(&["status", "--now", "2026-11-24T10:30:00Z"]).stdout;
    assert!(table.lines().next().unwrap().contains("rate limit: the next email goes at 2026-11-24 11:00"), "{table}");
    f.run_at("2026-11-24T11:00:01Z", &[], 0);
    assert_eq!(server.received().len(), 6, "three more an hour later");
    f.run_at("2026-11-24T12:30:00Z", &[], 0);
    assert_eq!(server.received().len(), 6, "the day's six are spent");
    f.run_at("2026-11-25T10:00:01Z", &[], 0);
    let sent: Vec<String> = mails(&server).into_iter().map(|m| m.message_id).collect();
    assert_eq!(sent.len(), 7, "nothing lost, nothing twice");
    let queued: Vec<String> =
        f.outbox().into_iter().map(|r| r.message_id.trim_matches(['<', '>']).to_owned()).collect();
    assert_eq!(sent, queued, "in the order they were decided");
}

#[test]
fn a_provider_that_throttles_is_given_room_without_burning_attempts() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    leads(&f, 3);
    server.set(Behavior::RejectMail("421 4.7.0 Try again later, closing connection".into()));
    let out = f.run_at("2026-11-24T10:00:00Z", &[], 0);
    let stderr = out.stderr_past_first_run();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].contains("the SMTP server is throttling") && lines[0].contains("4.7.0"), "{}", lines[0]);
    assert_eq!(server.attempts(), 1, "one try, then it backs off for the rest of the run");
    assert!(f.outbox().iter().all(|r| r.status == "pending" && r.attempts == 0), "{:?}", f.outbox());
    server.set(Behavior::Accept);
    f.run_at("2026-11-24T10:05:00Z", &[], 0);
    assert_eq!(mails(&server).len(), 3);
}

/// A chat with one visitor line at `at` (an RFC 3339 time).
fn chat(f: &Fixture, id: &str, at: &str) {
    f.conversation(id, at);
    f.visitor(id, at, None, "hello?");
}

#[test]
fn a_silent_bot_raises_one_alert_and_one_all_clear_in_its_own_thread() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.write_config(server.port(), "alert_if_silent = \"6h\"");
    chat(&f, "a", "2026-11-24T09:12:00Z");
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    assert_eq!(server.received().len(), 1, "the chat's own email");
    f.run_at("2026-11-24T15:11:00Z", &[], 0);
    assert_eq!(server.received().len(), 1, "5 h 59 min: not yet");
    f.run_at("2026-11-24T15:12:00Z", &[], 0);
    f.run_at("2026-11-24T18:00:00Z", &[], 0);
    f.run_at("2026-11-25T06:00:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 2, "one alert, never repeated while silent");
    let alert = &m[1];
    assert!(alert.subject.starts_with("Lead Bot: no chats recorded [#"), "{}", alert.subject);
    assert!(
        alert
            .text
            .contains("No chats recorded for Lead Bot since 2026-11-24 09:12 (UTC): is the bot or its export stuck?"),
        "{}",
        alert.text
    );
    assert_eq!(alert.header("X-Chat-State").as_deref(), Some("alert"));
    assert_eq!(alert.header("X-Chat-Bot").as_deref(), Some("lead"));
    assert!(alert.html.contains("is the bot or its export stuck?"), "{}", alert.html);

    chat(&f, "b", "2026-11-25T07:40:00Z");
    f.run_at("2026-11-25T07:45:00Z", &[], 0);
    f.run_at("2026-11-25T08:45:00Z", &[], 0);
    let m = mails(&server);
    let clear: Vec<_> = m.iter().filter(|m| m.header("X-Chat-State").as_deref() == Some("alert")).collect();
    assert_eq!(clear.len(), 2, "one all-clear: {:#?}", m.iter().map(|m| &m.subject).collect::<Vec<_>>());
    assert_eq!(clear[1].subject, format!("Re: {}", alert.subject), "in the alert's thread");
    assert_eq!(clear[1].in_reply_to.as_deref(), Some(alert.message_id.as_str()));
    assert!(
        clear[1].text.contains("Chats are coming in again for Lead Bot: the latest message at 2026-11-25 07:40 (UTC)"),
        "{}",
        clear[1].text
    );
    // Outlook's index: the all-clear's extends the alert's by one 5-byte block.
    use base64::Engine as _;
    let index = |m: &support::Mail| {
        base64::engine::general_purpose::STANDARD.decode(m.header("Thread-Index").unwrap()).unwrap()
    };
    let (first, second) = (index(alert), index(clear[1]));
    assert_eq!((first.len(), second.len()), (22, 27));
    assert_eq!(second[..22], first[..]);
    assert_eq!(m.len(), 4, "the new chat's email and the all-clear");
}

/// Judged on the store's own times: a cron that was down reads what was written meanwhile
/// before it judges, so its first run back raises nothing while chats kept coming.
#[test]
fn a_cron_outage_raises_no_false_alarm() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.write_config(server.port(), "alert_if_silent = \"6h\"");
    chat(&f, "a", "2026-11-24T09:00:00Z");
    f.run_at("2026-11-24T09:40:00Z", &[], 0);
    // Cron is down for a day; the bot keeps chatting.
    for (id, at) in [("b", "2026-11-24T14:00:00Z"), ("c", "2026-11-24T20:00:00Z"), ("d", "2026-11-25T06:30:00Z")] {
        chat(&f, id, at);
    }
    f.run_at("2026-11-25T09:40:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 4, "the four chats, no alert");
    assert!(m.iter().all(|m| m.header("X-Chat-State").as_deref() != Some("alert")));
    // A real silence after it still raises the alarm.
    f.run_at("2026-11-25T12:30:00Z", &[], 0);
    assert_eq!(mails(&server).last().unwrap().header("X-Chat-State").as_deref(), Some("alert"));
}
