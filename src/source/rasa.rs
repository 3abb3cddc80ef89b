//! Rasa's SQL tracker store (`rasa/core/tracker_store.py`, `SQLTrackerStore`): one table,
//! `events`, every event of every conversation as JSON, numbered by `id`. Read only.
//!
//! A conversation is one session of one `sender_id`. Sessions begin where Rasa begins them: at
//! `action_session_start` (Rasa Pro's store splits there; a custom session-start action may
//! write nothing else), or at the `session_started` that follows it (or at the sender's first
//! event, for stores without sessions); a conversation is named `{sender_id}/{id of the event
//! it begins at}`, so a session begun the usual way (`action_session_start`, then
//! `session_started`) keeps the name `session_started` gave it before. The visitor's lines are
//! `user` events, the bot's are `bot` events (their step: the last action before the bot spoke;
//! a form's question, written after `action <form>`, by the slot it asks for); the visitor's
//! fields are `slot` events (latest value wins). Rasa stores no completion: the owner names the
//! actions (`complete_on_actions`), forms (`complete_on_forms`: deactivated by their own run,
//! not cancelled) and Rasa Pro flows (`complete_on_flows`: `flow_completed`) that mean the
//! visitor finished.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::sql::{Cell, Db, Param};
use super::{Batch, Source, Visit};
use crate::config::SourceConfig;
use crate::domain::{Activity, Author, Conversation, END_OF_FLOW, Message, text};

/// The bot id emails and `[[bots]]` entries use: Rasa's store has one bot.
pub const BOT_ID: &str = "rasa";

/// The event types Rasa writes that say nothing to us; any other unknown type is reported.
const IGNORED: &[&str] = &[
    "action_execution_rejected",
    "agent",
    "cancel_reminder",
    "entities",
    "export",
    "followup",
    "form",
    "form_validation",
    "loop_interrupted",
    "pause",
    "reminder",
    "reset_slots",
    "restart",
    "resume",
    "rewind",
    "stack",
    "user_featurization",
    "wrong_action",
    "wrong_utterance",
    // Rasa Pro 3.x: after every turn (`bot_turn_ended`), around sessions, voice and memory.
    "bot_turn_ended",
    "inactive",
    "memory_set",
    "routing_session_ended",
    "session_ended",
    "undo",
    "user_silence_timeout",
    // Rasa Pro's CALM flows (`flow_completed` is read: `complete_on_flows`).
    "flow_cancelled",
    "flow_interrupted",
    "flow_resumed",
    "flow_started",
];

/// A timestamp at or past this (10000-01-01T00:00:00Z) is no time a chat was had: milliseconds
/// or microseconds written as seconds, or noise.
const YEAR_10000: f64 = 253_402_300_800.0;

/// Slots Rasa keeps for itself: not something the visitor told the bot.
const INTERNAL_SLOTS: &[&str] =
    &["requested_slot", "session_started_metadata", "return_value", "dialogue_stack", "flow_hashes"];

const COLUMNS: &str = "id, sender_id, type_name, timestamp, action_name, data";

// The queries a run makes, each through the primary key or Rasa's ix_events_sender_id
// (tests::every_query_a_run_makes_uses_an_index).
const AFTER_SQL: &str =
    "SELECT id, sender_id, type_name, timestamp, action_name, data FROM events WHERE id > ?1 ORDER BY id LIMIT ?2";
// Where Rasa begins sessions (`starts_session`).
const SESSION_SQL: &str = "SELECT max(id) FROM events WHERE sender_id = ?1 AND id <= ?2 \
     AND (type_name = 'session_started' OR (type_name = 'action' AND action_name = 'action_session_start'))";
const FIRST_SQL: &str = "SELECT min(id) FROM events WHERE sender_id = ?1 AND id <= ?2";
const FORM_SQL: &str = "SELECT action_name FROM events WHERE sender_id = ?1 AND type_name = 'active_loop' \
     AND id >= ?2 AND id < ?3 ORDER BY id DESC LIMIT 1";
const LAST_RUN_SQL: &str = "SELECT action_name FROM events WHERE sender_id = ?1 AND type_name = 'action' \
     AND id >= ?2 AND id < ?3 ORDER BY id DESC LIMIT 1";
const START_SQL: &str = "SELECT timestamp FROM events WHERE id = ?2 AND sender_id = ?1";
const SESSION_EVENTS_SQL: &str = "SELECT id, sender_id, type_name, timestamp, action_name, data FROM events \
     WHERE sender_id = ?1 AND id >= ?2 AND id <= ?3 ORDER BY id";
const AT_SQL: &str = "SELECT id, sender_id, type_name, timestamp, action_name, data FROM events WHERE id = ?1";
const LAST_SQL: &str = "SELECT max(id) FROM events";

/// One row of `events`, as read.
#[derive(Debug, Clone)]
struct Row {
    id: i64,
    sender: String,
    type_name: String,
    timestamp: Option<f64>,
    action_name: Option<String>,
    data: Option<String>,
}

/// What an event means to us.
#[derive(Debug, Clone, PartialEq)]
enum Event {
    User(String),
    /// What the bot said, and the response's name where Rasa gives it (`utter_action` in the
    /// event's metadata: the only place a form's question is named).
    Bot(String, Option<String>),
    /// A slot the visitor's chat set (Rasa's own are `Requested` or ignored).
    Slot(String, Option<String>),
    /// The slot the active form asks for next (`requested_slot`).
    Requested(Option<String>),
    Action(String),
    /// A form starts (its name) or the active one stops (none).
    ActiveLoop(Option<String>),
    /// A Rasa Pro flow completed (its id).
    FlowCompleted(String),
    SessionStarted,
    Ignored,
}

pub struct Rasa {
    db: Db,
    /// "rasa /var/lib/rasa/rasa.db", or the URL without its password.
    name: String,
    bot_name: String,
    complete_on_actions: Vec<String>,
    complete_on_forms: Vec<String>,
    complete_on_flows: Vec<String>,
}

impl Rasa {
    pub fn open_sqlite(path: &Path, config: &SourceConfig) -> Result<Self> {
        let name = format!("rasa {}", path.display());
        if !path.is_file() {
            bail!("{name}: no such file");
        }
        let db = Db::sqlite(path).with_context(|| format!("{name}: opening"))?;
        Rasa::on(db, name, config)
    }

    pub fn open_postgres(url: &str, config: &SourceConfig) -> Result<Self> {
        let name = format!("rasa {}", super::sql::shown_url(url));
        let db = Db::postgres(url, config.password()?.as_deref()).with_context(|| format!("{name}: connecting"))?;
        Rasa::on(db, name, config)
    }

    fn on(db: Db, name: String, config: &SourceConfig) -> Result<Self> {
        let rasa = Rasa {
            db,
            name,
            bot_name: config.bot_name.clone().unwrap_or_else(|| "Rasa bot".to_owned()),
            complete_on_actions: config.complete_on_actions.clone(),
            complete_on_forms: config.complete_on_forms.clone(),
            complete_on_flows: config.complete_on_flows.clone(),
        };
        rasa.check_schema()?;
        Ok(rasa)
    }

    /// One line naming the store and what is wrong, before any state is touched.
    fn check_schema(&self) -> Result<()> {
        let name = &self.name;
        let prepared =
            self.db.prepare(&format!("SELECT {COLUMNS} FROM events LIMIT 0"), &[]).with_context(|| name.clone())?;
        if let Err(e) = prepared {
            if matches!(self.db.prepare("SELECT id, sender_id, data FROM events LIMIT 0", &[]), Ok(Ok(()))) {
                bail!(
                    "{name}: this events table (id, sender_id, data) is Rasa's SQL event broker's, not the tracker \
                     store's; point source.url at the tracker store"
                );
            }
            bail!("{name}: not a Rasa SQL tracker store (table events with {COLUMNS}): {e}");
        }
        if !self.db.has_index("events", "sender_id").with_context(|| format!("{name}: reading the schema"))? {
            log::warn!(
                "{name}: no index on events(sender_id), which Rasa creates (ix_events_sender_id); \
                 each conversation is read by scanning, which is slow on a large store"
            );
        }
        Ok(())
    }

    fn rows(&self, sql: &str, params: &[Param]) -> Result<Vec<Row>> {
        let mut out = Vec::new();
        self.each_row(sql, params, |row| {
            out.push(row);
            Ok(())
        })?;
        Ok(out)
    }

    /// Calls `f` with each row of `sql`, one at a time: the memory is one row's.
    fn each_row(&self, sql: &str, params: &[Param], mut f: impl FnMut(Row) -> Result<()>) -> Result<()> {
        self.db
            .each(sql, params, |cells| {
                f(Row {
                    id: cells[0].int().unwrap_or_default(),
                    sender: cells[1].lossy().unwrap_or_default(),
                    type_name: cells[2].lossy().unwrap_or_default(),
                    timestamp: cells[3].real(),
                    action_name: cells[4].lossy(),
                    data: cells[5].lossy(),
                })
            })
            .with_context(|| format!("{}: reading events", self.name))
    }

    /// Where the session holding event `before` of `sender` began: the latest
    /// `action_session_start` or `session_started` (`starts_session`), else the sender's first
    /// event.
    fn session_start(&self, sender: &str, before: i64) -> Result<i64> {
        let params = [Param::Text(sender.to_owned()), Param::Int(before)];
        let started = self.db.int(SESSION_SQL, &params)?;
        match started {
            Some(id) => Ok(id),
            None => Ok(self.db.int(FIRST_SQL, &params)?.unwrap_or(before)),
        }
    }

    /// The session `sender` is in just before its event `before`, from the store: where it
    /// began, the form active in it and the action that ran last (what deciding whether an
    /// event finishes the chat needs).
    fn session_at(&self, sender: &str, before: i64) -> Result<(i64, Session)> {
        let start = self.session_start(sender, before)?;
        let params = [Param::Text(sender.to_owned()), Param::Int(start), Param::Int(before)];
        let last = |sql: &str| -> Result<Option<String>> { Ok(self.db.one(sql, &params)?.and_then(|r| r[0].lossy())) };
        Ok((start, Session { form: last(FORM_SQL)?, last_run: last(LAST_RUN_SQL)?, ..Session::default() }))
    }

    fn conversation(&self, sender: &str, started: Option<f64>, id: &str) -> Conversation {
        Conversation {
            id: id.to_owned(),
            bot_id: BOT_ID.to_owned(),
            bot_name: self.bot_name.clone(),
            visitor_id: text::line(sender).into_owned(),
            // A start stamped with no time (reported with its row) is no start date.
            started_at: started.filter(|t| not_a_time(*t).is_none()).and_then(seconds).map(|t| t.fixed_offset()),
            page_url: None,
        }
    }

    /// A session's messages from its events in id order: lines, recorded fields, and a marker
    /// where the flow was completed.
    fn messages(&self, events: &[Row], mut warn: impl FnMut(i64, &str)) -> Vec<Message> {
        let mut out = Vec::new();
        let mut session = Session::default();
        for row in events {
            session.read(self, row, &mut warn, &mut |m| out.push(m));
        }
        out
    }
}

/// Whether a row begins a session, where Rasa begins one: `action_session_start` (Rasa Pro's
/// store splits there, and a custom session-start action may write nothing after it), or the
/// `session_started` that follows it. From the row's columns, as `SESSION_SQL` reads them, so
/// that a row whose data is unreadable still splits where the queries do.
fn starts_session(row: &Row) -> bool {
    row.type_name == "session_started"
        || (row.type_name == "action" && row.action_name.as_deref() == Some("action_session_start"))
}

/// What reading a session's events in order remembers from one event to the next.
#[derive(Debug, Default, Clone, PartialEq)]
struct Session {
    /// The last action that ran, `action_listen` included: a form is finished only when it
    /// deactivates in its own run.
    last_run: Option<String>,
    /// The last action other than `action_listen`: the step of a bot line outside a form.
    last_action: Option<String>,
    /// The active form.
    form: Option<String>,
    /// The slot the active form asks for.
    requested: Option<String>,
}

impl Session {
    /// The messages one event makes (none, one, or a completion marker and one).
    fn read(&mut self, rasa: &Rasa, row: &Row, warn: &mut impl FnMut(i64, &str), out: &mut impl FnMut(Message)) {
        if starts_session(row) {
            *self = Session::default();
        }
        let event = match decode(row) {
            Ok(event) => event,
            Err(why) => return warn(row.id, &why),
        };
        if let Some(sent_at) = time(row) {
            let message = |author, body: &str, step: Option<&str>, field: Option<&str>, input: Option<&str>| Message {
                id: row.id,
                sent_at,
                author,
                gambit_id: step.map(|s| text::line(s).into_owned()),
                input_type: input.map(str::to_owned),
                field: field.map(|f| text::line(f).into_owned()),
                body: text::body(body).into_owned(),
            };
            if let Some(step) = self.finishes(rasa, &event) {
                out(message(Author::Bot, "", Some(&step), None, Some(END_OF_FLOW)));
            }
            match &event {
                Event::User(t) => out(message(Author::Visitor, t, self.last_action.as_deref(), None, None)),
                Event::Bot(t, utter) => {
                    out(message(Author::Bot, t, self.step(utter.as_deref()).as_deref(), None, None))
                }
                Event::Slot(name, Some(value)) => out(message(Author::Field, value, None, Some(name), None)),
                _ => {}
            }
        }
        self.apply(event);
    }

    /// Where the chat was finished, if `event` finishes it: the action that ran, the form that
    /// deactivated in its own run (a form cancelled by `action_deactivate_loop` is not
    /// finished), or the flow that completed.
    fn finishes(&self, rasa: &Rasa, event: &Event) -> Option<String> {
        let listed = |names: &[String], name: &str| names.iter().any(|n| n == name);
        match event {
            Event::Action(name) if listed(&rasa.complete_on_actions, name) => Some(name.clone()),
            Event::ActiveLoop(None) => {
                self.form.clone().filter(|f| self.last_run.as_ref() == Some(f) && listed(&rasa.complete_on_forms, f))
            }
            Event::FlowCompleted(flow) if listed(&rasa.complete_on_flows, flow) => Some(flow.clone()),
            _ => None,
        }
    }

    /// The step of a bot line: one of the active form's own lines (`action <form>` ran last) is
    /// named by the slot it asks for, as Rasa names the question (`utter_ask_email`, from the
    /// line's metadata), else `<form>: <slot>`; any other line by the action before it.
    fn step(&self, utter: Option<&str>) -> Option<String> {
        match &self.form {
            Some(form) if self.last_run.as_ref() == Some(form) => Some(
                utter
                    .map(str::to_owned)
                    .or_else(|| self.requested.as_ref().map(|slot| format!("{form}: {slot}")))
                    .unwrap_or_else(|| form.clone()),
            ),
            _ => self.last_action.clone(),
        }
    }

    /// Remembers what an event changes.
    fn apply(&mut self, event: Event) {
        match event {
            Event::Action(name) => {
                if name != "action_listen" {
                    self.last_action = Some(name.clone());
                }
                self.last_run = Some(name);
            }
            Event::ActiveLoop(form) => {
                if form.is_none() {
                    self.requested = None;
                }
                self.form = form;
            }
            Event::Requested(slot) => self.requested = slot,
            _ => {}
        }
    }
}

impl Source for Rasa {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn commit_window(&self) -> i64 {
        if self.db.is_postgres() { super::POSTGRES_COMMIT_WINDOW } else { 0 }
    }

    fn describe(&self) -> Result<String> {
        let counts = self.db.one("SELECT count(DISTINCT sender_id), count(*) FROM events", &[])?.unwrap_or_default();
        let count = |i: usize| counts.get(i).and_then(Cell::int).unwrap_or(0);
        let mut seen: HashSet<String> = self
            .db
            .rows("SELECT DISTINCT action_name FROM events WHERE type_name IN ('action', 'active_loop')", &[])?
            .iter()
            .filter_map(|r| r[0].lossy())
            .collect();
        // A flow's id is only in the event's data: one row at a time.
        if !self.complete_on_flows.is_empty() {
            self.each_row(&format!("SELECT {COLUMNS} FROM events WHERE type_name = 'flow_completed'"), &[], |row| {
                if let Ok(Event::FlowCompleted(flow)) = decode(&row) {
                    seen.insert(flow);
                }
                Ok(())
            })?;
        }
        let wanted: Vec<&str> = self
            .complete_on_actions
            .iter()
            .chain(&self.complete_on_forms)
            .chain(&self.complete_on_flows)
            .map(String::as_str)
            .collect();
        let found: Vec<&str> = wanted.iter().copied().filter(|w| seen.contains(*w)).collect();
        if found.is_empty() {
            log::warn!(
                "{}: none of complete_on_actions / complete_on_forms / complete_on_flows ({}) appears in the store: \
                 no chat will count as completed",
                self.name,
                if wanted.is_empty() { "none given".to_owned() } else { wanted.join(", ") }
            );
        }
        Ok(format!(
            "{} (Rasa tracker store): {} senders, {} events, completion seen: {}",
            self.name.trim_start_matches("rasa "),
            count(0),
            count(1),
            if found.is_empty() { "none".to_owned() } else { found.join(", ") }
        ))
    }

    fn activity_after(&self, after: i64, limit: usize, skip: &HashSet<i64>) -> Result<Batch> {
        let mut rows = self.rows(AFTER_SQL, &[Param::Int(after), Param::Int(limit as i64)])?;
        let mut batch = Batch { through: rows.last().map(|r| r.id), ..Batch::default() };
        rows.retain(|r| !skip.contains(&r.id));
        // Per sender: where its current session began, and what deciding completion needs of it.
        let mut sessions: HashMap<String, (i64, Session)> = HashMap::new();
        for row in &rows {
            batch.rows += 1;
            batch.ids.push((row.id, row.id));
            batch.anchor = anchor(&row.sender, row.timestamp);
            if starts_session(row) {
                sessions.insert(row.sender.clone(), (row.id, Session::default()));
            }
            let event = match decode(row) {
                Ok(event) => event,
                Err(why) => {
                    log::warn!("{}: events row {} skipped: {why}", self.name, row.id);
                    continue;
                }
            };
            let (start, session) = match sessions.entry(row.sender.clone()) {
                Entry::Occupied(known) => known.into_mut(),
                Entry::Vacant(new) => new.insert(self.session_at(&row.sender, row.id)?),
            };
            let ends = session.finishes(self, &event).is_some();
            let author = match &event {
                Event::User(_) => Some(Author::Visitor),
                Event::Bot(..) => Some(Author::Bot),
                _ if ends => Some(Author::Bot),
                _ => None,
            };
            session.apply(event);
            let Some(author) = author else { continue };
            let Some(sent_at) = time(row) else {
                log::warn!("{}: events row {} skipped: no timestamp", self.name, row.id);
                continue;
            };
            batch.activity.push(Activity {
                id: row.id,
                conversation_id: conversation_id(&row.sender, *start),
                sent_at,
                author,
                ends,
            });
        }
        Ok(batch)
    }

    fn conversations(&self, ids: &[&str]) -> Result<HashMap<String, Conversation>> {
        let mut out = HashMap::new();
        for id in ids {
            let Some((sender, start)) = parse_id(id) else { continue };
            let params = [Param::Text(sender.to_owned()), Param::Int(start)];
            let Some(row) = self.db.one(START_SQL, &params)? else {
                continue;
            };
            // Only where a session really begins: any other event id names no conversation.
            if self.session_start(sender, start)? != start {
                continue;
            }
            out.insert((*id).to_owned(), self.conversation(sender, row[0].real(), id));
        }
        Ok(out)
    }

    fn transcripts(&self, wanted: &[(&str, i64)], f: &mut dyn FnMut(&str, Message)) -> Result<()> {
        for (id, through) in wanted {
            let Some((sender, start)) = parse_id(id) else { continue };
            let params = [Param::Text(sender.to_owned()), Param::Int(start), Param::Int(*through)];
            // One event at a time: a long session is never held whole. Bad rows were reported
            // when first read.
            let mut session = Session::default();
            self.each_row(SESSION_EVENTS_SQL, &params, |row| {
                session.read(self, &row, &mut |_, _| {}, &mut |m| f(id, m));
                Ok(())
            })?;
        }
        Ok(())
    }

    fn last_message_id(&self) -> Result<i64> {
        let last = self.db.int(LAST_SQL, &[]);
        Ok(last.with_context(|| format!("{}: reading events", self.name))?.unwrap_or(0))
    }

    fn anchor_at(&self, id: i64) -> Result<Option<String>> {
        Ok(self.rows(AT_SQL, &[Param::Int(id)])?.first().map(|r| anchor(&r.sender, r.timestamp)))
    }

    fn count_through(&self, id: i64) -> Result<i64> {
        let count = self.db.int("SELECT count(*) FROM events WHERE id <= ?1", &[Param::Int(id)]);
        Ok(count.with_context(|| format!("{}: counting events", self.name))?.unwrap_or(0))
    }

    fn about_how_many_conversations(&self) -> u64 {
        0
    }

    fn each_conversation(&self, through: i64, f: &mut Visit) -> Result<i64> {
        // One session at a time: the rows of a sender in id order, cut at each session start.
        let mut session: Vec<Row> = Vec::new();
        let mut read = 0;
        let mut flush = |session: &mut Vec<Row>| -> Result<()> {
            let Some(first) = session.first() else { return Ok(()) };
            let id = conversation_id(&first.sender, first.id);
            let messages = self.messages(session, |_, _| {});
            // `action_session_start` begins a session, and the `session_started` after it begins
            // it again: the first of the two holds nothing said, and a session with nothing
            // said is no conversation.
            if messages.iter().any(|m| m.author != Author::Field) {
                // From the rows at hand: a store being read answers no other query meanwhile.
                let conversation = self.conversation(&first.sender, first.timestamp, &id);
                f(&id, Some(&conversation), &messages)?;
            }
            session.clear();
            Ok(())
        };
        let sql = format!("SELECT {COLUMNS} FROM events WHERE id <= ?1 ORDER BY sender_id, id");
        self.each_row(&sql, &[Param::Int(through)], |row| {
            read += 1;
            let new_session = session.first().is_some_and(|first| first.sender != row.sender || starts_session(&row));
            if new_session {
                flush(&mut session)?;
            }
            session.push(row);
            Ok(())
        })?;
        flush(&mut session)?;
        Ok(read)
    }
}

/// Pure: what a row says, or why it cannot be used.
fn decode(row: &Row) -> Result<Event, String> {
    if let Some(why) = row.timestamp.and_then(not_a_time) {
        return Err(why);
    }
    let data = row.data.as_deref().ok_or("data is NULL")?;
    let json: Value = serde_json::from_str(data).map_err(|e| {
        // Python's json writes a float that is no number as a bare `NaN` or `Infinity`.
        python_timestamp(data).and_then(not_a_time).unwrap_or_else(|| format!("data is not JSON ({e})"))
    })?;
    // Where `time` finds it when the column has none.
    if row.timestamp.is_none()
        && let Some(why) = json.get("timestamp").and_then(Value::as_f64).and_then(not_a_time)
    {
        return Err(why);
    }
    let field = |name: &str| json.get(name).and_then(Value::as_str).map(str::to_owned);
    Ok(match row.type_name.as_str() {
        // Rasa's own messages, none of the visitor's: a reminder or an external event
        // (`EXTERNAL: <intent>`, `is_external`), and the built-in `/session_start` a chat widget
        // sends on a page load (Rasa logs it, then starts a session).
        "user" if json.pointer("/metadata/is_external").and_then(Value::as_bool) == Some(true) => Event::Ignored,
        "user" if json.pointer("/parse_data/intent/name").and_then(Value::as_str) == Some("session_start") => {
            Event::Ignored
        }
        "user" => Event::User(field("text").ok_or("a user event without text")?),
        // A bot event may carry only buttons or an image: an empty line then.
        "bot" => Event::Bot(
            field("text").unwrap_or_default(),
            json.pointer("/metadata/utter_action").and_then(Value::as_str).map(str::to_owned),
        ),
        "slot" => {
            let name = field("name").ok_or("a slot event without a name")?;
            if name == "requested_slot" {
                return Ok(Event::Requested(field("value")));
            }
            // Rasa's own (`session_started_metadata` holds the channel's metadata, an object):
            // whatever it holds, nothing the visitor told the bot.
            if is_internal(&name) {
                return Ok(Event::Ignored);
            }
            let scalar = |v: &Value| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(_) | Value::Bool(_) => Some(v.to_string()),
                _ => None,
            };
            let value = match json.get("value") {
                None | Some(Value::Null) => None,
                // A `list` slot (the products a visitor picked): its items, as the owner reads them.
                Some(Value::Array(items)) => match items.iter().map(scalar).collect::<Option<Vec<_>>>() {
                    Some(items) => Some(items.join(", ")),
                    None => return Ok(Event::Ignored),
                },
                // A structure a custom action keeps (an `any` slot): nothing a field can show, and
                // nothing wrong with the store either, so nothing to report.
                Some(Value::Object(_)) => return Ok(Event::Ignored),
                Some(v) => scalar(v),
            };
            Event::Slot(name, value)
        }
        "action" => Event::Action(field("name").ok_or("an action event without a name")?),
        "active_loop" => Event::ActiveLoop(field("name")),
        "session_started" => Event::SessionStarted,
        "flow_completed" => Event::FlowCompleted(field("flow_id").ok_or("a flow_completed event without a flow_id")?),
        other if IGNORED.contains(&other) || other.starts_with("flow_") => Event::Ignored,
        other => return Err(format!("event type {:?} is not one chat-notifier knows", text::line(other))),
    })
}

/// Why a timestamp is no time, if it is not: never dated 1970 (NaN) or 1811 (negative) in an
/// email, each named as what it is.
fn not_a_time(t: f64) -> Option<String> {
    if t.is_nan() {
        Some("timestamp is NaN, not a time".to_owned())
    } else if t.is_infinite() {
        Some("timestamp is infinite".to_owned())
    } else if t < 0.0 {
        Some(format!("timestamp {t} is before 1970"))
    } else if t >= YEAR_10000 {
        Some(format!("timestamp {t} is after the year 9999"))
    } else {
        None
    }
}

/// The top-level `"timestamp"` of data that is not JSON because Python wrote a float that is no
/// number as its bare literal (`NaN`, `Infinity`, `-Infinity`).
fn python_timestamp(data: &str) -> Option<f64> {
    let after = data.split_once("\"timestamp\"")?.1.trim_start().strip_prefix(':')?.trim_start();
    [("NaN", f64::NAN), ("Infinity", f64::INFINITY), ("-Infinity", f64::NEG_INFINITY)]
        .into_iter()
        .find_map(|(literal, value)| after.starts_with(literal).then_some(value))
}

fn is_internal(slot: &str) -> bool {
    INTERNAL_SLOTS.contains(&slot) || slot.starts_with("knowledge_base_")
}

fn time(row: &Row) -> Option<DateTime<Utc>> {
    let from_data = || serde_json::from_str::<Value>(row.data.as_deref()?).ok()?.get("timestamp")?.as_f64();
    seconds(row.timestamp.or_else(from_data)?)
}

fn seconds(t: f64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros((t * 1_000_000.0).round() as i64)
}

fn conversation_id(sender: &str, start: i64) -> String {
    format!("{sender}/{start}")
}

fn parse_id(id: &str) -> Option<(&str, i64)> {
    let (sender, start) = id.rsplit_once('/')?;
    Some((sender, start.parse().ok()?))
}

fn anchor(sender: &str, timestamp: Option<f64>) -> String {
    format!("{sender}\u{1f}{}", timestamp.map(|t| t.to_string()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, type_name: &str, data: &str) -> Row {
        Row {
            id,
            sender: "s".into(),
            type_name: type_name.into(),
            timestamp: Some(1_790_000_000.0 + id as f64),
            action_name: None,
            data: Some(data.into()),
        }
    }

    #[test]
    fn events_decode_as_rasa_writes_them() {
        let ok = |t: &str, d: &str| decode(&row(1, t, d)).unwrap();
        assert_eq!(ok("user", r#"{"event":"user","text":"hi","parse_data":{}}"#), Event::User("hi".into()));
        assert_eq!(ok("bot", r#"{"event":"bot","text":null,"data":{"buttons":[]}}"#), Event::Bot(String::new(), None));
        assert_eq!(
            ok(
                "bot",
                r#"{"event":"bot","text":"Your email?","metadata":{"utter_action":"utter_ask_email","model_id":"m"}}"#
            ),
            Event::Bot("Your email?".into(), Some("utter_ask_email".into()))
        );
        assert_eq!(
            ok("slot", r#"{"event":"slot","name":"requested_slot","value":"email"}"#),
            Event::Requested(Some("email".into()))
        );
        assert_eq!(ok("slot", r#"{"event":"slot","name":"requested_slot","value":null}"#), Event::Requested(None));
        assert_eq!(
            ok("slot", r#"{"event":"slot","name":"session_started_metadata","value":{"user_agent":"x"}}"#),
            Event::Ignored,
            "Rasa's own slot, whatever it holds"
        );
        assert_eq!(
            ok("flow_completed", r#"{"event":"flow_completed","flow_id":"lead_flow","step_id":"END"}"#),
            Event::FlowCompleted("lead_flow".into())
        );
        for rasa_pro in [
            "bot_turn_ended",
            "inactive",
            "session_ended",
            "undo",
            "memory_set",
            "user_silence_timeout",
            "flow_started",
            "flow_cancelled",
            "flow_interrupted",
            "flow_resumed",
        ] {
            assert_eq!(
                ok(rasa_pro, &format!(r#"{{"event":"{rasa_pro}","flow_id":"f"}}"#)),
                Event::Ignored,
                "{rasa_pro}"
            );
        }
        assert_eq!(
            ok("slot", r#"{"event":"slot","name":"email","value":"a@b.co"}"#),
            Event::Slot("email".into(), Some("a@b.co".into()))
        );
        assert_eq!(
            ok("slot", r#"{"event":"slot","name":"age","value":42}"#),
            Event::Slot("age".into(), Some("42".into()))
        );
        assert_eq!(ok("slot", r#"{"event":"slot","name":"email","value":null}"#), Event::Slot("email".into(), None));
        assert_eq!(ok("active_loop", r#"{"event":"active_loop","name":null}"#), Event::ActiveLoop(None));
        assert_eq!(ok("restart", r#"{"event":"restart"}"#), Event::Ignored);
        let bad = |t: &str, d: &str| decode(&row(7, t, d)).unwrap_err();
        assert!(bad("user", "{not json").contains("not JSON"));
        assert!(bad("user", r#"{"event":"user"}"#).contains("without text"));
        assert_eq!(
            ok("slot", r#"{"event":"slot","name":"tags","value":["pricing", 2, true]}"#),
            Event::Slot("tags".into(), Some("pricing, 2, true".into()))
        );
        assert_eq!(ok("slot", r#"{"event":"slot","name":"x","value":{"a":1}}"#), Event::Ignored);
        assert_eq!(ok("slot", r#"{"event":"slot","name":"x","value":[{"a":1}]}"#), Event::Ignored);
        assert!(bad("teleport", r#"{"event":"teleport"}"#).contains("\"teleport\" is not one chat-notifier knows"));
        assert_eq!(bad("flow_completed", r#"{"event":"flow_completed"}"#), "a flow_completed event without a flow_id");
    }

    #[test]
    fn timestamps_that_are_no_time_are_named() {
        let at = |column: Option<f64>, data: &str| decode(&Row { timestamp: column, ..row(3, "user", data) });
        let user = r#"{"event":"user","text":"hi"}"#;
        for (column, why) in [
            (f64::NAN, "timestamp is NaN, not a time"),
            (f64::INFINITY, "timestamp is infinite"),
            (f64::NEG_INFINITY, "timestamp is infinite"),
            (-5e9, "timestamp -5000000000 is before 1970"),
            (1e15, "timestamp 1000000000000000 is after the year 9999"),
            (YEAR_10000, "timestamp 253402300800 is after the year 9999"),
        ] {
            assert_eq!(at(Some(column), user), Err(why.to_owned()), "{column}");
        }
        for fine in [0.0, 1_795_510_980.109_6, YEAR_10000 - 1.0] {
            assert_eq!(at(Some(fine), user), Ok(Event::User("hi".into())), "{fine}");
        }
        // No column: the data's timestamp, as `time` reads it; Python's bare literals named.
        assert_eq!(
            at(None, r#"{"event":"user","text":"hi","timestamp":-1.5}"#),
            Err("timestamp -1.5 is before 1970".into())
        );
        assert_eq!(
            at(None, r#"{"event": "user", "timestamp": NaN, "text": "hi"}"#),
            Err("timestamp is NaN, not a time".into())
        );
        assert_eq!(at(None, r#"{"event": "user", "timestamp": -Infinity}"#), Err("timestamp is infinite".into()));
        assert!(
            at(None, r#"{"event": "user", "timestamp": 1.5, "text": Nope}"#)
                .unwrap_err()
                .starts_with("data is not JSON")
        );
    }

    /// The session a sequence of events leaves: (event type, action or form or slot name).
    fn session_after(events: &[(&str, &str)]) -> Session {
        let mut session = Session::default();
        for (i, (type_name, name)) in events.iter().enumerate() {
            let data = match *type_name {
                "active_loop" if name.is_empty() => r#"{"name":null}"#.to_owned(),
                "slot" => format!(r#"{{"name":"requested_slot","value":"{name}"}}"#),
                _ => format!(r#"{{"name":"{name}"}}"#),
            };
            session.apply(decode(&row(i as i64, type_name, &data)).unwrap());
        }
        session
    }

    #[test]
    fn a_form_finishes_when_it_deactivates_in_its_own_run_not_when_cancelled() {
        let config = crate::config::SourceConfig {
            complete_on_forms: vec!["lead_form".into()],
            complete_on_flows: vec!["lead_flow".into()],
            ..crate::config::SourceConfig::export_file(Path::new("x"))
        };
        let rasa = Rasa {
            db: Db::sqlite(Path::new(":memory:")).unwrap(),
            name: "rasa".into(),
            bot_name: "b".into(),
            complete_on_actions: vec!["action_submit".into()],
            complete_on_forms: config.complete_on_forms,
            complete_on_flows: config.complete_on_flows,
        };
        let deactivates = Event::ActiveLoop(None);
        let running =
            [("action", "lead_form"), ("active_loop", "lead_form"), ("slot", "email"), ("action", "action_listen")];
        let finished = session_after(&[&running[..], &[("action", "lead_form")]].concat());
        assert_eq!(finished.finishes(&rasa, &deactivates), Some("lead_form".into()));
        let cancelled = session_after(&[&running[..], &[("action", "action_deactivate_loop")]].concat());
        assert_eq!(cancelled.finishes(&rasa, &deactivates), None);
        let other = session_after(&[("action", "other_form"), ("active_loop", "other_form"), ("action", "other_form")]);
        assert_eq!(other.finishes(&rasa, &deactivates), None, "not a form the owner named");
        assert_eq!(Session::default().finishes(&rasa, &deactivates), None, "no form was active");
        assert_eq!(finished.finishes(&rasa, &Event::Action("action_submit".into())), Some("action_submit".into()));
        assert_eq!(finished.finishes(&rasa, &Event::FlowCompleted("lead_flow".into())), Some("lead_flow".into()));
        assert_eq!(finished.finishes(&rasa, &Event::FlowCompleted("pattern_completed".into())), None);
    }

    #[test]
    fn a_forms_questions_are_named_by_the_slot_they_ask_for() {
        let asking = session_after(&[("action", "lead_form"), ("active_loop", "lead_form"), ("slot", "email")]);
        assert_eq!(asking.step(Some("utter_ask_email")).as_deref(), Some("utter_ask_email"));
        assert_eq!(asking.step(None).as_deref(), Some("lead_form: email"), "asked by a custom action_ask_email");
        let aside = session_after(&[("action", "lead_form"), ("active_loop", "lead_form"), ("action", "utter_prices")]);
        assert_eq!(aside.step(Some("utter_prices")).as_deref(), Some("utter_prices"));
        let plain = session_after(&[("action", "action_quote"), ("action", "action_listen")]);
        assert_eq!(plain.step(Some("utter_quote")).as_deref(), Some("action_quote"), "outside a form: the action");
    }

    #[test]
    fn sessions_begin_at_action_session_start_or_session_started() {
        let starts = |type_name: &str, action: Option<&str>| {
            starts_session(&Row { action_name: action.map(str::to_owned), ..row(1, type_name, "{}") })
        };
        assert!(starts("session_started", None));
        assert!(starts("action", Some("action_session_start")));
        assert!(!starts("action", Some("action_listen")));
        assert!(!starts("slot", Some("action_session_start")), "a slot's action_name is its name");
    }

    #[test]
    fn every_query_a_run_makes_uses_an_index() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE events (id INTEGER NOT NULL, sender_id VARCHAR(255) NOT NULL, type_name VARCHAR(255) NOT NULL, \
             timestamp FLOAT, intent_name VARCHAR(255), action_name VARCHAR(255), data TEXT, PRIMARY KEY (id)); \
             CREATE INDEX ix_events_sender_id ON events (sender_id);",
        )
        .unwrap();
        for sql in
            [AFTER_SQL, SESSION_SQL, FIRST_SQL, FORM_SQL, LAST_RUN_SQL, START_SQL, SESSION_EVENTS_SQL, AT_SQL, LAST_SQL]
        {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let unbound =
                rusqlite::params_from_iter(std::iter::repeat_n(rusqlite::types::Value::Null, stmt.parameter_count()));
            let plan: Vec<String> =
                stmt.query_map(unbound, |r| r.get(3)).unwrap().collect::<rusqlite::Result<_>>().unwrap();
            assert!(!plan.iter().any(|p| p.starts_with("SCAN")), "{sql}\n{plan:#?}");
        }
    }

    #[test]
    fn conversation_ids_survive_any_sender_id() {
        for sender in ["default", "a/b/c", "", "7f3e-uuid"] {
            assert_eq!(parse_id(&conversation_id(sender, 42)), Some((sender, 42)));
        }
    }
}
