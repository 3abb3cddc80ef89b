//! Writes to a SQLite source, through inotify on its folder: the database file and its `-wal`
//! (where a committed transaction lands first), and their creation, removal or renaming (an
//! export replaced or rotated). The folder is watched, not the files: a file removed and made
//! again is still seen. Events about other files in the folder (the state, if it lives there)
//! wake the watcher and are dropped.

use std::ffi::{CString, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use anyhow::{Context, Result, bail};

pub struct Writes {
    fd: OwnedFd,
    names: Vec<OsString>,
}

impl Writes {
    /// Watches the folder of the SQLite file at `path` for writes to it or its `-wal`.
    pub fn watch(path: &Path) -> Result<Self> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let Some(name) = path.file_name() else { bail!("{}: not a file name", path.display()) };
        let mut wal = name.to_owned();
        wal.push("-wal");
        // SAFETY: inotify_init1 takes flags and returns a new descriptor or -1.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("inotify: starting");
        }
        // SAFETY: a descriptor just created, owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let c_dir = CString::new(dir.as_os_str().as_bytes()).context("a folder name with a NUL byte")?;
        let mask = libc::IN_MODIFY
            | libc::IN_CLOSE_WRITE
            | libc::IN_CREATE
            | libc::IN_DELETE
            | libc::IN_MOVED_FROM
            | libc::IN_MOVED_TO
            | libc::IN_ATTRIB;
        // SAFETY: a valid descriptor and a NUL-terminated path.
        if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c_dir.as_ptr(), mask) } < 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("inotify: watching the folder {}", dir.display()));
        }
        Ok(Writes { fd, names: vec![name.to_owned(), wal] })
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Reads every event queued; whether one was about the database or its `-wal`.
    pub fn drain(&self) -> bool {
        let mut buf = [0u8; 4096];
        let mut ours = false;
        loop {
            // SAFETY: reads into a buffer of ours from a non-blocking descriptor of ours.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            let Ok(n) = usize::try_from(n) else { return ours };
            if n == 0 {
                return ours;
            }
            ours |= events(&buf[..n]).any(|name| self.names.contains(&name) || name.is_empty());
        }
    }
}

/// Pure: the names in a buffer of inotify events (empty for an event about the folder itself,
/// or one the queue overflowed on, which count as ours).
fn events(buf: &[u8]) -> impl Iterator<Item = OsString> + '_ {
    const HEADER: usize = std::mem::size_of::<libc::inotify_event>();
    let mut at = 0;
    std::iter::from_fn(move || {
        let header = buf.get(at..at + HEADER)?;
        // inotify_event: wd (i32), mask (u32), cookie (u32), len (u32), then the name.
        let len = u32::from_ne_bytes(header[12..16].try_into().ok()?) as usize;
        let name = buf.get(at + HEADER..at + HEADER + len)?;
        at += HEADER + len;
        let name = name.split(|b| *b == 0).next().unwrap_or_default();
        Some(OsString::from_vec(name.to_vec()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_to_the_database_or_its_wal_is_seen_and_others_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("export.sqlite");
        std::fs::write(&db, b"").unwrap();
        let writes = Writes::watch(&db).unwrap();
        assert!(!writes.drain(), "nothing yet");
        std::fs::write(dir.path().join("state.sqlite"), b"x").unwrap();
        assert!(!writes.drain(), "another file");
        std::fs::write(dir.path().join("export.sqlite-wal"), b"x").unwrap();
        assert!(writes.drain(), "the -wal");
        std::fs::remove_file(&db).unwrap();
        assert!(writes.drain(), "removed");
        std::fs::write(&db, b"again").unwrap();
        assert!(writes.drain(), "made again");
    }
}
