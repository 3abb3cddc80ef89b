//! The cron job: one run orders ingest (fold what the source wrote since the last run into the
//! state), watch (the silent-source alarm, on what ingest read), decide (which conversations
//! reached a new state, under the owner's rules, each decision queued with its email, or listed
//! for a digest, in one transaction), the digests due, the flood guard (what is over the burst,
//! summarised), deliver (send what the outbox holds) and dispatch (what waits for the
//! destinations beside email: webhooks, Slack, Discord).

pub mod classify;
mod decide;
mod deliver;
pub mod digest;
mod dispatch;
mod flood;
pub use deliver::RateLimits;
mod ingest;
pub mod people;
pub mod rules;
mod watch;

use std::time::Instant;

use anyhow::Result;
use chrono::Utc;

use crate::config::Config;
use crate::config::Routing;
use crate::destination::{Destination, Preview};
use crate::mail::render::Renderer;
use crate::mail::send::Mailer;
use crate::source::Source;
use crate::state::{self, State};

/// Messages read from the source per statement, and so per state transaction.
const INGEST_BATCH: usize = 10_000;
/// Conversations decided, or emails sent, per page read from the state.
const PAGE: usize = 500;

/// What a run did, for its exit code.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RunSummary {
    pub sent: usize,
    /// Emails in the outbox after this run: they go out with the next one.
    pub waiting: usize,
    /// Emails parked: refused permanently `max_attempts` times, or unreadable from the outbox.
    pub parked: usize,
    /// Conversations that could not be rendered; looked at again next run.
    pub failed: usize,
    /// Of `waiting`: held back by the rate limits or a throttling provider, by design, not
    /// by a failure.
    pub deferred: usize,
}

/// What one run is asked to do: the command line's `run`, or a test's.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Print every email instead of sending it, on a scratch copy of the state.
    pub dry_run: bool,
    /// On the first run, also email conversations older than `first_run_horizon`.
    pub backfill: bool,
    /// With `backfill`: go ahead without asking even over `mail.burst`.
    pub yes: bool,
    /// Act as if it were this instant.
    pub now: Option<chrono::DateTime<Utc>>,
}

/// None when another run holds the lock.
pub fn run_once(config: &Config, args: &Options) -> Result<Option<RunSummary>> {
    let started = Instant::now();
    // Everything that can fail for a reason the owner must fix fails here, before any state
    // is touched: templates, the export, the transport settings.
    let routing = Routing::new(config);
    let renderer = Renderer::new(&routing, config.mail.limits())?;
    log::debug!("templates: {:.3?}", started.elapsed());
    let source = crate::source::open(config)?;
    log::debug!("source opened: {:.3?}", started.elapsed());
    run(config, args, &routing, renderer, source.as_ref())
}

/// `run_once` on a source already open: a test's own `Source` goes through the same run.
pub fn run_on(config: &Config, source: &dyn Source, args: &Options) -> Result<Option<RunSummary>> {
    let routing = Routing::new(config);
    let renderer = Renderer::new(&routing, config.mail.limits())?;
    run(config, args, &routing, renderer, source)
}

fn run(
    config: &Config,
    args: &Options,
    routing: &Routing,
    renderer: Renderer,
    source: &dyn Source,
) -> Result<Option<RunSummary>> {
    let now = args.now.unwrap_or_else(Utc::now);
    let started = Instant::now();
    // The destinations' secrets are read now (none for a dry run, which prints what they would
    // be sent): a missing one stops the run before anything is decided.
    let mut destinations: Vec<Box<dyn Destination>> = if args.dry_run {
        config
            .destinations
            .iter()
            .map(|c| -> Box<dyn Destination> { Box::new(Preview::new(c, Box::new(std::io::stdout()))) })
            .collect()
    } else {
        crate::destination::open(&config.destinations)?
    };
    // A dry run is a real run on a scratch copy of the state, printing instead of sending
    // (and so rendering no HTML): it takes no lock, so it also previews while cron runs.
    let at = crate::state::At::of(config);
    let (mut state, mut mailer, renderer, _lock, _scratch) = if args.dry_run {
        let (state, scratch) = State::scratch_copy_at(&at)?;
        (
            state,
            Mailer::Print(Box::new(std::io::BufWriter::new(std::io::stdout()))),
            renderer.text_only(),
            None,
            scratch,
        )
    } else {
        let mailer = Mailer::from_config(&config.transport)?;
        let Some(lock) = state::try_lock(&at)? else {
            log::warn!("another run is in progress ({}); this run exits without sending", state::lock_name(&at));
            return Ok(None);
        };
        let mut state = State::open_at(&at)?;
        // On a shared state (PostgreSQL), each email and notification waits for the lease.
        state.guard_with(lock.watch());
        state.record_run(&config.settings_fingerprint())?;
        (state, mailer, renderer, Some(lock), None)
    };
    log::debug!("state opened: {:.3?}", started.elapsed());
    let started = Instant::now();
    // A dry run's scratch copy takes no big transactions: its journal is in memory.
    let read = ingest::ingest(source, &mut state, config, routing.watches(), !args.dry_run, now)?;
    log::debug!("ingest: {read} new messages in {:.3?}", started.elapsed());
    if routing.watches() {
        watch::watch(&mut state, routing, config, now)?;
    }
    let started = Instant::now();
    let reopened = state.reopen_held_if_rules_changed(&routing.fingerprint())?;
    if reopened > 0 {
        log::info!("the notification rules changed: {reopened} held conversation(s) are looked at again");
    }
    if args.backfill && !args.dry_run && !state.progress()?.baseline_done {
        flood::confirm_backfill(state.count_open()?, config.mail.burst, args.yes)?;
    }
    let inputs = decide::Inputs { source, renderer: &renderer, routing, config, args, now };
    let failed = decide::decide(inputs, &mut state, read as u64 >= crate::progress::WORTH_SHOWING)?;
    log::debug!("decide: {:.3?}", started.elapsed());
    let started = Instant::now();
    digest::send_due(&mut state, routing, config, now)?;
    flood::guard(&mut state, config, now)?;
    flood::guard_destinations(&mut state, config, now)?;
    let limits = RateLimits { per_hour: config.mail.max_per_hour, per_day: config.mail.max_per_day };
    let summary = deliver::deliver(&mut state, &mut mailer, routing, config.max_attempts, limits, now)?;
    log::debug!("deliver: {} sent in {:.3?}", summary.sent, started.elapsed());
    let notified = dispatch::dispatch(&mut state, &mut destinations, config, now)?;
    if !args.dry_run {
        state.after_run()?;
    }
    Ok(Some(RunSummary {
        failed,
        sent: summary.sent + notified.sent,
        waiting: summary.waiting + notified.waiting,
        parked: summary.parked + notified.parked,
        deferred: summary.deferred + notified.deferred,
    }))
}
