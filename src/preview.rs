//! `chat-notifier preview CONVERSATION`: the email a conversation would get now, or (`--last`)
//! the last one it got. Reads only; sends nothing.

use std::io::Write;

use anyhow::{Context, Result, bail};
use chrono::Utc;

use crate::classify::{ChatState, Tracked};
use crate::cli::PreviewArgs;
use crate::config::Config;
use crate::export::{Export, Sender as Who};
use crate::notify::{self, Routing, Verdict};
use crate::render::{Draft, Email, Renderer};
use crate::send;
use crate::state::{Open, State};
use crate::thread::Thread;

pub fn preview(config: &Config, args: &PreviewArgs) -> Result<()> {
    let now = args.now.unwrap_or_else(Utc::now);
    let export = Export::open(&config.export)?;
    let state = if config.state.exists() { Some(State::open_read_only(&config.state)?) } else { None };
    let id = find(&export, state.as_ref(), &args.conversation)?;
    let conversation = export.conversations(&[&id])?.remove(&id).context("the conversation left the export")?;
    let transcript = export.transcripts(&[(&id, i64::MAX)])?.remove(&id).unwrap_or_default();
    let routing = Routing::new(config);
    let settings = routing.for_bot(&conversation.bot_id);
    let renderer = Renderer::new(&routing)?;
    let open = state.as_ref().map(|s| s.conversation(&id)).transpose()?.flatten();
    let email = if args.last {
        let Some((sent, covered_before)) = state.as_ref().map(|s| s.last_sent(&id)).transpose()?.flatten() else {
            bail!("conversation {id:?} has had no email yet");
        };
        // Bodies are dropped once sent: render them again from what that email covered, and keep
        // the headers it went out with.
        let covered: Vec<_> = transcript.iter().filter(|m| m.id <= sent.covers_through).cloned().collect();
        let refs = sent.email.references.as_deref().unwrap_or("");
        let thread = Thread { subject: None, message_ids: refs.split_whitespace().map(str::to_owned).collect() };
        let draft = Draft {
            conversation: &conversation,
            transcript: &covered,
            state: sent.state,
            covered_before,
            thread: &thread,
            now: sent.email.date,
            from: &sent.email.from,
        };
        let body = renderer.compose(&draft, settings, &config.message_id_domain())?;
        Email { text: body.text, html: body.html, ..sent.email }
    } else {
        let open = open.unwrap_or_else(|| Open { id: id.clone(), tracked: untracked(), thread: Thread::default() });
        let new: Vec<_> = transcript.iter().filter(|m| m.id > open.tracked.covered_through).collect();
        if new.is_empty() {
            bail!("nothing new since the last email of {id:?} (see --last)");
        }
        let ends = new.iter().any(|m| m.sender == Who::Bot && m.input_type.as_deref() == Some("end_conversation"));
        let chat_state = match (ends, open.tracked.emails) {
            (true, _) => ChatState::Completed,
            (false, 0) => ChatState::Abandoned,
            (false, _) => ChatState::Resumed,
        };
        let last = new.iter().map(|m| m.sent_at).max().unwrap_or(now);
        if !ends && now - last < settings.abandon_after {
            eprintln!(
                "note: the visitor wrote {} min ago; this goes out once they have been idle for {} min",
                (now - last).num_minutes(),
                settings.abandon_after.num_minutes()
            );
        }
        if let Verdict::Hold(why) = notify::verdict(settings, chat_state, &transcript) {
            eprintln!("note: the rules hold this email back for now: {why}");
        }
        let draft = Draft {
            conversation: &conversation,
            transcript: &transcript,
            state: chat_state,
            covered_before: open.tracked.covered_through,
            thread: &open.thread,
            now,
            from: &config.mail.from,
        };
        renderer.compose(&draft, settings, &config.message_id_domain())?
    };
    if let Some(path) = &args.html {
        std::fs::write(path, &email.html).with_context(|| format!("writing {}", path.display()))?;
    }
    std::io::stdout().write_all(send::preview(&email).as_bytes())?;
    Ok(())
}

fn untracked() -> Tracked {
    Tracked { last_message: 0, last_activity: Utc::now(), ended: false, covered_through: 0, emails: 0 }
}

/// A conversation id as the export has it, or an identifier as subjects show it.
fn find(export: &Export, state: Option<&State>, wanted: &str) -> Result<String> {
    if export.conversations(&[wanted])?.contains_key(wanted) {
        return Ok(wanted.to_owned());
    }
    let identifier =
        wanted.trim().trim_start_matches("[#").trim_start_matches('#').trim_end_matches(']').to_ascii_uppercase();
    if let Some(state) = state
        && let Some(id) = state.find_by_identifier(&identifier)?
    {
        return Ok(id);
    }
    bail!("no conversation with id or identifier {wanted:?}")
}
