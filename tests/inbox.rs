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
