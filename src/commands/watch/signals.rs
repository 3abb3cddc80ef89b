//! SIGTERM, SIGINT and SIGHUP for the watcher, through a self-pipe: the handler only writes the
//! signal's number to a pipe (all a handler may safely do), and a thread of ours reads it. That
//! thread asks the pipeline to stop (the email in flight is finished, no other begun) and wakes
//! the watcher's wait through a second pipe; should the email in flight not be done within
//! `GRACE` (a server that stalls), it ends the process itself, with exit status 0: that email
//! is still in the outbox, and the next run sends it again with the same Message-ID.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};

/// How long a stop waits for the email in flight.
pub const GRACE: Duration = Duration::from_secs(5);

/// The self-pipe's write end, for the handler.
static PIPE: AtomicI32 = AtomicI32::new(-1);
static STOP: AtomicBool = AtomicBool::new(false);
static RELOAD: AtomicBool = AtomicBool::new(false);

/// The watcher's end: a descriptor that becomes readable when a signal came.
pub struct Signals {
    wake: OwnedFd,
}

extern "C" fn on_signal(signal: libc::c_int) {
    let fd = PIPE.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = signal as u8;
        // SAFETY: write(2) is async-signal-safe; the byte lives for the call. A full pipe drops
        // the byte, which is harmless: one is enough to wake the reader.
        unsafe { libc::write(fd, (&raw const byte).cast(), 1) };
    }
}

fn pipe(flags: libc::c_int) -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | flags) } != 0 {
        bail!("creating a pipe: {}", std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Installs the handlers and starts the thread that reads the signals.
pub fn install() -> Result<Signals> {
    let (from_handler, to_reader) = pipe(0)?;
    // The handler's end never blocks: a full pipe must not stall a signal handler.
    // SAFETY: fcntl on a descriptor we own.
    unsafe { libc::fcntl(to_reader.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    let (wake, to_watcher) = pipe(libc::O_NONBLOCK)?;
    PIPE.store(to_reader.as_raw_fd(), Ordering::SeqCst);
    // Kept open for the process's life: the handler may write to it at any time.
    std::mem::forget(to_reader);
    for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction is valid; the handler only calls write(2). SA_RESTART: a
        // send in flight is not interrupted by the signal, it is finished.
        let installed = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        if installed != 0 {
            bail!("installing a signal handler: {}", std::io::Error::last_os_error());
        }
    }
    let mut from_handler = File::from(from_handler);
    let to_watcher = File::from(to_watcher);
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        let mut byte = [0u8; 1];
        while from_handler.read_exact(&mut byte).is_ok() {
            match libc::c_int::from(byte[0]) {
                libc::SIGHUP => RELOAD.store(true, Ordering::SeqCst),
                _ => {
                    STOP.store(true, Ordering::SeqCst);
                    crate::pipeline::request_stop();
                }
            }
            wake_watcher(&to_watcher);
            if STOP.load(Ordering::SeqCst) {
                std::thread::sleep(GRACE);
                log::warn!(
                    "stopping with an email in flight for over {}s: it stays in the outbox and the next run \
                         sends it again, with the same Message-ID",
                    GRACE.as_secs()
                );
                std::process::exit(0);
            }
        }
    })?;
    Ok(Signals { wake })
}

fn wake_watcher(to_watcher: &File) {
    use std::io::Write;
    let _ = (&*to_watcher).write(&[1]);
}

impl Signals {
    /// Readable when a signal came.
    pub fn fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }

    /// Empties the wake pipe.
    pub fn drain(&self) {
        let mut buf = [0u8; 64];
        // SAFETY: reads into a buffer of ours from a non-blocking descriptor of ours.
        while unsafe { libc::read(self.wake.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    }

    /// Whether SIGTERM or SIGINT came.
    pub fn stopping(&self) -> bool {
        STOP.load(Ordering::SeqCst)
    }

    /// Whether SIGHUP came since the last call.
    pub fn take_reload(&self) -> bool {
        RELOAD.swap(false, Ordering::SeqCst)
    }
}
