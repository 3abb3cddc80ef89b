//! An LLM bot's chats (Flowise's, Dify's) as the pipeline sees them, before a source of that
//! kind exists here: the export, read through a `Source` that answers as those sources do (no
//! last step; the bot writes markdown), its end-of-flow step standing for a `complete_on` match.
//! Runs go through the library's `pipeline::run_on`, the run the binary makes, with this source.

use std::collections::{HashMap, HashSet};

use anyhow::Result;
use chat_notifier::domain::{Conversation, Message};
use chat_notifier::source::{Batch, Source, Visit};

use super::Fixture;

/// The export, answering as an LLM bot's store does.
pub struct Llm(pub Box<dyn Source>);

impl Source for Llm {
    fn name(&self) -> String {
        self.0.name()
    }
    fn describe(&self) -> Result<String> {
        self.0.describe()
    }
    fn commit_window(&self) -> i64 {
        self.0.commit_window()
    }
    fn activity_after(&self, after: i64, limit: usize, skip: &HashSet<i64>) -> Result<Batch> {
        self.0.activity_after(after, limit, skip)
    }
    fn conversations(&self, ids: &[&str]) -> Result<HashMap<String, Conversation>> {
        self.0.conversations(ids)
    }
    fn transcripts(&self, wanted: &[(&str, i64)], f: &mut dyn FnMut(&str, Message)) -> Result<()> {
        self.0.transcripts(wanted, f)
    }
    fn last_message_id(&self) -> Result<i64> {
        self.0.last_message_id()
    }
    fn anchor_at(&self, id: i64) -> Result<Option<String>> {
        self.0.anchor_at(id)
    }
    fn count_through(&self, id: i64) -> Result<i64> {
        self.0.count_through(id)
    }
    fn about_how_many_conversations(&self) -> u64 {
        self.0.about_how_many_conversations()
    }
    fn each_conversation(&self, through: i64, f: &mut Visit) -> Result<i64> {
        self.0.each_conversation(through, f)
    }
    fn has_last_step(&self) -> bool {
        false
    }
    fn writes_markdown(&self) -> bool {
        true
    }
}

impl Fixture {
    /// A run at `now` (RFC 3339) with the export read as an LLM bot's store; returns what it sent.
    pub fn run_llm_at(&self, now: &str) -> usize {
        let config = chat_notifier::config::load(&self.config).unwrap();
        let source = Llm(chat_notifier::source::open(&config).unwrap());
        let args = chat_notifier::pipeline::Options { now: Some(now.parse().unwrap()), ..Default::default() };
        let summary =
            chat_notifier::pipeline::run_on(&config, &source, &args).unwrap().expect("no other run holds the lock");
        assert_eq!(summary, chat_notifier::pipeline::RunSummary { sent: summary.sent, ..Default::default() });
        summary.sent
    }

    /// The bot's answer number `n` (its step, as an LLM source names it) in markdown.
    pub fn answer(&self, conversation: &str, at: &str, n: usize, markdown: &str) -> i64 {
        self.bot(conversation, at, &format!("message {n}"), "text", markdown)
    }
}

impl Fixture {
    /// `report` (all bots, since forever) at `now` with the export read as an LLM bot's store.
    pub fn report_llm_at(&self, now: &str) -> chat_notifier::report::Findings {
        let config = chat_notifier::config::load(&self.config).unwrap();
        let source = Llm(chat_notifier::source::open(&config).unwrap());
        chat_notifier::report::find_in(&config, &source, None, None, now.parse().unwrap(), true).unwrap()
    }

    /// A chat with an LLM bot whose lead form comes first: the form's fields (none: skipped),
    /// then each of the visitor's messages with the bot's answer, a minute apart from `start`;
    /// the answer at `complete_on` (its number) matched the bot's `complete_on`.
    pub fn llm_chat(&self, id: &str, start: &str, lead: &[(&str, &str)], said: &[&str], complete_on: Option<usize>) {
        let t0 = chrono::DateTime::parse_from_rfc3339(start).unwrap();
        let at = |minute: i64| (t0 + chrono::TimeDelta::minutes(minute)).to_rfc3339();
        self.conversation(id, start);
        self.bot(id, &at(0), "lead form", "text", "How can we reach you?");
        for (field, value) in lead {
            self.visitor(id, &at(0), Some(field), value);
        }
        for (i, text) in said.iter().enumerate() {
            let n = i + 1;
            self.visitor(id, &at(2 * n as i64 - 1), None, text);
            let kind = if complete_on == Some(n) { "end_conversation" } else { "text" };
            self.bot(id, &at(2 * n as i64), &format!("message {n}"), kind, &format!("Answer {n} to {id}: **{text}**"));
        }
    }
}
