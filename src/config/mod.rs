//! The TOML config: parsed and validated once at start, so everything after works on values
//! known to be good. Every error names the file and the key.

mod destination;
mod error;
mod mail;
mod notify;
mod placeholder;
mod routing;
mod source;
mod transport;

pub use destination::{DestinationConfig, DestinationKind};
pub use error::ConfigError;
pub use mail::{DEFAULT_BURST, DEFAULT_SUBJECT, Mail};
pub use notify::{Bot, DigestRule, Notify, NotifyPatch};
pub use placeholder::Placeholders;
pub use routing::{Routing, Settings};
pub use source::{
    DIFY_INVOKE_FROM, DIFY_LATE_WRITES, DIFY_VISITORS, FLOWISE_CHAT_TYPES, Location, MAPPED_FIELDS, SSL_MODES,
    SourceConfig, SourceKind, UrlParam, url_params,
};
use source::{validate_fields, validate_url_form};
pub use transport::{Security, Smtp, Transport, is_loopback, is_loopback_ip};

use std::path::{Path, PathBuf};
use std::{env, fs};

use anyhow::{Context, Result, anyhow, bail};
use chrono::TimeDelta;
use chrono_tz::Tz;
use serde::Deserialize;

use crate::domain::Span;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Shorthand for `[source] kind = "export"` on a SQLite file.
    pub export: Option<PathBuf>,
    /// Where the chats are: the bot runtime's store, read only.
    pub source: Option<SourceConfig>,
    /// The notifier's own state: a SQLite file (the default), or a PostgreSQL database
    /// (`postgresql://user@host/db`), which several hosts may share (`state_at`).
    pub state: PathBuf,
    /// Where a PostgreSQL state's password is: never in the config file (nor the URL), as for
    /// `[source]`.
    pub state_password_env: Option<String>,
    pub state_password_file: Option<PathBuf>,
    /// How long a PostgreSQL state's run lease lasts unless the run renews it (every third of
    /// it): a host that dies mid-run is replaced this long after its last renewal.
    pub state_lease: Option<Span>,
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
    /// Where notifications go beside email: signed webhooks, Slack channels.
    #[serde(default)]
    pub destinations: Vec<DestinationConfig>,
    /// How `chat-notifier watch` paces itself; `run` reads none of it.
    #[serde(default)]
    pub watch: Watch,
}

/// `[watch]`: the long-lived watcher's pacing.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Watch {
    /// How often the source is read when nothing wakes the watcher sooner: a PostgreSQL
    /// source's latency; for a SQLite file, watched for writes, a backstop.
    #[serde(default = "five_seconds")]
    pub interval: Span,
    /// The longest wait between two tries while something fails (the source, the state, the
    /// SMTP server): the waits double from a second up to this.
    #[serde(default = "five_minutes")]
    pub retry_max: Span,
}

impl Default for Watch {
    fn default() -> Self {
        Watch { interval: five_seconds(), retry_max: five_minutes() }
    }
}

fn five_seconds() -> Span {
    Span(TimeDelta::seconds(5))
}
fn five_minutes() -> Span {
    Span(TimeDelta::minutes(5))
}

/// A PostgreSQL URL given on the command line (`state copy --to`), checked as `state` is.
pub fn validate_state_url(url: &str) -> Result<(), ConfigError> {
    if !(url.starts_with("postgresql://") || url.starts_with("postgres://")) {
        return Err(ConfigError::new("--to", "a PostgreSQL URL: postgresql://user@host/db"));
    }
    source::validate_postgres_url_of("--to", "--password-env or --password-file", url)
}

/// A password from an environment variable or the first line of a file; `table` names the
/// config table in errors.
fn secret(table: &str, var: Option<&str>, file: Option<&Path>) -> Result<Option<String>> {
    read_secret(&format!("{table}.password_env"), &format!("{table}.password_file"), var, file)
}

/// A password from an environment variable or the first line of a file, errors naming the keys
/// that point there.
pub(crate) fn read_secret(
    env_key: &str,
    file_key: &str,
    var: Option<&str>,
    file: Option<&Path>,
) -> Result<Option<String>> {
    if let Some(var) = var {
        let value = env::var(var).with_context(|| format!("{env_key}: environment variable {var} is not set"))?;
        return Ok(Some(value));
    }
    if let Some(path) = file {
        let text = fs::read_to_string(path).with_context(|| format!("{file_key}: reading {}", path.display()))?;
        return Ok(Some(text.lines().next().unwrap_or("").to_owned()));
    }
    Ok(None)
}

fn thirty_minutes() -> Span {
    Span(TimeDelta::minutes(30))
}
fn one_day() -> Span {
    Span(TimeDelta::hours(24))
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
fn parse(text: &str) -> Result<Config, ConfigError> {
    let deserializer = toml::Deserializer::parse(text).map_err(|e| describe(text, "", &e))?;
    let mut config: Config = serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = e.path().to_string();
        describe(text, &key, e.inner())
    })?;
    // `export = PATH` is `[source] kind = "export", url = PATH`: every config written before
    // sources existed stays valid.
    match (config.export.take(), &config.source) {
        (Some(_), Some(_)) => return Err(ConfigError::new("export and [source]", "give one of them, not both")),
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

fn describe(text: &str, key: &str, e: &toml::de::Error) -> ConfigError {
    let line = e.span().map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
    let key = if key == "." { "" } else { key };
    ConfigError { key: key.to_owned(), line, problem: e.message().trim().to_owned() }
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
        if self.state_url().is_none() {
            resolve(&mut self.state);
        }
        if let Some(p) = &mut self.state_password_file {
            resolve(p);
        }
        if let Some(t) = &mut self.templates {
            resolve(t);
        }
        for bot in &mut self.bots {
            if let Some(t) = &mut bot.templates {
                resolve(t);
            }
        }
        for destination in &mut self.destinations {
            destination.resolve_paths(base);
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

    fn validate(&self) -> Result<(), ConfigError> {
        if self.mail.to.is_empty() {
            return Err(ConfigError::new("mail.to", "at least one recipient is needed"));
        }
        let Some(source) = &self.source else {
            return Err(ConfigError::new("source", "where are the chats? give `export = PATH` or a [source] table"));
        };
        source.validate()?;
        match self.state_url() {
            Some(url) => source::validate_postgres_url_of("state", "state_password_env or state_password_file", url)?,
            None if self.state_password_env.is_some() || self.state_password_file.is_some() => {
                let key = if self.state_password_env.is_some() { "state_password_env" } else { "state_password_file" };
                return Err(ConfigError::new(
                    key,
                    "only a PostgreSQL state (state = \"postgresql://...\") has a password",
                ));
            }
            None => {}
        }
        if let Some(lease) = self.state_lease {
            if self.state_url().is_none() {
                return Err(ConfigError::new("state_lease", "only a PostgreSQL state has a run lease"));
            }
            if lease.0 < TimeDelta::seconds(3) {
                return Err(ConfigError::new("state_lease", "at least 3s (it is renewed every third of it)"));
            }
        }
        if self.state_password_env.is_some() && self.state_password_file.is_some() {
            return Err(ConfigError::new("state_password_env and state_password_file", "give one, not both"));
        }
        if source.kind == SourceKind::Dify {
            // A chat is judged once quiet: a reply still being written must be written by then.
            let late = source.late_writes.map_or(source::DIFY_LATE_WRITES, |s| s.0);
            let shown = |t: TimeDelta| match t.num_seconds() {
                n if n % 60 == 0 => format!("{}m", n / 60),
                n => format!("{n}s"),
            };
            let quiet =
                self.bots.iter().filter_map(|b| b.abandon_after).map(|s| s.0).chain([self.abandon_after.0]).min();
            if let Some(quiet) = quiet.filter(|q| late >= *q) {
                return Err(ConfigError::new(
                    "source.late_writes",
                    format!(
                        "{} is not shorter than abandon_after ({}): a chat is judged once quiet, and an answer Dify is \
                         still writing must be written by then",
                        shown(late),
                        shown(quiet)
                    ),
                ));
            }
        }
        if let Location::Sqlite(path) = source.location()
            && self.state_url().is_none()
            && same_file(&self.state, &path)
        {
            return Err(ConfigError::new(
                "state",
                format!(
                    "{} is the source; the state is chat-notifier's own file and must be another one",
                    self.state.display()
                ),
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
                return Err(ConfigError::new(
                    key.clone(),
                    format!("{bad} cannot be written in a header and read back; use a plain address"),
                ));
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
                return Err(ConfigError::new(key, "must be at least 1"));
            }
        }
        if self.max_attempts == 0 {
            return Err(ConfigError::new("max_attempts", "must be at least 1"));
        }
        if let Some(domain) = &self.mail.message_id_domain
            && (domain.is_empty() || !domain.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-')))
        {
            return Err(ConfigError::new("mail.message_id_domain", format!("{domain:?} is not a domain name")));
        }
        if let Some(dir) = &self.templates
            && !dir.is_dir()
        {
            return Err(ConfigError::new("templates", format!("{} is not a folder", dir.display())));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, bot) in self.bots.iter().enumerate() {
            let key = |k: &str| format!("bots[{i}] (id = {:?}).{k}", bot.id);
            if !seen.insert(&bot.id) {
                return Err(ConfigError::new(key("id"), "a second entry for the same bot"));
            }
            if bot.to.as_ref().is_some_and(Vec::is_empty) {
                return Err(ConfigError::new(key("to"), "at least one recipient is needed"));
            }
            if let Some(dir) = &bot.templates
                && !dir.is_dir()
            {
                return Err(ConfigError::new(key("templates"), format!("{} is not a folder", dir.display())));
            }
            if !bot.fields.is_empty() && !matches!(source.kind, SourceKind::Typebot | SourceKind::Dify) {
                return Err(ConfigError::new(key("fields"), "only a Typebot or Dify source maps fields"));
            }
            validate_fields(&key("fields"), &bot.fields)?;
            if bot.complete_on_tools.is_some() && source.kind != SourceKind::Flowise {
                return Err(ConfigError::new(key("complete_on_tools"), "only a Flowise source reads it"));
            }
            if bot.complete_on_phrases.is_some() && !matches!(source.kind, SourceKind::Flowise | SourceKind::Dify) {
                return Err(ConfigError::new(key("complete_on_phrases"), "only a Flowise or Dify source reads it"));
            }
            let none = Vec::new();
            source::validate_completions(
                &format!("bots[{i}] (id = {:?})", bot.id),
                bot.complete_on_tools.as_ref().unwrap_or(&none),
                bot.complete_on_phrases.as_ref().unwrap_or(&none),
            )?;
        }
        let mut names = std::collections::HashSet::new();
        for (i, destination) in self.destinations.iter().enumerate() {
            destination.validate(i, &mut names)?;
        }
        Ok(())
    }

    /// A fingerprint of the settings that decide which emails go, to whom and how they read:
    /// the rules (`Routing::fingerprint`), the mail settings and addresses, the notify
    /// defaults, every bot's settings, the timings, and the templates' contents. Hosts sharing a
    /// state should agree on it (`pipeline` says so in one line when they do not).
    pub fn settings_fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(Routing::new(self).fingerprint());
        h.update(format!(
            "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{}|{}",
            self.mail,
            self.notify,
            self.bots,
            self.abandon_after.0,
            self.alert_if_silent.map(|s| s.0),
            self.first_run_horizon.0,
            self.time_zone,
            self.max_attempts
        ));
        let dirs = self.templates.iter().chain(self.bots.iter().filter_map(|b| b.templates.as_ref()));
        for dir in dirs {
            let mut files: Vec<PathBuf> =
                fs::read_dir(dir).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
            files.sort();
            for file in files {
                h.update(file.file_name().map(|n| n.as_encoded_bytes().to_vec()).unwrap_or_default());
                h.update(fs::read(&file).unwrap_or_default());
            }
        }
        h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
    }

    /// The state's PostgreSQL URL, when the state is on PostgreSQL.
    pub fn state_url(&self) -> Option<&str> {
        let s = self.state.to_str()?.trim();
        (s.starts_with("postgresql://") || s.starts_with("postgres://")).then_some(s)
    }

    pub fn message_id_domain(&self) -> String {
        self.mail.message_id_domain.clone().unwrap_or_else(|| self.mail.from.email.domain().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ChatState;

    /// The least config there is; other modules' tests start from it too.
    pub(super) const MINIMAL: &str = r#"
export = "export.sqlite"
state = "state.sqlite"
[mail]
from = "Notifier <n@example.com>"
to = ["owner@example.com"]
[transport]
kind = "folder"
path = "outbox"
"#;

    /// The error a config gets, as a value; its one line checked to be one.
    fn rejected(text: &str) -> ConfigError {
        let err = parse(text).and_then(|c| c.validate().map(|_| c)).expect_err("config should be rejected");
        assert!(!err.to_string().contains('\n'), "one line: {err}");
        err
    }

    /// The one line an owner reads.
    fn error_of(text: &str) -> String {
        rejected(text).to_string()
    }

    /// A state on PostgreSQL: the URL kept as written (not made a path beside the config), its
    /// password never in the file, and the keys only a PostgreSQL state has refused on a file.
    #[test]
    fn a_state_on_postgres() {
        let on = |state: &str, extra: &str| {
            MINIMAL.replace("state = \"state.sqlite\"", &format!("state = \"{state}\"\n{extra}"))
        };
        let url = "postgresql://notifier@db.example.com/notifier?sslmode=verify-full";
        let mut c = parse(&on(url, "state_password_env = \"P\"\nstate_lease = \"30s\"")).unwrap();
        c.resolve_paths(Path::new("/etc/chat-notifier"));
        c.validate().unwrap();
        assert_eq!(c.state_url(), Some(url));
        let secret = error_of(&on("postgresql://notifier:hunter2@db/notifier", ""));
        assert!(secret.contains("state: passwords are not read from the config file"), "{secret}");
        assert!(
            secret.contains("state_password_env or state_password_file") && !secret.contains("hunter2"),
            "{secret}"
        );
        for (extra, key) in [
            ("state_password_env = \"P\"", "state_password_env"),
            ("state_password_file = \"pw\"", "state_password_file"),
            ("state_lease = \"60s\"", "state_lease"),
        ] {
            assert_eq!(rejected(&on("state.sqlite", extra)).key, key);
        }
        assert_eq!(rejected(&on(url, "state_lease = \"1s\"")).key, "state_lease");
        let both = on(url, "state_password_env = \"P\"\nstate_password_file = \"pw\"");
        assert_eq!(rejected(&both).key, "state_password_env and state_password_file");
    }

    /// A state URL's settings are judged as the state's: a password or an odd sslmode in its query
    /// names `state`, not the source's key (the hostile tester saw `source.url` with no source URL).
    #[test]
    fn a_state_urls_settings_are_named_as_the_state() {
        let on = |url: &str| MINIMAL.replace("state = \"state.sqlite\"", &format!("state = \"{url}\""));
        for query in ["password=hunter2", "sslmode=sometimes"] {
            let e = rejected(&on(&format!("postgresql://notifier@db/notifier?{query}")));
            assert_eq!(e.key, "state", "{e:?}");
        }
    }

    /// Errors are values: a test asks which key and what problem, and where the file says, the
    /// line; the line an owner reads is rendered from them.
    #[test]
    fn errors_name_the_key_the_line_and_the_problem() {
        let at = |e: ConfigError| (e.line, e.key, e.problem);
        assert_eq!(
            at(rejected(&MINIMAL.replace("[mail]\n", "[mail]\nburst = 0\n"))),
            (None, "mail.burst".to_owned(), "must be at least 1".to_owned())
        );
        let security = rejected(
            &MINIMAL
                .replace("kind = \"folder\"\npath = \"outbox\"", "kind = \"smtp\"\nhost = \"h\"\nsecurity = \"ssl\""),
        );
        assert_eq!((security.key.as_str(), security.line.is_some()), ("transport.security", true));
        assert!(security.problem.starts_with("unknown variant `ssl`"), "{}", security.problem);
        assert_eq!(
            security.to_string(),
            format!("line {}, transport.security: {}", security.line.unwrap(), security.problem)
        );
        let bot = rejected(&format!("{MINIMAL}\n[[bots]]\nid = \"lead\"\nto = []\n"));
        assert_eq!(
            (bot.key.as_str(), bot.problem.as_str()),
            ("bots[0] (id = \"lead\").to", "at least one recipient is needed")
        );
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
    fn the_watchers_pacing_has_defaults_and_is_checked() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!((c.watch.interval, c.watch.retry_max), (Span(TimeDelta::seconds(5)), Span(TimeDelta::minutes(5))));
        let c = parse(&format!("{MINIMAL}[watch]\ninterval = \"2s\"\nretry_max = \"1m\"\n")).unwrap();
        assert_eq!((c.watch.interval, c.watch.retry_max), (Span(TimeDelta::seconds(2)), Span(TimeDelta::minutes(1))));
        assert_eq!(rejected(&format!("{MINIMAL}[watch]\ninterval = \"0s\"\n")).key, "watch.interval");
        assert_eq!(rejected(&format!("{MINIMAL}[watch]\npoll = \"1s\"\n")).key, "watch.poll");
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
            let err = validate_url_form(url).unwrap_err().to_string();
            assert!(err.contains(why) && !err.contains(":x@") && !err.contains("=x"), "{url}: {err}");
        }
        let err = source::validate_postgres_url("postgresql://db/x?password%00=s3cret").unwrap_err();
        assert_eq!(
            (err.key.as_str(), err.problem.as_str()),
            ("source.url", "a control character in the name of a setting (password%00=)")
        );
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
                "bots[0] (id = \"lead\").fields: only a Typebot or Dify source maps fields",
            ),
        ];
        for (text, key) in cases {
            let err = error_of(&text);
            assert!(err.contains(key), "error {err:?} should say {key:?}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }
}
