//! Which emails, to whom: the owner's rules, resolved per bot from the config, and the verdict
//! on one conversation that reached a new state. Pure.

use std::collections::HashMap;
use std::path::PathBuf;

use chrono::TimeDelta;
use chrono_tz::Tz;
use lettre::message::Mailbox;
use sha2::{Digest, Sha256};

use crate::config::{Config, Notify};
use crate::domain::{ChatState, Message, Transcript};

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
    let mut on: Vec<&str> = n.on.iter().map(|s| s.as_str()).collect();
    on.sort();
    serde_json::json!({
        "enabled": s.enabled,
        "on": on,
        "require_fields": n.require_fields,
        "require_any_field": n.require_any_field,
        "min_visitor_messages": n.min_visitor_messages,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Send,
    /// Not worth an email yet; the reason is for the debug log. Looked at again when the
    /// visitor writes more, or when the rules change.
    Hold(String),
}

pub fn verdict(settings: &Settings, state: ChatState, transcript: &Transcript) -> Verdict {
    let rules = &settings.notify;
    if !settings.enabled {
        return Verdict::Hold("the bot is disabled".into());
    }
    if !rules.on.contains(&state) {
        return Verdict::Hold(format!("{} emails are off", state.as_str()));
    }
    if transcript.visitor_messages < rules.min_visitor_messages as usize {
        return Verdict::Hold(format!("the visitor wrote {} message(s)", transcript.visitor_messages));
    }
    let given = |field: &String| {
        let mut given = transcript.messages.iter().filter_map(Message::gives_field);
        given.any(|(f, value)| f == field && !value.trim().is_empty())
    };
    let missing: Vec<&str> = rules.require_fields.iter().filter(|f| !given(f)).map(String::as_str).collect();
    if !missing.is_empty() {
        return Verdict::Hold(format!("waiting for {}", missing.join(", ")));
    }
    if !rules.require_any_field.is_empty() && !rules.require_any_field.iter().any(given) {
        return Verdict::Hold(format!("waiting for one of {}", rules.require_any_field.join(", ")));
    }
    Verdict::Send
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Author;
    use chrono::{TimeZone, Utc};

    fn message(author: Author, field: Option<&str>, body: &str) -> Message {
        Message {
            id: 1,
            sent_at: Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap(),
            author,
            gambit_id: None,
            input_type: None,
            field: field.map(str::to_owned),
            body: body.to_owned(),
        }
    }

    fn settings(notify: Notify) -> Settings {
        Settings {
            index: 0,
            enabled: true,
            to: vec![],
            cc: vec![],
            abandon_after: TimeDelta::minutes(30),
            alert_if_silent: None,
            time_zone: Tz::UTC,
            template_set: 0,
            notify,
        }
    }

    /// Stored in every state file: a change of format would look like a change of rules (and
    /// reopen every held conversation once), so the default rules' fingerprint is pinned.
    #[test]
    fn the_rules_fingerprint_is_stable() {
        let config: crate::config::Config = toml::from_str(
            "export = \"e\"\nstate = \"s\"\n[mail]\nfrom = \"n@example.com\"\nto = [\"o@example.com\"]\n\
             [transport]\nkind = \"folder\"\npath = \"o\"\n",
        )
        .unwrap();
        let routing = Routing::new(&config);
        // sha256 of {"bots":[],"default":{"enabled":true,"min_visitor_messages":1,"on":["abandoned","completed","resumed"],"require_any_field":[],"require_fields":[]}}
        assert_eq!(routing.fingerprint(), "339e003a2828d8247a05f89c6c24b47e");
    }

    #[test]
    fn verdict_table() {
        use ChatState::*;
        let greeted_only = [message(Author::Bot, None, "Hi!")];
        let email_only = [message(Author::Bot, None, "Email?"), message(Author::Visitor, Some("email"), "a@b.c")];
        let with_phone = [email_only[0].clone(), email_only[1].clone(), message(Author::Visitor, Some("phone"), "555")];
        let blank_phone = [email_only[1].clone(), message(Author::Visitor, Some("phone"), "  ")];
        let base = Notify::default();
        let need_phone = Notify { require_fields: vec!["phone".into()], ..base.clone() };
        let need_any = Notify { require_any_field: vec!["phone".into(), "name".into()], ..base.clone() };
        let completed_only = Notify { on: vec![Completed], ..base.clone() };
        let no_minimum = Notify { min_visitor_messages: 0, ..base.clone() };
        let send = Verdict::Send;
        let table: [(&Notify, ChatState, &[Message], bool); 11] = [
            (&base, Abandoned, &email_only, true),
            (&base, Abandoned, &greeted_only, false), // nobody answered: no empty email
            (&no_minimum, Abandoned, &greeted_only, true),
            (&need_phone, Abandoned, &email_only, false),
            (&need_phone, Resumed, &with_phone, true),
            (&need_phone, Completed, &blank_phone, false), // a blank answer is no answer
            (&need_any, Completed, &email_only, false),
            (&need_any, Completed, &with_phone, true),
            (&completed_only, Abandoned, &with_phone, false),
            (&completed_only, Resumed, &with_phone, false),
            (&completed_only, Completed, &with_phone, true),
        ];
        for (i, (notify, state, transcript, sends)) in table.into_iter().enumerate() {
            let v = verdict(&settings(notify.clone()), state, &Transcript::of(transcript.to_vec(), 0));
            assert_eq!(v == send, sends, "row {i}: {v:?}");
        }
        let disabled = Settings { enabled: false, ..settings(base) };
        assert_eq!(
            verdict(&disabled, Completed, &Transcript::of(with_phone, 0)),
            Verdict::Hold("the bot is disabled".into())
        );
    }
}
