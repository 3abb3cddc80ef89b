//! Dify's PostgreSQL database (`api/models/model.py`, `api/models/workflow.py`), read only.
//!
//! A conversation is a `conversations` row (its uuid is the conversation's id here) of one app
//! (`apps`: the bot, `[[bots]] id` the app's id, its name `apps.name`), from the web app or the
//! API by default (`invoke_from`, `source.invoke_from`); a soft-deleted one (`is_deleted`, Dify up
//! to 1.7) is never read, and the messages of one deleted outright (since 1.8 the row goes at
//! once and a background task removes its messages later) are passed over without a word.
//!
//! Each `messages` row is one exchange: the visitor's `query`, then the bot's `answer`. Dify
//! inserts the row with an empty answer when the visitor sends (`_init_generate_records`) and
//! writes the answer, and `updated_at`, when the reply ends (`_save_message`); a failed reply
//! sets `error` (or `status = 'error'`) and leaves the answer empty. A row is read as soon as
//! it is there: the visitor's line is activity (the chat is active), and while the answer is
//! empty the row is remembered as read *empty* (its key with `EMPTY` set, in the state's memory
//! of rows read): each run goes back over the late-write window (`late_writes`, 10 minutes by
//! default, after `created_at`), finds it again, and reads it again once it changed (answered,
//! or failed): the answer is then activity at its `updated_at` (what finishes a chat is read
//! there). The config refuses a `late_writes` not shorter than `abandon_after`, so a chat whose
//! answer is being written is never quiet yet: once it is judged, the answer is written or will
//! never be, and the email says so ("no reply came", a note, never the bot's words). A chatflow
//! paused at a human input step (`status = 'paused'`, Dify's `MessageStatus.PAUSED`) holds a
//! partial answer that is not final: it is read as an answer being written (remembered
//! *empty*, said as a note while paused), and the row rewritten when the run resumes (the final
//! answer, `status` normal) is read again within the late-write window.
//!
//! Ids: a row's position is its `created_at` (database time, whole seconds, UTC as Dify's
//! docker-compose runs PostgreSQL) in microseconds times 1000 plus an odd tiebreak from its
//! uuid (`timed`); the bot's answer takes the position and the visitor's line the even number
//! before it, so the two are two messages of the chat in order, and a run asking for what is
//! after an answer's id (the look for what was erased) finds that answer first. Activity at or
//! below the id asked after is left out of a batch (a visitor's line when asked after it).
//!
//! Fields: the conversation's `inputs` (the start form's variables) and, for a chatflow app, its
//! `workflow_conversation_variables` (each row a variable as JSON: `name`, `value`; the latest
//! written wins), named as the owner maps them (`source.fields`, `[[bots]] fields`). A list or an
//! object (a file, a JSON value) is named once a run and left out. The person is the email (else
//! the phone) the visitor gave, else the end user: `external_user_id` where the embedding site
//! set it, else the browser's `session_id`.
//!
//! An LLM chat has no last step: it is judged once quiet, and finished where a bot answer said a
//! phrase of `complete_on_phrases`. Dify records an agent's tools (`message_agent_thoughts.tool`)
//! but not a chatflow's: tools are not read.

use std::cell::{Cell as Slot, RefCell};
use std::collections::{HashMap, HashSet};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use serde_json::Value;

use super::fields::Fields;
use super::sql::{Cell, Db, Param};
use super::timed::{
    Completion, LAST_ORDERED, canonical_uuid, key_of, last_ordered, position_of, uuid_bits, wall_of, wall_text,
    wall_time,
};
use super::{Batch, Source, Visit};
use crate::config::{Config, DIFY_LATE_WRITES, DIFY_VISITORS, MAPPED_FIELDS};
use crate::domain::{Activity, Author, Conversation, END_OF_FLOW, Message, text};

/// The bit set in the key a row with an empty answer is remembered by: read again once answered.
const EMPTY: i64 = 1 << 62;
/// How far ahead of the clock `check` names a row's time.
const FAR_AHEAD: TimeDelta = TimeDelta::days(1);
/// What a transcript says where an answer was never written.
pub const NO_REPLY: &str = "No reply came (the bot's answer was never written: the visitor may have left while it was \
                            being written).";
/// What a transcript says where the reply is paused (a chatflow's human input node waits for a
/// person, `status = 'paused'`): what the row holds then is not the bot's final answer.
pub const PAUSED_REPLY: &str = "The bot's reply is paused, waiting for a person's input (a human input step): its \
                                final answer is not written yet.";
/// What a transcript says where the reply failed; the error Dify recorded follows.
pub const FAILED_REPLY: &str = "The bot's reply failed";
/// The most of Dify's error text a transcript shows.
const ERROR_CHARS: usize = 300;

/// The columns of a message row, in `Dify::row`'s order.
const COLUMNS: &str = "m.id::text, m.conversation_id::text, m.created_at, m.updated_at, m.query, m.answer, m.status, \
                       m.error, c.id IS NOT NULL, coalesce(c.is_deleted, false), coalesce(c.invoke_from, ''), \
                       c.app_id::text";
const FROM: &str = "FROM messages m LEFT JOIN conversations c ON c.id = m.conversation_id";
/// The columns of a conversation's facts, after `COLUMNS` or alone.
const FACTS: &str = "c.inputs::text, c.created_at, e.session_id, e.external_user_id, a.name";
const FACTS_FROM: &str = "LEFT JOIN end_users e ON e.id = c.from_end_user_id LEFT JOIN apps a ON a.id = c.app_id";

/// The tables a run reads (`check` tries each: a missing GRANT is named there).
const TABLES: [&str; 5] = ["apps", "conversations", "messages", "end_users", "workflow_conversation_variables"];

/// The queries a run makes.
struct Sql {
    after: String,
    at: String,
    chats: String,
    facts: String,
    variables: String,
    last: String,
    count: String,
    everything: String,
    all_variables: &'static str,
}

fn sql(answers: bool) -> Sql {
    // New rows are read without the visitor's text (transcripts read it), and without the
    // answer's where no phrase may finish a chat: whether it is written is all a run needs then.
    let cols = COLUMNS.replace("m.query,", "'' AS query,");
    let cols = if answers { cols } else { cols.replace("m.answer,", "CASE WHEN m.answer = '' THEN '' ELSE '.' END,") };
    Sql {
        after: format!(
            "SELECT {cols} {FROM} WHERE m.created_at > CAST(?1 AS timestamp) AND m.created_at <= CAST(?3 AS timestamp)
             AND m.created_at < CAST('{LAST_ORDERED}' AS timestamp) ORDER BY m.created_at LIMIT ?2"
        ),
        at: format!("SELECT {cols} {FROM} WHERE m.created_at = CAST(?1 AS timestamp)"),
        chats: format!(
            "SELECT {COLUMNS} FROM rarray(?1) AS page CROSS JOIN messages m ON m.conversation_id = CAST(page.value AS uuid)
             LEFT JOIN conversations c ON c.id = m.conversation_id"
        ),
        facts: format!(
            "SELECT c.id::text, c.app_id::text, c.is_deleted, coalesce(c.invoke_from, ''), {FACTS}
             FROM rarray(?1) AS page CROSS JOIN conversations c ON c.id = CAST(page.value AS uuid) {FACTS_FROM}"
        ),
        variables: "SELECT v.conversation_id::text, v.data, v.updated_at, v.id::text FROM rarray(?1) AS page
             CROSS JOIN workflow_conversation_variables v ON v.conversation_id = CAST(page.value AS uuid)"
            .to_owned(),
        last: "SELECT max(created_at) FROM messages
             WHERE created_at < CAST('2200-01-01 00:00:00' AS timestamp) AND created_at <= CAST(?1 AS timestamp)"
            .to_owned(),
        count: "SELECT count(*) FROM messages
             WHERE created_at > CAST('1970-01-01 00:00:00' AS timestamp) AND created_at < CAST(?1 AS timestamp)"
            .to_owned(),
        everything: format!(
            "SELECT {COLUMNS}, {FACTS} {FROM} {FACTS_FROM} WHERE m.created_at <= CAST(?1 AS timestamp)
             ORDER BY m.conversation_id, m.created_at, m.id"
        ),
        all_variables: "SELECT v.conversation_id::text, v.data, v.updated_at, v.id::text FROM workflow_conversation_variables v",
    }
}

/// The queries a run makes, with parameters of their types (for the query-plan tests): each
/// through an index of Dify's schema (`INDEXES` where one is missing).
pub fn queries() -> Vec<(String, Vec<Param>)> {
    let s = sql(true);
    let t = || Param::Text("2026-12-07 09:00:00".into());
    let ids = || vec![Param::Texts(vec![])];
    vec![
        (s.after, vec![t(), Param::Int(0), t()]),
        (s.at, vec![t()]),
        (s.chats, ids()),
        (s.facts, ids()),
        (s.variables, ids()),
        (s.last, vec![t()]),
        (s.count, vec![t()]),
    ]
}

/// The indexes each run's queries need (table, column, statement): Dify's schema has them
/// (`message_created_at_idx`, `message_conversation_id_idx`, and since 0.7
/// `workflow_conversation_variables_conversation_id_idx`); `check` names one that is missing.
pub const INDEXES: [(&str, &str, &str); 3] = [
    (
        "messages",
        "created_at",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS message_created_at_idx ON messages (created_at)",
    ),
    (
        "messages",
        "conversation_id",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS message_conversation_id_idx ON messages (conversation_id)",
    ),
    (
        "workflow_conversation_variables",
        "conversation_id",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS workflow_conversation_variables_conversation_id_idx ON \
         workflow_conversation_variables (conversation_id)",
    ),
];

pub struct Dify {
    db: Db,
    sql: Sql,
    /// "dify postgresql://dify@db:5432/dify", without a password.
    name: String,
    invoke_from: Vec<String>,
    complete: Completion,
    fields: Fields,
    /// The late-write window, in positions.
    window: i64,
    /// The latest `created_at` a run reads: the run's clock.
    until: Slot<NaiveDateTime>,
    /// What was named this run (bad rows, fields left out): each once.
    named: RefCell<HashSet<String>>,
}

/// One `messages` row, with its conversation's where it is there.
#[derive(Debug, Clone)]
struct Row {
    position: i64,
    key: i64,
    uuid: String,
    chat: String,
    created: Option<NaiveDateTime>,
    raw_time: String,
    updated: Option<NaiveDateTime>,
    query: String,
    answer: String,
    status: String,
    error: Option<String>,
    /// The conversation row is there (not deleted outright).
    chat_exists: bool,
    deleted: bool,
    invoke_from: String,
    app: String,
}

/// What became of an exchange's reply.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    Answered,
    /// Nothing written yet: being written, or never to be.
    Empty,
    /// Paused for a person's input (`status = 'paused'`): the row is rewritten with the final
    /// answer (and `status` normal) when the run resumes.
    Paused,
    /// Dify's error text, if any.
    Failed(String),
}

impl Row {
    fn reply(&self) -> Reply {
        let error = self.error.as_deref().map(str::trim).filter(|e| !e.is_empty());
        if self.status == "error" || error.is_some() {
            Reply::Failed(error.unwrap_or_default().to_owned())
        } else if self.status == "paused" {
            Reply::Paused
        } else if self.answer.is_empty() {
            Reply::Empty
        } else {
            Reply::Answered
        }
    }

    /// When the answer was written: `updated_at`, never before the question.
    fn answered_at(&self) -> Option<DateTime<Utc>> {
        let created = self.created?;
        Some(self.updated.filter(|u| *u > created).unwrap_or(created).and_utc())
    }
}

/// A conversation's facts.
#[derive(Debug, Clone, Default)]
struct Facts {
    id: String,
    app: String,
    deleted: bool,
    invoke_from: String,
    inputs: Option<String>,
    created: Option<NaiveDateTime>,
    session: Option<String>,
    external: Option<String>,
    app_name: Option<String>,
    /// Its conversation variables: (data, updated_at).
    variables: Vec<Variable>,
}

impl Dify {
    pub fn open(url: &str, config: &Config) -> Result<Self> {
        let source = config.source.as_ref().context("no source")?;
        let name = format!("dify {}", super::sql::shown_url(url));
        let db = Db::postgres(url, source.password()?.as_deref()).with_context(|| format!("{name}: connecting"))?;
        let complete = Completion::of(config);
        let late = source.late_writes.map_or(DIFY_LATE_WRITES, |s| s.0);
        let dify = Dify {
            db,
            sql: sql(complete.has_phrases()),
            name,
            invoke_from: source
                .invoke_from
                .clone()
                .unwrap_or_else(|| DIFY_VISITORS.iter().map(|s| (*s).to_owned()).collect()),
            complete,
            fields: Fields::of(config),
            window: late.num_microseconds().unwrap_or(i64::MAX / 1000).saturating_mul(1000),
            until: Slot::new(last_ordered()),
            named: RefCell::default(),
        };
        dify.check_schema()?;
        Ok(dify)
    }

    /// One line naming the database and what is missing, before any state is touched.
    fn check_schema(&self) -> Result<()> {
        for (sql, params) in queries() {
            if let Err(why) = self.db.prepare(&sql, &params).with_context(|| self.name.clone())? {
                bail!(
                    "{}: not a Dify database this version reads ({why}); it reads Dify 0.6-1.x's messages (query, \
                     answer, status, error, created_at, updated_at), conversations, end_users, apps and \
                     workflow_conversation_variables",
                    self.name
                );
            }
        }
        Ok(())
    }

    fn row(c: &[Cell]) -> Row {
        let uuid = c[0].lossy().unwrap_or_default();
        let raw_time = c[2].lossy().unwrap_or_default();
        let created = wall_time(&raw_time);
        let (position, key) = place(created, &uuid);
        Row {
            position,
            key,
            chat: c[1].lossy().unwrap_or_default(),
            created,
            raw_time,
            updated: c[3].lossy().as_deref().and_then(wall_time),
            query: c[4].lossy().unwrap_or_default(),
            answer: c[5].lossy().unwrap_or_default(),
            status: c[6].lossy().unwrap_or_default(),
            error: c[7].lossy(),
            chat_exists: c[8].int() == Some(1),
            deleted: c[9].int() == Some(1),
            invoke_from: c[10].lossy().unwrap_or_default(),
            app: c[11].lossy().unwrap_or_default().to_lowercase(),
            uuid,
        }
    }

    fn read_rows(&self, sql: &str, params: &[Param]) -> Result<Vec<Row>> {
        let mut out = Vec::new();
        self.db
            .each(sql, params, |c| {
                out.push(Dify::row(c));
                Ok(())
            })
            .with_context(|| format!("{}: reading messages", self.name))?;
        Ok(out)
    }

    fn rows_at(&self, wall: NaiveDateTime) -> Result<Vec<Row>> {
        self.read_rows(&self.sql.at, &[time(wall)])
    }

    /// Whether a conversation is one this source reads: there, not deleted, from a place read.
    fn wanted(&self, exists: bool, deleted: bool, invoke_from: &str) -> bool {
        exists && !deleted && self.invoke_from.iter().any(|w| w == invoke_from)
    }

    /// Says `what` once a run, under `key`.
    fn once(&self, key: String, what: impl FnOnce() -> String) {
        if self.named.borrow_mut().insert(key) {
            log::warn!("{}: {}", self.name, what());
        }
    }

    /// The rows of conversations, by conversation id, in order.
    fn chats(&self, ids: &[String]) -> Result<HashMap<String, Vec<Row>>> {
        let mut out: HashMap<String, Vec<Row>> = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        for row in self.read_rows(&self.sql.chats, &[Param::Texts(ids.to_vec())])? {
            out.entry(row.chat.clone()).or_default().push(row);
        }
        for rows in out.values_mut() {
            rows.sort_by_key(|r| (r.position, r.key));
        }
        Ok(out)
    }

    /// The facts of conversations, by id: those the store has, deleted or not.
    fn facts(&self, ids: &[String]) -> Result<HashMap<String, Facts>> {
        let mut out: HashMap<String, Facts> = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let page = Param::Texts(ids.to_vec());
        let rows = self
            .db
            .rows(&self.sql.facts, std::slice::from_ref(&page))
            .with_context(|| format!("{}: reading conversations", self.name))?;
        for c in rows {
            let facts = Facts {
                id: c[0].lossy().unwrap_or_default(),
                app: c[1].lossy().unwrap_or_default().to_lowercase(),
                deleted: c[2].int() == Some(1),
                invoke_from: c[3].lossy().unwrap_or_default(),
                ..facts_of(&c[4..])
            };
            out.insert(facts.id.clone(), facts);
        }
        let variables = self
            .db
            .rows(&self.sql.variables, &[page])
            .with_context(|| format!("{}: reading workflow_conversation_variables", self.name))?;
        for c in variables {
            let id = c[0].lossy().unwrap_or_default();
            if let Some(facts) = out.get_mut(&id) {
                facts.variables.push(variable(&c));
            }
        }
        Ok(out)
    }

    /// A conversation's fields, as (field, value), the start form's then its variables': what
    /// cannot be shown is named once a run.
    fn fields_of(&self, facts: &Facts) -> Vec<(String, String)> {
        let (values, bad) = values(facts.inputs.as_deref(), &facts.variables);
        for why in bad {
            self.once(format!("{}\u{1f}{}\u{1f}{why}", facts.app, facts.id), || {
                format!(
                    "app {}, conversation {}: {why}; left out of its emails",
                    text::line(&facts.app),
                    text::line(&facts.id)
                )
            });
        }
        // `name`, `email`, `phone` in any case: where the mapping took the field for another
        // variable, one named so is still that field (the mapped one, written later, wins).
        let own = |field: String| match MAPPED_FIELDS.iter().find(|f| f.eq_ignore_ascii_case(&field)) {
            Some(f) => (*f).to_owned(),
            None => field,
        };
        values.into_iter().map(|(name, value)| (own(self.fields.field(&facts.app, &name)), value)).collect()
    }

    fn conversation(&self, facts: &Facts, fields: &[(String, String)], first: Option<NaiveDateTime>) -> Conversation {
        let given = |field: &str| {
            fields.iter().rev().find(|(n, v)| n == field && !v.trim().is_empty()).map(|(_, v)| v.trim().to_lowercase())
        };
        let user = [&facts.external, &facts.session]
            .into_iter()
            .find_map(|v| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned));
        Conversation {
            id: facts.id.clone(),
            bot_id: text::line(&facts.app).into_owned(),
            bot_name: text::line(facts.app_name.as_deref().unwrap_or(&facts.app)).into_owned(),
            // Across devices, the person is who they said they are; else the end user.
            visitor_id: text::line(&given("email").or_else(|| given("phone")).or(user).unwrap_or_default())
                .into_owned(),
            started_at: facts.created.or(first).map(|t| t.and_utc().fixed_offset()),
            page_url: None,
        }
    }

    /// A chat's messages through position `through`: the fields first (recorded, at the first
    /// exchange), then each exchange: the visitor's line, and the bot's answer (`message N`,
    /// `END_OF_FLOW` where it finishes the chat), or a note that the reply failed or never came.
    fn messages(&self, fields: &[(String, String)], rows: &[Row], through: i64) -> Vec<Message> {
        let rows: Vec<(&Row, DateTime<Utc>)> = rows
            .iter()
            .filter(|r| r.position > 0 && r.position - 1 <= through)
            .filter_map(|r| Some((r, r.created?.and_utc())))
            .collect();
        let Some(&(first, first_at)) = rows.first() else { return Vec::new() };
        let mut out: Vec<Message> = fields
            .iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(name, value)| Message {
                id: first.position - 1,
                sent_at: first_at,
                author: Author::Field,
                gambit_id: None,
                input_type: None,
                field: Some(text::line(name).into_owned()),
                body: text::body(value.trim()).into_owned(),
            })
            .collect();
        for (asked, &(row, at)) in rows.iter().enumerate() {
            out.push(Message {
                id: row.position - 1,
                sent_at: at,
                author: Author::Visitor,
                gambit_id: None,
                input_type: None,
                field: None,
                body: text::body(&row.query).into_owned(),
            });
            let reply = |author, body: String, ends: bool| Message {
                id: row.position,
                sent_at: row.answered_at().unwrap_or(at),
                author,
                gambit_id: (author == Author::Bot).then(|| crate::domain::turn(asked + 1)),
                input_type: ends.then(|| END_OF_FLOW.to_owned()),
                field: None,
                body,
            };
            out.push(match row.reply() {
                Reply::Answered => {
                    let ends = self.complete.finishes(&row.app, &row.answer, &[]);
                    reply(Author::Bot, text::body(&row.answer).into_owned(), ends)
                }
                Reply::Failed(error) if error.is_empty() => reply(Author::Note, format!("{FAILED_REPLY}."), false),
                Reply::Failed(error) => {
                    let error: String = text::line(&error).chars().take(ERROR_CHARS).collect();
                    reply(Author::Note, format!("{FAILED_REPLY}: {error}"), false)
                }
                Reply::Empty => reply(Author::Note, NO_REPLY.to_owned(), false),
                Reply::Paused => reply(Author::Note, PAUSED_REPLY.to_owned(), false),
            });
        }
        out
    }

    /// Names the rows stamped more than a day ahead of `clock`: each is read only once its
    /// time has come.
    fn name_rows_far_ahead(&self, clock: DateTime<Utc>) -> Result<()> {
        let sql = "SELECT m.id::text, m.created_at, count(*) OVER () FROM messages m
             WHERE m.created_at > CAST(?1 AS timestamp) ORDER BY m.created_at LIMIT 1";
        let first = self
            .db
            .one(sql, &[time((clock + FAR_AHEAD).naive_utc())])
            .with_context(|| format!("{}: reading messages", self.name))?;
        if let Some(first) = first {
            log::warn!(
                "{}: {} messages row(s) are stamped more than a day ahead of the clock, each read only once its time \
                 has come (the first: row {}, created_at {})",
                self.name,
                first[2].int().unwrap_or_default(),
                text::line(&first[0].lossy().unwrap_or_default()),
                first[1].lossy().as_deref().and_then(wall_time).map_or_else(String::new, |w| w.to_string())
            );
        }
        Ok(())
    }
}

/// Pure: a row's position (its time and an odd tiebreak from its uuid; 0 where it has no
/// place) and key.
fn place(created: Option<NaiveDateTime>, uuid: &str) -> (i64, i64) {
    let (hi, lo) = uuid_bits(uuid);
    (created.and_then(|w| position_of(w, (lo % 500) * 2 + 1)).unwrap_or(0), key_of(hi, lo) & !EMPTY)
}

/// A conversation variable: its `data`, `updated_at` and id.
type Variable = (String, Option<NaiveDateTime>, String);

/// Pure: a variable of a `variables` row (conversation id, data, updated_at, id).
fn variable(c: &[Cell]) -> Variable {
    (c[1].lossy().unwrap_or_default(), c[2].lossy().as_deref().and_then(wall_time), c[3].lossy().unwrap_or_default())
}

/// Pure: the facts' columns after the first four (`FACTS`).
fn facts_of(c: &[Cell]) -> Facts {
    Facts {
        inputs: c[0].lossy(),
        created: c[1].lossy().as_deref().and_then(wall_time),
        session: c[2].lossy(),
        external: c[3].lossy(),
        app_name: c[4].lossy(),
        ..Facts::default()
    }
}

/// Pure: the start form's values (`inputs`, a JSON object) and the conversation variables'
/// (each `{name, value}`, the latest written winning), as (name, text), and what was left out
/// and why. Unset values (null, "") are no value.
fn values(inputs: Option<&str>, variables: &[Variable]) -> (Vec<(String, String)>, Vec<String>) {
    let (mut out, mut bad) = (Vec::new(), Vec::new());
    // Each variable's value apart: one Dify wrote but cannot be read (a lone surrogate escape
    // `\ud800`, nesting past the parser's depth) leaves out that variable only.
    type Form = std::collections::BTreeMap<String, Box<serde_json::value::RawValue>>;
    match inputs.map(str::trim) {
        None | Some("null") => {}
        Some(inputs) => match serde_json::from_str::<Form>(inputs) {
            Ok(map) => {
                for (name, raw) in &map {
                    match serde_json::from_str::<Value>(raw.get()) {
                        Ok(value) => take(name, &value, "start form variable", &mut out, &mut bad),
                        Err(e) => bad.push(format!(
                            "start form variable {:?} is not a value JSON can read ({e})",
                            text::line(name)
                        )),
                    }
                }
            }
            Err(_) if serde_json::from_str::<Value>(inputs).is_ok() => {
                bad.push("its inputs is not a JSON object".to_owned())
            }
            Err(e) => bad.push(format!("its inputs is not JSON ({e})")),
        },
    }
    let mut latest: Vec<&Variable> = variables.iter().collect();
    latest.sort_by_key(|(_, at, _)| *at);
    let mut vars: Vec<(String, String)> = Vec::new();
    for (data, _, id) in latest {
        let id = text::line(id);
        match serde_json::from_str::<Value>(data) {
            Ok(v) => match v.get("name").and_then(Value::as_str) {
                Some(name) => {
                    let mut one = Vec::new();
                    take(name, v.get("value").unwrap_or(&Value::Null), "conversation variable", &mut one, &mut bad);
                    vars.retain(|(n, _)| n != name);
                    vars.extend(one);
                }
                None => bad.push(format!("conversation variable {id} has no name")),
            },
            Err(e) => bad.push(format!("conversation variable {id}: its data is not JSON ({e})")),
        }
    }
    out.extend(vars);
    (out, bad)
}

/// Pure: a variable's value as text where a field can show it, else why not (in `bad`).
fn take(name: &str, value: &Value, what: &str, out: &mut Vec<(String, String)>, bad: &mut Vec<String>) {
    match value {
        Value::Null => {}
        Value::String(s) => out.push((name.to_owned(), s.clone())),
        Value::Bool(_) | Value::Number(_) => out.push((name.to_owned(), value.to_string())),
        Value::Array(_) | Value::Object(_) => {
            let kind = if value.is_array() { "a list" } else { "an object" };
            bad.push(format!("{what} {:?} holds {kind}, not a value a field can show", text::line(name)));
        }
    }
}

/// Pure: a time as a query's parameter.
fn time(wall: NaiveDateTime) -> Param {
    Param::Text(wall_text(wall))
}

fn anchor(row: &Row) -> String {
    format!("{}\u{1f}{}", row.chat, row.uuid)
}

/// Pure: the key a row is remembered by: its own, or with `EMPTY` while its answer is empty or
/// paused (so it is read again once answered or failed).
fn state_key(row: &Row) -> i64 {
    if matches!(row.reply(), Reply::Empty | Reply::Paused) { row.key | EMPTY } else { row.key & !EMPTY }
}

impl Source for Dify {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn describe(&self) -> Result<String> {
        // A role lacking a GRANT on one table a run reads fails every run: named here, the table.
        for table in TABLES {
            self.db
                .rows(&format!("SELECT 1 FROM {table} LIMIT 0"), &[])
                .with_context(|| format!("{}: reading table {table}", self.name))?;
        }
        let count = |sql: &str| self.db.int(sql, &[]).map(Option::unwrap_or_default);
        let (apps, conversations, messages) = (
            count("SELECT count(*) FROM apps")?,
            count("SELECT count(*) FROM conversations")?,
            count("SELECT count(*) FROM messages")?,
        );
        self.name_rows_far_ahead(Utc::now())?;
        let before = self
            .db
            .one(
                "SELECT m.id::text, m.created_at, count(*) OVER () FROM messages m
                 WHERE m.created_at <= CAST('1970-01-01 00:00:00' AS timestamp) ORDER BY m.created_at LIMIT 1",
                &[],
            )
            .with_context(|| format!("{}: reading messages", self.name))?;
        if let Some(first) = before {
            log::warn!(
                "{}: {} messages row(s) have a created_at before 1970, never read (the first: row {}, created_at {})",
                self.name,
                first[2].int().unwrap_or_default(),
                text::line(&first[0].lossy().unwrap_or_default()),
                text::line(&first[1].lossy().unwrap_or_default())
            );
        }
        let lacking = self.db.lacking(&INDEXES)?;
        let from = self.invoke_from.join(", ");
        let mut said = format!(
            "{} (Dify): {apps} app(s), {conversations} conversations, {messages} messages, invoke_from read: {from}",
            self.name.trim_start_matches("dify ")
        );
        if !lacking.is_empty() {
            // An older schema: each run would scan a table.
            said +=
                "; the schema lacks an index the queries each run make need (they scan the table); create it once: ";
            said += &lacking.join(" ");
        }
        Ok(said)
    }

    fn commit_window(&self) -> i64 {
        self.window
    }

    fn read_until(&self, clock: DateTime<Utc>) {
        // No row stamped ahead of the clock: a row with an empty answer is then within the window
        // of the watermark for as long as its answer may be written, read again by each run's
        // pass over the window.
        self.until.set(clock.naive_utc().min(last_ordered()));
    }

    fn activity_after(&self, after: i64, limit: usize, skip: &HashSet<i64>) -> Result<Batch> {
        // Whole timestamps: the rest of the one at `after`, then a page cut at a whole one.
        let at = wall_of(after);
        let mut rows = if after > 0 { self.rows_at(at)? } else { Vec::new() };
        rows.retain(|r| r.position > after);
        let mut page =
            self.read_rows(&self.sql.after, &[time(at), Param::Int(limit as i64), time(self.until.get())])?;
        if page.len() >= limit
            && let Some(cut) = page.last().and_then(|r| r.created)
        {
            page.retain(|r| r.created.is_some_and(|c| c < cut));
            page.extend(self.rows_at(cut)?);
        }
        rows.extend(page);
        rows.sort_by_key(|r| (r.position, r.key));
        let mut batch = Batch { through: rows.iter().map(|r| r.position).max(), ..Batch::default() };
        rows.retain(|r| !skip.contains(&state_key(r)));
        for row in &rows {
            batch.rows += 1;
            batch.ids.push((row.position, state_key(row)));
            batch.anchor = anchor(row);
            // Deleted (soft, or outright with its messages removed later), or not a visitor's.
            if !self.wanted(row.chat_exists, row.deleted, &row.invoke_from) {
                continue;
            }
            let Some(created) = row.created.filter(|_| row.position > 0) else {
                self.once(format!("row {}", row.uuid), || {
                    format!(
                        "messages row {} skipped: created_at {:?} is not a time",
                        text::line(&row.uuid),
                        text::line(&row.raw_time)
                    )
                });
                continue;
            };
            // The visitor's line of the row just after `after` is not after it.
            if row.position - 1 > after {
                batch.activity.push(Activity {
                    id: row.position - 1,
                    conversation_id: row.chat.clone(),
                    sent_at: created.and_utc(),
                    author: Author::Visitor,
                    ends: false,
                });
            }
            if row.reply() == Reply::Answered {
                batch.activity.push(Activity {
                    id: row.position,
                    conversation_id: row.chat.clone(),
                    sent_at: row.answered_at().unwrap_or_else(|| created.and_utc()),
                    author: Author::Bot,
                    ends: self.complete.finishes(&row.app, &row.answer, &[]),
                });
            }
        }
        Ok(batch)
    }

    fn conversations(&self, ids: &[&str]) -> Result<HashMap<String, Conversation>> {
        let ids: Vec<String> = ids.iter().filter(|id| canonical_uuid(id)).map(|id| (*id).to_owned()).collect();
        let mut out = HashMap::new();
        for (id, facts) in self.facts(&ids)? {
            if !self.wanted(true, facts.deleted, &facts.invoke_from) {
                continue;
            }
            let fields = self.fields_of(&facts);
            out.insert(id, self.conversation(&facts, &fields, None));
        }
        Ok(out)
    }

    fn transcripts(&self, wanted: &[(&str, i64)], f: &mut dyn FnMut(&str, Message)) -> Result<()> {
        let ids: Vec<String> =
            wanted.iter().map(|(id, _)| *id).filter(|id| canonical_uuid(id)).map(str::to_owned).collect();
        let (facts, chats) = (self.facts(&ids)?, self.chats(&ids)?);
        for (id, through) in wanted {
            let (Some(facts), Some(rows)) = (facts.get(*id), chats.get(*id)) else { continue };
            if !self.wanted(true, facts.deleted, &facts.invoke_from) {
                continue;
            }
            let fields = self.fields_of(facts);
            self.messages(&fields, rows, *through).into_iter().for_each(|m| f(id, m));
        }
        Ok(())
    }

    fn has_last_step(&self) -> bool {
        false
    }

    fn writes_markdown(&self) -> bool {
        true
    }

    fn last_message_id(&self) -> Result<i64> {
        let last = self
            .db
            .one(&self.sql.last, &[time(self.until.get())])
            .with_context(|| format!("{}: reading messages", self.name))?;
        Ok(match last.and_then(|r| r[0].lossy()).as_deref().and_then(wall_time) {
            Some(wall) => self.rows_at(wall)?.iter().map(|r| r.position).max().unwrap_or(0),
            None => 0,
        })
    }

    fn anchor_at(&self, id: i64) -> Result<Option<String>> {
        let rows = self.rows_at(wall_of(id))?;
        Ok(rows.iter().filter(|r| r.position == id).max_by_key(|r| (r.position, r.key)).map(anchor))
    }

    fn count_through(&self, id: i64) -> Result<i64> {
        let wall = wall_of(id);
        let before = self
            .db
            .int(&self.sql.count, &[time(wall)])
            .with_context(|| format!("{}: counting messages", self.name))?
            .unwrap_or(0);
        Ok(before + self.rows_at(wall)?.iter().filter(|r| r.position <= id).count() as i64)
    }

    fn about_how_many_conversations(&self) -> u64 {
        0
    }

    fn each_conversation(&self, through: i64, f: &mut Visit) -> Result<i64> {
        // Variables first: the connection reads one query at a time.
        let mut variables: HashMap<String, Vec<Variable>> = HashMap::new();
        let rows = self
            .db
            .rows(self.sql.all_variables, &[])
            .with_context(|| format!("{}: reading workflow_conversation_variables", self.name))?;
        for c in rows {
            variables.entry(c[0].lossy().unwrap_or_default()).or_default().push(variable(&c));
        }
        let mut read = 0;
        let mut current: Option<(Facts, Vec<Row>)> = None;
        let mut flush = |current: Option<(Facts, Vec<Row>)>| -> Result<()> {
            let Some((mut facts, mut rows)) = current else { return Ok(()) };
            facts.variables = variables.remove(&facts.id).unwrap_or_default();
            rows.sort_by_key(|r| (r.position, r.key));
            let fields = self.fields_of(&facts);
            let messages = self.messages(&fields, &rows, through);
            if messages.is_empty() {
                return Ok(());
            }
            let conversation = self.conversation(&facts, &fields, rows.first().and_then(|r| r.created));
            f(&facts.id, Some(&conversation), &messages)
        };
        self.db
            .each(&self.sql.everything, &[time(wall_of(through))], |c| {
                let row = Dify::row(c);
                if row.position > through || row.position == 0 {
                    return Ok(());
                }
                read += 1;
                if !self.wanted(row.chat_exists, row.deleted, &row.invoke_from) {
                    return Ok(());
                }
                if current.as_ref().is_none_or(|(facts, _)| facts.id != row.chat) {
                    flush(current.take())?;
                    let facts = Facts {
                        id: row.chat.clone(),
                        app: row.app.clone(),
                        invoke_from: row.invoke_from.clone(),
                        ..facts_of(&c[12..])
                    };
                    current = Some((facts, Vec::new()));
                }
                if let Some((_, rows)) = current.as_mut() {
                    rows.push(row);
                }
                Ok(())
            })
            .with_context(|| format!("{}: reading messages", self.name))?;
        flush(current)?;
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(chat: &str, uuid: &str, at: &str, answer: &str, status: &str, error: Option<&str>) -> Row {
        let created = wall_time(at);
        let (position, key) = place(created, uuid);
        Row {
            position,
            key,
            uuid: uuid.into(),
            chat: chat.into(),
            created,
            raw_time: at.into(),
            updated: created.map(|c| c + TimeDelta::seconds(3)),
            query: "q".into(),
            answer: answer.into(),
            status: status.into(),
            error: error.map(str::to_owned),
            chat_exists: true,
            deleted: false,
            invoke_from: "web-app".into(),
            app: "a".into(),
        }
    }

    #[test]
    fn a_row_is_remembered_apart_while_its_answer_is_empty() {
        let empty = row("c1", "00000000-0000-4000-8000-000000000001", "2026-12-07 09:58:00", "", "normal", None);
        let answered = Row { answer: "Hi".into(), ..empty.clone() };
        let failed = Row { status: "error".into(), error: Some("x".into()), ..empty.clone() };
        assert_ne!(state_key(&empty), state_key(&answered), "read again once answered");
        assert_eq!(state_key(&answered), state_key(&failed));
        let paused = Row { status: "paused".into(), ..answered.clone() };
        assert_eq!(paused.reply(), Reply::Paused);
        assert_eq!(state_key(&paused), state_key(&empty), "a paused answer is not final: read again once rewritten");
        assert_eq!(state_key(&answered), empty.key);
        assert_eq!(failed.reply(), Reply::Failed("x".into()));
        assert_eq!(row("c", "u", "2026-12-07 09:00:00", "", "error", None).reply(), Reply::Failed(String::new()));
        assert_eq!(row("c", "u", "2026-12-07 09:00:00", "", "normal", Some(" ")).reply(), Reply::Empty);
    }

    #[test]
    fn positions_leave_room_for_the_answer() {
        let (p, _) = place(wall_time("2026-12-07 09:00:00"), "00000000-0000-4000-8000-0000000003e7");
        assert_eq!(p % 2, 1, "the answer at an odd position, the visitor's line at the even one before");
        assert_eq!(wall_of(p - 1), wall_time("2026-12-07 09:00:00").unwrap());

        assert_eq!(place(wall_time("1969-12-31 23:00:00"), "u").0, 0, "no place before 1970");
    }

    #[test]
    fn fields_are_the_start_form_then_the_latest_conversation_variables() {
        let at = |s: &str| wall_time(s);
        let (values, bad) = values(
            Some(
                r#"{"work_email":"J\u00e9r\u00f4me@example.com","age":42,"unset":null,"file":{"dify_model_identity":"x"},"tags":["a"]}"#,
            ),
            &[
                (r#"{"name":"plan","value":"pro"}"#.into(), at("2026-12-07 09:02:00"), "v1".into()),
                (r#"{"name":"plan","value":"free"}"#.into(), at("2026-12-07 09:01:00"), "v2".into()),
                ("{not json".into(), at("2026-12-07 09:03:00"), "v3".into()),
            ],
        );
        assert_eq!(
            values,
            [
                ("age".to_owned(), "42".to_owned()),
                ("work_email".to_owned(), "Jérôme@example.com".to_owned()),
                ("plan".to_owned(), "pro".to_owned()),
            ]
        );
        assert_eq!(bad.len(), 3, "{bad:?}");
        assert!(bad[0].starts_with("start form variable \"file\" holds an object"), "{bad:?}");
        assert!(bad[2].starts_with("conversation variable v3: its data is not JSON"), "{bad:?}");
        assert_eq!(values_of_inputs("[1]").1, ["its inputs is not a JSON object"]);
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let (values, bad) = values_of_inputs(&format!(
            r#"{{"name":"Ann","odd":"\ud800","deep":{deep},"work_email":"ann@example.com"}}"#
        ));
        assert_eq!(
            values,
            [("name".to_owned(), "Ann".to_owned()), ("work_email".to_owned(), "ann@example.com".to_owned())]
        );
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert!(bad.iter().any(|b| b.starts_with("start form variable \"odd\" is not a value")), "{bad:?}");
    }

    fn values_of_inputs(inputs: &str) -> (Vec<(String, String)>, Vec<String>) {
        values(Some(inputs), &[])
    }
}
