//! `chat-notifier report`: where visitors drop, per bot. One pass over the export (never the
//! state); the figures come from pure functions over each conversation's messages.

use std::collections::HashMap;

use anyhow::{Context, Result};
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use crate::cli::{ReportArgs, ReportFormat};
use crate::config::Config;
use crate::pipeline::rules::Routing;
use crate::source::{Author, Message};
use crate::text::csv_cell;

/// What one conversation says about its bot's funnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// The flow steps the bot asked, each once, in order (the final step not included).
    pub steps: Vec<String>,
    pub completed: bool,
    pub seconds_to_complete: Option<i64>,
    /// Went idle for abandon_after at least once before finishing (or is idle now, unfinished).
    pub abandoned: bool,
    /// After going idle, the visitor came back.
    pub resumed: bool,
    /// The visitor gave an email or a phone number.
    pub left_contact: bool,
}

/// Pure: the facts of one conversation from its messages in order.
pub fn facts(messages: &[Message], abandon_after: TimeDelta, now: DateTime<Utc>) -> Facts {
    let mut steps: Vec<String> = Vec::new();
    for m in messages.iter().filter(|m| m.author == Author::Bot && !m.ends_flow()) {
        if let Some(step) = &m.gambit_id
            && !steps.contains(step)
        {
            steps.push(step.clone());
        }
    }
    let end = messages.iter().position(Message::ends_flow);
    let first = messages.first().map(|m| m.sent_at);
    let before_end = &messages[..end.unwrap_or(messages.len())];
    let gap = before_end.windows(2).position(|w| w[1].sent_at - w[0].sent_at >= abandon_after);
    let idle_now = end.is_none() && messages.last().is_some_and(|m| now - m.sent_at >= abandon_after);
    Facts {
        steps,
        completed: end.is_some(),
        seconds_to_complete: end.zip(first).map(|(i, first)| (messages[i].sent_at - first).num_seconds()),
        abandoned: gap.is_some() || idle_now,
        resumed: gap.is_some(),
        left_contact: messages
            .iter()
            .filter_map(Message::gives_field)
            .any(|(field, value)| matches!(field, "email" | "phone") && !value.trim().is_empty()),
    }
}

#[derive(Debug, Serialize)]
pub struct BotReport {
    pub bot_id: String,
    pub bot_name: String,
    pub conversations: u64,
    pub completed: u64,
    pub completion_rate: f64,
    pub median_seconds_to_complete: Option<i64>,
    pub abandoned: u64,
    /// Of the abandoned: the share that came back, and that finished in the end.
    pub abandoned_resumed_share: f64,
    pub abandoned_completed_share: f64,
    /// Never finished, but left an email or phone: leads to follow up.
    pub leads_to_follow_up: u64,
    pub steps: Vec<StepReport>,
}

#[derive(Debug, Serialize)]
pub struct StepReport {
    pub step: String,
    pub reached: u64,
    /// Unfinished conversations whose last step was this one.
    pub stopped: u64,
    pub stopped_share: f64,
    /// The step where most visitors stop.
    pub worst: bool,
}

#[derive(Default)]
struct Tally {
    name: String,
    conversations: u64,
    completed: u64,
    durations: Vec<i64>,
    abandoned: u64,
    abandoned_resumed: u64,
    abandoned_completed: u64,
    leads: u64,
    /// reached, stopped, sum of positions in the flow
    steps: HashMap<String, (u64, u64, u64)>,
}

impl Tally {
    fn add(&mut self, f: &Facts) {
        self.conversations += 1;
        self.completed += u64::from(f.completed);
        self.durations.extend(f.seconds_to_complete);
        if f.abandoned {
            self.abandoned += 1;
            self.abandoned_resumed += u64::from(f.resumed);
            self.abandoned_completed += u64::from(f.completed);
        }
        self.leads += u64::from(!f.completed && f.left_contact);
        for (i, step) in f.steps.iter().enumerate() {
            let entry = self.steps.entry(step.clone()).or_default();
            entry.0 += 1;
            entry.2 += i as u64;
        }
        if !f.completed
            && let Some(last) = f.steps.last()
        {
            self.steps.get_mut(last).expect("counted above").1 += 1;
        }
    }

    fn finish(mut self, bot_id: String) -> BotReport {
        let share = |n: u64, of: u64| if of == 0 { 0.0 } else { n as f64 / of as f64 };
        self.durations.sort_unstable();
        let mut steps: Vec<(String, (u64, u64, u64))> = self.steps.into_iter().collect();
        // Flow order: where a step usually comes in the conversations that reach it.
        steps.sort_by(|a, b| share(a.1.2, a.1.0).total_cmp(&share(b.1.2, b.1.0)).then(b.1.0.cmp(&a.1.0)));
        let worst = steps.iter().map(|(_, (_, stopped, _))| *stopped).max().filter(|&m| m > 0);
        BotReport {
            bot_id,
            bot_name: self.name,
            conversations: self.conversations,
            completed: self.completed,
            completion_rate: share(self.completed, self.conversations),
            median_seconds_to_complete: self.durations.get(self.durations.len() / 2).copied(),
            abandoned: self.abandoned,
            abandoned_resumed_share: share(self.abandoned_resumed, self.abandoned),
            abandoned_completed_share: share(self.abandoned_completed, self.abandoned),
            leads_to_follow_up: self.leads,
            steps: steps
                .into_iter()
                .map(|(step, (reached, stopped, _))| StepReport {
                    step,
                    reached,
                    stopped,
                    stopped_share: share(stopped, reached),
                    worst: Some(stopped) == worst,
                })
                .collect(),
        }
    }
}

pub fn report(config: &Config, args: &ReportArgs) -> Result<()> {
    let now = args.now.unwrap_or_else(Utc::now);
    let routing = Routing::new(config);
    let source = crate::source::open(config)?;
    let mut tallies: HashMap<String, Tally> = HashMap::new();
    let bar = crate::progress::bar(source.about_how_many_conversations(), "reading chats");
    source.each_conversation(i64::MAX, &mut |_, conversation, messages| {
        bar.inc(1);
        let Some(conversation) = conversation else { return Ok(()) };
        if args.bot.as_ref().is_some_and(|b| *b != conversation.bot_id) {
            return Ok(());
        }
        if let Some(since) = args.since
            && conversation.started_at.is_none_or(|s| s < since)
        {
            return Ok(());
        }
        let abandon_after = routing.for_bot(&conversation.bot_id).abandon_after;
        let tally = tallies.entry(conversation.bot_id.clone()).or_default();
        tally.name.clone_from(&conversation.bot_name);
        tally.add(&facts(messages, abandon_after, now));
        Ok(())
    })?;
    bar.finish_and_clear();
    let mut reports: Vec<BotReport> = tallies.into_iter().map(|(id, t)| t.finish(id)).collect();
    reports.sort_by(|a, b| b.conversations.cmp(&a.conversations).then(a.bot_id.cmp(&b.bot_id)));
    let out = match args.format {
        ReportFormat::Table => table(&reports),
        ReportFormat::Json => serde_json::to_string_pretty(&reports)? + "\n",
        ReportFormat::Csv => csv(&reports),
        ReportFormat::Html => html(&reports, now)?,
    };
    super::print(out)
}

fn percent(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn duration(seconds: Option<i64>) -> String {
    seconds.map_or_else(|| "-".to_owned(), |s| format!("{}m {:02}s", s / 60, s % 60))
}

fn table(reports: &[BotReport]) -> String {
    let mut out = String::new();
    for r in reports {
        out += &format!(
            "{} ({}): {} chats, {} completed ({}), median time to complete {}\n",
            r.bot_name,
            r.bot_id,
            r.conversations,
            r.completed,
            percent(r.completion_rate),
            duration(r.median_seconds_to_complete)
        );
        out += &format!(
            "  abandoned {}: {} came back later, {} finished later; {} leads to follow up (left an email or phone, never finished)\n",
            r.abandoned,
            percent(r.abandoned_resumed_share),
            percent(r.abandoned_completed_share),
            r.leads_to_follow_up
        );
        out += &format!("  {:<24} {:>9} {:>9} {:>8}\n", "STEP", "REACHED", "STOPPED", "SHARE");
        for s in &r.steps {
            let flag = if s.worst { "  <- most stop here" } else { "" };
            out +=
                &format!("  {:<24} {:>9} {:>9} {:>8}{flag}\n", s.step, s.reached, s.stopped, percent(s.stopped_share));
        }
        out += "\n";
    }
    out
}

fn csv(reports: &[BotReport]) -> String {
    let mut out =
        String::from("bot_id,bot_name,conversations,completion_rate,step,reached,stopped,stopped_share,worst\n");
    for r in reports {
        for s in &r.steps {
            out += &format!(
                "{},{},{},{:.4},{},{},{},{:.4},{}\n",
                csv_cell(&r.bot_id),
                csv_cell(&r.bot_name),
                r.conversations,
                r.completion_rate,
                csv_cell(&s.step),
                s.reached,
                s.stopped,
                s.stopped_share,
                s.worst
            );
        }
    }
    out
}

/// One self-contained page: inline CSS and SVG, no script, nothing fetched.
fn html(reports: &[BotReport], now: DateTime<Utc>) -> Result<String> {
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
    struct Chart<'a> {
        report: &'a BotReport,
        completion: String,
        resumed: String,
        finished_later: String,
        median: String,
        height: usize,
        bars: Vec<Bar<'a>>,
    }
    // Bars up to 380 px after a 160 px label column, leaving room for the longest right-hand label.
    const WIDTH: f64 = 380.0;
    let charts: Vec<Chart> = reports
        .iter()
        .map(|r| {
            let most = r.steps.iter().map(|s| s.reached).max().unwrap_or(1).max(1) as f64;
            Chart {
                report: r,
                completion: percent(r.completion_rate),
                resumed: percent(r.abandoned_resumed_share),
                finished_later: percent(r.abandoned_completed_share),
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
            }
        })
        .collect();
    let generated = now.format("%Y-%m-%d %H:%M UTC").to_string();
    Ok(env.get_template("report.html")?.render(minijinja::context! { charts, generated })?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn m(minute: i64, author: Author, step: &str, input_type: Option<&str>, field: Option<&str>) -> Message {
        Message {
            id: minute,
            sent_at: Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap() + TimeDelta::minutes(minute),
            author,
            gambit_id: Some(step.into()),
            input_type: input_type.map(str::to_owned),
            field: field.map(str::to_owned),
            body: "x".into(),
        }
    }

    #[test]
    fn facts_of_a_chat_that_went_idle_came_back_and_finished() {
        let chat = [
            m(0, Author::Bot, "ask_name", None, None),
            m(1, Author::Visitor, "ask_name", None, Some("name")),
            m(2, Author::Bot, "ask_email", None, None),
            m(3, Author::Visitor, "ask_email", None, Some("email")),
            m(4, Author::Bot, "ask_phone", None, None),
            m(200, Author::Visitor, "ask_phone", None, Some("phone")),
            m(201, Author::Bot, "done", Some("end_conversation"), None),
        ];
        let now = chat[6].sent_at + TimeDelta::days(1);
        let f = facts(&chat, TimeDelta::minutes(30), now);
        assert_eq!(f.steps, ["ask_name", "ask_email", "ask_phone"]);
        assert!(f.completed && f.abandoned && f.resumed && f.left_contact);
        assert_eq!(f.seconds_to_complete, Some(201 * 60));

        let left = facts(&chat[..4], TimeDelta::minutes(30), now);
        assert!(!left.completed && left.abandoned && !left.resumed && left.left_contact);
        assert_eq!(left.steps.last().map(String::as_str), Some("ask_email"));
        let typing = facts(&chat[..4], TimeDelta::minutes(30), chat[3].sent_at + TimeDelta::minutes(5));
        assert!(!typing.abandoned);
    }
}
