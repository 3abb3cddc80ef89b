//! The cron job: one run orders ingest (fold what the source wrote since the last run into the
//! state), watch (the silent-source alarm, on what ingest read), decide (which conversations
//! reached a new state, under the owner's rules, each decision queued with its email, or listed
//! for a digest, in one transaction), the digests due, the flood guard (what is over the burst,
//! summarised), deliver (send what the outbox holds) and dispatch (what waits for the
//! destinations beside email: webhooks, Slack, Discord). `cycle` is the same run for the
//! watcher (`commands::watch`), on what it keeps open under the lock it holds.

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
    let destinations: Vec<Box<dyn Destination>> = if args.dry_run {
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
    let (state, mailer, renderer, mut lock, _scratch) = if args.dry_run {
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
            log::warn!("{}; this run exits without sending", state::held_by(&at));
            return Ok(None);
        };
        let mut state = State::open_at(&at)?;
        // On a shared state (PostgreSQL), each email and notification waits for the lease.
        state.guard_with(lock.watch());
        state.record_run(&config.settings_fingerprint())?;
        (state, mailer, renderer, Some(lock), None)
    };
    log::debug!("state opened: {:.3?}", started.elapsed());
    let mut held = Held { state, mailer, destinations };
    steps(config, args, routing, &renderer, source, &mut held, lock.as_mut(), now).map(Some)
}

/// What a long-lived process (`chat-notifier watch`) keeps open from one cycle to the next,
/// under the run lock it holds: the state, the transport, the destinations beside email.
pub struct Held {
    pub state: State,
    pub mailer: Mailer,
    pub destinations: Vec<Box<dyn Destination>>,
}

impl Held {
    /// Opens them as `run` does, after the lock is taken (the caller holds `lock`).
    pub fn open(config: &Config, lock: &state::RunLock) -> Result<Self> {
        let destinations = crate::destination::open(&config.destinations)?;
        let mailer = Mailer::from_config(&config.transport)?;
        let mut state = State::open_at(&state::At::of(config))?;
        state.guard_with(lock.watch());
        state.record_run(&config.settings_fingerprint())?;
        Ok(Held { state, mailer, destinations })
    }
}

/// One run on what a watcher holds open, at `now`: the same steps as `run`, in the same order,
/// with the same guarantees (the caller holds `lock`, asked again before anything is sent).
pub fn cycle(
    config: &Config,
    routing: &Routing,
    renderer: &Renderer,
    source: &dyn Source,
    held: &mut Held,
    lock: &mut state::RunLock,
    now: chrono::DateTime<Utc>,
) -> Result<RunSummary> {
    steps(config, &Options { now: Some(now), ..Options::default() }, routing, renderer, source, held, Some(lock), now)
}

/// When something is due next without anything new from the source: the next conversation to
/// reach `abandon_after` (the shortest), the next digest, and, while emails wait for the rate
/// limits, when the next may go. A watcher sleeps until then, at most.
pub fn next_due(
    config: &Config,
    routing: &Routing,
    state: &State,
    waiting: bool,
    now: chrono::DateTime<Utc>,
) -> Result<Option<chrono::DateTime<Utc>>> {
    let shortest = routing.shortest_abandon_after();
    let idle = state.next_to_go_idle(now - shortest)?.map(|at| at + shortest + chrono::TimeDelta::milliseconds(1));
    let digest = digest::next_due(state, routing, now)?;
    let limit = if waiting {
        let limits = RateLimits { per_hour: config.mail.max_per_hour, per_day: config.mail.max_per_day };
        limits.allowance_at(state, now)?.1
    } else {
        None
    };
    Ok([idle, digest, limit].into_iter().flatten().filter(|t| *t > now).min())
}

/// Asked by `watch` when it is told to stop (SIGTERM): the email in flight is finished, no
/// other is begun; what is left waits in the outbox for the next run.
pub fn request_stop() {
    STOP.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Whether a stop was asked for (never, in a cron run).
fn stopping() -> bool {
    STOP.load(std::sync::atomic::Ordering::SeqCst)
}

static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Set by `watch`: failed emails are tried again within this many seconds (its `[watch]
/// retry_max`), not at the next cron run; said so in their lines. 0 in a cron run.
pub fn retry_within(seconds: u64) {
    RETRY_WITHIN.store(seconds, std::sync::atomic::Ordering::SeqCst);
}

/// When an email that failed is tried again, in words for its line.
fn when_retried() -> String {
    match RETRY_WITHIN.load(std::sync::atomic::Ordering::SeqCst) {
        0 => "next run".to_owned(),
        n => format!("by the watcher within {n}s"),
    }
}

static RETRY_WITHIN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[allow(clippy::too_many_arguments)]
fn steps(
    config: &Config,
    args: &Options,
    routing: &Routing,
    renderer: &Renderer,
    source: &dyn Source,
    held: &mut Held,
    mut lock: Option<&mut state::RunLock>,
    now: chrono::DateTime<Utc>,
) -> Result<RunSummary> {
    let Held { state, mailer, destinations } = held;
    let started = Instant::now();
    // A dry run's scratch copy takes no big transactions: its journal is in memory.
    let read = ingest::ingest(source, state, config, routing.watches(), !args.dry_run, now)?;
    log::debug!("ingest: {read} new messages in {:.3?}", started.elapsed());
    if routing.watches() {
        watch::watch(state, routing, config, now)?;
    }
    let started = Instant::now();
    let reopened = state.reopen_held_if_rules_changed(&routing.fingerprint())?;
    if reopened > 0 {
        log::info!("the notification rules changed: {reopened} held conversation(s) are looked at again");
    }
    if args.backfill && !args.dry_run && !state.progress()?.baseline_done {
        flood::confirm_backfill(state.count_open()?, config.mail.burst, args.yes)?;
    }
    let inputs = decide::Inputs { source, renderer, routing, config, args, now };
    let long = read as u64 >= crate::progress::WORTH_SHOWING;
    let judge = |state: &mut State| -> Result<usize> {
        let failed = decide::decide(inputs, state, long)?;
        log::debug!("decide: {:.3?}", started.elapsed());
        digest::send_due(state, routing, config, now)?;
        flood::guard(state, config, now)?;
        flood::guard_destinations(state, config, now)?;
        Ok(failed)
    };
    // A big first run (one that read in one transaction) decides and guards in one too: with
    // random ids each page's conversations are spread over the whole state, so a transaction
    // per page wrote most of the state's pages again each time, and the guard's pass over what
    // decide queued wrote them once more (issue 27). Nothing is sent before it commits.
    let failed = if state.is_big_run() { state.in_one_transaction(judge)? } else { judge(state)? };
    let started = Instant::now();
    // The lock file removed or replaced while this run read and decided (`rm` by hand, a
    // watcher's lost): a run that came meanwhile holds the file at the path and may be sending
    // the same emails. Nothing is sent; what was decided waits in the outbox.
    if let Some(lock) = lock.as_deref_mut() {
        lock.ensure_held()?;
    }
    let limits = RateLimits { per_hour: config.mail.max_per_hour, per_day: config.mail.max_per_day };
    let summary = deliver::deliver(state, mailer, routing, config.max_attempts, limits, now)?;
    log::debug!("deliver: {} sent in {:.3?}", summary.sent, started.elapsed());
    if let Some(lock) = lock {
        lock.ensure_held()?;
    }
    let notified = if stopping() { Default::default() } else { dispatch::dispatch(state, destinations, config, now)? };
    if !args.dry_run {
        state.after_run()?;
    }
    Ok(RunSummary {
        failed,
        sent: summary.sent + notified.sent,
        waiting: summary.waiting + notified.waiting,
        parked: summary.parked + notified.parked,
        deferred: summary.deferred + notified.deferred,
    })
}
