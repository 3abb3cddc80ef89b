//! The flood guard: a run that would send more than `mail.burst` emails about conversations
//! (after an outage, a bot shared on a busy page, a first `--backfill`) sends the first `burst`
//! one by one and lists the rest in one summary email per recipient set. An inbox that gets
//! hundreds of emails in a minute is one nobody reads, and a provider that sees it may start
//! refusing or flagging the sender. The summarised emails are never sent; each conversation's
//! own thread starts with its next email, and `preview` shows any of them now.
//!
//! Each destination beside email has the same guard on its own `burst` (`guard_destinations`):
//! a Slack channel or a CRM flooded is no better read than an inbox.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Result, bail};
use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::destination::document::{self, BotDoc, Document, SummaryItem};
use crate::domain::ChatState;
use crate::domain::thread::Thread;
use crate::mail::notice::{self, Block, Notice};
use crate::state::{Delivery, State};

/// Chats a summary lists by name; it counts the rest. Listing 79,718 made a 14 MB email, over
/// what many mail servers accept (Postfix's default `message_size_limit` is 10 MB), and as
/// much memory again to build it; 1,000 keep it near 300 KB (issue 27).
const SUMMARY_LISTED: usize = 1_000;

/// Summarises what is over the burst among the emails queued since the guard last ran (those
/// waiting for the hourly limit were judged when they were queued). Returns how many emails
/// were listed in summaries.
pub fn guard(state: &mut State, config: &Config, now: DateTime<Utc>) -> Result<usize> {
    let burst = config.mail.burst as usize;
    let pending = state.count_unguarded_chats()?;
    let groups = state.excess(state.excess_from(burst)?)?;
    // Those that go one by one: `burst`, or fewer when emails decided over a lower burst (by a
    // run that failed before its guard) are listed whatever the burst is now.
    let sent = pending - groups.iter().map(|g| g.count).sum::<usize>();
    let burst = burst.min(sent);
    let mut summaries = Vec::new();
    for excess in groups {
        let key = format!("summary:{}", excess.first);
        let listed = state.excess_listed(&excess, SUMMARY_LISTED)?;
        let items = listed.into_iter().map(|(subject, state)| (subject, vec![format!("state: {state}")])).collect();
        let n = excess.count;
        let (chats, these) =
            if n == 1 { ("chat", "this one is".to_owned()) } else { ("chats", format!("these {n} are")) };
        let mut body = vec![
            Block::Paragraph(format!(
                "This run had {pending} emails about chats to send, more than mail.burst ({burst}): the first \
                 {burst} went out one by one, and {these} listed here instead, so the inbox is not flooded. \
                 Each conversation's own thread starts with its next email; `chat-notifier preview IDENTIFIER` \
                 shows any of them now."
            )),
            Block::List(items),
        ];
        if n > SUMMARY_LISTED {
            body.push(Block::Paragraph(format!(
                "... and {} more, not listed by name: an email listing every one would be larger than mail servers \
                 accept. `chat-notifier leads` lists the visitors who left an email or phone and did not finish; \
                 `chat-notifier report` shows where visitors drop.",
                n - SUMMARY_LISTED
            )));
        }
        let email = notice::compose(&Notice {
            kind: "digest",
            key: &key,
            part: &format!("n{n}"),
            bot: None,
            title: &format!("{n} more {chats} in one run, listed here"),
            thread: &Thread::default(),
            body,
            now,
            from: &config.mail.from,
            to: &notice::mailboxes(&excess.to),
            cc: &notice::mailboxes(&excess.cc),
            domain: &config.message_id_domain(),
        });
        summaries.push((key, email, excess));
    }
    state.atomically(|tx| tx.summarise(&summaries))?;
    let summarised: usize = summaries.iter().map(|(.., excess)| excess.count).sum();
    if summarised > 0 {
        log::info!("flood guard: {summarised} emails over mail.burst ({burst}) listed in a summary");
    }
    Ok(summarised)
}

/// The same guard for each destination beside email, on its own `burst`: what a run queued for
/// it about chats over the burst is listed in one summary notification (`"event": "summary"`),
/// queued in the transaction that marks the listed ones `summarised`, never sent one by one.
/// Returns how many notifications were listed in summaries.
pub fn guard_destinations(state: &mut State, config: &Config, now: DateTime<Utc>) -> Result<usize> {
    let mut listed = 0;
    for destination in &config.destinations {
        let burst = destination.burst();
        let pending = state.count_unguarded_deliveries(&destination.name)?;
        if pending <= burst as usize {
            continue;
        }
        let excess = state.unguarded_deliveries_after(&destination.name, burst as usize)?;
        let Some(first) = excess.first() else { continue };
        let items = excess.iter().map(listed_item).collect();
        let doc = document::summary(items, burst, pending, now);
        let text = serde_json::to_string(&doc)?;
        let filed = format!("summary:{}", first.id);
        state.atomically(|tx| {
            tx.summarise_deliveries(&destination.name, &filed, "summary", &doc.id, &text, &excess, now)
        })?;
        log::info!(
            "flood guard: {} notifications for {} {:?} over its burst ({burst}) listed in a summary",
            excess.len(),
            destination.kind.as_str(),
            destination.name
        );
        listed += excess.len();
    }
    // Those of a destination taken out of the config are judged too: they wait for it, one by one.
    state.mark_deliveries_guarded()?;
    Ok(listed)
}

/// Pure: what a summary (or a destination's digest) says of a notification it lists, from its
/// document (a document that cannot be read back is still listed, by its conversation's id).
pub fn listed_item(d: &Delivery) -> SummaryItem {
    let state = ChatState::parse(&d.state).unwrap_or(ChatState::Ended);
    match serde_json::from_str::<Document>(&d.document) {
        Ok(doc) => SummaryItem {
            id: doc.conversation.id,
            identifier: doc.conversation.identifier,
            state: doc.state,
            bot: doc.bot,
            visitor: doc.visitor.display,
            notification_id: d.key.clone(),
        },
        Err(_) => SummaryItem {
            id: d.conversation_id.clone(),
            identifier: crate::domain::thread::identifier(&d.conversation_id),
            state,
            bot: BotDoc { id: String::new(), name: String::new() },
            visitor: "a visitor".to_owned(),
            notification_id: d.key.clone(),
        },
    }
}

/// A first `--backfill` that would email more than the burst asks first: on a terminal, a
/// question; elsewhere (cron, a script) it needs `--yes`.
pub fn confirm_backfill(due: usize, burst: u32, yes: bool) -> Result<()> {
    if due <= burst as usize || yes {
        return Ok(());
    }
    let what = format!(
        "--backfill would email up to {due} conversations, more than mail.burst ({burst}): the first {burst} one by \
         one, the rest listed in one summary email"
    );
    if !std::io::stdin().is_terminal() {
        bail!("{what}; add --yes to go ahead (nothing was sent)");
    }
    eprint!("{what}. Go ahead? [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        bail!("backfill not confirmed: nothing was sent")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backfill_over_the_burst_asks_first() {
        assert!(confirm_backfill(50, 50, false).is_ok(), "at the burst: no question");
        assert!(confirm_backfill(51, 50, true).is_ok());
    }
}
