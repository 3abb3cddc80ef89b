//! `[mail]`: who sends, to whom, how much at a time, and what one email shows of a chat.

use lettre::message::Mailbox;
use serde::Deserialize;

use crate::domain::Limits;

/// The subject when the config names none (`mail::render` writes this one without minijinja).
pub const DEFAULT_SUBJECT: &str = "{{ bot.name }}: chat with {{ visitor.display }}";

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

/// `mail.burst`'s default, a destination's `burst`'s too.
pub const DEFAULT_BURST: u32 = 50;

fn fifty() -> u32 {
    DEFAULT_BURST
}
