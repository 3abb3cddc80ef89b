//! Rows ordered by time, for the sources whose ids are uuids in no order (Flowise, Dify): a
//! row's *position* is its stored wall time in microseconds since 1970 times 1000 plus a
//! tiebreak in 0..999 from its uuid, so positions order like the stored time; its *key* (63 bits
//! of its whole uuid) tells it from another row of the same position in the state's memory of
//! rows read (`recent_rows`). Also what finishes an LLM chat (`complete_on_tools`,
//! `complete_on_phrases`). Pure functions only: each source keeps its own queries.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

use crate::config::Config;

/// Positions are microseconds times 1000: times from 1970 up to here fit an i64.
pub const LAST_ORDERED: &str = "2200-01-01 00:00:00";

/// A bot's own `complete_on_tools` and `complete_on_phrases`, where given.
pub type Lists = (Option<Vec<String>>, Option<Vec<String>>);

/// What finishes a chat: the source's lists, and the bots' own (which replace them).
pub struct Completion {
    pub tools: Vec<String>,
    pub phrases: Vec<String>,
    pub bots: HashMap<String, Lists>,
}

impl Completion {
    /// The source's lists and each bot's own, as the config gives them.
    pub fn of(config: &Config) -> Completion {
        let source = config.source.as_ref();
        let bots = config
            .bots
            .iter()
            .filter(|b| b.complete_on_tools.is_some() || b.complete_on_phrases.is_some())
            .map(|b| (b.id.clone(), (b.complete_on_tools.clone(), b.complete_on_phrases.clone())));
        Completion {
            tools: source.map(|s| s.complete_on_tools.clone()).unwrap_or_default(),
            phrases: source.map(|s| s.complete_on_phrases.clone()).unwrap_or_default(),
            bots: bots.collect(),
        }
    }

    /// Whether any phrase may finish a chat (then answers are read for their text).
    pub fn has_phrases(&self) -> bool {
        !self.phrases.is_empty() || self.bots.values().any(|(_, p)| p.as_ref().is_some_and(|p| !p.is_empty()))
    }

    /// Whether a bot answer of chatflow `flow` finishes the chat.
    pub fn finishes(&self, flow: &str, content: &str, tools: &[String]) -> bool {
        let own = self.bots.iter().find(|(id, _)| id.eq_ignore_ascii_case(flow)).map(|(_, lists)| lists);
        let wanted_tools = own.and_then(|o| o.0.as_ref()).unwrap_or(&self.tools);
        let phrases = own.and_then(|o| o.1.as_ref()).unwrap_or(&self.phrases);
        let said = content.to_lowercase();
        wanted_tools.iter().any(|w| tools.iter().any(|t| t == w))
            || phrases.iter().any(|p| said.contains(&p.trim().to_lowercase()))
    }
}

/// The latest wall time a position holds (`LAST_ORDERED`, exclusive): what is read where no
/// clock was told.
pub fn last_ordered() -> NaiveDateTime {
    wall_time(LAST_ORDERED).unwrap_or_default() - TimeDelta::milliseconds(1)
}

/// Pure: a stored `createdDate` as its wall time: SQLite's text (`2026-12-07 09:12:28.345`, or
/// with a `T`, or a trailing `Z`), PostgreSQL's as the connection hands it (RFC 3339, the wall
/// time taken as UTC).
pub fn wall_time(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.naive_utc());
    }
    let s = s.strip_suffix('Z').unwrap_or(s);
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
}

/// Pure: a wall time in `zone` as an instant (an hour the clocks skipped: as the hour after;
/// one they repeated: the first).
pub fn in_zone(zone: Tz, wall: NaiveDateTime) -> DateTime<Utc> {
    zone.from_local_datetime(&wall)
        .earliest()
        .or_else(|| zone.from_local_datetime(&(wall + TimeDelta::hours(1))).earliest())
        .map_or_else(|| wall.and_utc(), |t| t.to_utc())
}

/// Pure: the stored wall time as PostgreSQL reads a timestamp literal.
pub fn wall_text(wall: NaiveDateTime) -> String {
    wall.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

/// Pure: a row's position from its stored wall time and its uuid's low bits (the tiebreak).
pub fn position_of(wall: NaiveDateTime, lo: u64) -> Option<i64> {
    let micros = wall.and_utc().timestamp_micros();
    if micros <= 0 {
        return None;
    }
    micros.checked_mul(1000)?.checked_add((lo % 1000) as i64)
}

/// Pure: the stored wall time of a position.
pub fn wall_of(position: i64) -> NaiveDateTime {
    DateTime::from_timestamp_micros(position.max(0).div_euclid(1000)).unwrap_or_default().naive_utc()
}

/// Pure: a uuid's two halves; another text hashed (FNV-1a), so any id gives a key.
pub fn uuid_bits(id: &str) -> (u64, u64) {
    uuid_bits_exact(id).unwrap_or_else(|| {
        let hash = |seed: u64| id.bytes().fold(seed, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
        (hash(0xcbf2_9ce4_8422_2325), hash(0x84222325cbf29ce4))
    })
}

/// Pure: a row's key, 63 bits of its whole uuid (two uuids that differ anywhere differ here,
/// but for one pair in 2^63).
pub fn key_of(hi: u64, lo: u64) -> i64 {
    ((hi ^ lo.wrapping_mul(0x9e37_79b9_7f4a_7c15)) >> 1) as i64
}

pub fn uuid_bits_exact(id: &str) -> Option<(u64, u64)> {
    let hex: String = id.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return None;
    }
    let n = u128::from_str_radix(&hex, 16).ok()?;
    Some(((n >> 64) as u64, n as u64))
}

/// Pure: whether `id` is a uuid as PostgreSQL writes one (8-4-4-4-12 hex digits): the only
/// chatflow id worth asking PostgreSQL about (any other text fails its cast).
pub fn canonical_uuid(id: &str) -> bool {
    let groups: Vec<&str> = id.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups.iter().all(|g| g.chars().all(|c| c.is_ascii_hexdigit()))
}
