//! `chat-notifier status`: where each conversation stands, from the state (read only) and the
//! export. A summary line of counts, then one line per conversation, most urgent first.

use std::collections::HashMap;
use std::fmt::Write as _;

use anyhow::Result;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use crate::cli::StatusArgs;
use crate::config::Config;
use crate::domain::{Wanted, text, thread};
use crate::mail::render;
use crate::state::{Standing, State, StatusRow};

#[derive(Debug, Serialize)]
pub struct Row {
    pub identifier: String,
    pub conversation_id: String,
    pub bot_id: String,
    pub bot: String,
    pub visitor: String,
    pub state: Standing,
    pub last_activity: DateTime<Utc>,
    pub emails: u32,
    pub last_error: Option<String>,
}

pub fn status(config: &Config, args: &StatusArgs) -> Result<()> {
    let now = args.now.unwrap_or_else(Utc::now);
    let since = now - TimeDelta::days(7);
    let state = State::open_if_there_at(&crate::state::At::of(config))?;
    let (counts, listed, total) = match &state {
        None => (HashMap::new(), Vec::new(), 0),
        // The default view: counts and the most urgent, without reading every conversation.
        Some(state) if !args.all && args.bot.is_none() && args.state.is_none() => {
            let page = state.status_page(since, args.limit)?;
            let total = page.counts.iter().map(|(_, n)| n).sum();
            (page.counts.into_iter().collect(), page.rows, total)
        }
        Some(state) => {
            let all = of_bot(config, state.status_rows(since)?, args.bot.as_deref())?;
            let all: Vec<StatusRow> = all.into_iter().filter(|r| args.state.is_none_or(|s| s == r.standing)).collect();
            let mut counts: HashMap<Standing, usize> = HashMap::new();
            for r in &all {
                *counts.entry(r.standing).or_default() += 1;
            }
            let (total, shown) = (all.len(), if args.all { all.len() } else { args.limit });
            (counts, all.into_iter().take(shown).collect(), total)
        }
    };
    let count = |s: &Standing| counts.get(s).copied().unwrap_or(0);
    let more = total - listed.len();
    // Names and visitors from the source for the ones listed only: what a person reads.
    let rows = if listed.is_empty() { Vec::new() } else { rows(config, listed)? };
    let next_send = next_send(config, now)?;
    let destinations = destinations(config, state.as_ref())?;
    // A state file's lock holder (a lease's is in `check`).
    let holder = match crate::state::At::of(config) {
        crate::state::At::File(path) => crate::state::holder(&path)?,
        crate::state::At::Postgres { .. } => None,
    };
    if args.json {
        let summary: serde_json::Map<String, serde_json::Value> =
            Standing::ALL.iter().map(|s| (s.name().to_owned(), count(s).into())).collect();
        let out = serde_json::json!({
            "summary": summary, "notified_since": since, "next_send": next_send, "conversations": rows,
            "not_listed": more, "destinations": destinations,
            "held_by": holder.as_ref().map(|h| serde_json::json!({
                "pid": h.pid, "watching": h.watching_since.is_some(), "since": h.watching_since,
            })),
        });
        return super::print(serde_json::to_string_pretty(&out)? + "\n");
    }
    let summary: Vec<String> = Standing::ALL.iter().map(|s| format!("{} {}", count(s), s.name())).collect();
    let limit = next_send.map_or_else(String::new, |t| {
        format!(
            "; rate limit: the next email goes at {}",
            t.with_timezone(&config.time_zone).format("%Y-%m-%d %H:%M %Z")
        )
    });
    let mut out = format!(
        "{} (notified: since {}{limit})\n",
        summary.join(", "),
        since.with_timezone(&config.time_zone).format("%Y-%m-%d %H:%M %Z")
    );
    if let Some(h) = &holder {
        match h.watching_since {
            Some(since) => {
                let since = since.with_timezone(&config.time_zone).format("%Y-%m-%d %H:%M:%S %Z");
                let _ = writeln!(out, "a watcher (pid {}) holds the state since {since}", h.pid);
            }
            None => {
                let _ = writeln!(out, "a run (pid {}) holds the state now", h.pid);
            }
        }
    }
    for d in &destinations {
        let _ = write!(out, "{} {}: {} waiting, {} parked", d.kind, d.destination, d.pending, d.parked);
        if let Some(t) = d.not_before.filter(|t| *t > now) {
            let _ =
                write!(out, "; the next goes at {}", t.with_timezone(&config.time_zone).format("%Y-%m-%d %H:%M %Z"));
        }
        if let Some(e) = &d.last_error {
            let _ = write!(out, "; last error: {}", cut(e, 120));
        }
        out.push('\n');
        for p in &d.parked_notifications {
            let why = p.reason.as_deref().map(|e| cut(e, 120)).unwrap_or_else(|| "no error recorded".into());
            let _ = writeln!(out, "  parked: {} notification for {}: {why}", p.state, p.about);
        }
        if d.parked > d.parked_notifications.len() {
            let _ = writeln!(out, "  ... and {} more parked", d.parked - d.parked_notifications.len());
        }
    }
    if !rows.is_empty() {
        let _ = writeln!(
            out,
            "{:<16} {:<16} {:<24} {:<9} {:<17} {:>6}  NOTE",
            "IDENTIFIER", "BOT", "VISITOR", "STATE", "LAST ACTIVITY", "EMAILS"
        );
    }
    for r in &rows {
        let _ = writeln!(
            out,
            "{:<16} {} {} {:<9} {:<17} {:>6}  {}",
            r.identifier,
            text::column(&r.bot, 16),
            text::column(&r.visitor, 24),
            r.state.name(),
            r.last_activity.with_timezone(&config.time_zone).format("%Y-%m-%d %H:%M"),
            r.emails,
            r.last_error.as_deref().map(|e| cut(e, 60)).unwrap_or_default()
        );
    }
    if more > 0 {
        let _ = writeln!(out, "... and {more} more, less urgent (--limit N, or --all to list every one)");
    }
    super::print(out)
}

/// Only the conversations of `bot`: by the bot the state learned, or the source's where the
/// state has none yet (a conversation not judged so far), a page at a time.
fn of_bot(config: &Config, rows: Vec<StatusRow>, bot: Option<&str>) -> Result<Vec<StatusRow>> {
    let Some(bot) = bot else { return Ok(rows) };
    let unknown: Vec<&str> = rows.iter().filter(|r| r.bot_id.is_none()).map(|r| r.conversation_id.as_str()).collect();
    let mut learned: HashMap<String, String> = HashMap::new();
    if !unknown.is_empty() {
        let source = crate::source::open(config)?;
        for page in unknown.chunks(500) {
            learned.extend(source.conversations(page)?.into_values().map(|c| (c.id, c.bot_id)));
        }
    }
    Ok(rows
        .into_iter()
        .filter(|r| r.bot_id.as_deref().or_else(|| learned.get(&r.conversation_id).map(String::as_str)) == Some(bot))
        .collect())
}

/// What waits for each destination beside email: every configured one, and any the state
/// still holds notifications for.
#[derive(Debug, Serialize)]
struct DestinationRow {
    kind: &'static str,
    destination: String,
    pending: usize,
    parked: usize,
    last_error: Option<String>,
    not_before: Option<DateTime<Utc>>,
    /// The latest parked notifications (at most `PARKED_LISTED`), for someone to act on.
    parked_notifications: Vec<ParkedRow>,
}

/// Parked notifications `status` lists for each destination: the latest.
const PARKED_LISTED: usize = 20;

/// A parked notification as `status` shows it.
#[derive(Debug, Serialize)]
struct ParkedRow {
    conversation_id: String,
    /// What it is about: `#IDENTIFIER`, a bot's alarm, a summary or digest.
    about: String,
    state: String,
    reason: Option<String>,
}

fn destinations(config: &Config, state: Option<&State>) -> Result<Vec<DestinationRow>> {
    let standings = match state {
        Some(state) => state.destination_standings()?,
        None => Vec::new(),
    };
    let mut rows: Vec<DestinationRow> = config
        .destinations
        .iter()
        .map(|c| DestinationRow {
            kind: c.kind.as_str(),
            destination: c.name.clone(),
            pending: 0,
            parked: 0,
            last_error: None,
            not_before: None,
            parked_notifications: Vec::new(),
        })
        .collect();
    for s in standings {
        let row = match rows.iter_mut().position(|r| r.destination == s.destination) {
            Some(i) => &mut rows[i],
            None => {
                rows.push(DestinationRow {
                    kind: "destination (no longer configured)",
                    destination: s.destination.clone(),
                    pending: 0,
                    parked: 0,
                    last_error: None,
                    not_before: None,
                    parked_notifications: Vec::new(),
                });
                rows.last_mut().expect("just pushed")
            }
        };
        (row.pending, row.parked, row.last_error, row.not_before) = (s.pending, s.parked, s.last_error, s.not_before);
        if s.parked > 0
            && let Some(state) = state
        {
            row.parked_notifications = state
                .parked_deliveries(&s.destination, PARKED_LISTED)?
                .into_iter()
                .map(|p| ParkedRow {
                    about: crate::destination::about(&p.conversation_id),
                    conversation_id: p.conversation_id,
                    state: p.state,
                    reason: p.reason,
                })
                .collect();
        }
    }
    Ok(rows)
}

/// When the next email may go, when the rate limits hold the outbox back now.
fn next_send(config: &Config, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
    let limits = crate::pipeline::RateLimits { per_hour: config.mail.max_per_hour, per_day: config.mail.max_per_day };
    if limits.per_hour.is_none() && limits.per_day.is_none() {
        return Ok(None);
    }
    let Some(state) = State::open_if_there_at(&crate::state::At::of(config))? else {
        return Ok(None);
    };
    if state.count_pending()? == 0 {
        return Ok(None);
    }
    Ok(limits.allowance_at(&state, now)?.1)
}

/// The kind of notice an outbox key files, if it is one.
fn notice(key: &str) -> Option<&str> {
    let (kind, _) = key.split_once(':')?;
    ["alert", "digest", "summary"].contains(&kind).then_some(kind)
}

/// A column's worth of untrusted text (names, a server's error message), on one line.
fn cut(s: &str, n: usize) -> String {
    crate::domain::text::header(s, n.saturating_sub(1))
}

/// The rows listed, with names from the source, a page at a time.
fn rows(config: &Config, listed: Vec<StatusRow>) -> Result<Vec<Row>> {
    let mut rows: Vec<Row> = listed
        .into_iter()
        .map(|s| Row {
            identifier: thread::identifier(&s.conversation_id),
            conversation_id: s.conversation_id,
            bot_id: s.bot_id.unwrap_or_default(),
            bot: String::new(),
            visitor: String::new(),
            state: s.standing,
            last_activity: s.last_activity,
            emails: s.emails,
            last_error: s.last_error,
        })
        .collect();
    let export = crate::source::open(config)?;
    for page in rows.chunks_mut(500) {
        let ids: Vec<&str> = page.iter().map(|r| r.conversation_id.as_str()).collect();
        let conversations = export.conversations(&ids)?;
        let wanted: Vec<Wanted> = ids.iter().map(|id| Wanted { id, since: 0, through: i64::MAX }).collect();
        // The visitor's name or address is all a row shows of them: no lines kept.
        let transcripts = crate::source::read_transcripts(export.as_ref(), &wanted, 0)?;
        for r in page.iter_mut() {
            if let Some(c) = conversations.get(&r.conversation_id) {
                r.bot_id = c.bot_id.clone();
                r.bot = c.bot_name.clone();
            }
            r.visitor = match notice(&r.conversation_id) {
                // An email about no one conversation (pipeline::watch, digest, flood).
                Some(kind) if !conversations.contains_key(&r.conversation_id) => format!("({kind})"),
                _ => render::visitor_display(transcripts.get(&r.conversation_id).map_or(&[][..], |t| &t.messages)),
            };
        }
    }
    Ok(rows)
}
