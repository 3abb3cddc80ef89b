//! chat-notifier: reads a chatbot runtime's conversations and emails the owner one message per
//! new conversation state, each conversation in its own mail thread.
//!
//! The modules, from the bottom up; each imports only those below it (`tests/layers.rs`):
//! - [`domain`]: the vocabulary: the chat, its messages and states, the person, the email and
//!   its thread, the identifier, durations and limits, text made safe; it imports nothing of
//!   the crate. [`progress`]: progress bars, for a person at a terminal;
//! - [`config`]: the TOML file, checked once, and resolved per bot ([`config::Routing`]);
//! - [`source`]: where chats come from, rows to the vocabulary; [`state`]: the notifier's own
//!   SQLite file (tracking, outbox, inspection); [`mail`]: templates and transports;
//!   [`destination`]: webhooks, Slack and Discord beside email. Side by side: none imports another;
//! - [`pipeline`]: the cron job (ingest, decide, deliver), and the pure decisions it makes;
//!   [`report`]: the analytics behind `report` and `leads`, one file per output format;
//! - [`cli`]: the command line's definitions;
//! - [`commands`]: what a person runs by hand ([`check`](commands::check),
//!   [`status`](commands::status), [`preview`](commands::preview), [`report`](commands::report),
//!   [`leads`](commands::leads), [`prune`](commands::prune)).

pub mod cli;
pub mod commands;
pub mod config;
pub mod destination;
pub mod domain;
pub mod mail;
pub mod pgconn;
pub mod pipeline;
pub mod progress;
pub mod report;
pub mod source;
pub mod state;

use anyhow::Result;
use clap::CommandFactory;

use crate::cli::{Cli, Command};
use crate::pipeline::RunSummary;

/// Exit codes, as documented in the README.
pub mod exit {
    pub const OK: u8 = 0;
    pub const ERROR: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const INCOMPLETE: u8 = 3;
    pub const BUSY: u8 = 4;
}

/// How a command ended, for its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done(RunSummary),
    /// Another run holds the lock; this one did nothing.
    Busy,
}

impl Outcome {
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Busy => exit::BUSY,
            Outcome::Done(r) if r.waiting.saturating_sub(r.deferred) + r.parked + r.failed > 0 => exit::INCOMPLETE,
            Outcome::Done(_) => exit::OK,
        }
    }
}

pub fn run(cli: &Cli) -> Result<Outcome> {
    let done = Outcome::Done(RunSummary::default());
    let busy_or_done = |ran: bool| if ran { done } else { Outcome::Busy };
    // Completions and the man page need no config; check reports a broken one itself.
    let path = || config::locate(cli.config.as_deref());
    let config = || config::load(&path()?);
    match &cli.command {
        Command::Run(args) => Ok(pipeline::run_once(&config()?, &args.options())?.map_or(Outcome::Busy, Outcome::Done)),
        Command::Watch => commands::watch::watch(&path()?).map(busy_or_done),
        Command::Check(args) => commands::check::check(&path()?, args.smtp).map(|()| done),
        Command::Prune(args) => commands::prune::prune(&config()?, args).map(busy_or_done),
        Command::Preview(args) => commands::preview::preview(&config()?, args).map(|()| done),
        Command::State(cli::StateCommand::Copy(args)) => commands::state::copy(&config()?, args).map(busy_or_done),
        Command::Report(args) => commands::report::report(&config()?, args).map(|()| done),
        Command::Leads(args) => commands::leads::leads(&config()?, args).map(|()| done),
        Command::Status(args) => commands::status::status(&config()?, args).map(|()| done),
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "chat-notifier", &mut out);
            commands::print(out).map(|()| done)
        }
        Command::Man => {
            let mut out = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut out)?;
            commands::print(out).map(|()| done)
        }
    }
}
