//! The command line, as clap parses it; `lib::run` turns it into validated settings.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{ArgAction, Args, Parser, Subcommand};
use log::LevelFilter;

use crate::domain::Span;

/// Emails a chatbot's owner one message per new conversation state (completed, abandoned,
/// resumed; ended for an LLM bot's), each conversation in its own mail thread. Meant to run from cron every few minutes.
#[derive(Debug, Parser)]
#[command(name = "chat-notifier", version, propagate_version = true)]
pub struct Cli {
    /// Config file [default: ./notifier.toml, then $XDG_CONFIG_HOME/chat-notifier/notifier.toml]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// More on stderr: -v one line per email sent, -vv debugging detail
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,

    /// Errors only, no warnings
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read the export, decide which chats reached a new state, and send one email for each
    Run(RunArgs),
    /// Run the same pipeline as `run` in one long-lived process: a completed chat is emailed seconds
    /// after its last message (a SQLite source watched for writes, PostgreSQL read every
    /// `[watch] interval`). Holds the state's lock for its life; SIGHUP reloads the config, SIGTERM
    /// stops it after the email in flight
    Watch,
    /// Check the config, the templates, the export, the state and the transport, changing nothing
    Check(CheckArgs),
    /// List the conversations waiting, held back, pending, failed, parked or notified recently
    Status(StatusArgs),
    /// Print the email a conversation would get now (or --last, the last it got); sends nothing
    Preview(PreviewArgs),
    /// Where visitors drop, per bot: the funnel over the flow's steps, from the whole export
    Report(ReportArgs),
    /// The people who left an email or phone and never finished a chat, one line each
    Leads(LeadsArgs),
    /// Print a shell completion script: `chat-notifier completions bash > /etc/bash_completion.d/chat-notifier`
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `chat-notifier man > /usr/local/share/man/man1/chat-notifier.1`
    Man,
    /// Forget conversations settled (or held back) and idle for longer than --older-than (keeps
    /// the state file small; a forgotten conversation that comes back starts a new thread)
    Prune(PruneArgs),
    /// Move the state: `state copy --to postgresql://...` copies the state file (threads,
    /// outbox, digests, everything) into an empty PostgreSQL database, so threads continue there
    #[command(subcommand)]
    State(StateCommand),
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Copy the config's state file into the empty PostgreSQL database at --to; then set
    /// `state = "<that URL>"` in the config (and state_password_env or state_password_file)
    Copy(CopyArgs),
}

#[derive(Debug, Clone, Args)]
pub struct CopyArgs {
    /// The PostgreSQL database to copy into (a URL without a password: postgresql://user@host/db)
    #[arg(long, value_name = "URL")]
    pub to: String,

    /// The environment variable holding its password
    #[arg(long, value_name = "VAR", conflicts_with = "password_file")]
    pub password_env: Option<String>,

    /// The file whose first line is its password
    #[arg(long, value_name = "PATH")]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Only this bot's conversations
    #[arg(long, value_name = "ID")]
    pub bot: Option<String>,

    /// Only conversations in this state
    #[arg(long, value_enum)]
    pub state: Option<crate::state::Standing>,

    /// JSON instead of a table
    #[arg(long)]
    pub json: bool,

    /// List this many conversations, most urgent first (the counts cover all)
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub limit: usize,

    /// List every conversation
    #[arg(long, conflicts_with = "limit")]
    pub all: bool,

    /// Act as if it were this instant (RFC 3339): "recently" is the week before it
    #[arg(long, value_name = "RFC3339", value_parser = parse_instant)]
    pub now: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Args)]
pub struct PreviewArgs {
    /// A conversation id, or the identifier in its subject (K7Q2-9XDM-4HBR)
    pub conversation: String,

    /// The last email sent instead
    #[arg(long)]
    pub last: bool,

    /// Also write the HTML part to this file, to open in a browser
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,

    /// Act as if it were this instant (RFC 3339)
    #[arg(long, value_name = "RFC3339", value_parser = parse_instant)]
    pub now: Option<DateTime<Utc>>,
}

/// Which chats `report` and `leads` look at, and when "now" is.
#[derive(Debug, Clone, Args)]
pub struct Scope {
    /// Only this bot
    #[arg(long, value_name = "ID")]
    pub bot: Option<String>,

    /// Only conversations started at or after this date (2026-11-01) or instant (RFC 3339)
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    pub since: Option<DateTime<Utc>>,

    /// Act as if it were this instant (RFC 3339): decides which unfinished chats are idle
    #[arg(long, value_name = "RFC3339", value_parser = parse_instant)]
    pub now: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub scope: Scope,

    #[arg(long, value_enum, default_value = "table")]
    pub format: ReportFormat,
}

#[derive(Debug, Clone, Args)]
pub struct LeadsArgs {
    #[command(flatten)]
    pub scope: Scope,

    #[arg(long, value_enum, default_value = "table")]
    pub format: LeadsFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LeadsFormat {
    Table,
    /// RFC 4180, UTF-8, with a header row: opens in a spreadsheet or imports into a CRM as is
    Csv,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Table,
    Json,
    Csv,
    /// One self-contained page with the funnel drawn as SVG: `report --format html > report.html`
    Html,
}

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// Also connect to the SMTP server and log in, and reach each destination (a webhook's
    /// server, Slack's auth.test): sends nothing
    #[arg(long)]
    pub smtp: bool,
}

#[derive(Debug, Clone, Args)]
pub struct PruneArgs {
    /// Idle for at least this long: 90d, 12w, ...
    #[arg(long, value_name = "DURATION", value_parser = parse_span)]
    pub older_than: Span,

    /// Act as if it were this instant (RFC 3339)
    #[arg(long, value_name = "RFC3339", value_parser = parse_instant)]
    pub now: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Print every email that would be sent (headers and text part) to stdout; change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// On the first run, also email conversations older than first_run_horizon
    #[arg(long)]
    pub backfill: bool,

    /// With --backfill: go ahead without asking even when it emails more than mail.burst
    #[arg(long)]
    pub yes: bool,

    /// Act as if it were this instant (RFC 3339), for tests and replays
    #[arg(long, value_name = "RFC3339", value_parser = parse_instant)]
    pub now: Option<DateTime<Utc>>,
}

impl RunArgs {
    /// The run the command line asks for.
    pub fn options(&self) -> crate::pipeline::Options {
        crate::pipeline::Options { dry_run: self.dry_run, backfill: self.backfill, yes: self.yes, now: self.now }
    }
}

impl Cli {
    /// Warnings by default: a cron run with nothing to report prints nothing.
    pub fn log_level(&self) -> LevelFilter {
        match (self.quiet, self.verbose) {
            (true, _) => LevelFilter::Error,
            (false, 0) => LevelFilter::Warn,
            (false, 1) => LevelFilter::Info,
            (false, _) => LevelFilter::Debug,
        }
    }
}

fn parse_span(s: &str) -> Result<Span, String> {
    Span::parse(s).ok_or_else(|| format!("{s:?} is not a duration like 90d, 12w or 2160h"))
}

fn parse_date(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(day) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(day.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    parse_instant(s)
}

fn parse_instant(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{e} (expected e.g. 2026-11-24T09:15:00Z)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn verbosity_and_now() {
        let cli = Cli::parse_from(["chat-notifier", "run", "-vv", "--now", "2026-11-24T10:00:00+01:00"]);
        assert_eq!(cli.log_level(), LevelFilter::Debug);
        let Command::Run(args) = cli.command else { panic!() };
        assert_eq!(args.now.unwrap().to_rfc3339(), "2026-11-24T09:00:00+00:00");
        let cli = Cli::parse_from(["chat-notifier", "prune", "--older-than", "90d"]);
        let Command::Prune(args) = cli.command else { panic!() };
        assert_eq!(args.older_than.0, chrono::TimeDelta::days(90));
        assert!(Cli::try_parse_from(["chat-notifier", "prune", "--older-than", "soon"]).is_err());
        assert!(Cli::try_parse_from(["chat-notifier", "run", "--now", "yesterday"]).is_err());
        assert!(Cli::try_parse_from(["chat-notifier", "-q", "-v", "run"]).is_err());
    }
}
