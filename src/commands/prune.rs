//! `chat-notifier prune --older-than DURATION`: forgets settled conversations idle since
//! before then, with their sent and parked email records. Nothing pending and nothing open is
//! touched.

use anyhow::Result;
use chrono::Utc;

use crate::cli::PruneArgs;
use crate::config::Config;
use crate::state::{self, State};

/// False when another run holds the lock (nothing was changed).
pub fn prune(config: &Config, args: &PruneArgs) -> Result<bool> {
    let at = crate::state::At::of(config);
    let Some(_lock) = state::try_lock(&at)? else {
        log::warn!("another run is in progress; prune exits without changing anything");
        return Ok(false);
    };
    let before = args.now.unwrap_or_else(Utc::now) - args.older_than.0;
    let (conversations, emails) = State::open_at(&at)?.prune(before)?;
    log::info!("pruned {conversations} conversation(s) idle since before {before} and {emails} email record(s)");
    Ok(true)
}
