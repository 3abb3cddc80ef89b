//! The TOML config: parsed and validated once at start, so everything after works on values
//! known to be good. Every error names the file and the key.

mod routing;
pub use routing::{Routing, Settings};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::{env, fs};

use anyhow::{Context, Result, anyhow, bail};
use chrono::TimeDelta;
use chrono_tz::Tz;
use lettre::message::Mailbox;
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::domain::{ChatState, Limits, Span};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Shorthand for `[source] kind = "export"` on a SQLite file.
    pub export: Option<PathBuf>,
    /// Where the chats are: the bot runtime's store, read only.
    pub source: Option<SourceConfig>,
    /// The notifier's own SQLite file.
    pub state: PathBuf,
    #[serde(default = "thirty_minutes")]
    pub abandon_after: Span,
    #[serde(default = "one_day")]
    pub first_run_horizon: Span,
    /// A bot whose chats used to arrive and have not for this long raises one alert email.
    pub alert_if_silent: Option<Span>,
    #[serde(default = "utc")]
    pub time_zone: Tz,
    /// A folder whose templates replace the built-in ones of the same name.
    pub templates: Option<PathBuf>,
    /// Attempts after which an email the server refuses permanently is parked.
    #[serde(default = "five")]
    pub max_attempts: u32,
    pub mail: Mail,
    pub transport: Transport,
    /// Which emails to send, for every bot unless a `[[bots]]` entry says otherwise.
    #[serde(default)]
    pub notify: Notify,
    /// Per-bot settings; bots not listed use the defaults above.
    #[serde(default)]
    pub bots: Vec<Bot>,
}

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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// Export schema v1 (README), written by the runtime for us.
    Export,
    /// Rasa's SQL tracker store.
    Rasa,
    /// Typebot's PostgreSQL database.
    Typebot,
}

impl SourceKind {
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Export => "export",
            SourceKind::Rasa => "rasa",
            SourceKind::Typebot => "typebot",
        }
    }
}

/// The fields a Typebot owner may map to variables: what emails, rules and people read.
pub const MAPPED_FIELDS: &[&str] = &["name", "email", "phone"];

fn validate_fields(key: &str, fields: &BTreeMap<String, String>) -> Result<(), String> {
    for (field, variable) in fields {
        if !MAPPED_FIELDS.contains(&field.as_str()) {
            return Err(format!("{key}.{field}: not a field chat-notifier reads (name, email, phone)"));
        }
        if variable.trim().is_empty() {
            return Err(format!("{key}.{field}: empty; give the name of a variable of the flow"));
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

    fn validate(&self) -> Result<(), String> {
        if self.url.trim().is_empty() {
            return Err("source.url: empty".into());
        }
        if let Location::Postgres(url) = self.location() {
            validate_postgres_url(&url)?;
        }
        if self.password_env.is_some() && self.password_file.is_some() {
            return Err("source.password_env and source.password_file: give one, not both".into());
        }
        let (rasa, typebot) = (self.kind == SourceKind::Rasa, self.kind == SourceKind::Typebot);
        for (key, given, applies) in [
            ("bot_name", self.bot_name.is_some(), rasa),
            ("complete_on_actions", !self.complete_on_actions.is_empty(), rasa),
            ("complete_on_forms", !self.complete_on_forms.is_empty(), rasa),
            ("complete_on_flows", !self.complete_on_flows.is_empty(), rasa),
            ("fields", !self.fields.is_empty(), typebot),
        ] {
            if given && !applies {
                return Err(format!("source.{key}: does not apply to kind = \"{}\"", self.kind.name()));
            }
        }
        if typebot && matches!(self.location(), Location::Sqlite(_)) {
            return Err(
                "source.url: Typebot keeps its chats in PostgreSQL; give postgresql://user@host:5432/typebot".into()
            );
        }
        validate_fields("source.fields", &self.fields)
    }
}

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
    vec![ChatState::Completed, ChatState::Abandoned, ChatState::Resumed]
}
fn one() -> u32 {
    1
}
fn fifty() -> u32 {
    50
}
fn yes() -> bool {
    true
}
/// The subject when the config names none (`mail::render` writes this one without minijinja).
pub const DEFAULT_SUBJECT: &str = "{{ bot.name }}: chat with {{ visitor.display }}";

fn default_subject() -> String {
    DEFAULT_SUBJECT.to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mail {
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    #[serde(default)]
    pub cc: Vec<Mailbox>,
    /// The right-hand side of Message-IDs; the From address's domain by default.
    pub message_id_domain: Option<String>,
    /// At most this many emails an hour, and a day (a provider's limits: see README); what
    /// is over waits in the outbox, in order, for later runs.
    pub max_per_hour: Option<u32>,
    pub max_per_day: Option<u32>,
    /// More emails than this in one run (digests aside): the rest go out as one summary.
    #[serde(default = "fifty")]
    pub burst: u32,
    /// What one email shows of a long chat (see `render::Limits`).
    pub transcript_messages: Option<usize>,
    pub message_chars: Option<usize>,
    pub transcript_bytes: Option<usize>,
}

impl Mail {
    pub fn limits(&self) -> Limits {
        let default = Limits::default();
        Limits {
            messages: self.transcript_messages.unwrap_or(default.messages),
            message_chars: self.message_chars.unwrap_or(default.message_chars),
            transcript_bytes: self.transcript_bytes.unwrap_or(default.transcript_bytes),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(try_from = "TransportTable")]
pub enum Transport {
    Smtp(Smtp),
    Sendmail {
        command: PathBuf,
    },
    /// Writes each email as an .eml file: previews and machines with no mail server.
    Folder {
        path: PathBuf,
        /// The files' permissions: 0600 unless widened for a pickup folder.
        mode: u32,
    },
}

#[derive(Debug)]
pub struct Smtp {
    pub host: String,
    pub port: Option<u16>,
    pub security: Security,
    pub username: Option<String>,
    /// Name of the environment variable holding the password.
    pub password_env: Option<String>,
    /// File whose first line is the password.
    pub password_file: Option<PathBuf>,
    pub timeout: Span,
    /// For a local relay with a self-signed certificate; certificates are verified otherwise.
    pub accept_invalid_certs: bool,
}

/// The `[transport]` table as written: one flat table, so that a wrong value is reported
/// with its own key and line (serde's tagged enums lose both), then checked per kind.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransportTable {
    kind: Kind,
    host: Option<String>,
    port: Option<u16>,
    security: Option<Security>,
    username: Option<String>,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    /// Only here to answer with a helpful error: secrets never live in the config file.
    password: Option<IgnoredAny>,
    timeout: Option<Span>,
    accept_invalid_certs: Option<bool>,
    command: Option<PathBuf>,
    path: Option<PathBuf>,
    mode: Option<String>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Smtp,
    Sendmail,
    Folder,
}

impl TryFrom<TransportTable> for Transport {
    type Error = String;

    fn try_from(t: TransportTable) -> Result<Self, String> {
        fn given(keys: &[(&'static str, bool)]) -> Vec<&'static str> {
            keys.iter().filter(|(_, set)| *set).map(|(k, _)| *k).collect()
        }
        let smtp_only = given(&[
            ("host", t.host.is_some()),
            ("port", t.port.is_some()),
            ("security", t.security.is_some()),
            ("username", t.username.is_some()),
            ("password_env", t.password_env.is_some()),
            ("password_file", t.password_file.is_some()),
            ("timeout", t.timeout.is_some()),
            ("accept_invalid_certs", t.accept_invalid_certs.is_some()),
        ]);
        // Whatever the kind: a password in the config file is refused, never ignored.
        if t.password.is_some() {
            return Err(
                "password: passwords are not read from the config file; use password_env or password_file".into()
            );
        }
        let folder_only = given(&[("path", t.path.is_some()), ("mode", t.mode.is_some())]);
        let (kind, foreign) = match t.kind {
            Kind::Smtp => ("smtp", [given(&[("command", t.command.is_some())]), folder_only].concat()),
            Kind::Sendmail => ("sendmail", [smtp_only.clone(), folder_only].concat()),
            Kind::Folder => ("folder", [smtp_only.clone(), given(&[("command", t.command.is_some())])].concat()),
        };
        if let Some(key) = foreign.first() {
            return Err(format!("{key} does not apply to kind = \"{kind}\""));
        }
        Ok(match t.kind {
            Kind::Sendmail => Transport::Sendmail { command: t.command.unwrap_or_else(|| "/usr/sbin/sendmail".into()) },
            Kind::Folder => Transport::Folder {
                path: t.path.ok_or("path is required for kind = \"folder\"")?,
                mode: match t.mode {
                    None => 0o600,
                    Some(m) => u32::from_str_radix(m.trim_start_matches("0o"), 8)
                        .ok()
                        .filter(|m| *m <= 0o666 && *m & 0o600 == 0o600)
                        .ok_or(format!("mode: {m:?} is not a file mode like \"0600\" or \"0640\" (owner read and write, no execute)"))?,
                },
            },
            Kind::Smtp => {
                if t.password_env.is_some() && t.password_file.is_some() {
                    return Err("password_env and password_file: give one, not both".into());
                }
                if t.username.is_none() && (t.password_env.is_some() || t.password_file.is_some()) {
                    return Err("username: needed when a password is given".into());
                }
                let host = t.host.filter(|h| !h.trim().is_empty()).ok_or("host is required for kind = \"smtp\"")?;
                if t.security == Some(Security::None) && t.username.is_some() && !is_loopback(&host) {
                    return Err(format!(
                        "username: no login without TLS: security = \"none\" would send the password in clear to \
                         {host:?}, which is not this machine (only a loopback address, 127.0.0.1 or ::1, or \
                         localhost, written so, may have one); use security = \"starttls\" or \"tls\""
                    ));
                }
                Transport::Smtp(Smtp {
                    host,
                    port: t.port,
                    security: t.security.unwrap_or_default(),
                    username: t.username,
                    password_env: t.password_env,
                    password_file: t.password_file,
                    timeout: t.timeout.unwrap_or_else(thirty_seconds),
                    accept_invalid_certs: t.accept_invalid_certs.unwrap_or(false),
                })
            }
        })
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Port 587, upgraded with STARTTLS, which is required.
    #[default]
    Starttls,
    /// Implicit TLS, port 465.
    Tls,
    /// Plain text, for a relay on the same machine or network.
    None,
}

/// Pure: whether `host` names this machine (a loopback address, `localhost`), where a login
/// may go without TLS (msmtp's rule): nothing on the way can read it. By name, never by what
/// DNS answers: an IP literal in 127.0.0.0/8, `::1` or `::ffff:127.x.x.x`, or exactly
/// `localhost` (any case). Not `localhost.`: a name with the root's dot is looked up in DNS
/// (glibc does not match it in /etc/hosts), where anyone may answer it.
pub fn is_loopback(host: &str) -> bool {
    let literal = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    match literal.parse::<std::net::IpAddr>() {
        Ok(ip) => is_loopback_ip(ip),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// Pure: whether `ip` is this machine's: 127.0.0.0/8, `::1`, or an IPv4-mapped loopback.
pub fn is_loopback_ip(ip: std::net::IpAddr) -> bool {
    ip.is_loopback() || matches!(ip, std::net::IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()))
}

impl Smtp {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.security {
            Security::Starttls => 587,
            Security::Tls => 465,
            Security::None => 25,
        })
    }

    /// The password, read from where the config points, only when a connection is made.
    pub fn password(&self) -> Result<Option<String>> {
        secret("transport", self.password_env.as_deref(), self.password_file.as_deref())
    }
}

/// A password from an environment variable or the first line of a file; `table` names the
/// config table in errors.
fn secret(table: &str, var: Option<&str>, file: Option<&Path>) -> Result<Option<String>> {
    if let Some(var) = var {
        let value =
            env::var(var).with_context(|| format!("{table}.password_env: environment variable {var} is not set"))?;
        return Ok(Some(value));
    }
    if let Some(path) = file {
        let text =
            fs::read_to_string(path).with_context(|| format!("{table}.password_file: reading {}", path.display()))?;
        return Ok(Some(text.lines().next().unwrap_or("").to_owned()));
    }
    Ok(None)
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
fn validate_url_form(url: &str) -> Result<(), String> {
    const KNOWN: &str = "give postgresql://, postgres://, sqlite:// or a SQLite file's path";
    let url = url.trim();
    if url.chars().any(char::is_control) {
        return Err("source.url: a control character in it".into());
    }
    if let Some((scheme, rest)) = url.split_once("://")
        && !scheme.contains('/')
    {
        if !SCHEMES.contains(&scheme) {
            let grammar = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
            return Err(match grammar {
                true => format!("source.url: {scheme}:// is not a URL chat-notifier reads: {KNOWN}"),
                false => format!("source.url: not a URL chat-notifier reads: {KNOWN}"),
            });
        }
        if scheme == "sqlite" {
            if rest.split('/').next().is_some_and(|authority| authority.contains(['@', ':'])) {
                return Err(
                    "source.url: sqlite:// takes a file's path, no user, password or host (sqlite:///path/to/file.db)"
                        .into(),
                );
            }
            if rest.contains(['?', '#']) {
                return Err("source.url: sqlite:// takes a file's path, no query (?...): the file is opened read \
                            only, with no settings from the URL"
                    .into());
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
        return Err(
            "source.url: libpq's key=value form is not read; write a URL, postgresql://user@host:port/dbname, \
                    and the password in source.password_env or source.password_file"
                .into(),
        );
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
fn validate_postgres_url(url: &str) -> Result<(), String> {
    const USE: &str = "use source.password_env or source.password_file";
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    // The connection's parser ends the user name and password at the first @ anywhere: a
    // first one past the host would make a password of what is before it.
    if rest.find('@').is_some_and(|at| at > rest.find(['/', '?']).unwrap_or(rest.len())) {
        return Err("source.url: an @ after the host: write it as %40".into());
    }
    if url_has_password(url) {
        return Err(format!("source.url: passwords are not read from the config file; {USE}"));
    }
    let params = url_params(url);
    for p in &params {
        if p.key.chars().any(char::is_control) {
            let key = p.raw.split('=').next().unwrap_or("");
            return Err(format!("source.url: a control character in the name of a setting ({key}=)"));
        }
        if p.key == "password" || p.key == "sslpassword" {
            return Err(format!("source.url: passwords are not read from the config file ({}=); {USE}", p.key));
        }
        if p.key == "sslmode" && !SSL_MODES.contains(&p.value.as_str()) {
            return Err(format!(
                "source.url: sslmode={:?} is not one chat-notifier knows: give {}",
                p.value,
                SSL_MODES.join(", ")
            ));
        }
    }
    let value = |key: &str| params.iter().rev().find(|p| p.key == key).map(|p| p.value.as_str());
    // libpq's rule: the system's roots prove a certificate only together with its name.
    if value("sslrootcert") == Some("system") && value("sslmode").is_some_and(|m| m != "verify-full") {
        return Err("source.url: sslrootcert=system needs sslmode=verify-full (or no sslmode)".into());
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

fn thirty_minutes() -> Span {
    Span(TimeDelta::minutes(30))
}
fn one_day() -> Span {
    Span(TimeDelta::hours(24))
}
fn thirty_seconds() -> Span {
    Span(TimeDelta::seconds(30))
}

fn utc() -> Tz {
    Tz::UTC
}
fn five() -> u32 {
    5
}

/// The same file, whether or not the paths are written alike; lexically when neither exists yet.
fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The config file to use: the one named, else ./notifier.toml, else
/// $XDG_CONFIG_HOME/chat-notifier/notifier.toml (~/.config when unset).
pub fn locate(named: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = named {
        return Ok(path.to_owned());
    }
    let local = PathBuf::from("notifier.toml");
    if local.is_file() {
        return Ok(local);
    }
    let config_home = env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| Path::new(&home).join(".config")));
    match config_home.map(|dir| dir.join("chat-notifier").join("notifier.toml")) {
        Some(path) if path.is_file() => Ok(path),
        Some(path) => bail!("no config file: neither ./notifier.toml nor {} exists (see --config)", path.display()),
        None => bail!("no config file: ./notifier.toml does not exist (see --config)"),
    }
}

pub fn load(path: &Path) -> Result<Config> {
    let text = fs::read_to_string(path).with_context(|| format!("reading config {}", path.display()))?;
    let mut config = parse(&text).map_err(|e| anyhow!("config {}: {e}", path.display()))?;
    // Relative paths are relative to the config file, not to wherever cron starts us.
    let base = path.parent().unwrap_or(Path::new(""));
    config.resolve_paths(base);
    config.validate().map_err(|e| anyhow!("config {}: {e}", path.display()))?;
    Ok(config)
}

/// Parses and type-checks; the error says `line N, key.path: what is wrong` on one line.
fn parse(text: &str) -> Result<Config, String> {
    let deserializer = toml::Deserializer::parse(text).map_err(|e| describe(text, "", &e))?;
    let mut config: Config = serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = e.path().to_string();
        describe(text, &key, e.inner())
    })?;
    // `export = PATH` is `[source] kind = "export", url = PATH`: every config written before
    // sources existed stays valid.
    match (config.export.take(), &config.source) {
        (Some(_), Some(_)) => return Err("export and [source]: give one of them, not both".into()),
        (Some(path), None) => config.source = Some(SourceConfig::export_file(&path)),
        (None, _) => {}
    }
    // Before a relative path is resolved: what is no URL read here must not become a file name
    // that errors would print in full.
    if let Some(source) = &config.source {
        validate_url_form(&source.url)?;
    }
    Ok(config)
}

fn describe(text: &str, key: &str, e: &toml::de::Error) -> String {
    let mut out = String::new();
    if let Some(span) = e.span() {
        let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
        out.push_str(&format!("line {line}, "));
    }
    if !key.is_empty() && key != "." {
        out.push_str(key);
        out.push_str(": ");
    }
    out.push_str(e.message().trim());
    out
}

impl Config {
    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(source) = &mut self.source {
            if let Location::Sqlite(path) = source.location()
                && path.is_relative()
            {
                source.url = base.join(path).display().to_string();
            }
            if let Some(p) = &mut source.password_file {
                resolve(p);
            }
        }
        resolve(&mut self.state);
        if let Some(t) = &mut self.templates {
            resolve(t);
        }
        for bot in &mut self.bots {
            if let Some(t) = &mut bot.templates {
                resolve(t);
            }
        }
        match &mut self.transport {
            Transport::Folder { path, .. } => resolve(path),
            Transport::Smtp(smtp) => {
                if let Some(p) = &mut smtp.password_file {
                    resolve(p);
                }
            }
            Transport::Sendmail { .. } => {}
        }
    }

    fn validate(&self) -> Result<(), String> {
        if self.mail.to.is_empty() {
            return Err("mail.to: at least one recipient is needed".into());
        }
        let Some(source) = &self.source else {
            return Err("source: where are the chats? give `export = PATH` or a [source] table".into());
        };
        source.validate()?;
        if let Location::Sqlite(path) = source.location()
            && same_file(&self.state, &path)
        {
            return Err(format!(
                "state: {} is the source; the state is chat-notifier's own file and must be another one",
                self.state.display()
            ));
        }
        // Addresses are stored in the outbox as text and read back before sending.
        let addresses = [
            ("mail.from", std::slice::from_ref(&self.mail.from)),
            ("mail.to", &self.mail.to[..]),
            ("mail.cc", &self.mail.cc[..]),
        ];
        let bots = self.bots.iter().enumerate().flat_map(|(i, b)| {
            [("to", b.to.as_deref()), ("cc", b.cc.as_deref())].map(move |(k, list)| (i, k, list.unwrap_or_default()))
        });
        for (key, list) in addresses
            .into_iter()
            .map(|(k, l)| (k.to_owned(), l))
            .chain(bots.map(|(i, k, l)| (format!("bots[{i}].{k}"), l)))
        {
            if let Some(bad) = list.iter().find(|m| !crate::domain::round_trips(m)) {
                return Err(format!("{key}: {bad} cannot be written in a header and read back; use a plain address"));
            }
        }
        for (key, n) in [
            ("mail.transcript_messages", self.mail.transcript_messages),
            ("mail.message_chars", self.mail.message_chars),
            ("mail.transcript_bytes", self.mail.transcript_bytes),
            ("mail.max_per_hour", self.mail.max_per_hour.map(|n| n as usize)),
            ("mail.max_per_day", self.mail.max_per_day.map(|n| n as usize)),
            ("mail.burst", Some(self.mail.burst as usize)),
        ] {
            if n == Some(0) {
                return Err(format!("{key}: must be at least 1"));
            }
        }
        if self.max_attempts == 0 {
            return Err("max_attempts: must be at least 1".into());
        }
        if let Some(domain) = &self.mail.message_id_domain
            && (domain.is_empty() || !domain.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-')))
        {
            return Err(format!("mail.message_id_domain: {domain:?} is not a domain name"));
        }
        if let Some(dir) = &self.templates
            && !dir.is_dir()
        {
            return Err(format!("templates: {} is not a folder", dir.display()));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, bot) in self.bots.iter().enumerate() {
            let key = |k: &str| format!("bots[{i}] (id = {:?}).{k}", bot.id);
            if !seen.insert(&bot.id) {
                return Err(format!("{}: a second entry for the same bot", key("id")));
            }
            if bot.to.as_ref().is_some_and(Vec::is_empty) {
                return Err(format!("{}: at least one recipient is needed", key("to")));
            }
            if let Some(dir) = &bot.templates
                && !dir.is_dir()
            {
                return Err(format!("{}: {} is not a folder", key("templates"), dir.display()));
            }
            if !bot.fields.is_empty() && source.kind != SourceKind::Typebot {
                return Err(format!("{}: only a Typebot source maps fields", key("fields")));
            }
            validate_fields(&key("fields"), &bot.fields)?;
        }
        Ok(())
    }

    pub fn message_id_domain(&self) -> String {
        self.mail.message_id_domain.clone().unwrap_or_else(|| self.mail.from.email.domain().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
export = "export.sqlite"
state = "state.sqlite"
[mail]
from = "Notifier <n@example.com>"
to = ["owner@example.com"]
[transport]
kind = "folder"
path = "outbox"
"#;

    fn error_of(text: &str) -> String {
        let err = parse(text).and_then(|c| c.validate().map(|_| c)).expect_err("config should be rejected");
        assert!(!err.contains('\n'), "one line: {err}");
        err
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.abandon_after, Span(TimeDelta::minutes(30)));
        assert_eq!(c.first_run_horizon, Span(TimeDelta::hours(24)));
        assert_eq!(c.time_zone, Tz::UTC);
        assert_eq!(c.max_attempts, 5);
        assert_eq!(c.message_id_domain(), "example.com");
        assert!(matches!(c.transport, Transport::Folder { .. }));
        assert_eq!((c.mail.burst, c.alert_if_silent, &c.notify.digest), (50, None, &None));
    }

    #[test]
    fn the_inbox_settings_resolve_per_bot() {
        let text = format!(
            "{}\n[notify]\ndigest = {{ unless_fields = [\"email\"], at = \"08:30\" }}\n\
             [[bots]]\nid = \"busy\"\nalert_if_silent = \"2h\"\n[bots.notify]\ndigest = {{ states = [], at = \"08:00\" }}\n",
            MINIMAL.replace("[mail]", "alert_if_silent = \"6h\"\n[mail]")
        );
        let routing = super::Routing::new(&parse(&text).unwrap());
        let (default, busy) = (routing.for_bot("other"), routing.for_bot("busy"));
        assert_eq!(
            (default.alert_if_silent, busy.alert_if_silent),
            (Some(TimeDelta::hours(6)), Some(TimeDelta::hours(2)))
        );
        let digest = default.notify.digest.as_ref().unwrap();
        assert_eq!(
            (digest.states.as_slice(), digest.at.to_string().as_str()),
            (&[ChatState::Abandoned][..], "08:30:00")
        );
        assert!(busy.notify.digest.as_ref().unwrap().states.is_empty(), "a bot turns the digest off");
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (MINIMAL.replace("state =", "colour = \"red\"\nstate ="), "colour"),
            (MINIMAL.replace("to = [\"owner@example.com\"]", "to = [\"not an address\"]"), "mail.to"),
            (MINIMAL.replace("[mail]", "abandon_after = \"soon\"\n[mail]"), "abandon_after"),
            (MINIMAL.replace("[mail]", "abandon_after = 30\n[mail]"), "abandon_after"),
            (MINIMAL.replace("[mail]", "time_zone = \"Mars/Olympus\"\n[mail]"), "time_zone"),
            (MINIMAL.replace("[mail]", "max_attempts = 0\n[mail]"), "max_attempts"),
            (MINIMAL.replace("to = [\"owner@example.com\"]", "to = []"), "mail.to"),
            (MINIMAL.replace("kind = \"folder\"", "kind = \"pigeon\""), "pigeon"),
            (MINIMAL.replace("path = \"outbox\"", "path = \"outbox\"\nhost = \"x\""), "host"),
            (MINIMAL.replace("path = \"outbox\"", ""), "path"),
            (MINIMAL.replace("path = \"outbox\"", "path = 3"), "transport.path"),
            (MINIMAL.replace("export = \"export.sqlite\"\n", ""), "export"),
            (MINIMAL.replace("[mail]", "alert_if_silent = \"soon\"\n[mail]"), "alert_if_silent"),
            (MINIMAL.replace("[mail]\n", "[mail]\nburst = 0\n"), "mail.burst: must be at least 1"),
            (
                format!("{MINIMAL}\n[notify]\ndigest = {{ at = \"8am\" }}\n"),
                "notify.digest.at: \"8am\" is not a time of day like \"08:00\"",
            ),
            (format!("{MINIMAL}\n[notify]\ndigest = {{ at = \"08:00\", every = \"day\" }}\n"), "every"),
        ];
        for (text, key) in cases {
            let err = error_of(&text);
            assert!(err.contains(key), "error {err:?} should name {key:?}");
        }
    }

    /// What `source.url` may be, and what is refused before it is read as a path.
    #[test]
    fn url_forms() {
        for url in [
            "r.db",
            "/var/lib/rasa/rasa.db",
            "sqlite://rasa.db",
            "sqlite:///var/lib/rasa/rasa.db",
            "data/x=y.db",
            "/srv/bots@2026/a b.db",
            "postgresql://bot@db/rasa?sslmode=require",
            "postgres://db/rasa",
        ] {
            assert_eq!(validate_url_form(url), Ok(()), "{url}");
        }
        for (url, why) in [
            ("host=db dbname=rasa", "libpq's key=value form"),
            ("dbname=rasa", "libpq's key=value form"),
            ("rasa.db Password=x", "libpq's key=value form"),
            ("host = db  password = x", "libpq's key=value form"),
            ("dbname='my db' sslmode=require", "libpq's key=value form"),
            ("mysql://u:x@h/db", "mysql:// is not a URL chat-notifier reads"),
            ("POSTGRESQL://db/x", "POSTGRESQL:// is not a URL"),
            ("jdbc:postgresql://u:x@h/db", "source.url: not a URL chat-notifier reads"),
            ("sqlite://u:x@/tmp/x.db", "no user, password or host"),
            ("sqlite://u@x.db", "no user, password or host"),
            ("sqlite:///tmp/x.db?password=x", "no query"),
            ("/tmp/x\n.db", "a control character"),
        ] {
            let err = validate_url_form(url).unwrap_err();
            assert!(err.contains(why) && !err.contains(":x@") && !err.contains("=x"), "{url}: {err}");
        }
        let err = validate_postgres_url("postgresql://db/x?password%00=s3cret").unwrap_err();
        assert_eq!(err, "source.url: a control character in the name of a setting (password%00=)");
    }

    #[test]
    fn smtp_rules() {
        let smtp = |extra: &str| {
            MINIMAL.replace(
                "kind = \"folder\"\npath = \"outbox\"",
                &format!("kind = \"smtp\"\nhost = \"mail.example.com\"\n{extra}"),
            )
        };
        let c = parse(&smtp("")).unwrap();
        let Transport::Smtp(s) = &c.transport else { panic!() };
        assert_eq!((s.security, s.port(), s.accept_invalid_certs), (Security::Starttls, 587, false));
        let password = error_of(&smtp("username = \"u\"\npassword = \"hunter2\""));
        assert!(password.contains("transport: password"), "{password}");
        assert!(!password.contains("hunter2"), "{password}");
        assert!(error_of(&smtp("password_env = \"P\"")).contains("transport: username"));
        assert!(error_of(&smtp("port = \"x\"")).contains("transport.port"));
        let line = error_of(&smtp("security = \"ssl\""));
        assert!(line.starts_with("line 10, transport.security: "), "{line}");
    }

    #[test]
    fn sources() {
        let with_source = |table: &str| {
            MINIMAL.replace("export = \"export.sqlite\"\n", "").replace("[mail]", &format!("[source]\n{table}\n[mail]"))
        };
        let c = parse(MINIMAL).unwrap();
        let source = c.source.as_ref().unwrap();
        assert_eq!((source.kind, source.location()), (SourceKind::Export, Location::Sqlite("export.sqlite".into())));
        let c = parse(&with_source("kind = \"rasa\"\nurl = \"sqlite:///var/lib/rasa/rasa.db\"")).unwrap();
        assert_eq!(c.source.as_ref().unwrap().location(), Location::Sqlite("/var/lib/rasa/rasa.db".into()));
        let pg = "postgresql://bot@db.example.com:5432/rasa?sslmode=require";
        let c = parse(&with_source(&format!("kind = \"rasa\"\nurl = \"{pg}\"\npassword_env = \"P\""))).unwrap();
        assert_eq!(c.source.as_ref().unwrap().location(), Location::Postgres(pg.into()));
        // An @ past the user's is no credentials' end: the connection reads it as written.
        for pg in [
            "postgresql://bot@db/rasa?application_name=me@work&sslmode=verify-full&sslrootcert=%2Fca.pem",
            "postgresql://db/rasa?sslrootcert=system",
        ] {
            parse(&with_source(&format!("kind = \"rasa\"\nurl = \"{pg}\""))).unwrap();
        }
        let cases = [
            (MINIMAL.replace("[mail]", "[source]\nkind = \"rasa\"\nurl = \"r.db\"\n[mail]"), "export and [source]"),
            (MINIMAL.replace("export = \"export.sqlite\"\n", ""), "source: where are the chats?"),
            (with_source("kind = \"chatwoot\"\nurl = \"x\""), "source.kind"),
            (
                with_source("kind = \"rasa\"\nurl = \"postgresql://bot:hunter2@db/rasa\""),
                "source.url: passwords are not read",
            ),
            (
                with_source(
                    "kind = \"rasa\"\nurl = \"postgresql://bot@db/rasa?sslmode=require&Password=x&password=x\"",
                ),
                "source.url: passwords are not read from the config file (password=)",
            ),
            (
                with_source("kind = \"rasa\"\nurl = \"postgresql://bot@db/rasa?sslpassword=x\""),
                "source.url: passwords are not read from the config file (sslpassword=)",
            ),
            (
                with_source("kind = \"rasa\"\nurl = \"postgresql://db/rasa?application_name=a:x@b\""),
                "source.url: an @ after the host",
            ),
            (with_source("kind = \"rasa\"\nurl = \"postgresql://db/rasa?sslmode=allow\""), "sslmode=\"allow\" is not"),
            (
                with_source("kind = \"rasa\"\nurl = \"postgresql://db/rasa?sslrootcert=system&sslmode=require\""),
                "sslrootcert=system needs sslmode=verify-full",
            ),
            (
                with_source("kind = \"export\"\nurl = \"e.db\"\ncomplete_on_actions = [\"x\"]"),
                "source.complete_on_actions",
            ),
            (
                with_source("kind = \"typebot\"\nurl = \"postgresql://db/t\"\ncomplete_on_flows = [\"x\"]"),
                "source.complete_on_flows: does not apply to kind = \"typebot\"",
            ),
            (with_source("kind = \"rasa\"\nurl = \"\""), "source.url: empty"),
            (with_source("kind = \"typebot\"\nurl = \"typebot.db\""), "Typebot keeps its chats in PostgreSQL"),
            (with_source("kind = \"rasa\"\nurl = \"r.db\"\nfields = { email = \"E\" }"), "source.fields: does not"),
            (
                with_source("kind = \"typebot\"\nurl = \"postgresql://db/t\"\nfields = { company = \"C\" }"),
                "source.fields.company: not a field chat-notifier reads",
            ),
            (
                with_source("kind = \"typebot\"\nurl = \"postgresql://db/t\"\nfields = { email = \" \" }"),
                "source.fields.email: empty",
            ),
            (
                format!("{}\n[[bots]]\nid = \"lead\"\nfields = {{ email = \"E\" }}\n", MINIMAL),
                "bots[0] (id = \"lead\").fields: only a Typebot source maps fields",
            ),
        ];
        for (text, key) in cases {
            let err = error_of(&text);
            assert!(err.contains(key), "error {err:?} should say {key:?}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }
}
