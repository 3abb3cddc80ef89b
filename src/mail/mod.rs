//! Everything about an email: the thread it belongs to (`thread`), its text from templates
//! (`render`) and its way out (`send`). `Email` is the plain data that passes between them and
//! through the outbox.

mod body;
pub mod notice;
pub mod render;
pub mod send;
mod smtp;

use std::borrow::Cow;

use lettre::Address;
use lettre::message::Mailbox;

use crate::domain::ascii_domain;

/// The headers an owner filters on: Gmail's `list:`, Outlook rules, Sieve.
pub const FILTER_HEADERS: [&str; 5] = ["X-Chat-State", "X-Chat-Bot", "List-Id", "Thread-Topic", "Thread-Index"];

/// The filtering headers of an email about `bot_id` (named `bot_name`) in `state`, under
/// `subject`; `domain` is the Message-IDs' right-hand side.
pub fn filter_headers(state: &str, bot_id: &str, bot_name: &str, subject: &str, domain: &str) -> Vec<(String, String)> {
    // RFC 2919: a list id is a dot-atom; one per bot, under the notifier's own namespace.
    let label: String = bot_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect::<String>()
        .trim_matches('-')
        .chars()
        .take(60)
        .collect();
    let label = if label.is_empty() { "bot".to_owned() } else { label };
    let list = format!("<b_{label}.chat-notifier.{}>", ascii_domain(domain));
    let name = crate::domain::text::header(bot_name, 60);
    let list_id = if !name.is_empty() && name.is_ascii() {
        format!("\"{}\" {list}", name.replace(['"', '\\'], ""))
    } else {
        list
    };
    let ascii = |s: &str| crate::domain::text::header(s, 200).chars().filter(char::is_ascii).collect::<String>();
    vec![
        ("X-Chat-State".to_owned(), state.to_owned()),
        ("X-Chat-Bot".to_owned(), ascii(bot_id)),
        ("List-Id".to_owned(), list_id),
        // Outlook's conversation topic: the subject without its reply prefix.
        ("Thread-Topic".to_owned(), subject.strip_prefix("Re: ").unwrap_or(subject).to_owned()),
    ]
}

/// The mailbox with its domain in IDNA form: an ASCII address wherever the local part is.
pub fn ascii_mailbox(mailbox: &Mailbox) -> Mailbox {
    let domain = mailbox.email.domain();
    match ascii_domain(domain) {
        Cow::Owned(ascii) => match Address::new(mailbox.email.user(), ascii) {
            Ok(email) => Mailbox::new(mailbox.name.clone(), email),
            Err(_) => mailbox.clone(),
        },
        Cow::Borrowed(_) => mailbox.clone(),
    }
}

/// Message-IDs (`<left@right>`, one or several, as in References) or a List-Id, each
/// right-hand side that is not ASCII in IDNA form.
pub fn ascii_message_ids(ids: &str) -> String {
    if ids.is_ascii() {
        return ids.to_owned();
    }
    let mut out = String::with_capacity(ids.len() + 16);
    let mut rest = ids;
    while let Some(open) = rest.find('<') {
        let Some(close) = rest[open..].find('>').map(|c| open + c) else { break };
        out.push_str(&rest[..=open]);
        let inner = &rest[open + 1..close];
        // A Message-ID's domain follows its `@`; a List-Id is a domain-like dot-atom itself.
        match inner.rsplit_once('@') {
            Some((left, right)) => {
                out.push_str(left);
                out.push('@');
                out.push_str(&ascii_domain(right));
            }
            None => out.push_str(&ascii_domain(inner)),
        }
        out.push('>');
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_headers_are_one_line_ascii_and_a_valid_list_id() {
        let h = filter_headers(
            "abandoned",
            "Sales Bot\r\nBcc: x@evil",
            "Lead \"Bot\"\r\nX: y",
            "Re: S [#A]",
            "example.com",
        );
        let get = |n: &str| h.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str()).unwrap();
        assert_eq!(get("X-Chat-State"), "abandoned");
        assert_eq!(get("X-Chat-Bot"), "Sales Bot Bcc: x@evil");
        assert_eq!(get("List-Id"), "\"Lead Bot X: y\" <b_sales-bot--bcc--x-evil.chat-notifier.example.com>");
        assert_eq!(get("Thread-Topic"), "S [#A]");
        for (_, v) in &h {
            assert!(v.is_ascii() && !v.contains(['\r', '\n']), "{v:?}");
        }
        let h = filter_headers("completed", "機器人", "機器人", "S", "example.com");
        assert_eq!(h[2].1, "<b_bot.chat-notifier.example.com>", "no phrase that is not ASCII, a label that is");
        let h = filter_headers("completed", "lead", "Lead", "S", "exämple.com");
        assert_eq!(h[2].1, "\"Lead\" <b_lead.chat-notifier.xn--exmple-cua.com>", "an IDN in its IDNA form");
    }

    #[test]
    fn internationalised_domains_in_their_idna_form_and_ascii_ones_untouched() {
        assert_eq!(ascii_domain("exämple.com"), "xn--exmple-cua.com");
        assert_eq!(ascii_domain("Example.COM"), "Example.COM", "as given: existing Message-IDs are made from it");
        assert_eq!(
            ascii_message_ids("<chat.ab.abandoned.7@exämple.com> <chat.cd.completed.9@example.com>"),
            "<chat.ab.abandoned.7@xn--exmple-cua.com> <chat.cd.completed.9@example.com>"
        );
        assert_eq!(
            ascii_message_ids("\"Bot\" <alert.chat-notifier.bücher.example>"),
            "\"Bot\" <alert.chat-notifier.xn--bcher-kva.example>"
        );
        assert_eq!(ascii_message_ids("<a@b> no closing <x@ü"), "<a@b> no closing <x@ü", "left as is, not lost");
        let from: Mailbox = "Chat Notifier <notifier@exämple.com>".parse().unwrap();
        assert_eq!(ascii_mailbox(&from).to_string(), "Chat Notifier <notifier@xn--exmple-cua.com>");
        let utf8: Mailbox = "zoë@bücher.example".parse().unwrap();
        assert_eq!(ascii_mailbox(&utf8).to_string(), "zoë@xn--bcher-kva.example", "the local part needs SMTPUTF8");
    }
}
