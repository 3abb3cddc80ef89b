//! The person behind a chat: a visitor id that names someone, and what is known of them from
//! their other chats (see `pipeline::people` for how it is looked up).

use chrono::{DateTime, Utc};

use super::ChatState;

/// Other conversations an email lists; the rest are counted.
pub const SHOWN: usize = 5;
/// More conversations than this under one visitor id: not one person.
pub const CROWD: usize = 50;

/// Ids runtimes write when they have none.
const PLACEHOLDERS: &[&str] =
    &["undefined", "null", "none", "nil", "nan", "anonymous", "unknown", "guest", "visitor", "user", "0", "-", "n/a"];

/// Whether a visitor id names someone: not blank, not a placeholder.
pub fn is_person(visitor_id: &str) -> bool {
    let id = visitor_id.trim().to_ascii_lowercase();
    !id.is_empty() && !PLACEHOLDERS.contains(&id.as_str())
}

/// What is known of a person from their other chats.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Person {
    /// Their other conversations, newest first, at most `SHOWN`.
    pub conversations: Vec<Earlier>,
    /// How many more there are.
    pub more: usize,
    /// Each field they gave in those chats, the latest answer, with where it was given.
    pub fields: Vec<EarlierField>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Earlier {
    pub identifier: String,
    pub bot: String,
    /// The state its last email announced; none when it was never emailed.
    pub state: Option<ChatState>,
    pub last_activity: DateTime<Utc>,
}

impl Earlier {
    /// Its state as an email names it.
    pub fn state_name(&self) -> &'static str {
        self.state.map_or("not emailed", ChatState::as_str)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct EarlierField {
    pub name: String,
    pub value: String,
    pub identifier: String,
    pub given_at: DateTime<Utc>,
}
