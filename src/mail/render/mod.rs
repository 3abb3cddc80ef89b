//! Turns a conversation and a decision into an email: headers from the thread, bodies from
//! the templates (the built-in ones written out in Rust in `builtin`, an owner's interpreted
//! by minijinja). Visitor text is untrusted: the HTML templates auto-escape it, and
//! whatever reaches a header goes through [`text::header`](crate::domain::text::header) first.

mod builtin;
mod markdown;

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use anyhow::{Context, Result, anyhow};
use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;
use lettre::Address;
use lettre::message::Mailbox;
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

use base64::Engine as _;

use crate::config::{Routing, Settings};
use crate::domain::{
    Author, ChatState, Conversation, Email, HEAD, Limits, Message, Person, Transcript,
    thread::{self, Thread},
};

/// The built-in templates, compiled into the binary so an installed tool needs no files.
/// A folder named by the `templates` key replaces any of them by file name.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.txt", include_str!("../../../templates/base.txt")),
    ("base.html", include_str!("../../../templates/base.html")),
    ("completed.txt", include_str!("../../../templates/completed.txt")),
    ("completed.html", include_str!("../../../templates/completed.html")),
    ("abandoned.txt", include_str!("../../../templates/abandoned.txt")),
    ("abandoned.html", include_str!("../../../templates/abandoned.html")),
    ("resumed.txt", include_str!("../../../templates/resumed.txt")),
    ("resumed.html", include_str!("../../../templates/resumed.html")),
    ("ended.txt", include_str!("../../../templates/ended.txt")),
    ("ended.html", include_str!("../../../templates/ended.html")),
];

/// Instructions one template render may run (minijinja's fuel).
const TEMPLATE_FUEL: u64 = 5_000_000;

/// Characters shown of a field's value: a name or an address is far shorter.
const FIELD_CHARS: usize = 500;

/// The part of a transcript an email shows: its first messages and its latest, within
/// `Limits`, as positions in the shown lines.
struct Shown {
    head_end: usize,
    start: usize,
    omitted: usize,
}

impl Shown {
    /// `transcript` holds the chat's first lines and at least its latest `limits.messages`
    /// (see `Transcript`), of `total` lines in all.
    fn of(transcript: &[&Message], total: usize, limits: &Limits) -> Self {
        let size = |m: &Message| m.body.len().min(limits.message_chars * 4);
        let mut budget = limits.transcript_bytes;
        let mut start = transcript.len();
        // Room for the first few when not all fit.
        let tail_max = if total > limits.messages { limits.messages.saturating_sub(HEAD) } else { limits.messages };
        // The latest messages first: they are what the email is about. At least one.
        while start > 0 && transcript.len() - start < tail_max.max(1) {
            let s = size(transcript[start - 1]);
            if s > budget && start < transcript.len() {
                break;
            }
            budget = budget.saturating_sub(s);
            start -= 1;
        }
        let mut head_end = 0;
        while head_end < HEAD.min(start) && transcript.len() - start + head_end < limits.messages {
            let s = size(transcript[head_end]);
            if s > budget {
                break;
            }
            budget -= s;
            head_end += 1;
        }
        Shown { head_end, start, omitted: total.saturating_sub(head_end + transcript.len() - start) }
    }

    /// Each message shown, with how many were left out just before it.
    fn messages<'a>(&self, transcript: &[&'a Message]) -> impl Iterator<Item = (usize, &'a Message)> {
        let head = transcript[..self.head_end].iter().map(|m| (0, *m));
        let omitted = self.omitted;
        let tail =
            transcript[self.start..].iter().enumerate().map(move |(i, m)| (if i == 0 { omitted } else { 0 }, *m));
        head.chain(tail).collect::<Vec<_>>().into_iter()
    }
}

/// At most `max` characters of a message, with a note of how many more there were.
/// A field's value as an email shows it: one line (a line break in an answer must not start a
/// line that reads like the email's own), within `FIELD_CHARS`.
pub fn field_value(value: &str) -> String {
    let one_line = crate::domain::text::line(value).split_whitespace().collect::<Vec<_>>().join(" ");
    cut(&one_line, FIELD_CHARS).into_owned()
}

pub fn cut(body: &str, max: usize) -> Cow<'_, str> {
    // No more bytes than `max` is no more characters: most messages, with no walk through them.
    if body.len() <= max {
        return Cow::Borrowed(body);
    }
    match body.char_indices().nth(max) {
        None => Cow::Borrowed(body),
        Some((end, _)) => {
            let more = body[end..].chars().count();
            Cow::Owned(format!("{}… ({more} more characters not shown)", &body[..end]))
        }
    }
}

pub struct Renderer {
    env: Environment<'static>,
    limits: Limits,
    /// What each template is called in errors: its file, or "built-in NAME".
    shown: HashMap<String, String>,
    /// The templates ("{set}/{state}.{ext}") that are built-in and extend the built-in base:
    /// `builtin` renders them without minijinja.
    native: HashSet<String>,
    /// The bots (`Settings::index`) whose subject is the default one, rendered the same way.
    native_subject: HashSet<usize>,
    html: bool,
}

/// One email's worth of decision: which conversation, what it says, where it threads.
pub struct Draft<'a> {
    pub conversation: &'a Conversation,
    /// Its messages; those after `Transcript::since`, the last an earlier email covered, are
    /// marked new.
    pub transcript: &'a Transcript,
    /// What is known of the visitor from their other chats (empty for a first-time visitor).
    pub person: &'a Person,
    pub state: ChatState,
    pub thread: &'a Thread,
    pub now: DateTime<Utc>,
    pub from: &'a Mailbox,
    /// The bot's lines are markdown (`Source::writes_markdown`): rendered in the HTML part.
    pub markdown: bool,
    /// The chat has a last step (`Source::has_last_step`): where it stopped is worth naming.
    /// An LLM chat's "step" is only its message count, and its "question" a whole answer.
    pub last_step: bool,
}

impl Renderer {
    /// Parses every template now (each template set's eight files, each bot's subject), so a
    /// broken one stops the run before anything is decided. A set's templates live under
    /// "{set}/" and extend the base of their own set. A set that keeps every built-in file, and
    /// the default subject, are rendered by `builtin` and not parsed at all (a third of an idle
    /// run's own work).
    pub fn new(routing: &Routing, limits: Limits) -> Result<Self> {
        Self::build(routing, limits, false)
    }

    /// `new`, with `interpret_all` making every template minijinja's (the built-in ones too),
    /// for holding `builtin` to them.
    fn build(routing: &Routing, limits: Limits, interpret_all: bool) -> Result<Self> {
        let mut env = Environment::new();
        // A template is code the owner writes: a loop gone wrong must fail one email, not
        // hang the run while it holds the lock. A capped transcript needs a few thousand
        // instructions; the budget leaves room for templates far richer than the built-in ones.
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_path_join_callback(|name, parent| match parent.split_once('/') {
            Some((set, _)) if !name.contains('/') => format!("{set}/{name}").into(),
            _ => name.into(),
        });
        let mut shown = HashMap::new();
        let mut native = HashSet::new();
        for (set, folder) in routing.template_sets.iter().enumerate() {
            let custom = |name: &str| folder.as_ref().map(|dir| dir.join(name)).filter(|p| p.is_file());
            // A set that keeps every built-in file is rendered by `builtin` alone: nothing to parse.
            let parsed = interpret_all || TEMPLATES.iter().any(|(name, _)| custom(name).is_some());
            for (name, builtin) in TEMPLATES.iter().filter(|_| parsed) {
                let custom = custom(name);
                let source = match &custom {
                    Some(path) => std::fs::read_to_string(path)
                        .with_context(|| format!("template {}: reading", path.display()))?,
                    None => (*builtin).to_owned(),
                };
                let display = custom.as_ref().map_or_else(|| format!("built-in {name}"), |p| p.display().to_string());
                env.add_template_owned(format!("{set}/{name}"), source).map_err(|e| template_error(&display, &e))?;
                shown.insert(format!("{set}/{name}"), display);
            }
            for state in ChatState::ALL {
                for ext in ["txt", "html"] {
                    if !interpret_all
                        && custom(&format!("base.{ext}")).is_none()
                        && custom(&format!("{}.{ext}", state.as_str())).is_none()
                    {
                        native.insert(format!("{set}/{}.{ext}", state.as_str()));
                    }
                }
            }
        }
        let mut native_subject = HashSet::new();
        for settings in routing.all() {
            if !interpret_all && settings.notify.subject == crate::config::DEFAULT_SUBJECT {
                native_subject.insert(settings.index);
                continue;
            }
            env.add_template_owned(format!("subject/{}", settings.index), settings.notify.subject.clone())
                .map_err(|e| template_error(&subject_key(settings.index), &e))?;
        }
        Ok(Renderer { env, limits, shown, native, native_subject, html: true })
    }

    /// Leaves the HTML part empty: for previews, which print only the text part.
    pub fn text_only(self) -> Self {
        Renderer { html: false, ..self }
    }

    pub fn compose(&self, draft: &Draft, settings: &Settings, message_id_domain: &str) -> Result<Email> {
        self.email(draft, settings, message_id_domain, true)
    }

    /// The email `compose` makes, but its bodies, left empty: for one the flood guard lists in a
    /// summary and never sends (a big first run's 80,000 bodies were most of its cost).
    pub fn compose_head(&self, draft: &Draft, settings: &Settings, message_id_domain: &str) -> Result<Email> {
        self.email(draft, settings, message_id_domain, false)
    }

    fn email(&self, draft: &Draft, settings: &Settings, message_id_domain: &str, bodies: bool) -> Result<Email> {
        let conversation = draft.conversation;
        let visitor = Visitor::from_transcript(&draft.transcript.messages);
        // Who the visitor is, with what they said in earlier chats where this one is silent:
        // their name for the subject, their address for Reply-To.
        let known = visitor.with_earlier(draft.person);
        let identifier = thread::identifier(&conversation.id);
        let reply_to = known.reply_to();
        let head = Head::of(draft, &visitor, &known, reply_to.as_ref(), &identifier, settings.time_zone);
        // The subject is fixed by a conversation's first email: Gmail threads only on it.
        let subject = match draft.thread.reply_subject() {
            Some(reply) => reply,
            None if self.native_subject.contains(&settings.index) => {
                thread::subject(&format!("{}: chat with {}", head.bot.name, head.visitor.display), &identifier)
            }
            None => {
                let name = format!("subject/{}", settings.index);
                let context = minijinja::context! { bot => &head.bot, visitor => &head.visitor, conversation => &head.conversation };
                let text = self
                    .env
                    .get_template(&name)
                    .and_then(|t| t.render(context))
                    .map_err(|e| template_error(&subject_key(settings.index), &e))?;
                thread::subject(&text, &identifier)
            }
        };
        let covers_through = draft.transcript.messages.last().map_or(draft.transcript.since, |m| m.id);
        let (text, html) = match bodies {
            true => self.bodies(draft, head, &visitor, &subject, settings)?,
            false => (String::new(), String::new()),
        };
        let mut headers = crate::mail::filter_headers(
            draft.state.as_str(),
            &conversation.bot_id,
            &conversation.bot_name,
            &subject,
            message_id_domain,
        );
        let index = thread::thread_index(&conversation.id, draft.thread.index.as_deref(), draft.now);
        headers.push(("Thread-Index".to_owned(), base64::engine::general_purpose::STANDARD.encode(index)));
        Ok(Email {
            message_id: thread::message_id(&conversation.id, draft.state, covers_through, message_id_domain),
            date: draft.now,
            from: draft.from.clone(),
            to: settings.to.iter().cloned().collect(),
            cc: settings.cc.iter().cloned().collect(),
            reply_to,
            subject,
            in_reply_to: draft.thread.in_reply_to().map(str::to_owned),
            references: draft.thread.references(),
            headers,
            text,
            html,
        })
    }

    /// The text and HTML parts (the HTML empty for a preview: `text_only`).
    fn bodies(
        &self,
        draft: &Draft,
        head: Head,
        visitor: &Visitor,
        subject: &str,
        settings: &Settings,
    ) -> Result<(String, String)> {
        let view = View { subject, ..self.parts(draft, head, visitor, settings.time_zone) };
        // Converted for minijinja at most once, for both templates, and only if one needs it.
        let mut value = None;
        let mut render = |ext: &str| {
            let name = format!("{}/{}.{ext}", settings.template_set, draft.state.as_str());
            if self.native.contains(&name) {
                let native = if ext == "txt" { builtin::text } else { builtin::html };
                return Ok(native(&view, draft.state));
            }
            let value = value.get_or_insert_with(|| minijinja::Value::from_serialize(&view));
            self.env.get_template(&name).and_then(|t| t.render(&*value)).map_err(|e| {
                let failed = e.name().unwrap_or(&name);
                template_error(self.shown.get(failed).map_or(failed, String::as_str), &e)
            })
        };
        let text = render("txt")?;
        let html = if self.html { render("html")? } else { String::new() };
        Ok((text, html))
    }

    /// Everything the templates see but the subject (which the subject template itself makes).
    fn parts<'a>(&self, draft: &'a Draft, head: Head<'a>, visitor: &'a Visitor, tz: Tz) -> View<'a> {
        let c = draft.conversation;
        let at = |t: DateTime<Utc>| stamp(t.with_timezone(&tz), true);
        let day = |t: DateTime<Utc>| stamp(t.with_timezone(&tz), false);
        let came_back = draft.transcript.since > 0 && !draft.thread.message_ids.is_empty();
        let is_new = |m: &Message| came_back && m.id > draft.transcript.since;
        let lines: Vec<&Message> = draft.transcript.messages.iter().filter(|m| m.is_shown()).collect();
        let shown = Shown::of(&lines, draft.transcript.lines, &self.limits);
        let first_new = shown.messages(&lines).position(|(_, m)| is_new(m));
        let transcript: Vec<Line> = shown
            .messages(&lines)
            .enumerate()
            .map(|(i, (skipped_before, m))| Line {
                at: at(m.sent_at),
                sender: m.author,
                who: match m.author {
                    Author::Bot => c.bot_name.as_str(),
                    Author::Visitor | Author::Field => "Visitor",
                    Author::Note => "Note",
                },
                body: cut(&m.body, self.limits.message_chars),
                body_html: (draft.markdown && m.author == Author::Bot && self.html)
                    .then(|| markdown::to_html(&cut(&m.body, self.limits.message_chars)))
                    .flatten(),
                new: is_new(m),
                first_new: first_new == Some(i),
                skipped_before,
            })
            .collect();
        let last_bot =
            draft.transcript.messages.iter().rev().find(|m| m.author == Author::Bot).filter(|_| draft.last_step);
        View {
            state: draft.state.as_str(),
            came_back,
            subject: "",
            bot: head.bot,
            conversation: head.conversation,
            visitor: head.visitor,
            person: PersonView {
                known_before: !draft.person.conversations.is_empty(),
                conversations: draft
                    .person
                    .conversations
                    .iter()
                    .map(|e| EarlierView {
                        identifier: &e.identifier,
                        bot: &e.bot,
                        state: e.state_name(),
                        date: day(e.last_activity),
                    })
                    .collect(),
                more: draft.person.more,
                // What this chat does not say already.
                fields: draft
                    .person
                    .fields
                    .iter()
                    .filter(|f| visitor.get(&f.name).is_none())
                    .map(|f| EarlierFieldView {
                        name: &f.name,
                        value: cut(&f.value, FIELD_CHARS),
                        identifier: &f.identifier,
                        date: day(f.given_at),
                    })
                    .collect(),
            },
            step: last_bot.and_then(|m| m.gambit_id.as_deref()),
            question: last_bot.map(|m| cut(&m.body, self.limits.message_chars)),
            new_messages: if came_back { draft.transcript.new_messages } else { 0 },
            omitted_messages: shown.omitted,
            transcript,
            time_zone: tz.name(),
        }
    }
}

/// "2026-11-24 09:05" (or the day alone), digit by digit: `format!`, let alone chrono's
/// formatter, was the larger part of an email's cost, once per transcript line.
fn stamp(t: DateTime<Tz>, minutes: bool) -> String {
    fn two(s: &mut String, n: u32) {
        s.push(char::from(b'0' + (n / 10 % 10) as u8));
        s.push(char::from(b'0' + (n % 10) as u8));
    }
    let mut s = String::with_capacity(16);
    match u32::try_from(t.year()) {
        Ok(year) if year <= 9999 => {
            two(&mut s, year / 100);
            two(&mut s, year % 100);
        }
        _ => s.push_str(&format!("{:04}", t.year())),
    }
    for (sep, n) in [('-', t.month()), ('-', t.day())] {
        s.push(sep);
        two(&mut s, n);
    }
    if minutes {
        for (sep, n) in [(' ', t.hour()), (':', t.minute())] {
            s.push(sep);
            two(&mut s, n);
        }
    }
    s
}

/// Where a subject template comes from, as the config names it.
fn subject_key(index: usize) -> String {
    match index {
        0 => "notify.subject".to_owned(),
        i => format!("bots[{}].notify.subject", i - 1),
    }
}

/// One line: the file, the line, what is wrong (minijinja's own report spans many lines).
fn template_error(shown: &str, e: &minijinja::Error) -> anyhow::Error {
    let line = e.line().map(|n| format!(", line {n}")).unwrap_or_default();
    let detail = e.detail().map(|d| format!(": {d}")).unwrap_or_default();
    anyhow!("template {shown}{line}: {}{detail}", e.kind())
}

#[derive(Serialize)]
struct View<'a> {
    state: &'static str,
    came_back: bool,
    subject: &'a str,
    bot: BotView<'a>,
    conversation: ConversationView<'a>,
    visitor: VisitorView<'a>,
    person: PersonView<'a>,
    /// The flow step the visitor was last asked, and its question.
    step: Option<&'a str>,
    question: Option<Cow<'a, str>>,
    transcript: Vec<Line<'a>>,
    new_messages: usize,
    /// Messages of a long chat left out of `transcript` (see `Limits`).
    omitted_messages: usize,
    time_zone: &'static str,
}

/// What the subject template sees (the bot, the conversation, the visitor): all an email's head
/// needs of its conversation.
struct Head<'a> {
    bot: BotView<'a>,
    conversation: ConversationView<'a>,
    visitor: VisitorView<'a>,
}

impl<'a> Head<'a> {
    fn of(
        draft: &'a Draft,
        visitor: &'a Visitor,
        known: &Visitor,
        reply_to: Option<&Mailbox>,
        identifier: &'a str,
        tz: Tz,
    ) -> Self {
        let c = draft.conversation;
        Head {
            bot: BotView { id: &c.bot_id, name: &c.bot_name },
            conversation: ConversationView {
                id: &c.id,
                identifier,
                started_at: c.started_at.map(|t| stamp(t.with_timezone(&tz), true)),
                page_url: c.page_url.as_deref(),
            },
            visitor: VisitorView {
                id: &c.visitor_id,
                display: known.display(),
                reply_to: reply_to.map(|m| m.email.to_string()),
                fields: &visitor.fields,
            },
        }
    }
}

/// The person behind the visitor: their other chats and what they said there.
#[derive(Serialize)]
struct PersonView<'a> {
    known_before: bool,
    conversations: Vec<EarlierView<'a>>,
    /// Other conversations beyond those listed.
    more: usize,
    /// Fields given in earlier chats and not in this one.
    fields: Vec<EarlierFieldView<'a>>,
}

#[derive(Serialize)]
struct EarlierView<'a> {
    identifier: &'a str,
    bot: &'a str,
    state: &'a str,
    date: String,
}

#[derive(Serialize)]
struct EarlierFieldView<'a> {
    name: &'a str,
    value: Cow<'a, str>,
    identifier: &'a str,
    date: String,
}

#[derive(Serialize)]
struct BotView<'a> {
    id: &'a str,
    name: &'a str,
}

#[derive(Serialize)]
struct ConversationView<'a> {
    id: &'a str,
    identifier: &'a str,
    started_at: Option<String>,
    page_url: Option<&'a str>,
}

#[derive(Serialize)]
struct VisitorView<'a> {
    id: &'a str,
    display: String,
    /// The visitor's address when it is valid: Reply goes there.
    reply_to: Option<String>,
    fields: &'a [Field],
}

#[derive(Serialize)]
struct Line<'a> {
    at: String,
    /// Named `sender` for the templates, as the README documents.
    sender: Author,
    who: &'a str,
    body: Cow<'a, str>,
    /// The body as HTML, for a bot that writes markdown (see `markdown`): safe to print as it
    /// is (`|safe`); none for every other line.
    body_html: Option<String>,
    /// Not covered by an earlier email.
    new: bool,
    /// The first new line, where the templates put their divider.
    first_new: bool,
    /// Messages left out just before this line (a long chat shows its start and its end).
    skipped_before: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Field {
    pub name: String,
    pub value: String,
}

/// The messages an email shows of a transcript within `limits`, each cut to `message_chars`,
/// with how many were left out just before it: what the other destinations show too.
pub fn shown_messages<'a>(transcript: &'a Transcript, limits: &Limits) -> Vec<(usize, &'a Message, Cow<'a, str>)> {
    let lines: Vec<&Message> = transcript.messages.iter().filter(|m| m.is_shown()).collect();
    let shown = Shown::of(&lines, transcript.lines, limits);
    shown.messages(&lines).map(|(skipped, m)| (skipped, m, cut(&m.body, limits.message_chars))).collect()
}

/// How a subject names the visitor of this transcript: their name, else email, else "a visitor".
pub fn visitor_display(transcript: &[Message]) -> String {
    Visitor::from_transcript(transcript).display()
}

/// What the visitor told the bot: each field once, in the order first asked, with the latest
/// answer (visitors correct typos).
#[derive(Debug, Default)]
struct Visitor {
    fields: Vec<Field>,
}

impl Visitor {
    fn from_transcript(transcript: &[Message]) -> Self {
        let fields = crate::domain::given(transcript)
            .into_iter()
            .map(|g| Field { name: g.name, value: field_value(&g.value) })
            .collect();
        Visitor { fields }
    }

    /// This chat's fields, then those of earlier chats it does not have.
    fn with_earlier(&self, person: &Person) -> Visitor {
        let mut fields = self.fields.clone();
        for f in &person.fields {
            if self.get(&f.name).is_none() {
                fields.push(Field { name: f.name.clone(), value: field_value(&f.value) });
            }
        }
        Visitor { fields }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|f| f.name == name).map(|f| f.value.as_str()).filter(|v| !v.is_empty())
    }

    fn name(&self) -> Option<String> {
        crate::domain::visitor_name(|f| self.get(f))
    }

    /// Who the subject names: the visitor's name, else their email, else "a visitor".
    fn display(&self) -> String {
        let shown = self.name().or_else(|| self.get("email").map(str::to_owned)).unwrap_or_default();
        let clean = crate::domain::text::header(&shown, 60);
        if clean.is_empty() { "a visitor".to_owned() } else { clean }
    }

    /// The visitor's address, when it is one, so the owner answers a lead by pressing Reply.
    fn reply_to(&self) -> Option<Mailbox> {
        let raw = self.get("email")?;
        // ASCII only: an internationalized address would put raw UTF-8 in a header and need
        // SMTPUTF8 from every server on the way. And a domain with a dot: "x@localhost" is no lead.
        let domain = raw.rsplit_once('@')?.1;
        if !raw.is_ascii() || raw.chars().any(|c| c.is_whitespace() || c.is_control()) || !domain.contains('.') {
            return None;
        }
        let address = Address::from_str(raw).ok()?;
        let name = self.name().map(|n| crate::domain::text::header(&n, 60)).filter(|n| !n.is_empty());
        // What cannot be read back from the outbox never goes in: without the name if only
        // the name is the trouble, else no Reply-To at all.
        [Mailbox::new(name, address.clone()), Mailbox::new(None, address)].into_iter().find(crate::domain::round_trips)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn msg(id: i64, author: Author, field: Option<&str>, body: &str) -> Message {
        Message {
            id,
            sent_at: Utc.with_ymd_and_hms(2026, 11, 24, 9, id as u32, 0).unwrap(),
            author,
            gambit_id: Some(format!("step{id}")),
            input_type: None,
            field: field.map(str::to_owned),
            body: body.to_owned(),
        }
    }

    fn routing(extra: &str, dir: Option<&std::path::Path>) -> Routing {
        let templates = dir.map(|d| format!("templates = {:?}\n", d.display().to_string())).unwrap_or_default();
        let config: crate::config::Config = toml::from_str(&format!(
            "export = \"e\"\nstate = \"s\"\ntime_zone = \"Europe/Berlin\"\n{templates}{extra}\n\
             [mail]\nfrom = \"Notifier <n@example.com>\"\nto = [\"owner@example.com\"]\n\
             [transport]\nkind = \"folder\"\npath = \"o\"\n"
        ))
        .unwrap();
        Routing::new(&config)
    }

    fn conversation() -> Conversation {
        Conversation {
            id: "conv-1".into(),
            bot_id: "lead".into(),
            bot_name: "Lead Bot".into(),
            visitor_id: "v1".into(),
            started_at: None,
            page_url: Some("https://example.com/pricing".into()),
        }
    }

    #[test]
    fn visitor_fields_keep_first_order_and_latest_value() {
        let t = [
            msg(1, Author::Visitor, Some("email"), "typo@exmple"),
            msg(2, Author::Visitor, Some("name"), " Jane Doe "),
            msg(3, Author::Visitor, Some("email"), "jane@example.com"),
            msg(4, Author::Bot, Some("name"), "ignored: the bot's own text"),
        ];
        let v = Visitor::from_transcript(&t);
        let names: Vec<_> = v.fields.iter().map(|f| (f.name.as_str(), f.value.as_str())).collect();
        assert_eq!(names, [("email", "jane@example.com"), ("name", "Jane Doe")]);
        assert_eq!(v.display(), "Jane Doe");
        assert_eq!(v.reply_to().unwrap().to_string(), "Jane Doe <jane@example.com>");
    }

    #[test]
    fn reply_to_only_for_a_real_address() {
        for bad in [
            "not-an-address",
            "jane@example.com\r\nBcc: x@evil.com",
            "a b@example.com",
            "¡@A",
            "ünï@example.com",
            "x@localhost",
        ] {
            let v = Visitor::from_transcript(&[msg(1, Author::Visitor, Some("email"), bad)]);
            assert_eq!(v.reply_to(), None, "{bad:?}");
        }
        assert_eq!(Visitor::default().display(), "a visitor");
    }

    #[test]
    fn html_escapes_visitor_text_and_marks_new_messages() {
        let routing = routing("", None);
        let r = Renderer::new(&routing, Limits::default()).unwrap();
        let t = [
            msg(1, Author::Bot, None, "Your name?"),
            msg(2, Author::Visitor, Some("name"), "<script>alert(1)</script>"),
            msg(3, Author::Visitor, None, "back again & more"),
        ];
        let thread = Thread { subject: Some("S [#X]".into()), message_ids: vec!["<a@x>".into()], index: None };
        let draft = Draft {
            conversation: &conversation(),
            transcript: &Transcript::of(t, 2),
            person: &Default::default(),
            state: ChatState::Resumed,
            thread: &thread,
            now: Utc::now(),
            from: &"Notifier <n@example.com>".parse().unwrap(),
            markdown: false,
            last_step: true,
        };
        let e = r.compose(&draft, routing.for_bot("lead"), "example.com").unwrap();
        assert!(!e.html.contains("<script>"), "{}", e.html);
        assert!(e.html.contains("&lt;script&gt;"), "{}", e.html);
        assert!(e.html.contains("back again &amp; more"));
        assert!(e.text.contains("<script>alert(1)</script>"), "plain text keeps the text as typed");
        assert!(e.text.contains("new since the last email"), "{}", e.text);
        assert!(e.text.contains("2026-11-24 10:03"), "times in the owner's zone: {}", e.text);
        assert_eq!(e.subject, "Re: S [#X]");
        assert_eq!(e.in_reply_to.as_deref(), Some("<a@x>"));
        assert!(e.message_id.contains(".resumed.3@example.com>"));
    }

    #[test]
    fn a_long_transcript_keeps_its_start_and_its_end_within_the_limits() {
        let owned: Vec<Message> = (1..=50).map(|i| msg(i, Author::Visitor, None, &"x".repeat(10))).collect();
        let t: Vec<&Message> = owned.iter().collect();
        let ids = |s: &Shown| s.messages(&t).map(|(skipped, m)| (skipped, m.id)).collect::<Vec<_>>();
        let all = Shown::of(&t, t.len(), &Limits { messages: 50, message_chars: 100, transcript_bytes: 10_000 });
        assert_eq!((all.omitted, all.messages(&t).count()), (0, 50));
        let capped = Shown::of(&t, t.len(), &Limits { messages: 10, message_chars: 100, transcript_bytes: 10_000 });
        assert_eq!(
            ids(&capped),
            [(0, 1), (0, 2), (0, 3), (40, 44), (0, 45), (0, 46), (0, 47), (0, 48), (0, 49), (0, 50)]
        );
        // 45 bytes: the last four messages (40 bytes), then no room for the start.
        let by_bytes = Shown::of(&t, t.len(), &Limits { messages: 50, message_chars: 100, transcript_bytes: 45 });
        assert_eq!(ids(&by_bytes), [(46, 47), (0, 48), (0, 49), (0, 50)]);
        // One message larger than the whole budget is still shown: the email is about it.
        let huge = msg(1, Author::Visitor, None, &"y".repeat(1000));
        let huge = [&huge];
        let one = Shown::of(&huge, huge.len(), &Limits { messages: 5, message_chars: 100, transcript_bytes: 10 });
        assert_eq!(one.messages(&huge).count(), 1);
        assert_eq!(cut("abcdef", 3), "abc… (3 more characters not shown)");
        assert_eq!(cut("abc", 3), "abc");
    }

    /// Text a visitor or an owner might write: markup, quotes, slashes, non-ASCII, blank.
    fn untrusted() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just("Jane Doe <jane@example.com>".to_owned()),
            Just("jane@example.com".to_owned()),
            "[a-z ]{1,12}",
            "[a-zA-Z0-9 <>&\"'/\n\u{e9}\u{1F600}-]{0,40}",
        ]
    }

    fn message() -> impl Strategy<Value = Message> {
        let field = proptest::option::of("(name|email|phone|company)");
        (0..3u8, field, untrusted(), proptest::option::of("[a-z_]{0,6}"), proptest::bool::weighted(0.1)).prop_map(
            |(author, field, body, step, ends)| Message {
                id: 0,
                sent_at: Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap(),
                author: [Author::Bot, Author::Visitor, Author::Field][author as usize],
                gambit_id: step,
                input_type: ends.then(|| crate::domain::END_OF_FLOW.to_owned()),
                field,
                body,
            },
        )
    }

    fn person() -> impl Strategy<Value = Person> {
        let state = prop::sample::select(vec![None, Some(ChatState::Abandoned), Some(ChatState::Completed)]);
        let earlier = (untrusted(), state).prop_map(|(bot, state)| crate::domain::Earlier {
            identifier: "ABCD-EFGH-JKMN".into(),
            bot,
            state,
            last_activity: Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 0).unwrap(),
        });
        let field = ("(name|email|city)", untrusted()).prop_map(|(name, value)| crate::domain::EarlierField {
            name,
            value,
            identifier: "WXYZ-EFGH-JKMN".into(),
            given_at: Utc.with_ymd_and_hms(2026, 11, 21, 9, 0, 0).unwrap(),
        });
        (proptest::collection::vec(earlier, 0..3), 0..3usize, proptest::collection::vec(field, 0..3))
            .prop_map(|(conversations, more, fields)| Person { conversations, more, fields })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// `builtin` is the built-in templates written out in Rust: for any view, the same bytes
        /// as minijinja rendering the template files, subject included. And the transcript a run
        /// keeps of a long chat (`Transcript::read`) makes the email the whole chat makes.
        #[test]
        fn the_built_in_templates_and_their_rust_agree(
            transcript in proptest::collection::vec(message(), 0..30),
            state in 0..ChatState::ALL.len(),
            markdown in any::<bool>(),
            last_step in any::<bool>(),
            covered_before in 0..14i64,
            replied in any::<bool>(),
            started in any::<bool>(),
            page_url in proptest::option::of(untrusted()),
            bot_name in untrusted(),
            person in person(),
            messages_limit in 2..14usize,
        ) {
            let routing = routing("", None);
            let limits = Limits { messages: messages_limit, message_chars: 20, transcript_bytes: 200 };
            let native = Renderer::new(&routing, limits).unwrap();
            prop_assert!(!native.native.is_empty() && !native.native_subject.is_empty());
            let interpreted = Renderer::build(&routing, limits, true).unwrap();
            prop_assert!(interpreted.native.is_empty() && interpreted.native_subject.is_empty());
            let transcript: Vec<Message> =
                transcript.into_iter().enumerate().map(|(i, m)| Message { id: i as i64 + 1, ..m }).collect();
            let conversation = Conversation {
                bot_name,
                page_url,
                started_at: started.then(|| Utc.with_ymd_and_hms(2026, 11, 24, 8, 0, 0).unwrap().fixed_offset()),
                ..conversation()
            };
            let thread = if replied {
                Thread { subject: Some("S [#X]".into()), message_ids: vec!["<a@x>".into()], index: None }
            } else {
                Thread::default()
            };
            let mut reader = crate::domain::Reader::new(covered_before, messages_limit);
            transcript.iter().cloned().for_each(|m| reader.push(m));
            let kept = reader.finish();
            let whole = Transcript::of(transcript, covered_before);
            let draft = Draft {
                conversation: &conversation,
                transcript: &whole,
                person: &person,
                state: ChatState::ALL[state],
                thread: &thread,
                now: Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap(),
                from: &"Notifier <n@example.com>".parse().unwrap(),
                markdown,
                last_step,
            };
            let settings = routing.for_bot("lead");
            let a = native.compose(&draft, settings, "example.com").unwrap();
            let b = interpreted.compose(&draft, settings, "example.com").unwrap();
            // A change to templates/ needs the same in builtin.rs, and the other way round.
            prop_assert_eq!(&a.subject, &b.subject, "templates/ and builtin.rs disagree");
            prop_assert_eq!(&a.text, &b.text, "templates/ and builtin.rs disagree");
            prop_assert_eq!(&a.html, &b.html, "templates/ and builtin.rs disagree");
            let c = native.compose(&Draft { transcript: &kept, ..draft }, settings, "example.com").unwrap();
            prop_assert_eq!((&a.subject, &a.text, &a.html), (&c.subject, &c.text, &c.html), "the kept transcript differs");
            prop_assert_eq!(a.message_id, c.message_id);
        }
    }

    #[test]
    fn own_templates_are_rendered_by_minijinja() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("base.txt"), "Own base: {% block headline %}{% endblock %}").unwrap();
        std::fs::write(dir.path().join("resumed.html"), "<p>own {{ bot.name }}</p>").unwrap();
        let routing = routing("[notify]\nsubject = \"New: {{ visitor.display }}\"", Some(dir.path()));
        let r = Renderer::new(&routing, Limits::default()).unwrap();
        // Every text part extends the own base; only resumed.html is the owner's among HTML.
        assert!(!r.native.iter().any(|name| name.ends_with(".txt")), "{:?}", r.native);
        assert!(r.native.contains("0/completed.html") && !r.native.contains("0/resumed.html"));
        assert!(r.native_subject.is_empty());
        let t = [msg(1, Author::Visitor, Some("name"), "Jane")];
        let draft = Draft {
            conversation: &conversation(),
            transcript: &Transcript::of(t, 0),
            person: &Default::default(),
            state: ChatState::Resumed,
            thread: &Thread::default(),
            now: Utc::now(),
            from: &"Notifier <n@example.com>".parse().unwrap(),
            markdown: false,
            last_step: true,
        };
        let e = r.compose(&draft, routing.for_bot("lead"), "example.com").unwrap();
        assert!(e.subject.starts_with("New: Jane ["), "{}", e.subject);
        assert!(e.text.starts_with("Own base: Jane came back"), "{}", e.text);
        assert_eq!(e.html, "<p>own Lead Bot</p>");
    }

    #[test]
    fn stamps_read_as_chrono_writes_them() {
        let tz: Tz = "America/New_York".parse().unwrap();
        for t in [0, 1_795_000_000, 1_800_003_599, -62_000_000_000, 253_402_300_799] {
            let t = DateTime::from_timestamp(t, 0).unwrap().with_timezone(&tz);
            assert_eq!(stamp(t, true), t.format("%Y-%m-%d %H:%M").to_string());
            assert_eq!(stamp(t, false), t.format("%Y-%m-%d").to_string());
        }
    }

    #[test]
    fn a_broken_custom_template_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("completed.txt"), "line one\n{% if %}\n").unwrap();
        let err = format!("{:#}", Renderer::new(&routing("", Some(dir.path())), Limits::default()).err().unwrap());
        assert!(err.contains("completed.txt"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        let err = format!(
            "{:#}",
            Renderer::new(&routing("[notify]\nsubject = \"{{ oops\"", None), Limits::default()).err().unwrap()
        );
        assert!(err.contains("notify.subject"), "{err}");
    }
}
