//! `[notify]` and `[[bots]]`: the rules that decide which chats are worth an email, and each
//! bot's own settings over the top level's.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono_tz::Tz;
use lettre::message::Mailbox;
use serde::Deserialize;

use crate::domain::{ChatState, Span};

/// The rules that decide whether a conversation in a new state is worth an email.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    /// The states that are emailed.
    #[serde(default = "all_states")]
    pub on: Vec<ChatState>,
    /// Email only once the visitor has given every one of these fields.
    #[serde(default)]
    pub require_fields: Vec<String>,
    /// Email only once the visitor has given at least one of these fields.
    #[serde(default)]
    pub require_any_field: Vec<String>,
    /// Email only chats where the visitor wrote at least this many messages.
    #[serde(default = "one")]
    pub min_visitor_messages: u32,
    /// The subject of a conversation's first email, a minijinja template; the identifier is
    /// always appended.
    #[serde(default = "default_subject")]
    pub subject: String,
    /// Conversations listed in one daily email instead of one email each.
    pub digest: Option<DigestRule>,
}

/// `digest = { states = ["abandoned"], unless_fields = ["email", "phone"], at = "08:00" }`:
/// conversations reaching one of `states` without any of `unless_fields` wait for one email a
/// day, sent at `at` in the bot's time zone.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DigestRule {
    #[serde(default = "abandoned")]
    pub states: Vec<ChatState>,
    #[serde(default)]
    pub unless_fields: Vec<String>,
    #[serde(deserialize_with = "clock_time", serialize_with = "clock_time_out")]
    pub at: chrono::NaiveTime,
}

fn abandoned() -> Vec<ChatState> {
    vec![ChatState::Abandoned]
}

/// "08:00": a time of day, hours and minutes.
fn clock_time<'de, D: serde::Deserializer<'de>>(d: D) -> Result<chrono::NaiveTime, D::Error> {
    let s = String::deserialize(d)?;
    chrono::NaiveTime::parse_from_str(s.trim(), "%H:%M")
        .map_err(|_| serde::de::Error::custom(format!("{s:?} is not a time of day like \"08:00\"")))
}

fn clock_time_out<S: serde::Serializer>(t: &chrono::NaiveTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.format("%H:%M").to_string())
}

impl Default for Notify {
    fn default() -> Self {
        Notify {
            on: all_states(),
            require_fields: Vec::new(),
            require_any_field: Vec::new(),
            min_visitor_messages: 1,
            subject: default_subject(),
            digest: None,
        }
    }
}

/// A `[[bots]]` entry: anything left out falls back to the top-level setting.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bot {
    pub id: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    pub to: Option<Vec<Mailbox>>,
    pub cc: Option<Vec<Mailbox>>,
    pub abandon_after: Option<Span>,
    pub alert_if_silent: Option<Span>,
    pub time_zone: Option<Tz>,
    pub templates: Option<PathBuf>,
    #[serde(default)]
    pub notify: NotifyPatch,
    /// Typebot: this bot's variables for name, email and phone, over `source.fields`.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// Flowise: this bot's `complete_on_tools`, replacing the source's.
    pub complete_on_tools: Option<Vec<String>>,
    /// Flowise: this bot's `complete_on_phrases`, replacing the source's.
    pub complete_on_phrases: Option<Vec<String>>,
}

/// A bot's changes to `[notify]`: each key given replaces the default's.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyPatch {
    pub on: Option<Vec<ChatState>>,
    pub require_fields: Option<Vec<String>>,
    pub require_any_field: Option<Vec<String>>,
    pub min_visitor_messages: Option<u32>,
    pub subject: Option<String>,
    pub digest: Option<DigestRule>,
}

impl NotifyPatch {
    pub fn apply(&self, base: &Notify) -> Notify {
        Notify {
            on: self.on.clone().unwrap_or_else(|| base.on.clone()),
            require_fields: self.require_fields.clone().unwrap_or_else(|| base.require_fields.clone()),
            require_any_field: self.require_any_field.clone().unwrap_or_else(|| base.require_any_field.clone()),
            min_visitor_messages: self.min_visitor_messages.unwrap_or(base.min_visitor_messages),
            subject: self.subject.clone().unwrap_or_else(|| base.subject.clone()),
            digest: self.digest.clone().or_else(|| base.digest.clone()),
        }
    }
}

fn all_states() -> Vec<ChatState> {
    ChatState::ALL.to_vec()
}
fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}

fn default_subject() -> String {
    super::DEFAULT_SUBJECT.to_owned()
}
