//! Which emails: the verdict of a bot's rules (`config::Settings`) on one conversation that
//! reached a new state. Pure.

use crate::config::Settings;
use crate::domain::{ChatState, Transcript};

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
    if state == ChatState::Resumed && transcript.new_visitor_messages == 0 {
        // The bot spoke again (a reminder, a follow-up): the visitor did not come back.
        return Verdict::Hold("the visitor wrote nothing since the last email".into());
    }
    if transcript.visitor_messages < rules.min_visitor_messages as usize {
        return Verdict::Hold(format!("the visitor wrote {} message(s)", transcript.visitor_messages));
    }
    let fields = crate::domain::given(&transcript.messages);
    let given = |field: &String| fields.iter().any(|g| &g.name == field);
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
    use crate::config::{Notify, Routing};
    use crate::domain::{Author, Message};
    use chrono::{TimeDelta, TimeZone, Utc};
    use chrono_tz::Tz;

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
        // `ended` joined the default set unseen; turning it off is a change of rules (its held
        // chats are judged again when it is turned back on).
        let without_ended: crate::config::Config = toml::from_str(
            "export = \"e\"\nstate = \"s\"\n[notify]\non = [\"completed\", \"abandoned\", \"resumed\"]\n\
             [mail]\nfrom = \"n@example.com\"\nto = [\"o@example.com\"]\n[transport]\nkind = \"folder\"\npath = \"o\"\n",
        )
        .unwrap();
        assert_ne!(Routing::new(&without_ended).fingerprint(), routing.fingerprint());
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
        // Resumed needs the visitor back: since the last email (through message 1) only the bot
        // spoke (a reminder, a follow-up).
        let bot_again = [email_only[1].clone(), Message { id: 2, ..message(Author::Bot, None, "Still there?") }];
        let visitor_again = [bot_again[1].clone(), Message { id: 3, ..message(Author::Visitor, None, "yes!") }];
        let resumed = |t: &[Message]| verdict(&settings(base.clone()), Resumed, &Transcript::of(t.to_vec(), 1));
        assert_eq!(resumed(&bot_again), Verdict::Hold("the visitor wrote nothing since the last email".into()));
        assert_eq!(resumed(&visitor_again), Verdict::Send);
        let disabled = Settings { enabled: false, ..settings(base) };
        assert_eq!(
            verdict(&disabled, Completed, &Transcript::of(with_phone, 0)),
            Verdict::Hold("the bot is disabled".into())
        );
    }
}
