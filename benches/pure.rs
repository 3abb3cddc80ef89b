//! The pure parts, one core: classifying conversations and rendering an email.
//!
//!     cargo bench --bench pure

use std::hint::black_box;

use chat_notifier::config::Config;
use chat_notifier::config::Routing;
use chat_notifier::domain::{Author, ChatState, Conversation, Limits, Message, Tracked, Transcript, thread::Thread};
use chat_notifier::mail::render::{Draft, Renderer};
use chat_notifier::pipeline::classify::{Timing, classify};
use chrono::{DateTime, TimeDelta, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn at(minute: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_795_000_000 + minute * 60, 0).unwrap()
}

fn classify_1000(c: &mut Criterion) {
    let tracked: Vec<Tracked> = (0..1000)
        .map(|i| Tracked {
            last_message: i * 10 + 9,
            last_activity: at(i % 90),
            ended: i % 3 == 0,
            covered_through: if i % 4 == 0 { i * 10 + 9 } else { i * 10 },
            emails: (i % 2) as u32,
        })
        .collect();
    let rules = Timing { now: at(100), abandon_after: TimeDelta::minutes(30), baseline_before: None, last_step: true };
    let mut group = c.benchmark_group("classify");
    group.throughput(Throughput::Elements(1000));
    group.bench_function("1000 conversations", |b| {
        b.iter(|| {
            tracked
                .iter()
                .filter(|t| {
                    matches!(classify(black_box(t), &rules), chat_notifier::pipeline::classify::Decision::Notify(_))
                })
                .count()
        })
    });
    group.finish();
}

fn render_50_messages(c: &mut Criterion) {
    let config: Config = toml::from_str(
        "export = \"e\"\nstate = \"s\"\ntime_zone = \"Europe/Berlin\"\n[mail]\nfrom = \"n@example.com\"\n\
         to = [\"owner@example.com\"]\n[transport]\nkind = \"folder\"\npath = \"o\"\n",
    )
    .unwrap();
    let routing = Routing::new(&config);
    let settings = routing.for_bot("lead");
    let from = config.mail.from.clone();
    let renderer = Renderer::new(&routing, Limits::default()).unwrap();
    let conversation = Conversation {
        id: "conv-00001234".into(),
        bot_id: "lead".into(),
        bot_name: "Lead Bot".into(),
        visitor_id: "v".into(),
        started_at: None,
        page_url: Some("https://example.com/pricing".into()),
    };
    let fields = ["name", "email", "phone", "company", "plan"];
    let transcript: Vec<Message> = (0..50)
        .map(|i| Message {
            id: i + 1,
            sent_at: at(i),
            author: if i % 2 == 0 { Author::Bot } else { Author::Visitor },
            gambit_id: Some(format!("step{}", i / 2)),
            input_type: Some("text".into()),
            field: (i % 2 == 1).then(|| fields[(i as usize / 2) % fields.len()].to_owned()),
            body: format!("Message number {i}, a sentence of ordinary length & one <tag> to escape."),
        })
        .collect();
    let thread = Thread {
        subject: Some("Lead Bot: chat with Jane [#ABCD-EFGH-JKMN]".into()),
        message_ids: vec!["<a@x>".into()],
        index: None,
    };
    let draft = Draft {
        conversation: &conversation,
        transcript: &Transcript::of(transcript, 30),
        person: &Default::default(),
        state: ChatState::Completed,
        thread: &thread,
        now: at(60),
        from: &from,
        markdown: false,
        last_step: true,
    };
    let mut group = c.benchmark_group("render");
    group.throughput(Throughput::Elements(1));
    group.bench_function("50-message transcript, text and HTML", |b| {
        b.iter(|| renderer.compose(black_box(&draft), settings, "example.com").unwrap())
    });
    // What the transports write: the RFC 5322 message, both parts encoded.
    let email = renderer.compose(&draft, settings, "example.com").unwrap();
    group.bench_function("50-message transcript, as RFC 5322 bytes", |b| {
        b.iter(|| chat_notifier::mail::send::message(black_box(&email)).unwrap().formatted())
    });
    let text_only = Renderer::new(&routing, Limits::default()).unwrap().text_only();
    group.bench_function("50-message transcript, text only (dry run)", |b| {
        b.iter(|| text_only.compose(black_box(&draft), settings, "example.com").unwrap())
    });
    group.finish();
}

criterion_group!(benches, classify_1000, render_50_messages);
criterion_main!(benches);
