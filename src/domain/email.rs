//! An email as plain data: what is rendered, queued in the outbox and handed to a transport,
//! and the rules on its addresses that every layer needs.

use std::borrow::Cow;

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
    /// Headers for filtering and threading beyond RFC 5322's (`X-Chat-State`, `X-Chat-Bot`,
    /// `List-Id`, `Thread-Topic`): names from `FILTER_HEADERS`, values header-safe ASCII.
    pub headers: Vec<(String, String)>,
    pub text: String,
    pub html: String,
}

/// A domain in the form headers and a server without SMTPUTF8 need: an internationalised one
/// (`exämple.com`) in its IDNA form (`xn--exmple-cua.com`); an ASCII one exactly as given (the
/// Message-IDs of existing threads are made from it), as is one IDNA cannot convert.
pub fn ascii_domain(domain: &str) -> Cow<'_, str> {
    if domain.is_ascii() {
        return Cow::Borrowed(domain);
    }
    idna::domain_to_ascii(domain).map_or(Cow::Borrowed(domain), Cow::Owned)
}

/// Whether a mailbox survives the outbox: written as text and parsed back before it is sent.
/// lettre accepts addresses it cannot parse back (`x@[127.0.0.1]`, `"a\"b"@x.com`); such a
/// mailbox must never be queued, or reading the outbox fails for every email after it.
pub fn round_trips(mailbox: &Mailbox) -> bool {
    mailbox.to_string().parse::<Mailbox>().is_ok_and(|back| back == *mailbox)
}
