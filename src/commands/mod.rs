//! The commands a person runs by hand: `check`, `status`, `preview`, `report`, `leads`, `prune`,
//! `state copy`, and the completion script and man page. Each reads (prune and `state copy`
//! aside) and prints; none sends. And `watch`, the long-lived process that runs the pipeline
//! whenever there is something to do.

pub mod check;
pub mod leads;
pub mod preview;
pub mod prune;
pub mod report;
pub mod state;
pub mod status;
pub mod watch;

use std::io::Write;

use anyhow::{Context, Result};

/// Writes a command's whole output to stdout. A reader that went away (`status | head`) ends
/// the command quietly: `main` treats a broken pipe as a normal end.
pub fn print(out: impl AsRef<[u8]>) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_ref()).and_then(|()| stdout.flush()).context("writing to stdout")
}

/// Whether an error is stdout's reader going away, which is how `| head` ends a command.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}
