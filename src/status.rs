//! `chat-notifier status`: where each conversation stands, from the state (read only) and the
//! export. A summary line of counts, then one line per conversation, most urgent first.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use chrono::{DateTime, TimeDelta, Utc};
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

use crate::cli::StatusArgs;
use crate::config::Config;
use crate::export::Export;
use crate::render;
use crate::thread;

/// Where a conversation stands, most urgent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Standing {
    /// An email the server refused permanently, no longer retried.
    Parked,
    /// An email that failed and is retried next run.
    Failed,
    /// An email decided and not sent yet.
    Pending,
    /// New messages no email covers yet: the visitor may still be typing.
    Waiting,
    /// Held back by the notification rules until the visitor writes more.
    Held,
    /// Emailed in the past week.
    Notified,
}

const ALL: [Standing; 6] =
    [Standing::Parked, Standing::Failed, Standing::Pending, Standing::Waiting, Standing::Held, Standing::Notified];

impl Standing {
    fn name(self) -> &'static str {
        match self {
            Standing::Parked => "parked",
            Standing::Failed => "failed",
            Standing::Pending => "pending",
            Standing::Waiting => "waiting",
            Standing::Held => "held",
            Standing::Notified => "notified",
        }
    }
}

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
    let rows = if config.state.exists() { rows(config, &config.state, since)? } else { Vec::new() };
    let rows: Vec<Row> = rows
        .into_iter()
        .filter(|r| args.bot.as_ref().is_none_or(|b| *b == r.bot_id))
        .filter(|r| args.state.is_none_or(|s| s == r.state))
        .collect();
    let mut counts: HashMap<Standing, usize> = HashMap::new();
    for r in &rows {
        *counts.entry(r.state).or_default() += 1;
    }
    if args.json {
        let summary: serde_json::Map<String, serde_json::Value> =
            ALL.iter().map(|s| (s.name().to_owned(), counts.get(s).copied().unwrap_or(0).into())).collect();
        let out = serde_json::json!({ "summary": summary, "notified_since": since, "conversations": rows });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let summary: Vec<String> =
        ALL.iter().map(|s| format!("{} {}", counts.get(s).copied().unwrap_or(0), s.name())).collect();
    println!(
        "{} (notified: since {})",
        summary.join(", "),
        since.with_timezone(&config.time_zone).format("%Y-%m-%d %H:%M %Z")
    );
    if rows.is_empty() {
        return Ok(());
    }
    println!(
        "{:<16} {:<16} {:<24} {:<9} {:<17} {:>6}  NOTE",
        "IDENTIFIER", "BOT", "VISITOR", "STATE", "LAST ACTIVITY", "EMAILS"
    );
    for r in &rows {
        println!(
            "{:<16} {:<16} {:<24} {:<9} {:<17} {:>6}  {}",
            r.identifier,
            cut(&r.bot, 16),
            cut(&r.visitor, 24),
            r.state.name(),
            r.last_activity.with_timezone(&config.time_zone).format("%Y-%m-%d %H:%M"),
            r.emails,
            r.last_error.as_deref().map(|e| cut(e, 60)).unwrap_or_default()
        );
    }
    Ok(())
}

fn cut(s: &str, n: usize) -> String {
    thread::header_text(s, n.saturating_sub(1))
}

/// One row per conversation that is not simply settled, under its most urgent standing.
fn rows(config: &Config, state: &Path, since: DateTime<Utc>) -> Result<Vec<Row>> {
    let conn = Connection::open_with_flags(state, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("state {}: opening", state.display()))?;
    let mut stmt = conn.prepare(
        "SELECT id, 'waiting', last_activity, emails, NULL FROM conversations \
           WHERE last_message > covered_through AND last_message > held_through \
         UNION ALL SELECT id, 'held', last_activity, emails, NULL FROM conversations \
           WHERE held_through > covered_through AND last_message <= held_through \
         UNION ALL SELECT o.conversation_id, CASE WHEN o.status = 'parked' THEN 'parked' \
             WHEN o.attempts > 0 THEN 'failed' ELSE 'pending' END, c.last_activity, c.emails, o.last_error \
           FROM outbox o JOIN conversations c ON c.id = o.conversation_id WHERE o.status IN ('pending', 'parked') \
         UNION ALL SELECT o.conversation_id, 'notified', c.last_activity, c.emails, NULL \
           FROM outbox o JOIN conversations c ON c.id = o.conversation_id WHERE o.status = 'sent' AND o.sent_at >= ?1",
    )?;
    let raw = stmt.query_map([since.timestamp_millis()], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, u32>(3)?, r.get(4)?))
    })?;
    let mut by_id: HashMap<String, Row> = HashMap::new();
    for row in raw {
        let (id, standing, last_activity, emails, last_error): (String, String, i64, u32, Option<String>) = row?;
        let standing = ALL.into_iter().find(|s| s.name() == standing).unwrap_or(Standing::Waiting);
        let row = Row {
            identifier: thread::identifier(&id),
            bot_id: String::new(),
            bot: String::new(),
            visitor: String::new(),
            state: standing,
            last_activity: DateTime::from_timestamp_millis(last_activity).unwrap_or_default(),
            emails,
            last_error,
            conversation_id: id.clone(),
        };
        match by_id.get(&id) {
            Some(seen) if seen.state <= row.state => {}
            _ => {
                by_id.insert(id, row);
            }
        }
    }
    let mut rows: Vec<Row> = by_id.into_values().collect();
    // Names come from the export, a page at a time.
    let export = Export::open(&config.export)?;
    for page in rows.chunks_mut(500) {
        let ids: Vec<&str> = page.iter().map(|r| r.conversation_id.as_str()).collect();
        let conversations = export.conversations(&ids)?;
        let wanted: Vec<(&str, i64)> = ids.iter().map(|id| (*id, i64::MAX)).collect();
        let transcripts = export.transcripts(&wanted)?;
        for r in page.iter_mut() {
            if let Some(c) = conversations.get(&r.conversation_id) {
                r.bot_id = c.bot_id.clone();
                r.bot = c.bot_name.clone();
            }
            r.visitor = render::visitor_display(transcripts.get(&r.conversation_id).map_or(&[][..], Vec::as_slice));
        }
    }
    rows.sort_by(|a, b| a.state.cmp(&b.state).then(b.last_activity.cmp(&a.last_activity)));
    Ok(rows)
}
