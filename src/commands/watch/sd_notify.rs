//! systemd's notification protocol (`Type=notify`), as much as the watcher needs: one datagram
//! to `$NOTIFY_SOCKET` (a path, or an abstract name written with a leading '@') for READY=1,
//! STATUS=, WATCHDOG=1 and STOPPING=1; the watchdog's period from `$WATCHDOG_USEC` (for this
//! process when `$WATCHDOG_PID` names it, or is unset). Nothing at all outside systemd.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

pub struct Notifier {
    socket: Option<(UnixDatagram, SocketAddr)>,
    /// Half of `WATCHDOG_USEC`, at least `WATCHDOG_FLOOR`: how often to tell systemd we are
    /// alive.
    pub watchdog: Option<Duration>,
}

/// The shortest ping period: a `WATCHDOG_USEC` of a few microseconds (a typo, a unit mixed
/// up) must not make the watcher send datagrams in a busy loop. systemd's own floor for
/// `WatchdogSec=` is far above it.
const WATCHDOG_FLOOR: Duration = Duration::from_millis(100);

impl Notifier {
    pub fn from_env() -> Self {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let bytes = path.as_encoded_bytes();
            let addr = match bytes.strip_prefix(b"@") {
                Some(name) => abstract_name(name)?,
                None => SocketAddr::from_pathname(std::path::Path::new(&path)).ok()?,
            };
            Some((UnixDatagram::unbound().ok()?, addr))
        });
        let ours = std::env::var("WATCHDOG_PID").map_or(true, |pid| pid.trim() == std::process::id().to_string());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|usec| *usec > 0 && ours)
            .map(|usec| Duration::from_micros(usec / 2).max(WATCHDOG_FLOOR));
        Notifier { socket, watchdog }
    }

    /// Sends one notification ("READY=1", "STATUS=..."); a failure is not the watcher's problem.
    pub fn send(&self, text: &str) {
        if let Some((socket, addr)) = &self.socket {
            let _ = socket.send_to_addr(text.as_bytes(), addr);
        }
    }
}

#[cfg(target_os = "linux")]
fn abstract_name(name: &[u8]) -> Option<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name).ok()
}

#[cfg(not(target_os = "linux"))]
fn abstract_name(_: &[u8]) -> Option<SocketAddr> {
    None
}
