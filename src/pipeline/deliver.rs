//! Deliver: send what the outbox holds, oldest first, this run's emails and any left by
//! earlier ones. What a failure means for the rest of the batch is decided by `send::Failure`.

use anyhow::Result;
use chrono::{DateTime, Utc};

use super::{PAGE, RunSummary};
use crate::mail::send::{self, Failure, Mailer};
use crate::mail::thread;
use crate::progress;
use crate::state::State;

pub fn deliver(state: &mut State, mailer: &mut Mailer, max_attempts: u32, now: DateTime<Utc>) -> Result<RunSummary> {
    let mut summary = RunSummary::default();
    let bar = progress::bar(state.count_pending()? as u64, "sending");
    let mut after = 0;
    'pages: loop {
        let page = state.pending(after, PAGE)?;
        let Some(last) = page.last() else { break };
        after = match last {
            Ok(p) => p.id,
            Err(u) => u.id,
        };
        for row in page {
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
                    state.mark_failed(unreadable.id, &unreadable.reason, true)?;
                    summary.parked += 1;
                    continue;
                }
            };
            let id = thread::identifier(&p.conversation_id);
            let what = format!("{} email for #{id}", p.state.as_str());
            match mailer.send(&p.email)? {
                Ok(()) => {
                    state.mark_sent(p.id, now)?;
                    log::info!("{} {what} to {}", mailer.verb(), send::recipients(&p.email));
                    summary.sent += 1;
                }
                Err(failure) => {
                    let attempt = p.attempts + 1;
                    let park = matches!(failure, Failure::Rejected { permanent: true, .. }) && attempt >= max_attempts;
                    state.mark_failed(p.id, failure.reason(), park)?;
                    if park {
                        log::error!("{what} parked after {attempt} refusals: {}", failure.reason());
                        summary.parked += 1;
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
    mailer.finish()?;
    summary.waiting = state.count_pending()?;
    Ok(summary)
}
