//! Deliveries: the outbox of the destinations beside email (webhooks, Slack). One row per
//! notification and destination, queued in the transaction that decides it, delivered, then
//! marked; a conversation's thread at a destination that threads (Slack's `thread_ts`).

use super::db::{Row, args};
use super::{State, Tx, millis};
use anyhow::Result;
use chrono::{DateTime, Utc};

/// The root recorded for a conversation whose first notification went but whose answer gave no
/// usable thread (`destination_threads.root`): its later notifications go as messages of their
/// own, and no later answer starts a thread in its place.
pub const THREAD_LOST: &str = "";

/// A notification parked at a destination (refused `max_attempts` times), for `status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ParkedDelivery {
    pub conversation_id: String,
    pub state: String,
    /// Why: the last failure's words.
    pub reason: Option<String>,
}

/// A notification waiting for one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: i64,
    pub destination: String,
    pub conversation_id: String,
    pub state: String,
    /// The idempotency key: the same on every try.
    pub key: String,
    /// The JSON document, as sent.
    pub document: String,
    pub attempts: u32,
    /// Of the attempts, those that count toward `max_attempts`.
    pub refusals: u32,
}

/// What waits for one destination, for `status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DestinationStanding {
    pub destination: String,
    pub pending: usize,
    pub parked: usize,
    /// The oldest waiting notification's last error, if it has one.
    pub last_error: Option<String>,
    /// When the next may go, if the server asked for room.
    pub not_before: Option<DateTime<Utc>>,
}

impl Tx<'_> {
    /// Queues a notification for a destination. The key names the notification (conversation,
    /// state, last message covered); only an export whose ids were renumbered can make one come
    /// round again, and a new notification must never reuse it: it gets a suffix, in the
    /// document too.
    pub fn queue_delivery(
        &self,
        destination: &str,
        conversation_id: &str,
        state: &str,
        key: &str,
        document: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.insert_delivery(destination, conversation_id, state, key, document, now, "pending")
    }

    /// Records a notification for a destination that takes the bot's digest (`digest = true`):
    /// held (`digest`) until the digest it is listed in is queued, then listed in the digest's
    /// notification (`digest_deliveries`), never sent one by one.
    pub fn hold_delivery_for_digest(
        &self,
        destination: &str,
        conversation_id: &str,
        state: &str,
        key: &str,
        document: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.insert_delivery(destination, conversation_id, state, key, document, now, "digest")
    }

    #[allow(clippy::too_many_arguments)]
    fn insert_delivery(
        &self,
        destination: &str,
        conversation_id: &str,
        state: &str,
        key: &str,
        document: &str,
        now: DateTime<Utc>,
        status: &str,
    ) -> Result<()> {
        let mut key = key.to_owned();
        let mut document = document.to_owned();
        let taken = |k: &str| -> Result<bool> {
            self.0.one(
                "SELECT EXISTS (SELECT 1 FROM deliveries WHERE destination = ?1 AND key = ?2)",
                args![destination, k],
            )
        };
        let mut n = 1;
        while taken(&key)? {
            n += 1;
            let next = format!("{key}.{n}");
            document = document.replacen(&format!("\"{key}\""), &format!("\"{next}\""), 1);
            key = next;
        }
        self.0.execute(
            "INSERT INTO deliveries (destination, conversation_id, state, key, created_at, document, status) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            args![destination, conversation_id, state, key, now.timestamp_millis(), document, status],
        )?;
        Ok(())
    }
}

/// A notification's columns, in `delivery`'s order.
const DELIVERY: &str = "id, destination, conversation_id, state, key, coalesce(document, ''), attempts, refusals";

/// A notification as `DELIVERY` reads it.
fn delivery(r: &Row) -> Result<Delivery> {
    Ok(Delivery {
        id: r.get(0)?,
        destination: r.get(1)?,
        conversation_id: r.get(2)?,
        state: r.get(3)?,
        key: r.get(4)?,
        document: r.get(5)?,
        attempts: r.get(6)?,
        refusals: r.get(7)?,
    })
}

/// The notifications about chats waiting for a destination that the flood guard has not judged:
/// those queued since its last run (or by a run that stopped before it).
const UNGUARDED: &str = "destination = ?1 AND status = 'pending' \
                         AND state IN ('completed', 'abandoned', 'resumed', 'ended') \
                         AND id > (SELECT guarded_through FROM deliveries_guard WHERE id = 1)";

impl Tx<'_> {
    /// Queues the flood guard's summary for `destination`, filed under `conversation_id`
    /// (`summary:...`) with its own idempotency key, in place of the notifications `listed`, which
    /// are never sent one by one: a conversation's thread there starts with its next one.
    /// A digest's notification (`state` `digest`) lists the notifications held for it the same way.
    #[allow(clippy::too_many_arguments)]
    pub fn summarise_deliveries(
        &self,
        destination: &str,
        conversation_id: &str,
        state: &str,
        key: &str,
        document: &str,
        listed: &[Delivery],
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.queue_delivery(destination, conversation_id, state, key, document, now)?;
        for d in listed {
            self.0.execute(
                "UPDATE deliveries SET status = 'summarised', last_error = 'listed in ' || ?2, document = NULL \
                 WHERE id = ?1 AND status IN ('pending', 'digest')",
                args![d.id, key],
            )?;
        }
        Ok(())
    }
}

impl State {
    /// How many notifications about chats the flood guard has not judged wait for `destination`.
    pub fn count_unguarded_deliveries(&self, destination: &str) -> Result<usize> {
        let sql = format!("SELECT count(*) FROM deliveries WHERE {UNGUARDED}");
        self.context(self.conn.one(&sql, args![destination]))
    }

    /// Those notifications after the first `skip`, oldest first.
    pub fn unguarded_deliveries_after(&self, destination: &str, skip: usize) -> Result<Vec<Delivery>> {
        let sql = format!("SELECT {DELIVERY} FROM deliveries WHERE {UNGUARDED} ORDER BY id LIMIT -1 OFFSET ?2");
        self.context(self.conn.query_map(&sql, args![destination, skip as i64], delivery))
    }

    /// The notifications held for the digest of these listed conversations ((conversation,
    /// listed at): a notification held with its listing, in the same transaction), oldest first.
    pub fn deliveries_held_for_digest(&self, listed: &[(String, DateTime<Utc>)]) -> Result<Vec<Delivery>> {
        let sql = format!(
            "SELECT {DELIVERY} FROM deliveries WHERE status = 'digest' AND conversation_id = ?1 AND created_at = ?2 ORDER BY id"
        );
        let mut out = Vec::new();
        for (conversation, at) in listed {
            out.extend(self.context(self.conn.query_map(
                &sql,
                args![conversation, at.timestamp_millis()],
                delivery,
            ))?);
        }
        out.sort_by_key(|d| d.id);
        Ok(out)
    }

    /// Everything queued for the destinations so far has been judged by their flood guard.
    pub fn mark_deliveries_guarded(&self) -> Result<()> {
        let sql = "UPDATE deliveries_guard SET guarded_through = (SELECT max(id) FROM deliveries) \
                   WHERE (SELECT max(id) FROM deliveries) > guarded_through";
        self.context(self.conn.execute(sql, args![])).map(drop)
    }

    /// A page of the notifications waiting for `destination`, oldest first, after row `after`.
    pub fn pending_deliveries(&self, destination: &str, after: i64, limit: usize) -> Result<Vec<Delivery>> {
        let sql = format!(
            "SELECT {DELIVERY} FROM deliveries WHERE destination = ?1 AND status = 'pending' AND id > ?2 ORDER BY id LIMIT ?3"
        );
        self.context(self.conn.query_map(&sql, args![destination, after, limit as i64], delivery))
    }

    /// Marks a notification delivered, and records the thread it started (Slack's message
    /// `ts`), in one transaction.
    pub fn mark_delivered(&mut self, d: &Delivery, root: Option<&str>, at: DateTime<Utc>) -> Result<()> {
        self.record_sent(|tx| {
            tx.0.execute(
                "UPDATE deliveries SET status = 'sent', sent_at = ?2, attempts = attempts + 1, last_error = NULL, \
                 not_before = NULL, document = NULL WHERE id = ?1",
                args![d.id, at.timestamp_millis()],
            )?;
            if let Some(root) = root {
                tx.0.execute(
                    "INSERT OR IGNORE INTO destination_threads (destination, conversation_id, root) VALUES (?1, ?2, ?3)",
                    args![d.destination, d.conversation_id, root],
                )?;
            }
            Ok(())
        })
    }

    /// Records a failed try, one that `counts` toward `max_attempts` or not, and when the next
    /// may be made; `park` takes it out of the queue for good.
    pub fn mark_delivery_failed(
        &self,
        id: i64,
        error: &str,
        counts: bool,
        park: bool,
        not_before: Option<DateTime<Utc>>,
    ) -> Result<()> {
        self.context(self.conn.execute(
            "UPDATE deliveries SET attempts = attempts + 1, refusals = refusals + ?3, last_error = ?2, \
             not_before = ?5, status = CASE WHEN ?4 THEN 'parked' ELSE status END WHERE id = ?1",
            args![id, error, i64::from(counts), park, not_before.map(|t| t.timestamp_millis())],
        ))?;
        Ok(())
    }

    /// The thread a conversation has at a destination, if its first notification went.
    pub fn thread_root(&self, destination: &str, conversation_id: &str) -> Result<Option<String>> {
        self.context(self.conn.query_opt(
            "SELECT root FROM destination_threads WHERE destination = ?1 AND conversation_id = ?2",
            args![destination, conversation_id],
            |r| r.get(0),
        ))
    }

    /// Until when a destination asked for room (or is backed off after an outage): the latest
    /// `not_before` of what waits for it.
    pub fn destination_waits_until(&self, destination: &str) -> Result<Option<DateTime<Utc>>> {
        let latest: Option<i64> = self.context(self.conn.one(
            "SELECT max(not_before) FROM deliveries WHERE destination = ?1 AND status = 'pending'",
            args![destination],
        ))?;
        Ok(latest.map(millis))
    }

    /// Notifications delivered to a destination at or after `since`.
    pub fn delivered_since(&self, destination: &str, since: DateTime<Utc>) -> Result<usize> {
        self.context(self.conn.one(
            "SELECT count(*) FROM deliveries WHERE destination = ?1 AND status = 'sent' AND sent_at >= ?2",
            args![destination, since.timestamp_millis()],
        ))
    }

    /// Notifications waiting for one destination (not parked).
    pub fn count_pending_deliveries_to(&self, destination: &str) -> Result<usize> {
        self.context(
            self.conn.one(
                "SELECT count(*) FROM deliveries WHERE destination = ?1 AND status = 'pending'",
                args![destination],
            ),
        )
    }

    /// The notifications parked at `destination`, the latest first, at most `limit`.
    pub fn parked_deliveries(&self, destination: &str, limit: usize) -> Result<Vec<ParkedDelivery>> {
        let rows = self.conn.query_map(
            "SELECT conversation_id, state, last_error FROM deliveries WHERE destination = ?1 AND status = 'parked' \
             ORDER BY id DESC LIMIT ?2",
            args![destination, limit as i64],
            |r| Ok(ParkedDelivery { conversation_id: r.get(0)?, state: r.get(1)?, reason: r.get(2)? }),
        );
        self.context(rows)
    }

    /// What waits for each destination that has anything waiting or parked.
    pub fn destination_standings(&self) -> Result<Vec<DestinationStanding>> {
        let rows = self.conn.query_map(
            "SELECT destination, count(*) FILTER (WHERE status = 'pending'), \
             count(*) FILTER (WHERE status = 'parked'), \
             (SELECT last_error FROM deliveries l WHERE l.destination = d.destination AND l.status = 'pending' \
              ORDER BY id LIMIT 1), \
             (SELECT max(not_before) FROM deliveries l WHERE l.destination = d.destination \
              AND l.status = 'pending') \
             FROM deliveries d WHERE status IN ('pending', 'parked') GROUP BY destination ORDER BY destination",
            args![],
            |r| {
                Ok(DestinationStanding {
                    destination: r.get(0)?,
                    pending: r.get(1)?,
                    parked: r.get(2)?,
                    last_error: r.get(3)?,
                    not_before: r.get::<Option<i64>>(4)?.map(millis),
                })
            },
        );
        self.context(rows)
    }
}
