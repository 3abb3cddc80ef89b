//! `chat-notifier state copy --to postgresql://...`: moves the state from its SQLite file into
//! an empty PostgreSQL database, threads and all, so that hosts sharing it continue every
//! thread (same Message-IDs, References). Refused when the database holds a state already.

use anyhow::{Result, anyhow, bail};

use crate::cli::CopyArgs;
use crate::config::Config;
use crate::state::{self, At};

/// False when a run holds the state file's lock or the database's lease (nothing copied).
pub fn copy(config: &Config, args: &CopyArgs) -> Result<bool> {
    let At::File(from) = crate::state::At::of(config) else {
        bail!("state copy: the config's state is on PostgreSQL already; `state copy` copies a state file");
    };
    crate::config::validate_state_url(&args.to).map_err(|e| anyhow!("state copy: {e}"))?;
    let to = At::Postgres {
        url: args.to.clone(),
        password_env: args.password_env.clone(),
        password_file: args.password_file.clone(),
        lease: state::lease::DEFAULT_LENGTH,
    };
    let counts = match state::copy(&from, &to)? {
        Some(counts) => counts,
        None => {
            log::warn!("a run is in progress on the state file or the database; state copy changed nothing");
            return Ok(false);
        }
    };
    super::print(format!(
        "copied {} to {}: {counts}\nnow set state = \"{}\" in the config (its password in state_password_env or \
         state_password_file)\n",
        from.display(),
        to.shown(),
        to.shown()
    ))?;
    Ok(true)
}
