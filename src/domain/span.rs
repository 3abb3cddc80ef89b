//! How long and how much: durations as an owner writes them (`90s`, `30m`, `7d`), and what one
//! email may carry of a chat.

use std::fmt;

use chrono::TimeDelta;
use serde::Deserialize;

/// A duration written as `90s`, `30m`, `24h`, `7d` or combined, `1h30m`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Span(pub TimeDelta);

impl Span {
    /// The longest duration accepted: longer ones are typos, and would overflow date arithmetic.
    pub const MAX_DAYS: i64 = 36_500;

    pub fn parse(s: &str) -> Option<Self> {
        let mut total = TimeDelta::zero();
        let mut digits = String::new();
        for c in s.trim().chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let n: i64 = digits.parse().ok()?;
            digits.clear();
            let part = match c {
                's' => TimeDelta::try_seconds(n)?,
                'm' => TimeDelta::try_minutes(n)?,
                'h' => TimeDelta::try_hours(n)?,
                'd' => TimeDelta::try_days(n)?,
                'w' => TimeDelta::try_weeks(n)?,
                _ => return None,
            };
            total = total.checked_add(&part)?;
        }
        (digits.is_empty() && total > TimeDelta::zero() && total <= TimeDelta::days(Self::MAX_DAYS))
            .then_some(Span(total))
    }
}

impl fmt::Debug for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.0.num_seconds())
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Span::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid duration {s:?}: write it like \"90s\", \"30m\", \"24h\", \"7d\" (at most {}d)",
                Span::MAX_DAYS
            ))
        })
    }
}

/// What one email may carry of a transcript, so that its cost is bounded whatever the chat's
/// length: a chat of 200,000 messages still makes an email of a few hundred kilobytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Messages shown: the first few (how the chat began) and the latest.
    pub messages: usize,
    /// Characters shown of one message; the rest is cut with a note.
    pub message_chars: usize,
    /// Bytes of message text one email shows, counted from the latest message back.
    pub transcript_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { messages: 200, message_chars: 4_000, transcript_bytes: 256 * 1024 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans() {
        assert_eq!(Span::parse("90s"), Some(Span(TimeDelta::seconds(90))));
        assert_eq!(Span::parse("1h30m"), Some(Span(TimeDelta::minutes(90))));
        assert_eq!(Span::parse("7d"), Some(Span(TimeDelta::days(7))));
        for bad in ["", "30", "m", "0m", "5x", "-5m", "99999999999999999999d", "100000000d", "36501d"] {
            assert_eq!(Span::parse(bad), None, "{bad}");
        }
    }
}
