//! `chat-notifier leads`: the people who left an email or phone and never finished a chat, one
//! line each, from the report's pass over the source (`report::find`): a table, JSON, or CSV
//! that imports into a spreadsheet or a CRM as is (RFC 4180, UTF-8, formulas defused).

use std::fmt::Write as _;

use anyhow::Result;
use chrono::Utc;

use super::report::{Findings, Lead, find};
use crate::cli::{LeadsArgs, LeadsFormat};
use crate::config::Config;
use crate::domain::text::{self, csv_cell};

/// `chat-notifier leads`: one line per person who left an email or phone and never finished.
pub fn leads(config: &Config, args: &LeadsArgs) -> Result<()> {
    let now = args.scope.now.unwrap_or_else(Utc::now);
    let Findings { leads, .. } = find(config, &args.scope, now, true)?;
    let when = |l: &Lead| l.last_activity.with_timezone(&config.time_zone).format("%Y-%m-%d %H:%M").to_string();
    let out = match args.format {
        LeadsFormat::Json => serde_json::to_string_pretty(&leads)? + "\n",
        LeadsFormat::Csv => {
            let mut out = String::from("name,email,phone,bot,last_step,last_activity,conversation,chats\r\n");
            for l in &leads {
                let cells = [
                    l.name.as_deref().unwrap_or(""),
                    l.email.as_deref().unwrap_or(""),
                    l.phone.as_deref().unwrap_or(""),
                    &l.bot,
                    l.last_step.as_deref().unwrap_or(""),
                    &when(l),
                    &format!("#{}", l.identifier),
                ];
                let row: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
                let _ = write!(out, "{},{}\r\n", row.join(","), l.chats);
            }
            out
        }
        LeadsFormat::Table => {
            let mut out = format!(
                "{:<24} {:<32} {:<18} {:<16} {:<16} {:<17} {}\n",
                "NAME", "EMAIL", "PHONE", "BOT", "LAST STEP", "LAST ACTIVITY", "CONVERSATION"
            );
            for l in &leads {
                let col = |s: Option<&str>, n: usize| text::header(s.unwrap_or("-"), n - 1);
                let _ = writeln!(
                    out,
                    "{:<24} {:<32} {:<18} {:<16} {:<16} {:<17} #{}",
                    col(l.name.as_deref(), 24),
                    col(l.email.as_deref(), 32),
                    col(l.phone.as_deref(), 18),
                    col(Some(&l.bot), 16),
                    col(l.last_step.as_deref(), 16),
                    when(l),
                    l.identifier
                );
            }
            out
        }
    };
    super::print(out)
}
