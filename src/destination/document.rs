//! The webhook's JSON document, schema version 1: one per notification, made when it is
//! decided, stored with it and sent as is on every try (a public format: pinned by a test, and
//! documented in the README). Every string in it is the visitor's or the store's, untrusted:
//! JSON escapes it, and receivers must treat it as text.

use std::borrow::Cow;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::{Author, ChatState, Conversation, Message, Person, Transcript, thread};

/// The schema's version: a change that breaks a receiver is a new version.
pub const VERSION: u32 = 1;

/// The idempotency key of a notification: from its conversation, state and last message
/// covered, as a Message-ID is; the same on every try and every run.
pub fn key(conversation_id: &str, state: ChatState, covers_through: i64) -> String {
    let digest = Sha256::digest(format!("{conversation_id}\u{1f}{}\u{1f}{covers_through}", state.as_str()));
    format!("cn1_{}", super::hex(&digest[..16]))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    pub version: u32,
    /// The idempotency key: the same on every try (also in the `Idempotency-Key` header).
    pub id: String,
    /// `conversation.completed`, `conversation.abandoned`, `conversation.ended`, `conversation.resumed`.
    pub event: String,
    pub state: ChatState,
    /// When chat-notifier decided it (RFC 3339, UTC).
    pub decided_at: String,
    pub conversation: ConversationDoc,
    pub bot: BotDoc,
    pub visitor: VisitorDoc,
    pub person: PersonDoc,
    /// The flow step the visitor was last asked, and its question.
    pub step: Option<String>,
    pub question: Option<String>,
    pub transcript: TranscriptDoc,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationDoc {
    pub id: String,
    /// The identifier in the emails' subjects: `5D51-SMMV-GMQ5`.
    pub identifier: String,
    pub started_at: Option<String>,
    pub last_activity: Option<String>,
    pub page_url: Option<String>,
    /// An earlier notification went for this conversation.
    pub came_back: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BotDoc {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisitorDoc {
    pub id: String,
    /// Their name, else email, else "a visitor".
    pub display: String,
    /// What they told the bot in this chat: each field once, the latest answer.
    pub fields: Vec<FieldDoc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldDoc {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonDoc {
    pub known_before: bool,
    /// Their other conversations, newest first (at most 5).
    pub conversations: Vec<EarlierDoc>,
    pub more: usize,
    /// Fields given in earlier chats and not in this one.
    pub fields: Vec<EarlierFieldDoc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EarlierDoc {
    pub identifier: String,
    pub bot: String,
    /// The last notification's state, or `not notified`.
    pub state: String,
    pub last_activity: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EarlierFieldDoc {
    pub name: String,
    pub value: String,
    pub identifier: String,
    pub given_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TranscriptDoc {
    /// The messages an email shows (its first and its latest, within the same limits).
    pub messages: Vec<LineDoc>,
    /// Messages of a long chat left out.
    pub omitted: usize,
    /// Messages since the last notification.
    pub new_messages: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineDoc {
    pub id: i64,
    pub at: String,
    /// `bot` or `visitor`.
    pub sender: String,
    pub body: String,
    /// Not covered by an earlier notification.
    pub new: bool,
    /// Messages left out just before this one.
    pub skipped_before: usize,
}

/// The silent-source alarm's document (schema version 1 too): a bot whose chats stopped coming
/// (`bot.silent`), or came again (`bot.active`). Filed under `alert:BOT` in place of a
/// conversation: on Slack, the alarm's raise and its all-clear are one thread, as in the inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertDocument {
    pub version: u32,
    pub id: String,
    /// `bot.silent` or `bot.active`.
    pub event: String,
    pub decided_at: String,
    pub bot: BotDoc,
    /// The bot's latest message before the silence.
    pub silent_since: String,
    /// `bot.active`: the first message after it.
    pub back_at: Option<String>,
    /// What the alert email says, in a sentence.
    pub message: String,
}

/// The alarm's document: raised (`back` none) or cleared.
pub fn alert(
    bot: BotDoc,
    silent_since: DateTime<Utc>,
    back: Option<DateTime<Utc>>,
    message: String,
    now: DateTime<Utc>,
) -> AlertDocument {
    let event = if back.is_some() { "bot.active" } else { "bot.silent" };
    let seed = format!(
        "alert\u{1f}{}\u{1f}{event}\u{1f}{}\u{1f}{:?}",
        bot.id,
        silent_since.timestamp_millis(),
        back.map(|b| b.timestamp_millis())
    );
    AlertDocument {
        version: VERSION,
        id: format!("cn1_{}", super::hex(&Sha256::digest(seed)[..16])),
        event: event.to_owned(),
        decided_at: at(now),
        bot,
        silent_since: at(silent_since),
        back_at: back.map(at),
        message,
    }
}

/// The flood guard's document (schema version 1 too, `"event": "summary"`): one run had more
/// notifications about chats for this destination than its `burst`; the first `burst` went one
/// by one, and these are listed here instead, never sent one by one. Filed under `summary:N` in
/// place of a conversation; its `id` is its own idempotency key, from the notifications it lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummaryDocument {
    pub version: u32,
    pub id: String,
    /// `summary`.
    pub event: String,
    pub decided_at: String,
    /// A line saying what it is: `5 more chats in one run, listed here`.
    pub title: String,
    /// The destination's `burst`.
    pub burst: u32,
    /// Notifications about chats the run had for this destination: `burst` went one by one.
    pub queued: usize,
    /// What the summary says, in a sentence.
    pub message: String,
    /// The notifications listed, in the order decided.
    pub conversations: Vec<SummaryItem>,
}

/// One notification a summary lists in its place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummaryItem {
    /// The conversation's id and identifier, as a notification's `conversation` has them.
    pub id: String,
    pub identifier: String,
    pub state: ChatState,
    pub bot: BotDoc,
    /// The visitor's name, else email, else "a visitor".
    pub visitor: String,
    /// The idempotency key the notification would have had: a receiver that has it already
    /// (it went before a crash) can tell.
    pub notification_id: String,
}

/// The summary's idempotency key: from the keys of the notifications it lists, the same on every
/// try and every run.
pub fn summary_key(listed: &[&str]) -> String {
    let mut hash = Sha256::new();
    hash.update(b"summary");
    for key in listed {
        hash.update([0x1f]);
        hash.update(key.as_bytes());
    }
    format!("cn1_{}", super::hex(&hash.finalize()[..16]))
}

/// The summary's document: `items` in order, of `queued` in the run, over `burst`.
pub fn summary(items: Vec<SummaryItem>, burst: u32, queued: usize, now: DateTime<Utc>) -> SummaryDocument {
    let keys: Vec<&str> = items.iter().map(|i| i.notification_id.as_str()).collect();
    let n = items.len();
    let (chats, these) = if n == 1 { ("chat", "this one is".to_owned()) } else { ("chats", format!("these {n} are")) };
    SummaryDocument {
        version: VERSION,
        id: summary_key(&keys),
        event: "summary".to_owned(),
        decided_at: at(now),
        title: format!("{n} more {chats} in one run, listed here"),
        burst,
        queued,
        message: format!(
            "{n} more {chats} in one run: {queued} notifications about chats, more than burst ({burst}); the first \
             {burst} went one by one, and {these} listed here instead. Each conversation's next notification \
             goes as usual."
        ),
        conversations: items,
    }
}

/// The digest's document for a destination that takes its bot's digest (`digest = true`; schema
/// version 1, `"event": "digest"`): the chats the inbox's digest of `day` lists that this
/// destination serves, each one's notification held for it. Filed under the digest's key; its
/// `id` comes from the notifications it lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestDocument {
    pub version: u32,
    pub id: String,
    /// `digest`.
    pub event: String,
    pub decided_at: String,
    /// `Digest for 2026-11-25: 2 chats`.
    pub title: String,
    /// The digest's day, in its time zone.
    pub day: String,
    pub message: String,
    pub conversations: Vec<SummaryItem>,
}

/// A digest's document: `items` in order, the digest of `day`.
pub fn digest(items: Vec<SummaryItem>, day: &str, now: DateTime<Utc>) -> DigestDocument {
    let mut keys: Vec<&str> = vec!["digest", day];
    keys.extend(items.iter().map(|i| i.notification_id.as_str()));
    let n = items.len();
    let chats = if n == 1 { "chat" } else { "chats" };
    DigestDocument {
        version: VERSION,
        id: summary_key(&keys),
        event: "digest".to_owned(),
        decided_at: at(now),
        title: format!("Digest for {day}: {n} {chats}"),
        day: day.to_owned(),
        message: format!(
            "{n} {chats} since the last digest, listed here instead of one notification each (notify.digest; this \
             destination has digest = true). One that comes back and finishes, or leaves a contact, gets its own."
        ),
        conversations: items,
    }
}

/// What a message shows of a document that lists chats (a flood summary, a digest).
#[derive(Debug, Clone, Deserialize)]
pub struct Listing {
    pub id: String,
    pub event: String,
    pub title: String,
    pub message: String,
    pub conversations: Vec<SummaryItem>,
}

/// What the visitor did, as a chat message's headline says it after their name.
pub fn what_happened(state: ChatState) -> &'static str {
    match state {
        ChatState::Completed => "finished the chat",
        ChatState::Abandoned => "left the chat",
        ChatState::Ended => "chatted; the chat has gone quiet",
        ChatState::Resumed => "came back and left again",
    }
}

/// What a document is made from: the decision, and what the email of it shows.
pub struct Facts<'a> {
    pub state: ChatState,
    pub conversation: &'a Conversation,
    pub transcript: &'a Transcript,
    /// The messages shown, as an email shows them: (left out before it, message, body cut).
    pub shown: Vec<(usize, &'a Message, Cow<'a, str>)>,
    pub person: &'a Person,
    pub visitor_display: String,
    /// An earlier notification went for this conversation.
    pub came_back: bool,
    /// The chat has a last step (`Source::has_last_step`): where it stopped is worth naming. An
    /// LLM chat's "step" is a count of messages and its "question" a whole answer.
    pub last_step: bool,
    pub now: DateTime<Utc>,
}

fn at(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The document of a notification, and its key.
pub fn make(f: &Facts) -> Document {
    let t = f.transcript;
    let c = f.conversation;
    let covers_through = t.messages.last().map_or(t.since, |m| m.id);
    let last_bot = t.messages.iter().rev().find(|m| m.author == Author::Bot && !m.ends_flow()).filter(|_| f.last_step);
    let omitted = f.shown.iter().map(|(skipped, ..)| skipped).sum();
    Document {
        version: VERSION,
        id: key(&c.id, f.state, covers_through),
        event: format!("conversation.{}", f.state.as_str()),
        state: f.state,
        decided_at: at(f.now),
        conversation: ConversationDoc {
            id: c.id.clone(),
            identifier: thread::identifier(&c.id),
            started_at: c.started_at.map(|s| at(s.to_utc())),
            last_activity: t.last_activity.map(at),
            page_url: c.page_url.clone(),
            came_back: f.came_back,
        },
        bot: BotDoc { id: c.bot_id.clone(), name: c.bot_name.clone() },
        visitor: VisitorDoc {
            id: c.visitor_id.clone(),
            display: f.visitor_display.clone(),
            fields: crate::domain::given_fields(&t.messages)
                .into_iter()
                .map(|(name, value)| FieldDoc { name, value })
                .collect(),
        },
        person: PersonDoc {
            known_before: !f.person.conversations.is_empty(),
            conversations: f
                .person
                .conversations
                .iter()
                .map(|e| EarlierDoc {
                    identifier: e.identifier.clone(),
                    bot: e.bot.clone(),
                    state: e.state.map_or("not notified", ChatState::as_str).to_owned(),
                    last_activity: at(e.last_activity),
                })
                .collect(),
            more: f.person.more,
            fields: f
                .person
                .fields
                .iter()
                .map(|e| EarlierFieldDoc {
                    name: e.name.clone(),
                    value: e.value.clone(),
                    identifier: e.identifier.clone(),
                    given_at: at(e.given_at),
                })
                .collect(),
        },
        step: last_bot.and_then(|m| m.gambit_id.clone()),
        question: last_bot.map(|m| m.body.clone()),
        transcript: TranscriptDoc {
            messages: f
                .shown
                .iter()
                .map(|(skipped, m, body)| LineDoc {
                    id: m.id,
                    at: at(m.sent_at),
                    sender: match m.author {
                        Author::Bot => "bot",
                        Author::Visitor => "visitor",
                        Author::Note => "note",
                        // Never shown; a new kind of line is named by its serde name.
                        #[allow(unreachable_patterns)]
                        _ => "other",
                    }
                    .to_owned(),
                    body: body.clone().into_owned(),
                    new: f.came_back && m.id > t.since,
                    skipped_before: *skipped,
                })
                .collect(),
            omitted,
            new_messages: t.new_messages,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key is a public value (receivers store it to drop duplicates): pinned.
    #[test]
    fn the_idempotency_key_is_pinned() {
        assert_eq!(key("conv-1", ChatState::Completed, 42), key("conv-1", ChatState::Completed, 42));
        assert_ne!(key("conv-1", ChatState::Completed, 42), key("conv-1", ChatState::Resumed, 42));
        assert_eq!(key("conv-1", ChatState::Completed, 42).len(), 4 + 32);
        assert_eq!(key("conv-1", ChatState::Completed, 42), "cn1_1c61d4dddbe486b95201497e3386cc51");
    }
}
