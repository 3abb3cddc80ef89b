//! What a run folds in and decides: the watermark, each conversation's progress, and the
//! writes that record a decision.

use super::db::{Row, args};
use super::{State, Tx, millis};
use crate::domain::{ChatState, Email, Seen, Tracked, thread::Thread};
use anyhow::Result;
use chrono::{DateTime, Utc};

/// A message's time as the state keeps it: unix milliseconds, rounded up. Stores stamp finer
/// (Rasa: float seconds with microseconds); rounded up, a kept time is never earlier than the
/// message it stands for, so idleness is never reached early and every message an email
/// covered is at or before the `covered_at` kept for it (`pipeline::ingest::rebase`).
pub(crate) fn kept_millis(t: DateTime<Utc>) -> i64 {
    let ms = t.timestamp_millis();
    if t.timestamp_subsec_nanos().is_multiple_of(1_000_000) { ms } else { ms.saturating_add(1) }
}

/// The columns `open_row` reads, in its order.
macro_rules! open_columns {
    () => {
        "SELECT id, last_message, last_activity, ended, covered_through, emails, subject, thread, missing_since, \
         thread_index FROM conversations "
    };
}

/// How many other conversations a visitor has, counted no further than `limit` (`State::others`).
pub const OTHERS_COUNT_SQL: &str =
    "SELECT count(*) FROM (SELECT 1 FROM conversations WHERE visitor_id = ?1 AND id <> ?2 LIMIT ?3) AS others";
/// A visitor's other conversations, most recently active first, with their last email's state.
pub const OTHERS_SQL: &str = "SELECT id, bot_id, last_activity, \
     (SELECT state FROM outbox o WHERE o.conversation_id = c.id ORDER BY o.id DESC LIMIT 1) \
     FROM conversations c WHERE visitor_id = ?1 AND id <> ?2 ORDER BY last_activity DESC LIMIT ?3";
/// The reads every run makes, each a range of its own partial index: the conversations that
/// ended, and those idle since a cut-off, oldest first. A run costs what is due, not the number
/// of chats still in progress (those are in neither range).
pub(super) const ENDED_SQL: &str = concat!(
    open_columns!(),
    "WHERE last_message > covered_through AND last_message > held_through AND ended AND id > ?1 ORDER BY id LIMIT ?2"
);
pub(super) const IDLE_SQL: &str = concat!(
    open_columns!(),
    "WHERE last_message > covered_through AND last_message > held_through AND NOT ended AND last_activity <= ?3 \
     AND (last_activity, id) > (?4, ?1) ORDER BY last_activity, id LIMIT ?2"
);

/// Where a run's pass over the due conversations is: the ended ones by id, then the idle ones by
/// (last activity, id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DueCursor {
    Ended { after: String },
    Idle { after: (i64, String) },
}

impl DueCursor {
    pub fn start() -> Self {
        DueCursor::Ended { after: String::new() }
    }
}

/// The open conversations a store that marks completion in place is asked about.
pub(super) const UNFINISHED_SQL: &str = "SELECT id FROM conversations \
     WHERE last_message > covered_through AND last_message > held_through AND NOT ended AND id > ?1 \
     ORDER BY id LIMIT ?2";

/// How far the export has been read, and what was found there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// The highest message id read.
    pub watermark: i64,
    pub baseline_done: bool,
    /// The row at the watermark as it was read (see `source::Probe`); none before the first.
    pub anchor: Option<String>,
    /// Rows read at or below the watermark; none when not known (a state from before).
    pub read_count: Option<i64>,
    /// When the rows below the watermark were last counted.
    pub audited_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    pub id: String,
    pub tracked: Tracked,
    pub thread: Thread,
    /// Its messages arrived before its conversations row, first seen then.
    pub missing_since: Option<DateTime<Utc>>,
}

/// What an email (or the first run) covered of a conversation, as the state recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Covered {
    /// The latest activity covered; none in a state from before it was recorded.
    pub at: Option<DateTime<Utc>>,
    /// The last message id covered.
    pub through: i64,
    pub emails: u32,
}

/// Another conversation of the same visitor, as the state knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub id: String,
    pub bot_id: Option<String>,
    pub last_activity: DateTime<Utc>,
    /// The state its last email announced; none when it had none.
    pub last_state: Option<ChatState>,
}

/// What a pass over the whole export found of one conversation, to line the state up with an
/// export whose ids changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resync {
    pub tracked: Tracked,
    /// The latest activity covered, by time: messages up to it were covered before.
    pub covered_at: Option<DateTime<Utc>>,
}

impl State {
    pub fn progress(&self) -> Result<Progress> {
        self.context(self.conn.query_row(
            "SELECT watermark, baseline_done, anchor, read_count, audited_at FROM progress",
            args![],
            |r| {
                Ok(Progress {
                    watermark: r.get(0)?,
                    baseline_done: r.get(1)?,
                    anchor: r.get(2)?,
                    read_count: r.get(3)?,
                    audited_at: millis(r.get(4)?),
                })
            },
        ))
    }

    /// The keys of the rows read past position `after` that a commit window keeps (see
    /// `Tx::remember`).
    pub fn recent_keys(&self, after: i64) -> Result<std::collections::HashSet<i64>> {
        let keys = self.conn.query_map("SELECT key FROM recent_rows WHERE position > ?1", args![after], |r| r.get(0));
        Ok(self.context(keys)?.into_iter().collect())
    }

    /// How many rows read past position `after`, up to `through`, a commit window keeps.
    pub fn recent_count(&self, after: i64, through: i64) -> Result<i64> {
        let count = self
            .conn
            .one("SELECT count(*) FROM recent_rows WHERE position > ?1 AND position <= ?2", args![after, through]);
        self.context(count)
    }

    /// The visitor's conversations other than `except`, most recently active first, at most
    /// `limit`, and how many there are (counted up to `people::CROWD` + 1: beyond that it is
    /// no person). Through the visitor index.
    pub fn others(&self, visitor_id: &str, except: &str, limit: usize) -> Result<(Vec<Known>, usize)> {
        let crowd = crate::domain::CROWD;
        // Counted first, and no further than a crowd: an id on thousands of chats costs no more
        // than one on a few.
        let total: usize =
            self.context(self.conn.one(OTHERS_COUNT_SQL, args![visitor_id, except, (crowd + 1) as i64]))?;
        if total == 0 || total > crowd {
            return Ok((Vec::new(), total));
        }
        let rows = self.conn.query_map(OTHERS_SQL, args![visitor_id, except, limit as i64], |r| {
            Ok(Known {
                id: r.get(0)?,
                bot_id: r.get(1)?,
                last_activity: millis(r.get(2)?),
                last_state: r.get::<Option<String>>(3)?.as_deref().and_then(ChatState::parse),
            })
        });
        Ok((self.context(rows)?, total))
    }

    /// The next page of the conversations with uncovered messages that may be due (ended, or
    /// idle since `idle_since` or earlier), and where the page after starts; none when the
    /// pass is over.
    pub fn due_conversations(
        &self,
        cursor: &DueCursor,
        idle_since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Option<(Vec<Open>, DueCursor)>> {
        let mut cursor = cursor.clone();
        loop {
            let page: Vec<Open> = match &cursor {
                DueCursor::Ended { after } => {
                    self.context(self.conn.query_map(ENDED_SQL, args![after, limit as i64], open_row))?
                }
                DueCursor::Idle { after: (at, id) } => self.context(self.conn.query_map(
                    IDLE_SQL,
                    args![id, limit as i64, idle_since.timestamp_millis(), at],
                    open_row,
                ))?,
            };
            match (page.last(), &cursor) {
                (Some(last), DueCursor::Ended { .. }) => {
                    let next = DueCursor::Ended { after: last.id.clone() };
                    return Ok(Some((page, next)));
                }
                (Some(last), DueCursor::Idle { .. }) => {
                    let next =
                        DueCursor::Idle { after: (last.tracked.last_activity.timestamp_millis(), last.id.clone()) };
                    return Ok(Some((page, next)));
                }
                (None, DueCursor::Ended { .. }) => cursor = DueCursor::Idle { after: (i64::MIN, String::new()) },
                (None, DueCursor::Idle { .. }) => return Ok(None),
            }
        }
    }

    /// The `limit` conversations whose last message read has the highest ids, highest first,
    /// with those ids and their last activity: for a run that finds the last rows read gone
    /// (one pass over the conversations).
    pub fn latest_read(&self, limit: usize) -> Result<Vec<(String, i64, DateTime<Utc>)>> {
        let rows = self.conn.query_map(
            "SELECT id, last_message, last_activity FROM conversations WHERE last_message > 0 \
             ORDER BY last_message DESC, id DESC LIMIT ?1",
            args![limit as i64],
            |r| Ok((r.get(0)?, r.get(1)?, millis(r.get(2)?))),
        );
        self.context(rows)
    }

    /// The earliest last activity after `idle_since` of a conversation not ended with messages
    /// no email covers: the next to become idle, which a watcher sleeps until (a range of the
    /// idle index, one row).
    pub fn next_to_go_idle(&self, idle_since: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
        let first = self.conn.query_opt(
            "SELECT last_activity FROM conversations \
             WHERE last_message > covered_through AND last_message > held_through AND NOT ended \
             AND last_activity > ?1 ORDER BY last_activity LIMIT 1",
            args![idle_since.timestamp_millis()],
            |r| r.get::<i64>(0),
        );
        Ok(self.context(first)?.map(millis))
    }

    /// How many conversations have messages no email covers (through the open index).
    pub fn count_open(&self) -> Result<usize> {
        self.context(self.conn.one(
            "SELECT count(*) FROM conversations WHERE last_message > covered_through AND last_message > held_through",
            args![],
        ))
    }

    /// A page of the open conversations not known to have ended, in id order after `after`
    /// (through the open index).
    pub fn unfinished(&self, after: &str, limit: usize) -> Result<Vec<String>> {
        self.context(self.conn.query_map(UNFINISHED_SQL, args![after, limit as i64], |r| r.get(0)))
    }

    /// What the state knows of one conversation, whatever it stands.
    pub fn conversation(&self, id: &str) -> Result<Option<Open>> {
        self.context(self.conn.query_opt(concat!(open_columns!(), "WHERE id = ?1"), args![id], open_row))
    }

    /// When the rules that hold emails back differ from the last run's, makes every held
    /// conversation open again, so that what the new rules make due is not lost. Returns how
    /// many were reopened; a full read of the conversations, once per change of rules.
    pub fn reopen_held_if_rules_changed(&mut self, fingerprint: &str) -> Result<usize> {
        self.atomically(|tx| {
            let stored: Option<String> = tx.0.one("SELECT rules FROM progress", args![])?;
            if stored.as_deref() == Some(fingerprint) {
                return Ok(0);
            }
            let reopened = tx
                .0
                .execute("UPDATE conversations SET held_through = 0 WHERE held_through > covered_through", args![])?;
            tx.0.execute("UPDATE progress SET rules = ?1", args![fingerprint])?;
            Ok(reopened)
        })
    }
}

impl Tx<'_> {
    /// Remembers the rows read, `(position, key)`, within a commit window of `window` behind
    /// `watermark`, and forgets those that fell out of it.
    pub fn remember(&self, rows: &[(i64, i64)], watermark: i64, window: i64) -> Result<()> {
        for (position, key) in rows.iter().filter(|(position, _)| *position > watermark - window) {
            self.0
                .execute("INSERT OR IGNORE INTO recent_rows (position, key) VALUES (?1, ?2)", args![position, key])?;
        }
        self.0.execute("DELETE FROM recent_rows WHERE position <= ?1", args![watermark - window])?;
        Ok(())
    }

    /// Folds a batch of new messages into the conversations they belong to and moves the
    /// watermark past them: `read` rows, the last of them `anchor`.
    pub fn track<'a>(
        &self,
        seen: impl IntoIterator<Item = (&'a str, Seen)>,
        watermark: i64,
        anchor: Option<&str>,
        read: usize,
    ) -> Result<()> {
        if self.0.is_postgres() {
            // One statement for the batch: a round trip per conversation would be most of a
            // backfill's time on a server across a network.
            let (mut ids, mut last, mut at, mut ended) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for (id, s) in seen {
                ids.push(id.to_owned());
                last.push(s.last_message);
                at.push(kept_millis(s.last_activity));
                ended.push(s.ended);
            }
            self.0.execute(
                "INSERT INTO conversations AS c (id, last_message, last_activity, ended) \
                 SELECT * FROM unnest(?1::text[], ?2::int8[], ?3::int8[], ?4::bool[]) \
                 ON CONFLICT (id) DO UPDATE SET last_message = max(c.last_message, excluded.last_message), \
                 last_activity = max(c.last_activity, excluded.last_activity), ended = c.ended OR excluded.ended",
                args![&ids[..], &last[..], &at[..], &ended[..]],
            )?;
        } else {
            for (id, s) in seen {
                self.0.execute(
                    "INSERT INTO conversations (id, last_message, last_activity, ended) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (id) DO UPDATE SET last_message = max(last_message, excluded.last_message), \
                     last_activity = max(last_activity, excluded.last_activity), ended = ended OR excluded.ended",
                    args![id, s.last_message, kept_millis(s.last_activity), s.ended],
                )?;
            }
        }
        self.0.execute(
            "UPDATE progress SET watermark = ?1, anchor = coalesce(?2, anchor), read_count = read_count + ?3",
            args![watermark, anchor, read as i64],
        )?;
        Ok(())
    }

    /// Marks conversations ended: the store says they finished.
    pub fn mark_ended(&self, ids: &[String]) -> Result<()> {
        if self.0.is_postgres() {
            self.0.execute("UPDATE conversations SET ended = TRUE WHERE id = ANY(?1)", args![ids])?;
            return Ok(());
        }
        for id in ids {
            self.0.execute("UPDATE conversations SET ended = TRUE WHERE id = ?1", args![id])?;
        }
        Ok(())
    }

    /// Marks everything read of a conversation covered without an email.
    pub fn cover(&self, open: &Open) -> Result<()> {
        self.0.execute(
            "UPDATE conversations SET covered_through = ?2, covered_at = ?3, ended = FALSE, missing_since = NULL \
                 WHERE id = ?1",
            args![open.id, open.tracked.last_message, kept_millis(open.tracked.last_activity)],
        )?;
        Ok(())
    }

    /// Records who a conversation is with and with which bot. A visitor id, once known, stays:
    /// an empty one (a store that learns who the visitor is as the chat goes, Typebot) is
    /// replaced when a later look knows it.
    pub fn identify(&self, id: &str, visitor_id: &str, bot_id: &str) -> Result<()> {
        self.0.execute(
            "UPDATE conversations SET visitor_id = ?2, bot_id = ?3 \
                 WHERE id = ?1 AND (visitor_id IS NULL OR (visitor_id = '' AND ?2 <> ''))",
            args![id, visitor_id, bot_id],
        )?;
        Ok(())
    }

    /// Records that the rules hold this conversation back, as judged through its last message.
    pub fn hold(&self, open: &Open) -> Result<()> {
        self.0.execute(
            "UPDATE conversations SET held_through = ?2, missing_since = NULL WHERE id = ?1",
            args![open.id, open.tracked.last_message],
        )?;
        Ok(())
    }

    /// Records when a conversation's messages were first seen without its conversations row.
    pub fn await_row(&self, open: &Open, since: DateTime<Utc>) -> Result<()> {
        self.0.execute(
            "UPDATE conversations SET missing_since = ?2 WHERE id = ?1",
            args![open.id, since.timestamp_millis()],
        )?;
        Ok(())
    }

    /// Queues an email covering everything read of the conversation, and marks it covered, as
    /// one step; `whole` false, its head alone, for the flood guard to list (`outbox::insert`).
    pub fn queue(&self, open: &Open, state: ChatState, email: &Email, whole: bool) -> Result<()> {
        let covers_through = open.tracked.last_message;
        let mut message_id = email.message_id.clone();
        // Ids are per (conversation, state, last message covered): only an export whose ids
        // were renumbered can make one come round again. A new email must never reuse it.
        let taken = |id: &str| -> Result<bool> {
            self.0.one("SELECT EXISTS (SELECT 1 FROM outbox WHERE message_id = ?1)", args![id])
        };
        if taken(&message_id)? {
            message_id = message_id.replacen('@', &format!(".{}@", open.tracked.emails + 1), 1);
        }
        super::outbox::insert(self.0, &open.id, super::Kind::Chat(state), covers_through, &message_id, email, whole)?;
        // Its own email now says all a waiting digest would: it leaves the digest.
        self.0.execute(
            "UPDATE digest_items SET sent_in = 'own email' WHERE conversation_id = ?1 AND sent_in IS NULL",
            args![&open.id],
        )?;
        // The thread's subject is fixed by its first email; a reply stores its "Re: " form
        // nowhere, so every reply carries the root subject exactly once prefixed.
        self.0.execute(
            "UPDATE conversations SET covered_through = ?2, covered_at = ?3, ended = FALSE, emails = emails + 1, \
                 missing_since = NULL, subject = coalesce(subject, ?4), thread = ltrim(thread || ' ' || ?5), \
                 thread_index = coalesce(?6, thread_index) WHERE id = ?1",
            args![
                open.id,
                covers_through,
                kept_millis(open.tracked.last_activity),
                email.subject,
                message_id,
                email.headers.iter().find(|(name, _)| name == "Thread-Index").map(|(_, v)| v)
            ],
        )?;
        Ok(())
    }

    pub fn finish_baseline(&self) -> Result<()> {
        self.0.execute("UPDATE progress SET baseline_done = TRUE", args![])?;
        Ok(())
    }

    /// Sets what the next run checks the export against, without reading anything new.
    pub fn set_anchor(
        &self,
        anchor: Option<&str>,
        read_count: Option<i64>,
        audited_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        self.0.execute(
            "UPDATE progress SET anchor = coalesce(?1, anchor), read_count = coalesce(?2, read_count), \
             audited_at = coalesce(?3, audited_at)",
            args![anchor, read_count, audited_at.map(|t| t.timestamp_millis())],
        )?;
        Ok(())
    }

    /// Lines the state up with a store whose newest rows were deleted, `gone` conversations with
    /// them: it was read through `from` (`read` rows, the last `anchor`), the rows after are read
    /// again, and what the state knew of the gone conversations is closed (nothing of them can be
    /// sent; a new message with one of their ids is new). Those `reused` are another chat now,
    /// named as the erased one was: forgotten (no thread, no email, no visitor).
    pub fn rewind(
        &self,
        from: i64,
        anchor: &str,
        read: i64,
        gone: &[String],
        reused: &[String],
        now: DateTime<Utc>,
    ) -> Result<()> {
        for id in gone {
            self.0.execute(
                "UPDATE conversations SET last_message = ?2, covered_through = ?2, held_through = 0, ended = FALSE, \
                 missing_since = NULL WHERE id = ?1",
                args![id, from],
            )?;
        }
        for id in reused {
            self.0.execute(
                "UPDATE conversations SET emails = 0, subject = NULL, thread = '', thread_index = NULL, \
                 covered_at = NULL, visitor_id = NULL, bot_id = NULL WHERE id = ?1",
                args![id],
            )?;
        }
        // Rows read after it that are still there (a commit window's) are read again, and counted.
        self.0.execute("DELETE FROM recent_rows WHERE position > ?1", args![from])?;
        self.0.execute(
            "UPDATE progress SET watermark = ?1, anchor = ?2, read_count = ?3, audited_at = ?4",
            args![from, anchor, read, now.timestamp_millis()],
        )?;
        Ok(())
    }

    /// Starts lining the state up with an export whose ids changed: every conversation is
    /// closed (nothing uncovered, nothing held), and `begin_resync`'s caller then reopens, one by
    /// one, those the export still holds. A full write of the conversations, once per such event.
    pub fn begin_resync(&self) -> Result<()> {
        self.0.execute(
            "UPDATE conversations SET last_message = covered_through, held_through = 0, ended = FALSE, \
             missing_since = NULL",
            args![],
        )?;
        Ok(())
    }

    /// What the state knew of a conversation before a resync: its covered time and id.
    pub fn covered(&self, id: &str) -> Result<Option<Covered>> {
        self.0.query_opt(
            "SELECT covered_at, covered_through, emails FROM conversations WHERE id = ?1",
            args![id],
            |r| Ok(Covered { at: r.get::<Option<i64>>(0)?.map(millis), through: r.get(1)?, emails: r.get(2)? }),
        )
    }

    /// Writes what a resync found of one conversation.
    pub fn rebase(&self, id: &str, r: &Resync) -> Result<()> {
        let t = &r.tracked;
        self.0.execute(
            "INSERT INTO conversations (id, last_message, last_activity, ended, covered_through, covered_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO UPDATE SET last_message = excluded.last_message, \
                 last_activity = excluded.last_activity, ended = excluded.ended, \
                 covered_through = excluded.covered_through, covered_at = excluded.covered_at",
            args![
                id,
                t.last_message,
                kept_millis(t.last_activity),
                t.ended,
                t.covered_through,
                r.covered_at.map(kept_millis)
            ],
        )?;
        Ok(())
    }

    /// Ends a resync: the export is read through `watermark`, `read` rows, its last `anchor`.
    /// The rows remembered within a commit window are forgotten: some may be gone, and the
    /// count they take part in (`ingest::audited_count`) would find rows the store no longer
    /// has. The next run reads the window again (its rows fold in as they did), and the next
    /// hourly count adopts the rows read.
    pub fn finish_resync(&self, watermark: i64, anchor: &str, read: i64, now: DateTime<Utc>) -> Result<()> {
        self.0.execute("DELETE FROM recent_rows", args![])?;
        self.0.execute(
            "UPDATE progress SET watermark = ?1, anchor = ?2, read_count = ?3, audited_at = ?4",
            args![watermark, anchor, read, now.timestamp_millis()],
        )?;
        Ok(())
    }
}

fn open_row(r: &Row) -> Result<Open> {
    Ok(Open {
        id: r.get(0)?,
        tracked: Tracked {
            last_message: r.get(1)?,
            last_activity: millis(r.get(2)?),
            ended: r.get(3)?,
            covered_through: r.get(4)?,
            emails: r.get(5)?,
        },
        thread: super::thread(r.get(6)?, &r.get::<String>(7)?, r.get(9)?),
        missing_since: r.get::<Option<i64>>(8)?.map(millis),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_kept_in_milliseconds_never_earlier_than_the_message() {
        let t = |micros: i64| DateTime::from_timestamp_micros(micros).unwrap();
        assert_eq!(kept_millis(t(1_795_510_980_109_600)), 1_795_510_980_110);
        assert_eq!(kept_millis(t(1_795_510_980_109_000)), 1_795_510_980_109, "whole milliseconds stay");
        assert_eq!(kept_millis(t(1_795_510_980_000_001)), 1_795_510_980_001);
        assert_eq!(kept_millis(t(-1_500)), -1, "before 1970 too");
    }
}
