//! What keeps one conversation in one mail thread: its identifier, the Message-IDs of its
//! emails and the subject they share.

use sha2::{Digest, Sha256};

use crate::domain::ChatState;

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
    // RFC 5322: a Message-ID is ASCII; an internationalised domain in its IDNA form.
    format!("<chat.{hex}.{}.{covers_through}@{}>", state.as_str(), crate::domain::ascii_domain(domain))
}

/// 100-nanosecond ticks from 1601-01-01 (Windows FILETIME) to 1970-01-01.
const FILETIME_UNIX_EPOCH: i64 = 116_444_736_000_000_000;

fn filetime(at: chrono::DateTime<chrono::Utc>) -> u64 {
    (FILETIME_UNIX_EPOCH + at.timestamp_micros() * 10) as u64
}

/// Outlook's conversation index (the `Thread-Index` header, [MS-OXOMSG] 2.2.1.3) of an email
/// sent `at` in a conversation, after the one of its previous email (`parent`), if any. Outlook
/// keeps a conversation together by it even when a gateway rewrites the subject.
///
/// As Microsoft's published description has it: the first email's is 22 bytes, a reserved 0x01,
/// five bytes of its FILETIME (the high 32 bits and the next 8, big-endian), then a GUID for the
/// conversation (here from its id, so the same on every machine). Each reply adds five bytes: a
/// delta code bit and 31 bits of its time after the header's (bits 18 to 48 of the difference;
/// bits 23 to 53 past 1.7 years, with the code set), then a byte of (deterministic) randomness
/// whose low nibble counts the level. A parent in the older layout (the FILETIME's top six bytes,
/// with no reserved byte: what earlier versions wrote) is extended from its own time.
pub fn thread_index(conversation_id: &str, parent: Option<&[u8]>, at: chrono::DateTime<chrono::Utc>) -> Vec<u8> {
    let now = filetime(at);
    match parent.filter(|p| p.len() >= 22 && (p.len() - 22) % 5 == 0) {
        None => {
            let mut index = vec![0x01];
            index.extend_from_slice(&(now >> 24).to_be_bytes()[3..]);
            let guid = Sha256::digest(format!("thread-index:{conversation_id}").as_bytes());
            index.extend_from_slice(&guid[..16]);
            index
        }
        Some(parent) => {
            let delta = now.saturating_sub(header_time(parent));
            let block = if delta < 1 << 49 {
                ((delta >> 18) & 0x7FFF_FFFF) as u32
            } else {
                0x8000_0000 | ((delta >> 23) & 0x7FFF_FFFF) as u32
            };
            let mut index = parent.to_vec();
            index.extend_from_slice(&block.to_be_bytes());
            let level = ((parent.len() - 22) / 5 + 1) as u8;
            index.push((Sha256::digest(&index)[0] & 0xF0) | (level & 0x0F));
            index
        }
    }
}

/// The FILETIME a conversation index's header holds, to the precision it keeps.
fn header_time(index: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    if index[1] == 0x01 {
        // Reserved byte, then the FILETIME's bits 63 to 24 (its top byte is 0x01 from 1829 to 2057).
        bytes[3..].copy_from_slice(&index[1..6]);
        u64::from_be_bytes(bytes) << 24
    } else {
        // The older layout: the FILETIME's top six bytes.
        bytes[..6].copy_from_slice(&index[..6]);
        u64::from_be_bytes(bytes)
    }
}

/// The subject of a conversation's first email, from the owner's subject template's text:
/// made header-safe, cut to fit, and always ending with the identifier. Later emails reuse it
/// with `Re: `.
pub fn subject(text: &str, identifier: &str) -> String {
    let text = crate::domain::text::header(text, MAX_SUBJECT_CHARS);
    let text = if text.is_empty() { "Chat" } else { &text };
    format!("{text} [#{identifier}]")
}

/// The Message-IDs already sent in a conversation's thread, oldest (the root) first, and the
/// subject they share.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Thread {
    pub subject: Option<String>,
    pub message_ids: Vec<String>,
    /// The last email's Outlook conversation index (`Thread-Index`), which the next extends.
    pub index: Option<Vec<u8>>,
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
        // An internationalised domain in its IDNA form (Python: "exämple.com".encode("idna")).
        assert_eq!(
            message_id("0b7e4d21-jane", ChatState::Abandoned, 7, "exämple.com"),
            "<chat.2b4a1cd29b852e552de5dbecc872c9e0.abandoned.7@xn--exmple-cua.com>"
        );
    }

    #[test]
    fn thread_index_decodes_to_its_time_guid_and_replies() {
        let at: chrono::DateTime<chrono::Utc> = "2026-11-24T09:30:00Z".parse().unwrap();
        let root = thread_index("conv-1", None, at);
        assert_eq!(root.len(), 22);
        // A reserved 0x01, then the FILETIME's bits 63 to 24: read back to within 2^24 ticks (1.7 s).
        assert_eq!(root[0], 0x01, "reserved");
        let mut ft = [0u8; 8];
        ft[3..].copy_from_slice(&root[1..6]);
        let back = ((u64::from_be_bytes(ft) << 24) as i64 - FILETIME_UNIX_EPOCH) / 10;
        assert!((0..1_677_722).contains(&(at.timestamp_micros() - back)), "{back}");
        assert_eq!(header_time(&root), u64::from_be_bytes(ft) << 24);
        assert_eq!(&root[6..], &Sha256::digest(b"thread-index:conv-1")[..16]);
        assert_eq!(root, thread_index("conv-1", None, at), "the same on every run");

        let reply = thread_index("conv-1", Some(&root), at + chrono::TimeDelta::hours(1));
        assert_eq!((reply.len(), &reply[..22]), (27, &root[..]));
        let block = u32::from_be_bytes(reply[22..26].try_into().unwrap());
        assert_eq!(block >> 31, 0, "within 1.7 years");
        let delta = u64::from(block) << 18;
        // An hour in 100 ns ticks, after a header that kept its time to 2^24 ticks.
        assert!((0..(1 << 24) + (1 << 18)).contains(&(delta as i64 - 36_000_000_000)), "{delta}");
        assert_eq!(reply[26] & 0x0F, 1, "level 1");
        let again = thread_index("conv-1", Some(&reply), at + chrono::TimeDelta::days(1100));
        assert_eq!(again.len(), 32);
        assert_eq!(u32::from_be_bytes(again[27..31].try_into().unwrap()) >> 31, 1, "past 1.7 years: the coarse delta");
        assert_eq!(again[31] & 0x0F, 2);

        // A parent written by an earlier version (the FILETIME's top six bytes) still extends.
        let mut old = (filetime(at) >> 16).to_be_bytes()[2..].to_vec();
        old.extend_from_slice(&root[6..]);
        let reply = thread_index("conv-1", Some(&old), at + chrono::TimeDelta::hours(1));
        let block = u32::from_be_bytes(reply[22..26].try_into().unwrap());
        assert!(((u64::from(block) << 18) as i64 - 36_000_000_000).abs() < 1 << 18, "an hour after the old header");
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
