//! What a long-lived holder of the run lock adds to it (`chat-notifier watch`): `renew`, asked
//! between cycles whether the lock is still held, and the line written into the lock file while
//! it is, which `status` reads (`holder`) to say who holds the state and since when.
//!
//! The lock itself is a `flock` on `<state>.lock`, taken by `try_lock`; whoever holds it is
//! found without taking it, in `/proc/locks` (a lock `status` took, even for a moment, would
//! turn a cron run that came at that moment away).

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};

use super::lock_path;

/// Who holds the state's lock, as `status` tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    /// Set when the holder is a watcher (`chat-notifier watch`): since when it holds the state.
    pub watching_since: Option<DateTime<Utc>>,
}

/// The lock file at the path is no longer the one held (removed or replaced): whoever held it
/// stops before sending, since a run coming now would lock the other file and send alongside.
#[derive(Debug)]
pub struct LockLost(pub std::path::PathBuf);

impl std::fmt::Display for LockLost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "state lock {}: removed or replaced since it was taken (a run could send alongside); stopping without sending",
            self.0.display()
        )
    }
}

impl std::error::Error for LockLost {}

/// What a watcher writes into the lock file.
const WATCH: &str = "watch pid ";

/// Whether the lock file held (`file`) is still the one at `path`, asked by a watcher between
/// its cycles and by every run right before it sends. A `flock` stays held until the process
/// drops it, but only on the file it was taken on: once that file is removed or replaced (`rm
/// state.sqlite.lock`, another file moved there), a run coming next locks another file and
/// would send alongside. So the file held (`fstat`) must still be the file at the path
/// (`lstat`), and not unlinked.
pub(super) fn still_held(file: &File, path: &Path) -> Result<bool> {
    let held = file.metadata().with_context(|| format!("state lock {}: reading the file held", path.display()))?;
    Ok(same_file(&held, path.symlink_metadata().ok().as_ref()))
}

/// Writes "watch pid N since RFC3339" into the lock file, for `status`: a line about this
/// process, never read for anything but showing it (a stale one, left by a process that ended,
/// is told apart by `/proc/locks`).
pub(super) fn announce_watcher(mut file: &File, since: DateTime<Utc>) -> Result<()> {
    let line = format!("{WATCH}{} since {}\n", std::process::id(), since.to_rfc3339());
    file.set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.write_all(line.as_bytes()))
        .context("state lock: writing who holds it")
}

/// Who holds the lock, in words for the line of a run (or a watcher) turned away: "a watcher
/// (pid N, since T) holds the state (lock L)" or "another run is in progress (pid N, lock L is
/// held)".
pub fn held_by(state_path: &Path) -> String {
    let lock = lock_path(state_path);
    match holder(state_path) {
        Ok(Some(Holder { pid, watching_since: Some(since) })) => {
            format!("a watcher (pid {pid}, since {}) holds the state (lock {})", since.to_rfc3339(), lock.display())
        }
        Ok(Some(Holder { pid, watching_since: None })) => {
            format!("another run is in progress (pid {pid}, lock {} is held)", lock.display())
        }
        _ => format!("another run is in progress (lock {} is held)", lock.display()),
    }
}

/// Pure: whether the file held (`held`, from `fstat`) is the one at the lock's path (`at`,
/// from `lstat`; none when nothing is there) and still linked.
fn same_file(held: &std::fs::Metadata, at: Option<&std::fs::Metadata>) -> bool {
    held.nlink() > 0 && at.is_some_and(|at| at.dev() == held.dev() && at.ino() == held.ino())
}

/// Who holds the lock of the state at `state_path` now, without taking it; none when no one
/// does (or where `/proc/locks` cannot be read).
pub fn holder(state_path: &Path) -> Result<Option<Holder>> {
    let path = lock_path(state_path);
    let Ok(meta) = path.symlink_metadata() else { return Ok(None) };
    let Ok(locks) = std::fs::read_to_string("/proc/locks") else { return Ok(None) };
    let Some(pid) = flock_holder(&locks, meta.dev(), meta.ino()) else { return Ok(None) };
    // Never more than a line is read: the file is ours, but the directory may not be.
    let text = std::fs::read(&path).with_context(|| format!("state lock {}: reading", path.display()))?;
    let text = String::from_utf8_lossy(&text[..text.len().min(200)]).into_owned();
    Ok(Some(Holder { pid, watching_since: watcher_since(&text, pid) }))
}

/// Pure: the pid holding a `flock` write lock on the file (`dev`, `ino`), from `/proc/locks`,
/// whose lines read "1: FLOCK  ADVISORY  WRITE 4242 08:01:1234567 0 EOF".
fn flock_holder(locks: &str, dev: u64, ino: u64) -> Option<u32> {
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // A waiting lock's line has "->" after the number, which shifts the fields by one.
        let fields = if fields.get(1) == Some(&"->") { &fields[1..] } else { &fields[..] };
        let [_, kind, _, mode, pid, file, ..] = fields else { return None };
        if *kind != "FLOCK" || *mode != "WRITE" {
            return None;
        }
        let mut parts = file.split(':');
        let (ma, mi, inode) = (parts.next()?, parts.next()?, parts.next()?);
        let same = u32::from_str_radix(ma, 16).ok()? == major
            && u32::from_str_radix(mi, 16).ok()? == minor
            && inode.parse::<u64>().ok()? == ino;
        same.then(|| pid.parse().ok()).flatten()
    })
}

/// Pure: since when the watcher `pid` holds the lock, from the lock file's line; none when the
/// line is another process's (a run holds the lock now, the line is a watcher's of old).
fn watcher_since(text: &str, pid: u32) -> Option<DateTime<Utc>> {
    let rest = text.lines().next()?.strip_prefix(WATCH)?;
    let (written_by, since) = rest.split_once(" since ")?;
    if written_by.parse::<u32>().ok()? != pid {
        return None;
    }
    DateTime::parse_from_rfc3339(since.trim()).ok().map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_is_found_in_proc_locks() {
        let locks = "1: POSIX  ADVISORY  WRITE 77 08:01:99 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 4242 08:01:1234567 0 EOF\n\
                     2: -> FLOCK  ADVISORY  WRITE 4343 08:01:1234567 0 EOF\n";
        let dev = libc::makedev(8, 1);
        assert_eq!(flock_holder(locks, dev, 1234567), Some(4242));
        assert_eq!(flock_holder(locks, dev, 99), None, "a POSIX lock is not ours");
        assert_eq!(flock_holder(locks, libc::makedev(8, 2), 1234567), None, "another device");
    }

    #[test]
    fn a_watchers_line_counts_only_while_its_process_holds_the_lock() {
        let line = "watch pid 42 since 2026-12-07T12:00:00+00:00\n";
        assert_eq!(watcher_since(line, 42).unwrap().to_rfc3339(), "2026-12-07T12:00:00+00:00");
        assert_eq!(watcher_since(line, 43), None);
        assert_eq!(watcher_since("", 42), None);
        assert_eq!(watcher_since("watch pid x since now", 42), None);
    }

    #[test]
    fn a_held_lock_is_seen_with_its_watcher() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.sqlite");
        assert_eq!(holder(&state).unwrap(), None);
        let mut lock = super::super::try_lock(&super::super::At::File(state.clone())).unwrap().unwrap();
        assert!(lock.renew().unwrap());
        let held = holder(&state).unwrap().expect("held");
        assert_eq!(held, Holder { pid: std::process::id(), watching_since: None });
        let since = DateTime::parse_from_rfc3339("2026-12-07T12:00:00Z").unwrap().with_timezone(&Utc);
        lock.announce_watcher(since).unwrap();
        assert_eq!(holder(&state).unwrap().unwrap().watching_since, Some(since));
        drop(lock);
        assert_eq!(holder(&state).unwrap(), None);
    }

    #[test]
    fn a_lock_file_removed_or_replaced_is_no_longer_held() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.sqlite");
        let mut lock = super::super::try_lock(&super::super::At::File(state.clone())).unwrap().unwrap();
        std::fs::remove_file(lock_path(&state)).unwrap();
        assert!(!lock.renew().unwrap(), "removed");
        let mut other =
            super::super::try_lock(&super::super::At::File(state.clone())).unwrap().expect("another file, free");
        assert!(!lock.renew().unwrap(), "replaced");
        assert!(other.renew().unwrap(), "the new holder's");
    }
}
