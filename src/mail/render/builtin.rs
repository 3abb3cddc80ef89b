//! The built-in templates (`templates/*.txt`, `*.html`) written out in Rust, for the template
//! sets that keep them: minijinja interpreting them was most of an email's cost (the view
//! converted to values, every lookup and loop step run by its VM, twice per email). The
//! template files stay what the owner reads and copies to change an email; the test
//! `the_built_in_templates_and_their_rust_agree` renders both on generated views and asks for
//! the same bytes, so the two cannot drift apart. A set with any of its own files for a part
//! (its base or the state's template) renders that part through minijinja as before.

use std::fmt::Write as _;

use minijinja::HtmlEscape;

use super::View;
use crate::domain::ChatState;

/// How a value from the view is written: as it is (text part) or HTML-escaped the way
/// minijinja's auto-escaping does it (HTML part).
type Put = fn(&mut String, &str);

fn plain(out: &mut String, s: &str) {
    out.push_str(s);
}

fn escaped(out: &mut String, s: &str) {
    // Writing to a String cannot fail.
    let _ = write!(out, "{}", HtmlEscape(s));
}

/// A template's `{% if x %}` for an optional string: present and not empty.
fn given(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

/// `{% block headline %}` of `{state}.txt` and `{state}.html`.
fn headline(out: &mut String, v: &View, state: ChatState, put: Put) {
    put(out, &v.visitor.display);
    let at_step = |out: &mut String| {
        if let Some(step) = given(v.step) {
            out.push_str(", at step ");
            put(out, step);
        }
        if let Some(question) = given(v.question.as_deref()) {
            out.push_str(" (\"");
            put(out, question);
            out.push_str("\")");
        }
    };
    match state {
        ChatState::Completed => {
            out.push_str(if v.came_back {
                " came back and finished the chat with "
            } else {
                " finished the chat with "
            });
            put(out, v.bot.name);
            out.push('.');
        }
        ChatState::Abandoned => {
            out.push_str(" left the chat with ");
            put(out, v.bot.name);
            out.push_str(" midway");
            at_step(out);
            out.push('.');
        }
        ChatState::Ended => {
            // Not "left midway": an LLM chat has no midway, and the visitor may come back.
            out.push_str(" chatted with ");
            put(out, v.bot.name);
            out.push_str("; the chat has gone quiet.");
        }
        ChatState::Resumed => {
            out.push_str(" came back to the chat with ");
            put(out, v.bot.name);
            out.push_str(" and left again");
            at_step(out);
            let _ = write!(out, ". {} new message{}.", v.new_messages, if v.new_messages == 1 { "" } else { "s" });
        }
    }
}

/// What `{state}.txt` extending `base.txt` renders.
pub(super) fn text(v: &View, state: ChatState) -> String {
    let mut out = String::with_capacity(1024 + v.transcript.iter().map(|m| m.body.len() + 48).sum::<usize>());
    let o = &mut out;
    headline(o, v, state, plain);
    o.push_str("\n\n");
    if !v.visitor.fields.is_empty() || !v.person.fields.is_empty() {
        o.push_str("What they told the bot:\n");
        for f in v.visitor.fields {
            let _ = writeln!(o, "  {}: {}", f.name, f.value);
        }
        for f in &v.person.fields {
            let _ = writeln!(o, "  {}: {} (in an earlier chat, #{}, {})", f.name, f.value, f.identifier, f.date);
        }
        o.push('\n');
    }
    if v.person.known_before {
        let _ = writeln!(o, "{} chatted before:", v.visitor.display);
        for c in &v.person.conversations {
            let _ = writeln!(o, "  #{}, {}, {} on {}", c.identifier, c.bot, c.state, c.date);
        }
        if v.person.more > 0 {
            let _ = writeln!(o, "  and {} more", v.person.more);
        }
        o.push('\n');
    }
    let _ = writeln!(o, "Bot: {}", v.bot.name);
    if let Some(started) = given(v.conversation.started_at.as_deref()) {
        let _ = write!(o, "Chat started: {started}");
        if let Some(url) = given(v.conversation.page_url) {
            let _ = write!(o, " on {url}");
        }
        o.push('\n');
    }
    let _ = write!(o, "Reference: #{}\n\nTranscript (times in {}):\n", v.conversation.identifier, v.time_zone);
    for m in &v.transcript {
        if m.skipped_before > 0 {
            let _ = writeln!(o, "[... {} earlier messages not shown ...]", m.skipped_before);
        }
        if m.first_new {
            o.push_str("--- new since the last email ---\n");
        }
        let _ = writeln!(o, "[{}] {}: {}", m.at, m.who, m.body);
    }
    o.push_str("\n--\nSent by chat-notifier.");
    if let Some(reply_to) = given(v.visitor.reply_to.as_deref()) {
        let _ = write!(o, " Reply to write to {reply_to}.");
    }
    out
}

/// What `{state}.html` extending `base.html` renders.
pub(super) fn html(v: &View, state: ChatState) -> String {
    let mut out = String::with_capacity(4096 + v.transcript.iter().map(|m| m.body.len() + 400).sum::<usize>());
    let o = &mut out;
    let e = escaped;
    o.push_str("<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>");
    e(o, v.subject);
    o.push_str(
        "</title>\n</head>\n<body style=\"font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; \
         color: #1f2328; max-width: 640px;\">\n<p style=\"font-size: 16px;\">",
    );
    headline(o, v, state, escaped);
    o.push_str("</p>\n");
    let th = "<tr><th style=\"text-align: left; padding: 2px 12px 2px 0; color: #59636e;\">";
    if !v.visitor.fields.is_empty() || !v.person.fields.is_empty() {
        o.push_str("<table style=\"border-collapse: collapse; margin: 12px 0;\">\n");
        for f in v.visitor.fields {
            o.push_str(th);
            e(o, &f.name);
            o.push_str("</th><td style=\"padding: 2px 0;\">");
            e(o, &f.value);
            o.push_str("</td></tr>\n");
        }
        for f in &v.person.fields {
            o.push_str(th);
            e(o, f.name);
            o.push_str("</th><td style=\"padding: 2px 0;\">");
            e(o, &f.value);
            o.push_str(" <span style=\"color: #59636e; font-size: 12px;\">(in an earlier chat, #");
            e(o, f.identifier);
            o.push_str(", ");
            e(o, &f.date);
            o.push_str(")</span></td></tr>\n");
        }
        o.push_str("</table>\n");
    }
    if v.person.known_before {
        o.push_str("<p style=\"margin: 12px 0 4px;\">");
        e(o, &v.visitor.display);
        o.push_str(" chatted before:</p>\n<ul style=\"margin: 0 0 12px; padding-left: 20px; color: #1f2328;\">\n");
        for c in &v.person.conversations {
            o.push_str("<li>#");
            e(o, c.identifier);
            o.push_str(", ");
            e(o, c.bot);
            o.push_str(", ");
            e(o, c.state);
            o.push_str(" on ");
            e(o, &c.date);
            o.push_str("</li>\n");
        }
        if v.person.more > 0 {
            let _ = writeln!(o, "<li>and {} more</li>", v.person.more);
        }
        o.push_str("</ul>\n");
    }
    o.push_str("<p style=\"color: #59636e; font-size: 13px;\">\nBot: ");
    e(o, v.bot.name);
    o.push_str("<br>\n");
    if let Some(started) = given(v.conversation.started_at.as_deref()) {
        o.push_str("Chat started: ");
        e(o, started);
        if let Some(url) = given(v.conversation.page_url) {
            o.push_str(" on ");
            e(o, url);
        }
        o.push_str("<br>\n");
    }
    o.push_str("Reference: #");
    e(o, v.conversation.identifier);
    o.push_str(
        "\n</p>\n<h3 style=\"font-size: 14px; margin-bottom: 4px;\">Transcript <span style=\"font-weight: normal; \
         color: #59636e;\">(times in ",
    );
    e(o, v.time_zone);
    o.push_str(")</span></h3>\n<table style=\"border-collapse: collapse; width: 100%;\">\n");
    for m in &v.transcript {
        if m.skipped_before > 0 {
            let _ = writeln!(
                o,
                "<tr><td colspan=\"3\" style=\"padding: 6px 0; color: #59636e; font-size: 13px; font-style: italic;\">{} \
                 earlier messages not shown</td></tr>",
                m.skipped_before
            );
        }
        if m.first_new {
            o.push_str(
                "<tr><td colspan=\"3\" style=\"padding: 8px 0 4px; color: #9a6700; font-size: 13px; border-top: 2px \
                 solid #d4a72c;\">New since the last email</td></tr>\n",
            );
        }
        o.push_str("<tr style=\"vertical-align: top;");
        if m.new {
            o.push_str(" background: #fff8c5;");
        }
        o.push_str("\">\n<td style=\"padding: 3px 8px 3px 0; color: #59636e; white-space: nowrap; font-size: 13px;\">");
        e(o, &m.at);
        o.push_str("</td>\n<td style=\"padding: 3px 8px 3px 0; font-weight: 600; white-space: nowrap;\">");
        e(o, m.who);
        match &m.body_html {
            Some(html) => {
                o.push_str("</td>\n<td style=\"padding: 3px 0;\">");
                o.push_str(html);
            }
            None => {
                o.push_str("</td>\n<td style=\"padding: 3px 0; white-space: pre-wrap;\">");
                e(o, &m.body);
            }
        }
        o.push_str("</td>\n</tr>\n");
    }
    o.push_str("</table>\n<p style=\"color: #59636e; font-size: 12px; margin-top: 16px;\">Sent by chat-notifier.");
    if let Some(reply_to) = given(v.visitor.reply_to.as_deref()) {
        o.push_str(" Reply to write to ");
        e(o, reply_to);
        o.push('.');
    }
    o.push_str("</p>\n</body>\n</html>");
    out
}
