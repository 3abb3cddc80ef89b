//! Digests, chosen by the owner (`[notify] digest`, per bot too): conversations reaching one of
//! the digest's states without any of its `unless_fields` are not emailed one by one but listed
//! in one email a day per set of recipients, at `at` in the bot's time zone. A listed
//! conversation is covered; if it comes back and finishes, or leaves a contact field, it gets its
//! own email, starting its own thread with everything so far. A digest is one outbox email like
//! any other (a Message-ID from its key and day, retried, never duplicated); an empty one is not
//! sent. A destination that takes the digest (`digest = true`) gets, queued with it, one
//! notification listing the chats it serves, each one's notification held for it until then.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::config::Config;
use crate::config::{Routing, Settings};
use crate::destination::document;
use crate::domain::{
    Author, ChatState, Conversation, Transcript,
    thread::{self, Thread},
};
use crate::mail::notice::{self, Block, Notice};
use crate::mail::render::visitor_display;
use crate::state::{Delivery, DigestItem, State};

/// What a digest says of one conversation, recorded when it is listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub identifier: String,
    pub visitor: String,
    pub bot_id: String,
    pub bot: String,
    pub state: ChatState,
    pub step: Option<String>,
    pub question: Option<String>,
    pub fields: Vec<(String, String)>,
    /// Unix milliseconds.
    pub last_activity: i64,
    pub route: Route,
}

/// Where and when a digest goes: one digest per route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub to: String,
    pub cc: String,
    pub at: String,
    pub time_zone: String,
}

impl Route {
    /// Where and when `settings`' digest goes now: the bot's recipients, and the digest's time
    /// and zone. A bot whose digest was turned off since its chats were listed keeps the time
    /// and zone they were listed for (`listed`), with today's recipients: nothing listed is lost.
    fn of(settings: &Settings, listed: Option<&Route>) -> Option<Self> {
        let mailboxes =
            |list: &[lettre::message::Mailbox]| list.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        let (at, time_zone) = match (&settings.notify.digest, listed) {
            (Some(rule), _) if !rule.states.is_empty() => {
                (rule.at.format("%H:%M").to_string(), settings.time_zone.name().to_owned())
            }
            (_, Some(listed)) => (listed.at.clone(), listed.time_zone.clone()),
            (_, None) => return None,
        };
        Some(Route { to: mailboxes(&settings.to), cc: mailboxes(&settings.cc), at, time_zone })
    }

    /// The digest's key in the state: the same recipients, time and zone share one.
    fn key(&self) -> String {
        let text = format!("{}\u{1f}{}\u{1f}{}\u{1f}{}", self.to, self.cc, self.at, self.time_zone);
        let hex: String = Sha256::digest(text.as_bytes())[..6].iter().map(|b| format!("{b:02x}")).collect();
        format!("digest:{hex}")
    }
}

/// Pure: whether a conversation due an email in `state` goes to the digest instead: the bot has
/// a digest for that state, the visitor gave none of its `unless_fields`, and the conversation
/// has no thread of its own yet. Returns the digest's key and the entry.
pub fn listing(
    settings: &Settings,
    state: ChatState,
    conversation: &Conversation,
    transcript: &Transcript,
    thread: &Thread,
) -> Option<(String, Entry)> {
    let rule = settings.notify.digest.as_ref()?;
    let fields = crate::domain::given_fields(&transcript.messages);
    let has_contact = rule.unless_fields.iter().any(|u| fields.iter().any(|(n, _)| n == u));
    if !rule.states.contains(&state) || has_contact || !thread.message_ids.is_empty() {
        return None;
    }
    let last_bot = transcript.messages.iter().rev().find(|m| m.author == Author::Bot && !m.ends_flow());
    let route = Route::of(settings, None)?;
    let entry = Entry {
        identifier: thread::identifier(&conversation.id),
        visitor: visitor_display(&transcript.messages),
        bot_id: conversation.bot_id.clone(),
        bot: conversation.bot_name.clone(),
        state,
        step: last_bot.and_then(|m| m.gambit_id.clone()),
        question: last_bot.map(|m| crate::domain::text::header(&m.body, 120)).filter(|q| !q.is_empty()),
        fields,
        last_activity: transcript.last_activity.unwrap_or_default().timestamp_millis(),
        route,
    };
    Some((entry.route.key(), entry))
}

/// Pure: the instant a digest of `route` is due on the day `now` falls on, where it goes.
fn due_at(route: &Route, now: DateTime<Utc>) -> Option<(DateTime<Utc>, String)> {
    let tz: Tz = route.time_zone.parse().ok()?;
    let at = NaiveTime::parse_from_str(&route.at, "%H:%M").ok()?;
    let day = now.with_timezone(&tz).date_naive();
    // A time skipped by a clock change counts from the hour after.
    let local = tz
        .from_local_datetime(&day.and_time(at))
        .earliest()
        .or_else(|| tz.from_local_datetime(&(day.and_time(at) + chrono::TimeDelta::hours(1))).earliest())?;
    Some((local.to_utc(), day.format("%Y-%m-%d").to_string()))
}

/// When the next digest falls due: the earliest time of day, today's if it is still to come
/// or tomorrow's, among the routes with conversations waiting; none when none wait. A watcher
/// sleeps no longer than this.
pub fn next_due(state: &State, routing: &Routing, now: DateTime<Utc>) -> anyhow::Result<Option<DateTime<Utc>>> {
    let mut next: Option<DateTime<Utc>> = None;
    for item in state.digests_waiting()? {
        let Ok(entry) = serde_json::from_str::<Entry>(&item.entry) else { continue };
        let Some(route) = Route::of(routing.for_bot(&entry.bot_id), Some(&entry.route)) else { continue };
        let due = match due_at(&route, now) {
            Some((due, _)) if due > now => Some(due),
            _ => due_at(&route, now + chrono::TimeDelta::days(1)).map(|(due, _)| due),
        };
        next = match (next, due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    Ok(next)
}

/// Queues each digest that is due: its time of day has come, and conversations were listed
/// before it (later ones wait for the next day's). Returns how many. A run that comes after the
/// time (cron was down at eight) still sends that day's, once. Where and when a listed chat goes
/// is its bot's settings as they are now, not as they were when it was listed: an owner who
/// moves a bot's chats to another inbox overnight gets the morning's digest there.
pub fn send_due(state: &mut State, routing: &Routing, config: &Config, now: DateTime<Utc>) -> anyhow::Result<usize> {
    let mut routes: BTreeMap<String, (Route, Vec<(DigestItem, Entry)>)> = BTreeMap::new();
    for item in state.digests_waiting()? {
        let Ok(entry) = serde_json::from_str::<Entry>(&item.entry) else { continue };
        let Some(route) = Route::of(routing.for_bot(&entry.bot_id), Some(&entry.route)) else { continue };
        routes.entry(route.key()).or_insert_with(|| (route, Vec::new())).1.push((item, entry));
    }
    let mut queued = 0;
    for (key, (route, items)) in routes {
        let Some((due, day)) = due_at(&route, now) else { continue };
        let (items, entries): (Vec<DigestItem>, Vec<Entry>) =
            items.into_iter().filter(|(i, _)| i.listed_at < due).unzip();
        let day_key = format!("{key}:{day}");
        if now < due || entries.is_empty() || state.has_notice(&day_key)? {
            continue;
        }
        let email = compose(&entries, &route, &day_key, &day, config, now);
        // The destinations that take the digest: one notification each, listing the chats held
        // for it, queued with the email.
        let listed: Vec<(String, DateTime<Utc>)> =
            items.iter().map(|i| (i.conversation_id.clone(), i.listed_at)).collect();
        let mut held: BTreeMap<String, Vec<Delivery>> = BTreeMap::new();
        for d in state.deliveries_held_for_digest(&listed)? {
            held.entry(d.destination.clone()).or_default().push(d);
        }
        let notes: Vec<(String, String, String, Vec<Delivery>)> = held
            .into_iter()
            .map(|(destination, rows)| {
                let doc = document::digest(rows.iter().map(super::flood::listed_item).collect(), &day, now);
                Ok((destination, doc.id.clone(), serde_json::to_string(&doc)?, rows))
            })
            .collect::<anyhow::Result<_>>()?;
        state.atomically(|tx| {
            tx.queue_digest(&day_key, &email, &items)?;
            for (destination, key, text, rows) in &notes {
                tx.summarise_deliveries(destination, &day_key, "digest", key, text, rows, now)?;
            }
            Ok(())
        })?;
        queued += 1;
    }
    Ok(queued)
}

fn compose(
    entries: &[Entry],
    route: &Route,
    key: &str,
    day: &str,
    config: &Config,
    now: DateTime<Utc>,
) -> crate::domain::Email {
    let tz: Tz = route.time_zone.parse().unwrap_or(Tz::UTC);
    let items = entries
        .iter()
        .map(|e| {
            let mut line = format!("#{} {}, {}: {}", e.identifier, e.visitor, e.bot, e.state.as_str());
            if let Some(step) = &e.step {
                line.push_str(&format!(" at step {step}"));
            }
            if let Some(q) = &e.question {
                line.push_str(&format!(" (\"{q}\")"));
            }
            let last = DateTime::from_timestamp_millis(e.last_activity).unwrap_or_default();
            let mut details = Vec::new();
            if !e.fields.is_empty() {
                details.push(e.fields.iter().map(|(n, v)| format!("{n}: {v}")).collect::<Vec<_>>().join("; "));
            }
            details.push(format!(
                "idle {} (last message {})",
                notice::span(now - last),
                last.with_timezone(&tz).format("%Y-%m-%d %H:%M")
            ));
            (line, details)
        })
        .collect();
    let one_bot = entries.iter().all(|e| e.bot_id == entries[0].bot_id);
    let (to, cc) = (notice::mailboxes(&route.to), notice::mailboxes(&route.cc));
    let n = entries.len();
    notice::compose(&Notice {
        kind: "digest",
        key,
        part: day,
        bot: one_bot.then(|| (entries[0].bot_id.as_str(), entries[0].bot.as_str())),
        title: &format!("Digest for {day}: {n} chat{}", if n == 1 { "" } else { "s" }),
        thread: &Thread::default(),
        body: vec![
            Block::Paragraph(format!(
                "{n} chat{} since the last digest, listed here instead of one email each (notify.digest). One that \
                 comes back and finishes, or leaves a contact, gets its own email. Times in {}.",
                if n == 1 { "" } else { "s" },
                tz.name()
            )),
            Block::List(items),
        ],
        now,
        from: &config.mail.from,
        to: &if to.is_empty() { config.mail.to.clone() } else { to },
        cc: &cc,
        domain: &config.message_id_domain(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(at: &str, tz: &str) -> Route {
        Route { to: "o@example.com".into(), cc: String::new(), at: at.into(), time_zone: tz.into() }
    }

    #[test]
    fn a_digest_is_due_at_its_local_time() {
        let now: DateTime<Utc> = "2026-11-25T06:30:00Z".parse().unwrap();
        let (due, day) = due_at(&route("08:00", "Europe/Berlin"), now).unwrap();
        assert_eq!((due.to_rfc3339(), day.as_str()), ("2026-11-25T07:00:00+00:00".into(), "2026-11-25"));
        let evening: DateTime<Utc> = "2026-11-25T03:00:00Z".parse().unwrap();
        let (due, day) = due_at(&route("08:00", "America/New_York"), evening).unwrap();
        assert_eq!(
            (due.to_rfc3339(), day.as_str()),
            ("2026-11-24T13:00:00+00:00".into(), "2026-11-24"),
            "still the 24th there"
        );
        // 02:30 does not exist in Berlin on 2026-03-29.
        let spring: DateTime<Utc> = "2026-03-29T12:00:00Z".parse().unwrap();
        assert_eq!(
            due_at(&route("02:30", "Europe/Berlin"), spring).unwrap().0.to_rfc3339(),
            "2026-03-29T01:30:00+00:00"
        );
        assert_ne!(route("08:00", "UTC").key(), route("09:00", "UTC").key());
    }
}
