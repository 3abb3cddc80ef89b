//! `chat-notifier preview CONVERSATION`: the email a conversation would get now, or (`--last`)
//! the last one it got. Reads only; sends nothing.

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};

use crate::cli::PreviewArgs;
use crate::config::Config;
use crate::config::{Routing, Settings};
use crate::domain::{ChatState, Email, Message, Person, Tracked, Transcript, Wanted, thread::Thread};
use crate::mail::render::{Draft, Renderer};
use crate::mail::send;
use crate::pipeline::classify::{self, Decision, Timing};
use crate::pipeline::people;
use crate::pipeline::rules::{self, Verdict};
use crate::source::Source;
use crate::state::State;

pub fn preview(config: &Config, args: &PreviewArgs) -> Result<()> {
    let now = args.now.unwrap_or_else(Utc::now);
    let source = crate::source::open(config)?;
    let export = source.as_ref();
    let state = State::open_if_there_at(&crate::state::At::of(config))?;
    let id = find(export, state.as_ref(), &args.conversation)?;
    let conversation = export.conversations(&[&id])?.remove(&id).context("the conversation left the export")?;
    let routing = Routing::new(config);
    let settings = routing.for_bot(&conversation.bot_id);
    let renderer = Renderer::new(&routing, config.mail.limits())?;
    let domain = config.message_id_domain();
    // What is known of the person now (for --last too: the state keeps no copy of it).
    let person = match &state {
        Some(state) => people::lookup(state, export, &conversation)?,
        None => Person::default(),
    };
    let email = if args.last {
        let Some((sent, covered_before)) = state.as_ref().map(|s| s.last_sent(&id)).transpose()?.flatten() else {
            bail!("conversation {id:?} has had no email yet");
        };
        let crate::state::Kind::Chat(sent_state) = sent.kind else {
            bail!("outbox row {} of conversation {id:?} is not an email about it", sent.id);
        };
        // Bodies are dropped once sent: render them again from what that email covered, and keep
        // the headers it went out with.
        let covered =
            transcript(export, config, Wanted { id: &id, since: covered_before, through: sent.covers_through })?;
        let refs = sent.email.references.as_deref().unwrap_or("");
        let thread =
            Thread { subject: None, message_ids: refs.split_whitespace().map(str::to_owned).collect(), index: None };
        let draft = Draft {
            conversation: &conversation,
            transcript: &covered,
            person: &person,
            state: sent_state,
            thread: &thread,
            now: sent.email.date,
            from: &sent.email.from,
            markdown: export.writes_markdown(),
            last_step: export.has_last_step(),
        };
        let body = renderer.compose(&draft, settings, &domain)?;
        Email { text: body.text, html: body.html, ..sent.email }
    } else {
        let open = state.as_ref().map(|s| s.conversation(&id)).transpose()?.flatten();
        let (tracked, thread) = match open {
            Some(open) => (open.tracked, open.thread),
            None => (
                Tracked { last_message: 0, last_activity: now, ended: false, covered_through: 0, emails: 0 },
                Thread::default(),
            ),
        };
        // Its last email was listed in a flood guard's summary, never sent, and nothing came
        // since: that email, as the summary says `preview` shows it.
        let listed = match state.as_ref().map(|s| s.last_listed(&id)).transpose()?.flatten() {
            Some((chat_state, through, before)) => {
                let covered = transcript(export, config, Wanted { id: &id, since: before, through: i64::MAX })?;
                covered.messages.last().is_none_or(|m| m.id <= through).then_some((chat_state, covered))
            }
            None => None,
        };
        let (chat_state, transcript) = match listed {
            Some(listed) => {
                eprintln!("note: this email was not sent: the flood guard listed it in a summary");
                listed
            }
            None => now_due(export, config, settings, &id, tracked, now)?,
        };
        let last_step = export.has_last_step();
        let draft = Draft {
            conversation: &conversation,
            transcript: &transcript,
            person: &person,
            state: chat_state,
            thread: &thread,
            now,
            from: &config.mail.from,
            markdown: export.writes_markdown(),
            last_step,
        };
        renderer.compose(&draft, settings, &domain)?
    };
    if let Some(path) = &args.html {
        std::fs::write(path, &email.html).with_context(|| format!("writing {}", path.display()))?;
    }
    super::print(send::preview(&email))
}

/// The email a conversation would get now (its state, and the transcript it covers), as a run
/// would judge it once the visitor is idle long enough: a note says when.
fn now_due(
    export: &dyn Source,
    config: &Config,
    settings: &Settings,
    id: &str,
    tracked: Tracked,
    now: DateTime<Utc>,
) -> Result<(ChatState, Transcript)> {
    let transcript = transcript(export, config, Wanted { id, since: tracked.covered_through, through: i64::MAX })?;
    let tracked = with_unread(tracked, &transcript);
    let idle = now.max(tracked.last_activity + settings.abandon_after);
    let last_step = export.has_last_step();
    let timing = Timing { now: idle, abandon_after: settings.abandon_after, baseline_before: None, last_step };
    let Decision::Notify(chat_state) = classify::classify(&tracked, &timing) else {
        bail!("nothing new since the last email of {id:?} (see --last)")
    };
    // A chat without a last step waits to go quiet even after a `complete_on` match.
    if (!tracked.ended || !last_step) && now - tracked.last_activity < settings.abandon_after {
        eprintln!(
            "note: the visitor wrote {} min ago; this goes out once they have been idle for {} min",
            (now - tracked.last_activity).num_minutes(),
            settings.abandon_after.num_minutes()
        );
    }
    if let Verdict::Hold(why) = rules::verdict(settings, chat_state, &transcript) {
        eprintln!("note: the rules hold this email back for now: {why}");
    }
    Ok((chat_state, transcript))
}

/// One conversation's transcript, as a run would read it.
fn transcript(export: &dyn Source, config: &Config, wanted: Wanted) -> Result<Transcript> {
    let mut read = crate::source::read_transcripts(export, &[wanted], config.mail.limits().messages)?;
    Ok(read.remove(wanted.id).unwrap_or_default())
}

/// The state's record of a conversation with what the export holds beyond it folded in, as
/// the next run's ingest would.
fn with_unread(tracked: Tracked, transcript: &Transcript) -> Tracked {
    let Some(last) = transcript.messages.last().filter(|m| m.id > tracked.last_message) else {
        return tracked;
    };
    // The state's last activity is the latest of the messages it has read.
    let latest = transcript.last_activity.unwrap_or(last.sent_at);
    let unread = |m: &&Message| m.id > tracked.last_message;
    Tracked {
        last_message: last.id,
        last_activity: if tracked.last_message == 0 { latest } else { tracked.last_activity.max(latest) },
        // The flow's last end is among the messages kept.
        ended: tracked.ended || transcript.messages.iter().filter(unread).any(Message::ends_flow),
        ..tracked
    }
}

/// A conversation id as the export has it, or an identifier as subjects show it.
fn find(export: &dyn Source, state: Option<&State>, wanted: &str) -> Result<String> {
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
