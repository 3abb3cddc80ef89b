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
    f.mail_setting("max_per_hour = 3\nmax_per_day = 6");
    leads(&f, 7);
    let out = f.run_at("2026-11-24T10:00:00Z", &["-v"], 0);
    assert_eq!(server.received().len(), 3, "three this hour");
    assert!(out.stderr.contains("rate limit reached: the emails left wait in the outbox"), "{}", out.stderr);
    f.run_at("2026-11-24T10:30:00Z", &[], 0);
    assert_eq!(server.received().len(), 3, "still within the hour");
    let status = f.run(&["status", "--json", "--now", "2026-11-24T10:30:00Z"]);
    assert!(status.stdout.contains("\"pending\": 4"), "four wait: {}", status.stdout);
    assert!(
        status.stdout.contains("\"next_send\": \"2026-11-24T10:59:00Z\""),
        "and when the next goes: {}",
        status.stdout
    );
    let table = f.run(&["status", "--now", "2026-11-24T10:30:00Z"]).stdout;
    assert!(table.lines().next().unwrap().contains("rate limit: the next email goes at 2026-11-24 10:59"), "{table}");
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
    // The alert is an outbox email like any other: refused for now, it waits and is retried.
    server.set(Behavior::RejectMail("451 4.3.0 Mailbox temporarily unavailable".into()));
    f.run_at("2026-11-24T15:12:00Z", &[], 3);
    let status = f.run(&["status", "--now", "2026-11-24T15:13:00Z"]).stdout;
    let row = status.lines().find(|l| l.contains("(alert)")).unwrap_or_else(|| panic!("{status}"));
    assert!(row.contains(" failed ") && row.contains("(451): 4.3.0 Mailbox"), "{row}");
    server.set(Behavior::Accept);
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

#[test]
fn the_flood_guard_lists_exactly_the_excess_in_one_summary() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.mail_setting("burst = 5");
    leads(&f, 8);
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 6, "five one by one, and one summary");
    let summary = &m[5];
    assert_eq!(summary.header("X-Chat-State").as_deref(), Some("digest"));
    assert!(summary.subject.starts_with("3 more chats in one run, listed here [#"), "{}", summary.subject);
    let queued = f.outbox();
    let listed: Vec<&str> = summary.text.lines().filter_map(|l| l.strip_prefix("- ")).collect();
    let excess: Vec<&str> = queued.iter().filter(|r| r.status == "summarised").map(|r| r.subject.as_str()).collect();
    assert_eq!(listed, excess, "{}", summary.text);
    assert_eq!(listed.len(), 3);
    assert!(listed.iter().all(|s| s.starts_with("Lead Bot: chat with Visitor ")), "{listed:?}");
    let individually: Vec<&str> = m[..5].iter().map(|m| m.subject.as_str()).collect();
    assert!(listed.iter().all(|s| !individually.contains(s)), "each conversation once");
    assert!(summary.text.contains("more than mail.burst (5)"), "{}", summary.text);
    assert!(summary.html.contains("<li>Lead Bot: chat with Visitor"), "{}", summary.html);

    // A listed conversation that comes back starts its own thread, with everything so far.
    let back = excess[0].rsplit_once("[#").unwrap().1.trim_end_matches(']').to_owned();
    let id = queued.iter().find(|r| r.subject == excess[0]).unwrap().conversation_id.clone();
    f.visitor(&id, "2026-11-24T11:00:00Z", Some("phone"), "+1 555 0100");
    f.end(&id, "2026-11-24T11:00:01Z");
    f.run_at("2026-11-24T11:01:00Z", &[], 0);
    let last = mails(&server).pop().unwrap();
    assert!(last.subject.ends_with(&format!("[#{back}]")) && !last.subject.starts_with("Re: "), "{}", last.subject);
    assert_eq!((last.in_reply_to.as_deref(), last.references.len()), (None, 0), "a thread of its own");
    assert!(
        !last.text.contains("new since the last email") && last.text.contains("Visitor: +1 555 0100"),
        "{}",
        last.text
    );
    assert_eq!(mails(&server).len(), 7);
}

/// A flood of over a thousand chats: the summary names the first thousand and counts the rest.
/// Listing them all made a 14 MB email at 80,000 chats (issue 27), over the 10 MB many mail
/// servers accept (Postfix's default), which would refuse it: the owner would hear of none.
#[test]
fn a_summary_names_a_thousand_chats_and_counts_the_rest() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.mail_setting("burst = 5");
    f.sql("BEGIN");
    for i in 0..1_012 {
        f.lead_who_leaves(&format!("c{i}"), &format!("Visitor {i}"), &format!("v{i}@example.com"), i % 25);
    }
    f.sql("COMMIT");
    let out = f.run_at("2026-11-24T10:00:00Z", &[], 0);
    // The first run's line says what became of them.
    assert!(
        out.stderr.contains(
            "5 conversation(s) active in the last 24h emailed as new threads, 1007 listed in the flood guard's \
             summary (more than mail.burst), 0 older"
        ),
        "{}",
        out.stderr
    );
    let m = mails(&server);
    assert_eq!(m.len(), 6, "five one by one, and one summary");
    let summary = &m[5];
    assert!(summary.subject.starts_with("1007 more chats in one run, listed here [#"), "{}", summary.subject);
    let queued = f.outbox();
    let excess: Vec<&str> = queued.iter().filter(|r| r.status == "summarised").map(|r| r.subject.as_str()).collect();
    assert_eq!(excess.len(), 1_007, "every one over the burst summarised");
    assert!(queued.iter().all(|r| r.status != "pending"), "none left to send one by one");
    let listed: Vec<&str> = summary.text.lines().filter_map(|l| l.strip_prefix("- ")).collect();
    assert_eq!(listed, excess[..1_000], "the first thousand, in order");
    assert!(
        summary.text.contains("... and 7 more, not listed by name")
            && summary.html.contains("... and 7 more, not listed by name"),
        "{}",
        summary.text
    );
    assert_eq!(summary.html.matches("<li>").count(), 1_000);
}

/// A run that fails after deciding and before its flood guard leaves the emails over the burst
/// queued with their heads alone (their bodies never rendered). The next run's guard lists
/// them, even when the burst was raised meanwhile: none is ever sent, let alone empty.
#[test]
fn emails_decided_over_the_burst_are_listed_even_after_a_run_that_failed_before_its_guard() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.mail_setting("burst = 5");
    f.run_at("2026-11-24T08:00:00Z", &[], 0); // the first run, before any chat
    leads(&f, 8);
    // The state refuses the summary, as a full disk would: the run stops after deciding.
    support::sql_on_state(
        &f,
        "CREATE TRIGGER no_summary BEFORE INSERT ON outbox WHEN NEW.state = 'digest' \
         BEGIN SELECT RAISE(ABORT, 'disk full (injected)'); END;",
    );
    let failed = f.run_at("2026-11-24T10:00:00Z", &[], 1);
    assert!(failed.stderr.contains("disk full (injected)"), "{}", failed.stderr);
    assert!(server.received().is_empty());
    support::sql_on_state(&f, "DROP TRIGGER no_summary;");
    let config = std::fs::read_to_string(&f.config).unwrap().replace("burst = 5", "burst = 50");
    std::fs::write(&f.config, config).unwrap();

    f.run_at("2026-11-24T10:05:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 6, "the five decided whole, and a summary of the three decided over the burst");
    assert!(m[..5].iter().all(|m| m.text.contains("Your email?")), "each a whole email");
    assert!(m[5].subject.starts_with("3 more chats in one run, listed here [#"), "{}", m[5].subject);
    // The burst they were decided over, not the one now: the five went one by one.
    assert!(m[5].text.contains("more than mail.burst (5): the first 5 went out"), "{}", m[5].text);
    let queued = f.outbox();
    assert_eq!(queued.iter().filter(|r| r.status == "summarised").count(), 3);
    assert!(queued.iter().all(|r| r.status != "pending" && r.status != "parked"), "{queued:?}");
}

/// The guard's summaries, one per inbox, are one step: a run stopped between two of them leaves
/// neither, and the next run lists each chat once, in one summary per inbox, under the burst it
/// has then (a summary committed alone said "the first 5 went out one by one" of emails the next
/// run, with a lower burst, listed in a second summary to the same inbox).
#[test]
fn a_guard_stopped_between_two_summaries_leaves_neither() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.write_config(server.port(), "[[bots]]\nid = \"support\"\nto = [\"Help <help@example.com>\"]");
    f.mail_setting("burst = 5");
    f.run_at("2026-11-24T08:00:00Z", &[], 0); // the first run, before any chat
    leads(&f, 8);
    for i in 0..8 {
        let (id, at) = (format!("s{i}"), format!("2026-11-24T09:{i:02}:00Z"));
        f.conversation_of("support", &id, &at);
        f.visitor(&id, &at, Some("name"), &format!("Support visitor {i}"));
        f.visitor(&id, &at, Some("email"), &format!("s{i}@example.com"));
    }
    // The second summary is refused, as a full disk would.
    support::sql_on_state(
        &f,
        "CREATE TRIGGER second_summary BEFORE INSERT ON outbox \
         WHEN NEW.state = 'digest' AND (SELECT count(*) FROM outbox WHERE state = 'digest') >= 1 \
         BEGIN SELECT RAISE(ABORT, 'disk full (injected)'); END;",
    );
    let failed = f.run_at("2026-11-24T10:00:00Z", &[], 1);
    assert!(failed.stderr.contains("disk full (injected)"), "{}", failed.stderr);
    assert!(server.received().is_empty());
    support::sql_on_state(&f, "DROP TRIGGER second_summary;");
    let config = std::fs::read_to_string(&f.config).unwrap().replace("burst = 5", "burst = 2");
    std::fs::write(&f.config, config).unwrap();

    f.run_at("2026-11-24T10:05:00Z", &[], 0);
    let m = mails(&server);
    let (summaries, chats): (Vec<_>, Vec<_>) =
        m.iter().partition(|m| m.header("X-Chat-State").as_deref() == Some("digest"));
    assert_eq!(chats.len(), 2, "the burst");
    let mut inboxes: Vec<&str> = summaries.iter().map(|m| m.rcpt_to[0].as_str()).collect();
    inboxes.sort_unstable();
    assert_eq!(inboxes, ["help@example.com", "owner@example.com"], "one summary per inbox");
    let mut each: Vec<&str> = summaries
        .iter()
        .flat_map(|m| m.text.lines().filter_map(|l| l.strip_prefix("- ")))
        .chain(chats.iter().map(|m| m.subject.as_str()))
        .map(support::identifier)
        .collect();
    each.sort_unstable();
    each.dedup();
    assert_eq!(each.len(), 16, "every chat emailed or listed, once");
    assert!(summaries.iter().all(|m| m.text.contains("more than mail.burst (2): the first 2 went out")));
}

/// The summary says `preview IDENTIFIER` shows any chat it lists: it shows the email the chat
/// would have had (it said "nothing new since the last email"), until the chat has more.
#[test]
fn preview_shows_the_email_of_a_chat_a_summary_listed() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.mail_setting("burst = 5");
    leads(&f, 8);
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    let summary = mails(&server).pop().unwrap();
    let listed = summary.text.lines().find_map(|l| l.strip_prefix("- ")).unwrap().to_owned();
    let out = f.run(&["preview", support::identifier(&listed), "--now", "2026-11-24T10:30:00Z"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains(&format!("Subject: {listed}")), "{}", out.stdout);
    assert!(
        out.stdout.contains("left the chat with Lead Bot midway") && out.stdout.contains("Your email?"),
        "{}",
        out.stdout
    );
    assert!(out.stderr.contains("the flood guard listed it in a summary"), "{}", out.stderr);
}

#[test]
fn a_backfill_over_the_burst_needs_a_yes() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.mail_setting("burst = 5");
    leads(&f, 8);
    // Three days later: all history, which only --backfill emails.
    let out = f.run_at("2026-11-27T10:00:00Z", &["--backfill"], 1);
    assert!(
        out.stderr.contains("--backfill would email up to 8 conversations, more than mail.burst (5)")
            && out.stderr.contains("add --yes to go ahead (nothing was sent)"),
        "{}",
        out.stderr
    );
    assert!(server.received().is_empty());
    // At a terminal it asks: "n" sends nothing, "y" goes ahead. (`script` gives the run a
    // terminal, as a person at a shell has.)
    let ask = |answer: &str| {
        let command = format!(
            "{} --config {} run --backfill --now 2026-11-27T10:00:00Z",
            support::bin().display(),
            f.config.display()
        );
        let mut child = std::process::Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("script(1), from util-linux");
        use std::io::Write as _;
        child.stdin.take().unwrap().write_all(format!("{answer}\n").as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let no = ask("n");
    assert!(no.contains("Go ahead? [y/N]") && no.contains("backfill not confirmed: nothing was sent"), "{no}");
    assert!(server.received().is_empty());
    let yes = ask("y");
    assert!(yes.contains("Go ahead? [y/N]"), "{yes}");
    assert_eq!(server.received().len(), 6, "five and a summary of three");

    // Off a terminal, --yes goes ahead.
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.mail_setting("burst = 5");
    leads(&f, 8);
    f.run_at("2026-11-27T10:00:00Z", &["--backfill", "--yes"], 0);
    assert_eq!(server.received().len(), 6);
}

#[test]
fn a_digest_at_eight_local_holds_exactly_the_matching_chats_and_a_later_completion_starts_its_own_thread() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    let config =
        std::fs::read_to_string(&f.config).unwrap().replace("time_zone = \"UTC\"", "time_zone = \"Europe/Berlin\"");
    std::fs::write(&f.config, config).unwrap();
    f.daily_digest(server.port());
    f.gives_name_only("anon1", "Ann", "2026-11-24T10:00:00Z");
    f.gives_name_only("anon2", "Ben", "2026-11-24T11:00:00Z");
    f.lead_who_leaves("lead", "Lea", "lea@example.com", 5); // left an email: her own email
    f.gives_name_only("done", "Dan", "2026-11-24T11:10:00Z");
    f.end("done", "2026-11-24T11:11:00Z"); // completed: not a digest state
    f.run_at("2026-11-24T12:00:00Z", &[], 0);
    let subjects = |s: &SmtpServer| mails(s).iter().map(|m| m.subject.clone()).collect::<Vec<_>>();
    let first = subjects(&server);
    assert_eq!(first.len(), 2, "{first:?}");
    assert!(first.iter().any(|s| s.contains("Lea")) && first.iter().any(|s| s.contains("Dan")), "{first:?}");

    f.run_at("2026-11-25T06:59:00Z", &[], 0); // 07:59 in Berlin
    assert_eq!(server.received().len(), 2, "not yet eight in Berlin");
    f.run_at("2026-11-25T07:00:00Z", &[], 0);
    f.run_at("2026-11-25T07:30:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 3, "one digest, once");
    let digest = &m[2];
    assert_eq!(digest.header("X-Chat-State").as_deref(), Some("digest"));
    assert!(digest.subject.starts_with("Digest for 2026-11-25: 2 chats [#"), "{}", digest.subject);
    let listed: Vec<&str> = digest.text.lines().filter(|l| l.starts_with("- #")).collect();
    assert_eq!(listed.len(), 2, "{}", digest.text);
    assert!(listed[0].contains(" Ann, Lead Bot: abandoned at step ask_email (\"And your email?\")"), "{}", listed[0]);
    assert!(listed[1].contains(" Ben, Lead Bot: abandoned"), "{}", listed[1]);
    assert!(digest.text.contains("  name: Ann\n  idle 21 h (last message 2026-11-24 11:00)"), "{}", digest.text);

    // Ann comes back and finishes: her own email, a thread of its own, everything so far.
    f.visitor("anon1", "2026-11-25T09:00:00Z", Some("email"), "ann@example.com");
    f.end("anon1", "2026-11-25T09:00:01Z");
    f.run_at("2026-11-25T09:01:00Z", &[], 0);
    let ann = mails(&server).pop().unwrap();
    assert!(ann.subject.starts_with("Lead Bot: chat with Ann [#") && ann.in_reply_to.is_none(), "{}", ann.subject);
    assert!(ann.text.contains("Visitor: Ann") && !ann.text.contains("new since the last email"), "{}", ann.text);

    f.gives_name_only("anon3", "Cy", "2026-11-25T10:00:00Z");
    f.run_at("2026-11-25T11:00:00Z", &[], 0);
    f.run_at("2026-11-26T07:05:00Z", &[], 0);
    f.run_at("2026-11-27T07:05:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 5, "the next day's digest; none on the day after, empty");
    assert!(m[4].subject.starts_with("Digest for 2026-11-26: 1 chat [#"), "{}", m[4].subject);
    assert!(m[4].text.contains(" Cy, Lead Bot: abandoned") && !m[4].text.contains("Ann"), "{}", m[4].text);

    // prune forgets the digests and what they listed, once older than it is told.
    let count = |sql: &str| f.state_rows(sql)[0][0].clone();
    assert_eq!(count("SELECT count(*) FROM digest_items"), "Integer(3)");
    let out = f.run(&["prune", "--older-than", "30d", "--now", "2027-01-15T00:00:00Z"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(count("SELECT count(*) FROM digest_items"), "Integer(0)");
    assert_eq!(count("SELECT count(*) FROM outbox WHERE conversation_id LIKE 'digest:%'"), "Integer(0)");
}

#[test]
fn a_digest_goes_where_the_config_says_when_it_is_sent() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.daily_digest(server.port());
    f.gives_name_only("anon1", "Ann", "2026-11-24T10:00:00Z");
    f.gives_name_only("anon2", "Ben", "2026-11-24T11:00:00Z");
    f.run_at("2026-11-24T12:00:00Z", &[], 0);
    assert_eq!(server.received().len(), 0, "both listed for the digest");
    // Overnight the owner moves the bot's chats to another inbox and the digest to nine.
    let config = std::fs::read_to_string(&f.config).unwrap().replace("owner@example.com", "sales@example.com");
    std::fs::write(&f.config, config.replace("at = \"08:00\"", "at = \"09:00\"")).unwrap();
    f.run_at("2026-11-25T08:30:00Z", &[], 0);
    assert_eq!(server.received().len(), 0, "not at the old time");
    f.run_at("2026-11-25T09:00:00Z", &[], 0);
    f.run_at("2026-11-25T09:30:00Z", &[], 0);
    let received = server.received();
    assert_eq!(received.len(), 1, "one digest, once");
    assert_eq!(received[0].rcpt_to, ["sales@example.com"], "to today's recipients");
    let digest = mails(&server).pop().unwrap();
    assert!(digest.subject.starts_with("Digest for 2026-11-25: 2 chats [#"), "{}", digest.subject);
}

#[test]
fn what_waits_for_the_hourly_limit_does_not_count_toward_the_burst() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.mail_setting("max_per_hour = 2\nburst = 3");
    // One new chat every 20 minutes for four hours: three an hour, two sent an hour, so a
    // backlog builds, but no run ever has more than one new email.
    let mut now = chrono::DateTime::parse_from_rfc3339("2026-11-24T10:00:00Z").unwrap().to_utc();
    for i in 0..12u32 {
        let id = format!("c{i}");
        let at = (now - chrono::TimeDelta::minutes(45)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        f.conversation(&id, &at);
        f.visitor(&id, &at, Some("email"), &format!("v{i}@example.com"));
        f.run_at(&now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true), &[], 0);
        now += chrono::TimeDelta::minutes(20);
    }
    let summarised: Vec<_> = f.outbox().into_iter().filter(|r| r.status == "summarised").collect();
    assert!(summarised.is_empty(), "no run had more than one new chat: {summarised:?}");
    // The backlog drains at two an hour: every chat goes, each once, and nothing else.
    for hour in 0..6 {
        f.run_at(&(now + chrono::TimeDelta::hours(hour)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true), &[], 0);
    }
    support::assert_each_once(&server, 12, 0, "each chat once");
    assert!(mails(&server).iter().all(|m| m.header("X-Chat-State").as_deref() == Some("abandoned")));
}

#[test]
fn an_email_waiting_in_the_outbox_goes_to_the_recipients_its_bot_has_when_it_is_sent() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.write_config(server.port(), "[[bots]]\nid = \"support\"\nto = [\"Help <help@example.com>\"]");
    f.mail_setting("max_per_hour = 1");
    f.daily_digest(server.port());
    // Two leads: one goes, the other waits for the hourly limit. A support chat for the digest.
    leads(&f, 2);
    f.conversation_of("support", "s1", "2026-11-24T09:00:00Z");
    f.visitor("s1", "2026-11-24T09:00:00Z", Some("name"), "Sue");
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    assert_eq!(server.received().len(), 1);
    // The digest is queued at eight while the server refuses; then the owner moves both inboxes.
    server.set(Behavior::RejectMail("451 4.3.0 try again later".into()));
    f.run_at("2026-11-25T08:00:00Z", &[], 3);
    server.set(Behavior::Accept);
    let config = std::fs::read_to_string(&f.config).unwrap();
    let config =
        config.replace("owner@example.com", "sales@example.com").replace("help@example.com", "desk@example.com");
    std::fs::write(&f.config, config).unwrap();
    f.run_at("2026-11-25T08:05:00Z", &[], 0);
    f.run_at("2026-11-25T09:06:00Z", &[], 0);
    let received = server.received();
    assert_eq!(received.len(), 3, "the lead that waited and the digest");
    let to = |needle: &str| {
        let r = received.iter().find(|r| r.text().contains(needle)).unwrap_or_else(|| panic!("{needle}"));
        r.rcpt_to.clone()
    };
    assert_eq!(to("X-Chat-State: digest"), ["desk@example.com"], "the support bot's inbox as it is now");
    assert_eq!(to("Visitor 1"), ["sales@example.com"], "the lead that waited for the limit");
    let digest = received.iter().find(|r| r.text().contains("X-Chat-State: digest")).unwrap().text();
    assert!(digest.contains("\r\nTo: Help <desk@example.com>\r\n"), "{digest}");
}

#[test]
fn an_hourly_cron_gets_the_whole_hourly_limit() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.mail_setting("max_per_hour = 2");
    leads(&f, 6);
    // Cron starts each run a little early or late.
    for (at, sent) in [("10:00:05", 2), ("11:00:00", 4), ("12:00:03", 6)] {
        let out = f.run_at(&format!("2026-11-24T{at}Z"), &["-v"], 0);
        assert_eq!(server.received().len(), sent, "at {at}: {}", out.stderr);
    }
}
