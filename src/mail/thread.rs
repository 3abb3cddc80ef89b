//! What keeps one conversation in one mail thread: its identifier, the Message-IDs of its
//! emails and the subject they share.

use sha2::{Digest, Sha256};

use crate::pipeline::classify::ChatState;

/// Crockford's base32: no I, L, O or U, so an identifier read aloud or retyped survives.
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Longest subject text before the identifier, which must stay visible in narrow inbox columns.
const MAX_SUBJECT_CHARS: usize = 120;

/// The conversation's identifier, e.g. `K7Q2-9XDM-4HBR`: 60 bits of SHA-256 of the id.
/// Across 10 million conversations the chance that any two share one is about 4 in 100,000
/// (n^2 / 2^61); 40 bits would already give some 45 collisions.
pub fn identifier(conversation_id: &str) -> String {
    let digest = Sha256::digest(conversation_id.as_bytes());
    let bits = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")) >> 4;
    let mut out = String::with_capacity(14);
    for i in 0..12 {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        let shift = 55 - 5 * i;
        out.push(CROCKFORD[((bits >> shift) & 31) as usize] as char);
    }
    out
}

/// Deterministic per (conversation, state, last message covered): an email re-sent after a
/// crash or an SMTP failure carries the id of the first attempt, and receivers drop it.
pub fn message_id(conversation_id: &str, state: ChatState, covers_through: i64, domain: &str) -> String {
    let digest = Sha256::digest(conversation_id.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("<chat.{hex}.{}.{covers_through}@{domain}>", state.as_str())
}

/// The subject of a conversation's first email, from the owner's subject template's text:
/// made header-safe, cut to fit, and always ending with the identifier. Later emails reuse it
/// with `Re: `.
pub fn subject(text: &str, identifier: &str) -> String {
    let text = crate::text::header(text, MAX_SUBJECT_CHARS);
    let text = if text.is_empty() { "Chat" } else { &text };
    format!("{text} [#{identifier}]")
}

/// The Message-IDs already sent in a conversation's thread, oldest (the root) first, and the
/// subject they share.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Thread {
    pub subject: Option<String>,
    pub message_ids: Vec<String>,
}

impl Thread {
    /// The subject for a reply: the stored one with `Re: `; `None` for a new thread.
    pub fn reply_subject(&self) -> Option<String> {
        self.subject.as_ref().map(|s| format!("Re: {s}"))
    }

    pub fn in_reply_to(&self) -> Option<&str> {
        self.message_ids.last().map(String::as_str)
    }

    /// RFC 5322 References: the root, then every later email, space separated.
    pub fn references(&self) -> Option<String> {
        (!self.message_ids.is_empty()).then(|| self.message_ids.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifier_is_stable_readable_and_spread() {
        let id = identifier("conv-1");
        assert_eq!(id, identifier("conv-1"));
        assert_eq!(id.len(), 14);
        assert!(id.chars().all(|c| c == '-' || CROCKFORD.contains(&(c as u8))), "{id}");
        assert_eq!(id.matches('-').count(), 2);
        assert_ne!(id, identifier("conv-2"));
        let distinct: std::collections::HashSet<_> = (0..20_000).map(|i| identifier(&format!("c{i}"))).collect();
        assert_eq!(distinct.len(), 20_000);
    }

    /// Identifiers and Message-IDs are public: owners search their inboxes for them, and mail
    /// clients thread on them. A change of hashing would silently split every existing thread.
    /// The values were computed independently (Python's hashlib), and the first is the README's.
    #[test]
    fn identifiers_and_message_ids_are_pinned() {
        assert_eq!(identifier("0b7e4d21-jane"), "5D51-SMMV-GMQ5");
        assert_eq!(identifier("conv-1"), "6S94-ZP7P-EHZW");
        assert_eq!(
            message_id("0b7e4d21-jane", ChatState::Abandoned, 7, "example.com"),
            "<chat.2b4a1cd29b852e552de5dbecc872c9e0.abandoned.7@example.com>"
        );
    }

    #[test]
    fn message_id_differs_per_state_and_coverage() {
        let a = message_id("c", ChatState::Abandoned, 10, "example.com");
        assert_eq!(a, message_id("c", ChatState::Abandoned, 10, "example.com"));
        assert!(a.starts_with("<chat.") && a.ends_with(".abandoned.10@example.com>"), "{a}");
        assert_ne!(a, message_id("c", ChatState::Completed, 10, "example.com"));
        assert_ne!(a, message_id("c", ChatState::Abandoned, 11, "example.com"));
        assert_ne!(a, message_id("d", ChatState::Abandoned, 10, "example.com"));
    }

    #[test]
    fn subjects_always_end_with_the_identifier() {
        assert_eq!(subject("Lead Bot: chat with Jane", "ABCD"), "Lead Bot: chat with Jane [#ABCD]");
        assert_eq!(subject(" \r\n ", "ABCD"), "Chat [#ABCD]");
        let long = subject(&"x".repeat(500), "ABCD");
        assert!(long.ends_with("… [#ABCD]") && long.chars().count() < 140, "{long}");
    }

    #[test]
    fn thread_builds_replies_on_the_stored_subject() {
        let mut t = Thread::default();
        assert_eq!(t.reply_subject(), None);
        assert_eq!(t.in_reply_to(), None);
        assert_eq!(t.references(), None);
        t.subject = Some("S [#X]".into());
        t.message_ids = vec!["<a@x>".into(), "<b@x>".into()];
        assert_eq!(t.reply_subject().as_deref(), Some("Re: S [#X]"));
        assert_eq!(t.in_reply_to(), Some("<b@x>"));
        assert_eq!(t.references().as_deref(), Some("<a@x> <b@x>"));
    }
}
