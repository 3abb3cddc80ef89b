//! What a run records of the emails about no one conversation: each bot's latest message and
//! its silent-source alarm (with the alarm's own thread), conversations waiting for a digest,
//! and the emails the flood guard summarises. Each notice goes through the outbox like any
//! email, filed under a key of its own (`alert:BOT`, `digest:KEY:DAY`, `summary:ID`).

use std::collections::HashMap;

use super::db::args;
use super::outbox::Excess;
use super::{Kind, Open, State, Tx, millis};
use crate::domain::{Email, thread::Thread};
use anyhow::Result;
use chrono::{DateTime, Utc};

/// A bot whose chats the silent-source alarm watches, as the state knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    pub id: String,
    /// As the source names it, once a conversation of it was read.
    pub name: Option<String>,
    pub last_activity: DateTime<Utc>,
    /// The latest message's time when an alert went out, until chats come in again.
    pub silent_since: Option<DateTime<Utc>>,
    pub thread: Thread,
}

/// A conversation waiting for its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestItem {
    pub row: i64,
    pub conversation_id: String,
    pub listed_at: DateTime<Utc>,
    /// What the digest says of it (`pipeline::digest::Entry`), as JSON.
    pub entry: String,
}

/// The outbox key of a bot's alarm thread.
pub fn alert_key(bot_id: &str) -> String {
    format!("alert:{bot_id}")
}

impl State {
    pub fn watched(&self) -> Result<Vec<Watched>> {
        let sql = "SELECT id, name, last_activity, silent_since, subject, thread, thread_index FROM bots";
        let rows = self.conn.query_map(sql, args![], |r| {
            Ok(Watched {
                id: r.get(0)?,
                name: r.get(1)?,
                last_activity: millis(r.get(2)?),
                silent_since: r.get::<Option<i64>>(3)?.map(millis),
                thread: super::thread(r.get(4)?, &r.get::<String>(5)?, r.get(6)?),
            })
        });
        self.context(rows)
    }

    /// The bots of those of `ids` whose bot the state knows.
    pub fn bots_of(&self, ids: &[&str]) -> Result<HashMap<String, String>> {
        let sql = "SELECT bot_id FROM conversations WHERE id = ?1 AND bot_id IS NOT NULL";
        let mut out = HashMap::new();
        for id in ids {
            let bot: Option<String> = self.context(self.conn.query_opt(sql, args![id], |r| r.get(0)))?;
            if let Some(bot) = bot {
                out.insert((*id).to_owned(), bot);
            }
        }
        Ok(out)
    }

    /// The conversations waiting for a digest, oldest first. Which digest takes each is decided
    /// when it is sent (`pipeline::digest::send_due`), from the bot's settings then.
    pub fn digests_waiting(&self) -> Result<Vec<DigestItem>> {
        let sql = "SELECT rowid, conversation_id, entry, listed_at FROM digest_items WHERE sent_in IS NULL \
                   ORDER BY listed_at, rowid";
        let rows = self.conn.query_map(sql, args![], |r| {
            Ok(DigestItem {
                row: r.get(0)?,
                conversation_id: r.get(1)?,
                entry: r.get(2)?,
                listed_at: millis(r.get(3)?),
            })
        });
        self.context(rows)
    }

    /// Whether the outbox holds any email filed under `key` (a digest of a day, ...).
    pub fn has_notice(&self, key: &str) -> Result<bool> {
        self.context(self.conn.one("SELECT EXISTS (SELECT 1 FROM outbox WHERE conversation_id = ?1)", args![key]))
    }
}

impl Tx<'_> {
    /// Records that a bot's chats were active at `at` (the latest wins), and its name.
    pub fn bot_active(&self, id: &str, name: Option<&str>, at: DateTime<Utc>) -> Result<()> {
        self.0.execute(
            "INSERT INTO bots AS b (id, name, last_activity) VALUES (?1, ?2, ?3) ON CONFLICT (id) DO UPDATE SET \
             name = coalesce(excluded.name, b.name), last_activity = max(b.last_activity, excluded.last_activity)",
            args![id, name, at.timestamp_millis()],
        )?;
        Ok(())
    }

    /// Queues a bot's alert (`silent_since`: the latest message's time) or its all-clear (none),
    /// in the bot's alarm thread.
    pub fn alarm(&self, bot: &str, silent_since: Option<DateTime<Utc>>, email: &Email) -> Result<()> {
        super::outbox::insert(self.0, &alert_key(bot), Kind::Alert, 0, &email.message_id, email, true)?;
        self.0.execute(
            "UPDATE bots SET silent_since = ?2, subject = coalesce(subject, ?3), \
             thread = ltrim(thread || ' ' || ?4), thread_index = coalesce(?5, thread_index) WHERE id = ?1",
            args![
                bot,
                silent_since.map(|t| t.timestamp_millis()),
                email.subject,
                email.message_id,
                email.headers.iter().find(|(name, _)| name == "Thread-Index").map(|(_, v)| v)
            ],
        )?;
        Ok(())
    }

    /// Lists a conversation in the digest `key` instead of emailing it, and marks everything
    /// read of it covered: it is emailed on its own only if it comes back with more.
    pub fn list_in_digest(&self, open: &Open, key: &str, entry: &str, now: DateTime<Utc>) -> Result<()> {
        self.0.execute(
            "INSERT INTO digest_items (conversation_id, digest, listed_at, entry) VALUES (?1, ?2, ?3, ?4)",
            args![open.id, key, now.timestamp_millis(), entry],
        )?;
        self.cover(open)
    }

    /// Queues the flood guard's summaries, each `(key, email, excess)` in place of the emails of
    /// its `excess`, which are never sent (each conversation's thread then starts with its next
    /// email), and marks everything queued so far judged: one step, so that a run stopped in
    /// the middle leaves none of it, and the next run's guard judges them all again, together.
    pub fn summarise(&self, summaries: &[(String, Email, Excess)]) -> Result<()> {
        for (key, email, excess) in summaries {
            self.summarise_one(key, email, excess)?;
        }
        self.mark_guarded()
    }

    /// One summary and what it lists, read and marked a page at a time.
    fn summarise_one(&self, key: &str, email: &Email, excess: &Excess) -> Result<()> {
        super::outbox::insert(self.0, key, Kind::Digest, 0, &email.message_id, email, true)?;
        let mut after = 0;
        loop {
            let page = self.excess_page(excess, after)?;
            let Some((last, ..)) = page.last() else { return Ok(()) };
            after = *last;
            for (id, conversation_id, message_id) in &page {
                self.0.execute(
                    "UPDATE outbox SET status = 'summarised', last_error = 'listed in ' || ?2, text_body = NULL, \
                     html_body = NULL WHERE id = ?1 AND status = 'pending'",
                    args![id, email.message_id],
                )?;
                self.0.execute(
                    "UPDATE conversations SET thread = trim(replace(' ' || thread || ' ', ' ' || ?2 || ' ', ' ')) \
                     WHERE id = ?1",
                    args![conversation_id, message_id],
                )?;
                self.0.execute(
                    "UPDATE conversations SET subject = NULL, thread_index = NULL WHERE id = ?1 AND thread = ''",
                    args![conversation_id],
                )?;
            }
        }
    }

    /// Queues a digest filed under `key` and marks its items as sent in it, as one step.
    pub fn queue_digest(&self, key: &str, email: &Email, items: &[DigestItem]) -> Result<()> {
        super::outbox::insert(self.0, key, Kind::Digest, 0, &email.message_id, email, true)?;
        for item in items {
            self.0.execute("UPDATE digest_items SET sent_in = ?2 WHERE rowid = ?1", args![item.row, key])?;
        }
        Ok(())
    }
}
