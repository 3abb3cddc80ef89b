//! Dispatch: deliver what waits for the destinations beside email (webhooks, Slack), each
//! destination on its own, oldest first, after the emails: one that is down or asks for room
//! stops only itself, so the inbox keeps getting its emails while a webhook fails. A
//! conversation's notifications go in order: one that fails holds its later ones back for the
//! run (a Slack thread's first message must be its first).
//!
//! What a failure means (`destination::Failure`): refused, it counts toward `max_attempts` and
//! the others go on; the destination down, it counts nothing and the rest waits for the next
//! run, not before the server's `Retry-After` or a backoff that doubles with each try (a
//! minute, two, four, at most an hour); asking for room (429), it counts nothing and the rest
//! waits for the `Retry-After`; lost after sending, it counts, and the rest waits. A
//! destination's `max_per_hour` is counted on its own deliveries alone.

use std::collections::HashSet;

use anyhow::Result;
use chrono::{DateTime, TimeDelta, Utc};

use super::{PAGE, RunSummary};
use crate::config::Config;
use crate::destination::{Destination, Failure, Outgoing, about};
use crate::state::State;
use crate::state::THREAD_LOST;

/// A destination's `max_per_hour` window: an hour, a minute short (as the emails' limit), so
/// that an hourly cron gets the whole limit each hour.
const HOUR: TimeDelta = TimeDelta::minutes(59);
/// The longest backoff after an outage.
const BACKOFF_MAX: TimeDelta = TimeDelta::hours(1);

/// Pure: how long an outage's next try waits: the server's word, else a minute doubled with each
/// try so far, at most an hour.
fn backoff(attempts: u32, retry_after: Option<std::time::Duration>) -> TimeDelta {
    match retry_after {
        Some(wait) => TimeDelta::from_std(wait).unwrap_or(BACKOFF_MAX),
        None => TimeDelta::minutes(1 << attempts.min(6)).min(BACKOFF_MAX),
    }
}

/// Delivers what waits for each destination. The summary counts notifications as the emails'
/// does: delivered, still waiting (of which deferred: waiting for room asked), parked.
pub fn dispatch(
    state: &mut State,
    destinations: &mut [Box<dyn Destination>],
    config: &Config,
    now: DateTime<Utc>,
) -> Result<RunSummary> {
    let mut summary = RunSummary::default();
    for destination in destinations.iter_mut() {
        let settings = config.destinations.iter().find(|c| c.name == destination.name());
        let max_attempts = settings.and_then(|c| c.max_attempts).unwrap_or(config.max_attempts);
        let per_hour = settings.and_then(|c| c.max_per_hour);
        let one = deliver_to(state, destination.as_mut(), max_attempts, per_hour, now)?;
        summary.sent += one.sent;
        summary.parked += one.parked;
        summary.deferred += one.deferred;
    }
    // Only the destinations configured: what waits for one taken out of the config waits for
    // it to come back (status lists it), and is no failure of this run.
    for destination in destinations.iter() {
        summary.waiting += state.count_pending_deliveries_to(destination.name())?;
    }
    Ok(summary)
}

fn deliver_to(
    state: &mut State,
    destination: &mut dyn Destination,
    max_attempts: u32,
    per_hour: Option<u32>,
    now: DateTime<Utc>,
) -> Result<RunSummary> {
    let mut summary = RunSummary::default();
    let name = destination.name().to_owned();
    let kind = destination.kind().as_str();
    // Conversations whose notification did not go this run: their later ones wait.
    let mut held: HashSet<String> = HashSet::new();
    // Waiting by design (the server asked for room), not for a failure: all that is left waits.
    let mut waits = false;
    let mut after = 0;
    // The destination asked for room, or is backed off after an outage: nothing is tried.
    if let Some(at) = state.destination_waits_until(&name)?.filter(|t| *t > now) {
        log::info!("{kind} {name:?}: the notifications wait until {}", at.to_rfc3339());
        return Ok(RunSummary { deferred: state.count_pending_deliveries_to(&name)?, ..summary });
    }
    // Its own hourly limit, counted on its own deliveries: one destination's limit never holds
    // back another's, nor the emails.
    let mut left = match per_hour {
        Some(limit) => (limit as usize).saturating_sub(state.delivered_since(&name, now - HOUR)?),
        None => usize::MAX,
    };
    'pages: loop {
        let page = state.pending_deliveries(&name, after, PAGE)?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for d in page {
            let what = format!("{} notification for {} to {kind} {name:?}", d.state, about(&d.conversation_id));
            if held.contains(&d.conversation_id) {
                continue;
            }
            if left == 0 {
                log::info!("{kind} {name:?}: max_per_hour reached; the notifications left wait for later runs");
                waits = true;
                break 'pages;
            }
            let root = state.thread_root(&name, &d.conversation_id)?;
            let thread_lost = root.as_deref() == Some(THREAD_LOST);
            let n = Outgoing {
                conversation_id: &d.conversation_id,
                state: &d.state,
                key: &d.key,
                document: &d.document,
                thread: root.as_deref().filter(|_| !thread_lost),
                thread_lost,
            };
            // A run whose lease lapsed (a long pause) stops here: another host may be sending.
            state.may_send()?;
            match destination.send(&n)? {
                Ok(sent) => {
                    // A first notification delivered without a usable thread: delivered (never
                    // sent twice), said once, and the thread marked lost so that the later ones
                    // go as messages of their own saying so, never starting a thread unseen.
                    // A summary or a digest is one message: it has no later ones.
                    let one_message =
                        d.conversation_id.starts_with("summary:") || d.conversation_id.starts_with("digest:");
                    let root = match &sent.unthreaded {
                        Some(why) if root.is_none() && !one_message => {
                            log::warn!(
                                "{what} delivered, but {why}: its conversation's later notifications there go as \
                                 messages of their own, not in a thread"
                            );
                            Some(THREAD_LOST.to_owned())
                        }
                        _ => sent.root,
                    };
                    state.mark_delivered(&d, root.as_deref(), now)?;
                    left = left.saturating_sub(1);
                    log::info!("sent {what}");
                    summary.sent += 1;
                }
                Err(failure) => {
                    held.insert(d.conversation_id.clone());
                    let counts = matches!(failure, Failure::Rejected(_) | Failure::Lost(_));
                    let refusals = d.refusals + u32::from(counts);
                    let park = counts && refusals >= max_attempts;
                    let not_before = match &failure {
                        Failure::Unavailable { retry_after, .. } => Some(now + backoff(d.attempts, *retry_after)),
                        Failure::Throttled { retry_after, .. } => retry_after.map(|w| now + backoff(0, Some(w))),
                        _ => None,
                    };
                    state.mark_delivery_failed(d.id, failure.reason(), counts, park, not_before)?;
                    let attempt = d.attempts + 1;
                    if park {
                        log::error!("{what} parked after {refusals} failures of its own: {}", failure.reason());
                        summary.parked += 1;
                    } else {
                        let toward = if counts {
                            format!("{refusals} of max_attempts = {max_attempts} failures of its own")
                        } else {
                            format!("not its own failure; {refusals} of max_attempts = {max_attempts} so far")
                        };
                        let when = not_before
                            .map_or_else(|| "next run".to_owned(), |t| format!("next run from {}", t.to_rfc3339()));
                        match failure {
                            Failure::Throttled { .. } => {
                                log::warn!(
                                    "{kind} {name:?} is throttling ({}); the notifications left wait for the {when}",
                                    failure.reason()
                                );
                                waits = true;
                            }
                            _ => log::warn!(
                                "{what} not sent (attempt {attempt}): {}; it is retried {when} ({toward})",
                                failure.reason()
                            ),
                        }
                    }
                    match failure {
                        // The destination is down, busy or slow: the rest waits, so that one
                        // destination's outage costs a run at most one timeout.
                        Failure::Unavailable { .. } | Failure::Throttled { .. } | Failure::Lost(_) => break 'pages,
                        Failure::Rejected(_) => {}
                    }
                }
            }
        }
    }
    if waits {
        summary.deferred = state.count_pending_deliveries_to(&name)?;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_an_hour_and_the_server_has_the_last_word() {
        let minutes = |a| backoff(a, None).num_minutes();
        assert_eq!([0, 1, 2, 3, 5, 6, 30].map(minutes), [1, 2, 4, 8, 32, 60, 60]);
        assert_eq!(backoff(3, Some(std::time::Duration::from_secs(7))), TimeDelta::seconds(7));
    }
}
