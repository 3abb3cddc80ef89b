//! The `[source]` table: which store, where, and how to read it; what a source URL may be,
//! and how one is shown without what may hold a secret.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Deserialize;

use chrono_tz::Tz;

use super::{ConfigError, secret};
use crate::domain::Span;

/// The `[source]` table: which store, where, and how to read it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub kind: SourceKind,
    /// A SQLite file (a path, or `sqlite:///path`), or `postgresql://user@host:5432/db?...`.
    pub url: String,
    /// Where the PostgreSQL password is: never in the config file (nor the URL).
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    /// Rasa: the name emails give the bot (Rasa's store has none).
    pub bot_name: Option<String>,
    /// Rasa: actions whose run means the visitor finished (e.g. "utter_goodbye").
    #[serde(default)]
    pub complete_on_actions: Vec<String>,
    /// Rasa: forms whose deactivation right after they ran means the visitor finished (not
    /// one cancelled by `action_deactivate_loop`).
    #[serde(default)]
    pub complete_on_forms: Vec<String>,
    /// Rasa Pro (CALM): flows whose `flow_completed` means the visitor finished.
    #[serde(default)]
    pub complete_on_flows: Vec<String>,
    /// Typebot: which of the flow's variables are the visitor's name, email and phone
    /// (`email = "Work email"`); a field left out is the variable of its own name, in any case.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// Flowise: which of its chat types are visitors' chats (`ChatType`); default `EXTERNAL`.
    pub chat_types: Option<Vec<String>>,
    /// Flowise: a tool (`usedTools[].tool`) whose call in a bot's answer means the chat is done.
    #[serde(default)]
    pub complete_on_tools: Vec<String>,
    /// Flowise: a phrase (any case) whose saying in a bot's answer means the chat is done.
    #[serde(default)]
    pub complete_on_phrases: Vec<String>,
    /// Flowise on PostgreSQL: the Flowise process's zone, in which it stamps messages.
    pub message_time_zone: Option<Tz>,
    /// Flowise on PostgreSQL: the database session's zone, in which leads are stamped.
    pub lead_time_zone: Option<Tz>,
    /// Flowise on PostgreSQL: how long after its stamp a message may still be inserted (a
    /// visitor's question is stamped when asked and written after the answer).
    pub late_writes: Option<Span>,
    /// Dify: which of its `invoke_from` values are visitors' chats; default web-app, service-api.
    pub invoke_from: Option<Vec<String>>,
}

/// Dify's `invoke_from` values (`api/core/app/entities/app_invoke_entities.py` `InvokeFrom`).
pub const DIFY_INVOKE_FROM: [&str; 7] =
    ["service-api", "web-app", "explore", "debugger", "trigger", "published", "validation"];

/// Dify: how long after its `created_at` an empty answer may still be written, by default (a
/// reply is written when it ends: seconds; an agent's, minutes).
pub const DIFY_LATE_WRITES: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// The `invoke_from` values a Dify source reads by default: the web app's and the API's chats.
pub const DIFY_VISITORS: [&str; 2] = ["web-app", "service-api"];

/// Flowise's chat types (`Interface.ts` `ChatType`).
pub const FLOWISE_CHAT_TYPES: [&str; 6] = ["INTERNAL", "EXTERNAL", "EVALUATION", "MCP", "SCHEDULED", "WEBHOOK"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// Export schema v1 (README), written by the runtime for us.
    Export,
    /// Rasa's SQL tracker store.
    Rasa,
    /// Typebot's PostgreSQL database.
    Typebot,
    /// Flowise's database: its SQLite file or PostgreSQL.
    Flowise,
    /// Dify's PostgreSQL database.
    Dify,
}

impl SourceKind {
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Export => "export",
            SourceKind::Rasa => "rasa",
            SourceKind::Typebot => "typebot",
            SourceKind::Flowise => "flowise",
            SourceKind::Dify => "dify",
        }
    }
}

/// The fields a Typebot owner may map to variables: what emails, rules and people read.
pub const MAPPED_FIELDS: &[&str] = &["name", "email", "phone"];

pub(super) fn validate_fields(key: &str, fields: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    for (field, variable) in fields {
        if !MAPPED_FIELDS.contains(&field.as_str()) {
            return Err(ConfigError::new(
                format!("{key}.{field}"),
                "not a field chat-notifier reads (name, email, phone)",
            ));
        }
        if variable.trim().is_empty() {
            return Err(ConfigError::new(format!("{key}.{field}"), "empty; give the name of a variable of the flow"));
        }
    }
    Ok(())
}

/// Where a store is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Sqlite(PathBuf),
    /// A libpq-style URL without a password.
    Postgres(String),
}

impl SourceConfig {
    /// The export named by the top-level `export = PATH` shorthand.
    pub fn export_file(path: &Path) -> Self {
        SourceConfig {
            kind: SourceKind::Export,
            url: path.display().to_string(),
            password_env: None,
            password_file: None,
            bot_name: None,
            complete_on_actions: Vec::new(),
            complete_on_forms: Vec::new(),
            complete_on_flows: Vec::new(),
            fields: BTreeMap::new(),
            chat_types: None,
            complete_on_tools: Vec::new(),
            complete_on_phrases: Vec::new(),
            message_time_zone: None,
            lead_time_zone: None,
            late_writes: None,
            invoke_from: None,
        }
    }

    pub fn location(&self) -> Location {
        let url = self.url.trim();
        if url.starts_with("postgresql://") || url.starts_with("postgres://") {
            Location::Postgres(url.to_owned())
        } else {
            Location::Sqlite(PathBuf::from(url.strip_prefix("sqlite://").unwrap_or(url)))
        }
    }

    /// The password, from where the config points, when a connection is made.
    pub fn password(&self) -> Result<Option<String>> {
        secret("source", self.password_env.as_deref(), self.password_file.as_deref())
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.url.trim().is_empty() {
            return Err(ConfigError::new("source.url", "empty"));
        }
        if let Location::Postgres(url) = self.location() {
            validate_postgres_url(&url)?;
        }
        if self.password_env.is_some() && self.password_file.is_some() {
            return Err(ConfigError::new("source.password_env and source.password_file", "give one, not both"));
        }
        let (rasa, typebot) = (self.kind == SourceKind::Rasa, self.kind == SourceKind::Typebot);
        let (flowise, dify) = (self.kind == SourceKind::Flowise, self.kind == SourceKind::Dify);
        for (key, given, applies) in [
            ("chat_types", self.chat_types.is_some(), flowise),
            ("complete_on_tools", !self.complete_on_tools.is_empty(), flowise),
            ("complete_on_phrases", !self.complete_on_phrases.is_empty(), flowise || dify),
            ("message_time_zone", self.message_time_zone.is_some(), flowise),
            ("lead_time_zone", self.lead_time_zone.is_some(), flowise),
            ("late_writes", self.late_writes.is_some(), flowise || dify),
            ("invoke_from", self.invoke_from.is_some(), dify),
            ("bot_name", self.bot_name.is_some(), rasa),
            ("complete_on_actions", !self.complete_on_actions.is_empty(), rasa),
            ("complete_on_forms", !self.complete_on_forms.is_empty(), rasa),
            ("complete_on_flows", !self.complete_on_flows.is_empty(), rasa),
            ("fields", !self.fields.is_empty(), typebot || dify),
        ] {
            if given && !applies {
                return Err(ConfigError::new(
                    format!("source.{key}"),
                    format!("does not apply to kind = \"{}\"", self.kind.name()),
                ));
            }
        }
        if typebot && matches!(self.location(), Location::Sqlite(_)) {
            return Err(ConfigError::new(
                "source.url",
                "Typebot keeps its chats in PostgreSQL; give postgresql://user@host:5432/typebot",
            ));
        }
        if dify && matches!(self.location(), Location::Sqlite(_)) {
            return Err(ConfigError::new(
                "source.url",
                "Dify keeps its chats in PostgreSQL; give postgresql://user@host:5432/dify (its .env's DB_HOST, \
                 DB_PORT, DB_DATABASE)",
            ));
        }
        if flowise {
            self.validate_flowise()?;
        }
        if dify {
            self.validate_dify()?;
        }
        validate_fields("source.fields", &self.fields)
    }

    fn validate_dify(&self) -> Result<(), ConfigError> {
        if let Some(from) = &self.invoke_from {
            if from.is_empty() {
                return Err(ConfigError::new("source.invoke_from", "empty; give at least one, e.g. [\"web-app\"]"));
            }
            if let Some(bad) = from.iter().find(|t| !DIFY_INVOKE_FROM.contains(&t.as_str())) {
                return Err(ConfigError::new(
                    "source.invoke_from",
                    format!("{bad:?} is not a Dify invoke_from: give {}", DIFY_INVOKE_FROM.join(", ")),
                ));
            }
        }
        validate_completions("source", &[], &self.complete_on_phrases)?;
        if self.late_writes.is_some_and(|s| s.0 <= chrono::TimeDelta::zero()) {
            return Err(ConfigError::new("source.late_writes", "must be longer than 0s"));
        }
        Ok(())
    }

    fn validate_flowise(&self) -> Result<(), ConfigError> {
        let sqlite = matches!(self.location(), Location::Sqlite(_));
        for (key, given) in
            [("message_time_zone", self.message_time_zone.is_some()), ("lead_time_zone", self.lead_time_zone.is_some())]
        {
            if given && sqlite {
                return Err(ConfigError::new(
                    format!("source.{key}"),
                    "applies to Flowise on PostgreSQL only: on SQLite Flowise writes every time in UTC",
                ));
            }
        }
        if let Some(types) = &self.chat_types {
            if types.is_empty() {
                return Err(ConfigError::new("source.chat_types", "empty; give at least one, e.g. [\"EXTERNAL\"]"));
            }
            if let Some(bad) = types.iter().find(|t| !FLOWISE_CHAT_TYPES.contains(&t.as_str())) {
                return Err(ConfigError::new(
                    "source.chat_types",
                    format!("{bad:?} is not a Flowise chat type: give {}", FLOWISE_CHAT_TYPES.join(", ")),
                ));
            }
        }
        validate_completions("source", &self.complete_on_tools, &self.complete_on_phrases)?;
        if self.late_writes.is_some_and(|s| s.0 <= chrono::TimeDelta::zero()) {
            return Err(ConfigError::new("source.late_writes", "must be longer than 0s"));
        }
        Ok(())
    }
}

/// Flowise's `complete_on_tools` and `complete_on_phrases` under `table`: no blank entry.
pub(super) fn validate_completions(table: &str, tools: &[String], phrases: &[String]) -> Result<(), ConfigError> {
    for (key, list) in [("complete_on_tools", tools), ("complete_on_phrases", phrases)] {
        if list.iter().any(|v| v.trim().is_empty()) {
            return Err(ConfigError::new(format!("{table}.{key}"), "an empty entry: it would match every answer"));
        }
    }
    Ok(())
}

/// The schemes `source.url` may have; anything else with a `://` is refused.
const SCHEMES: [&str; 3] = ["postgresql", "postgres", "sqlite"];

/// libpq's keywords, the ones a `key=value` connection string starts with or carries.
const LIBPQ_KEYWORDS: [&str; 12] = [
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "passfile",
    "service",
    "sslmode",
    "sslrootcert",
    "connect_timeout",
    "application_name",
];

/// What `source.url` must be before anything else is read of it: a PostgreSQL URL, a
/// `sqlite://` path, or a SQLite file's path. What is none of them (a libpq `key=value` string,
/// `mysql://u:pw@h/db`, `sqlite://u:pw@/x.db`) is refused without being echoed: it may hold a
/// password, and an error line would print it in full.
pub(super) fn validate_url_form(url: &str) -> Result<(), ConfigError> {
    const KNOWN: &str = "give postgresql://, postgres://, sqlite:// or a SQLite file's path";
    let url = url.trim();
    if url.chars().any(char::is_control) {
        return Err(ConfigError::new("source.url", "a control character in it"));
    }
    if let Some((scheme, rest)) = url.split_once("://")
        && !scheme.contains('/')
    {
        if !SCHEMES.contains(&scheme) {
            let grammar = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
            let problem = match grammar {
                true => format!("{scheme}:// is not a URL chat-notifier reads: {KNOWN}"),
                false => format!("not a URL chat-notifier reads: {KNOWN}"),
            };
            return Err(ConfigError::new("source.url", problem));
        }
        if scheme == "sqlite" {
            if rest.split('/').next().is_some_and(|authority| authority.contains(['@', ':'])) {
                return Err(ConfigError::new(
                    "source.url",
                    "sqlite:// takes a file's path, no user, password or host (sqlite:///path/to/file.db)",
                ));
            }
            if rest.contains(['?', '#']) {
                return Err(ConfigError::new(
                    "source.url",
                    "sqlite:// takes a file's path, no query (?...): the file is opened read only, with no settings \
                     from the URL",
                ));
            }
        }
        return Ok(());
    }
    // libpq allows spaces around the = (`host = db password = x`).
    let squeezed = url.split('=').map(str::trim).collect::<Vec<_>>().join("=");
    let keyword = |token: &str| {
        token.split_once('=').is_some_and(|(key, _)| LIBPQ_KEYWORDS.contains(&key.to_ascii_lowercase().as_str()))
    };
    if squeezed.split_whitespace().any(keyword) {
        return Err(ConfigError::new(
            "source.url",
            "libpq's key=value form is not read; write a URL, postgresql://user@host:port/dbname, and the password \
             in source.password_env or source.password_file",
        ));
    }
    Ok(())
}

/// `postgresql://user:secret@host/db`: a password written in the URL.
fn url_has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    authority.rsplit_once('@').is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// The `sslmode` values chat-notifier gives libpq's meanings (`allow`, plain first, it has not).
pub const SSL_MODES: [&str; 5] = ["disable", "prefer", "require", "verify-ca", "verify-full"];

/// A PostgreSQL URL as chat-notifier connects with it: no password anywhere in it, and an
/// `sslmode` it knows.
pub(super) fn validate_postgres_url(url: &str) -> Result<(), ConfigError> {
    validate_postgres_url_of("source.url", "source.password_env or source.password_file", url)
}

/// `validate_postgres_url` for the URL at config key `key`, whose password goes in `password_keys`.
pub(super) fn validate_postgres_url_of(key: &str, password_keys: &str, url: &str) -> Result<(), ConfigError> {
    let use_keys = format!("use {password_keys}");
    #[allow(non_snake_case)]
    let USE = use_keys.as_str();
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    // The connection's parser ends the user name and password at the first @ anywhere: a
    // first one past the host would make a password of what is before it.
    if rest.find('@').is_some_and(|at| at > rest.find(['/', '?']).unwrap_or(rest.len())) {
        return Err(ConfigError::new(key, "an @ after the host: write it as %40"));
    }
    if url_has_password(url) {
        return Err(ConfigError::new(key, format!("passwords are not read from the config file; {USE}")));
    }
    let params = url_params(url);
    for p in &params {
        if p.key.chars().any(char::is_control) {
            let name = p.raw.split('=').next().unwrap_or("");
            return Err(ConfigError::new(key, format!("a control character in the name of a setting ({name}=)")));
        }
        if p.key == "password" || p.key == "sslpassword" {
            return Err(ConfigError::new(
                key,
                format!("passwords are not read from the config file ({}=); {USE}", p.key),
            ));
        }
        if p.key == "sslmode" && !SSL_MODES.contains(&p.value.as_str()) {
            return Err(ConfigError::new(
                key,
                format!("sslmode={:?} is not one chat-notifier knows: give {}", p.value, SSL_MODES.join(", ")),
            ));
        }
    }
    let value = |key: &str| params.iter().rev().find(|p| p.key == key).map(|p| p.value.as_str());
    // libpq's rule: the system's roots prove a certificate only together with its name.
    if value("sslrootcert") == Some("system") && value("sslmode").is_some_and(|m| m != "verify-full") {
        return Err(ConfigError::new(key, "sslrootcert=system needs sslmode=verify-full (or no sslmode)"));
    }
    Ok(())
}

/// A parameter of a PostgreSQL URL's query (`?key=value&...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlParam<'a> {
    /// `key=value` as written.
    pub raw: &'a str,
    /// Percent-decoded, as the connection reads them.
    pub key: String,
    pub value: String,
}

/// The parameters of a PostgreSQL URL's query, in order. The query starts at the first `?`
/// past the host, as the connection's parser finds it (no @ may follow the host).
pub fn url_params(url: &str) -> Vec<UrlParam<'_>> {
    fn decode(s: &str) -> String {
        let (bytes, mut out, mut i) = (s.as_bytes(), Vec::with_capacity(s.len()), 0);
        while i < bytes.len() {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
            match (bytes[i], hex) {
                (b'%', Some(b)) => {
                    out.push(b);
                    i += 3;
                }
                (b, _) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let Some((_, query)) = rest.split_once('?') else { return Vec::new() };
    query
        .split('&')
        .filter(|raw| !raw.is_empty())
        .map(|raw| {
            let (key, value) = raw.split_once('=').unwrap_or((raw, ""));
            UrlParam { raw, key: decode(key), value: decode(value) }
        })
        .collect()
}
