//! Text from a chat store is untrusted: a visitor (or a broken runtime) can put terminal
//! escapes, bare CRs, line breaks and invisible bidirectional controls anywhere, in a message
//! body, a bot's name, a field name, a step id or a page URL. Sources clean every string they
//! read with these functions, so every output (email, terminal, CSV, HTML) gets clean text from
//! one place; headers take a stricter, one-line form.

use std::borrow::Cow;

/// A message body: line breaks become plain newlines (a bare CR is forbidden in a message and
/// servers refuse it), tabs stay, other control characters and bidirectional overrides become
/// U+FFFD, so what was there stays visible without acting on a terminal.
pub fn body(s: &str) -> Cow<'_, str> {
    if printable_ascii(s, |b| b == b'\n' || b == b'\t')
        || !s.chars().any(|c| (c.is_control() && c != '\n' && c != '\t') || is_bidi_control(c))
    {
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
            c if c.is_control() || is_bidi_control(c) => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A one-line value (a name, a step id, a field name, a URL): line breaks and tabs become
/// spaces, other control characters and bidirectional overrides U+FFFD.
pub fn line(s: &str) -> Cow<'_, str> {
    if printable_ascii(s, |_| false) || !s.chars().any(|c| c.is_control() || is_bidi_control(c)) {
        return Cow::Borrowed(s);
    }
    s.chars()
        .map(|c| match c {
            '\r' | '\n' | '\t' => ' ',
            c if c.is_control() || is_bidi_control(c) => '\u{FFFD}',
            c => c,
        })
        .collect::<String>()
        .into()
}

/// Makes text fit for a header or a fixed-width column: every control or line-separating
/// character becomes a space (so no CR/LF can start a header of its own), runs of space fold
/// to one, and the result is cut to `max_chars` with an ellipsis.
pub fn header(s: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max_chars * 4));
    let mut chars = 0;
    let mut pending_space = false;
    for c in s.chars() {
        if c.is_whitespace() || c.is_control() || is_invisible_format(c) || c == '\u{FFFD}' {
            pending_space = true;
            continue;
        }
        if chars == max_chars {
            out.push('…');
            return out;
        }
        if pending_space && !out.is_empty() {
            out.push(' ');
            chars += 1;
            if chars == max_chars {
                out.push('…');
                return out;
            }
        }
        pending_space = false;
        out.push(c);
        chars += 1;
    }
    out
}

/// Text for a fixed-width terminal column: as `header` makes it, cut to `width` terminal cells
/// (an East Asian wide character or an emoji takes two) with an ellipsis, and padded with spaces
/// to exactly `width` cells, so the columns after it line up.
pub fn column(s: &str, width: usize) -> String {
    use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};
    let clean = header(s, width);
    let mut cells = clean.width();
    let mut out = if cells <= width {
        clean
    } else {
        let mut cut = String::with_capacity(clean.len());
        cells = 1;
        for c in clean.chars() {
            let w = c.width().unwrap_or(0);
            if cells + w > width {
                break;
            }
            cut.push(c);
            cells += w;
        }
        cut + "…"
    };
    out.extend(std::iter::repeat_n(' ', width.saturating_sub(cells)));
    out
}

/// A CSV cell (RFC 4180), safe to open in a spreadsheet: quoted when it must be, and a cell
/// that a spreadsheet would evaluate as a formula (`=`, `+`, `-`, `@`) starts with `'`.
pub fn csv_cell(s: &str) -> String {
    let s = line(s);
    let s = if s.starts_with(['=', '+', '-', '@']) { Cow::Owned(format!("'{s}")) } else { s };
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.into_owned() }
}

/// Bidirectional embeddings, overrides and isolates: they make text read as other text.
/// Whether `s` is printable ASCII but for the control bytes `allowed`: nothing to clean, found
/// without decoding a character (most text a chat holds; a report reads every message).
fn printable_ascii(s: &str, allowed: impl Fn(u8) -> bool) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b) || allowed(b))
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Zero-width and bidirectional controls: invisible, yet able to make a name read as another.
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}') || is_bidi_control(c)
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_column_is_as_wide_as_asked_in_terminal_cells() {
        for (text, width, expected) in [
            ("Ann Lee", 8, "Ann Lee "),
            ("Ann Lee and more", 8, "Ann Lee…"),
            ("王小明", 8, "王小明  "),
            ("王小明王小明", 8, "王小明… "),
            ("王小明王", 8, "王小明王"),
            ("🙂 Zoë", 8, "🙂 Zoë  "),
            ("a\u{1b}[31mred", 8, "a [31mr…"),
            ("", 3, "   "),
        ] {
            assert_eq!(column(text, width), expected, "{text:?}");
        }
    }

    use super::*;

    #[test]
    fn bodies_keep_lines_and_drop_controls() {
        assert_eq!(body("plain\ttext\n"), "plain\ttext\n");
        assert!(matches!(body("plain"), Cow::Borrowed(_)));
        assert_eq!(body("a\r\nb\rc\r\r"), "a\nb\nc\n\n");
        assert_eq!(
            body("nul\0 esc\u{1b}[31m bell\u{7} c1\u{85} rlo\u{202E}"),
            "nul\u{FFFD} esc\u{FFFD}[31m bell\u{FFFD} c1\u{FFFD} rlo\u{FFFD}"
        );
    }

    #[test]
    fn lines_have_no_breaks_and_no_escapes() {
        assert_eq!(line("Lead\u{1b}[2J Bot\r\nx\t"), "Lead\u{FFFD}[2J Bot  x ");
        assert!(matches!(line("Lead Bot"), Cow::Borrowed(_)));
    }

    #[test]
    fn header_text_cannot_break_a_header() {
        assert_eq!(header("Jane\r\nBcc: evil@example.com", 60), "Jane Bcc: evil@example.com");
        assert_eq!(header("  a \t\u{0}\u{202E}b  ", 60), "a b");
        assert_eq!(header("abcdef", 3), "abc…");
        assert_eq!(header("ab cd", 3), "ab …");
        assert_eq!(header("", 3), "");
    }

    #[test]
    fn csv_cells_quote_and_defuse_formulas() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("+1 555"), "'+1 555");
        assert_eq!(csv_cell("esc\u{1b}[31m"), "esc\u{FFFD}[31m");
    }
}
