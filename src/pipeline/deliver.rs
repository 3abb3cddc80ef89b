//! Deliver: send what the outbox holds, oldest first, this run's emails and any left by
//! earlier ones. What a failure means for the rest of the batch is decided by `send::Failure`.

use anyhow::Result;
use chrono::{DateTime, TimeDelta, Utc};

use super::{PAGE, RunSummary};
use crate::config::Routing;
use crate::domain::thread;
use crate::mail::send::{self, Failure, Mailer};
use crate::progress;
use crate::state::{Pending, State, Unreadable};

/// How many emails may go an hour and a day; none: no limit.
#[derive(Debug, Clone, Copy, Default)]
pub struct RateLimits {
    pub per_hour: Option<u32>,
    pub per_day: Option<u32>,
}

/// The limits' hour and day, each a minute short: cron starts a run a little early or late, and
/// an hourly run must find the emails of the run an hour before out of its hour (else it gets
/// half the hourly limit).
fn windows() -> [TimeDelta; 2] {
    [TimeDelta::hours(1) - TimeDelta::minutes(1), TimeDelta::days(1) - TimeDelta::minutes(1)]
}

impl RateLimits {
    /// How many more emails may go now, and when the next may go once none can.
    pub fn allowance_at(self, state: &State, now: DateTime<Utc>) -> Result<(usize, Option<DateTime<Utc>>)> {
        if self.per_hour.is_none() && self.per_day.is_none() {
            // Nothing to count: an idle run reads no more than it did.
            return Ok((usize::MAX, None));
        }
        let [hour, day] = windows();
        Ok(allowance(self, state.sent_since(now - hour)?, state.sent_since(now - day)?))
    }
}

/// Pure: how many more emails may go now, given what went in the last hour and day (count,
/// earliest); and when the next may go once none can: a window after the earliest in it.
fn allowance(
    limits: RateLimits,
    hour: (usize, Option<DateTime<Utc>>),
    day: (usize, Option<DateTime<Utc>>),
) -> (usize, Option<DateTime<Utc>>) {
    let mut left = usize::MAX;
    let mut next = None;
    let [hour_window, day_window] = windows();
    for (limit, (sent, earliest), window) in [(limits.per_hour, hour, hour_window), (limits.per_day, day, day_window)] {
        let Some(limit) = limit else { continue };
        let room = (limit as usize).saturating_sub(sent);
        if room == 0 {
            next = next.max(earliest.map(|t| t + window));
        }
        left = left.min(room);
    }
    (left, next)
}

pub fn deliver(
    state: &mut State,
    mailer: &mut Mailer,
    routing: &Routing,
    max_attempts: u32,
    limits: RateLimits,
    now: DateTime<Utc>,
) -> Result<RunSummary> {
    let mut summary = RunSummary::default();
    let (mut left, next) = limits.allowance_at(state, now)?;
    let mut throttled = false;
    let mut failed_now = 0;
    // A connection lost in one email's transaction: once, the next email goes on a new one;
    // twice in a run, the server is the problem, and the rest waits for the next run.
    let mut lost = false;
    let bar = progress::bar(state.count_pending()? as u64, "sending");
    // Where the transport's acknowledgement survives a crash (a folder's file), and for a
    // preview, sends are marked a page at a time, after one sync; elsewhere each as soon as it
    // is acknowledged.
    let batched = mailer.marks_in_batches();
    // A preview marks nothing: they stay pending in its scratch copy, and are left out of the
    // emails said to wait.
    let records = !mailer.records_nothing();
    let mut previewed = 0;
    let mut written: Vec<i64> = Vec::new();
    let mut after = 0;
    'pages: loop {
        if batched {
            mark_batch(state, mailer, &mut written, &mut summary, now)?;
        }
        let page = state.pending(after, PAGE)?;
        let Some(last) = page.last() else { break };
        after = match last {
            Ok(p) => p.id,
            Err(u) => u.id,
        };
        let page: Vec<Result<Pending, Unreadable>> = page
            .into_iter()
            .map(|row| match row {
                Ok(p) => readdressed(state, routing, p).map(Ok),
                Err(unreadable) => Ok(Err(unreadable)),
            })
            .collect::<Result<_>>()?;
        let mut rows = page.into_iter().peekable();
        while let Some(row) = rows.next() {
            bar.inc(1);
            let p = match row {
                Ok(p) => p,
                Err(unreadable) => {
                    // One email that cannot be read back must not stop the others: parked,
                    // with the conversation named.
                    log::error!(
                        "email for conversation {:?} (outbox row {}) parked: {}",
                        unreadable.conversation_id,
                        unreadable.id,
                        unreadable.reason
                    );
                    state.mark_failed(unreadable.id, &unreadable.reason, true, true)?;
                    summary.parked += 1;
                    continue;
                }
            };
            let id = thread::identifier(&p.conversation_id);
            let what = format!("{} email for #{id}", p.kind.as_str());
            if left == 0 {
                // Over a limit: this one and the rest wait, in order, for later runs.
                let at = next.map_or_else(|| "within the hour".to_owned(), |t| format!("at {}", t.to_rfc3339()));
                log::info!("rate limit reached: the emails left wait in the outbox; the next may go {at}");
                break 'pages;
            }
            // A run whose lease lapsed (a long pause) stops here: another host may be sending.
            state.may_send()?;
            if super::stopping() {
                // Told to stop (a watcher's SIGTERM): the email before was the one in flight.
                break 'pages;
            }
            match mailer.send(&p.email)? {
                Ok(()) => {
                    if !records {
                        previewed += 1;
                    } else if batched {
                        written.push(p.id);
                    } else {
                        // The next email's envelope goes out while this one is marked: a run
                        // stopped in between re-sends this one only (the next has no message yet).
                        if left > 1
                            && let Some(Ok(next)) = rows.peek()
                        {
                            mailer.begin(&next.email);
                        }
                        state.mark_sent(p.id, now)?;
                    }
                    left = left.saturating_sub(1);
                    log::info!("{} {what} to {}", mailer.verb(), send::recipients(&p.email));
                    summary.sent += 1;
                }
                Err(Failure::Throttled(reason)) => {
                    // Not the email's fault: no attempt counted; the rest waits for the next run.
                    state.mark_deferred(p.id, &reason)?;
                    log::warn!(
                        "the SMTP server is throttling ({reason}); the emails left are retried {}",
                        super::when_retried()
                    );
                    throttled = true;
                    break 'pages;
                }
                Err(failure) => {
                    let attempt = p.attempts + 1;
                    // Refused for good, or the connection lost (or the protocol broken) in its own
                    // transaction each time: parked, so that the emails behind it (oldest first) go.
                    // An outage or a temporary refusal is no fault of the email's: it uses up none.
                    let counts = matches!(failure, Failure::Rejected { counts: true, .. } | Failure::Lost { .. });
                    let refusals = p.refusals + u32::from(counts);
                    let park = counts && refusals >= max_attempts;
                    state.mark_failed(p.id, failure.reason(), counts, park)?;
                    if park {
                        let after = match (&failure, refusals) {
                            (Failure::Lost { .. }, 1) => "attempt",
                            (Failure::Lost { .. }, _) => "attempts",
                            (_, 1) => "refusal",
                            _ => "refusals",
                        };
                        log::error!("{what} parked after {refusals} {after}: {}", failure.reason());
                        summary.parked += 1;
                    } else {
                        failed_now += 1;
                        // Every try is an attempt; only the email's own failures count toward
                        // parking it: said, so that "attempt 5" with max_attempts = 3 is no riddle.
                        let toward = if counts {
                            format!("{refusals} of max_attempts = {max_attempts} failures of its own")
                        } else {
                            format!("not its own failure; {refusals} of max_attempts = {max_attempts} so far")
                        };
                        log::warn!(
                            "{what} not sent (attempt {attempt}): {}; it is retried {} ({toward})",
                            failure.reason(),
                            super::when_retried()
                        );
                    }
                    match failure {
                        Failure::Unavailable(_) | Failure::Lost { timed_out: true, .. } => break 'pages,
                        Failure::Lost { .. } if lost => break 'pages,
                        Failure::Lost { .. } => lost = true,
                        _ => {}
                    }
                }
            }
        }
    }
    if batched {
        mark_batch(state, mailer, &mut written, &mut summary, now)?;
    }
    bar.finish_and_clear();
    mailer.finish()?;
    summary.waiting = state.count_pending()?.saturating_sub(previewed);
    if left == 0 || throttled {
        // What waits by design, not because sending it failed this run.
        summary.deferred = summary.waiting.saturating_sub(failed_now);
    }
    Ok(summary)
}

/// An email goes to the recipients its bot has when it is sent, not those it had when it was
/// queued: the hourly limit, an outage or a digest's hour can hold it for long, and an owner who
/// moves a bot's chats to another inbox must get nothing more at the old one. An email about
/// several bots now routed apart, or about none (a flood summary), keeps the recipients it has.
fn readdressed(state: &State, routing: &Routing, mut p: Pending) -> Result<Pending> {
    let bots = state.bots_of_email(&p)?;
    let mut routes = bots.iter().map(|b| routing.for_bot(b)).map(|s| (&s.to, &s.cc));
    if let Some(first) = routes.next()
        && routes.all(|r| r == first)
    {
        p.email.to = first.0.iter().cloned().collect();
        p.email.cc = first.1.iter().cloned().collect();
    }
    Ok(p)
}

/// Syncs what a batched transport wrote, then marks it sent in one transaction; when the sync
/// fails, nothing of it is marked and it is all tried again next run.
fn mark_batch(
    state: &mut State,
    mailer: &mut Mailer,
    written: &mut Vec<i64>,
    summary: &mut RunSummary,
    now: DateTime<Utc>,
) -> Result<()> {
    if written.is_empty() {
        return Ok(());
    }
    match mailer.sync() {
        Ok(()) => state.mark_all_sent(written, now)?,
        Err(e) => {
            log::warn!(
                "{} emails not sent: syncing them to disk failed ({e}); they are retried next run",
                written.len()
            );
            for id in written.iter() {
                state.mark_failed(*id, &format!("syncing to disk: {e}"), false, false)?;
            }
            summary.sent -= written.len();
        }
    }
    written.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowance_table() {
        let at = |m: i64| DateTime::from_timestamp(1_790_000_000 + m * 60, 0).unwrap();
        let none = RateLimits::default();
        let hourly = RateLimits { per_hour: Some(10), per_day: None };
        let both = RateLimits { per_hour: Some(10), per_day: Some(15) };
        assert_eq!(allowance(none, (500, Some(at(0))), (900, Some(at(0)))), (usize::MAX, None));
        assert_eq!(allowance(hourly, (4, Some(at(0))), (40, Some(at(0)))), (6, None));
        assert_eq!(
            allowance(hourly, (10, Some(at(5))), (10, Some(at(5)))),
            (0, Some(at(64))),
            "an hour (less cron's minute) after the earliest"
        );
        assert_eq!(
            allowance(both, (3, Some(at(50))), (15, Some(at(0)))),
            (0, Some(at(24 * 60 - 1))),
            "the day's limit binds"
        );
        assert_eq!(allowance(both, (3, Some(at(50))), (12, Some(at(0)))), (3, None));
    }
}
