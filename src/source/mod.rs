//! Where chats come from. Each store a bot runtime keeps its chats in is one module here, and
//! rows become these domain types at that edge: everything after (classification, rules, state,
//! mail) works on plain data and never sees SQL. Text from a store is untrusted: it is cleaned
//! here, once, for every output (`crate::text`).

pub mod export_v1;
pub mod rasa;
pub mod sql;
pub mod transcript;
pub mod typebot;

use std::collections::{HashMap, HashSet};

use anyhow::Result;
use chrono::{DateTime, FixedOffset, Utc};

use crate::config::{Config, Location, SourceKind};
pub use transcript::{Transcript, Wanted};

/// A store of chats, read only. Messages (or events) are numbered by the store with ids that
/// grow; a run asks for what is new past a watermark, then for the facts and transcripts of
/// the conversations that may be due. Everything after works on the domain types below.
pub trait Source {
    /// What the store is, for messages: "export /var/lib/bot/export.sqlite".
    fn name(&self) -> String;
    /// What `check` says it found.
    fn describe(&self) -> Result<String>;
    /// How far behind the newest id read a row may still appear, committed late: ids handed
    /// out in one order and committed in another (PostgreSQL's sequences). Each run reads this
    /// far back again; 0 where ids are committed in order (SQLite).
    fn commit_window(&self) -> i64;
    /// Up to `limit` messages with an id above `after`, oldest first, leaving out (neither
    /// reading nor reporting) the ids in `skip`: those read by an earlier run.
    fn activity_after(&self, after: i64, limit: usize, skip: &HashSet<i64>) -> Result<Batch>;
    /// The conversations among `ids` that the store has.
    fn conversations(&self, ids: &[&str]) -> Result<HashMap<String, Conversation>>;
    /// The messages of conversations, each up to its own last message id, handed to `f` one at a
    /// time, in order within each conversation (`Transcript::read` keeps what a run needs of
    /// them: a long chat is never held whole).
    fn transcripts(&self, wanted: &[(&str, i64)], f: &mut dyn FnMut(&str, Message)) -> Result<()>;
    /// The highest message id.
    fn last_message_id(&self) -> Result<i64>;
    /// The row at `id`, as `Batch::anchor` describes it; none when there is no such row.
    fn anchor_at(&self, id: i64) -> Result<Option<String>>;
    /// How many rows have an id at or below `id` (a periodic check, not a per-run one).
    fn count_through(&self, id: i64) -> Result<i64>;
    /// About how many conversations there are, for progress bars only.
    fn about_how_many_conversations(&self) -> u64;
    /// Every conversation's messages with ids up to `through`, one conversation at a time, with
    /// its facts when the store has them. Returns how many rows were read.
    fn each_conversation(&self, through: i64, f: &mut Visit) -> Result<i64>;
    /// Whether the store marks a chat finished in place, with no message of its own (Typebot's
    /// `isCompleted`): then each run asks `finished_among` of the chats still open.
    fn finishes_in_place(&self) -> bool {
        false
    }
    /// Of the conversations `open`, the ones the store marks finished now.
    fn finished_among(&self, _open: &[&str]) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
}

/// What `Source::each_conversation` calls with each conversation.
pub type Visit<'a> = dyn FnMut(&str, Option<&Conversation>, &[Message]) -> Result<()> + 'a;

/// How far back a run reads a PostgreSQL store again for rows committed out of id order (see
/// `Source::commit_window`). A chatbot's writes are short transactions: one committed a
/// thousand ids behind the newest is far beyond what concurrent saves produce, and the hourly
/// count (`pipeline::ingest`) finds even that.
pub const POSTGRES_COMMIT_WINDOW: i64 = 1000;

/// Opens the store the config names.
pub fn open(config: &Config) -> Result<Box<dyn Source>> {
    let Some(source) = &config.source else {
        anyhow::bail!("config: no source (give `export = PATH` or a [source] table)");
    };
    Ok(match (source.kind, source.location()) {
        (SourceKind::Export, Location::Sqlite(path)) => Box::new(export_v1::Export::open_sqlite(&path)?),
        (SourceKind::Export, Location::Postgres(url)) => {
            Box::new(export_v1::Export::open_postgres(&url, source.password()?.as_deref())?)
        }
        (SourceKind::Rasa, Location::Sqlite(path)) => Box::new(rasa::Rasa::open_sqlite(&path, source)?),
        (SourceKind::Rasa, Location::Postgres(url)) => Box::new(rasa::Rasa::open_postgres(&url, source)?),
        (SourceKind::Typebot, Location::Postgres(url)) => Box::new(typebot::Typebot::open(&url, config)?),
        // The config check refuses it first.
        (SourceKind::Typebot, Location::Sqlite(_)) => {
            anyhow::bail!("source.url: Typebot keeps its chats in PostgreSQL")
        }
    })
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Author {
    Bot,
    Visitor,
    /// Not a chat line: a value the bot recorded about the visitor (Rasa's slots). It gives a
    /// field, and is never shown in a transcript.
    Field,
}

/// The input type of the bot's message on a flow's final step.
pub const END_OF_FLOW: &str = "end_conversation";

/// The one rule that says a message finishes the chat: the bot's message on the final step.
pub fn ends_flow(author: Author, input_type: Option<&str>) -> bool {
    author == Author::Bot && input_type == Some(END_OF_FLOW)
}

/// What a run needs of a new message to track its conversation: no body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    pub id: i64,
    pub conversation_id: String,
    pub sent_at: DateTime<Utc>,
    pub author: Author,
    /// The bot's end-of-flow step.
    pub ends: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    pub id: String,
    pub bot_id: String,
    pub bot_name: String,
    pub visitor_id: String,
    pub started_at: Option<DateTime<FixedOffset>>,
    pub page_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: i64,
    pub sent_at: DateTime<Utc>,
    pub author: Author,
    pub gambit_id: Option<String>,
    pub input_type: Option<String>,
    pub field: Option<String>,
    pub body: String,
}

impl Message {
    pub fn ends_flow(&self) -> bool {
        ends_flow(self.author, self.input_type.as_deref())
    }

    /// A line of the chat as the visitor saw it: not a recorded field, not a bare marker of
    /// the flow's end (a store that keeps completion apart from what the bot said).
    pub fn is_shown(&self) -> bool {
        self.author != Author::Field && !(self.body.is_empty() && self.ends_flow())
    }

    /// The visitor's answer to a field, typed or recorded: `(field, value)`.
    pub fn gives_field(&self) -> Option<(&str, &str)> {
        match self.author {
            Author::Visitor | Author::Field => Some((self.field.as_deref()?, self.body.as_str())),
            Author::Bot => None,
        }
    }
}

/// Each field a visitor gave in these messages, in the order first given, with the latest
/// non-blank answer (visitors correct typos), trimmed.
pub fn given_fields(messages: &[Message]) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for (name, value) in messages.iter().filter_map(Message::gives_field) {
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        match fields.iter_mut().find(|(n, _)| n == name) {
            Some(f) => f.1 = value.to_owned(),
            None => fields.push((name.to_owned(), value.to_owned())),
        }
    }
    fields
}

/// A batch of new activity, and how far it reached (bad rows included, so they are reported
/// once and never read again).
#[derive(Debug, Default)]
pub struct Batch {
    pub activity: Vec<Activity>,
    /// The last row's id.
    pub through: Option<i64>,
    /// The last row as the next run will find it again if the store is unchanged (see
    /// `pipeline::ingest`).
    pub anchor: String,
    /// Rows read, bad ones included.
    pub rows: usize,
    /// Their ids (a source with a commit window remembers them, to read none twice).
    pub ids: Vec<i64>,
}
