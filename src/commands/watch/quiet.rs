//! The watcher's log: a problem is said once, not once per cycle. Wrapped around the logger
//! `main` builds; until `watch` turns it on, every line goes through as it is (a cron run
//! logs each problem once already, being one cycle).
//!
//! A warning or error is let through unless the same line (digits aside: "attempt 7" is
//! "attempt 8") was logged in the cycle before or since the watcher last ran cleanly. Lines
//! below warnings (`-v`'s one per email) always go through.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use log::{Level, Log, Metadata, Record};

/// Lines remembered at most, per set: a flood of distinct lines is not kept for weeks.
const REMEMBERED: usize = 1000;

static ON: AtomicBool = AtomicBool::new(false);
static SEEN: Mutex<Seen> = Mutex::new(Seen::new());

struct Seen {
    /// Lines of the cycle before, and of this one so far.
    before: Option<HashSet<String>>,
    now: Option<HashSet<String>>,
    /// Lines since the last clean cycle.
    episode: Option<HashSet<String>>,
}

impl Seen {
    const fn new() -> Self {
        Seen { before: None, now: None, episode: None }
    }

    /// Whether the line is to be logged; remembers it either way.
    fn first_time(&mut self, key: String) -> bool {
        let known = self.before.as_ref().is_some_and(|s| s.contains(&key))
            || self.episode.as_ref().is_some_and(|s| s.contains(&key));
        let now = self.now.get_or_insert_with(HashSet::new);
        if now.len() < REMEMBERED {
            now.insert(key.clone());
        }
        let episode = self.episode.get_or_insert_with(HashSet::new);
        if episode.len() < REMEMBERED {
            episode.insert(key);
        }
        !known
    }
}

/// Pure: a line as compared, its digits left out.
fn key(line: &str) -> String {
    line.chars().filter(|c| !c.is_ascii_digit()).collect()
}

pub struct Quiet {
    inner: Box<dyn Log>,
}

impl Quiet {
    pub fn new(inner: Box<dyn Log>) -> Self {
        Quiet { inner }
    }
}

/// From now on, repeated problems are said once (`watch`).
pub fn turn_on() {
    ON.store(true, Ordering::SeqCst);
}

/// A cycle ended; `clean` when it ran without a problem, which ends the episode.
pub fn cycle_ended(clean: bool) {
    let Ok(mut seen) = SEEN.lock() else { return };
    seen.before = seen.now.take();
    if clean {
        seen.episode = None;
    }
}

impl Log for Quiet {
    fn enabled(&self, metadata: &Metadata) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        if !self.inner.enabled(record.metadata()) {
            return;
        }
        if ON.load(Ordering::Relaxed) && record.level() <= Level::Warn {
            let line = key(&record.args().to_string());
            let first = SEEN.lock().map(|mut s| s.first_time(line)).unwrap_or(true);
            if !first {
                return;
            }
        }
        self.inner.log(record);
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_said_once_while_it_repeats_and_again_after_a_clean_cycle() {
        let mut seen = Seen::new();
        let cycle = |seen: &mut Seen, clean: bool| {
            seen.before = seen.now.take();
            if clean {
                seen.episode = None;
            }
        };
        assert!(seen.first_time(key("SMTP down (attempt 1)")));
        cycle(&mut seen, false);
        assert!(!seen.first_time(key("SMTP down (attempt 2)")), "the same line, another count");
        assert!(seen.first_time(key("the export is gone")), "another line");
        cycle(&mut seen, false);
        cycle(&mut seen, false);
        assert!(!seen.first_time(key("SMTP down (attempt 5)")), "still within the episode");
        cycle(&mut seen, true);
        cycle(&mut seen, true);
        assert!(seen.first_time(key("SMTP down (attempt 1)")), "a new episode");
    }
}
