//! `[[destinations]]`: where notifications go beside email (a signed webhook, a Slack channel),
//! each for every bot or for the bots it names. Secrets (the webhook's URL and signing secret,
//! Slack's token) are named here by where to read them, never written here.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;
use crate::domain::Span;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DestinationKind {
    Webhook,
    Slack,
    /// A Slack incoming webhook's URL: plain messages, no threads.
    #[serde(rename = "slack-webhook")]
    SlackWebhook,
    /// A Discord forum channel's webhook: a post per conversation, replies in it.
    Discord,
}

impl DestinationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DestinationKind::Webhook => "webhook",
            DestinationKind::Slack => "slack",
            DestinationKind::SlackWebhook => "slack-webhook",
            DestinationKind::Discord => "discord",
        }
    }
}

/// One `[[destinations]]` entry, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// How the state, `status` and the logs name it: `[a-z0-9_-]`, unique.
    pub name: String,
    pub kind: DestinationKind,
    /// The bots it is for (ids); none: every bot.
    pub bots: Option<Vec<String>>,
    /// Webhook, Slack incoming webhook, Discord: where the URL is (a catch hook's URL is a secret).
    pub url_env: Option<String>,
    pub url_file: Option<PathBuf>,
    /// Webhook: the signing secret.
    pub secret_env: Option<String>,
    pub secret_file: Option<PathBuf>,
    /// Slack: the bot token (`xoxb-...`).
    pub token_env: Option<String>,
    pub token_file: Option<PathBuf>,
    /// Slack: the channel's id (`C0123456789`) or name.
    pub channel: Option<String>,
    /// Slack: the Web API's base URL.
    pub api_url: Option<String>,
    /// Slack: a completion's reply is also posted to the channel.
    #[serde(default)]
    pub reply_broadcast: bool,
    /// The whole request's deadline (connect, TLS, send, answer).
    pub timeout: Option<Span>,
    /// Failures of its own before a notification is parked; the top-level `max_attempts` if none.
    pub max_attempts: Option<u32>,
    /// At most this many notifications an hour (a minute short, as `mail.max_per_hour`); what is
    /// over waits for later runs, in order.
    pub max_per_hour: Option<u32>,
    /// The flood guard, as `mail.burst` is the inbox's: more notifications about chats than this
    /// in one run, and the first `burst` go one by one, the rest in one summary notification.
    pub burst: Option<u32>,
    /// A chat its bot lists in the inbox's digest (`notify.digest`) comes here in one digest
    /// notification at the digest's time, not at once (the default: a CRM wants each lead now).
    #[serde(default)]
    pub digest: bool,
    /// Refused with a word of why: secrets never sit in the config file.
    url: Option<toml::Value>,
    secret: Option<toml::Value>,
    token: Option<toml::Value>,
}

impl DestinationConfig {
    pub fn timeout(&self) -> std::time::Duration {
        self.timeout.map_or(std::time::Duration::from_secs(30), |s| s.0.to_std().unwrap_or_default())
    }

    /// Whether notifications about `bot_id`'s chats go here.
    pub fn serves(&self, bot_id: &str) -> bool {
        self.bots.as_ref().is_none_or(|bots| bots.iter().any(|b| b == bot_id))
    }

    /// Its flood guard's burst: its own `burst`, else `mail.burst`'s default (not the inbox's
    /// setting: a Slack channel's or a CRM's tolerance is not the inbox's).
    pub fn burst(&self) -> u32 {
        self.burst.unwrap_or(super::DEFAULT_BURST)
    }

    pub fn api_url(&self) -> &str {
        self.api_url.as_deref().unwrap_or("https://slack.com/api")
    }

    pub(super) fn resolve_paths(&mut self, base: &Path) {
        for p in [&mut self.url_file, &mut self.secret_file, &mut self.token_file].into_iter().flatten() {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    pub(super) fn validate(&self, i: usize, names: &mut std::collections::HashSet<String>) -> Result<(), ConfigError> {
        let key = |k: &str| format!("destinations[{i}] (name = {:?}).{k}", self.name);
        let plain = !self.name.is_empty()
            && self.name.len() <= 40
            && self.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'));
        if !plain {
            return Err(ConfigError::new(key("name"), "1 to 40 of a-z, 0-9, _ and -"));
        }
        if !names.insert(self.name.clone()) {
            return Err(ConfigError::new(key("name"), "a second destination with the same name"));
        }
        for (k, given) in [("url", &self.url), ("secret", &self.secret), ("token", &self.token)] {
            if given.is_some() {
                return Err(ConfigError::new(
                    key(k),
                    format!("secrets are never written in the config file: give {k}_env or {k}_file"),
                ));
            }
        }
        let one_of = |k: &str, env: &Option<String>, file: &Option<PathBuf>| match (env, file) {
            (Some(_), Some(_)) => {
                Err(ConfigError::new(key(&format!("{k}_env")), format!("give {k}_env or {k}_file, not both")))
            }
            (None, None) => Err(ConfigError::new(
                key(&format!("{k}_env")),
                format!("a {} needs {k}_env or {k}_file", self.kind.as_str()),
            )),
            _ => Ok(()),
        };
        let none_of = |keys: &[(&str, bool)]| match keys.iter().find(|(_, given)| *given) {
            Some((k, _)) => Err(ConfigError::new(key(k), format!("not a key of a {}", self.kind.as_str()))),
            None => Ok(()),
        };
        match self.kind {
            DestinationKind::Webhook => {
                one_of("url", &self.url_env, &self.url_file)?;
                one_of("secret", &self.secret_env, &self.secret_file)?;
                none_of(&[
                    ("token_env", self.token_env.is_some()),
                    ("token_file", self.token_file.is_some()),
                    ("channel", self.channel.is_some()),
                    ("api_url", self.api_url.is_some()),
                    ("reply_broadcast", self.reply_broadcast),
                ])?;
            }
            DestinationKind::Slack => {
                one_of("token", &self.token_env, &self.token_file)?;
                if self.channel.as_deref().is_none_or(|c| c.trim().is_empty()) {
                    return Err(ConfigError::new(key("channel"), "a slack destination needs a channel"));
                }
                none_of(&[
                    ("url_env", self.url_env.is_some()),
                    ("url_file", self.url_file.is_some()),
                    ("secret_env", self.secret_env.is_some()),
                    ("secret_file", self.secret_file.is_some()),
                ])?;
            }
            DestinationKind::SlackWebhook | DestinationKind::Discord => {
                one_of("url", &self.url_env, &self.url_file)?;
                none_of(&[
                    ("secret_env", self.secret_env.is_some()),
                    ("secret_file", self.secret_file.is_some()),
                    ("token_env", self.token_env.is_some()),
                    ("token_file", self.token_file.is_some()),
                    ("channel", self.channel.is_some()),
                    ("api_url", self.api_url.is_some()),
                    ("reply_broadcast", self.reply_broadcast),
                ])?;
            }
        }
        for (k, n) in [("max_attempts", self.max_attempts), ("max_per_hour", self.max_per_hour), ("burst", self.burst)]
        {
            if n == Some(0) {
                return Err(ConfigError::new(key(k), "must be at least 1"));
            }
        }
        if self.timeout.is_some_and(|t| t.0 > chrono::TimeDelta::minutes(10)) {
            return Err(ConfigError::new(key("timeout"), "at most 10m: a run waits for it under its lock"));
        }
        if self.bots.as_ref().is_some_and(Vec::is_empty) {
            return Err(ConfigError::new(key("bots"), "name at least one bot, or leave the key out for every bot"));
        }
        Ok(())
    }

    /// A secret, from its environment variable or the first line of its file; the error names
    /// the key and the variable or file, never the value.
    pub fn secret(&self, what: &str) -> anyhow::Result<String> {
        let (env, file) = match what {
            "url" => (&self.url_env, &self.url_file),
            "secret" => (&self.secret_env, &self.secret_file),
            _ => (&self.token_env, &self.token_file),
        };
        let key = |k: &str| format!("destinations (name = {:?}).{what}_{k}", self.name);
        let value = if let Some(var) = env {
            std::env::var(var).map_err(|_| anyhow::anyhow!("{}: environment variable {var} is not set", key("env")))?
        } else if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("{}: reading {}: {e}", key("file"), path.display()))?;
            text.lines().next().unwrap_or("").to_owned()
        } else {
            anyhow::bail!("{}: not given", key("env"));
        };
        let value = value.trim().to_owned();
        if value.is_empty() {
            anyhow::bail!("{}: the {what} is empty", key(if env.is_some() { "env" } else { "file" }));
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::MINIMAL as BASE;

    fn problem(destination: &str) -> (String, String) {
        let text = format!("{BASE}\n[[destinations]]\n{destination}");
        let e = super::super::parse(&text).and_then(|c| c.validate().map(|_| c)).expect_err("refused");
        (e.key, e.problem)
    }

    #[test]
    fn destinations_are_checked_and_secrets_never_sit_in_the_file() {
        let hook = "name = \"crm\"\nkind = \"webhook\"\nurl_env = \"U\"\nsecret_env = \"S\"\n";
        assert!(super::super::parse(&format!("{BASE}\n[[destinations]]\n{hook}")).unwrap().validate().is_ok());
        let (key, why) = problem("name = \"crm\"\nkind = \"webhook\"\nurl = \"https://x.com/h\"\nsecret_env = \"S\"");
        assert_eq!(key, "destinations[0] (name = \"crm\").url");
        assert!(why.starts_with("secrets are never written in the config file"), "{why}");
        assert_eq!(
            problem("name = \"crm\"\nkind = \"webhook\"\nurl_env = \"U\"").1,
            "a webhook needs secret_env or secret_file"
        );
        assert_eq!(
            problem("name = \"Sales Team\"\nkind = \"slack\"\ntoken_env = \"T\"\nchannel = \"C1\"").1,
            "1 to 40 of a-z, 0-9, _ and -"
        );
        assert_eq!(
            problem("name = \"s\"\nkind = \"slack\"\ntoken_env = \"T\"").0,
            "destinations[0] (name = \"s\").channel"
        );
        assert_eq!(
            problem("name = \"s\"\nkind = \"slack\"\ntoken_env = \"T\"\nchannel = \"C1\"\nsecret_env = \"S\"").1,
            "not a key of a slack"
        );
        assert_eq!(
            problem("name = \"w\"\nkind = \"slack-webhook\"\nurl_env = \"U\"\nchannel = \"C1\"").1,
            "not a key of a slack-webhook"
        );
        let twice = format!("{hook}\n[[destinations]]\n{hook}");
        assert_eq!(problem(&twice).1, "a second destination with the same name");
    }
}
