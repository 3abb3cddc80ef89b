//! `chat-notifier watch`: the cron job's pipeline in a loop, in one long-lived process, with
//! its guarantees. It takes the state's run lock once and holds it for its life (a cron `run`
//! meanwhile exits 4, as beside another run), asking `RunLock::renew` between cycles. It
//! wakes for a write to a SQLite source (`inotify`), every `[watch] interval` otherwise (a
//! PostgreSQL source's latency), when the next conversation reaches `abandon_after`, and for
//! the next digest or rate-limit time, whichever comes first; it sleeps in between.
//!
//! A problem (the source gone, PostgreSQL restarted, the SMTP server down) is one line, once
//! (`quiet`), retried with waits that double up to `[watch] retry_max`, everything re-opened;
//! one line again when it recovers. SIGHUP reloads the config (a broken one is named and the
//! old one goes on); SIGTERM or SIGINT finish the email in flight and exit 0 (`signals`).
//! Under systemd (`Type=notify`) it says READY=1, its STATUS= and, where asked, WATCHDOG=1.

mod inotify;
pub mod quiet;
mod sd_notify;
mod signals;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use chrono::Utc;

use crate::config::{self, Config, Location, Routing};
use crate::mail::render::Renderer;
use crate::pipeline::{self, Held, RunSummary};
use crate::source::Source;
use crate::state;

/// How long writes must pause before a cycle reads them, and the longest they can delay it.
const SETTLE: Duration = Duration::from_millis(20);
const SETTLE_AT_MOST: Duration = Duration::from_millis(500);
/// The first wait after a failure; each next one doubles, up to `[watch] retry_max`.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// The config in force, and what is built from it once.
struct Settings {
    config: Config,
    routing: Routing,
    renderer: Renderer,
}

impl Settings {
    fn load(path: &Path) -> Result<Self> {
        let config = config::load(path)?;
        let routing = Routing::new(&config);
        let renderer = Renderer::new(&routing, config.mail.limits())?;
        Ok(Settings { config, routing, renderer })
    }

    /// The SQLite file the source is, where it is one.
    fn sqlite_source(&self) -> Option<PathBuf> {
        match self.config.source.as_ref()?.location() {
            Location::Sqlite(path) => Some(path),
            Location::Postgres(_) => None,
        }
    }
}

/// What is open between cycles; dropped after a failure and opened again.
struct Open {
    source: Box<dyn Source>,
    /// The SQLite source's file as opened (device, inode): another file at its path (the
    /// export replaced or rotated) is opened anew, as the next `run` would.
    file: Option<(u64, u64)>,
}

fn identity(path: &Path) -> Option<(u64, u64)> {
    path.metadata().ok().map(|m| (m.dev(), m.ino()))
}

/// Returns when told to stop: Ok(true); false when another run holds the lock.
pub fn watch(path: &Path) -> Result<bool> {
    let since = Utc::now();
    // First: a SIGTERM from now on stops it cleanly, even before the first cycle.
    let signals = signals::install()?;
    let mut settings = Settings::load(path)?;
    let at = state::At::of(&settings.config);
    let Some(mut lock) = state::try_lock(&at)? else {
        log::warn!("{}; the watcher exits without sending", state::held_by(&at));
        return Ok(false);
    };
    lock.announce_watcher(since)?;
    let notifier = sd_notify::Notifier::from_env();
    quiet::turn_on();
    pipeline::retry_within(retry_max(&settings).as_secs());
    let mut writes = watch_writes(&settings);
    notifier.send("READY=1\nSTATUS=watching");
    let mut open: Option<Open> = None;
    // What no retry brings back fails now, exit 1, as `run` would: the state (a directory, a
    // file that is not one), a secret not set. Only a server (the source's, SMTP) is waited for.
    let mut held = Some(Held::open(&settings.config, &lock)?);
    source_secret(&settings.config)?;
    let mut retry = FIRST_RETRY;
    let mut failing_since: Option<Instant> = None;
    let mut last_status = String::new();
    loop {
        if signals.stopping() {
            break;
        }
        if signals.take_reload() {
            match Settings::load(path).and_then(|new| usable(&new.config).map(|()| new)) {
                Ok(new) if new.config.state != settings.config.state => log::error!(
                    "config {}: state changed to {}; a watcher keeps the state it holds ({}): restart it to move",
                    path.display(),
                    new.config.state.display(),
                    settings.config.state.display()
                ),
                Ok(new) => {
                    settings = new;
                    pipeline::retry_within(retry_max(&settings).as_secs());
                    (open, held) = (None, None);
                    writes = watch_writes(&settings);
                    log::info!("config {} reloaded", path.display());
                }
                Err(e) => log::error!("{e:#}; the watcher goes on with the config it had"),
            }
        }
        let now = Utc::now();
        let result = lock.ensure_held().and_then(|()| cycle(&settings, &mut open, &mut held, &mut lock, now));
        if let Err(e) = &result
            && e.downcast_ref::<state::LockLost>().is_some()
        {
            // Exits 1 with its line: a run may be sending now, the watcher must not go on.
            notifier.send("STOPPING=1\nSTATUS=the state lock was lost");
            return result.map(|_| false);
        }
        let failing = match &result {
            Ok(summary) => summary.waiting > summary.deferred,
            Err(_) => true,
        };
        if let Err(e) = &result {
            // Opened again for the next try: a connection that failed is not trusted again.
            (open, held) = (None, None);
            log::error!("{e:#}; the watcher tries again within {}s", retry_max(&settings).as_secs());
        }
        quiet::cycle_ended(!failing);
        let status = match (&result, failing) {
            (Err(e), _) => format!("failing: {}", crate::domain::text::line(&format!("{e:#}"))),
            (Ok(s), true) => format!("{} email(s) waiting on a failure", s.waiting - s.deferred),
            (Ok(_), false) => "watching".to_owned(),
        };
        match (failing, failing_since) {
            (true, None) => failing_since = Some(Instant::now()),
            (false, Some(at)) => {
                log::warn!("recovered after {}s: the last cycle ran cleanly", at.elapsed().as_secs());
                failing_since = None;
            }
            _ => {}
        }
        if status != last_status {
            notifier.send(&format!("STATUS={status}"));
            last_status = status;
        }
        if !failing
            && let Some(w) = &writes
            && w.drain()
        {
            // Written while the cycle ran (or by it): read again at once.
            continue;
        }
        let mut wake = Instant::now() + settings.config.watch.interval.0.to_std().unwrap_or(Duration::from_secs(5));
        if failing {
            let max = retry_max(&settings);
            wake = Instant::now() + retry.min(max);
            retry = (retry * 2).min(max);
        } else {
            retry = FIRST_RETRY;
        }
        if let (Ok(summary), Some(h)) = (&result, &held)
            && let Ok(Some(due)) =
                pipeline::next_due(&settings.config, &settings.routing, &h.state, summary.waiting > 0, now)
            && let Ok(after) = (due - Utc::now()).to_std()
        {
            wake = wake.min(Instant::now() + after);
        }
        // While something fails, a write wakes it no sooner than a second after the last try:
        // a bot writing all the time does not make it hammer a server that is down.
        if failing && wait(&signals, None, &notifier, wake.min(Instant::now() + FIRST_RETRY)) {
            continue;
        }
        wait(&signals, writes.as_ref(), &notifier, wake);
    }
    notifier.send("STOPPING=1");
    Ok(true)
}

/// The longest wait between tries while something fails (`[watch] retry_max`).
fn retry_max(settings: &Settings) -> Duration {
    settings.config.watch.retry_max.0.to_std().unwrap_or(Duration::from_secs(300))
}

/// What a run needs before it reads anything, checked before a reloaded config replaces the one
/// in force: the transport's, the destinations' and the source's secrets readable.
fn usable(config: &Config) -> Result<()> {
    crate::mail::send::Mailer::from_config(&config.transport)?;
    crate::destination::open(&config.destinations)?;
    source_secret(config)
}

/// The source's password read, where the config points to one: a variable not set is the
/// owner's to fix, not a server's to come back.
fn source_secret(config: &Config) -> Result<()> {
    config.source.as_ref().map_or(Ok(None), |s| s.password()).map(drop)
}

/// inotify on the SQLite source, where there is one; none where it cannot be (the folder
/// gone): then the interval is the latency, as for PostgreSQL.
fn watch_writes(settings: &Settings) -> Option<inotify::Writes> {
    let path = settings.sqlite_source()?;
    match inotify::Writes::watch(&path) {
        Ok(w) => Some(w),
        Err(e) => {
            log::warn!("{e:#}; the source is read every [watch] interval instead");
            None
        }
    }
}

/// One run: the source and the state opened if they are not, then the pipeline.
fn cycle(
    settings: &Settings,
    open: &mut Option<Open>,
    held: &mut Option<Held>,
    lock: &mut state::RunLock,
    now: chrono::DateTime<Utc>,
) -> Result<RunSummary> {
    let sqlite = settings.sqlite_source();
    if let (Some(path), Some(o)) = (&sqlite, &*open)
        && identity(path) != o.file
    {
        // Removed, replaced or rotated: what `run` would open now.
        *open = None;
    }
    if open.is_none() {
        let file = sqlite.as_deref().and_then(identity);
        *open = Some(Open { source: crate::source::open(&settings.config)?, file });
    }
    if held.is_none() {
        *held = Some(Held::open(&settings.config, lock)?);
    }
    let (Some(o), Some(h)) = (open.as_ref(), held.as_mut()) else {
        return Err(anyhow!("the source or the state did not open"));
    };
    pipeline::cycle(&settings.config, &settings.routing, &settings.renderer, o.source.as_ref(), h, lock, now)
}

/// Sleeps until `wake`, a signal, or a write to the source (once writes settle), telling
/// systemd's watchdog meanwhile; true when a signal woke it.
fn wait(
    signals: &signals::Signals,
    writes: Option<&inotify::Writes>,
    notifier: &sd_notify::Notifier,
    wake: Instant,
) -> bool {
    let mut pinged = Instant::now();
    notifier.watchdog.is_some().then(|| notifier.send("WATCHDOG=1"));
    loop {
        let now = Instant::now();
        if now >= wake {
            return false;
        }
        let mut until = wake;
        if let Some(period) = notifier.watchdog {
            if now >= pinged + period {
                notifier.send("WATCHDOG=1");
                pinged = now;
            }
            until = until.min(pinged + period);
        }
        match poll(signals, writes, until - now) {
            Woken::Signal => {
                signals.drain();
                return true;
            }
            Woken::Write => {
                if writes.is_some_and(inotify::Writes::drain) {
                    settle(writes);
                    return false;
                }
            }
            Woken::Timeout => {}
        }
    }
}

/// Waits for writes to pause (`SETTLE`), at most `SETTLE_AT_MOST`: one cycle for a burst.
fn settle(writes: Option<&inotify::Writes>) {
    let Some(w) = writes else { return };
    let started = Instant::now();
    while started.elapsed() < SETTLE_AT_MOST {
        let mut fd = libc::pollfd { fd: w.fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one pollfd of ours.
        let n = unsafe { libc::poll(&mut fd, 1, SETTLE.as_millis() as libc::c_int) };
        if n <= 0 {
            return;
        }
        w.drain();
    }
}

enum Woken {
    Signal,
    Write,
    Timeout,
}

fn poll(signals: &signals::Signals, writes: Option<&inotify::Writes>, timeout: Duration) -> Woken {
    let mut fds = vec![libc::pollfd { fd: signals.fd(), events: libc::POLLIN, revents: 0 }];
    if let Some(w) = writes {
        fds.push(libc::pollfd { fd: w.fd(), events: libc::POLLIN, revents: 0 });
    }
    // Rounded up: a wait of 0.4 ms must not become a busy loop of zero-length polls.
    let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
    // SAFETY: a vector of pollfds of ours, its length given.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if n <= 0 {
        return Woken::Timeout;
    }
    if fds[0].revents != 0 {
        return Woken::Signal;
    }
    Woken::Write
}
