//! The config resolved per bot: everything that shapes one bot's emails (recipients, zone,
//! timing, templates, rules), each bot's own settings falling back to the top level's. What the
//! pipeline, mail and the commands work on once the file is read.

use std::collections::HashMap;
use std::path::PathBuf;

use chrono::TimeDelta;
use chrono_tz::Tz;
use lettre::message::Mailbox;
use sha2::{Digest, Sha256};

use super::{Config, Notify};
use crate::domain::ChatState;

/// Everything that shapes one bot's emails.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Index among `Routing::all`: names this bot's subject template.
    pub index: usize,
    pub enabled: bool,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub abandon_after: TimeDelta,
    /// No message from the bot's chats for this long raises an alert.
    pub alert_if_silent: Option<TimeDelta>,
    pub time_zone: Tz,
    /// Index into `Routing::template_sets`.
    pub template_set: usize,
    pub notify: Notify,
}

#[derive(Debug)]
pub struct Routing {
    /// The defaults first, then one entry per `[[bots]]`.
    all: Vec<Settings>,
    by_bot: HashMap<String, usize>,
    /// Template folders in use: the top-level one (None: built in), then the bots' own.
    pub template_sets: Vec<Option<PathBuf>>,
}

impl Routing {
    pub fn new(config: &Config) -> Self {
        let mut template_sets = vec![config.templates.clone()];
        let mut all = vec![Settings {
            index: 0,
            enabled: true,
            to: config.mail.to.clone(),
            cc: config.mail.cc.clone(),
            abandon_after: config.abandon_after.0,
            alert_if_silent: config.alert_if_silent.map(|s| s.0),
            time_zone: config.time_zone,
            template_set: 0,
            notify: config.notify.clone(),
        }];
        let mut by_bot = HashMap::new();
        for bot in &config.bots {
            let template_set = match &bot.templates {
                None => 0,
                Some(dir) => template_sets.iter().position(|s| s.as_ref() == Some(dir)).unwrap_or_else(|| {
                    template_sets.push(Some(dir.clone()));
                    template_sets.len() - 1
                }),
            };
            let base = &all[0];
            let settings = Settings {
                index: all.len(),
                enabled: bot.enabled,
                to: bot.to.clone().unwrap_or_else(|| base.to.clone()),
                cc: bot.cc.clone().unwrap_or_else(|| base.cc.clone()),
                abandon_after: bot.abandon_after.map_or(base.abandon_after, |s| s.0),
                alert_if_silent: bot.alert_if_silent.map(|s| s.0).or(base.alert_if_silent),
                time_zone: bot.time_zone.unwrap_or(base.time_zone),
                template_set,
                notify: bot.notify.apply(&base.notify),
            };
            by_bot.insert(bot.id.clone(), all.len());
            all.push(settings);
        }
        Routing { all, by_bot, template_sets }
    }

    pub fn for_bot(&self, bot_id: &str) -> &Settings {
        &self.all[self.by_bot.get(bot_id).copied().unwrap_or(0)]
    }

    pub fn all(&self) -> &[Settings] {
        &self.all
    }

    /// Whether any bot has the silent-source alarm on: then each run learns which bot each new
    /// message is of.
    pub fn watches(&self) -> bool {
        self.all.iter().any(|s| s.enabled && s.alert_if_silent.is_some())
    }

    /// No conversation can be abandoned sooner than this.
    pub fn shortest_abandon_after(&self) -> TimeDelta {
        self.all.iter().filter(|s| s.enabled).map(|s| s.abandon_after).min().unwrap_or(self.all[0].abandon_after)
    }

    /// Changes when a rule that holds emails back changes (not when recipients or subjects do):
    /// conversations held back under the old rules are then looked at again.
    pub fn fingerprint(&self) -> String {
        let mut bots: Vec<_> = self.by_bot.iter().map(|(id, &i)| (id.as_str(), rules_of(&self.all[i]))).collect();
        bots.sort_by(|a, b| a.0.cmp(b.0));
        // JSON, not Debug: a stable format, so a new compiler never looks like a change of rules.
        let text = serde_json::json!({ "default": rules_of(&self.all[0]), "bots": bots }).to_string();
        Sha256::digest(text.as_bytes()).iter().take(16).map(|b| format!("{b:02x}")).collect()
    }
}

/// The parts of a bot's settings that hold emails back (not recipients or subjects).
fn rules_of(s: &Settings) -> serde_json::Value {
    let n = &s.notify;
    // `ended` came later, in the default set: written only where it is off, so that the rules
    // of every config from before it keep their fingerprint (no held chat reopened for it).
    let mut on: Vec<&str> = n.on.iter().filter(|&&s| s != ChatState::Ended).map(|s| s.as_str()).collect();
    on.sort();
    let mut rules = serde_json::json!({
        "enabled": s.enabled,
        "on": on,
        "require_fields": n.require_fields,
        "require_any_field": n.require_any_field,
        "min_visitor_messages": n.min_visitor_messages,
    });
    if !n.on.contains(&ChatState::Ended) {
        rules["ended_off"] = serde_json::Value::Bool(true);
    }
    rules
}
