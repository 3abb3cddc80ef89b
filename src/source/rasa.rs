//! Rasa's SQL tracker store (`rasa/core/tracker_store.py`, `SQLTrackerStore`): one table,
//! `events`, every event of every conversation as JSON, numbered by `id`. Read only.
//!
//! A conversation is one session of one `sender_id`: it begins at a `session_started` event (or
//! at the sender's first event, for stores without sessions), and is named
//! `{sender_id}/{id of that first event}`. The visitor's lines are `user` events, the bot's are
//! `bot` events (their step: the last action before the bot spoke); the visitor's fields are
//! `slot` events (latest value wins). Rasa stores no completion: the owner names the actions
//! (`complete_on_actions`) and forms (`complete_on_forms`, deactivated after they ran) that
//! mean the visitor finished.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::sql::{Cell, Db, Param};
use super::{Activity, Author, Batch, Conversation, END_OF_FLOW, Message, Source, Visit};
use crate::config::SourceConfig;
use crate::text;

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
];

/// Slots Rasa keeps for itself: not something the visitor told the bot.
const INTERNAL_SLOTS: &[&str] =
    &["requested_slot", "session_started_metadata", "return_value", "dialogue_stack", "flow_hashes"];

const COLUMNS: &str = "id, sender_id, type_name, timestamp, action_name, data";

// The queries a run makes, each through the primary key or Rasa's ix_events_sender_id
// (tests::every_query_a_run_makes_uses_an_index).
const AFTER_SQL: &str =
    "SELECT id, sender_id, type_name, timestamp, action_name, data FROM events WHERE id > ?1 ORDER BY id LIMIT ?2";
const SESSION_SQL: &str =
    "SELECT max(id) FROM events WHERE sender_id = ?1 AND type_name = 'session_started' AND id <= ?2";
const FIRST_SQL: &str = "SELECT min(id) FROM events WHERE sender_id = ?1 AND id <= ?2";
const FORM_SQL: &str = "SELECT action_name FROM events WHERE sender_id = ?1 AND type_name = 'active_loop' \
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
    Bot(String),
    Slot(String, Option<String>),
    Action(String),
    /// A form starts (its name) or the active one stops (none).
    ActiveLoop(Option<String>),
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

    /// Where the session holding event `before` of `sender` began: its `session_started` event,
    /// else the sender's first event.
    fn session_start(&self, sender: &str, before: i64) -> Result<i64> {
        let params = [Param::Text(sender.to_owned()), Param::Int(before)];
        let started = self.db.int(SESSION_SQL, &params)?;
        match started {
            Some(id) => Ok(id),
            None => Ok(self.db.int(FIRST_SQL, &params)?.unwrap_or(before)),
        }
    }

    /// The form active in a session just before event `before`, if any.
    fn active_form(&self, sender: &str, start: i64, before: i64) -> Result<Option<String>> {
        let row = self.db.one(FORM_SQL, &[Param::Text(sender.to_owned()), Param::Int(start), Param::Int(before)])?;
        Ok(row.and_then(|r| r[0].lossy()))
    }

    fn conversation(&self, sender: &str, started: Option<f64>, id: &str) -> Conversation {
        Conversation {
            id: id.to_owned(),
            bot_id: BOT_ID.to_owned(),
            bot_name: self.bot_name.clone(),
            visitor_id: text::line(sender).into_owned(),
            started_at: started.and_then(seconds).map(|t| t.fixed_offset()),
            page_url: None,
        }
    }

    /// Whether an event finishes the chat, given the form that was active before it.
    fn completes(&self, event: &Event, active_form: Option<&str>) -> bool {
        match event {
            Event::Action(name) => self.complete_on_actions.iter().any(|a| a == name),
            Event::ActiveLoop(None) => active_form.is_some_and(|f| self.complete_on_forms.iter().any(|c| c == f)),
            _ => false,
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

/// What reading a session's events in order remembers from one event to the next.
#[derive(Default)]
struct Session {
    last_action: Option<String>,
    form: Option<String>,
}

impl Session {
    /// The messages one event makes (none, one, or a completion marker and one).
    fn read(&mut self, rasa: &Rasa, row: &Row, warn: &mut impl FnMut(i64, &str), out: &mut impl FnMut(Message)) {
        let event = match decode(row) {
            Ok(event) => event,
            Err(why) => return warn(row.id, &why),
        };
        let Some(sent_at) = time(row) else { return };
        let message =
            |author, body: String, step: Option<&String>, field: Option<String>, input: Option<&str>| Message {
                id: row.id,
                sent_at,
                author,
                gambit_id: step.map(|s| text::line(s).into_owned()),
                input_type: input.map(str::to_owned),
                field: field.map(|f| text::line(&f).into_owned()),
                body: text::body(&body).into_owned(),
            };
        if rasa.completes(&event, self.form.as_deref()) {
            let name = row.action_name.clone().or_else(|| self.form.clone());
            out(message(Author::Bot, String::new(), name.as_ref(), None, Some(END_OF_FLOW)));
        }
        match event {
            Event::User(t) => out(message(Author::Visitor, t, self.last_action.as_ref(), None, None)),
            Event::Bot(t) => out(message(Author::Bot, t, self.last_action.as_ref(), None, None)),
            Event::Slot(name, Some(value)) if !is_internal(&name) => {
                out(message(Author::Field, value, None, Some(name), None));
            }
            Event::Action(name) if name != "action_listen" => self.last_action = Some(name),
            Event::ActiveLoop(name) => self.form = name,
            Event::SessionStarted => self.form = None,
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
        let seen: Vec<String> = self
            .db
            .rows("SELECT DISTINCT action_name FROM events WHERE type_name IN ('action', 'active_loop')", &[])?
            .iter()
            .filter_map(|r| r[0].lossy())
            .collect();
        let wanted: Vec<&str> =
            self.complete_on_actions.iter().chain(&self.complete_on_forms).map(String::as_str).collect();
        let found: Vec<&str> = wanted.iter().copied().filter(|w| seen.iter().any(|s| s == w)).collect();
        if found.is_empty() {
            log::warn!(
                "{}: none of complete_on_actions / complete_on_forms ({}) appears in the store: no chat will count \
                 as completed",
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
        // Per sender: where its current session began, and the form active in it.
        let mut sessions: HashMap<String, (i64, Option<String>)> = HashMap::new();
        for row in &rows {
            batch.rows += 1;
            batch.ids.push(row.id);
            batch.anchor = anchor(&row.sender, row.timestamp);
            let event = match decode(row) {
                Ok(event) => event,
                Err(why) => {
                    log::warn!("{}: events row {} skipped: {why}", self.name, row.id);
                    continue;
                }
            };
            if event == Event::SessionStarted {
                sessions.insert(row.sender.clone(), (row.id, None));
                continue;
            }
            let session = match sessions.get(&row.sender) {
                Some(s) => s.clone(),
                None => {
                    let start = self.session_start(&row.sender, row.id)?;
                    let form = self.active_form(&row.sender, start, row.id)?;
                    sessions.insert(row.sender.clone(), (start, form.clone()));
                    (start, form)
                }
            };
            let ends = self.completes(&event, session.1.as_deref());
            if let Event::ActiveLoop(form) = &event {
                sessions.insert(row.sender.clone(), (session.0, form.clone()));
            }
            let author = match event {
                Event::User(_) => Author::Visitor,
                Event::Bot(_) => Author::Bot,
                _ if ends => Author::Bot,
                _ => continue,
            };
            let Some(sent_at) = time(row) else {
                log::warn!("{}: events row {} skipped: no timestamp", self.name, row.id);
                continue;
            };
            batch.activity.push(Activity {
                id: row.id,
                conversation_id: conversation_id(&row.sender, session.0),
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
            // The `action_session_start` before a session_started ends the session before it:
            // a session with nothing said is no conversation.
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
            let new_session =
                session.first().is_some_and(|first| first.sender != row.sender || row.type_name == "session_started");
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
    let data = row.data.as_deref().ok_or("data is NULL")?;
    let json: Value = serde_json::from_str(data).map_err(|e| format!("data is not JSON ({e})"))?;
    let field = |name: &str| json.get(name).and_then(Value::as_str).map(str::to_owned);
    Ok(match row.type_name.as_str() {
        "user" => Event::User(field("text").ok_or("a user event without text")?),
        // A bot event may carry only buttons or an image: an empty line then.
        "bot" => Event::Bot(field("text").unwrap_or_default()),
        "slot" => {
            let name = field("name").ok_or("a slot event without a name")?;
            let value = match json.get("value") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(v @ (Value::Number(_) | Value::Bool(_))) => Some(v.to_string()),
                Some(v) => {
                    let kind = if v.is_array() { "a list" } else { "an object" };
                    return Err(format!("slot {:?} holds {kind}, not a value a field can show", text::line(&name)));
                }
            };
            Event::Slot(name, value)
        }
        "action" => Event::Action(field("name").ok_or("an action event without a name")?),
        "active_loop" => Event::ActiveLoop(field("name")),
        "session_started" => Event::SessionStarted,
        other if IGNORED.contains(&other) || other.starts_with("flow_") => Event::Ignored,
        other => return Err(format!("event type {:?} is not one chat-notifier knows", text::line(other))),
    })
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
        assert_eq!(ok("bot", r#"{"event":"bot","text":null,"data":{"buttons":[]}}"#), Event::Bot(String::new()));
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
        assert!(bad("slot", r#"{"event":"slot","name":"tags","value":["a"]}"#).contains("holds a list"));
        assert!(bad("slot", r#"{"event":"slot","name":"x","value":{"a":1}}"#).contains("holds an object"));
        assert!(bad("teleport", r#"{"event":"teleport"}"#).contains("\"teleport\" is not one chat-notifier knows"));
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
        for sql in [AFTER_SQL, SESSION_SQL, FIRST_SQL, FORM_SQL, START_SQL, SESSION_EVENTS_SQL, AT_SQL, LAST_SQL] {
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
