//! A Rasa SQL tracker store written the way Rasa 3 writes one: the `events` table as
//! SQLAlchemy creates it from `SQLTrackerStore.SQLEvent`, and each event's JSON as
//! `rasa.shared.core.events` serializes it (`event`, `timestamp`, `metadata`, then the type's
//! own keys), `action_name` copied from the event's `name` and `intent_name` from its intent.
//! Shared by the tests and by `examples/rasa_store.rs`, which builds the demo store.
#![allow(dead_code)]

use std::cell::RefCell;
use std::path::Path;

use rusqlite::{Connection, params};
use serde_json::{Value, json};

/// `SQLTrackerStore.SQLEvent` as SQLAlchemy creates it on SQLite.
pub const SCHEMA: &str = "
CREATE TABLE events (
	id INTEGER NOT NULL,
	sender_id VARCHAR(255) NOT NULL,
	type_name VARCHAR(255) NOT NULL,
	timestamp FLOAT,
	intent_name VARCHAR(255),
	action_name VARCHAR(255),
	data TEXT,
	PRIMARY KEY (id)
);
CREATE INDEX ix_events_sender_id ON events (sender_id);
";

/// `SQLTrackerStore.SQLEvent` as SQLAlchemy creates it on PostgreSQL.
pub const POSTGRES_SCHEMA: &str = "
CREATE TABLE events (
	id SERIAL NOT NULL,
	sender_id VARCHAR(255) NOT NULL,
	type_name VARCHAR(255) NOT NULL,
	timestamp FLOAT,
	intent_name VARCHAR(255),
	action_name VARCHAR(255),
	data TEXT,
	PRIMARY KEY (id)
);
CREATE INDEX ix_events_sender_id ON events (sender_id);
";

pub enum Store {
    Sqlite(Connection),
    Postgres(RefCell<postgres::Client>),
}

pub struct RasaStore {
    pub store: Store,
}

/// Seconds since the epoch, as Rasa's `time.time()` gives them.
pub fn at(rfc3339: &str) -> f64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339).unwrap().timestamp_micros() as f64 / 1e6
}

impl RasaStore {
    pub fn create(path: &Path) -> Self {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        RasaStore { store: Store::Sqlite(conn) }
    }

    /// The tracker store's table in a PostgreSQL database, as Rasa creates it there.
    pub fn create_postgres(mut client: postgres::Client) -> Self {
        client.batch_execute(POSTGRES_SCHEMA).unwrap();
        RasaStore { store: Store::Postgres(RefCell::new(client)) }
    }

    /// Appends one event; returns its id.
    pub fn event(&self, sender: &str, when: &str, type_name: &str, body: Value) -> i64 {
        self.event_at(sender, json!(at(when)), type_name, body)
    }

    /// Appends one event stamped `timestamp` (any JSON value, in the column as SQLite takes
    /// it: a number, or text such as `'NaN'`, which SQLite keeps as text); returns its id.
    pub fn event_at(&self, sender: &str, timestamp: Value, type_name: &str, body: Value) -> i64 {
        // Rasa 3 stamps every event with the model and the assistant; a bot event's metadata
        // is the response's (`utter_action`) with those added.
        let mut metadata = json!({ "model_id": "5f0e0b9c2c4f4a1b9d1e2f3a4b5c6d7e", "assistant_id": "lead-assistant" });
        if let Some(Value::Object(own)) = body.get("metadata") {
            metadata.as_object_mut().unwrap().extend(own.clone());
        }
        let mut data = json!({ "event": type_name, "timestamp": timestamp.clone() });
        data.as_object_mut().unwrap().extend(body.as_object().unwrap().clone());
        data["metadata"] = metadata;
        let intent = data.pointer("/parse_data/intent/name").and_then(Value::as_str).map(str::to_owned);
        let action = data.get("name").and_then(Value::as_str).map(str::to_owned);
        let data = data.to_string();
        let column: Option<rusqlite::types::Value> = match &timestamp {
            Value::Number(n) => n.as_f64().map(rusqlite::types::Value::Real),
            Value::String(s) => Some(rusqlite::types::Value::Text(s.clone())),
            _ => None,
        };
        match &self.store {
            Store::Sqlite(conn) => {
                conn.execute(
                    "INSERT INTO events (sender_id, type_name, timestamp, intent_name, action_name, data) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![sender, type_name, column, intent, action, data],
                )
                .unwrap();
                conn.last_insert_rowid()
            }
            Store::Postgres(client) => {
                let timestamp: Option<f64> = match column {
                    Some(rusqlite::types::Value::Real(f)) => Some(f),
                    Some(rusqlite::types::Value::Text(t)) => t.parse().ok(),
                    _ => None,
                };
                let row = client
                    .borrow_mut()
                    .query_one(
                        "INSERT INTO events (sender_id, type_name, timestamp, intent_name, action_name, data) \
                         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                        &[&sender, &type_name, &timestamp, &intent, &action, &data],
                    )
                    .unwrap();
                row.get::<_, i32>(0).into()
            }
        }
    }

    pub fn action(&self, sender: &str, when: &str, name: &str) -> i64 {
        self.event(
            sender,
            when,
            "action",
            json!({ "name": name, "policy": "RulePolicy", "confidence": 1.0, "action_text": null, "hide_rule_turn": false }),
        )
    }

    /// A new session, as Rasa starts one: `action_session_start`, `session_started`, then
    /// `action_listen`. Returns the id of `session_started`.
    pub fn session(&self, sender: &str, when: &str) -> i64 {
        self.event(
            sender,
            when,
            "action",
            json!({ "name": "action_session_start", "policy": null, "confidence": 1.0 }),
        );
        let started = self.event(sender, when, "session_started", json!({}));
        self.action(sender, when, "action_listen");
        started
    }

    /// A new session started from a channel that sends metadata (Rasa's REST and socket.io
    /// channels do): Rasa's own slot `session_started_metadata` is set to it before
    /// `action_session_start` (`MessageProcessor._update_tracker_session`) and again after
    /// `session_started` (`ActionSessionStart`). Returns the id of `session_started`.
    pub fn session_from_channel(&self, sender: &str, when: &str, metadata: Value) -> i64 {
        self.slot(sender, when, "session_started_metadata", metadata.clone());
        self.event(
            sender,
            when,
            "action",
            json!({ "name": "action_session_start", "policy": null, "confidence": 1.0 }),
        );
        let started = self.event(sender, when, "session_started", json!({}));
        self.slot(sender, when, "session_started_metadata", metadata);
        self.action(sender, when, "action_listen");
        started
    }

    /// A session begun by a custom `action_session_start` that writes no `session_started`
    /// (Rasa Pro's store still splits sessions there). Returns the action's id.
    pub fn custom_session(&self, sender: &str, when: &str) -> i64 {
        let start = self.event(
            sender,
            when,
            "action",
            json!({ "name": "action_session_start", "policy": null, "confidence": 1.0 }),
        );
        self.action(sender, when, "action_listen");
        start
    }

    pub fn user(&self, sender: &str, when: &str, text: &str, intent: &str) -> i64 {
        self.event(
            sender,
            when,
            "user",
            json!({
                "text": text,
                "parse_data": {
                    "intent": { "name": intent, "confidence": 0.98 },
                    "entities": [],
                    "text": text,
                    "message_id": "9b6f2d0c4e8a4c1fb7d3a5e2c1b0a9f8",
                    "metadata": {},
                    "intent_ranking": [{ "name": intent, "confidence": 0.98 }],
                },
                "input_channel": "rest",
                "message_id": "9b6f2d0c4e8a4c1fb7d3a5e2c1b0a9f8",
            }),
        )
    }

    /// The bot says something: the action that utters it, then the `bot` event.
    pub fn say(&self, sender: &str, when: &str, utter: &str, text: &str) -> i64 {
        self.action(sender, when, utter);
        self.bot(sender, when, utter, text)
    }

    /// A `bot` event alone, as `ActionBotResponse` writes it: the response's name only in the
    /// event's metadata (`utter_action`). A form asks its questions so, after `action <form>`.
    pub fn bot(&self, sender: &str, when: &str, utter: &str, text: &str) -> i64 {
        self.event(
            sender,
            when,
            "bot",
            json!({
                "text": text,
                "data": { "elements": null, "quick_replies": null, "buttons": null, "attachment": null, "image": null, "custom": null },
                "metadata": { "utter_action": utter },
            }),
        )
    }

    pub fn slot(&self, sender: &str, when: &str, name: &str, value: Value) -> i64 {
        self.event(sender, when, "slot", json!({ "name": name, "value": value }))
    }

    pub fn active_loop(&self, sender: &str, when: &str, name: Option<&str>) -> i64 {
        self.event(sender, when, "active_loop", json!({ "name": name }))
    }

    /// `lead_form` runs: on its first run it activates; then it validates the slot the visitor
    /// just filled (`answered`) and asks for the next one (`ask`: the slot, its response and
    /// text), as `FormAction.run` writes it. Returns the id of the question's `bot` event.
    pub fn form_runs(&self, sender: &str, when: &str, answered: Option<(&str, &str)>, ask: (&str, &str, &str)) -> i64 {
        self.action(sender, when, "lead_form");
        match answered {
            Some((slot, value)) => {
                self.slot(sender, when, slot, json!(value));
            }
            None => {
                self.active_loop(sender, when, Some("lead_form"));
            }
        }
        self.slot(sender, when, "requested_slot", json!(ask.0));
        let asked = self.bot(sender, when, ask.1, ask.2);
        self.action(sender, when, "action_listen");
        asked
    }

    /// The visitor answers the form: the `user` event, then the slot `action_extract_slots`
    /// fills from it (no `action` event of its own).
    pub fn answers(&self, sender: &str, when: &str, slot: &str, text: &str) -> i64 {
        let said = self.user(sender, when, text, "inform");
        self.slot(sender, when, slot, json!(text));
        said
    }

    /// A visitor who starts the lead form, gives a name and an email, and leaves at the phone
    /// question. `minute` spaces visitors apart.
    pub fn lead_who_leaves(&self, sender: &str, name: &str, email: &str, minute: u32) {
        let t = |s: u32| format!("2026-11-24T09:{minute:02}:{s:02}Z");
        self.session(sender, &t(0));
        self.user(sender, &t(1), "hi, I'd like a quote", "request_quote");
        self.form_runs(sender, &t(2), None, ("name", "utter_ask_name", "What's your name?"));
        self.answers(sender, &t(10), "name", name);
        self.form_runs(sender, &t(11), Some(("name", name)), ("email", "utter_ask_email", "Your email?"));
        self.answers(sender, &t(20), "email", email);
        self.form_runs(sender, &t(21), Some(("email", email)), ("phone", "utter_ask_phone", "And your phone?"));
    }

    /// The same visitor back: gives the phone; the form validates it, has nothing left to ask
    /// and deactivates (`active_loop` null right after `action lead_form`); then the bot
    /// submits the lead and says goodbye.
    pub fn finishes(&self, sender: &str, phone: &str, when: &str) {
        self.answers(sender, when, "phone", phone);
        self.action(sender, when, "lead_form");
        self.slot(sender, when, "phone", json!(phone));
        self.slot(sender, when, "requested_slot", Value::Null);
        self.active_loop(sender, when, None);
        self.action(sender, when, "action_submit_lead");
        self.say(sender, when, "utter_goodbye", "Thanks, we will be in touch!");
        self.action(sender, when, "action_listen");
    }

    /// The visitor says "stop" in the middle of the form: nothing fills the requested slot, the
    /// form rejects its run, and a rule deactivates it (`action_deactivate_loop`), as Rasa writes
    /// a cancelled form.
    pub fn stops(&self, sender: &str, when: &str) {
        self.user(sender, when, "stop", "stop");
        self.event(
            sender,
            when,
            "action_execution_rejected",
            json!({ "name": "lead_form", "policy": "RulePolicy", "confidence": 1.0 }),
        );
        self.action(sender, when, "action_deactivate_loop");
        self.active_loop(sender, when, None);
        self.slot(sender, when, "requested_slot", Value::Null);
        self.say(sender, when, "utter_ok_stopped", "Okay, I stopped.");
        self.action(sender, when, "action_listen");
    }
}
