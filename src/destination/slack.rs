//! Slack, with a bot token: a conversation's first notification is a message in the channel
//! (Block Kit: who, what they gave, where they stopped, a short transcript, the identifier),
//! each later one a reply in that message's thread (`thread_ts`, kept in the state as a
//! Message-ID is), a completion optionally broadcast to the channel too. At most one message a
//! second to the channel (Slack's limit: waited for, never dropped); `ratelimited` waits for its
//! `Retry-After` when it is short, else the rest goes next run; `ok: false` errors are this
//! notification refused, except Slack's own failures, which are an outage.
//!
//! With only an incoming webhook's URL (`kind = "slack-webhook"`), the same message goes to the
//! channel the URL was made for, each notification its own: such a URL cannot reply in a
//! thread.
//!
//! Everything from the visitor is escaped for Slack's mrkdwn (`&`, `<`, `>`), so a name cannot
//! mention `@channel` or make a link, and cut to Slack's sizes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use chrono::Utc;
use serde_json::{Value, json};

use super::document::{self, AlertDocument, Document, Listing};
use super::http::{self, Url};
use super::{Destination, Failure, Outgoing, Secrets, Sent, retry_after};
use crate::config::{DestinationConfig, DestinationKind};

/// Slack's limits: a section's text, a field's, a message's fallback text.
const SECTION_CHARS: usize = 3000;
const FIELD_CHARS: usize = 2000;
const TEXT_CHARS: usize = 4000;
/// Fields one section shows.
const FIELDS: usize = 10;
/// Blocks a flood summary fills with its list, within Slack's 50 a message.
const SUMMARY_BLOCKS: usize = 45;
/// Transcript lines a message shows: the latest.
const LINES: usize = 8;
/// One message a second to a channel.
const PACE: Duration = Duration::from_secs(1);
/// A `Retry-After` up to this long is waited for within the run.
const WAIT_AT_MOST: Duration = Duration::from_secs(30);

pub struct Slack {
    name: String,
    api: Url,
    token: String,
    /// The token, masked in what Slack says (the API URL is no secret).
    secrets: Secrets,
    channel: String,
    reply_broadcast: bool,
    timeout: Duration,
    tls: Arc<rustls::ClientConfig>,
    last_post: Option<Instant>,
}

impl Slack {
    fn post(&mut self, n: &Outgoing) -> Result<Sent, Failure> {
        let body = message(&self.channel, self.reply_broadcast, n)
            .map_err(|e| Failure::Rejected(format!("its document cannot be read back: {e}")))?;
        let mut waited = false;
        loop {
            if let Some(last) = self.last_post {
                std::thread::sleep(PACE.saturating_sub(last.elapsed()));
            }
            self.last_post = Some(Instant::now());
            match self.call("chat.postMessage", &body) {
                Ok(answer) => {
                    if n.thread.is_some() || n.thread_lost {
                        return Ok(Sent::default());
                    }
                    // The thread's root, only in Slack's form: an answer never stores anything else.
                    return Ok(match answer.get("ts").and_then(Value::as_str) {
                        Some(ts) if usable_ts(ts) => Sent { root: Some(ts.to_owned()), unthreaded: None },
                        Some(_) => Sent {
                            root: None,
                            unthreaded: Some("Slack answered ok with a ts that is not Slack's (digits.digits)".into()),
                        },
                        None => Sent { root: None, unthreaded: Some("Slack answered ok without a ts".into()) },
                    });
                }
                // A short wait asked for is waited for, once: never dropped.
                Err(Failure::Throttled { retry_after: Some(wait), .. }) if !waited && wait <= WAIT_AT_MOST => {
                    std::thread::sleep(wait);
                    waited = true;
                }
                Err(failure) => return Err(failure),
            }
        }
    }

    pub fn open(config: &DestinationConfig) -> Result<Self> {
        let api = Url::parse(config.api_url())
            .map_err(|e| anyhow::anyhow!("destinations (name = {:?}).api_url: {e}", config.name))?;
        let token = config.secret("token")?;
        let mut secrets = Secrets::default();
        secrets.add(&token);
        Ok(Slack {
            name: config.name.clone(),
            api,
            token,
            secrets,
            channel: config.channel.clone().unwrap_or_default(),
            reply_broadcast: config.reply_broadcast,
            timeout: config.timeout(),
            tls: http::tls_config(),
            last_post: None,
        })
    }

    fn call(&self, method: &str, body: &Value) -> Result<Value, Failure> {
        let url = self.api.join(method);
        let shown = format!("Slack {method} at {}", self.api.shown());
        let headers = [("Authorization", format!("Bearer {}", self.token))];
        let body = body.to_string();
        let r = match http::post(&url, &headers, body.as_bytes(), self.timeout, &self.tls) {
            Ok(r) => r,
            Err(http::Error::Unreachable(e)) => {
                return Err(Failure::Unavailable { reason: format!("{shown}: {e}"), retry_after: None });
            }
            Err(http::Error::Lost(e)) => return Err(Failure::Lost(format!("{shown}: {e}"))),
        };
        let retry = retry_after(r.header("retry-after"), Utc::now());
        let answer: Option<Value> = serde_json::from_slice(&r.body).ok();
        let error = answer
            .as_ref()
            .and_then(|a| a.get("error"))
            .and_then(Value::as_str)
            .map(|e| crate::domain::text::header(&self.secrets.mask(e), 100));
        match (r.status, &answer) {
            (200..=299, Some(a)) if a.get("ok") == Some(&Value::Bool(true)) => Ok(a.clone()),
            (429, _) => Err(Failure::Throttled { reason: format!("{shown}: ratelimited"), retry_after: retry }),
            (500..=599, _) => {
                Err(Failure::Unavailable { reason: format!("{shown}: HTTP {}", r.status), retry_after: retry })
            }
            (200..=299, Some(_)) => {
                let error = error.unwrap_or_else(|| "no error named".to_owned());
                let reason = format!("{shown}: {error}");
                Err(match error.as_str() {
                    "ratelimited" => Failure::Throttled { reason, retry_after: retry },
                    "internal_error" | "fatal_error" | "service_unavailable" | "request_timeout" => {
                        Failure::Unavailable { reason, retry_after: retry }
                    }
                    _ => Failure::Rejected(reason),
                })
            }
            (200..=299, None) => {
                Err(Failure::Lost(format!("{shown}: an answer that is no JSON: {}", r.said(&self.secrets))))
            }
            (status, _) => Err(Failure::Rejected(format!("{shown}: HTTP {status}: {}", r.said(&self.secrets)))),
        }
    }
}

/// A message's `ts` as Slack writes it (`1790000000.000100`): digits, a dot, digits, bounded.
fn usable_ts(ts: &str) -> bool {
    let digits = |s: &str| (1..=16).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    ts.split_once('.').is_some_and(|(seconds, micros)| digits(seconds) && digits(micros))
}

/// Slack's mrkdwn, made safe: the three characters it reads as markup for links and mentions.
fn escape(s: &str) -> String {
    crate::domain::text::body(s).replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// At most `max` characters, with an ellipsis.
fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max.saturating_sub(1)) {
        Some((end, _)) if s.chars().count() > max => format!("{}…", &s[..end]),
        _ => s.to_owned(),
    }
}

/// The alarm's message: one line, in the bot's alarm thread.
fn alert_message(channel: &str, n: &Outgoing) -> Result<Value> {
    let a: AlertDocument = serde_json::from_str(n.document)?;
    let icon = if a.event == "bot.silent" { ":warning:" } else { ":white_check_mark:" };
    let text = cut(&format!("{icon} {}", escape(&a.message)), TEXT_CHARS);
    let mut blocks =
        vec![json!({ "type": "section", "text": { "type": "mrkdwn", "text": cut(&text, SECTION_CHARS) } })];
    if n.thread_lost {
        blocks.push(json!({ "type": "context", "elements": [{ "type": "mrkdwn", "text": super::THREAD_LOST_NOTE }] }));
    }
    let mut body = json!({
        "channel": channel,
        "text": text,
        "blocks": blocks,
        "metadata": { "event_type": "chat_notifier_notification", "event_payload": { "id": a.id, "state": a.event } },
    });
    if let Some(ts) = n.thread {
        body["thread_ts"] = json!(ts);
    }
    Ok(body)
}

/// The flood guard's summary, or a digest: one message in the channel listing the chats (never a
/// thread per chat), as many as Slack's blocks hold, then how many more (all are in the
/// document's list).
fn summary_message(channel: &str, n: &Outgoing) -> Result<Value> {
    let s: Listing = serde_json::from_str(n.document)?;
    let count = s.conversations.len();
    let headline = escape(&s.title);
    let mut blocks = vec![
        json!({ "type": "section", "text": { "type": "mrkdwn", "text": format!("*{headline}*") } }),
        json!({ "type": "context", "elements": [{ "type": "mrkdwn", "text": cut(&escape(&s.message), SECTION_CHARS) }] }),
    ];
    let mut section = String::new();
    let mut shown = 0;
    for item in &s.conversations {
        let visitor = crate::domain::text::line(&item.visitor).split_whitespace().collect::<Vec<_>>().join(" ");
        let line = format!(
            "• `#{}` {}, {}: {}\n",
            escape(&item.identifier),
            escape(&cut(&visitor, 100)),
            escape(&cut(&item.bot.name, 100)),
            document::what_happened(item.state)
        );
        if section.chars().count() + line.chars().count() > SECTION_CHARS {
            if blocks.len() >= SUMMARY_BLOCKS {
                break;
            }
            blocks.push(json!({ "type": "section", "text": { "type": "mrkdwn", "text": section.trim_end() } }));
            section.clear();
        }
        section.push_str(&line);
        shown += 1;
    }
    if !section.is_empty() {
        blocks.push(json!({ "type": "section", "text": { "type": "mrkdwn", "text": section.trim_end() } }));
    }
    if shown < count {
        blocks.push(json!({
            "type": "context",
            "elements": [{ "type": "mrkdwn", "text": format!("…and {} more: `chat-notifier status` lists them, \
                `chat-notifier preview IDENTIFIER` shows any", count - shown) }]
        }));
    }
    let mut body = json!({
        "channel": channel,
        "text": headline,
        "blocks": blocks,
        "unfurl_links": false,
        "unfurl_media": false,
        "metadata": { "event_type": "chat_notifier_notification", "event_payload": { "id": s.id, "state": s.event } },
    });
    if let Some(ts) = n.thread {
        body["thread_ts"] = json!(ts);
    }
    Ok(body)
}

/// The message a notification is, as `chat.postMessage` takes it (the token aside).
pub fn message(channel: &str, reply_broadcast: bool, n: &Outgoing) -> Result<Value> {
    if n.state == "alert" {
        return alert_message(channel, n);
    }
    if n.state == "summary" || n.state == "digest" {
        return summary_message(channel, n);
    }
    let d: Document = serde_json::from_str(n.document)?;
    let identifier = &d.conversation.identifier;
    let what = document::what_happened(d.state);
    let headline = format!("{}: {} {what}", escape(&d.bot.name), escape(&d.visitor.display));
    // The fallback text (notifications, screen readers) is mrkdwn too.
    let text = cut(&format!("{headline} [#{identifier}]"), TEXT_CHARS);
    let mut blocks = vec![json!({
        "type": "section",
        "text": { "type": "mrkdwn", "text": cut(&format!("*{headline}*  `#{identifier}`"), SECTION_CHARS) }
    })];
    let fields: Vec<Value> = d
        .visitor
        .fields
        .iter()
        .take(FIELDS)
        .map(|f| {
            let value = crate::domain::text::line(&f.value).split_whitespace().collect::<Vec<_>>().join(" ");
            json!({ "type": "mrkdwn", "text": cut(&format!("*{}*\n{}", escape(&f.name), escape(&value)), FIELD_CHARS) })
        })
        .collect();
    if !fields.is_empty() {
        blocks.push(json!({ "type": "section", "fields": fields }));
    }
    if d.state.as_str() != "completed"
        && let Some(question) = &d.question
    {
        let step = d.step.as_deref().map(|s| format!(" ({})", escape(s))).unwrap_or_default();
        blocks.push(json!({
            "type": "context",
            "elements": [{ "type": "mrkdwn", "text": cut(&format!("Stopped at{step}: {}", escape(question)), SECTION_CHARS) }]
        }));
    }
    let lines = &d.transcript.messages;
    let shown = &lines[lines.len().saturating_sub(LINES)..];
    let mut transcript = String::new();
    if lines.len() > shown.len() || d.transcript.omitted > 0 {
        transcript
            .push_str(&format!("_{} earlier messages not shown_\n", lines.len() - shown.len() + d.transcript.omitted));
    }
    for line in shown {
        let who = if line.sender == "bot" { "Bot" } else { "Visitor" };
        let body = crate::domain::text::line(&line.body).split_whitespace().collect::<Vec<_>>().join(" ");
        transcript.push_str(&format!("*{who}:* {}\n", escape(&cut(&body, 300))));
    }
    if !transcript.is_empty() {
        blocks.push(json!({ "type": "section", "text": { "type": "mrkdwn", "text": cut(transcript.trim_end(), SECTION_CHARS) } }));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{ "type": "mrkdwn", "text": format!("chat-notifier · {} · `#{identifier}`", d.state.as_str()) }]
    }));
    if n.thread_lost {
        blocks.push(json!({ "type": "context", "elements": [{ "type": "mrkdwn", "text": super::THREAD_LOST_NOTE }] }));
    }
    let mut body = json!({
        "channel": channel,
        "text": text,
        "blocks": blocks,
        "unfurl_links": false,
        "unfurl_media": false,
        // The idempotency key, where a workflow reading the channel can find it.
        "metadata": { "event_type": "chat_notifier_notification", "event_payload": { "id": d.id, "state": d.state.as_str() } },
    });
    if let Some(ts) = n.thread {
        body["thread_ts"] = json!(ts);
        if reply_broadcast && d.state.as_str() == "completed" {
            body["reply_broadcast"] = json!(true);
        }
    }
    Ok(body)
}

/// What `run --dry-run` shows: the `chat.postMessage` body, exactly (the token goes in a header).
pub fn preview(config: &DestinationConfig, n: &Outgoing) -> Result<String> {
    let body = message(config.channel.as_deref().unwrap_or_default(), config.reply_broadcast, n)?;
    Ok(format!(
        "POST {}/chat.postMessage (Authorization: Bearer <token from token_env / token_file>)\n\n{}\n",
        config.api_url(),
        serde_json::to_string_pretty(&body)?
    ))
}

impl Destination for Slack {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> DestinationKind {
        DestinationKind::Slack
    }

    fn send(&mut self, n: &Outgoing) -> Result<Result<Sent, Failure>> {
        Ok(self.post(n).map_err(|failure| failure.masked(&self.secrets)))
    }

    fn check(&mut self) -> Result<String> {
        match self.call("auth.test", &json!({})) {
            Ok(answer) => {
                let get = |k: &str| {
                    answer
                        .get(k)
                        .and_then(Value::as_str)
                        .map(|v| crate::domain::text::header(&self.secrets.mask(v), 80))
                };
                Ok(format!(
                    "token valid (auth.test): {} in {}",
                    get("user").unwrap_or_else(|| "a bot".into()),
                    get("team").unwrap_or_else(|| "its workspace".into())
                ))
            }
            Err(failure) => bail!("{}", failure.masked(&self.secrets).reason()),
        }
    }
}

/// The message for an incoming webhook: the same blocks and text, without what only the Web API
/// takes (the channel, a thread, metadata).
fn incoming_message(n: &Outgoing) -> Result<Value> {
    let mut body = message("", false, &Outgoing { thread: None, ..*n })?;
    if let Some(fields) = body.as_object_mut() {
        for key in ["channel", "metadata"] {
            fields.remove(key);
        }
    }
    Ok(body)
}

/// What `run --dry-run` shows for an incoming webhook: the body, exactly (the URL is a secret).
pub fn preview_incoming(n: &Outgoing) -> Result<String> {
    Ok(format!(
        "POST (the incoming webhook's URL from url_env / url_file)\n\n{}\n",
        serde_json::to_string_pretty(&incoming_message(n)?)?
    ))
}

/// A Slack incoming webhook: plain messages in its channel, no threads.
pub struct IncomingWebhook {
    name: String,
    endpoint: http::Endpoint,
    last_post: Option<Instant>,
}

impl IncomingWebhook {
    pub fn open(config: &DestinationConfig) -> Result<Self> {
        Ok(IncomingWebhook { name: config.name.clone(), endpoint: http::Endpoint::open(config)?, last_post: None })
    }

    fn post(&mut self, n: &Outgoing) -> Result<Sent, Failure> {
        let body =
            incoming_message(n).map_err(|e| Failure::Rejected(format!("its document cannot be read back: {e}")))?;
        if let Some(last) = self.last_post {
            std::thread::sleep(PACE.saturating_sub(last.elapsed()));
        }
        self.last_post = Some(Instant::now());
        let shown = format!("Slack incoming webhook {}", self.endpoint.url.shown());
        let r = match http::post(
            &self.endpoint.url,
            &[],
            body.to_string().as_bytes(),
            self.endpoint.timeout,
            &self.endpoint.tls,
        ) {
            Ok(r) => r,
            Err(http::Error::Unreachable(e)) => {
                return Err(Failure::Unavailable { reason: format!("{shown}: {e}"), retry_after: None });
            }
            Err(http::Error::Lost(e)) => return Err(Failure::Lost(format!("{shown}: {e}"))),
        };
        let reason = format!("{shown} answered {}: {}", r.status, r.said(&self.endpoint.secrets));
        let retry = retry_after(r.header("retry-after"), Utc::now());
        match r.status {
            200..=299 => Ok(Sent::default()),
            429 => Err(Failure::Throttled { reason, retry_after: retry }),
            500..=599 => Err(Failure::Unavailable { reason, retry_after: retry }),
            _ => Err(Failure::Rejected(reason)),
        }
    }
}

impl Destination for IncomingWebhook {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> DestinationKind {
        DestinationKind::SlackWebhook
    }

    fn send(&mut self, n: &Outgoing) -> Result<Result<Sent, Failure>> {
        Ok(self.post(n).map_err(|failure| failure.masked(&self.endpoint.secrets)))
    }

    fn check(&mut self) -> Result<String> {
        self.endpoint.probe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_ts_of_slacks_form_is_a_thread() {
        assert!(usable_ts("1790000000.000100"));
        for bad in ["", "1790000000", "1790000000.", ".1", "1790000000.0001\r\nX", "1e9.1", &"9".repeat(40)] {
            assert!(!usable_ts(bad), "{bad:?}");
        }
        assert!(!usable_ts(&format!("1.{}", "0".repeat(17))), "bounded");
    }
    use crate::destination::document::{BotDoc, SummaryItem, summary};
    use crate::domain::ChatState;

    /// A summary of thousands of chats stays within Slack's sizes, and says how many it could
    /// not show; Discord's within its 2,000 characters.
    #[test]
    fn a_long_flood_summary_stays_within_slacks_and_discords_limits() {
        let items = (0..3000)
            .map(|i| SummaryItem {
                id: format!("c{i}"),
                identifier: format!("ID{i:04}"),
                state: ChatState::Abandoned,
                bot: BotDoc { id: "lead".into(), name: "Lead Bot".into() },
                visitor: format!("Visitor {i} {}", "x".repeat(200)),
                notification_id: format!("cn1_{i}"),
            })
            .collect();
        let now = "2026-11-24T10:00:00Z".parse().unwrap();
        let text = serde_json::to_string(&summary(items, 50, 3050, now)).unwrap();
        let n = Outgoing {
            conversation_id: "summary:1",
            state: "summary",
            key: "k",
            document: &text,
            thread: None,
            thread_lost: false,
        };
        let body = message("C1", false, &n).unwrap();
        let blocks = body["blocks"].as_array().unwrap();
        assert!(blocks.len() <= 50, "{}", blocks.len());
        assert!(blocks.iter().all(|b| b["text"]["text"].as_str().is_none_or(|t| t.chars().count() <= SECTION_CHARS)));
        let shown = serde_json::to_string(blocks).unwrap().matches("`#ID").count();
        let more = blocks.last().unwrap()["elements"][0]["text"].as_str().unwrap();
        assert!(more.starts_with(&format!("…and {} more", 3000 - shown)), "{more}");
        assert!(shown > 100, "{shown}");
        let discord = crate::destination::discord::message(&n).unwrap();
        let content = discord["content"].as_str().unwrap();
        assert!(content.chars().count() <= 2000 && content.contains("more: `chat-notifier status`"), "{content}");
        assert_eq!(discord["thread_name"], "3000 more chats in one run, listed here");
    }
}
