//! Where chats come from. Each store a bot runtime keeps its chats in is one module here, and
//! rows become these domain types at that edge: everything after (classification, rules, state,
//! mail) works on plain data and never sees SQL. Text from a store is untrusted: it is cleaned
//! here, once, for every output (`crate::domain::text`).

pub mod dify;
pub mod export_v1;
pub mod fields;
pub mod flowise;
pub mod rasa;
pub mod sql;
pub mod timed;
pub mod typebot;

use std::collections::{HashMap, HashSet};

use anyhow::Result;
use chrono::{DateTime, Utc};

use crate::config::{Config, Location, SourceKind};
use crate::domain::{Activity, Conversation, Message, Reader, Transcript, Wanted};

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
    /// reading nor reporting) the rows whose key is in `skip`: those read by an earlier run.
    fn activity_after(&self, after: i64, limit: usize, skip: &HashSet<i64>) -> Result<Batch>;
    /// The conversations among `ids` that the store has.
    fn conversations(&self, ids: &[&str]) -> Result<HashMap<String, Conversation>>;
    /// The messages of conversations, each up to its own last message id, handed to `f` one at a
    /// time, in order within each conversation (`read_transcripts` keeps what a run needs of
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
    /// Whether a chat in this store has a last step to reach (a flow's end, a form sent): an LLM
    /// chat (Flowise, Dify) has none. Such a chat is judged only once it has gone quiet
    /// (`abandon_after`), never while active: `ChatState::Ended`, or `Completed` where a message
    /// matched the bot's `complete_on` (its `Activity::ends`), and `Resumed` after an email.
    fn has_last_step(&self) -> bool {
        true
    }
    /// Whether the bot's messages are markdown (an LLM's answers: tables, lists, links), shown
    /// rendered in an email's HTML part and as written in its text part.
    fn writes_markdown(&self) -> bool {
        false
    }
    /// Whether the store marks a chat finished in place, with no message of its own (Typebot's
    /// `isCompleted`): then each run asks `finished_among` of the chats still open.
    fn finishes_in_place(&self) -> bool {
        false
    }
    /// Of the conversations `open`, the ones the store marks finished now.
    fn finished_among(&self, _open: &[&str]) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
    /// The run's clock, told before anything is read. A store whose ids are times (Flowise's
    /// positions) reads no row stamped ahead of it (beyond its own tolerance): such a row is
    /// left for the run when its time has come, so the watermark never runs ahead of the rows
    /// still to be written. Nothing for a store whose ids are counters.
    fn read_until(&self, _clock: DateTime<Utc>) {}
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
        (SourceKind::Flowise, Location::Sqlite(path)) => Box::new(flowise::Flowise::open_sqlite(&path, config)?),
        (SourceKind::Flowise, Location::Postgres(url)) => Box::new(flowise::Flowise::open_postgres(&url, config)?),
        (SourceKind::Dify, Location::Postgres(url)) => Box::new(dify::Dify::open(&url, config)?),
        // The config check refuses them first.
        (SourceKind::Typebot, Location::Sqlite(_)) => {
            anyhow::bail!("source.url: Typebot keeps its chats in PostgreSQL")
        }
        (SourceKind::Dify, Location::Sqlite(_)) => anyhow::bail!("source.url: Dify keeps its chats in PostgreSQL"),
    })
}

/// Reads the transcripts of `wanted` from `source`, keeping of each its latest `lines` lines;
/// one for every conversation asked for (empty where the source has no messages of it).
pub fn read_transcripts(source: &dyn Source, wanted: &[Wanted], lines: usize) -> Result<HashMap<String, Transcript>> {
    let mut readers: HashMap<&str, Reader> = wanted.iter().map(|w| (w.id, Reader::new(w.since, lines))).collect();
    let through: Vec<(&str, i64)> = wanted.iter().map(|w| (w.id, w.through)).collect();
    source.transcripts(&through, &mut |id, message| {
        if let Some(reader) = readers.get_mut(id) {
            reader.push(message);
        }
    })?;
    Ok(readers.into_iter().map(|(id, r)| (id.to_owned(), r.finish())).collect())
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
    /// Their `(id, key)`: the id orders them (the watermark's), the key tells one row from
    /// another where ids may be shared (Flowise on PostgreSQL: positions by time); elsewhere
    /// the key is the id. A source with a commit window remembers them, to read none twice.
    pub ids: Vec<(i64, i64)>,
}
