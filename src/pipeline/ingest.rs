//! Ingest: fold the messages written since the last run into the state, after making sure the
//! source is still the one read last time.
//!
//! Export schema v1 promises ids that only grow, and a run reads `id > watermark`. A runtime
//! that breaks the promise (an export restored from a backup, regenerated with other ids, rows
//! inserted below the watermark) would make a run silently deaf. So every run checks the row at
//! the watermark (one primary-key lookup) and the highest id, and once an hour counts the rows
//! at or below the watermark. Rows deleted are routine (a visitor's chat erased on request):
//! below the watermark they change nothing; when they were the newest read, and the store hands
//! their ids out again (SQLite), reading goes on from the latest message read that is still
//! there (`erased`), so each new row is read once. When anything else differs, one warning
//! says what was found, and the state is lined up with the source by content (`rebase`):
//! messages an email covered are recognised by their time, not their id, so nothing is lost
//! and nothing is sent twice.

use std::collections::HashMap;

use anyhow::Result;
use chrono::{DateTime, TimeDelta, Utc};

use super::{INGEST_BATCH, PAGE};
use crate::config::Config;
use crate::domain::{Activity, Conversation, Message, Tracked};
use crate::progress;
use crate::source::Source;
use crate::state::{Covered, Progress, Resync, State};

/// How far ahead of the run's clock a message may be dated before it is not trusted for
/// idleness (clocks of the runtime and the cron host differ a little, never by an hour).
const CLOCK_TOLERANCE: TimeDelta = TimeDelta::hours(1);
/// How often the rows below the watermark are counted: one pass over the primary key.
const AUDIT_EVERY: TimeDelta = TimeDelta::hours(1);

/// What the source looks like now, where the state says it was read through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub last_id: i64,
    /// The row at the watermark (none: no such row).
    pub anchor: Option<String>,
    /// Rows at or below the watermark, when counted this run.
    pub count: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Continuity {
    /// The source is as it was read.
    Same,
    /// Nothing wrong, but the state lacks a reference to check against next time (a state
    /// written by an earlier version, or rows deleted below the watermark): record these.
    Adopt { anchor: Option<String>, count: Option<i64> },
    /// The last rows read are gone, or are other rows now: the newest rows were deleted (a chat
    /// erased; SQLite hands their ids out again), or the store was restored or regenerated.
    /// `erased` tells the first from the rest; the reason, for the warning when it is the rest.
    Tail(String),
    /// The source's ids changed under us; the reason, for the warning.
    Broken(String),
}

/// Pure: compares what the state read with what the source holds now.
pub fn continuity(read: &Progress, now: &Probe) -> Continuity {
    let w = read.watermark;
    if w == 0 {
        return Continuity::Same;
    }
    if now.last_id < w {
        return Continuity::Tail(format!(
            "its highest message id is now {}, below {w}, the last one read: it was restored from a backup or regenerated",
            now.last_id
        ));
    }
    match (&read.anchor, &now.anchor) {
        (None, _) => return Continuity::Adopt { anchor: now.anchor.clone(), count: now.count },
        (Some(_), None) => {
            return Continuity::Tail(format!("the message at id {w}, the last one read, is gone: ids were renumbered"));
        }
        (Some(was), Some(is)) if was != is => {
            return Continuity::Tail(format!(
                "the message at id {w}, the last one read, is another message now: ids were renumbered"
            ));
        }
        _ => {}
    }
    match (read.read_count, now.count) {
        (Some(was), Some(is)) if is > was => Continuity::Broken(format!(
            "{} message row(s) appeared with ids at or below {w}, the last one read: rows were inserted out of id order",
            is - was
        )),
        (was, Some(is)) if was != Some(is) => Continuity::Adopt { anchor: None, count: Some(is) },
        _ => Continuity::Same,
    }
}

/// Pure: where a conversation stands in a source whose ids changed, from its messages there
/// (in id order) and what the state knew of it before: (covered time, covered id) or nothing.
/// Messages up to the covered time were covered; one never tracked is new, unless its last
/// activity is older than `horizon` (the first-run rule: history is recorded, not emailed).
pub fn rebase(before: Option<Covered>, messages: &[Message], now: DateTime<Utc>, horizon: DateTime<Utc>) -> Resync {
    let trusted = |m: &Message| trusted_time(m.sent_at, now);
    let last_message = messages.iter().map(|m| m.id).max().unwrap_or(0);
    let last_activity = messages.iter().map(trusted).max().unwrap_or(now);
    let (covered_through, covered_at, emails) = match before {
        None if last_activity < horizon => (last_message, Some(last_activity), 0),
        None => (0, None, 0),
        Some(Covered { at: Some(at), emails, .. }) => {
            // At the precision the state keeps (milliseconds; `kept_millis` rounds up, states
            // before it rounded down): a store's finer stamps (Rasa's microseconds) must not make
            // a covered message look later than what covered it. One turn is written at once, so
            // no message of a later turn falls in the same millisecond.
            let kept = at.timestamp_millis();
            let through =
                messages.iter().filter(|m| trusted(m).timestamp_millis() <= kept).map(|m| m.id).max().unwrap_or(0);
            (through, Some(at), emails)
        }
        // Covered before its time was recorded (a state from before): the id is all there is.
        Some(Covered { at: None, through, emails }) => (through, None, emails),
    };
    let ended = messages.iter().any(|m| m.id > covered_through && m.ends_flow());
    Resync { tracked: Tracked { last_message, last_activity, ended, covered_through, emails }, covered_at }
}

/// A message's time as idleness may count it: one dated in the future counts as now.
fn trusted_time(sent_at: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
    if sent_at > now + CLOCK_TOLERANCE { now } else { sent_at }
}

/// Checks the source against the state, then folds the messages written since the last run
/// into the conversations they belong to. Returns how many were read.
/// With `learn_bots` (the silent-source alarm is on), it also records which bot each new
/// message is of, and each bot's latest message.
pub fn ingest(
    source: &dyn Source,
    state: &mut State,
    config: &Config,
    learn_bots: bool,
    big_runs: bool,
    now: DateTime<Utc>,
) -> Result<usize> {
    source.read_until(now);
    let read = state.progress()?;
    let audit = now - read.audited_at >= AUDIT_EVERY && read.watermark > 0;
    let probe = Probe {
        last_id: source.last_message_id()?,
        anchor: if read.watermark > 0 { source.anchor_at(read.watermark)? } else { None },
        count: if audit { Some(audited_count(source, state, read.watermark)?) } else { None },
    };
    match continuity(&read, &probe) {
        Continuity::Same => {}
        Continuity::Adopt { anchor, count } => state.atomically(|tx| tx.set_anchor(anchor.as_deref(), count, None))?,
        Continuity::Tail(_) if let Some(erased) = erased(source, state, read.watermark, probe.last_id)? => {
            // Routine (a visitor's chat erased on request): said with -v, not a warning for cron.
            let n = erased.gone.len();
            log::info!(
                "{}: the newest events read, up to id {}, were deleted with {n} conversation{} (a chat erased?); \
                 reading again from id {}: nothing is lost or sent twice",
                source.name(),
                read.watermark,
                if n == 1 { "" } else { "s" },
                erased.from + 1,
            );
            let anchor = source.anchor_at(erased.from)?.unwrap_or_default();
            // As the hourly count will take it: rows within the window counted as remembered.
            let count = audited_count(source, state, erased.from)?;
            state.atomically(|tx| tx.rewind(erased.from, &anchor, count, &erased.gone, &erased.reused, now))?;
        }
        Continuity::Tail(why) | Continuity::Broken(why) => {
            log::warn!(
                "{}: {why}; reading it again whole and recognising what was emailed by time, so nothing is lost or sent twice",
                source.name()
            );
            resync(source, state, config, now)?;
        }
    }
    if audit {
        state.atomically(|tx| tx.set_anchor(None, None, Some(now)))?;
    }
    let watermark = state.progress()?.watermark;
    // A row committed late, behind ids already read, is read by going back over the window;
    // the ids read there before are left out.
    let window = source.commit_window();
    let after = (watermark - window).max(0);
    let read_before = if window > 0 { state.recent_keys(after)? } else { Default::default() };
    let behind = probe.last_id.saturating_sub(watermark);
    let bar = progress::bar(behind as u64, "reading messages");
    let reading = Reading { source, learn_bots, now, window, read_before: &read_before, bar: &bar };
    // A first read of a big store: counted first (ids are positions, not row numbers, in some
    // stores: Flowise's are times), only when the positions say it may be big.
    let rows = match big_runs && watermark == 0 && behind >= BIG_RUN {
        true => source.count_through(probe.last_id)?,
        false => 0,
    };
    if rows >= BIG_RUN {
        // Every batch in one transaction, in a bigger page cache. With random ids (UUIDs,
        // cuids) each batch's conversations are spread over the whole of the state's B-trees,
        // so a transaction per batch wrote a large part of their pages again each time (issue
        // 27: 110 GB written for a 207 MB state).
        state.for_big_run(rows)?;
        log::debug!("a first read of a big store: one transaction");
        state.in_one_transaction(|state| {
            let total = reading.read(state, after, watermark)?;
            // It counted every row as it read them: the hourly count (a pass over the whole
            // store, a second at a million chats) is due an hour from now, not at the next run.
            state.atomically(|tx| tx.set_anchor(None, None, Some(now)))?;
            Ok(total)
        })
    } else {
        reading.read(state, after, watermark)
    }
}

/// Rows a first read must find for its reading to be one transaction.
const BIG_RUN: i64 = 100_000;

/// What reading the new messages needs besides the state and where to start.
struct Reading<'a> {
    source: &'a dyn Source,
    learn_bots: bool,
    now: DateTime<Utc>,
    window: i64,
    read_before: &'a std::collections::HashSet<i64>,
    bar: &'a indicatif::ProgressBar,
}

impl Reading<'_> {
    /// Folds the messages after `after` into the state, a batch per transaction, moving the
    /// watermark (at `watermark` now) past each. Returns how many were read.
    fn read(&self, state: &mut State, mut after: i64, mut watermark: i64) -> Result<usize> {
        let Reading { source, learn_bots, now, window, read_before, bar } = *self;
        let mut total = 0;
        loop {
            let batch = source.activity_after(after, INGEST_BATCH, read_before)?;
            let Some(through) = batch.through else {
                bar.finish_and_clear();
                if source.finishes_in_place() {
                    mark_finished(source, state)?;
                }
                return Ok(total);
            };
            after = through;
            if batch.rows == 0 {
                continue;
            }
            let through = through.max(watermark);
            total += batch.activity.len();
            bar.inc(through.saturating_sub(watermark) as u64);
            let mut activity = batch.activity;
            for a in &mut activity {
                let trusted = trusted_time(a.sent_at, now);
                if trusted != a.sent_at {
                    log::warn!(
                        "{}: messages row {}: sent_at {} is ahead of the clock ({}); its conversation's idle time counts from now",
                        source.name(),
                        a.id,
                        a.sent_at.to_rfc3339(),
                        now.to_rfc3339()
                    );
                    a.sent_at = trusted;
                }
            }
            // In key order, so that the state's pages are written in order.
            let mut seen: Vec<_> = crate::domain::fold(&activity).into_iter().collect();
            seen.sort_unstable_by_key(|(id, _)| *id);
            let bots = if learn_bots { bot_activity(source, state, &activity)? } else { BotActivity::default() };
            state.atomically(|tx| {
                // The anchor is the row at the watermark: not a late row read behind it.
                let anchor = (batch.ids.last().map(|(id, _)| *id) == Some(through)).then_some(batch.anchor.as_str());
                tx.track(seen.iter().map(|(id, s)| (*id, *s)), through, anchor, batch.rows)?;
                for c in &bots.learned {
                    tx.identify(&c.id, &c.visitor_id, &c.bot_id)?;
                }
                for (bot, (name, at)) in &bots.latest {
                    tx.bot_active(bot, name.as_deref(), *at)?;
                }
                if window > 0 { tx.remember(&batch.ids, through, window) } else { Ok(()) }
            })?;
            watermark = through;
        }
    }
}

/// The rows at or below `watermark` a run should have read by now, to hold against the rows
/// read (`read_count`): those the store has behind the commit window, and those read within it
/// (each remembered with its key; one deleted since counts on both sides). A row within the
/// window not read yet (committed late: normal on PostgreSQL, and for Flowise a visitor's
/// question written minutes after it was stamped) is read by this run's pass over the window,
/// not taken for a row inserted out of order; one behind the window is (`Continuity::Broken`).
/// Where there is no window (SQLite), every row at or below the watermark.
fn audited_count(source: &dyn Source, state: &State, watermark: i64) -> Result<i64> {
    let window = source.commit_window();
    if window == 0 {
        return source.count_through(watermark);
    }
    let behind = watermark.saturating_sub(window);
    Ok(source.count_through(behind)? + state.recent_count(behind, watermark)?)
}

/// Which bot the messages of a batch are of: each bot's latest message in it (and its name, when
/// read), and the conversations the state did not know the bot of, as the source has them.
#[derive(Default)]
struct BotActivity {
    latest: HashMap<String, (Option<String>, DateTime<Utc>)>,
    learned: Vec<Conversation>,
}

/// The state knows the bot of every conversation it has judged or read here before; only the
/// new ones are asked of the source.
fn bot_activity(source: &dyn Source, state: &State, activity: &[Activity]) -> Result<BotActivity> {
    let mut ids: Vec<&str> = activity.iter().map(|a| a.conversation_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let known = state.bots_of(&ids)?;
    let unknown: Vec<&str> = ids.into_iter().filter(|id| !known.contains_key(*id)).collect();
    let learned = if unknown.is_empty() { HashMap::new() } else { source.conversations(&unknown)? };
    let mut out = BotActivity::default();
    for a in activity {
        let (bot, name) = match (known.get(&a.conversation_id), learned.get(&a.conversation_id)) {
            (Some(bot), _) => (bot.as_str(), None),
            (None, Some(c)) => (c.bot_id.as_str(), Some(&c.bot_name)),
            // No conversations row yet: its bot is learned when the row comes.
            (None, None) => continue,
        };
        let entry = out.latest.entry(bot.to_owned()).or_insert((None, a.sent_at));
        entry.1 = entry.1.max(a.sent_at);
        if entry.0.is_none() {
            entry.0 = name.cloned();
        }
    }
    out.learned = learned.into_values().collect();
    Ok(out)
}

/// Marks the open conversations the source says are finished as ended: for a store that
/// records completion in place, not as a message. Asked of the conversations with messages no
/// email covered yet, in pages through the state's open index: what is still in progress, not
/// every conversation ever seen.
fn mark_finished(source: &dyn Source, state: &mut State) -> Result<()> {
    let mut after = String::new();
    loop {
        let page = state.unfinished(&after, PAGE)?;
        let Some(last) = page.last() else { return Ok(()) };
        after = last.clone();
        let ids: Vec<&str> = page.iter().map(String::as_str).collect();
        let finished = source.finished_among(&ids)?;
        if !finished.is_empty() {
            state.atomically(|tx| tx.mark_ended(&finished))?;
        }
    }
}

/// How many conversations a deletion at the end of the store may have taken before it is read
/// again whole instead (`erased`): an erased visitor's chats, not a store cut back a day.
const ERASED_MAX: usize = 100;

/// The newest rows read were deleted, and these conversations with them; the store is still the
/// one read through `from`.
#[derive(Debug)]
struct Erased {
    from: i64,
    gone: Vec<String>,
    /// Of those, the names a new chat has now.
    reused: Vec<String>,
}

/// Whether the last rows read are gone because they were deleted, conversations whole (a chat
/// erased: Rasa's `DELETE /conversations/<id>/tracker`), and the store is otherwise the one read:
/// the latest message read that the store still has, as read (its id, of its conversation), is
/// where reading goes on; every conversation whose last message read came after it must be gone
/// from the store entirely. Rows after it are new (ids grow from the highest left, SQLite
/// reusing the freed ones) or not messages, so reading on from it reads each new one once. A
/// conversation gone that the store has again must begin after what was read of it: a new chat
/// on the ids handed out again, named as the erased one was.
/// None otherwise (a backup restored, ids renumbered, part of a chat gone): `resync`.
fn erased(source: &dyn Source, state: &State, watermark: i64, last_id: i64) -> Result<Option<Erased>> {
    let top = watermark.min(last_id);
    let mut gone: Vec<String> = Vec::new();
    for (id, last, activity) in state.latest_read(ERASED_MAX + 1)? {
        if last <= top {
            // The same message: its id, its conversation, and no later than what was read of
            // it (a new chat on ids handed out again can have the erased one's name).
            let found = source.activity_after(last - 1, 1, &Default::default())?;
            let same = |a: &Activity| {
                a.id == last && a.conversation_id == id && a.sent_at.timestamp_millis() <= activity.timestamp_millis()
            };
            if found.activity.first().is_some_and(same) {
                let ids: Vec<&str> = gone.iter().map(String::as_str).collect();
                let mut reused = Vec::new();
                let present = if ids.is_empty() { Default::default() } else { source.conversations(&ids)? };
                for (id, c) in present {
                    // A conversation of that name begins after the last message read of the one
                    // gone: a new chat named as the erased one was (its ids handed out again).
                    let Some(before) = state.conversation(&id)? else { continue };
                    if c.started_at.is_none_or(|t| t.to_utc() <= before.tracked.last_activity) {
                        return Ok(None);
                    }
                    reused.push(id);
                }
                return Ok(Some(Erased { from: last, gone, reused }));
            }
        }
        gone.push(id);
    }
    Ok(None)
}

/// Lines the state up with a source whose ids changed: one pass over the whole source, in one
/// transaction. A one-off, when `continuity` says so.
fn resync(source: &dyn Source, state: &mut State, config: &Config, now: DateTime<Utc>) -> Result<()> {
    let through = source.last_message_id()?;
    let anchor = source.anchor_at(through)?.unwrap_or_default();
    let horizon = now - config.first_run_horizon.0;
    let bar = progress::bar(source.about_how_many_conversations(), "re-reading chats");
    state.atomically(|tx| {
        tx.begin_resync()?;
        let read = source.each_conversation(through, &mut |id, _, messages| {
            bar.inc(1);
            tx.rebase(id, &rebase(tx.covered(id)?, messages, now, horizon))
        })?;
        tx.finish_resync(through, &anchor, read, now)
    })?;
    bar.finish_and_clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Author;

    fn progress(watermark: i64, anchor: Option<&str>, read_count: Option<i64>) -> Progress {
        Progress {
            watermark,
            baseline_done: true,
            anchor: anchor.map(str::to_owned),
            read_count,
            audited_at: DateTime::UNIX_EPOCH,
        }
    }

    fn probe(last_id: i64, anchor: Option<&str>, count: Option<i64>) -> Probe {
        Probe { last_id, anchor: anchor.map(str::to_owned), count }
    }

    #[test]
    fn continuity_table() {
        use Continuity::*;
        let read = progress(100, Some("c1|t"), Some(100));
        let broken = |c: &Continuity| matches!(c, Broken(_));
        let tail = |c: &Continuity| matches!(c, Tail(_));
        assert_eq!(continuity(&progress(0, None, Some(0)), &probe(5, None, None)), Same);
        assert_eq!(continuity(&read, &probe(150, Some("c1|t"), None)), Same);
        assert_eq!(continuity(&read, &probe(150, Some("c1|t"), Some(100))), Same);
        assert!(tail(&continuity(&read, &probe(90, None, None))), "deleted or restored: max id below the watermark");
        assert!(tail(&continuity(&read, &probe(150, Some("c9|u"), None))), "its id handed out again, or renumbered");
        assert!(tail(&continuity(&read, &probe(150, None, None))), "the row read last is gone");
        assert!(broken(&continuity(&read, &probe(150, Some("c1|t"), Some(103)))), "inserted below");
        assert_eq!(
            continuity(&read, &probe(150, Some("c1|t"), Some(97))),
            Adopt { anchor: None, count: Some(97) },
            "rows deleted below the watermark: nothing to read again"
        );
        assert_eq!(
            continuity(&progress(100, None, None), &probe(150, Some("c1|t"), None)),
            Adopt { anchor: Some("c1|t".into()), count: None },
            "a state from before anchors were kept"
        );
    }

    fn m(id: i64, minute: i64, author: Author, input_type: Option<&str>) -> Message {
        Message {
            id,
            sent_at: DateTime::from_timestamp(1_790_000_000 + minute * 60, 0).unwrap(),
            author,
            gambit_id: None,
            input_type: input_type.map(str::to_owned),
            field: None,
            body: String::new(),
        }
    }

    #[test]
    fn rebase_recognises_covered_messages_by_time() {
        let at = |minute: i64| DateTime::from_timestamp(1_790_000_000 + minute * 60, 0).unwrap();
        let now = at(2000);
        let horizon = at(2000 - 24 * 60);
        // Renumbered: the same three messages, covered through minute 2; then one new that ends.
        let chat = [
            m(501, 0, Author::Bot, None),
            m(502, 1, Author::Visitor, None),
            m(503, 2, Author::Bot, None),
            m(504, 900, Author::Bot, Some("end_conversation")),
        ];
        let before = Some(Covered { at: Some(at(2)), through: 3, emails: 1 });
        let r = rebase(before, &chat, now, horizon);
        assert_eq!(
            r.tracked,
            Tracked { last_message: 504, last_activity: at(900), ended: true, covered_through: 503, emails: 1 }
        );
        let settled = rebase(before, &chat[..3], now, horizon);
        assert!(!settled.tracked.has_uncovered(), "nothing new: nothing to send");
        let fresh = rebase(None, &chat, now, horizon);
        assert_eq!((fresh.tracked.covered_through, fresh.covered_at), (0, None), "never seen, recent: new");
        let old = rebase(None, &chat[..3], now, horizon);
        assert_eq!(old.tracked.covered_through, 503, "never seen, older than the horizon: history");
        let future = [m(7, 10_000_000, Author::Visitor, None)];
        assert_eq!(rebase(None, &future, now, horizon).tracked.last_activity, now, "the future counts as now");
    }

    #[test]
    fn rebase_recognises_covered_messages_stamped_finer_than_the_state_keeps() {
        // Rasa's stamps: microseconds. The email covered through 12:00:00.109600.
        let t = |micros: i64| DateTime::from_timestamp_micros(1_790_000_000_000_000 + micros).unwrap();
        let msg = |id: i64, micros: i64| Message { sent_at: t(micros), ..m(id, 0, Author::Visitor, None) };
        let chat = [msg(1, 0), msg(2, 109_600), msg(3, 90_000_000)];
        let now = t(100_000_000);
        let horizon = now - TimeDelta::days(1);
        let ms = t(109_600).timestamp_millis();
        for kept in [ms + 1, ms] {
            // As this version keeps it (rounded up), and as versions before did (rounded down).
            let at = DateTime::from_timestamp_millis(kept).unwrap();
            let r = rebase(Some(Covered { at: Some(at), through: 2, emails: 1 }), &chat, now, horizon);
            assert_eq!(r.tracked.covered_through, 2, "kept as {kept}");
            assert!(r.tracked.has_uncovered(), "message 3 is new");
        }
    }
}
