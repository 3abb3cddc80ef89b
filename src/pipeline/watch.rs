//! The silent-source alarm: a bot whose chats used to arrive, and have not for `alert_if_silent`,
//! raises one alert email; when chats come in again, one all-clear in the same thread; nothing in
//! between. A quiet day and a dead runtime look the same in the inbox otherwise. The
//! destinations serving the bot get the same, as `bot.silent` and `bot.active`.
//!
//! Judged on the store's own times, after this run's ingest: each bot's latest message is the
//! newest `sent_at` read of its chats, whenever it was read. So a cron that was down does not
//! raise a false alarm on its first run back: that run reads what was written meanwhile first,
//! and only a bot with nothing written for `alert_if_silent` before the run's clock is silent.

use anyhow::Result;
use chrono::{DateTime, TimeDelta, Utc};

use crate::config::Config;
use crate::config::Routing;
use crate::destination::document::{self, BotDoc};
use crate::mail::notice::{self, Block, Notice};
use crate::state::{State, Watched};

/// What a bot's alarm calls for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alarm {
    /// Nothing since `since`, for at least the threshold.
    Raise { since: DateTime<Utc> },
    /// Chats are coming in again: the latest at `back`, after none since `since`.
    Clear { since: DateTime<Utc>, back: DateTime<Utc> },
}

/// Pure: what a watched bot's alarm calls for, under `threshold` (none: the alarm is off; one
/// raised before still clears).
pub fn alarm(bot: &Watched, threshold: Option<TimeDelta>, now: DateTime<Utc>) -> Option<Alarm> {
    match bot.silent_since {
        Some(since) if bot.last_activity > since => Some(Alarm::Clear { since, back: bot.last_activity }),
        Some(_) => None,
        None if threshold.is_some_and(|t| now - bot.last_activity >= t) => {
            Some(Alarm::Raise { since: bot.last_activity })
        }
        None => None,
    }
}

/// Queues the alerts and all-clears due. Returns how many.
pub fn watch(state: &mut State, routing: &Routing, config: &Config, now: DateTime<Utc>) -> Result<usize> {
    let mut queued = 0;
    for bot in state.watched()? {
        let settings = routing.for_bot(&bot.id);
        let threshold = settings.alert_if_silent.filter(|_| settings.enabled);
        let Some(alarm) = alarm(&bot, threshold, now) else { continue };
        let name = bot.name.as_deref().unwrap_or(&bot.id);
        let tz = settings.time_zone;
        let at = |t: DateTime<Utc>| format!("{} ({})", t.with_timezone(&tz).format("%Y-%m-%d %H:%M"), tz.name());
        let (part, body, silent_since) = match alarm {
            Alarm::Raise { since } => (
                format!("silent.{}", since.timestamp_millis()),
                vec![
                    Block::Paragraph(format!(
                        "No chats recorded for {name} since {}: is the bot or its export stuck?",
                        at(since)
                    )),
                    Block::Paragraph(format!(
                        "chat-notifier has read no new message of {name}'s chats for {} (alert_if_silent is {}). \
                         It keeps checking every run, and writes again in this thread once chats come in; \
                         it does not repeat this alert meanwhile.",
                        notice::span(now - since),
                        notice::span(threshold.unwrap_or_default()),
                    )),
                ],
                Some(since),
            ),
            Alarm::Clear { since, back } => (
                format!("back.{}", back.timestamp_millis()),
                vec![Block::Paragraph(format!(
                    "Chats are coming in again for {name}: the latest message at {}, after none since {}, {} \
                     without any.",
                    at(back),
                    at(since),
                    notice::span(back - since)
                ))],
                None,
            ),
        };
        let key = crate::state::alert_key(&bot.id);
        let email = notice::compose(&Notice {
            kind: "alert",
            key: &key,
            part: &part,
            bot: Some((&bot.id, name)),
            title: &format!("{name}: no chats recorded"),
            thread: &bot.thread,
            body,
            now,
            from: &config.mail.from,
            to: &settings.to,
            cc: &settings.cc,
            domain: &config.message_id_domain(),
        });
        // The destinations serving the bot get the alarm too, queued with it.
        let doc = match alarm {
            Alarm::Raise { since } => document::alert(
                BotDoc { id: bot.id.clone(), name: name.to_owned() },
                since,
                None,
                format!("No chats recorded for {name} since {}: is the bot or its export stuck?", at(since)),
                now,
            ),
            Alarm::Clear { since, back } => document::alert(
                BotDoc { id: bot.id.clone(), name: name.to_owned() },
                since,
                Some(back),
                format!("Chats are coming in again for {name}: the latest message at {}.", at(back)),
                now,
            ),
        };
        let text = serde_json::to_string(&doc)?;
        let serving: Vec<&str> =
            config.destinations.iter().filter(|d| d.serves(&bot.id)).map(|d| d.name.as_str()).collect();
        state.atomically(|tx| {
            tx.alarm(&bot.id, silent_since, &email)?;
            for destination in &serving {
                tx.queue_delivery(destination, &key, "alert", &doc.id, &text, now)?;
            }
            Ok(())
        })?;
        queued += 1;
    }
    Ok(queued)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::thread::Thread;

    #[test]
    fn the_alarm_rises_once_and_clears_once() {
        let at = |h: i64| DateTime::from_timestamp(1_790_000_000 + h * 3600, 0).unwrap();
        let bot = |last: i64, silent: Option<i64>| Watched {
            id: "lead".into(),
            name: None,
            last_activity: at(last),
            silent_since: silent.map(at),
            thread: Thread::default(),
        };
        let six = Some(TimeDelta::hours(6));
        assert_eq!(alarm(&bot(0, None), six, at(5)), None, "quiet for 5 h: not yet");
        assert_eq!(alarm(&bot(0, None), six, at(6)), Some(Alarm::Raise { since: at(0) }));
        assert_eq!(alarm(&bot(0, Some(0)), six, at(30)), None, "raised: never repeated");
        assert_eq!(alarm(&bot(31, Some(0)), six, at(31)), Some(Alarm::Clear { since: at(0), back: at(31) }));
        assert_eq!(alarm(&bot(0, None), None, at(100)), None, "off");
        assert_eq!(
            alarm(&bot(9, Some(0)), None, at(9)),
            Some(Alarm::Clear { since: at(0), back: at(9) }),
            "turned off: still clears"
        );
    }
}
