//! People, not rows: the person behind a conversation is its `visitor_id` (Rasa: its
//! `sender_id`), across bots, since an owner's bots share one site and the same cookie is the
//! same person to them. Each email shows what is known of the person from their other chats:
//! those chats (newest first) and the fields given there. Ids that are not a person are never
//! merged: blank ones, placeholders a runtime writes when it has no id ("undefined", "null",
//! ...), and ids shared by more than `CROWD` conversations (a test visitor, a kiosk, a bug).
//!
//! The lookup reads the state's conversations of that visitor (an index on `visitor_id`, learned
//! when a conversation is first judged) and, for the few shown, their transcripts from the
//! source: a run costs what it emails, never the export's size.

use crate::domain::{CROWD, Conversation, Earlier, EarlierField, Message, Person, SHOWN, Wanted, is_person, thread};
use crate::source::Source;
use crate::state::{Known, State};

/// Pure: the person from their other conversations (newest first, as the state lists them, with
/// each one's facts and transcript where the source has them) and how many there are in all.
pub fn person(others: &[(Known, Option<&Conversation>, &[Message])], total: usize) -> Person {
    let mut fields: Vec<EarlierField> = Vec::new();
    // Oldest first, so a later answer replaces an earlier one.
    for (known, _, transcript) in others.iter().rev() {
        for g in crate::domain::given(transcript) {
            let field = EarlierField {
                identifier: thread::identifier(&known.id),
                given_at: g.at,
                value: g.value,
                name: g.name,
            };
            match fields.iter_mut().find(|f| f.name == field.name) {
                Some(f) => *f = field,
                None => fields.push(field),
            }
        }
    }
    let conversations = others
        .iter()
        .map(|(known, conversation, _)| Earlier {
            identifier: thread::identifier(&known.id),
            bot: conversation.map_or_else(|| known.bot_id.clone().unwrap_or_default(), |c| c.bot_name.clone()),
            state: known.last_state,
            last_activity: known.last_activity,
        })
        .collect();
    Person { conversations, more: total.saturating_sub(others.len()), fields }
}

/// Looks up the person behind `conversation`: nobody (an empty `Person`) when its visitor id
/// names no one, or a crowd.
pub fn lookup(state: &State, source: &dyn Source, conversation: &Conversation) -> anyhow::Result<Person> {
    if !is_person(&conversation.visitor_id) {
        return Ok(Person::default());
    }
    let (others, total) = state.others(&conversation.visitor_id, &conversation.id, SHOWN)?;
    if others.is_empty() || total > CROWD {
        return Ok(Person::default());
    }
    let ids: Vec<&str> = others.iter().map(|k| k.id.as_str()).collect();
    let facts = source.conversations(&ids)?;
    let wanted: Vec<Wanted> = ids.iter().map(|id| Wanted { id, since: 0, through: i64::MAX }).collect();
    // Fields are all a person's record reads of them: no lines kept.
    let transcripts = crate::source::read_transcripts(source, &wanted, 0)?;
    let rows: Vec<(Known, Option<&Conversation>, &[Message])> = others
        .iter()
        .map(|k| (k.clone(), facts.get(&k.id), transcripts.get(&k.id).map_or(&[][..], |t| t.messages.as_slice())))
        .collect();
    Ok(person(&rows, total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Author;
    use crate::domain::ChatState;
    use chrono::{DateTime, Utc};

    fn at(day: u32) -> DateTime<Utc> {
        format!("2026-11-{day:02}T10:00:00Z").parse().unwrap()
    }

    fn said(field: &str, value: &str, day: u32) -> Message {
        Message {
            id: day.into(),
            sent_at: at(day),
            author: Author::Visitor,
            gambit_id: None,
            input_type: None,
            field: Some(field.into()),
            body: value.into(),
        }
    }

    fn known(id: &str, day: u32, last_state: Option<ChatState>) -> Known {
        Known { id: id.into(), bot_id: Some("lead".into()), last_activity: at(day), last_state }
    }

    #[test]
    fn the_person_is_their_other_chats_newest_first_and_their_latest_answers() {
        let monday =
            [said("name", "Ana Souza", 23), said("email", "ana@old.example", 23), said("phone", "+55 11 5555", 23)];
        let tuesday = [said("email", "ana@new.example", 24)];
        let others = [
            (known("tue", 24, None), None, &tuesday[..]),
            (known("mon", 23, Some(ChatState::Completed)), None, &monday[..]),
        ];
        let p = person(&others, 7);
        assert_eq!(p.more, 5);
        let states: Vec<&str> = p.conversations.iter().map(|c| c.state_name()).collect();
        assert_eq!(states, ["not emailed", "completed"]);
        assert_eq!(p.conversations[1].identifier, thread::identifier("mon"));
        let fields: Vec<(&str, &str)> = p.fields.iter().map(|f| (f.name.as_str(), f.value.as_str())).collect();
        assert_eq!(fields, [("name", "Ana Souza"), ("email", "ana@new.example"), ("phone", "+55 11 5555")]);
        assert_eq!(p.fields[1].identifier, thread::identifier("tue"), "the latest answer, where it was given");
    }

    #[test]
    fn placeholders_are_nobody() {
        for id in ["", "  ", "undefined", "NULL", "None", "anonymous", "0", "-"] {
            assert!(!is_person(id), "{id:?}");
        }
        for id in ["v-1001", "7f3e9a", "ana@example.com"] {
            assert!(is_person(id), "{id:?}");
        }
    }
}
