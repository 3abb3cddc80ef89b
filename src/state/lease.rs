//! The run lease of a PostgreSQL state: one run at a time whichever host it is on, and no lock
//! stuck by a host that died. A row (`lease`) names the holder (host, pid, command) and when the
//! lease expires, every time from the database's clock (`clock_timestamp()`), never a host's.
//! The holder extends it (a heartbeat from a thread of its own, on a connection of its own,
//! every third of the lease); a holder that dies or pauses stops extending it, and the next run
//! on any host takes it once it has lapsed. A run checks `Watch::holds` before each email or
//! notification: a run that lost its lease (a long pause, the database unreachable for a lease)
//! stops before sending more, and at most the one email it was sending when it paused can go
//! twice, with the same Message-ID.
//!
//! Each statement stands alone (no session state, no session-level advisory lock): through
//! PgBouncer in transaction mode it may reach any server connection.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::pgconn::pg_error;

/// How long a lease lasts unless extended (`state_lease` in the config).
pub const DEFAULT_LENGTH: Duration = Duration::from_secs(60);

/// This machine's name, as the lease and the last run name it.
pub fn host() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length, and gethostname writes at most that many bytes.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    if ok { String::from_utf8_lossy(&buf[..end]).into_owned() } else { "unknown-host".to_owned() }
}

/// This process as a lease holder: host, pid, command, and a token that tells apart two
/// processes with the same pid on hosts of the same name.
fn me() -> String {
    let command = std::env::args()
        .skip(1)
        .find(|a| ["run", "prune", "watch", "state"].contains(&a.as_str()))
        .unwrap_or_else(|| "run".to_owned());
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{} pid {} ({command}) #{:08x}", host(), std::process::id(), nanos ^ std::process::id().rotate_left(16))
}

/// Who holds (or last held) the lease, as `check` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub holder: String,
    pub acquired_at: String,
    pub expires_at: String,
    /// Not released and not lapsed.
    pub held: bool,
    /// Given back by its holder (not lapsed).
    pub released: bool,
}

impl Holder {
    pub fn describe(&self) -> String {
        if self.held {
            format!("{} since {} (until {} unless renewed)", self.holder, self.acquired_at, self.expires_at)
        } else if self.released {
            format!("free (last held by {} from {}, released at {})", self.holder, self.acquired_at, self.expires_at)
        } else {
            format!(
                "free (last held by {} from {}; it lapsed at {} without being released)",
                self.holder, self.acquired_at, self.expires_at
            )
        }
    }
}

const UTC_TEXT: &str = "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'";

pub fn holder(client: &mut postgres::Client) -> Result<Option<Holder>> {
    let sql = format!(
        "SELECT holder, to_char(acquired_at AT TIME ZONE 'UTC', {UTC_TEXT}), \
         to_char(expires_at AT TIME ZONE 'UTC', {UTC_TEXT}), released_at IS NULL AND expires_at > clock_timestamp(), \
         released_at IS NOT NULL FROM lease WHERE id = 1"
    );
    let row = client.query_typed(&sql, &[]).map_err(pg_error)?;
    Ok(row.first().map(|r| Holder {
        holder: r.get(0),
        acquired_at: r.get(1),
        expires_at: r.get(2),
        held: r.get(3),
        released: r.get(4),
    }))
}

struct Shared {
    state: Mutex<Standing>,
    wake: Condvar,
    /// Before each send the lease must hold for this much longer: what one email may take.
    margin: Duration,
}

struct Standing {
    /// When the lease lapses, as this host's monotonic clock bounds it: the heartbeat's start
    /// plus what the database said was left.
    valid_until: Instant,
    lost: bool,
    stopping: bool,
}

/// What a run asks before each send: whether its lease still holds.
#[derive(Clone)]
pub struct Watch(Arc<Shared>);

impl Watch {
    pub fn holds(&self) -> bool {
        let s = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        !s.lost && Instant::now() + self.0.margin < s.valid_until
    }
}

pub struct Lease {
    client: Arc<Mutex<postgres::Client>>,
    me: Arc<str>,
    length: Duration,
    shared: Arc<Shared>,
    heartbeat: Option<JoinHandle<()>>,
}

/// Extends the lease `me` holds: the time left (from the database's clock), none when it is no
/// longer `me`'s (lapsed, or taken).
fn extend(client: &mut postgres::Client, me: &str, length: Duration) -> Result<Option<Duration>> {
    let rows = client
        .query_typed(
            "UPDATE lease SET expires_at = clock_timestamp() + $2 * interval '1 millisecond' \
             WHERE id = 1 AND holder = $1 AND released_at IS NULL AND expires_at > clock_timestamp() \
             RETURNING (extract(epoch FROM expires_at - clock_timestamp()) * 1000)::bigint",
            &[(&me, postgres::types::Type::TEXT), (&(length.as_millis() as i64), postgres::types::Type::INT8)],
        )
        .map_err(pg_error)?;
    Ok(rows.first().map(|r| Duration::from_millis(r.get::<_, i64>(0).max(0) as u64)))
}

impl Lease {
    /// Takes the lease when it is free (released, or lapsed); none when another holds it.
    pub fn try_take(mut client: postgres::Client, shown: String, length: Duration) -> Result<Option<Lease>> {
        super::pg::migrate(&mut client)?;
        let me: Arc<str> = me().into();
        let before = holder(&mut client)?;
        let started = Instant::now();
        let rows = client
            .query_typed(
                "INSERT INTO lease (id, holder, acquired_at, expires_at) \
                 VALUES (1, $1, clock_timestamp(), clock_timestamp() + $2 * interval '1 millisecond') \
                 ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, acquired_at = excluded.acquired_at, \
                 expires_at = excluded.expires_at, released_at = NULL \
                 WHERE lease.released_at IS NOT NULL OR lease.expires_at <= clock_timestamp() \
                 RETURNING (extract(epoch FROM expires_at - clock_timestamp()) * 1000)::bigint",
                &[(&&*me, postgres::types::Type::TEXT), (&(length.as_millis() as i64), postgres::types::Type::INT8)],
            )
            .map_err(pg_error)?;
        let Some(left) = rows.first().map(|r| Duration::from_millis(r.get::<_, i64>(0).max(0) as u64)) else {
            return Ok(None);
        };
        if let Some(b) = before.filter(|b| !b.held && !b.released) {
            log::warn!(
                "state {shown}: took the run lease over from {}, whose lease lapsed at {} without being released \
                 (it died or paused)",
                b.holder,
                b.expires_at
            );
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(Standing { valid_until: started + left, lost: false, stopping: false }),
            wake: Condvar::new(),
            margin: length / 4,
        });
        let client = Arc::new(Mutex::new(client));
        let heartbeat = {
            let (client, me, shared) = (client.clone(), me.clone(), shared.clone());
            std::thread::Builder::new()
                .name("lease heartbeat".into())
                .spawn(move || heartbeat(&client, &me, length, &shared))
                .ok()
        };
        Ok(Some(Lease { client, me, length, shared, heartbeat }))
    }

    pub fn watch(&self) -> Watch {
        Watch(self.shared.clone())
    }

    /// Extends the lease now: false when it was lost.
    pub fn renew(&mut self) -> Result<bool> {
        let started = Instant::now();
        let left = {
            let mut client = self.client.lock().unwrap_or_else(|e| e.into_inner());
            extend(&mut client, &self.me, self.length)?
        };
        let mut s = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        match left {
            Some(left) if !s.lost => {
                s.valid_until = started + left;
                Ok(true)
            }
            _ => {
                s.lost = true;
                Ok(false)
            }
        }
    }
}

/// Every third of the lease, extends it; marks it lost when it is no longer this run's. A
/// failed attempt (the database unreachable) leaves the lease to lapse on its own time: the run
/// stops sending once it has.
fn heartbeat(client: &Mutex<postgres::Client>, me: &str, length: Duration, shared: &Shared) {
    loop {
        {
            let s = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            let (s, _) =
                shared.wake.wait_timeout_while(s, length / 3, |s| !s.stopping).unwrap_or_else(|e| e.into_inner());
            if s.stopping || s.lost {
                return;
            }
        }
        let started = Instant::now();
        let left = {
            let mut client = client.lock().unwrap_or_else(|e| e.into_inner());
            extend(&mut client, me, length)
        };
        let mut s = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        match left {
            Ok(Some(left)) => s.valid_until = started + left,
            Ok(None) => {
                log::warn!("the run lease was lost (it lapsed, or another host took it); this run stops sending");
                s.lost = true;
                return;
            }
            Err(e) => log::debug!("lease heartbeat failed: {e:#}"),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        {
            let mut s = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            s.stopping = true;
            self.shared.wake.notify_all();
        }
        if let Some(h) = self.heartbeat.take() {
            let _ = h.join();
        }
        let mut client = self.client.lock().unwrap_or_else(|e| e.into_inner());
        // Released for the next run at once; if this fails, the lease lapses on its own.
        let _ = client.query_typed(
            "UPDATE lease SET released_at = clock_timestamp(), expires_at = clock_timestamp() \
             WHERE id = 1 AND holder = $1 AND released_at IS NULL",
            &[(&&*self.me, postgres::types::Type::TEXT)],
        );
    }
}
