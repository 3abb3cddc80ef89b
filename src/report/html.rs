//! The report as one HTML page (inline SVG, no script, every text escaped): what an owner
//! opens in a browser or forwards.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use super::{BotReport, DayReport, Lead, StepReport, duration, percent};

/// One self-contained page: inline CSS and SVG, no script, nothing fetched; readable on a
/// phone and printable.
pub fn report(reports: &[BotReport], leads: &[Lead], now: DateTime<Utc>, tz: Tz) -> Result<String> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.add_template("report.html", include_str!("../../templates/report.html")).context("report template")?;
    #[derive(Serialize)]
    struct Bar<'a> {
        step: &'a StepReport,
        y: usize,
        reached_width: f64,
        stopped_width: f64,
        share: String,
    }
    #[derive(Serialize)]
    struct DayBar<'a> {
        day: &'a DayReport,
        x: f64,
        started: f64,
        completed: f64,
        abandoned: f64,
    }
    #[derive(Serialize)]
    struct Chart<'a> {
        report: &'a BotReport,
        completion: String,
        resumed: String,
        finished_later: String,
        median: String,
        height: usize,
        bars: Vec<Bar<'a>>,
        day_bars: Vec<DayBar<'a>>,
        day_width: f64,
        /// The words for a bot with a last step, or for an LLM bot's (see
        /// `BotReport::has_last_step`).
        words: Words,
    }
    #[derive(Serialize)]
    struct Words {
        idle: &'static str,
        stopped: &'static str,
        stop_here: &'static str,
        asked: &'static str,
        later: &'static str,
        asks: &'static str,
    }
    const FLOW: Words = Words {
        idle: "Abandoned",
        stopped: "stopped",
        stop_here: "most stop here",
        asked: "The bot asked",
        later: "finished later",
        asks: "What visitors wrote that answered no question, by the step they were at, most frequent first.",
    };
    const LLM: Words = Words {
        idle: "Went quiet without completing",
        stopped: "went quiet",
        stop_here: "most go quiet here",
        asked: "The bot said (where most chats share it)",
        later: "completed later",
        asks: "What visitors wrote, by their message (message 1: their first), most frequent first.",
    };
    // Bars up to 380 px after a 160 px label column, leaving room for the longest right-hand label.
    const WIDTH: f64 = 380.0;
    // The chart over time: 100 px high, days side by side in 560 px.
    const DAYS_WIDTH: f64 = 560.0;
    let charts: Vec<Chart> = reports
        .iter()
        .map(|r| {
            let most = r.steps.iter().map(|s| s.reached).max().unwrap_or(1).max(1) as f64;
            let busiest =
                r.days.iter().map(|d| d.started.max(d.completed).max(d.went_idle)).max().unwrap_or(1).max(1) as f64;
            let day_width = (DAYS_WIDTH / r.days.len().max(1) as f64).min(60.0);
            Chart {
                report: r,
                completion: percent(r.completion_rate),
                resumed: percent(r.came_back_share),
                finished_later: percent(r.finished_later_share),
                median: duration(r.median_seconds_to_complete),
                height: 30 * r.steps.len() + 10,
                bars: r
                    .steps
                    .iter()
                    .enumerate()
                    .map(|(i, s)| Bar {
                        step: s,
                        y: 30 * i + 5,
                        reached_width: WIDTH * s.reached as f64 / most,
                        stopped_width: WIDTH * s.stopped as f64 / most,
                        share: percent(s.stopped_share),
                    })
                    .collect(),
                day_bars: r
                    .days
                    .iter()
                    .enumerate()
                    .map(|(i, d)| DayBar {
                        day: d,
                        x: i as f64 * day_width,
                        started: 100.0 * d.started as f64 / busiest,
                        completed: 100.0 * d.completed as f64 / busiest,
                        abandoned: 100.0 * d.went_idle as f64 / busiest,
                    })
                    .collect(),
                day_width,
                words: if r.has_last_step { FLOW } else { LLM },
            }
        })
        .collect();
    #[derive(Serialize)]
    struct LeadRow<'a> {
        lead: &'a Lead,
        last_activity: String,
    }
    let leads: Vec<LeadRow> = leads
        .iter()
        .map(|l| LeadRow {
            lead: l,
            last_activity: l.last_activity.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string(),
        })
        .collect();
    let generated = now.format("%Y-%m-%d %H:%M UTC").to_string();
    // The page's own words: a flow's, unless its bots are LLM bots (one source: all or none).
    let last_step = reports.iter().all(|r| r.has_last_step);
    Ok(env.get_template("report.html")?.render(minijinja::context! { charts, leads, generated, last_step })?)
}
