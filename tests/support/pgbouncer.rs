//! PgBouncer in front of the test cluster (tests/support/pg.rs), as owners put it between their
//! hosts and PostgreSQL: Debian's `pgbouncer` (`test.sh` installs it), `pool_mode = transaction`,
//! on 127.0.0.1 and a port of its own, every database name passed through to the cluster. Its
//! clients are let in as the cluster lets them in (`trust`, the users `postgres` and
//! `pg::TLS_ONLY` listed in its auth file), without TLS on its side. Run as `nobody` when the
//! tests run as root (`-u nobody`, as pg.rs runs the server). A test can stop it (SIGKILL: the
//! connections drop as in a crash of its host) and start it again on the same port; it is
//! killed when the test process exits.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::pg;

/// The processes still running, killed at exit.
static RUNNING: Mutex<Vec<u32>> = Mutex::new(Vec::new());

pub struct PgBouncer {
    dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

/// PgBouncer in front of the test cluster, started; None (the test is skipped) where
/// PostgreSQL or PgBouncer is not installed (`test.sh` installs both when run as root), except
/// under CI, where that is a failure.
pub fn start() -> Option<PgBouncer> {
    let cluster = pg::cluster()?;
    let Some(program) = program() else {
        assert!(std::env::var_os("CI").is_none(), "CI must run the PgBouncer tests: no pgbouncer on PATH");
        eprintln!("skipped: no pgbouncer here; `apt-get install pgbouncer` runs these");
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let root = unsafe { libc::geteuid() } == 0;
    std::fs::write(dir.path().join("users.txt"), format!("\"postgres\" \"\"\n\"{}\" \"\"\n", pg::TLS_ONLY)).unwrap();
    std::fs::write(
        dir.path().join("pgbouncer.ini"),
        format!(
            "[databases]\n* = host=127.0.0.1 port={cluster}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\n\
             listen_port = {port}\nunix_socket_dir =\npool_mode = transaction\nauth_type = trust\n\
             auth_file = {users}\nadmin_users = postgres\nlogfile = {log}\nmax_client_conn = 200\ndefault_pool_size = 10\n\
             server_tls_sslmode = disable\nignore_startup_parameters = extra_float_digits,options\n",
            cluster = cluster.port,
            users = dir.path().join("users.txt").display(),
            log = dir.path().join("pgbouncer.log").display(),
        ),
    )
    .unwrap();
    if root {
        let ok = Command::new("chown").args(["-R", "nobody:nogroup"]).arg(dir.path()).status().unwrap();
        assert!(ok.success(), "chown nobody {}", dir.path().display());
    }
    let mut bouncer = PgBouncer { dir, port, child: None };
    bouncer.restart_with(&program);
    unsafe { libc::atexit(kill_all) };
    Some(bouncer)
}

fn program() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join("pgbouncer")).find(|p| p.is_file()));
    on_path.or_else(|| Some(PathBuf::from("/usr/sbin/pgbouncer")).filter(|p| p.is_file()))
}

extern "C" fn kill_all() {
    if let Ok(pids) = RUNNING.lock() {
        for pid in pids.iter() {
            // SAFETY: a signal to a process this test process started.
            unsafe { libc::kill(*pid as libc::pid_t, libc::SIGKILL) };
        }
    }
}

impl PgBouncer {
    /// The URL of `database` on the cluster, through PgBouncer (no TLS between the client and
    /// PgBouncer).
    pub fn url(&self, database: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{database}?sslmode=disable", self.port)
    }

    /// `url` (a database on the cluster, `pg::Cluster::database`) through PgBouncer instead.
    pub fn in_front_of(&self, url: &str) -> String {
        let database = url.rsplit('/').next().unwrap().split('?').next().unwrap();
        self.url(database)
    }

    /// What PgBouncer logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Stops it at once (SIGKILL, as a crash of its host): every connection through it drops.
    /// Returns when the process is gone and its port is free.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = child.kill();
        child.wait().unwrap();
        RUNNING.lock().unwrap().retain(|p| *p != child.id());
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < deadline, "pgbouncer's port {} still answers after it was killed", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts it again, on the same port; returns when it answers.
    pub fn restart(&mut self) {
        self.stop();
        self.restart_with(&program().unwrap());
    }

    fn restart_with(&mut self, program: &Path) {
        let mut command = Command::new(program);
        if unsafe { libc::geteuid() } == 0 {
            command.args(["-u", "nobody"]);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // Its log goes to its file (`log`); stderr, to a file too: a pipe nobody reads fills
            // and stops PgBouncer mid-test.
            let stderr = std::fs::File::create(self.dir.path().join("stderr.txt")).unwrap();
            let mut child = command
                .arg("-q")
                .arg(self.dir.path().join("pgbouncer.ini"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .expect("pgbouncer starts");
            RUNNING.lock().unwrap().push(child.id());
            // Up when a query goes through it to the cluster.
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    RUNNING.lock().unwrap().retain(|p| *p != child.id());
                    let err = std::fs::read_to_string(self.dir.path().join("stderr.txt")).unwrap_or_default();
                    // The port of the one before may still be in TIME_WAIT: tried again.
                    assert!(
                        Instant::now() < deadline,
                        "pgbouncer on port {} exited ({status}): {err}{}",
                        self.port,
                        self.log()
                    );
                    std::thread::sleep(Duration::from_millis(100));
                    break;
                }
                if postgres::Client::connect(&self.url("postgres"), postgres::NoTls)
                    .and_then(|mut c| c.simple_query("SELECT 1"))
                    .is_ok()
                {
                    self.child = Some(child);
                    return;
                }
                assert!(Instant::now() < deadline, "pgbouncer on port {} did not answer: {}", self.port, self.log());
                std::thread::sleep(Duration::from_millis(50));
            }
            command = Command::new(program);
            if unsafe { libc::geteuid() } == 0 {
                command.args(["-u", "nobody"]);
            }
        }
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            RUNNING.lock().unwrap().retain(|p| *p != child.id());
        }
    }
}
