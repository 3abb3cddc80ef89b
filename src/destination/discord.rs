//! Discord, through a forum channel's webhook: a conversation's first notification starts a
//! post in the forum (`thread_name`: the bot, the visitor and the identifier), each later one is
//! a message in that post (`thread_id`, the post's id, kept in the state as a Message-ID is). The
//! webhook's URL holds its token: a secret. Messages ping no one (`allowed_mentions` empty),
//! embed no link, escape Discord's markdown in what the visitor wrote, and stay within its
//! 2,000 characters; a post's title within 100.

use std::time::{Duration, Instant};

use anyhow::Result;
use chrono::Utc;
use serde_json::{Value, json};

use super::document::{AlertDocument, Document, Listing};
use super::http::{self, Url};
use super::{Destination, Failure, Outgoing, Sent, retry_after};
use crate::config::{DestinationConfig, DestinationKind};

/// Discord's limits: a message's content, a post's title.
const CONTENT_CHARS: usize = 2000;
const TITLE_CHARS: usize = 100;
/// Transcript lines a message shows: the latest.
const LINES: usize = 8;
/// Discord allows a webhook some five messages in two seconds: one every half second stays under.
const PACE: Duration = Duration::from_millis(500);
/// `SUPPRESS_EMBEDS`: no link previews of what a visitor typed.
const SUPPRESS_EMBEDS: u32 = 1 << 2;

/// Discord's markdown, made inert: every character it reads as markup escaped, and the text
/// made safe (control characters, bidirectional overrides).
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in crate::domain::text::body(s).chars() {
        // Inline markup only: what is escaped here never starts a line (each line begins with
        // the message's own words), and mentions ping no one whatever they say.
        if matches!(c, '\\' | '*' | '_' | '~' | '`' | '|' | '[' | ']' | '(' | ')' | '<' | '>') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn one_line(s: &str) -> String {
    crate::domain::text::line(s).split_whitespace().collect::<Vec<_>>().join(" ")
}

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let end = s.char_indices().nth(max.saturating_sub(1)).map_or(s.len(), |(i, _)| i);
    format!("{}…", &s[..end])
}

/// The body a notification is posted with; `thread_name` when it starts the post.
pub fn message(n: &Outgoing) -> Result<Value> {
    let (title, content) = if n.state == "summary" || n.state == "digest" {
        // The flood guard's summary, or a digest: one post listing the chats, as many as a
        // message holds.
        let s: Listing = serde_json::from_str(n.document)?;
        let count = s.conversations.len();
        let title = one_line(&s.title);
        let mut content = format!("**{}**\n{}\n", escape(&title), escape(&s.message));
        let room = CONTENT_CHARS - 120;
        for (i, item) in s.conversations.iter().enumerate() {
            let line = format!(
                "- `#{}` {}, {}: {}\n",
                item.identifier.replace('`', ""),
                escape(&cut(&one_line(&item.visitor), 100)),
                escape(&cut(&one_line(&item.bot.name), 100)),
                super::document::what_happened(item.state)
            );
            if content.chars().count() + line.chars().count() > room {
                content.push_str(&format!(
                    "*…and {} more: `chat-notifier status` lists them, `chat-notifier preview IDENTIFIER` shows any*",
                    count - i
                ));
                break;
            }
            content.push_str(&line);
        }
        (title, content)
    } else if n.state == "alert" {
        let a: AlertDocument = serde_json::from_str(n.document)?;
        let icon = if a.event == "bot.silent" { "⚠️" } else { "✅" };
        (format!("{}: no chats recorded", a.bot.name), format!("{icon} {}", escape(&a.message)))
    } else {
        let d: Document = serde_json::from_str(n.document)?;
        let identifier = &d.conversation.identifier;
        let what = super::document::what_happened(d.state);
        let mut content =
            format!("**{}: {} {what}** `#{identifier}`\n", escape(&d.bot.name), escape(&one_line(&d.visitor.display)));
        for f in &d.visitor.fields {
            content.push_str(&format!("**{}**: {}\n", escape(&f.name), escape(&cut(&one_line(&f.value), 200))));
        }
        if d.state.as_str() != "completed"
            && let Some(question) = &d.question
        {
            content.push_str(&format!("Stopped at: {}\n", escape(&cut(&one_line(question), 200))));
        }
        let lines = &d.transcript.messages;
        let shown = &lines[lines.len().saturating_sub(LINES)..];
        let earlier = lines.len() - shown.len() + d.transcript.omitted;
        if earlier > 0 {
            content.push_str(&format!("*{earlier} earlier messages not shown*\n"));
        }
        for line in shown {
            let who = if line.sender == "bot" { "Bot" } else { "Visitor" };
            content.push_str(&format!("> **{who}:** {}\n", escape(&cut(&one_line(&line.body), 200))));
        }
        let title = format!("{}: {} [#{identifier}]", d.bot.name, one_line(&d.visitor.display));
        (title, content)
    };
    let content = if n.thread_lost { format!("*{}*\n{content}", super::THREAD_LOST_NOTE) } else { content };
    let mut body = json!({
        "content": cut(content.trim_end(), CONTENT_CHARS),
        "allowed_mentions": { "parse": [] },
        "flags": SUPPRESS_EMBEDS,
    });
    if n.thread.is_none() {
        // The post's title: the identifier kept whole, the names cut before it.
        let tail = title.rfind(" [#").map_or("", |i| &title[i..]);
        let head = &title[..title.len() - tail.len()];
        body["thread_name"] = json!(format!("{}{tail}", cut(head, TITLE_CHARS.saturating_sub(tail.chars().count()))));
    }
    Ok(body)
}

/// What `run --dry-run` shows: the body, exactly (the URL holds the webhook's token).
pub fn preview(n: &Outgoing) -> Result<String> {
    let target = match n.thread {
        None => "?wait=true".to_owned(),
        Some(thread) => format!("?wait=true&thread_id={thread}"),
    };
    Ok(format!(
        "POST (the webhook's URL from url_env / url_file){target}\n\n{}\n",
        serde_json::to_string_pretty(&message(n)?)?
    ))
}

pub struct Discord {
    name: String,
    endpoint: http::Endpoint,
    last_post: Option<Instant>,
}

impl Discord {
    pub fn open(config: &DestinationConfig) -> Result<Self> {
        Ok(Discord { name: config.name.clone(), endpoint: http::Endpoint::open(config)?, last_post: None })
    }

    fn post(&mut self, n: &Outgoing) -> Result<Sent, Failure> {
        let body = message(n).map_err(|e| Failure::Rejected(format!("its document cannot be read back: {e}")))?;
        // `wait=true`: Discord answers with the message, and so the post's id.
        let query = match n.thread {
            None => "wait=true".to_owned(),
            Some(thread) => {
                format!("wait=true&thread_id={}", thread.chars().filter(char::is_ascii_digit).collect::<String>())
            }
        };
        let separator = if self.endpoint.url.target.contains('?') { '&' } else { '?' };
        let url =
            Url { target: format!("{}{separator}{query}", self.endpoint.url.target), ..self.endpoint.url.clone() };
        if let Some(last) = self.last_post {
            std::thread::sleep(PACE.saturating_sub(last.elapsed()));
        }
        self.last_post = Some(Instant::now());
        let shown = format!("Discord webhook {}", self.endpoint.url.shown());
        let r = match http::post(&url, &[], body.to_string().as_bytes(), self.endpoint.timeout, &self.endpoint.tls) {
            Ok(r) => r,
            Err(http::Error::Unreachable(e)) => {
                return Err(Failure::Unavailable { reason: format!("{shown}: {e}"), retry_after: None });
            }
            Err(http::Error::Lost(e)) => return Err(Failure::Lost(format!("{shown}: {e}"))),
        };
        let answer: Option<Value> = serde_json::from_slice(&r.body).ok();
        let reason = format!("{shown} answered {}: {}", r.status, r.said(&self.endpoint.secrets));
        // Discord says how long to wait in a header, and in the body (seconds, fractional).
        let retry = retry_after(r.header("retry-after"), Utc::now()).or_else(|| {
            let secs = answer.as_ref()?.get("retry_after")?.as_f64()?;
            Some(Duration::from_secs_f64(secs.clamp(0.0, 86_400.0)))
        });
        match r.status {
            200..=299 => {
                if n.thread.is_some() || n.thread_lost {
                    return Ok(Sent::default());
                }
                // The post's id is the channel its first message is in: a Discord id (digits),
                // never anything else an answer says.
                let id = answer.as_ref().and_then(|a| a.get("channel_id")).and_then(Value::as_str);
                Ok(match id {
                    Some(id) if (1..=20).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_digit()) => {
                        Sent { root: Some(id.to_owned()), unthreaded: None }
                    }
                    Some(_) => Sent {
                        root: None,
                        unthreaded: Some(format!("{shown} answered {} with a post id that is no Discord id", r.status)),
                    },
                    None => Sent {
                        root: None,
                        unthreaded: Some(format!("{shown} answered {} without the post's id", r.status)),
                    },
                })
            }
            429 => Err(Failure::Throttled { reason, retry_after: retry }),
            500..=599 => Err(Failure::Unavailable { reason, retry_after: retry }),
            _ => Err(Failure::Rejected(reason)),
        }
    }
}

impl Destination for Discord {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> DestinationKind {
        DestinationKind::Discord
    }

    fn send(&mut self, n: &Outgoing) -> Result<Result<Sent, Failure>> {
        Ok(self.post(n).map_err(|failure| failure.masked(&self.endpoint.secrets)))
    }

    fn check(&mut self) -> Result<String> {
        self.endpoint.probe()
    }
}
