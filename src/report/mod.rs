//! The analytics engine behind `report` and `leads`: where visitors drop, per bot, what they
//! ask, which ways through the flow work, and the leads to follow up. One pass over the source
//! (never the state); the figures come from pure functions over each conversation's messages.
//! Each output format is a file of its own: `table`, `csv`, `json`, `html`.

pub mod csv;
pub mod html;
pub mod json;
pub mod table;

use std::collections::{BTreeMap, HashMap};

use anyhow::Result;
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::config::{Config, Routing};
use crate::domain::{Author, Conversation, Message, text, thread};
use crate::source::Source;

/// Ways through a flow listed per bot; free-text questions listed per step.
const TOP: usize = 10;
/// Characters shown of one free-text question.
const ASK_CHARS: usize = 200;

/// What one conversation says about its bot's funnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// The flow steps the bot asked, each once, in order (the final step not included): the
    /// conversation's path.
    pub steps: Vec<String>,
    /// What the bot said at each step, the first time it got there.
    pub questions: Vec<(String, String)>,
    /// What the visitor wrote that answered no field, with the step they were at.
    pub asks: Vec<(String, String)>,
    /// The step of the bot's last line (not the end of the flow): where the visitor was last,
    /// as the conversation's email names it.
    pub last_step: Option<String>,
    pub completed: bool,
    pub seconds_to_complete: Option<i64>,
    /// Went idle for abandon_after at least once before finishing (or is idle now, unfinished).
    pub went_idle: bool,
    /// After going idle, the visitor came back.
    pub came_back: bool,
    /// Not finished, and the visitor wrote within abandon_after: may still be typing.
    pub in_progress: bool,
    /// The visitor gave an email or a phone number.
    pub left_contact: bool,
    pub started: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub last_activity: Option<DateTime<Utc>>,
    /// Each field the visitor gave, the latest answer.
    pub fields: Vec<(String, String)>,
}

/// Pure: the facts of one conversation from its messages in order. `last_step`: the source's
/// chats have a last step (`Source::has_last_step`); an LLM chat has none, and then what the
/// visitor wrote is grouped by their turn (`domain::turn`: their 1st, 2nd, ... message, the step
/// of the bot's answer to it), and any email or phone given counts as a contact left (a lead form
/// is filled before the first message).
pub fn facts(messages: &[Message], abandon_after: TimeDelta, now: DateTime<Utc>, last_step: bool) -> Facts {
    let flow = last_step;
    let mut steps: Vec<String> = Vec::new();
    let mut questions: Vec<(String, String)> = Vec::new();
    let mut asks: Vec<(String, String)> = Vec::new();
    let mut at_step: Option<&str> = None;
    let mut last_step: Option<&str> = None;
    let mut turns = 0;
    // A visitor line is a question unless it gave a field: on the line itself (the export), or
    // as the field recorded right after it (Rasa's slots, filled from the line).
    let mut pending: Option<(String, String)> = None;
    for m in messages {
        if m.author == Author::Field {
            pending = None;
            continue;
        }
        asks.extend(pending.take());
        match m.author {
            // An LLM's answer that matched `complete_on` is an answer like the others, a turn.
            Author::Bot if !m.ends_flow() || !flow => {
                last_step = m.gambit_id.as_deref();
                if let Some(step) = &m.gambit_id {
                    at_step = Some(step);
                    if !steps.contains(step) {
                        steps.push(step.clone());
                    }
                    if !m.body.trim().is_empty() && !questions.iter().any(|(s, _)| s == step) {
                        questions.push((step.clone(), m.body.trim().to_owned()));
                    }
                }
            }
            Author::Visitor if m.field.is_none() && !m.body.trim().is_empty() => {
                turns += 1;
                let step = if flow { at_step.unwrap_or("").to_owned() } else { crate::domain::turn(turns) };
                pending = Some((step, m.body.trim().to_owned()));
            }
            _ => {}
        }
    }
    asks.extend(pending);
    let fields = crate::domain::given_fields(messages);
    let end = messages.iter().position(Message::ends_flow);
    let first = messages.first().map(|m| m.sent_at);
    let last = messages.iter().map(|m| m.sent_at).max();
    let before_end = &messages[..end.unwrap_or(messages.len())];
    let gap = before_end.windows(2).position(|w| w[1].sent_at - w[0].sent_at >= abandon_after);
    let idle = last.is_some_and(|l| now - l >= abandon_after);
    let completed_at = end.map(|i| messages[i].sent_at);
    Facts {
        // Fields in a chat the visitor never wrote in (Rasa carries slots into every new
        // session, a page load starts one) are no contact left there. An LLM source's fields
        // are what its lead form took: a lead, whether or not a message followed.
        left_contact: (!flow || messages.iter().any(|m| m.author == Author::Visitor))
            && fields.iter().any(|(n, _)| matches!(n.as_str(), "email" | "phone")),
        steps,
        questions,
        asks,
        last_step: last_step.map(str::to_owned),
        completed: end.is_some(),
        seconds_to_complete: completed_at.zip(first).map(|(done, first)| (done - first).num_seconds()),
        went_idle: gap.is_some() || (end.is_none() && idle),
        came_back: gap.is_some(),
        in_progress: end.is_none() && !idle,
        started: first,
        completed_at,
        last_activity: last,
        fields,
    }
}

#[derive(Debug, Serialize)]
pub struct BotReport {
    pub bot_id: String,
    pub bot_name: String,
    /// The bot's chats have a last step (a flow's end, a form sent): false for an LLM bot
    /// (Flowise, Dify), whose steps are the visitor's turns (`message N`), whose "abandoned"
    /// chats went quiet without a `complete_on` match, and whose outputs word it so.
    pub has_last_step: bool,
    pub conversations: u64,
    pub completed: u64,
    pub completion_rate: f64,
    pub median_seconds_to_complete: Option<i64>,
    /// Chats that went idle before finishing (whether or not they came back): the report's
    /// word for it, not `ChatState::Abandoned`, an email's.
    #[serde(rename = "abandoned")]
    pub went_idle: u64,
    /// Not finished, visitor active within abandon_after: not counted as stopped anywhere.
    pub in_progress: u64,
    /// Of those that went idle: the share that came back, and that finished in the end.
    #[serde(rename = "abandoned_resumed_share")]
    pub came_back_share: f64,
    #[serde(rename = "abandoned_completed_share")]
    pub finished_later_share: f64,
    /// Never finished, but left an email or phone: leads to follow up (chats, not people).
    pub leads_to_follow_up: u64,
    pub steps: Vec<StepReport>,
    /// The most common ways through the flow.
    pub paths: Vec<PathReport>,
    /// What visitors wrote that answered no field, per step.
    pub asks: Vec<AskReport>,
    /// Chats started, completed and abandoned per day (the owner's time zone).
    pub days: Vec<DayReport>,
}

#[derive(Debug, Serialize)]
pub struct StepReport {
    pub step: String,
    /// What the bot asked there: its most frequent text at that step.
    pub question: Option<String>,
    pub reached: u64,
    /// Unfinished conversations, not in progress, whose bot's last line was at this step.
    pub stopped: u64,
    pub stopped_share: f64,
    /// The step where most visitors stop.
    pub worst: bool,
}

#[derive(Debug, Serialize)]
pub struct PathReport {
    pub steps: Vec<String>,
    pub chats: u64,
    pub completed: u64,
}

#[derive(Debug, Serialize)]
pub struct AskReport {
    pub step: String,
    pub question: Option<String>,
    pub total: u64,
    pub top: Vec<Asked>,
    /// Other distinct questions at this step, not listed (past `Frequent`'s bound, an upper
    /// estimate: a rare question dropped and asked again is counted twice).
    pub more: usize,
}

#[derive(Debug, Serialize)]
pub struct Asked {
    pub text: String,
    pub count: u64,
}

#[derive(Debug, Serialize)]
pub struct DayReport {
    pub day: String,
    pub started: u64,
    pub completed: u64,
    #[serde(rename = "abandoned")]
    pub went_idle: u64,
}

/// A person who left a way to reach them and never finished a chat.
#[derive(Debug, Clone, Serialize)]
pub struct Lead {
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub bot: String,
    pub last_step: Option<String>,
    pub last_activity: DateTime<Utc>,
    /// The identifier of their latest chat, as its emails' subjects show it.
    pub identifier: String,
    pub chats: u64,
}

/// Distinct texts a step's tally keeps between prunings; twice this at most.
const KEPT: usize = 1_000;

/// What visitors wrote at one step, counted in bounded memory: free text is mostly unique, and
/// one entry per distinct text grew with the export (every message of a support bot's chats).
/// Up to 2 × `KEPT` distinct texts are counted; then only the `KEPT` most frequent stay (the
/// rest are dropped, counted in `dropped`). A text asked more often than the one at rank `KEPT`
/// is never dropped, so the few most frequent, the ones the report lists, keep their counts.
#[derive(Default)]
struct Frequent {
    /// normalised text -> (as first written, cut to what the report shows; count)
    counts: HashMap<String, (String, u64)>,
    dropped: usize,
    total: u64,
}

impl Frequent {
    fn add(&mut self, asked: &str) {
        self.total += 1;
        // One question however typed: spacing and case aside.
        let key = asked.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
        self.counts.entry(key).or_insert_with(|| (cut(asked, ASK_CHARS), 0)).1 += 1;
        if self.counts.len() >= 2 * KEPT {
            let mut counts: Vec<u64> = self.counts.values().map(|(_, n)| *n).collect();
            counts.sort_unstable_by(|a, b| b.cmp(a));
            let floor = counts[KEPT - 1];
            let before = self.counts.len();
            self.counts.retain(|_, (_, n)| *n > floor);
            self.dropped += before - self.counts.len();
        }
    }
}

#[derive(Default)]
struct Tally {
    name: String,
    /// See `BotReport::has_last_step`.
    last_step: bool,
    conversations: u64,
    completed: u64,
    durations: Vec<i64>,
    went_idle: u64,
    came_back: u64,
    finished_later: u64,
    in_progress: u64,
    leads: u64,
    /// reached, stopped, sum of positions in the flow
    steps: HashMap<String, (u64, u64, u64)>,
    questions: HashMap<String, HashMap<String, u64>>,
    paths: HashMap<Vec<String>, (u64, u64)>,
    /// per step: what visitors wrote there
    asks: HashMap<String, Frequent>,
    days: BTreeMap<NaiveDate, (u64, u64, u64)>,
}

impl Tally {
    fn add(&mut self, f: &Facts, tz: Tz) {
        self.conversations += 1;
        self.completed += u64::from(f.completed);
        self.durations.extend(f.seconds_to_complete);
        self.in_progress += u64::from(f.in_progress);
        if f.went_idle {
            self.went_idle += 1;
            self.came_back += u64::from(f.came_back);
            self.finished_later += u64::from(f.completed);
        }
        self.leads += u64::from(!f.completed && f.left_contact);
        for (i, step) in f.steps.iter().enumerate() {
            let entry = self.steps.entry(step.clone()).or_default();
            entry.0 += 1;
            entry.2 += i as u64;
        }
        if !f.completed
            && !f.in_progress
            && let Some(last) = &f.last_step
            && let Some(entry) = self.steps.get_mut(last)
        {
            entry.1 += 1;
        }
        for (step, question) in &f.questions {
            *self.questions.entry(step.clone()).or_default().entry(question.clone()).or_default() += 1;
        }
        if !f.steps.is_empty() {
            let path = self.paths.entry(f.steps.clone()).or_default();
            path.0 += 1;
            path.1 += u64::from(f.completed);
        }
        for (step, asked) in &f.asks {
            self.asks.entry(step.clone()).or_default().add(asked);
        }
        let day = |t: DateTime<Utc>| t.with_timezone(&tz).date_naive();
        if let Some(t) = f.started {
            self.days.entry(day(t)).or_default().0 += 1;
        }
        if let Some(t) = f.completed_at {
            self.days.entry(day(t)).or_default().1 += 1;
        }
        if f.went_idle
            && !f.completed
            && let Some(t) = f.last_activity
        {
            self.days.entry(day(t)).or_default().2 += 1;
        }
    }

    fn finish(mut self, bot_id: String) -> BotReport {
        let share = |n: u64, of: u64| if of == 0 { 0.0 } else { n as f64 / of as f64 };
        self.durations.sort_unstable();
        let mut steps: Vec<(String, (u64, u64, u64))> = self.steps.into_iter().collect();
        // Flow order: where a step usually comes in the conversations that reach it.
        // Steps alike in both are named in order: the same report whatever a map's order.
        steps.sort_by(|a, b| {
            share(a.1.2, a.1.0).total_cmp(&share(b.1.2, b.1.0)).then(b.1.0.cmp(&a.1.0)).then(a.0.cmp(&b.0))
        });
        let worst = steps.iter().map(|(_, (_, stopped, _))| *stopped).max().filter(|&m| m > 0);
        let questions = self.questions;
        let reached: HashMap<String, u64> =
            steps.iter().map(|(step, (reached, ..))| (step.clone(), *reached)).collect();
        let last_step = self.last_step;
        let question = |step: &str| -> Option<String> {
            let texts = questions.get(step)?;
            let (text, &count) = texts.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))?;
            // An LLM's answers differ chat by chat: its most frequent one says nothing of the
            // step. A text most chats there share (a lead form's title, a greeting) does.
            let shared = count >= 2 && 2 * count >= reached.get(step).copied().unwrap_or(0);
            (last_step || shared).then(|| text.clone())
        };
        let mut paths: Vec<PathReport> =
            self.paths.into_iter().map(|(steps, (chats, completed))| PathReport { steps, chats, completed }).collect();
        paths.sort_by(|a, b| b.chats.cmp(&a.chats).then(b.completed.cmp(&a.completed)).then(a.steps.cmp(&b.steps)));
        paths.truncate(TOP);
        let mut asks: Vec<AskReport> = self
            .asks
            .into_iter()
            .map(|(step, texts)| {
                let mut top: Vec<Asked> = texts
                    .counts
                    .into_values()
                    .map(|(text, count)| Asked { text: text::line(&text).into_owned(), count })
                    .collect();
                top.sort_by(|a, b| b.count.cmp(&a.count).then(a.text.cmp(&b.text)));
                let more = top.len().saturating_sub(TOP) + texts.dropped;
                top.truncate(TOP);
                for a in &mut top {
                    a.text = cut(&a.text, ASK_CHARS);
                }
                AskReport { question: question(&step), step, total: texts.total, top, more }
            })
            .collect();
        asks.sort_by(|a, b| b.total.cmp(&a.total).then(a.step.cmp(&b.step)));
        BotReport {
            bot_id,
            bot_name: self.name,
            has_last_step: self.last_step,
            conversations: self.conversations,
            completed: self.completed,
            completion_rate: share(self.completed, self.conversations),
            median_seconds_to_complete: self.durations.get(self.durations.len() / 2).copied(),
            went_idle: self.went_idle,
            in_progress: self.in_progress,
            came_back_share: share(self.came_back, self.went_idle),
            finished_later_share: share(self.finished_later, self.went_idle),
            leads_to_follow_up: self.leads,
            steps: steps
                .into_iter()
                .map(|(step, (reached, stopped, _))| StepReport {
                    question: question(&step),
                    step,
                    reached,
                    stopped,
                    stopped_share: share(stopped, reached),
                    worst: Some(stopped) == worst,
                })
                .collect(),
            paths,
            asks,
            days: self
                .days
                .into_iter()
                .map(|(day, (started, completed, abandoned))| DayReport {
                    day: day.format("%Y-%m-%d").to_string(),
                    started,
                    completed,
                    went_idle: abandoned,
                })
                .collect(),
        }
    }
}

/// A visitor as the leads list sees them (not `domain::Person`, what an email shows of a
/// person): by visitor id, never merging placeholders.
#[derive(Default)]
struct Contact {
    completed: bool,
    chats: u64,
    fields: Vec<(String, String)>,
    /// The latest chat: when, with which bot, its last step, its id.
    latest: Option<(DateTime<Utc>, String, Option<String>, String)>,
}

/// Everything the report and the leads list need, in one pass over the source (the leads
/// only when asked for: the people behind them are kept in memory, one entry per visitor).
pub struct Findings {
    pub reports: Vec<BotReport>,
    pub leads: Vec<Lead>,
}

/// The report's figures (and the leads, `with_leads`) of the chats of `bot` (all bots: none)
/// started since `since` (all: none), judged as of `now`.
pub fn find(
    config: &Config,
    bot: Option<&str>,
    since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    with_leads: bool,
) -> Result<Findings> {
    let source = crate::source::open(config)?;
    find_in(config, source.as_ref(), bot, since, now, with_leads)
}

/// `find` in a source already open: a test's own `Source` is reported the same way.
pub fn find_in(
    config: &Config,
    source: &dyn Source,
    bot: Option<&str>,
    since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    with_leads: bool,
) -> Result<Findings> {
    let routing = Routing::new(config);
    let last_step = source.has_last_step();
    let mut tallies: HashMap<String, Tally> = HashMap::new();
    let mut contacts: HashMap<String, Contact> = HashMap::new();
    let bar = crate::progress::bar(source.about_how_many_conversations(), "reading chats");
    source.each_conversation(i64::MAX, &mut |_, conversation: Option<&Conversation>, messages| {
        bar.inc(1);
        let Some(conversation) = conversation else { return Ok(()) };
        if bot.is_some_and(|b| b != conversation.bot_id) {
            return Ok(());
        }
        if let Some(since) = since
            && conversation.started_at.is_none_or(|s| s < since)
        {
            return Ok(());
        }
        let settings = routing.for_bot(&conversation.bot_id);
        let f = facts(messages, settings.abandon_after, now, last_step);
        let tally = tallies.entry(conversation.bot_id.clone()).or_default();
        tally.name.clone_from(&conversation.bot_name);
        tally.last_step = last_step;
        tally.add(&f, settings.time_zone);
        if !with_leads {
            return Ok(());
        }
        // A person: their visitor id, or the chat alone when that id names nobody.
        let key = if crate::domain::is_person(&conversation.visitor_id) {
            format!("v:{}", conversation.visitor_id)
        } else {
            format!("c:{}", conversation.id)
        };
        let person = contacts.entry(key).or_default();
        person.completed |= f.completed;
        person.chats += 1;
        if person.completed {
            // Never a lead now: nothing more of them is needed (a map of every visitor's
            // fields held 113 MB at 100,000 chats).
            (person.fields, person.latest) = (Vec::new(), None);
            return Ok(());
        }
        let when = f.last_activity.unwrap_or(DateTime::UNIX_EPOCH);
        let later = person.latest.as_ref().is_none_or(|(t, ..)| when >= *t);
        for (name, value) in f.fields.into_iter().filter(|(n, _)| crate::domain::LEAD_FIELDS.contains(&n.as_str())) {
            match person.fields.iter_mut().find(|(n, _)| *n == name) {
                Some(field) if later => field.1 = value,
                Some(_) => {}
                None => person.fields.push((name, value)),
            }
        }
        if later {
            person.latest = Some((when, conversation.bot_name.clone(), f.last_step.clone(), conversation.id.clone()));
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    let mut reports: Vec<BotReport> = tallies.into_iter().map(|(id, t)| t.finish(id)).collect();
    reports.sort_by(|a, b| b.conversations.cmp(&a.conversations).then(a.bot_id.cmp(&b.bot_id)));
    let mut leads: Vec<Lead> = contacts
        .into_values()
        .filter(|p| !p.completed && p.chats as usize <= crate::domain::CROWD)
        .filter_map(|p| {
            let get = |name: &str| p.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
            let line = |v: &str| text::line(v).into_owned();
            let (email, phone) = (get("email").map(line), get("phone").map(line));
            if email.is_none() && phone.is_none() {
                return None;
            }
            let (last_activity, bot, last_step, id) = p.latest?;
            let name = crate::domain::visitor_name(get).map(|n| line(&n));
            Some(Lead {
                name,
                email,
                phone,
                bot,
                last_step,
                last_activity,
                identifier: thread::identifier(&id),
                chats: p.chats,
            })
        })
        .collect();
    leads.sort_by(|a, b| b.last_activity.cmp(&a.last_activity).then(a.identifier.cmp(&b.identifier)));
    Ok(Findings { reports, leads })
}

pub(crate) fn percent(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

pub(crate) fn duration(seconds: Option<i64>) -> String {
    seconds.map_or_else(|| "-".to_owned(), |s| format!("{}m {:02}s", s / 60, s % 60))
}

pub(crate) fn cut(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn m(
        minute: i64,
        author: Author,
        step: &str,
        input_type: Option<&str>,
        field: Option<&str>,
        body: &str,
    ) -> Message {
        Message {
            id: minute,
            sent_at: Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap() + TimeDelta::minutes(minute),
            author,
            gambit_id: Some(step.into()),
            input_type: input_type.map(str::to_owned),
            field: field.map(str::to_owned),
            body: body.into(),
        }
    }

    /// Steps that tie in flow order and reach come in the same order on every run: the report
    /// of one store is the same report twice (a map's order put them otherwise each run).
    #[test]
    fn steps_that_tie_are_listed_the_same_way_every_time() {
        let order = |steps: &[usize]| {
            let mut tally = Tally::default();
            for &i in steps {
                let asked = [m(0, Author::Bot, &format!("step_{i:02}"), Some("text"), None, "?")];
                tally.add(&facts(&asked, TimeDelta::minutes(30), asked[0].sent_at, true), Tz::UTC);
            }
            tally.finish("bot".into()).steps.into_iter().map(|s| s.step).collect::<Vec<_>>()
        };
        let forward: Vec<usize> = (0..16).collect();
        let backward: Vec<usize> = (0..16).rev().collect();
        let first = order(&forward);
        assert_eq!(first.len(), 16);
        assert!(first.windows(2).all(|w| w[0] < w[1]), "{first:?}");
        assert_eq!(order(&backward), first);
    }

    #[test]
    fn fields_carried_into_a_chat_the_visitor_never_wrote_in_are_no_lead() {
        let carried = [
            m(0, Author::Field, "", None, Some("email"), "sue@example.com"),
            m(0, Author::Bot, "utter_greet", Some("text"), None, "Hi!"),
        ];
        let f = facts(&carried, TimeDelta::minutes(30), carried[0].sent_at + TimeDelta::hours(1), true);
        assert!(!f.left_contact, "{f:?}");
        let wrote = [carried[0].clone(), carried[1].clone(), m(1, Author::Visitor, "utter_greet", None, None, "hi")];
        assert!(facts(&wrote, TimeDelta::minutes(30), wrote[0].sent_at + TimeDelta::hours(1), true).left_contact);
    }

    #[test]
    fn the_most_asked_are_kept_in_bounded_memory() {
        let mut asked = Frequent::default();
        for i in 0..20_000 {
            asked.add(&format!("question number {i}"));
            if i % 100 == 0 {
                asked.add("Do you  ship to BRAZIL?");
                asked.add(&format!("Do you ship to Brazil? {}", "x".repeat(1000)));
            }
            assert!(asked.counts.len() < 2 * KEPT);
        }
        let brazil = asked.counts.get("do you ship to brazil?").unwrap();
        assert_eq!((brazil.0.as_str(), brazil.1), ("Do you  ship to BRAZIL?", 200));
        assert!(asked.counts.values().all(|(text, _)| text.chars().count() <= ASK_CHARS + 1));
        assert_eq!(asked.total, 20_400);
        assert!(asked.dropped >= 20_000 - 2 * KEPT);
    }

    #[test]
    fn facts_of_a_chat_that_went_idle_came_back_and_finished() {
        let chat = [
            m(0, Author::Bot, "ask_name", None, None, "Your name?"),
            m(1, Author::Visitor, "ask_name", None, Some("name"), "Ana"),
            m(2, Author::Bot, "ask_email", None, None, "Your email?"),
            m(3, Author::Visitor, "ask_email", None, None, "Do you ship to Brazil?"),
            m(4, Author::Visitor, "ask_email", None, Some("email"), "ana@example.com"),
            m(5, Author::Bot, "ask_phone", None, None, "Your phone?"),
            m(200, Author::Visitor, "ask_phone", None, Some("phone"), "555"),
            m(201, Author::Bot, "done", Some("end_conversation"), None, "Thanks"),
        ];
        let now = chat[7].sent_at + TimeDelta::days(1);
        let f = facts(&chat, TimeDelta::minutes(30), now, true);
        assert_eq!(f.steps, ["ask_name", "ask_email", "ask_phone"]);
        assert_eq!(f.questions[1], ("ask_email".into(), "Your email?".into()));
        assert_eq!(f.asks, [("ask_email".to_owned(), "Do you ship to Brazil?".to_owned())]);
        assert!(f.completed && f.went_idle && f.came_back && f.left_contact && !f.in_progress);
        assert_eq!(f.seconds_to_complete, Some(201 * 60));

        assert_eq!(f.last_step.as_deref(), Some("ask_phone"), "the end of the flow is no step");

        let left = facts(&chat[..5], TimeDelta::minutes(30), now, true);
        assert!(!left.completed && left.went_idle && !left.came_back && left.left_contact && !left.in_progress);
        let typing = facts(&chat[..5], TimeDelta::minutes(30), chat[4].sent_at + TimeDelta::minutes(5), true);
        assert!(!typing.went_idle && typing.in_progress, "may still be typing: not a drop-off");
    }

    /// An LLM chat: its steps are the lead form and the answers (the one that matched
    /// `complete_on` too), what the visitor wrote is grouped by their message, and a lead form
    /// filled is a contact left with no message after it.
    #[test]
    fn facts_of_an_llm_chat() {
        let form_only = [
            m(0, Author::Bot, "lead form", None, None, "How can we reach you?"),
            m(0, Author::Field, "", None, Some("email"), "ann@example.com"),
        ];
        let later = form_only[0].sent_at + TimeDelta::days(1);
        let f = facts(&form_only, TimeDelta::minutes(30), later, false);
        assert!(f.left_contact && f.went_idle && !f.completed, "{f:?}");
        assert!(!facts(&form_only, TimeDelta::minutes(30), later, true).left_contact, "a flow bot's carried slot");
        let chat = [
            form_only[0].clone(),
            form_only[1].clone(),
            m(1, Author::Visitor, "", None, None, "How much?"),
            m(2, Author::Bot, "message 1", None, None, "$10."),
            m(3, Author::Visitor, "", None, None, "Book a demo"),
            m(4, Author::Bot, "message 2", Some("end_conversation"), None, "Booked."),
            m(5, Author::Visitor, "", None, None, "thanks"),
        ];
        let f = facts(&chat, TimeDelta::minutes(30), later, false);
        assert_eq!(f.steps, ["lead form", "message 1", "message 2"]);
        assert_eq!(f.last_step.as_deref(), Some("message 2"));
        let asks: Vec<(&str, &str)> = f.asks.iter().map(|(s, a)| (s.as_str(), a.as_str())).collect();
        assert_eq!(asks, [("message 1", "How much?"), ("message 2", "Book a demo"), ("message 3", "thanks")]);
        assert!(f.completed && !f.went_idle && !f.in_progress && f.left_contact);
        assert_eq!(f.seconds_to_complete, Some(4 * 60));
    }

    /// Rasa records what a line filled as a field right after it: an answer, not a question.
    /// The last step is where the bot spoke last, not the last new step (the email's step).
    #[test]
    fn answers_recorded_after_the_line_are_not_questions_and_the_last_step_is_the_last_said() {
        let chat = [
            m(0, Author::Bot, "utter_ask_email", None, None, "Your email?"),
            m(1, Author::Visitor, "lead_form", None, None, "ann@example.com"),
            m(1, Author::Field, "", None, Some("email"), "ann@example.com"),
            m(2, Author::Bot, "utter_ask_phone", None, None, "Your phone?"),
            m(3, Author::Visitor, "lead_form", None, None, "how much is it?"),
            m(4, Author::Bot, "utter_prices", None, None, "$10 a month."),
            m(5, Author::Bot, "utter_ask_phone", None, None, "Your phone?"),
            m(6, Author::Visitor, "lead_form", None, None, "do you ship to Brazil?"),
        ];
        let f = facts(&chat, TimeDelta::minutes(30), chat[7].sent_at + TimeDelta::days(1), true);
        assert_eq!(
            f.asks,
            [
                ("utter_ask_phone".to_owned(), "how much is it?".to_owned()),
                ("utter_ask_phone".to_owned(), "do you ship to Brazil?".to_owned())
            ]
        );
        assert_eq!(f.steps, ["utter_ask_email", "utter_ask_phone", "utter_prices"]);
        assert_eq!(f.last_step.as_deref(), Some("utter_ask_phone"));
    }
}
