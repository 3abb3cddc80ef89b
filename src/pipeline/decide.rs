//! Decide: for each conversation that may be due, judge it (pure, from what the state and the
//! source say), render the emails due, then write the page's decisions in one transaction.

use anyhow::Result;
use chrono::{DateTime, TimeDelta, Utc};

use super::PAGE;
use super::classify::{Decision, Timing, classify};
use super::digest;
use super::people;
use super::rules::{self, Verdict};
use crate::config::Config;
use crate::config::{Routing, Settings};
use crate::destination::document;
use crate::domain::{ChatState, Conversation, Email, Transcript, Wanted};
use crate::mail::render::{Draft, Renderer};
use crate::progress;
use crate::source::Source;
use crate::state::{DueCursor, Open, State};

/// How long messages may wait for their conversations row (a runtime that writes it late)
/// before they are given up on, reported and covered without an email.
const ROW_WAIT: TimeDelta = TimeDelta::hours(24);
/// Row ids named in one warning; the rest are counted.
const ROWS_NAMED: usize = 10;

/// What a run decides with, fixed for its whole length.
#[derive(Clone, Copy)]
pub struct Inputs<'a> {
    pub source: &'a dyn Source,
    pub renderer: &'a Renderer,
    pub routing: &'a Routing,
    pub config: &'a Config,
    pub args: &'a super::Options,
    pub now: DateTime<Utc>,
}

/// What a decision does to a conversation's record.
enum Settle {
    /// Covered without an email: first-run history, or messages whose conversations row never
    /// came.
    Cover,
    /// Not worth an email under the rules, for now.
    Hold,
    /// Its conversations row is not there yet: wait for it, noting since when.
    AwaitRow(DateTime<Utc>),
    /// An email queued, whole or (false) its head alone: over the flood guard's burst.
    Queue(ChatState, Box<Email>, Vec<Note>, bool),
    /// Listed in the digest of this key (the entry, as JSON) instead of an email of its own.
    Digest(String, String, Vec<Note>),
}

/// A notification for a destination beside email, queued with the decision.
struct Note {
    destination: String,
    state: ChatState,
    key: String,
    document: String,
    /// Held for the bot's digest: the destination takes it (`digest = true`).
    for_digest: bool,
}

/// What judging a conversation needs to read next.
enum Judged<'a> {
    /// Nothing to do this run.
    Skip,
    Settle(Settle),
    /// Its messages have no conversations row: name the rows, then wait or give up.
    Orphan,
    Due(&'a Conversation, &'a Settings, ChatState),
}

/// Pure: what one open conversation calls for, from the state's record and its conversations
/// row (if the source has one).
fn judge<'a>(open: &Open, conversation: Option<&'a Conversation>, routing: &'a Routing, timing: &Timing) -> Judged<'a> {
    let Some(conversation) = conversation else {
        return match classify(&open.tracked, timing) {
            Decision::Nothing => Judged::Skip,
            Decision::Baseline => Judged::Settle(Settle::Cover),
            _ => Judged::Orphan,
        };
    };
    let settings = routing.for_bot(&conversation.bot_id);
    match classify(&open.tracked, &Timing { abandon_after: settings.abandon_after, ..*timing }) {
        Decision::Nothing | Decision::Wait => Judged::Skip,
        Decision::Baseline => Judged::Settle(Settle::Cover),
        Decision::Notify(state) => Judged::Due(conversation, settings, state),
    }
}

/// Classifies every conversation that may be due, applies the owner's rules, and queues the
/// emails due. Returns how many conversations could not be rendered (they stay open).
pub fn decide(run: Inputs, state: &mut State, long: bool) -> Result<usize> {
    let Inputs { config, args, now, routing, .. } = run;
    let counter = progress::counter(long, "deciding");
    let first_run = !state.progress()?.baseline_done;
    if args.backfill && !first_run {
        log::info!("--backfill only matters on a first run; this state file has had one");
    }
    // Conversations still within the shortest abandon_after and not ended can only wait: the
    // state's index leaves them out. Each is judged with its own bot's below.
    let timing = Timing {
        now,
        abandon_after: routing.shortest_abandon_after(),
        baseline_before: (first_run && !args.backfill).then(|| now - config.first_run_horizon.0),
        last_step: run.source.has_last_step(),
    };
    // The flood guard sends the first `burst` emails about chats it has not judged yet and lists
    // the rest in a summary: those are queued with their heads alone, never rendered (issue 27).
    let room = (config.mail.burst as usize).saturating_sub(state.count_unguarded_chats()?);
    let mut pass = Pass { cursor: DueCursor::start(), failed: 0, baselined: 0, queued: 0, listed: 0, room };
    pass.decide(run, state, &timing, first_run, &counter)?;
    let Pass { failed, baselined, queued, listed, .. } = pass;
    counter.finish_and_clear();
    if first_run {
        state.atomically(|tx| tx.finish_baseline())?;
        if baselined + queued > 0 {
            // Said on every first run: after a state file was deleted or emptied, this is what
            // explains a batch of "new" threads about chats the owner has heard of.
            log::warn!(
                "first run on state {} (no earlier run recorded): {} conversation(s) active in the last {}h \
                 emailed as new threads, {}{baselined} older recorded without an email{}",
                state.path().display(),
                queued - listed,
                config.first_run_horizon.0.num_hours(),
                match listed {
                    0 => String::new(),
                    n => format!("{n} listed in the flood guard's summary (more than mail.burst), "),
                },
                if baselined > 0 { " (run with --backfill on a fresh state file to send them)" } else { "" }
            );
        }
    }
    Ok(failed)
}

/// Where a run's pass over the conversations that may be due stands, and what it did so far.
struct Pass {
    cursor: DueCursor,
    failed: usize,
    baselined: usize,
    queued: usize,
    /// Of `queued`, those over the flood guard's burst: listed in its summary.
    listed: usize,
    /// Emails that may still be queued whole: the rest are over the flood guard's burst.
    room: usize,
}

impl Pass {
    /// Decides every page of conversations that may be due, each page's decisions written in
    /// one step (`atomically`).
    fn decide(
        &mut self,
        run: Inputs,
        state: &mut State,
        timing: &Timing,
        first_run: bool,
        counter: &indicatif::ProgressBar,
    ) -> Result<()> {
        let now = run.now;
        loop {
            let Some((page, next)) = state.due_conversations(&self.cursor, now - timing.abandon_after, PAGE)? else {
                return Ok(());
            };
            counter.inc(page.len() as u64);
            self.cursor = next;
            let mut waiting: Vec<&Open> = page.iter().collect();
            while !waiting.is_empty() {
                let Judgement { settled, identities, later } =
                    judge_page(run, &waiting, timing, &mut self.failed, &mut self.room, state)?;
                waiting = later;
                for (_, settle) in &settled {
                    match settle {
                        Settle::Cover if first_run => self.baselined += 1,
                        Settle::Queue(.., whole) => {
                            self.queued += 1;
                            self.listed += usize::from(!whole);
                        }
                        Settle::Digest(..) => self.queued += 1,
                        _ => {}
                    }
                }
                state.atomically(|tx| {
                    for (id, visitor, bot) in &identities {
                        tx.identify(id, visitor, bot)?;
                    }
                    for (open, settle) in &settled {
                        match settle {
                            Settle::Cover => tx.cover(open)?,
                            Settle::Hold => tx.hold(open)?,
                            Settle::AwaitRow(since) => tx.await_row(open, *since)?,
                            Settle::Queue(chat_state, email, _, whole) => tx.queue(open, *chat_state, email, *whole)?,
                            Settle::Digest(key, entry, _) => tx.list_in_digest(open, key, entry, now)?,
                        }
                        if let Settle::Queue(_, _, notes, _) | Settle::Digest(.., notes) = settle {
                            for n in notes {
                                let (id, state) = (&open.id, n.state.as_str());
                                match n.for_digest {
                                    true => tx.hold_delivery_for_digest(
                                        &n.destination,
                                        id,
                                        state,
                                        &n.key,
                                        &n.document,
                                        now,
                                    )?,
                                    false => tx.queue_delivery(&n.destination, id, state, &n.key, &n.document, now)?,
                                }
                            }
                        }
                    }
                    Ok(())
                })?;
            }
        }
    }
}

/// Bytes of rendered emails one transaction holds before it is written: a page of 500 long
/// chats' emails held 48 MB (each up to about 1 MB within the transcript limits).
const PAGE_BYTES: usize = 8 << 20;

/// Judges a page: reads what it needs from the source and renders the emails due, until they
/// reach `PAGE_BYTES`; the conversations left for later are returned, to be judged again. Once
/// `room` emails were rendered, the next ones are composed without their bodies: the flood
/// guard lists them in its summary. Writes nothing; the caller writes the decisions in one
/// transaction.
fn judge_page<'p>(
    run: Inputs,
    page: &[&'p Open],
    timing: &Timing,
    failed: &mut usize,
    room: &mut usize,
    state: &State,
) -> Result<Judgement<'p>> {
    let Inputs { source, renderer, routing, config, now, .. } = run;
    let ids: Vec<&str> = page.iter().map(|o| o.id.as_str()).collect();
    let conversations = source.conversations(&ids)?;
    let identities = conversations.values().map(|c| (c.id.clone(), c.visitor_id.clone(), c.bot_id.clone())).collect();
    let mut settled = Vec::new();
    let mut due = Vec::new();
    let mut orphans = Vec::new();
    for &open in page {
        match judge(open, conversations.get(&open.id), routing, timing) {
            Judged::Skip => {}
            Judged::Settle(settle) => settled.push((open, settle)),
            Judged::Orphan => orphans.push(open),
            Judged::Due(conversation, settings, state) => due.push((open, conversation, settings, state)),
        }
    }
    let wanted: Vec<Wanted> = due
        .iter()
        .map(|(o, ..)| o)
        .chain(&orphans)
        .map(|o| Wanted { id: &o.id, since: o.tracked.covered_through, through: o.tracked.last_message })
        .collect();
    let mut transcripts = crate::source::read_transcripts(source, &wanted, config.mail.limits().messages)?;
    for open in orphans {
        let transcript = transcripts.remove(&open.id).unwrap_or_default();
        let shown = source.name();
        if transcript.messages.is_empty() {
            // Its messages are gone with it: a chat erased (Flowise's "clear chat", a deleted
            // tracker) before it was judged. Nothing to wait for, nothing to send.
            log::info!("{shown}: conversation {:?} is gone with all its messages (erased); nothing to send", open.id);
            settled.push((open, Settle::Cover));
            continue;
        }
        let named = rows_named(&transcript);
        match open.missing_since {
            None => {
                log::warn!(
                    "{shown}: messages rows {named} point to conversation {:?}, which has no conversations row \
                     yet; they wait for it (up to {}h)",
                    open.id,
                    ROW_WAIT.num_hours()
                );
                settled.push((open, Settle::AwaitRow(now)));
            }
            Some(since) if now - since >= ROW_WAIT => {
                log::warn!(
                    "{shown}: messages rows {named} skipped: conversation {:?} still has no conversations row \
                     after {}h",
                    open.id,
                    ROW_WAIT.num_hours()
                );
                settled.push((open, Settle::Cover));
            }
            Some(_) => {}
        }
    }
    let mut bytes = 0;
    let mut due = due.into_iter();
    while let Some((open, conversation, settings, chat_state)) = due.next() {
        if bytes >= PAGE_BYTES {
            let later = std::iter::once(open).chain(due.map(|(open, ..)| open)).collect();
            return Ok(Judgement { settled, identities, later });
        }
        let transcript = transcripts.remove(&open.id).unwrap_or_default();
        if let Verdict::Hold(why) = rules::verdict(settings, chat_state, &transcript) {
            log::debug!("conversation {:?}: {} held back: {why}", open.id, chat_state.as_str());
            settled.push((open, Settle::Hold));
            continue;
        }
        let listing = digest::listing(settings, chat_state, conversation, &transcript, &open.thread);
        let serving = config.destinations.iter().any(|d| d.serves(&conversation.bot_id));
        if let Some((key, entry)) = listing {
            let mut notes = match serving {
                true => notes(
                    run,
                    conversation,
                    chat_state,
                    &transcript,
                    &people::lookup(state, source, conversation)?,
                    open,
                )?,
                false => Vec::new(),
            };
            // A destination that takes the digest gets this chat in it, not at once.
            for n in &mut notes {
                n.for_digest = config.destinations.iter().any(|d| d.name == n.destination && d.digest);
            }
            settled.push((open, Settle::Digest(key, serde_json::to_string(&entry)?, notes)));
            continue;
        }
        let person = people::lookup(state, source, conversation)?;
        let notes = notes(run, conversation, chat_state, &transcript, &person, open)?;
        let draft = Draft {
            conversation,
            transcript: &transcript,
            person: &person,
            state: chat_state,
            thread: &open.thread,
            now,
            from: &config.mail.from,
            markdown: source.writes_markdown(),
            last_step: source.has_last_step(),
        };
        let whole = *room > 0;
        let composed = match whole {
            true => renderer.compose(&draft, settings, &config.message_id_domain()),
            false => renderer.compose_head(&draft, settings, &config.message_id_domain()),
        };
        match composed {
            Ok(email) => {
                *room = room.saturating_sub(1);
                bytes += email.text.len() + email.html.len();
                settled.push((open, Settle::Queue(chat_state, Box::new(email), notes, whole)));
            }
            Err(e) => {
                log::error!("conversation {:?}: {e:#}; it is tried again {}", open.id, super::when_retried());
                *failed += 1;
            }
        }
    }
    Ok(Judgement { settled, identities, later: Vec::new() })
}

/// The notifications for the destinations that serve the conversation's bot: one JSON document
/// each (the same for all), made now so that every try sends the same bytes. A chat listed in
/// the inbox's digest goes to each destination at once, but to one that takes the digest
/// (`digest = true`), which gets it in the digest's notification.
fn notes(
    run: Inputs,
    conversation: &Conversation,
    chat_state: ChatState,
    transcript: &Transcript,
    person: &crate::domain::Person,
    open: &Open,
) -> Result<Vec<Note>> {
    let serving: Vec<&str> =
        run.config.destinations.iter().filter(|d| d.serves(&conversation.bot_id)).map(|d| d.name.as_str()).collect();
    if serving.is_empty() {
        return Ok(Vec::new());
    }
    let facts = document::Facts {
        state: chat_state,
        conversation,
        transcript,
        shown: crate::mail::render::shown_messages(transcript, &run.config.mail.limits()),
        person,
        visitor_display: crate::mail::render::visitor_display(&transcript.messages),
        came_back: transcript.since > 0 && !open.thread.message_ids.is_empty(),
        last_step: run.source.has_last_step(),
        now: run.now,
    };
    let mut doc = document::make(&facts);
    // Bounded as the email shows them: a field's value one line of at most 500 characters, the
    // question cut as a message is.
    for value in
        doc.visitor.fields.iter_mut().map(|f| &mut f.value).chain(doc.person.fields.iter_mut().map(|f| &mut f.value))
    {
        *value = crate::mail::render::field_value(value);
    }
    let limits = run.config.mail.limits();
    doc.question = doc.question.map(|q| crate::mail::render::cut(&q, limits.message_chars).into_owned());
    let text = serde_json::to_string(&doc)?;
    Ok(serving
        .into_iter()
        .map(|destination| Note {
            destination: destination.to_owned(),
            state: chat_state,
            key: doc.id.clone(),
            document: text.clone(),
            for_digest: false,
        })
        .collect())
}

/// A page judged: what to write of each conversation, and who each one is with.
struct Judgement<'p> {
    settled: Vec<(&'p Open, Settle)>,
    /// (conversation, visitor, bot) of every conversation on the page the source has.
    identities: Vec<(String, String, String)>,
    /// Due but not judged: the emails rendered had reached `PAGE_BYTES`.
    later: Vec<&'p Open>,
}

/// "12, 13, 14 and 20 more": the new rows of a transcript for a warning, never a whole
/// transcript's worth.
fn rows_named(transcript: &Transcript) -> String {
    let new = transcript.messages.iter().filter(|m| m.id > transcript.since);
    let named: Vec<String> = new.take(ROWS_NAMED).map(|m| m.id.to_string()).collect();
    match transcript.new_messages.saturating_sub(named.len()) {
        0 => named.join(", "),
        more => format!("{} and {more} more", named.join(", ")),
    }
}
