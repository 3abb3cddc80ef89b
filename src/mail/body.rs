//! The text and HTML parts as they go on the wire: CRLF line endings and a transfer encoding
//! that keeps every line within 76 characters. lettre chooses and encodes the same way, but in
//! three passes over the body (its own CRLF check, the choice, then a quoted-printable encoder
//! that works a character at a time): that was most of an email's cost. Here one pass writes
//! quoted-printable and counts what it escaped, and the choice follows from the count.

use base64::Engine as _;
use lettre::message::Body;
use lettre::message::header::ContentTransferEncoding;

/// Quoted-printable and base64 lines, the soft break's "=" included (RFC 2045 6.7, 6.8).
const LINE: usize = 76;

/// `text` as a part's body: 7bit when it is short-lined ASCII, quoted-printable when no more
/// than a third of its bytes need escaping (lettre's threshold, though lettre also counts line
/// breaks), base64 otherwise (a transcript in Japanese or Greek). Quoted-printable is written
/// first: it counts what it escapes as it goes.
pub fn encode(text: &str) -> Body {
    let (encoded, escaped) = quoted_printable(text);
    let longest = text.split('\n').map(str::len).max().unwrap_or(0);
    if escaped == 0 && longest < LINE {
        Body::dangerous_pre_encoded(crlf(text).into_bytes(), ContentTransferEncoding::SevenBit)
    } else if escaped <= text.len() / 3 {
        Body::dangerous_pre_encoded(encoded, ContentTransferEncoding::QuotedPrintable)
    } else {
        Body::dangerous_pre_encoded(base64(&crlf(text)), ContentTransferEncoding::Base64)
    }
}

/// A byte quoted-printable writes as "=XX" (a space or tab only at a line's end).
#[inline(always)]
fn needs_escape(b: u8) -> bool {
    (b < b' ' && b != b'\t') | (b == b'=') | (b > b'~')
}

/// RFC 2045 6.8: base64 in lines of 76.
fn base64(text: &str) -> Vec<u8> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(text);
    let mut out = Vec::with_capacity(encoded.len() + encoded.len() / LINE * 2);
    for (n, line) in encoded.as_bytes().chunks(LINE).enumerate() {
        if n > 0 {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(line);
    }
    out
}

/// Text with every line ending CRLF.
fn crlf(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 32);
    let mut lines = text.split('\n');
    if let Some(first) = lines.next() {
        out.push_str(first);
    }
    for line in lines {
        out.push_str(if out.ends_with('\r') { "\n" } else { "\r\n" });
        out.push_str(line);
    }
    out
}

/// RFC 2045 6.7: line breaks as CRLF, printable ASCII as it is, space and tab as they are
/// except at a line's end, everything else (other bytes of UTF-8 included) as "=XX", and a
/// soft break ("=" CRLF) before a line would pass 76 characters. Also says how many bytes
/// 7bit could not carry either (those escaped but "=" and a line's last space or tab).
fn quoted_printable(text: &str) -> (Vec<u8>, usize) {
    let mut out = Vec::with_capacity(text.len() + text.len() / 8);
    let mut escaped = 0;
    for (n, line) in text.split('\n').enumerate() {
        if n > 0 {
            out.extend_from_slice(b"\r\n");
        }
        let line = line.strip_suffix('\r').unwrap_or(line).as_bytes();
        // A space or tab ending the line is escaped: transports may strip it.
        let (rest, last) = match line.split_last() {
            Some((&b, body)) if b == b' ' || b == b'\t' => (body, Some(b)),
            _ => (line, None),
        };
        let mut encoded = Encoded { buf: [0; LINE + 2], len: 0 };
        for &b in rest {
            let escape = needs_escape(b);
            escaped += usize::from(escape & (b != b'='));
            encoded.put(&mut out, b, escape);
        }
        if let Some(b) = last {
            encoded.put(&mut out, b, true);
        }
        out.extend_from_slice(&encoded.buf[..encoded.len]);
    }
    (out, escaped)
}

/// One line of output being written: bytes go to a buffer on the stack, and to the output a
/// line at a time (a byte at a time into the Vec cost twice as much).
struct Encoded {
    /// At most 75 characters and a soft break's "=" CRLF.
    buf: [u8; LINE + 2],
    len: usize,
}

impl Encoded {
    #[inline(always)]
    fn put(&mut self, out: &mut Vec<u8>, b: u8, escape: bool) {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let width = if escape { 3 } else { 1 };
        // Room for it and for the "=" of a soft break after it, or a soft break first.
        if self.len + width > LINE - 1 {
            self.buf[self.len..self.len + 3].copy_from_slice(b"=\r\n");
            out.extend_from_slice(&self.buf[..self.len + 3]);
            self.len = 0;
        }
        if escape {
            self.buf[self.len..self.len + 3].copy_from_slice(&[
                b'=',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 15)],
            ]);
        } else {
            self.buf[self.len] = b;
        }
        self.len += width;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The part as a client reads it: the message parsed back by another library.
    fn read_back(text: &str) -> (String, String) {
        let body = encode(text);
        let encoding = format!("{:?}", body.encoding());
        let message = lettre::Message::builder()
            .from("a@example.com".parse().unwrap())
            .to("b@example.com".parse().unwrap())
            .subject("s")
            .multipart(lettre::message::MultiPart::alternative().singlepart(lettre::message::SinglePart::plain(body)))
            .unwrap()
            .formatted();
        for line in message.split(|b| *b == b'\n') {
            assert!(line.len() <= 78, "a line of {} bytes: {:?}", line.len(), String::from_utf8_lossy(line));
        }
        let parsed = mail_parser::MessageParser::default().parse(&message).unwrap();
        (parsed.body_text(0).unwrap().into_owned(), encoding)
    }

    #[test]
    fn each_kind_of_text_gets_its_encoding() {
        assert_eq!(read_back("Hi\nthere").1, "SevenBit");
        assert_eq!(read_back(&"x".repeat(80)).1, "QuotedPrintable");
        assert_eq!(read_back("Grüße, Jane").1, "QuotedPrintable");
        assert_eq!(read_back("こんにちは、お元気ですか").1, "Base64");
        assert_eq!(crlf("a\nb\r\nc\n"), "a\r\nb\r\nc\r\n");
        // A space ending a line, and an "=", are escaped; a long line is broken softly.
        assert_eq!(quoted_printable("a \nb=c"), (b"a=20\r\nb=3Dc".to_vec(), 0));
        let long = String::from_utf8(quoted_printable(&"y".repeat(100)).0).unwrap();
        assert_eq!(long, format!("{}=\r\n{}", "y".repeat(75), "y".repeat(25)));
    }

    proptest! {
        #[test]
        fn any_text_reads_back_as_written(
            text in "([a-z =\\t.<>]{0,90}|[\\u{e9}\\u{3042}\\u{1F600}]{0,30}|\\r|\\n){0,12}",
        ) {
            let (read, _) = read_back(&text);
            // Line endings are CRLF on the wire; a client gives them back either way (and
            // drops a lone CR that ends the part: nothing shows it).
            let lf = |s: &str| s.replace("\r\n", "\n").trim_end_matches('\r').to_owned();
            prop_assert_eq!(lf(&read), lf(&text));
        }
    }
}
