//! `chat-notifier report`: the analytics of `crate::report` in the format asked for.

use anyhow::Result;
use chrono::Utc;

use crate::cli::{ReportArgs, ReportFormat};
use crate::config::Config;
use crate::report::{self, Findings};

pub fn report(config: &Config, args: &ReportArgs) -> Result<()> {
    let now = args.scope.now.unwrap_or_else(Utc::now);
    // The table and the CSV show the leads' count alone, which the tallies keep.
    let with_leads = matches!(args.format, ReportFormat::Json | ReportFormat::Html);
    let Findings { reports, leads } =
        report::find(config, args.scope.bot.as_deref(), args.scope.since, now, with_leads)?;
    let out = match args.format {
        ReportFormat::Table => report::table::report(&reports),
        ReportFormat::Json => report::json::report(&reports, &leads)?,
        ReportFormat::Csv => report::csv::report(&reports),
        ReportFormat::Html => report::html::report(&reports, &leads, now, config.time_zone)?,
    };
    super::print(out)
}
