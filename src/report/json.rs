//! The report and the leads as JSON, for scripts.

use anyhow::Result;

use super::{BotReport, Lead};

/// The report: `{ "bots": [...], "leads": [...] }`.
pub fn report(reports: &[BotReport], leads: &[Lead]) -> Result<String> {
    Ok(serde_json::to_string_pretty(&serde_json::json!({ "bots": reports, "leads": leads }))? + "\n")
}

/// The leads alone: an array.
pub fn leads(leads: &[Lead]) -> Result<String> {
    Ok(serde_json::to_string_pretty(leads)? + "\n")
}
