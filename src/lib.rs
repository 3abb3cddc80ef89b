//! chat-notifier: the one place that orders a run. Load the config, open the export and the
//! state, fold new messages into the state, decide, render, queue, send.

pub mod check;
pub mod classify;
pub mod cli;
pub mod config;
pub mod export;
pub mod notify;
pub mod preview;
pub mod progress;
pub mod render;
pub mod report;
pub mod send;
pub mod state;
pub mod status;
pub mod thread;

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::CommandFactory;

use crate::classify::{ChatState, Decision, Timing, classify};
use crate::cli::{Cli, Command, PruneArgs, RunArgs};
use crate::config::Config;
use crate::export::{Conversation, Export};
use crate::notify::{Routing, Settings, Verdict};
use crate::render::{Draft, Renderer};
use crate::send::{Failure, Sender};
use crate::state::{Open, State};

/// Messages read from the export per statement, and so per state transaction.
const INGEST_BATCH: usize = 10_000;
/// Conversations decided, or emails sent, per page read from the state.
const PAGE: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done(Report),
    /// Another run holds the lock; this one did nothing.
    Busy,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub sent: usize,
    /// Emails in the outbox after this run: they go out with the next one.
    pub waiting: usize,
    /// Emails refused permanently `max_attempts` times: kept, no longer retried.
    pub parked: usize,
    /// Conversations that could not be rendered; looked at again next run.
    pub failed: usize,
}

/// Exit codes, as documented in the README.
pub mod exit {
    pub const OK: u8 = 0;
    pub const ERROR: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const INCOMPLETE: u8 = 3;
    pub const BUSY: u8 = 4;
}

impl Outcome {
    pub fn exit_code(self) -> ExitCode {
        ExitCode::from(match self {
            Outcome::Busy => exit::BUSY,
            Outcome::Done(r) if r.waiting + r.parked + r.failed > 0 => exit::INCOMPLETE,
            Outcome::Done(_) => exit::OK,
        })
    }
}

pub fn run(cli: &Cli) -> Result<Outcome> {
    // Completions and the man page need no config.
    let path = match &cli.command {
        Command::Completions { .. } | Command::Man => std::path::PathBuf::new(),
        _ => config::locate(cli.config.as_deref())?,
    };
    match &cli.command {
        Command::Run(args) => run_once(&config::load(&path)?, args),
        Command::Check(args) => check::check(&path, args.smtp).map(|()| Outcome::Done(Report::default())),
        Command::Prune(args) => prune(&config::load(&path)?, args),
        Command::Preview(args) => {
            preview::preview(&config::load(&path)?, args).map(|()| Outcome::Done(Report::default()))
        }
        Command::Report(args) => report::report(&config::load(&path)?, args).map(|()| Outcome::Done(Report::default())),
        Command::Status(args) => status::status(&config::load(&path)?, args).map(|()| Outcome::Done(Report::default())),
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "chat-notifier", &mut std::io::stdout());
            Ok(Outcome::Done(Report::default()))
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()).context("writing the man page")?;
            Ok(Outcome::Done(Report::default()))
        }
    }
}

/// Forgets settled conversations idle since before `--older-than`, with their sent and parked
/// email records. Nothing pending and nothing open is touched.
pub fn prune(config: &Config, args: &PruneArgs) -> Result<Outcome> {
    let Some(_lock) = state::try_lock(&config.state)? else {
        log::warn!("another run is in progress; prune exits without changing anything");
        return Ok(Outcome::Busy);
    };
    let mut state = State::open(&config.state)?;
    let before = args.now.unwrap_or_else(Utc::now) - args.older_than.0;
    let (conversations, emails) = state.prune(before)?;
    log::info!("pruned {conversations} conversation(s) idle since before {before} and {emails} email record(s)");
    Ok(Outcome::Done(Report::default()))
}

pub fn run_once(config: &Config, args: &RunArgs) -> Result<Outcome> {
    let now = args.now.unwrap_or_else(Utc::now);
    let started = Instant::now();
    // Everything that can fail for a reason the owner must fix fails here, before any state
    // is touched: templates, the export, the transport settings.
    let routing = Routing::new(config);
    let renderer = Renderer::new(&routing)?;
    log::debug!("templates: {:.3?}", started.elapsed());
    let export = Export::open(&config.export)?;
    log::debug!("export opened: {:.3?}", started.elapsed());
    // A dry run is a real run on a scratch copy of the state, printing instead of sending
    // (and so rendering no HTML): it takes no lock, so it also previews while cron runs.
    let (mut state, mut sender, renderer, _lock, _scratch) = if args.dry_run {
        let (state, scratch) = State::scratch_copy(&config.state)?;
        (
            state,
            Sender::Print(Box::new(std::io::BufWriter::new(std::io::stdout()))),
            renderer.text_only(),
            None,
            Some(scratch),
        )
    } else {
        let sender = Sender::from_config(&config.transport)?;
        let Some(lock) = state::try_lock(&config.state)? else {
            log::warn!(
                "another run is in progress (lock {} is held); this run exits without sending",
                state::lock_path(&config.state).display()
            );
            return Ok(Outcome::Busy);
        };
        (State::open(&config.state)?, sender, renderer, Some(lock), None)
    };
    log::debug!("state opened: {:.3?}", started.elapsed());
    let started = Instant::now();
    let read = ingest(&export, &mut state)?;
    log::debug!("ingest: {read} new messages in {:.3?}", started.elapsed());
    let started = Instant::now();
    let reopened = state.reopen_held_if_rules_changed(&routing.fingerprint())?;
    if reopened > 0 {
        log::info!("the notification rules changed: {reopened} held conversation(s) are looked at again");
    }
    let long = read as u64 >= progress::WORTH_SHOWING;
    let inputs = Inputs { export: &export, renderer: &renderer, routing: &routing, config, args, now };
    let failed = decide(inputs, &mut state, long)?;
    log::debug!("decide: {:.3?}", started.elapsed());
    let started = Instant::now();
    let report = deliver(&mut state, &mut sender, config.max_attempts, now)?;
    log::debug!("deliver: {} sent in {:.3?}", report.sent, started.elapsed());
    Ok(Outcome::Done(Report { failed, ..report }))
}

/// Folds the messages written since the last run into the conversations they belong to.
/// Returns how many were read.
fn ingest(export: &Export, state: &mut State) -> Result<usize> {
    let mut watermark = state.progress()?.watermark;
    let bar = progress::bar(export.last_message_id()?.saturating_sub(watermark) as u64, "reading messages");
    let mut read = 0;
    loop {
        let batch = export.activity_after(watermark, INGEST_BATCH)?;
        let Some(through) = batch.through else {
            bar.finish_and_clear();
            return Ok(read);
        };
        read += batch.activity.len();
        bar.inc(through.saturating_sub(watermark) as u64);
        let seen = classify::fold(&batch.activity);
        state.atomically(|tx| tx.track(seen.iter().map(|(id, s)| (*id, *s)), through))?;
        watermark = through;
    }
}

/// Classifies every conversation that may be due, applies the owner's rules, and queues the
/// emails due. Returns how many conversations could not be rendered (they stay open).
fn decide(run: Inputs, state: &mut State, long: bool) -> Result<usize> {
    let Inputs { export, renderer, routing, config, args, now } = run;
    let counter = progress::counter(long, "deciding");
    let progress = state.progress()?;
    let first_run = !progress.baseline_done;
    if args.backfill && !first_run {
        log::info!("--backfill only matters on a first run; this state file has had one");
    }
    // Candidates by the shortest abandon_after of any bot; each is judged again below with
    // its own bot's.
    let timing = Timing {
        now,
        abandon_after: routing.shortest_abandon_after(),
        baseline_before: (first_run && !args.backfill).then(|| now - config.first_run_horizon.0),
    };
    let domain = config.message_id_domain();
    let (mut failed, mut baselined) = (0, 0);
    let mut after = String::new();
    loop {
        // Conversations still within abandon_after and not ended can only wait: not loaded.
        let page = state.open_conversations(now - timing.abandon_after, &after, PAGE)?;
        let Some(last) = page.last() else { break };
        counter.inc(page.len() as u64);
        after = last.id.clone();
        let mut settle: Vec<(&Open, Settle)> = Vec::new();
        let mut candidates: Vec<&Open> = Vec::new();
        for open in &page {
            match classify(&open.tracked, &timing) {
                Decision::Nothing | Decision::Wait => {}
                Decision::Baseline => {
                    baselined += 1;
                    settle.push((open, Settle::Cover));
                }
                Decision::Notify(_) => candidates.push(open),
            }
        }
        // Reading and rendering happen before the transaction, which then only writes.
        let ids: Vec<&str> = candidates.iter().map(|o| o.id.as_str()).collect();
        let conversations = export.conversations(&ids)?;
        let mut due: Vec<(&Open, &Conversation, &Settings, ChatState)> = Vec::new();
        for open in candidates {
            let Some(conversation) = conversations.get(&open.id) else {
                log::warn!(
                    "export {}: messages point to conversation {:?}, which has no conversations row; they are skipped",
                    config.export.display(),
                    open.id
                );
                settle.push((open, Settle::Cover));
                continue;
            };
            let settings = routing.for_bot(&conversation.bot_id);
            if let Decision::Notify(chat_state) =
                classify(&open.tracked, &Timing { abandon_after: settings.abandon_after, ..timing })
            {
                due.push((open, conversation, settings, chat_state));
            }
        }
        let wanted: Vec<(&str, i64)> = due.iter().map(|(o, ..)| (o.id.as_str(), o.tracked.last_message)).collect();
        let mut transcripts = export.transcripts(&wanted)?;
        for (open, conversation, settings, chat_state) in due {
            let transcript = transcripts.remove(&open.id).unwrap_or_default();
            if let Verdict::Hold(why) = notify::verdict(settings, chat_state, &transcript) {
                log::debug!("conversation {:?}: {} held back: {why}", open.id, chat_state.as_str());
                settle.push((open, Settle::Hold));
                continue;
            }
            let draft = Draft {
                conversation,
                transcript: &transcript,
                state: chat_state,
                covered_before: open.tracked.covered_through,
                thread: &open.thread,
                now,
                from: &config.mail.from,
            };
            match renderer.compose(&draft, settings, &domain) {
                Ok(email) => settle.push((open, Settle::Queue(chat_state, Box::new(email)))),
                Err(e) => {
                    log::error!("conversation {:?}: {e:#}; it is tried again next run", open.id);
                    failed += 1;
                }
            }
        }
        state.atomically(|tx| {
            for (open, settle) in &settle {
                let through = open.tracked.last_message;
                match settle {
                    Settle::Cover => tx.cover(&open.id, through)?,
                    Settle::Hold => tx.hold(&open.id, through)?,
                    Settle::Queue(chat_state, email) => tx.queue(&open.id, *chat_state, through, email)?,
                }
            }
            Ok(())
        })?;
    }
    counter.finish_and_clear();
    if first_run {
        state.atomically(|tx| tx.finish_baseline())?;
        if baselined > 0 {
            log::warn!(
                "first run: {baselined} conversation(s) idle for more than {}h recorded without an email \
                 (run with --backfill on a fresh state file to send them)",
                config.first_run_horizon.0.num_hours()
            );
        }
    }
    Ok(failed)
}

/// What a run decides with, fixed for its whole length.
#[derive(Clone, Copy)]
struct Inputs<'a> {
    export: &'a Export,
    renderer: &'a Renderer,
    routing: &'a Routing,
    config: &'a Config,
    args: &'a RunArgs,
    now: DateTime<Utc>,
}

/// What a decision does to a conversation's record.
enum Settle {
    /// Covered without an email: first-run history, or messages of a conversation the export
    /// does not have.
    Cover,
    /// Not worth an email under the rules, for now.
    Hold,
    Queue(ChatState, Box<render::Email>),
}

/// Sends what the outbox holds, oldest first: this run's emails and any left by earlier ones.
fn deliver(state: &mut State, sender: &mut Sender, max_attempts: u32, now: DateTime<Utc>) -> Result<Report> {
    let mut report = Report::default();
    let bar = progress::bar(state.count_pending()? as u64, "sending");
    let mut after = 0;
    'pages: loop {
        let page = state.pending(after, PAGE)?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for p in &page {
            bar.inc(1);
            let id = thread::identifier(&p.conversation_id);
            let what = format!("{} email for #{id}", p.state.as_str());
            match sender.send(&p.email) {
                Ok(()) => {
                    state.mark_sent(p.id, now)?;
                    log::info!("{} {what} to {}", sender.verb(), send::recipients(&p.email));
                    report.sent += 1;
                }
                Err(failure) => {
                    let attempt = p.attempts + 1;
                    let park = matches!(failure, Failure::Rejected { permanent: true, .. }) && attempt >= max_attempts;
                    state.mark_failed(p.id, failure.reason(), park)?;
                    if park {
                        log::error!("{what} parked after {attempt} refusals: {}", failure.reason());
                        report.parked += 1;
                    } else {
                        log::warn!("{what} not sent (attempt {attempt}): {}; it is retried next run", failure.reason());
                    }
                    if let Failure::Unavailable(_) = failure {
                        break 'pages;
                    }
                }
            }
        }
    }
    bar.finish_and_clear();
    sender.finish()?;
    report.waiting = state.count_pending()?;
    Ok(report)
}
