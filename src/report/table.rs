//! The report and the leads as text tables, for a person at a terminal.

use std::fmt::Write as _;

use chrono_tz::Tz;

use super::{BotReport, Lead, duration, percent};
use crate::domain::text;

/// The report: per bot, its figures, then its steps, paths, questions and days.
pub fn report(reports: &[BotReport]) -> String {
    let mut out = String::new();
    for r in reports {
        let _ = writeln!(
            out,
            "{} ({}): {} chats, {} completed ({}), {} in progress, median time to complete {}",
            r.bot_name,
            r.bot_id,
            r.conversations,
            r.completed,
            percent(r.completion_rate),
            r.in_progress,
            duration(r.median_seconds_to_complete)
        );
        // An LLM bot's chat has no midway to leave: it goes quiet (see BotReport::has_last_step).
        let (idle, later, stopped, asked, flag) = if r.has_last_step {
            ("abandoned", "finished later", "STOPPED", "QUESTION", "  <- most stop here")
        } else {
            ("went quiet without completing", "completed later", "QUIET", "THE BOT SAID", "  <- most go quiet here")
        };
        let _ = writeln!(
            out,
            "  {idle} {}: {} came back later, {} {later}; {} leads to follow up (left an email or phone, never {})",
            r.went_idle,
            percent(r.came_back_share),
            percent(r.finished_later_share),
            r.leads_to_follow_up,
            if r.has_last_step { "finished" } else { "completed" }
        );
        let _ = writeln!(out, "  {:<24} {:>9} {:>9} {:>8}  {asked}", "STEP", "REACHED", stopped, "SHARE");
        for s in &r.steps {
            let flag = if s.worst { flag } else { "" };
            let question = s.question.as_deref().map(|q| text::header(q, 50)).unwrap_or_default();
            let _ = writeln!(
                out,
                "  {:<24} {:>9} {:>9} {:>8}  {question}{flag}",
                s.step,
                s.reached,
                s.stopped,
                percent(s.stopped_share)
            );
        }
        if !r.paths.is_empty() {
            let _ = writeln!(out, "  most common paths:");
            for p in &r.paths {
                let _ =
                    writeln!(out, "    {:>6} chats, {:>6} completed: {}", p.chats, p.completed, p.steps.join(" > "));
            }
        }
        out += "\n";
    }
    out
}

/// The leads: one line per person, their latest chat's bot, step and time in `tz`.
pub fn leads(leads: &[Lead], tz: Tz) -> String {
    let when = |l: &Lead| l.last_activity.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string();
    let mut out = format!(
        "{:<24} {:<32} {:<18} {:<16} {:<16} {:<17} {}\n",
        "NAME", "EMAIL", "PHONE", "BOT", "LAST STEP", "LAST ACTIVITY", "CONVERSATION"
    );
    for l in leads {
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
