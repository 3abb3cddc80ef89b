//! The outbox: every email passes through it, pending until the transport takes it.

use super::db::{Conn, Row, args};
use super::{State, millis};
use crate::domain::{ChatState, Email};
use anyhow::Result;
use chrono::{DateTime, Utc};
use lettre::message::{Mailbox, Mailboxes};

/// The outbox columns `pending_row` reads, in its order; the last, the bot of the conversation
/// an email is about, read with it (no round trip per email to readdress it).
macro_rules! outbox_columns {
    () => {
        "id, conversation_id, state, attempts, message_id, created_at, mail_from, mail_to, mail_cc, reply_to, \
         subject, in_reply_to, refs, text_body, html_body, covers_through, headers, refusals, \
         (SELECT bot_id FROM conversations c WHERE c.id = outbox.conversation_id)"
    };
}
pub(super) const PENDING_SQL: &str =
    concat!("SELECT ", outbox_columns!(), " FROM outbox WHERE status = 'pending' AND id > ?1 ORDER BY id LIMIT ?2");
const LAST_SENT_SQL: &str = concat!(
    "SELECT ",
    outbox_columns!(),
    " FROM outbox WHERE conversation_id = ?1 AND status = 'sent' ORDER BY id DESC LIMIT 1"
);

/// What an outbox email announces: a conversation's new state, or a notice about many
/// conversations (a digest, the flood guard's summary) or about none (the silent-source alarm).
/// Notices are filed under a key of their own in place of a conversation id (`alert:BOT`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Chat(ChatState),
    Digest,
    Alert,
}

impl Kind {
    /// As the outbox stores it, and as `X-Chat-State` says it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Chat(state) => state.as_str(),
            Kind::Digest => "digest",
            Kind::Alert => "alert",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "digest" => Some(Kind::Digest),
            "alert" => Some(Kind::Alert),
            _ => ChatState::parse(s).map(Kind::Chat),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub id: i64,
    pub conversation_id: String,
    pub kind: Kind,
    /// The last message the email covers.
    pub covers_through: i64,
    pub attempts: u32,
    /// Of the attempts, those that count toward `max_attempts`: the email's own failures (a
    /// permanent refusal, the connection lost in its transaction), not an outage's.
    pub refusals: u32,
    /// The bot of the conversation the email is about, as the state knows it (none for a
    /// notice, or a conversation whose bot it has not learned).
    pub chat_bot: Option<String>,
    pub email: Email,
}

/// An outbox row that cannot be read back as an email (written by a version with other rules,
/// or edited by hand): parked by the run, never in the way of the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    pub id: i64,
    pub conversation_id: String,
    pub reason: String,
}

/// Queues an email; `whole` false stores its head alone (`Renderer::compose_head`), bodies
/// NULL: one over the flood guard's burst, which the guard lists and never sends.
pub(super) fn insert(
    tx: &Conn,
    conversation_id: &str,
    kind: Kind,
    covers_through: i64,
    message_id: &str,
    email: &Email,
    whole: bool,
) -> Result<()> {
    tx.execute(
        "INSERT INTO outbox (conversation_id, state, covers_through, message_id, created_at, mail_from, \
         mail_to, mail_cc, reply_to, subject, in_reply_to, refs, text_body, html_body, headers) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        args![
            conversation_id,
            kind.as_str(),
            covers_through,
            message_id,
            email.date.timestamp_millis(),
            email.from.to_string(),
            email.to.to_string(),
            email.cc.to_string(),
            email.reply_to.as_ref().map(ToString::to_string),
            email.subject,
            email.in_reply_to,
            email.references,
            whole.then_some(&email.text),
            whole.then_some(&email.html),
            serde_json::to_string(&email.headers).unwrap_or_default(),
        ],
    )?;
    Ok(())
}

/// The emails over the burst that go to one set of recipients (as stored): one summary lists
/// them. `from` is where the excess starts (`State::excess_from`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excess {
    pub from: i64,
    pub to: String,
    pub cc: String,
    /// How many, and the first's outbox id.
    pub count: usize,
    pub first: i64,
}

/// Outbox rows read per statement when the flood guard goes over them.
const PAGE: i64 = 500;

/// The emails about conversations waiting to go out that the flood guard has not judged: those
/// queued since its last run (or by a run that stopped before it).
macro_rules! unguarded {
    () => {
        "status = 'pending' AND state IN ('completed', 'abandoned', 'resumed', 'ended') \
         AND id > (SELECT guarded_through FROM progress)"
    };
}
const UNGUARDED: &str = unguarded!();

/// Of those, the ones the guard lists (?1: `State::excess_from`): past the first `burst`, and
/// any queued with its head alone, which decide queues only past the burst (a run stopped
/// between decide and the guard leaves them for the next run's guard, never for sending).
macro_rules! excess {
    () => {
        concat!(unguarded!(), " AND (id >= ?1 OR text_body IS NULL)")
    };
}

impl State {
    /// How many emails about conversations the flood guard has not judged yet wait to go out.
    pub fn count_unguarded_chats(&self) -> Result<usize> {
        let sql = format!("SELECT count(*) FROM outbox WHERE {UNGUARDED}");
        self.context(self.conn.one(&sql, args![]))
    }

    /// The bots an outbox email is about, as the state knows them: a chat email's conversation's,
    /// an alert's, a digest's listed chats'; none for a flood summary (or a conversation whose
    /// bot the state has not learned).
    pub fn bots_of_email(&self, p: &Pending) -> Result<Vec<String>> {
        let sql = match p.kind {
            Kind::Alert => {
                return Ok(p.conversation_id.strip_prefix("alert:").map(str::to_owned).into_iter().collect());
            }
            Kind::Chat(_) => return Ok(p.chat_bot.iter().cloned().collect()),
            Kind::Digest if self.conn.is_postgres() => {
                "SELECT DISTINCT entry::jsonb ->> 'bot_id' FROM digest_items WHERE sent_in = ?1 \
                 AND entry::jsonb ->> 'bot_id' IS NOT NULL"
            }
            Kind::Digest => {
                "SELECT DISTINCT json_extract(entry, '$.bot_id') FROM digest_items WHERE sent_in = ?1 \
                 AND json_extract(entry, '$.bot_id') IS NOT NULL"
            }
        };
        self.context(self.conn.query_map(sql, args![p.conversation_id], |r| r.get(0)))
    }

    /// The outbox id from which the unguarded emails are over the burst: the `burst`+1-th's
    /// (none: `i64::MAX`).
    pub fn excess_from(&self, burst: usize) -> Result<i64> {
        let sql = format!("SELECT id FROM outbox WHERE {UNGUARDED} ORDER BY id LIMIT 1 OFFSET ?1");
        let first = self.conn.query_opt(&sql, args![burst as i64], |r| r.get(0));
        Ok(self.context(first)?.unwrap_or(i64::MAX))
    }

    /// The emails over the burst, by set of recipients, in order of their first email: counted
    /// a page at a time (a GROUP BY sorted every one of them first).
    pub fn excess(&self, from: i64) -> Result<Vec<Excess>> {
        let sql =
            concat!("SELECT id, mail_to, mail_cc FROM outbox WHERE ", excess!(), " AND id > ?2 ORDER BY id LIMIT ?3");
        let mut groups: Vec<Excess> = Vec::new();
        let mut after = 0;
        loop {
            let page: Vec<(i64, String, String)> =
                self.context(
                    self.conn.query_map(sql, args![from, after, PAGE], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))),
                )?;
            let Some((last, ..)) = page.last() else { return Ok(groups) };
            after = *last;
            for (id, to, cc) in page {
                match groups.iter_mut().find(|g| g.to == to && g.cc == cc) {
                    Some(g) => g.count += 1,
                    None => groups.push(Excess { from, to, cc, count: 1, first: id }),
                }
            }
        }
    }

    /// The first `limit` of those emails, oldest first: what a summary lists by name, (subject,
    /// state) each.
    pub fn excess_listed(&self, excess: &Excess, limit: usize) -> Result<Vec<(String, String)>> {
        let sql = concat!(
            "SELECT subject, state FROM outbox WHERE ",
            excess!(),
            " AND mail_to = ?2 AND mail_cc = ?3 ORDER BY id LIMIT ?4"
        );
        let rows = self
            .conn
            .query_map(sql, args![excess.from, excess.to, excess.cc, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)));
        self.context(rows)
    }

    /// A page of the emails waiting to go out, oldest first, after outbox id `after`; a row
    /// that cannot be read back comes as `Unreadable`, in its place.
    pub fn pending(&self, after: i64, limit: usize) -> Result<Vec<Result<Pending, Unreadable>>> {
        let rows = self.conn.query_map(PENDING_SQL, args![after, limit as i64], |r| {
            Ok(pending_row(r).map_err(|e| Unreadable {
                id: r.get(0).unwrap_or_default(),
                conversation_id: r.get(1).unwrap_or_default(),
                reason: e.to_string(),
            }))
        });
        self.context(rows)
    }

    pub fn mark_sent(&mut self, outbox_id: i64, at: DateTime<Utc>) -> Result<()> {
        self.mark_all_sent(&[outbox_id], at)
    }

    /// Marks a batch sent, in one transaction (`Mailer::marks_in_batches`).
    pub fn mark_all_sent(&mut self, outbox_ids: &[i64], at: DateTime<Utc>) -> Result<()> {
        self.record_sent(|tx| {
            if tx.0.is_postgres() {
                tx.0.execute(
                    "UPDATE outbox SET status = 'sent', sent_at = ?2, attempts = attempts + 1, last_error = NULL, \
                     text_body = NULL, html_body = NULL WHERE id = ANY(?1)",
                    args![outbox_ids, at.timestamp_millis()],
                )?;
                return Ok(());
            }
            for id in outbox_ids {
                tx.0.execute(
                    "UPDATE outbox SET status = 'sent', sent_at = ?2, attempts = attempts + 1, last_error = NULL, \
                     text_body = NULL, html_body = NULL WHERE id = ?1",
                    args![id, at.timestamp_millis()],
                )?;
            }
            Ok(())
        })
    }

    /// Records a failed attempt, one that `counts` toward `max_attempts` or not; `park` takes the
    /// email out of the retry queue for good.
    pub fn mark_failed(&self, outbox_id: i64, error: &str, counts: bool, park: bool) -> Result<()> {
        self.context(self.conn.execute(
            "UPDATE outbox SET attempts = attempts + 1, refusals = refusals + ?3, last_error = ?2, \
             status = CASE WHEN ?4 THEN 'parked' ELSE status END WHERE id = ?1",
            args![outbox_id, error, i64::from(counts), park],
        ))?;
        Ok(())
    }

    /// Emails sent at or after `since`, and the earliest of them (when the next one may go,
    /// a limit's window after it). Through the `outbox_sent` index.
    pub fn sent_since(&self, since: DateTime<Utc>) -> Result<(usize, Option<DateTime<Utc>>)> {
        self.context(self.conn.query_row(
            "SELECT count(*), min(sent_at) FROM outbox WHERE status = 'sent' AND sent_at >= ?1",
            args![since.timestamp_millis()],
            |r| Ok((r.get(0)?, r.get::<Option<i64>>(1)?.map(millis))),
        ))
    }

    /// Records why an email waits without counting an attempt (the provider is throttling).
    pub fn mark_deferred(&self, outbox_id: i64, why: &str) -> Result<()> {
        self.context(self.conn.execute("UPDATE outbox SET last_error = ?2 WHERE id = ?1", args![outbox_id, why]))?;
        Ok(())
    }

    pub fn count_pending(&self) -> Result<usize> {
        self.context(self.conn.one("SELECT count(*) FROM outbox WHERE status = 'pending'", args![]))
    }

    /// The last email sent for a conversation, and what the email before it covered (0 if none).
    pub fn last_sent(&self, conversation_id: &str) -> Result<Option<(Pending, i64)>> {
        let last = self.conn.query_opt(LAST_SENT_SQL, args![conversation_id], |r| {
            Ok(pending_row(r).map_err(|e| anyhow::anyhow!("outbox row {}: {e}", r.get::<i64>(0).unwrap_or_default())))
        });
        let Some(last) = self.context(last)?.transpose()? else {
            return Ok(None);
        };
        let before = self.covered_before(conversation_id, last.id)?;
        Ok(Some((last, before)))
    }

    /// The conversation's last email, when the flood guard listed it in a summary instead of
    /// sending it: its state, the last message it covered, and the last covered before it.
    pub fn last_listed(&self, conversation_id: &str) -> Result<Option<(ChatState, i64, i64)>> {
        let sql = "SELECT id, state, covers_through, status FROM outbox WHERE conversation_id = ?1 \
                   ORDER BY id DESC LIMIT 1";
        let last = self.conn.query_opt(sql, args![conversation_id], |r| {
            Ok((r.get::<i64>(0)?, r.get::<String>(1)?, r.get::<i64>(2)?, r.get::<String>(3)?))
        });
        let Some((id, state, through, status)) = self.context(last)? else { return Ok(None) };
        let Some(state) = ChatState::parse(&state).filter(|_| status == "summarised") else { return Ok(None) };
        Ok(Some((state, through, self.covered_before(conversation_id, id)?)))
    }

    /// The last message covered by the conversation's emails before outbox row `id`.
    fn covered_before(&self, conversation_id: &str, id: i64) -> Result<i64> {
        let sql = "SELECT coalesce(max(covers_through), 0) FROM outbox WHERE conversation_id = ?1 AND id < ?2";
        self.context(self.conn.one(sql, args![conversation_id, id]))
    }
}

/// An outbox row as an email; the error says which column could not be read back.
fn pending_row(r: &Row) -> Result<Pending, String> {
    let get = |i: usize| -> Result<Option<String>, String> { r.get(i).map_err(|e| format!("column {i}: {e:#}")) };
    let text = |i: usize| -> Result<String, String> { Ok(get(i)?.unwrap_or_default()) };
    let mailbox = |i: usize, name: &str| -> Result<Mailbox, String> {
        let s = text(i)?;
        s.parse().map_err(|e| format!("{name} {s:?} cannot be read back: {e}"))
    };
    let mailboxes = |i: usize, name: &str| -> Result<Mailboxes, String> {
        let s = text(i)?;
        if s.is_empty() {
            return Ok(Mailboxes::new());
        }
        s.parse().map_err(|e| format!("{name} {s:?} cannot be read back: {e}"))
    };
    let int = |i: usize| -> Result<i64, String> { r.get(i).map_err(|e| format!("column {i}: {e:#}")) };
    let state = text(2)?;
    Ok(Pending {
        id: int(0)?,
        conversation_id: text(1)?,
        kind: Kind::parse(&state).ok_or_else(|| format!("unknown state {state:?}"))?,
        covers_through: int(15)?,
        attempts: int(3)? as u32,
        refusals: int(17)? as u32,
        chat_bot: get(18)?,
        email: Email {
            message_id: text(4)?,
            date: millis(int(5)?),
            from: mailbox(6, "From")?,
            to: mailboxes(7, "To")?,
            cc: mailboxes(8, "Cc")?,
            reply_to: get(9)?.map(|_| mailbox(9, "Reply-To")).transpose()?,
            subject: text(10)?,
            in_reply_to: get(11)?,
            references: get(12)?,
            // Rows from before headers were stored have none.
            headers: match get(16)? {
                None => Vec::new(),
                Some(json) => serde_json::from_str(&json).map_err(|e| format!("headers {json:?}: {e}"))?,
            },
            text: text(13)?,
            html: text(14)?,
        },
    })
}

impl super::Tx<'_> {
    /// Everything queued so far has been judged by the flood guard.
    pub(super) fn mark_guarded(&self) -> Result<()> {
        let sql = "UPDATE progress SET guarded_through = (SELECT max(id) FROM outbox) \
                   WHERE (SELECT max(id) FROM outbox) > guarded_through";
        self.0.execute(sql, args![]).map(drop)
    }

    /// A page of the emails of `excess` after outbox id `after`: (id, conversation, Message-ID).
    pub(super) fn excess_page(&self, excess: &Excess, after: i64) -> Result<Vec<(i64, String, String)>> {
        let sql = concat!(
            "SELECT id, conversation_id, message_id FROM outbox WHERE ",
            excess!(),
            " AND mail_to = ?2 AND mail_cc = ?3 AND id > ?4 ORDER BY id LIMIT ?5"
        );
        self.0.query_map(sql, args![excess.from, excess.to, excess.cc, after, PAGE], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
    }
}

#[cfg(test)]
mod tests {
    /// An email about a chat in any state counts toward the flood guard's burst.
    #[test]
    fn the_flood_guard_sees_every_chat_state() {
        for state in crate::domain::ChatState::ALL {
            assert!(super::UNGUARDED.contains(&format!("'{}'", state.as_str())), "{state:?}");
        }
    }
}
