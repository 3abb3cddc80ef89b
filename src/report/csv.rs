//! The report and the leads as CSV (RFC 4180, UTF-8, formulas defused): what a spreadsheet or
//! a CRM imports as is.

use std::fmt::Write as _;

use chrono_tz::Tz;

use super::{BotReport, Lead};
use crate::domain::text::csv_cell;

/// One table for a spreadsheet: a row per step (`kind` = step) and per day (`kind` = day), each
/// kind's own columns filled, the others empty.
pub fn report(reports: &[BotReport]) -> String {
    let mut out = String::from(
        "kind,bot_id,bot_name,conversations,completion_rate,in_progress,step,question,reached,stopped,stopped_share,\
         worst,day,started,completed,abandoned\n",
    );
    for r in reports {
        let bot = format!(
            "{},{},{},{:.4},{}",
            csv_cell(&r.bot_id),
            csv_cell(&r.bot_name),
            r.conversations,
            r.completion_rate,
            r.in_progress
        );
        for s in &r.steps {
            let _ = writeln!(
                out,
                "step,{bot},{},{},{},{},{:.4},{},,,,",
                csv_cell(&s.step),
                csv_cell(s.question.as_deref().unwrap_or("")),
                s.reached,
                s.stopped,
                s.stopped_share,
                s.worst
            );
        }
        for d in &r.days {
            let _ = writeln!(out, "day,{bot},,,,,,,{},{},{},{}", d.day, d.started, d.completed, d.went_idle);
        }
    }
    out
}

/// The leads: one row per person, their latest chat's bot, step and time in `tz`.
pub fn leads(leads: &[Lead], tz: Tz) -> String {
    let when = |l: &Lead| l.last_activity.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string();
    let mut out = String::from("name,email,phone,bot,last_step,last_activity,conversation,chats\r\n");
    for l in leads {
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
