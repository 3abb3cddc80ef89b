//! Emails about no one conversation: the silent-source alarm, the daily digest and the flood
//! guard's summary. Their text is chat-notifier's own, built here from plain data: paragraphs
//! and lists, the same words in the text and the HTML part (escaped), threaded and filterable
//! like every email (`X-Chat-State: alert` or `digest`).

use base64::Engine as _;
use chrono::{DateTime, TimeDelta, Utc};
use lettre::message::{Mailbox, Mailboxes};
use sha2::{Digest, Sha256};

use crate::domain::{
    Email,
    thread::{self, Thread},
};

/// A part of a notice's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
    Paragraph(String),
    /// Items, each a line and lines of detail under it.
    List(Vec<(String, Vec<String>)>),
}

/// A notice, in plain data.
pub struct Notice<'a> {
    /// `alert`, `digest`: its `X-Chat-State`.
    pub kind: &'a str,
    /// Its thread's key (`alert:BOT`, `digest:KEY:DAY`, ...): the identifier in the subject, the
    /// Message-ID's and the Outlook conversation's.
    pub key: &'a str,
    /// What this email of the thread is, in its Message-ID: retried, it keeps it.
    pub part: &'a str,
    /// The bot it is about, id and name; none for one about several.
    pub bot: Option<(&'a str, &'a str)>,
    /// The subject of the thread's first email, before its identifier.
    pub title: &'a str,
    pub thread: &'a Thread,
    pub body: Vec<Block>,
    pub now: DateTime<Utc>,
    pub from: &'a Mailbox,
    pub to: &'a [Mailbox],
    pub cc: &'a [Mailbox],
    pub domain: &'a str,
}

/// Pure: the email of a notice.
pub fn compose(n: &Notice) -> Email {
    let identifier = thread::identifier(n.key);
    let subject = n.thread.reply_subject().unwrap_or_else(|| thread::subject(n.title, &identifier));
    let digest = Sha256::digest(n.key.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    let part: String = n.part.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' }).collect();
    let mut headers = match n.bot {
        Some((id, name)) => super::filter_headers(n.kind, id, name, &subject, n.domain),
        None => vec![
            ("X-Chat-State".to_owned(), n.kind.to_owned()),
            ("List-Id".to_owned(), format!("<{}.chat-notifier.{}>", n.kind, n.domain)),
            ("Thread-Topic".to_owned(), subject.strip_prefix("Re: ").unwrap_or(&subject).to_owned()),
        ],
    };
    let index = thread::thread_index(n.key, n.thread.index.as_deref(), n.now);
    headers.push(("Thread-Index".to_owned(), base64::engine::general_purpose::STANDARD.encode(index)));
    Email {
        message_id: format!("<{}.{hex}.{part}@{}>", n.kind, n.domain),
        date: n.now,
        from: n.from.clone(),
        to: n.to.iter().cloned().collect::<Mailboxes>(),
        cc: n.cc.iter().cloned().collect::<Mailboxes>(),
        reply_to: None,
        in_reply_to: n.thread.in_reply_to().map(str::to_owned),
        references: n.thread.references(),
        headers,
        text: text(&n.body),
        html: html(&subject, &n.body),
        subject,
    }
}

fn text(body: &[Block]) -> String {
    let mut out = String::new();
    for block in body {
        match block {
            Block::Paragraph(p) => out.push_str(p),
            Block::List(items) => {
                for (i, (line, details)) in items.iter().enumerate() {
                    if i > 0 {
                        out.push('\n');
                    }
                    out.push_str(&format!("- {line}\n"));
                    for d in details {
                        out.push_str(&format!("  {d}\n"));
                    }
                }
            }
        }
        out.push_str("\n\n");
    }
    out.push_str("--\nSent by chat-notifier.\n");
    out
}

fn html(subject: &str, body: &[Block]) -> String {
    let mut out = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title></head>\n\
         <body style=\"font-family: sans-serif; line-height: 1.4\">\n",
        escape(subject)
    );
    for block in body {
        match block {
            Block::Paragraph(p) => out.push_str(&format!("<p>{}</p>\n", escape(p).replace('\n', "<br>"))),
            Block::List(items) => {
                out.push_str("<ul>\n");
                for (line, details) in items {
                    out.push_str(&format!("<li>{}", escape(line)));
                    for d in details {
                        out.push_str(&format!("<br><small>{}</small>", escape(d)));
                    }
                    out.push_str("</li>\n");
                }
                out.push_str("</ul>\n");
            }
        }
    }
    out.push_str("<p style=\"color: #666\">Sent by chat-notifier.</p>\n</body></html>\n");
    out
}

/// Recipients stored as text (in the outbox, in a digest's route); one that does not parse
/// back is no recipient.
pub fn mailboxes(stored: &str) -> Vec<Mailbox> {
    stored.parse::<Mailboxes>().map(|m| m.into_iter().collect()).unwrap_or_default()
}

/// Text made safe for HTML, as an element's content or an attribute's value.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// "6 h 3 min", "2 d 4 h", "45 min": a span as an owner reads it.
pub fn span(d: TimeDelta) -> String {
    let minutes = d.num_minutes().max(0);
    let (days, hours, mins) = (minutes / 1440, minutes / 60 % 24, minutes % 60);
    match (days, hours, mins) {
        (0, 0, m) => format!("{m} min"),
        (0, h, 0) => format!("{h} h"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, 0, _) => format!("{d} d"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice<'a>(thread: &'a Thread, from: &'a Mailbox, to: &'a [Mailbox], body: Vec<Block>) -> Notice<'a> {
        Notice {
            kind: "alert",
            key: "alert:lead",
            part: "silent.1790000000000",
            bot: Some(("lead", "Lead <Bot>")),
            title: "Lead Bot: no chats recorded",
            thread,
            body,
            now: DateTime::from_timestamp(1_790_000_000, 0).unwrap(),
            from,
            to,
            cc: &[],
            domain: "example.com",
        }
    }

    #[test]
    fn a_notice_threads_and_escapes_like_any_email() {
        let from: Mailbox = "n@example.com".parse().unwrap();
        let to = ["o@example.com".parse().unwrap()];
        let body = vec![
            Block::Paragraph("No chats for <script>".into()),
            Block::List(vec![("#A Jane & co".into(), vec!["email: j@x.co".into()])]),
        ];
        let first = compose(&notice(&Thread::default(), &from, &to, body.clone()));
        assert_eq!(first.subject, format!("Lead Bot: no chats recorded [#{}]", thread::identifier("alert:lead")));
        assert!(
            first.message_id.starts_with("<alert.") && first.message_id.ends_with(".silent.1790000000000@example.com>")
        );
        assert!(first.html.contains("No chats for &lt;script&gt;") && !first.html.contains("<script>"));
        assert!(first.html.contains("#A Jane &amp; co"));
        assert!(first.text.contains("- #A Jane & co\n  email: j@x.co\n"), "{}", first.text);
        let thread =
            Thread { subject: Some(first.subject.clone()), message_ids: vec![first.message_id.clone()], index: None };
        let second = compose(&notice(&thread, &from, &to, body));
        assert_eq!(second.subject, format!("Re: {}", first.subject));
        assert_eq!(second.in_reply_to.as_deref(), Some(first.message_id.as_str()));
        assert_eq!(span(TimeDelta::minutes(363)), "6 h 3 min");
        assert_eq!(span(TimeDelta::minutes(45)), "45 min");
        assert_eq!(span(TimeDelta::hours(52)), "2 d 4 h");
    }
}
