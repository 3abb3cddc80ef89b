//! A bot's markdown (an LLM's answer: tables, lists, emphasis, code, quotes, links) as HTML for
//! an email's HTML part. The markdown comes from the store, so from whoever talked the bot into
//! writing it: nothing in it reaches the email as markup of its own. Raw HTML is shown as text;
//! a link goes out only to http, https or mailto (any other is its text alone); an image is
//! never loaded (remote images in notification mail are tracking, and get blocked): its alt text,
//! linked when its address is http(s); headings are made small enough for an email; nesting is
//! cut at a depth a mail client shows well; and what would be far larger than the markdown (a
//! table of a thousand empty cells) is left to the plain-text rendering. The text part keeps
//! the markdown as written.

use pulldown_cmark::{Alignment, Event, HeadingLevel, Options, Parser, Tag, TagEnd};

/// Tags open at once beyond which further ones are left out (their text stays).
const MAX_DEPTH: usize = 12;
/// The HTML may be this many times the markdown's bytes (plus `SLACK`): styled table cells are
/// the largest construct per byte written. Past it, the body is shown as plain text.
const GROWTH: usize = 12;
const SLACK: usize = 4096;

const BORDER: &str = "border: 1px solid #d0d7de; padding: 2px 6px;";

/// The HTML of `markdown`, or none where it would be empty or out of proportion (the caller
/// shows the text as it is).
pub fn to_html(markdown: &str) -> Option<String> {
    let options = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    let limit = markdown.len().saturating_mul(GROWTH).saturating_add(SLACK);
    let mut w = Writer { out: String::with_capacity(markdown.len() * 2), stack: Vec::new(), ..Writer::default() };
    for event in Parser::new_ext(markdown, options) {
        w.event(event);
        if w.out.len() > limit {
            return None;
        }
    }
    // Everything opened is closed by the parser's own end events; a stray one is closed here.
    while let Some(close) = w.stack.pop() {
        w.out.push_str(close.unwrap_or(""));
    }
    Some(w.out.trim_end().to_owned()).filter(|html| !html.is_empty())
}

#[derive(Default)]
struct Writer {
    out: String,
    /// What closes each open tag: none for one left out.
    stack: Vec<Option<&'static str>>,
    /// Inside an image: its alt text only.
    image: usize,
    /// Inside a link written as one: no link within it.
    link: usize,
    /// The open table's alignments, and the column reached.
    align: Vec<Alignment>,
    column: usize,
    in_head: bool,
}

impl Writer {
    fn event(&mut self, event: Event) {
        match event {
            Event::Start(tag) => self.start(tag),
            Event::End(tag) => self.end(tag),
            Event::Text(t) | Event::Code(t) if self.image > 0 => escape(&mut self.out, &t),
            Event::Text(t) => escape(&mut self.out, &t),
            Event::Code(t) => {
                self.out.push_str("<code style=\"background: #eff1f3; padding: 0 3px; font-size: 90%;\">");
                escape(&mut self.out, &t);
                self.out.push_str("</code>");
            }
            // Raw HTML, inline or a block of it, and anything this writer does not draw: as text.
            Event::Html(t)
            | Event::InlineHtml(t)
            | Event::InlineMath(t)
            | Event::DisplayMath(t)
            | Event::FootnoteReference(t) => escape(&mut self.out, &t),
            Event::SoftBreak => self.out.push('\n'),
            Event::HardBreak if self.image == 0 => self.out.push_str("<br>\n"),
            Event::HardBreak => self.out.push(' '),
            Event::Rule if self.image == 0 => {
                self.out.push_str("<hr style=\"border: 0; border-top: 1px solid #d0d7de;\">\n")
            }
            Event::Rule => {}
            Event::TaskListMarker(done) => self.out.push_str(if done { "\u{2611} " } else { "\u{2610} " }),
        }
    }

    /// Opens `open` unless the tags are too deep already; remembers `close` (or that it was left
    /// out). `children` tags must open inside it for it to be whole (a table's row and cell).
    fn open(&mut self, open: &str, close: &'static str, children: usize) -> bool {
        let fits = self.image == 0 && self.stack.len() + children < MAX_DEPTH;
        self.push(fits, open, close)
    }

    /// A table's or a list's own part: written exactly when its container was.
    fn part(&mut self, open: &str, close: &'static str) -> bool {
        let container = self.stack.last().copied().flatten().is_some();
        self.push(container && self.image == 0, open, close)
    }

    fn push(&mut self, write: bool, open: &str, close: &'static str) -> bool {
        if write {
            self.out.push_str(open);
        }
        self.stack.push(write.then_some(close));
        write
    }

    fn start(&mut self, tag: Tag) {
        match tag {
            Tag::Paragraph => _ = self.open("<p style=\"margin: 0 0 6px;\">", "</p>\n", 0),
            Tag::Heading { level, .. } => {
                // An answer's `# Title` is a line of the transcript, not the email's headline.
                let (h, size) = match level {
                    HeadingLevel::H1 => ("h4", 15),
                    HeadingLevel::H2 => ("h5", 14),
                    _ => ("h6", 13),
                };
                let open = format!("<{h} style=\"font-size: {size}px; margin: 8px 0 4px;\">");
                let close = match h {
                    "h4" => "</h4>\n",
                    "h5" => "</h5>\n",
                    _ => "</h6>\n",
                };
                self.open(&open, close, 0);
            }
            Tag::BlockQuote(_) => {
                let open = "<blockquote style=\"margin: 0 0 6px; padding: 0 8px; border-left: 3px solid #d0d7de; \
                            color: #59636e;\">\n";
                self.open(open, "</blockquote>\n", 0);
            }
            Tag::CodeBlock(_) => {
                let open = "<pre style=\"margin: 0 0 6px; padding: 6px; background: #f6f8fa; white-space: pre-wrap; \
                            font-size: 12px;\"><code>";
                self.open(open, "</code></pre>\n", 0);
            }
            Tag::HtmlBlock => _ = self.open("<p style=\"margin: 0 0 6px; white-space: pre-wrap;\">", "</p>\n", 0),
            Tag::List(Some(1)) => _ = self.open("<ol style=\"margin: 0 0 6px; padding-left: 20px;\">\n", "</ol>\n", 1),
            Tag::List(Some(start)) => {
                let open = format!("<ol start=\"{start}\" style=\"margin: 0 0 6px; padding-left: 20px;\">\n");
                self.open(&open, "</ol>\n", 1);
            }
            Tag::List(None) => _ = self.open("<ul style=\"margin: 0 0 6px; padding-left: 20px;\">\n", "</ul>\n", 1),
            Tag::Item => _ = self.part("<li>", "</li>\n"),
            Tag::Table(align) => {
                let open = "<table style=\"border-collapse: collapse; margin: 0 0 6px;\">\n";
                if self.open(open, "</tbody></table>\n", 2) {
                    self.align = align;
                }
            }
            Tag::TableHead => {
                self.in_head = true;
                self.column = 0;
                self.part("<thead><tr>", "</tr></thead><tbody>\n");
            }
            Tag::TableRow => {
                self.column = 0;
                self.part("<tr>", "</tr>\n");
            }
            Tag::TableCell => {
                let align = match self.align.get(self.column) {
                    Some(Alignment::Center) => " text-align: center;",
                    Some(Alignment::Right) => " text-align: right;",
                    _ => " text-align: left;",
                };
                self.column += 1;
                let (open, close) = if self.in_head {
                    (format!("<th style=\"{BORDER}{align}\">"), "</th>")
                } else {
                    (format!("<td style=\"{BORDER}{align}\">"), "</td>")
                };
                if !self.part(&open, close) {
                    self.out.push(' ');
                }
            }
            Tag::Emphasis => _ = self.open("<em>", "</em>", 0),
            Tag::Strong => _ = self.open("<strong>", "</strong>", 0),
            Tag::Strikethrough => _ = self.open("<del>", "</del>", 0),
            Tag::Superscript => _ = self.open("<sup>", "</sup>", 0),
            Tag::Subscript => _ = self.open("<sub>", "</sub>", 0),
            Tag::Link { dest_url, .. } => match safe_url(&dest_url).filter(|_| self.link == 0) {
                Some(url) => {
                    let mut open = String::from("<a href=\"");
                    escape(&mut open, url);
                    open.push_str("\" rel=\"noreferrer\" style=\"color: #0969da;\">");
                    if self.open(&open, "</a>", 0) {
                        self.link += 1;
                    }
                }
                None => self.stack.push(None),
            },
            Tag::Image { dest_url, .. } => {
                // Never an <img>: linked (where it may be) so the owner can choose to look.
                let linked = safe_url(&dest_url).filter(|u| !u.starts_with("mailto:") && self.link == 0);
                let mut open = String::new();
                if let Some(url) = linked {
                    open.push_str("<a href=\"");
                    escape(&mut open, url);
                    open.push_str("\" rel=\"noreferrer\" style=\"color: #0969da;\">");
                }
                open.push_str("[image: ");
                let close = if linked.is_some() { "]</a>" } else { "]" };
                // Written whatever the depth: it is text, with at most one link.
                self.out.push_str(if self.image == 0 { &open } else { "" });
                self.stack.push((self.image == 0).then_some(close));
                if linked.is_some() && self.image == 0 {
                    self.link += 1;
                }
                self.image += 1;
            }
            Tag::FootnoteDefinition(_)
            | Tag::DefinitionList
            | Tag::DefinitionListTitle
            | Tag::DefinitionListDefinition
            | Tag::MetadataBlock(_) => _ = self.open("<div>", "</div>\n", 0),
        }
    }

    fn end(&mut self, tag: TagEnd) {
        let close = self.stack.pop().flatten();
        match tag {
            TagEnd::Image => {
                self.image = self.image.saturating_sub(1);
                if close.is_some_and(|c| c.ends_with("</a>")) {
                    self.link = self.link.saturating_sub(1);
                }
            }
            TagEnd::Link if close.is_some() => self.link = self.link.saturating_sub(1),
            TagEnd::TableHead => self.in_head = false,
            _ => {}
        }
        match close {
            Some(close) => self.out.push_str(close),
            // A block left out still ends its words.
            None if matches!(
                tag,
                TagEnd::Paragraph
                    | TagEnd::Heading(_)
                    | TagEnd::Item
                    | TagEnd::TableRow
                    | TagEnd::TableHead
                    | TagEnd::CodeBlock
                    | TagEnd::BlockQuote(_)
            ) =>
            {
                self.out.push('\n')
            }
            None => {}
        }
    }
}

/// The address when a link may go there: http, https or mailto; anything else (`javascript:`,
/// `data:`, `file:`, a relative path that would resolve against the mail client) is no link.
fn safe_url(url: &str) -> Option<&str> {
    let url = url.trim();
    let (scheme, _) = url.split_once(':')?;
    ["http", "https", "mailto"].iter().any(|s| scheme.eq_ignore_ascii_case(s)).then_some(url)
}

/// HTML-escapes `s` for text and for a double-quoted attribute.
fn escape(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn html(md: &str) -> String {
        to_html(md).expect("within the size limit")
    }

    #[test]
    fn the_usual_answer_reads_as_in_the_chat() {
        let md = "## Plans\n\n| Plan | Price |\n|:--|--:|\n| Basic | $10 |\n| **Pro** | $30 |\n\n\
                  - one\n- two with `code`\n\n1. first\n2. *second*\n\n> quoted\n\n```\nlet x = 1;\n```\n\n\
                  See [pricing](https://example.com/pricing) or ~~call~~ [mail us](mailto:sales@example.com).";
        let h = html(md);
        assert!(h.starts_with("<h5 style=\"font-size: 14px; margin: 8px 0 4px;\">Plans</h5>"), "{h}");
        assert!(h.contains("<th style=\"border: 1px solid #d0d7de; padding: 2px 6px; text-align: left;\">Plan</th>"));
        assert!(h.contains("text-align: right;\">$30</td>"), "{h}");
        assert!(h.contains("<strong>Pro</strong>"));
        assert!(h.contains("<li>two with <code"));
        assert!(h.contains("<em>second</em>"));
        assert!(h.contains("quoted</p>\n</blockquote>"));
        assert!(h.contains("<code>let x = 1;\n</code></pre>"));
        assert!(h.contains(
            "<a href=\"https://example.com/pricing\" rel=\"noreferrer\" style=\"color: #0969da;\">pricing</a>"
        ));
        assert!(h.contains("<a href=\"mailto:sales@example.com\""));
        assert!(h.contains("<del>call</del>"));
    }

    #[test]
    fn hostile_markdown_is_shown_never_run_nor_loaded() {
        let cases = [
            ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
            ("hi <img src=x onerror=alert(1)> there", "hi &lt;img src=x onerror=alert(1)&gt; there"),
            ("<div onclick=\"x()\">\nblock\n</div>", "&lt;div onclick=&quot;x()&quot;&gt;"),
            ("[click](javascript:alert(1))", "<p style=\"margin: 0 0 6px;\">click</p>"),
            ("[click](JavaScript:alert(1))", "<p style=\"margin: 0 0 6px;\">click</p>"),
            ("[x](data:text/html;base64,PHNjcmlwdD4=)", "<p style=\"margin: 0 0 6px;\">x</p>"),
            ("[x](/relative)", "<p style=\"margin: 0 0 6px;\">x</p>"),
            ("![pixel](https://tracker.example/p.gif)", "<a href=\"https://tracker.example/p.gif\""),
            ("![x](javascript:alert(1))", "<p style=\"margin: 0 0 6px;\">[image: x]</p>"),
            ("[a](https://e.example/\"onmouseover=\"x)", "href=\"https://e.example/&quot;onmouseover=&quot;x\""),
            ("<https://example.com/a>", "<a href=\"https://example.com/a\""),
        ];
        for (md, expected) in cases {
            let h = html(md);
            assert!(h.contains(expected), "{md:?} gave {h:?}");
            assert!(!h.contains("<img") && !h.contains("<script") && !h.contains("<div"), "{md:?} gave {h:?}");
            assert!(!h.to_lowercase().contains("href=\"javascript") && !h.contains("href=\"data"), "{md:?} gave {h:?}");
        }
        // A badge: an image inside a link is its alt text inside that one link.
        let h = html("[![build](https://ci.example/b.svg)](https://ci.example)");
        assert_eq!(h.matches("<a ").count(), 1, "{h}");
        assert!(h.contains("[image: build]</a>"), "{h}");
    }

    #[test]
    fn deep_nesting_is_cut_and_every_tag_closed() {
        for md in [">".repeat(3000) + " deep", "- ".repeat(1500) + "deep", "*".repeat(2000) + "x" + &"*".repeat(2000)] {
            let h = to_html(&md).unwrap_or_default();
            for tag in ["blockquote", "ul", "li", "em", "strong", "p"] {
                assert_eq!(h.matches(&format!("<{tag}")).count(), h.matches(&format!("</{tag}>")).count(), "{tag}");
                assert!(h.matches(&format!("<{tag}")).count() <= MAX_DEPTH, "{tag} nested past the limit");
            }
        }
        let h = html(&(">".repeat(3000) + " deep"));
        assert!(h.contains("deep"));
    }

    #[test]
    fn a_huge_table_is_left_to_the_plain_text() {
        let row = "|a".repeat(300) + "|\n";
        let md = row.clone() + &"|-".repeat(300) + "|\n" + &row.repeat(10);
        assert_eq!(to_html(&md), None);
        // A table as an answer writes it, however wide.
        let md =
            "| Plan | Seats | Price |\n|---|---|---|\n".to_owned() + &"| Team plan | 25 | $120 a month |\n".repeat(40);
        let h = html(&md);
        assert_eq!(h.matches("<tr>").count(), 41);
    }
}
