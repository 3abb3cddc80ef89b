//! `chat-notifier leads`: the people who left an email or phone and never finished a chat, one
//! line each, from the report's pass over the source (`report::find`): a table, JSON, or CSV
//! that imports into a spreadsheet or a CRM as is (RFC 4180, UTF-8, formulas defused).

use anyhow::Result;
use chrono::Utc;

use crate::cli::{LeadsArgs, LeadsFormat};
use crate::config::Config;
use crate::report::{self, Findings};

/// `chat-notifier leads`: one line per person who left an email or phone and never finished.
pub fn leads(config: &Config, args: &LeadsArgs) -> Result<()> {
    let now = args.scope.now.unwrap_or_else(Utc::now);
    let Findings { leads, .. } = report::find(config, args.scope.bot.as_deref(), args.scope.since, now, true)?;
    let out = match args.format {
        LeadsFormat::Json => report::json::leads(&leads)?,
        LeadsFormat::Csv => report::csv::leads(&leads, config.time_zone),
        LeadsFormat::Table => report::table::leads(&leads, config.time_zone),
    };
    super::print(out)
}
