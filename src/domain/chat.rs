//! A chat as every part of chat-notifier speaks of it: its conversation, its messages and who
//! wrote them, the fields a visitor gave, and the states a notification announces. Sources make
//! these from their rows; nothing here knows where they came from.

use chrono::{DateTime, FixedOffset, Utc};

/// The state a notification announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatState {
    /// The flow reached its end_conversation step.
    Completed,
    /// Idle for `abandon_after` without finishing, and never emailed before.
    Abandoned,
    /// Emailed before, came back, said more and went idle again without finishing.
    Resumed,
    /// A chat without a last step to reach (an LLM bot's: Flowise, Dify) went quiet for
    /// `abandon_after` without meeting the bot's `complete_on`, and was never emailed before.
    /// Not a visitor who left midway: there is no midway in such a chat.
    Ended,
}

impl ChatState {
    pub fn as_str(self) -> &'static str {
        match self {
            ChatState::Completed => "completed",
            ChatState::Abandoned => "abandoned",
            ChatState::Resumed => "resumed",
            ChatState::Ended => "ended",
        }
    }

    /// Every state, in the order emails and lists name them.
    pub const ALL: [ChatState; 4] = [ChatState::Completed, ChatState::Abandoned, ChatState::Resumed, ChatState::Ended];

    pub fn parse(s: &str) -> Option<Self> {
        ChatState::ALL.into_iter().find(|state| state.as_str() == s)
    }
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Author {
    Bot,
    Visitor,
    /// Not a chat line: a value the bot recorded about the visitor (Rasa's slots). It gives a
    /// field, and is never shown in a transcript.
    Field,
    /// Not a chat line either: what chat-notifier says about the chat where the store says it
    /// (a reply that never came, a reply that failed: Dify). Shown in a transcript, as neither
    /// the bot's words nor the visitor's.
    Note,
}

/// The input type of the bot's message on a flow's final step.
pub const END_OF_FLOW: &str = "end_conversation";

/// The one rule that says a message finishes the chat: the bot's message on the final step.
pub fn ends_flow(author: Author, input_type: Option<&str>) -> bool {
    author == Author::Bot && input_type == Some(END_OF_FLOW)
}

/// What a run needs of a new message to track its conversation: no body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    pub id: i64,
    pub conversation_id: String,
    pub sent_at: DateTime<Utc>,
    pub author: Author,
    /// The bot's end-of-flow step.
    pub ends: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    pub id: String,
    pub bot_id: String,
    pub bot_name: String,
    pub visitor_id: String,
    pub started_at: Option<DateTime<FixedOffset>>,
    pub page_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: i64,
    pub sent_at: DateTime<Utc>,
    pub author: Author,
    pub gambit_id: Option<String>,
    pub input_type: Option<String>,
    pub field: Option<String>,
    pub body: String,
}

impl Message {
    pub fn ends_flow(&self) -> bool {
        ends_flow(self.author, self.input_type.as_deref())
    }

    /// A line of the chat as the visitor saw it: not a recorded field, not a bare marker of
    /// the flow's end (a store that keeps completion apart from what the bot said).
    pub fn is_shown(&self) -> bool {
        self.author != Author::Field && !(self.body.is_empty() && self.ends_flow())
    }

    /// The visitor's answer to a field, typed or recorded: `(field, value)`.
    pub fn gives_field(&self) -> Option<(&str, &str)> {
        match self.author {
            Author::Visitor | Author::Field => Some((self.field.as_deref()?, self.body.as_str())),
            Author::Bot | Author::Note => None,
        }
    }
}

/// A field a visitor gave: its latest non-blank answer, trimmed, and when they gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Given {
    pub name: String,
    pub value: String,
    pub at: DateTime<Utc>,
}

/// The one rule for what a visitor gave: each field in these messages, in the order first
/// given, with the latest non-blank answer (visitors correct typos; a blank answer takes
/// nothing back), trimmed. Emails, rules, digests, people and the report all read it here.
pub fn given(messages: &[Message]) -> Vec<Given> {
    let mut fields: Vec<Given> = Vec::new();
    for m in messages {
        let Some((name, value)) = m.gives_field() else { continue };
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        match fields.iter_mut().find(|f| f.name == name) {
            Some(f) => (f.value, f.at) = (value.to_owned(), m.sent_at),
            None => fields.push(Given { name: name.to_owned(), value: value.to_owned(), at: m.sent_at }),
        }
    }
    fields
}

/// `given` as `(name, value)` pairs.
pub fn given_fields(messages: &[Message]) -> Vec<(String, String)> {
    given(messages).into_iter().map(|g| (g.name, g.value)).collect()
}

/// The visitor's name among the fields they gave: `name`, else `full_name`, else `first_name`
/// and `last_name` together.
pub fn visitor_name<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Option<String> {
    if let Some(name) = get("name").or_else(|| get("full_name")) {
        return Some(name.to_owned());
    }
    let parts: Vec<&str> = ["first_name", "last_name"].into_iter().filter_map(&get).collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

/// The fields a lead is: whom to call back, and their name.
pub const LEAD_FIELDS: [&str; 6] = ["name", "full_name", "first_name", "last_name", "email", "phone"];

/// The step of an LLM bot's answer to the visitor's `n`th message (counting from 1), as a
/// source without a last step names it (`Source::has_last_step`): `message 3`. The report
/// groups what such a visitor wrote by the same name, so a funnel step and what was asked there
/// line up.
pub fn turn(n: usize) -> String {
    format!("message {n}")
}
