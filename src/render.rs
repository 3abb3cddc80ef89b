//! Turns a conversation and a decision into an email: headers from the thread, bodies from
//! minijinja templates. Visitor text is untrusted: the HTML templates auto-escape it, and
//! whatever reaches a header goes through `thread::header_text` first.

use std::borrow::Cow;
use std::collections::HashMap;
use std::str::FromStr;

use anyhow::{Context, Result, anyhow};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use lettre::Address;
use lettre::message::{Mailbox, Mailboxes};
use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

use crate::classify::ChatState;
use crate::export::{Conversation, Message, Sender};
use crate::notify::{Routing, Settings};
use crate::thread::{self, Thread};

/// An email ready to send, in plain data: what the outbox stores and the transports take.
#[derive(Debug, Clone, PartialEq)]
pub struct Email {
    pub message_id: String,
    pub date: DateTime<Utc>,
    pub from: Mailbox,
    pub to: Mailboxes,
    pub cc: Mailboxes,
    pub reply_to: Option<Mailbox>,
    pub subject: String,
    pub in_reply_to: Option<String>,
    pub references: Option<String>,
    pub text: String,
    pub html: String,
}

/// The built-in templates, compiled into the binary so an installed tool needs no files.
/// A folder named by the `templates` key replaces any of them by file name.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.txt", include_str!("../templates/base.txt")),
    ("base.html", include_str!("../templates/base.html")),
    ("completed.txt", include_str!("../templates/completed.txt")),
    ("completed.html", include_str!("../templates/completed.html")),
    ("abandoned.txt", include_str!("../templates/abandoned.txt")),
    ("abandoned.html", include_str!("../templates/abandoned.html")),
    ("resumed.txt", include_str!("../templates/resumed.txt")),
    ("resumed.html", include_str!("../templates/resumed.html")),
];

const TIME_FORMAT: &str = "%Y-%m-%d %H:%M";

pub struct Renderer {
    env: Environment<'static>,
    /// What each template is called in errors: its file, or "built-in NAME".
    shown: HashMap<String, String>,
    html: bool,
    /// TIME_FORMAT, parsed once: re-parsing it for every timestamp was a tenth of rendering.
    time_format: Vec<chrono::format::Item<'static>>,
}

/// One email's worth of decision: which conversation, what it says, where it threads.
pub struct Draft<'a> {
    pub conversation: &'a Conversation,
    pub transcript: &'a [Message],
    pub state: ChatState,
    /// The last message an earlier email covered (0 for none): later ones are marked new.
    pub covered_before: i64,
    pub thread: &'a Thread,
    pub now: DateTime<Utc>,
    pub from: &'a Mailbox,
}

impl Renderer {
    /// Parses every template now (each template set's eight files, each bot's subject), so a
    /// broken one stops the run before anything is decided. A set's templates live under
    /// "{set}/" and extend the base of their own set.
    pub fn new(routing: &Routing) -> Result<Self> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_path_join_callback(|name, parent| match parent.split_once('/') {
            Some((set, _)) if !name.contains('/') => format!("{set}/{name}").into(),
            _ => name.into(),
        });
        let mut shown = HashMap::new();
        for (set, folder) in routing.template_sets.iter().enumerate() {
            for (name, builtin) in TEMPLATES {
                let custom = folder.as_ref().map(|dir| dir.join(name)).filter(|p| p.is_file());
                let source = match &custom {
                    Some(path) => std::fs::read_to_string(path)
                        .with_context(|| format!("template {}: reading", path.display()))?,
                    None => (*builtin).to_owned(),
                };
                let display = custom.as_ref().map_or_else(|| format!("built-in {name}"), |p| p.display().to_string());
                env.add_template_owned(format!("{set}/{name}"), source).map_err(|e| template_error(&display, &e))?;
                shown.insert(format!("{set}/{name}"), display);
            }
        }
        for settings in routing.all() {
            env.add_template_owned(format!("subject/{}", settings.index), settings.notify.subject.clone())
                .map_err(|e| template_error(&subject_key(settings.index), &e))?;
        }
        let time_format = chrono::format::StrftimeItems::new(TIME_FORMAT).parse_to_owned()?;
        Ok(Renderer { env, shown, html: true, time_format })
    }

    /// Leaves the HTML part empty: for previews, which print only the text part.
    pub fn text_only(self) -> Self {
        Renderer { html: false, ..self }
    }

    pub fn compose(&self, draft: &Draft, settings: &Settings, message_id_domain: &str) -> Result<Email> {
        let conversation = draft.conversation;
        let visitor = Visitor::from_transcript(draft.transcript);
        let identifier = thread::identifier(&conversation.id);
        let reply_to = visitor.reply_to();
        let parts = self.parts(draft, &visitor, reply_to.as_ref(), &identifier, settings.time_zone);
        // The subject is fixed by a conversation's first email: Gmail threads only on it.
        let subject = match draft.thread.reply_subject() {
            Some(reply) => reply,
            None => {
                let name = format!("subject/{}", settings.index);
                let context = minijinja::context! { bot => &parts.bot, visitor => &parts.visitor, conversation => &parts.conversation };
                let text = self
                    .env
                    .get_template(&name)
                    .and_then(|t| t.render(context))
                    .map_err(|e| template_error(&subject_key(settings.index), &e))?;
                thread::subject(&text, &identifier)
            }
        };
        let covers_through = draft.transcript.last().map_or(draft.covered_before, |m| m.id);
        // Converted once for both templates.
        let view = minijinja::Value::from_serialize(View { subject: &subject, ..parts });
        let render = |ext: &str| {
            let name = format!("{}/{}.{ext}", settings.template_set, draft.state.as_str());
            self.env.get_template(&name).and_then(|t| t.render(&view)).map_err(|e| {
                let failed = e.name().unwrap_or(&name);
                template_error(self.shown.get(failed).map_or(failed, String::as_str), &e)
            })
        };
        let text = render("txt")?;
        let html = if self.html { render("html")? } else { String::new() };
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
            text,
            html,
        })
    }

    /// Everything the templates see but the subject (which the subject template itself makes).
    fn parts<'a>(
        &self,
        draft: &'a Draft,
        visitor: &'a Visitor,
        reply_to: Option<&Mailbox>,
        identifier: &'a str,
        tz: Tz,
    ) -> View<'a> {
        let c = draft.conversation;
        let at = |t: DateTime<Utc>| t.with_timezone(&tz).format_with_items(self.time_format.iter()).to_string();
        let came_back = draft.covered_before > 0 && !draft.thread.message_ids.is_empty();
        let is_new = |m: &Message| came_back && m.id > draft.covered_before;
        let first_new = draft.transcript.iter().position(is_new);
        let transcript: Vec<Line> = draft
            .transcript
            .iter()
            .enumerate()
            .map(|(i, m)| Line {
                at: at(m.sent_at),
                sender: m.sender,
                who: match m.sender {
                    Sender::Bot => c.bot_name.as_str(),
                    Sender::Visitor => "Visitor",
                },
                body: display_text(&m.body),
                new: is_new(m),
                first_new: first_new == Some(i),
            })
            .collect();
        let last_bot = draft.transcript.iter().rev().find(|m| m.sender == Sender::Bot);
        View {
            state: draft.state.as_str(),
            came_back,
            subject: "",
            bot: BotView { id: &c.bot_id, name: &c.bot_name },
            conversation: ConversationView {
                id: &c.id,
                identifier,
                started_at: c.started_at.map(|t| at(t.with_timezone(&Utc))),
                page_url: c.page_url.as_deref(),
            },
            visitor: VisitorView {
                id: &c.visitor_id,
                display: visitor.display(),
                reply_to: reply_to.map(|m| m.email.to_string()),
                fields: &visitor.fields,
            },
            step: last_bot.and_then(|m| m.gambit_id.as_deref()),
            question: last_bot.map(|m| display_text(&m.body)),
            new_messages: transcript.iter().filter(|l| l.new).count(),
            transcript,
            time_zone: tz.name(),
        }
    }
}

/// Where a subject template comes from, as the config names it.
fn subject_key(index: usize) -> String {
    match index {
        0 => "notify.subject".to_owned(),
        i => format!("bots[{}].notify.subject", i - 1),
    }
}

/// Chat text as an email body may carry it: line breaks become plain newlines (a bare CR is
/// forbidden in a message and servers refuse it), other control characters become U+FFFD.
fn display_text(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                chars.next_if_eq(&'\n');
                out.push('\n');
            }
            '\n' | '\t' => out.push(c),
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
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
    /// The flow step the visitor was last asked, and its question.
    step: Option<&'a str>,
    question: Option<Cow<'a, str>>,
    transcript: Vec<Line<'a>>,
    new_messages: usize,
    time_zone: &'static str,
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
    sender: Sender,
    who: &'a str,
    body: Cow<'a, str>,
    /// Not covered by an earlier email.
    new: bool,
    /// The first new line, where the templates put their divider.
    first_new: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Field {
    pub name: String,
    pub value: String,
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
        let mut fields: Vec<Field> = Vec::new();
        for m in transcript.iter().filter(|m| m.sender == Sender::Visitor) {
            let Some(name) = m.field.as_deref() else { continue };
            let value = display_text(m.body.trim()).into_owned();
            match fields.iter_mut().find(|f| f.name == name) {
                Some(f) => f.value = value,
                None => fields.push(Field { name: name.to_owned(), value }),
            }
        }
        Visitor { fields }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|f| f.name == name).map(|f| f.value.as_str()).filter(|v| !v.is_empty())
    }

    fn name(&self) -> Option<String> {
        if let Some(name) = self.get("name").or_else(|| self.get("full_name")) {
            return Some(name.to_owned());
        }
        let parts: Vec<&str> = ["first_name", "last_name"].iter().filter_map(|f| self.get(f)).collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    }

    /// Who the subject names: the visitor's name, else their email, else "a visitor".
    fn display(&self) -> String {
        let shown = self.name().or_else(|| self.get("email").map(str::to_owned)).unwrap_or_default();
        let clean = thread::header_text(&shown, 60);
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
        let name = self.name().map(|n| thread::header_text(&n, 60)).filter(|n| !n.is_empty());
        Some(Mailbox::new(name, address))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn msg(id: i64, sender: Sender, field: Option<&str>, body: &str) -> Message {
        Message {
            id,
            sent_at: Utc.with_ymd_and_hms(2026, 11, 24, 9, id as u32, 0).unwrap(),
            sender,
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
            msg(1, Sender::Visitor, Some("email"), "typo@exmple"),
            msg(2, Sender::Visitor, Some("name"), " Jane Doe "),
            msg(3, Sender::Visitor, Some("email"), "jane@example.com"),
            msg(4, Sender::Bot, Some("name"), "ignored: the bot's own text"),
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
            let v = Visitor::from_transcript(&[msg(1, Sender::Visitor, Some("email"), bad)]);
            assert_eq!(v.reply_to(), None, "{bad:?}");
        }
        assert_eq!(Visitor::default().display(), "a visitor");
    }

    #[test]
    fn html_escapes_visitor_text_and_marks_new_messages() {
        let routing = routing("", None);
        let r = Renderer::new(&routing).unwrap();
        let t = [
            msg(1, Sender::Bot, None, "Your name?"),
            msg(2, Sender::Visitor, Some("name"), "<script>alert(1)</script>"),
            msg(3, Sender::Visitor, None, "back again & more"),
        ];
        let thread = Thread { subject: Some("S [#X]".into()), message_ids: vec!["<a@x>".into()] };
        let draft = Draft {
            conversation: &conversation(),
            transcript: &t,
            state: ChatState::Resumed,
            covered_before: 2,
            thread: &thread,
            now: Utc::now(),
            from: &"Notifier <n@example.com>".parse().unwrap(),
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
    fn display_text_keeps_lines_and_drops_controls() {
        assert_eq!(display_text("plain\ttext\n"), "plain\ttext\n");
        assert!(matches!(display_text("plain"), Cow::Borrowed(_)));
        assert_eq!(display_text("a\r\nb\rc\r\r"), "a\nb\nc\n\n");
        assert_eq!(
            display_text("nul\0 esc\u{1b}[31m bell\u{7} c1\u{85}"),
            "nul\u{FFFD} esc\u{FFFD}[31m bell\u{FFFD} c1\u{FFFD}"
        );
    }

    #[test]
    fn a_broken_custom_template_names_its_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("completed.txt"), "line one\n{% if %}\n").unwrap();
        let err = format!("{:#}", Renderer::new(&routing("", Some(dir.path()))).err().unwrap());
        assert!(err.contains("completed.txt"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        let err = format!("{:#}", Renderer::new(&routing("[notify]\nsubject = \"{{ oops\"", None)).err().unwrap());
        assert!(err.contains("notify.subject"), "{err}");
    }
}
