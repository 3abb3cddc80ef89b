//! A chat as a run reads it: what an email, a rule, a digest or a person's record can use of
//! it, in memory bounded by what an email shows, never by the chat's length. Sources hand over
//! messages one at a time (`source::read_transcripts`) and `Reader` keeps what is needed: one chat
//! of 200,000 messages held as a `Vec<Message>` took a run to 67 MB.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use super::{Author, Message};

/// How many of a chat's first lines a long transcript keeps: how the chat began.
pub const HEAD: usize = 3;

/// A chat's messages as far as anything shows or judges them, with counts of the whole chat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transcript {
    /// In the chat's order: the first `HEAD` lines, the latest lines (as many as the reader
    /// was asked to keep), the last message, the last of the bot's, of its questions and of
    /// the flow's ends, and for each field the messages that first and last gave it (blank or
    /// not). Whatever reads messages for a field, a step or the latest line finds here what it
    /// would find in the whole chat.
    pub messages: Vec<Message>,
    /// The last message an earlier email covered (0 for none): later ones are new.
    pub since: i64,
    /// Lines (`Message::is_shown`) in the whole chat.
    pub lines: usize,
    /// The visitor's messages in the whole chat.
    pub visitor_messages: usize,
    /// Messages after `since` in the whole chat.
    pub new_messages: usize,
    /// The visitor's messages after `since` in the whole chat: whether they came back.
    pub new_visitor_messages: usize,
    /// The latest `sent_at` in the whole chat.
    pub last_activity: Option<DateTime<Utc>>,
}

/// A request for one conversation's transcript.
#[derive(Debug, Clone, Copy)]
pub struct Wanted<'a> {
    pub id: &'a str,
    /// The last message an earlier email covered: see `Transcript::since`.
    pub since: i64,
    /// The last message to read: one written since must not slip into an email that does not
    /// cover it.
    pub through: i64,
}

impl Transcript {
    /// Every message kept, for a chat at hand (tests, samples).
    pub fn of(messages: impl IntoIterator<Item = Message>, since: i64) -> Transcript {
        let mut reader = Reader::new(since, usize::MAX);
        messages.into_iter().for_each(|m| reader.push(m));
        reader.finish()
    }
}

/// Builds a `Transcript` from a chat's messages in order, holding at most `HEAD` + `lines` lines
/// and a few messages per field however many it is handed.
pub struct Reader {
    since: i64,
    lines: usize,
    /// Messages handed over so far; a message's number is its place in the chat.
    seen: usize,
    head: Vec<(usize, Message)>,
    tail: std::collections::VecDeque<(usize, Message)>,
    /// Messages out of the head and the tail that a mark below still names.
    kept: BTreeMap<usize, Message>,
    /// How many marks name each message.
    named: HashMap<usize, u8>,
    marks: Marks,
    counts: Transcript,
}

/// The messages each reader of a transcript looks for, by number.
#[derive(Default)]
struct Marks {
    last: Option<usize>,
    last_bot: Option<usize>,
    /// The bot's last message that is not the flow's end: the question a visitor left at.
    last_question: Option<usize>,
    last_end: Option<usize>,
    /// Per field: first given, first given not blank, last given, last given not blank.
    fields: HashMap<String, [Option<usize>; 4]>,
}

impl Reader {
    pub fn new(since: i64, lines: usize) -> Self {
        Reader {
            since,
            lines,
            seen: 0,
            head: Vec::new(),
            tail: Default::default(),
            kept: BTreeMap::new(),
            named: HashMap::new(),
            marks: Marks::default(),
            counts: Transcript { since, ..Transcript::default() },
        }
    }

    pub fn push(&mut self, m: Message) {
        let at = self.seen;
        self.seen += 1;
        let counts = &mut self.counts;
        counts.lines += usize::from(m.is_shown());
        counts.visitor_messages += usize::from(m.author == Author::Visitor);
        counts.new_messages += usize::from(m.id > self.since);
        counts.new_visitor_messages += usize::from(m.id > self.since && m.author == Author::Visitor);
        counts.last_activity = counts.last_activity.max(Some(m.sent_at));

        let mut moves: Vec<(Option<usize>, usize)> = Vec::with_capacity(4);
        let mut mark = |slot: &mut Option<usize>| moves.push((slot.replace(at), at));
        mark(&mut self.marks.last);
        if m.author == Author::Bot {
            mark(&mut self.marks.last_bot);
            if !m.ends_flow() {
                mark(&mut self.marks.last_question);
            }
        }
        if m.ends_flow() {
            mark(&mut self.marks.last_end);
        }
        if let Some((name, value)) = m.gives_field() {
            let given = !value.trim().is_empty();
            let slots = self.marks.fields.entry(name.to_owned()).or_default();
            let [first, first_given, last, last_given] = slots;
            if first.is_none() {
                mark(first);
            }
            if given && first_given.is_none() {
                mark(first_given);
            }
            mark(last);
            if given {
                mark(last_given);
            }
        }
        for (old, new) in moves {
            *self.named.entry(new).or_default() += 1;
            if let Some(old) = old {
                self.unname(old);
            }
        }

        if !m.is_shown() {
            self.retire(at, m);
        } else if self.head.len() < HEAD {
            self.head.push((at, m));
        } else {
            self.tail.push_back((at, m));
            if self.tail.len() > self.lines
                && let Some((at, m)) = self.tail.pop_front()
            {
                self.retire(at, m);
            }
        }
    }

    fn unname(&mut self, at: usize) {
        if let Some(n) = self.named.get_mut(&at) {
            *n -= 1;
            if *n == 0 {
                self.named.remove(&at);
                if !self.keeps_all() {
                    self.kept.remove(&at);
                }
            }
        }
    }

    fn keeps_all(&self) -> bool {
        self.lines == usize::MAX
    }

    /// A message leaving the head and the tail (or never in them: not a line): kept while a
    /// mark names it, or when the reader keeps every line.
    fn retire(&mut self, at: usize, m: Message) {
        if self.keeps_all() || self.named.contains_key(&at) {
            self.kept.insert(at, m);
        }
    }

    pub fn finish(self) -> Transcript {
        let mut all: Vec<(usize, Message)> = self.head;
        all.extend(self.kept);
        all.extend(self.tail);
        all.sort_by_key(|(at, _)| *at);
        Transcript { messages: all.into_iter().map(|(_, m)| m).collect(), ..self.counts }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn message() -> impl Strategy<Value = Message> {
        let author = prop_oneof![Just(Author::Bot), Just(Author::Visitor), Just(Author::Field)];
        let field = proptest::option::of(prop_oneof![Just("email".to_owned()), Just("name".to_owned())]);
        let body = prop_oneof![Just(String::new()), Just(" ".to_owned()), "[a-c]{1,3}"];
        (author, field, body, any::<bool>(), 0..50u32).prop_map(|(author, field, body, ends, minute)| Message {
            id: 0,
            sent_at: Utc.with_ymd_and_hms(2026, 11, 24, 9, minute, 0).unwrap(),
            author,
            gambit_id: Some(format!("g{minute}")),
            input_type: ends.then(|| crate::domain::END_OF_FLOW.to_owned()),
            field,
            body,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// What each reader of a transcript looks for is the same in the kept messages as in
        /// the whole chat, and the head and the latest lines are there in order.
        #[test]
        fn a_kept_transcript_answers_as_the_whole_chat(
            chat in proptest::collection::vec(message(), 0..60),
            lines in 0..8usize,
            since in 0..60i64,
        ) {
            let chat: Vec<Message> = chat.into_iter().enumerate().map(|(i, m)| Message { id: i as i64 + 1, ..m }).collect();
            let whole = Transcript::of(chat.clone(), since);
            prop_assert_eq!(&whole.messages, &chat);
            let mut reader = Reader::new(since, lines);
            chat.iter().cloned().for_each(|m| reader.push(m));
            let kept = reader.finish();
            prop_assert!(kept.messages.len() <= HEAD + lines + 4 + 2 * 4, "{} kept", kept.messages.len());
            prop_assert_eq!(
                (kept.lines, kept.visitor_messages, kept.new_messages, kept.last_activity, kept.since),
                (whole.lines, whole.visitor_messages, whole.new_messages, whole.last_activity, whole.since)
            );
            // A subsequence of the chat, in order.
            let mut rest = chat.iter();
            prop_assert!(kept.messages.iter().all(|k| rest.any(|m| m == k)));
            let shown = |t: &Transcript| t.messages.iter().filter(|m| m.is_shown()).cloned().collect::<Vec<_>>();
            let (all, some) = (shown(&whole), shown(&kept));
            prop_assert_eq!(&some[..HEAD.min(all.len())], &all[..HEAD.min(all.len())]);
            let latest = lines.min(all.len().saturating_sub(HEAD));
            prop_assert_eq!(&some[some.len() - latest..], &all[all.len() - latest..]);
            prop_assert_eq!(kept.messages.last(), chat.last());
            let last = |t: &Transcript, f: &dyn Fn(&Message) -> bool| t.messages.iter().rev().find(|m| f(m)).cloned();
            prop_assert_eq!(last(&kept, &|m| m.author == Author::Bot), last(&whole, &|m| m.author == Author::Bot));
            let question = |m: &Message| m.author == Author::Bot && !m.ends_flow();
            prop_assert_eq!(last(&kept, &question), last(&whole, &question));
            prop_assert_eq!(last(&kept, &Message::ends_flow), last(&whole, &Message::ends_flow));
            prop_assert_eq!(crate::domain::given_fields(&kept.messages), crate::domain::given_fields(&whole.messages));
            let every = |t: &Transcript| {
                let mut seen: Vec<(String, String)> = Vec::new();
                for (name, value) in t.messages.iter().filter_map(Message::gives_field) {
                    match seen.iter_mut().find(|(n, _)| n == name) {
                        Some(f) => f.1 = value.to_owned(),
                        None => seen.push((name.to_owned(), value.to_owned())),
                    }
                }
                seen
            };
            prop_assert_eq!(every(&kept), every(&whole));
        }
    }
}
