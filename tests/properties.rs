//! Properties over arbitrary message sequences and run times, through the real pipeline on
//! real SQLite files: every message is covered by exactly one email (none twice, none
//! skipped), states follow the rules, and every email parses strictly.

mod support;

use std::collections::HashMap;

use chat_notifier::cli::RunArgs;
use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use support::{Fixture, Mail, Received};

#[derive(Debug, Clone)]
enum Event {
    /// A message `minutes` after the previous event.
    Message { minutes: i64, conversation: usize, visitor: bool, ends: bool, field: Option<&'static str>, body: String },
    /// A cron run `minutes` after the previous event.
    Run { minutes: i64 },
}

fn body() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z ]{0,20}",
        // Anything at all: control characters, CR/LF, NUL, bidi overrides, emoji.
        prop::collection::vec(any::<char>(), 0..24).prop_map(String::from_iter),
        Just("Eve\r\nBcc: spy@evil.example".to_owned()),
        Just("<script>alert(1)</script>".to_owned()),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        3 => (0..50i64, 0..3usize, any::<bool>(), prop::bool::weighted(0.15),
              prop::option::of(prop::sample::select(vec!["name", "email", "phone"])), body())
            .prop_map(|(minutes, conversation, visitor, ends, field, body)| Event::Message {
                minutes, conversation, visitor, ends: ends && !visitor, field: field.filter(|_| visitor), body,
            }),
        1 => (0..90i64).prop_map(|minutes| Event::Run { minutes }),
    ]
}

fn run(f: &Fixture, now: DateTime<Utc>) {
    let config = chat_notifier::config::load(&f.config).unwrap();
    let args = RunArgs { dry_run: false, backfill: true, now: Some(now) };
    let summary = chat_notifier::pipeline::run_once(&config, &args).unwrap().expect("no other run holds the lock");
    assert_eq!(summary, chat_notifier::pipeline::RunSummary { sent: summary.sent, ..Default::default() });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn every_message_is_covered_once_and_every_email_parses(events in prop::collection::vec(event(), 1..30)) {
        let f = Fixture::new(1);
        // Every conversation emailed, even one where the visitor never wrote: this property is
        // about coverage; the rules that hold emails back have their own tests.
        f.set_transport("kind = \"folder\"\npath = \"outbox\"\n[notify]\nmin_visitor_messages = 0");
        let mut clock: DateTime<Utc> = "2026-11-24T09:00:00Z".parse().unwrap();
        let mut messages: HashMap<String, Vec<(i64, bool)>> = HashMap::new(); // id, ends
        for event in &events {
            match event {
                Event::Message { minutes, conversation, visitor, ends, field, body } => {
                    clock += Duration::minutes(*minutes);
                    let conv = format!("conv-{conversation}");
                    if !messages.contains_key(&conv) {
                        f.conversation(&conv, &clock.to_rfc3339());
                    }
                    let (sender, input_type) = match (visitor, ends) {
                        (true, _) => ("visitor", None),
                        (false, true) => ("bot", Some("end_conversation")),
                        (false, false) => ("bot", Some("text")),
                    };
                    let id = f.message(&conv, &clock.to_rfc3339(), sender, Some("step"), input_type, *field, body);
                    messages.entry(conv).or_default().push((id, *ends));
                }
                Event::Run { minutes } => {
                    clock += Duration::minutes(*minutes);
                    run(&f, clock);
                }
            }
        }
        run(&f, clock + Duration::days(1)); // long after: everything is due

        let rows = f.outbox();
        let mut emails: HashMap<String, Vec<(String, i64)>> = HashMap::new();
        for r in rows.clone() {
            prop_assert_eq!(&r.status, "sent");
            emails.entry(r.conversation_id).or_default().push((r.state, r.covers_through));
        }
        prop_assert_eq!(emails.len(), messages.len(), "every conversation emailed");
        for (conv, sent) in &emails {
            let msgs = &messages[conv];
            let mut previous = 0;
            for (i, (state, through)) in sent.iter().enumerate() {
                prop_assert!(*through > previous, "{conv}: email {i} covers nothing new ({previous} -> {through})");
                let ends = msgs.iter().any(|(id, e)| *e && *id > previous && id <= through);
                let expected = match (ends, i) {
                    (true, _) => "completed",
                    (false, 0) => "abandoned",
                    (false, _) => "resumed",
                };
                prop_assert_eq!(state, expected, "{}: email {}", conv, i);
                previous = *through;
            }
            prop_assert_eq!(previous, msgs.last().unwrap().0, "{}: the last message is covered", conv);
        }

        let files: Vec<_> = std::fs::read_dir(f.dir.path().join("outbox")).unwrap().collect();
        prop_assert_eq!(files.len(), rows.len());
        for file in files {
            let data = std::fs::read(file.unwrap().path()).unwrap();
            let mail = Mail::read(&Received { tls: false, mail_from: String::new(), rcpt_to: vec![], data });
            prop_assert!(!mail.subject.contains(['\r', '\n']));
            prop_assert!(!mail.html.contains("<script>"));
        }
    }
}
