//! Everything about an email: the thread it belongs to (`thread`), its text from templates
//! (`render`) and its way out (`send`). `Email` is the plain data that passes between them and
//! through the outbox.

pub mod render;
pub mod send;
pub mod thread;

use chrono::{DateTime, Utc};
use lettre::message::{Mailbox, Mailboxes};

/// An email ready to send, in plain data: what the outbox stores and the transports take.
#[derive(Debug, Clone, PartialEq)]
pub struct Email {
    pub message_id: String,
    pub date: DateTime<Utc>,
    pub from: Mailbox,
    pub to: Mailboxes,
    pub cc: Mailboxes,
    pub reply_to: Option<Mailbox>,
    pub subject: String,
    pub in_reply_to: Option<String>,
    pub references: Option<String>,
    pub text: String,
    pub html: String,
}

/// Whether a mailbox survives the outbox: written as text and parsed back before it is sent.
/// lettre accepts addresses it cannot parse back (`x@[127.0.0.1]`, `"a\"b"@x.com`); such a
/// mailbox must never be queued, or reading the outbox fails for every email after it.
pub fn round_trips(mailbox: &Mailbox) -> bool {
    mailbox.to_string().parse::<Mailbox>().is_ok_and(|back| back == *mailbox)
}
