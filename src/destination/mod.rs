//! Destinations beside email: where a notification goes once it is queued (a signed webhook, a
//! Slack channel, a Discord forum), behind one trait, as transports are for email. What is sent is one JSON
//! document per notification (`document.rs`, schema version 1), made when the notification is
//! decided and stored with it, so that every try sends the same bytes under the same
//! idempotency key; Slack's message is made from that document when it goes.
//!
//! Each kind says what an answer means for the notification (`Failure`): delivered, refused
//! for itself (counts toward `max_attempts`), the destination down or asking for room (no
//! attempt counted, the rest waits), lost after it was sent (counts: the receiver may have it,
//! and the retry carries the same key).

pub mod discord;
pub mod document;
pub mod http;
pub mod slack;
pub mod webhook;

use std::time::Duration;

use anyhow::{Context, Result};

use crate::config::{DestinationConfig, DestinationKind};

/// A notification as it goes to one destination.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    pub conversation_id: &'a str,
    pub state: &'a str,
    /// The idempotency key, the same on every try.
    pub key: &'a str,
    /// The JSON document (`document::Document`), as stored.
    pub document: &'a str,
    /// The thread the conversation has at this destination (Slack's `ts` of its first message).
    pub thread: Option<&'a str>,
    /// The conversation's first notification went, but no usable thread came back: this one goes
    /// as a message of its own, saying so.
    pub thread_lost: bool,
}

/// A notification delivered; the thread it started, where the destination threads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sent {
    pub root: Option<String>,
    /// A first notification delivered whose answer gave no usable thread (Slack's `ok: true`
    /// without a `ts` of Slack's form, Discord's 204 without the post's id): why, in words.
    pub unthreaded: Option<String>,
}

/// The note a notification carries when its conversation's thread was lost at a destination.
pub const THREAD_LOST_NOTE: &str = "chat-notifier could not keep this chat's thread here (the first message's answer gave no thread id): \
     its notifications come as messages of their own";

/// Why a notification did not go, as the delivery loop needs to tell it apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The destination is down (no connection, a 5xx, Slack's internal error): no fault of the
    /// notification's, no attempt counted; the rest of this destination waits for the next run,
    /// not before `retry_after` if the server said.
    Unavailable { reason: String, retry_after: Option<Duration> },
    /// The destination asks for room (429, Slack's `ratelimited`): no attempt counted; the rest
    /// waits, not before `retry_after`.
    Throttled { reason: String, retry_after: Option<Duration> },
    /// Refused for good (another 4xx, a redirect, Slack's `ok: false`): counts toward
    /// `max_attempts`; the others go on.
    Rejected(String),
    /// Sent, and then no complete answer (the deadline passed, the connection closed mid-answer):
    /// the receiver may have it. Counts toward `max_attempts`; the rest waits for the next run.
    Lost(String),
}

impl Failure {
    pub fn reason(&self) -> &str {
        match self {
            Failure::Unavailable { reason, .. } | Failure::Throttled { reason, .. } => reason,
            Failure::Rejected(reason) | Failure::Lost(reason) => reason,
        }
    }

    /// The same failure, each of the destination's secrets in its reason written `***`.
    pub fn masked(self, secrets: &Secrets) -> Failure {
        match self {
            Failure::Unavailable { reason, retry_after } => {
                Failure::Unavailable { reason: secrets.mask(&reason), retry_after }
            }
            Failure::Throttled { reason, retry_after } => {
                Failure::Throttled { reason: secrets.mask(&reason), retry_after }
            }
            Failure::Rejected(reason) => Failure::Rejected(secrets.mask(&reason)),
            Failure::Lost(reason) => Failure::Lost(secrets.mask(&reason)),
        }
    }
}

/// A destination's secrets (its URL's path and query, a token, a signing secret, the signature
/// a request carried), written `***` wherever a server's answer repeats them, before the text is
/// logged, shown or stored: a receiver that echoes its request must not put them in a cron mail
/// or the state (as the SMTP client masks echoed credentials).
#[derive(Debug, Clone, Default)]
pub struct Secrets(Vec<String>);

impl Secrets {
    /// Parts of a URL's path or query at least this long are masked on their own too (a catch
    /// hook's token echoed without the rest of the path); shorter ones (`api`, `hooks`) only
    /// within the whole.
    const PART_MIN: usize = 8;

    pub fn add(&mut self, secret: &str) {
        let secret = secret.trim();
        if !secret.is_empty() && !self.0.iter().any(|s| s == secret) {
            self.0.push(secret.to_owned());
            // Longest first: a secret is never left half-masked by a shorter one inside it.
            self.0.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// A URL's path and query: the whole, the path and the query each, and each long part of them.
    pub fn add_url(&mut self, url: &http::Url) {
        if url.target.trim_matches(['/', '?']).is_empty() {
            return;
        }
        self.add(&url.target);
        let (path, query) = url.target.split_once('?').unwrap_or((&url.target, ""));
        if !path.trim_matches('/').is_empty() {
            self.add(path.trim_end_matches('/'));
        }
        self.add(query);
        for part in path.split('/').chain(query.split(['&', '=', ';'])) {
            if part.len() >= Self::PART_MIN {
                self.add(part);
            }
        }
    }

    /// `text`, each secret in it written `***`.
    pub fn mask(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.0 {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "***");
            }
        }
        text
    }
}

/// One destination, ready to send.
pub trait Destination {
    fn name(&self) -> &str;
    fn kind(&self) -> DestinationKind;
    /// The outer error stops the run (stdout closed under a preview); the inner one is the
    /// notification's.
    fn send(&mut self, n: &Outgoing) -> Result<Result<Sent, Failure>>;
    /// Checks that the destination can be reached and its credentials hold, sending no
    /// notification; says what it found.
    fn check(&mut self) -> Result<String>;
}

/// The destinations of the config, secrets read, ready to send.
pub fn open(configs: &[DestinationConfig]) -> Result<Vec<Box<dyn Destination>>> {
    configs
        .iter()
        .map(|c| -> Result<Box<dyn Destination>> {
            Ok(match c.kind {
                DestinationKind::Webhook => Box::new(webhook::Webhook::open(c)?),
                DestinationKind::Slack => Box::new(slack::Slack::open(c)?),
                DestinationKind::SlackWebhook => Box::new(slack::IncomingWebhook::open(c)?),
                DestinationKind::Discord => Box::new(discord::Discord::open(c)?),
            })
        })
        .collect()
}

/// What a destination would be sent for a notification, secrets left out: for `run --dry-run`.
pub fn preview(config: &DestinationConfig, n: &Outgoing) -> Result<String> {
    Ok(match config.kind {
        DestinationKind::Webhook => webhook::preview(n),
        DestinationKind::Slack => slack::preview(config, n)?,
        DestinationKind::SlackWebhook => slack::preview_incoming(n)?,
        DestinationKind::Discord => discord::preview(n)?,
    })
}

/// `run --dry-run`'s destination: prints what each notification would send, secrets out, and
/// sends nothing (on the dry run's scratch copy of the state).
pub struct Preview {
    config: DestinationConfig,
    out: Box<dyn std::io::Write>,
}

impl Preview {
    pub fn new(config: &DestinationConfig, out: Box<dyn std::io::Write>) -> Self {
        Preview { config: config.clone(), out }
    }
}

impl Destination for Preview {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn kind(&self) -> DestinationKind {
        self.config.kind
    }

    fn send(&mut self, n: &Outgoing) -> Result<Result<Sent, Failure>> {
        let shown = match preview(&self.config, n) {
            Ok(shown) => shown,
            Err(e) => return Ok(Err(Failure::Rejected(format!("{e:#}")))),
        };
        let head = format!(
            "=== {} {:?}: {} notification for {} ===\n",
            self.config.kind.as_str(),
            self.config.name,
            n.state,
            about(n.conversation_id)
        );
        let written = self.out.write_all(head.as_bytes()).and_then(|()| self.out.write_all(shown.as_bytes()));
        written.and_then(|()| self.out.flush()).context("writing to stdout")?;
        Ok(Ok(Sent::default()))
    }

    fn check(&mut self) -> Result<String> {
        Ok("previewed".into())
    }
}

/// The event a notification announces (its document's `event`): `conversation.completed`,
/// ..., `bot.silent`, `bot.active`.
pub fn event(n: &Outgoing) -> String {
    #[derive(serde::Deserialize)]
    struct Event {
        event: String,
    }
    serde_json::from_str::<Event>(n.document).map_or_else(|_| format!("conversation.{}", n.state), |e| e.event)
}

/// What a notification is about, for a log line: a conversation's identifier, the bot an alarm
/// is about, or a flood summary.
pub fn about(conversation_id: &str) -> String {
    match conversation_id.strip_prefix("alert:") {
        Some(bot) => format!("bot {bot:?}"),
        None if conversation_id.starts_with("summary:") => "the chats over the burst".to_owned(),
        None if conversation_id.starts_with("digest:") => "the chats in the digest".to_owned(),
        None => format!("#{}", crate::domain::thread::identifier(conversation_id)),
    }
}

/// `Retry-After` (seconds, or an HTTP date), at most a day: a server cannot park a queue for
/// longer with one header.
pub fn retry_after(value: Option<&str>, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value?.trim();
    let secs = match value.parse::<u64>() {
        Ok(secs) => secs,
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
            (at.to_utc() - now).num_seconds().max(0) as u64
        }
    };
    Some(Duration::from_secs(secs.min(86_400)))
}

/// HMAC-SHA256 (RFC 2104) of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_whole_and_in_their_long_parts() {
        let mut secrets = Secrets::default();
        secrets.add_url(&http::Url::parse("https://h.example/hooks/SUPERSECRETPATH?k=QSECRETVALUE").unwrap());
        secrets.add("xoxb-TOKENSECRET-123");
        secrets.add("");
        let said = "400 bad request to /hooks/SUPERSECRETPATH?k=QSECRETVALUE; path /hooks/SUPERSECRETPATH; \
                    QSECRETVALUE alone; Bearer xoxb-TOKENSECRET-123; hooks are fine";
        assert_eq!(secrets.mask(said), "400 bad request to ***; path ***; *** alone; Bearer ***; hooks are fine");
        let mut none = Secrets::default();
        none.add_url(&http::Url::parse("http://127.0.0.1:9/").unwrap());
        assert_eq!(none.mask("a / b"), "a / b", "a bare / is no secret");
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block is hashed first.
        assert_eq!(
            hex(&hmac_sha256(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn retry_after_in_seconds_or_a_date_and_at_most_a_day() {
        let now: chrono::DateTime<chrono::Utc> = "2026-11-24T10:00:00Z".parse().unwrap();
        assert_eq!(retry_after(Some("120"), now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(Some("Tue, 24 Nov 2026 10:01:30 GMT"), now), Some(Duration::from_secs(90)));
        assert_eq!(retry_after(Some("99999999"), now), Some(Duration::from_secs(86_400)));
        assert_eq!(retry_after(Some("soon"), now), None);
        assert_eq!(retry_after(None, now), None);
    }
}
