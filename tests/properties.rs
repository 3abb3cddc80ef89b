//! Properties over arbitrary message sequences and run times, through the real pipeline on
//! real SQLite files: every message is covered by exactly one email (none twice, none
//! skipped), states follow the rules, and every email parses strictly.

mod support;

use std::collections::HashMap;

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
    let args = chat_notifier::pipeline::Options { dry_run: false, backfill: true, yes: true, now: Some(now) };
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
        let mut messages: HashMap<String, Vec<(i64, bool, bool)>> = HashMap::new(); // id, ends, visitor
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
                    messages.entry(conv).or_default().push((id, *ends, *visitor));
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
                let covered = || msgs.iter().filter(|(id, ..)| *id > previous && id <= through);
                let ends = covered().any(|(_, e, _)| *e);
                let expected = match (ends, i) {
                    (true, _) => "completed",
                    (false, 0) => "abandoned",
                    (false, _) => "resumed",
                };
                prop_assert_eq!(state, expected, "{}: email {}", conv, i);
                if expected == "resumed" {
                    prop_assert!(covered().any(|(.., v)| *v), "{}: email {} says the visitor came back", conv, i);
                }
                previous = *through;
            }
            // Every message is covered, but the bot's own lines after the last email: the visitor
            // did not come back, so no email says so (they go with the next one if they do).
            let uncovered: Vec<_> = msgs.iter().filter(|(id, ..)| *id > previous).collect();
            prop_assert!(
                uncovered.is_empty() || (previous > 0 && uncovered.iter().all(|(_, e, v)| !e && !v)),
                "{}: the last message is covered, or only the bot spoke since: {:?}",
                conv,
                uncovered
            );
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

/// Addresses as visitors type them, and as a hostile tester would: quoted local parts,
/// domain literals, backslashes, brackets, commas, encoded words.
fn address() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9.+_-]{1,10}@[a-z0-9-]{1,8}\\.[a-z]{2,4}",
        "[a-z\"\\\\.\\[\\]() <>,;:=?]{0,8}@[a-z0-9.\\[\\]\"\\\\-]{0,12}",
        Just("x@[127.0.0.1]".to_owned()),
        Just("\"a\\\"b\"@x.com".to_owned()),
        Just("=?utf-8?q?a?=@example.com".to_owned()),
        prop::collection::vec(any::<char>(), 0..16).prop_map(String::from_iter),
    ]
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z \"\\\\,;:<>()@.=?]{0,20}",
        Just("=?utf-8?b?QWRh?=".to_owned()),
        prop::collection::vec(any::<char>(), 0..16).prop_map(String::from_iter),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever a visitor typed, the email queued is the email read back from the outbox, and
    /// it builds: one visitor's data can never make the outbox unreadable for the others.
    #[test]
    fn any_field_values_survive_the_outbox(name in name(), address in address()) {
        use chat_notifier::mail::render::{Draft, Renderer};
        use chat_notifier::mail::send;
        use chat_notifier::domain::thread::Thread;
        use chat_notifier::domain::ChatState;
        use chat_notifier::domain::Tracked;
        use chat_notifier::config::Routing;
        use chat_notifier::domain::{Author, Conversation, Message, Transcript};
        use chat_notifier::state::{Open, State};

        let f = Fixture::new(1);
        f.set_transport("kind = \"folder\"\npath = \"outbox\"");
        let config = chat_notifier::config::load(&f.config).unwrap();
        let routing = Routing::new(&config);
        let renderer = Renderer::new(&routing, config.mail.limits()).unwrap();
        let at: DateTime<Utc> = "2026-11-24T09:00:00Z".parse().unwrap();
        let said = |id: i64, field: &str, body: &str| Message {
            id, sent_at: at, author: Author::Visitor, gambit_id: None, input_type: None,
            field: Some(field.to_owned()), body: body.to_owned(),
        };
        let transcript = [said(1, "name", &name), said(2, "email", &address)];
        let conversation = Conversation {
            id: "c1".into(), bot_id: "lead".into(), bot_name: "Lead Bot".into(), visitor_id: "v1".into(),
            started_at: None, page_url: None,
        };
        let thread = Thread::default();
        let draft = Draft {
            conversation: &conversation, transcript: &Transcript::of(transcript, 0), person: &Default::default(), state: ChatState::Abandoned,
            thread: &thread, now: at, from: &config.mail.from, markdown: false, last_step: true,
        };
        let email = renderer.compose(&draft, routing.for_bot("lead"), "example.com").unwrap();
        let open = Open {
            id: "c1".into(),
            tracked: Tracked { last_message: 2, last_activity: at, ended: false, covered_through: 0, emails: 0 },
            thread,
            missing_since: None,
        };
        let mut state = State::open(&f.state).unwrap();
        state.atomically(|tx| tx.queue(&open, ChatState::Abandoned, &email, true)).unwrap();
        let pending = state.pending(0, 10).unwrap();
        prop_assert_eq!(pending.len(), 1);
        let back = pending.into_iter().next().unwrap();
        prop_assert!(back.is_ok(), "{:?}", back);
        let back = back.unwrap();
        prop_assert_eq!(&back.email, &email);
        prop_assert!(send::message(&back.email).is_ok());
    }
}
