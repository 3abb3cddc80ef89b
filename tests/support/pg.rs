//! A throwaway PostgreSQL cluster for one test run: Debian's `postgresql` (`.ci/run` installs
//! it), `initdb` into a temporary folder, listening on 127.0.0.1 only, run as `nobody` when the
//! tests run as root (the server refuses root), stopped when the test process exits. Each test
//! gets a database of its own. TLS is on, as on Debian's default server, with a certificate
//! for `localhost` and 127.0.0.1 from a CA of the cluster's own (`Cluster::ca_file`), unknown to
//! the system; plain connections work too, except for the role `TLS_ONLY`, which the server
//! lets in over TLS only (so a test can tell that a connection was encrypted).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use chat_notifier::source::sql::{Param, postgres_sql};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Cluster {
    _dir: tempfile::TempDir,
    data: PathBuf,
    bin: PathBuf,
    pub port: u16,
    /// The PEM certificate of the CA that signed the server's certificate (the certificate
    /// itself, for the self-signed cluster).
    pub ca_file: PathBuf,
    /// The PEM key of the server's certificate.
    pub key: String,
}

/// A superuser the server lets in over TLS only (`hostnossl ... reject` in pg_hba.conf).
pub const TLS_ONLY: &str = "tls_only";

/// A CA and a certificate it signed for `names` (DNS names or IP addresses): the CA's PEM, the
/// certificate's PEM and its key's PEM.
pub fn ca_and_certificate(names: &[&str]) -> (String, String, String) {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "chat-notifier test CA");
    ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
    let ca = rcgen::CertifiedIssuer::self_signed(ca, rcgen::KeyPair::generate().unwrap()).unwrap();
    let mut server = rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
    server.distinguished_name.push(rcgen::DnType::CommonName, names.first().copied().unwrap_or("server"));
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = server.signed_by(&key, &ca).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// A self-signed certificate for the name `cn` as `openssl req -x509 -newkey rsa:2048 -nodes
/// -subj /CN=localhost` makes it with OpenSSL 3: marked CA:TRUE, the name in its CN only, no
/// subjectAltName. Its PEM.
pub fn self_signed(cn: &str, key: &rcgen::KeyPair, serial: u64) -> String {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, cn);
    params.serial_number = Some(serial.into());
    params.self_signed(key).unwrap().pem()
}

static CLUSTER: OnceLock<Option<Cluster>> = OnceLock::new();
static SELF_SIGNED: OnceLock<Option<Cluster>> = OnceLock::new();
static DATABASES: AtomicUsize = AtomicUsize::new(0);

/// The cluster, started on first use; None (the test is skipped) where PostgreSQL is not
/// installed, except under CI, where that is a failure.
pub fn cluster() -> Option<&'static Cluster> {
    started(&CLUSTER, || ca_and_certificate(&["localhost", "127.0.0.1"]))
}

/// A second cluster, started on first use, whose certificate is self-signed for `localhost`
/// (`self_signed`): its `ca_file` is that certificate, as an owner pins it with `sslrootcert`.
pub fn self_signed_cluster() -> Option<&'static Cluster> {
    started(&SELF_SIGNED, || {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = self_signed("localhost", &key, 1);
        (cert.clone(), cert, key.serialize_pem())
    })
}

/// `cell`'s cluster, started on first use with the (CA, certificate, key) `tls` gives.
fn started(
    cell: &'static OnceLock<Option<Cluster>>,
    tls: impl FnOnce() -> (String, String, String),
) -> Option<&'static Cluster> {
    cell.get_or_init(|| match Cluster::start(tls()) {
        Ok(cluster) => Some(cluster),
        Err(why) => {
            assert!(std::env::var_os("CI").is_none(), "CI must run the PostgreSQL tests: {why}");
            eprintln!("skipped: no PostgreSQL server here ({why}); `apt-get install postgresql` runs these");
            None
        }
    })
    .as_ref()
}

fn bin_dir() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).find(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file()));
    on_path.or_else(|| {
        let mut versions: Vec<PathBuf> =
            std::fs::read_dir("/usr/lib/postgresql").ok()?.filter_map(|e| Some(e.ok()?.path().join("bin"))).collect();
        versions.sort();
        versions.into_iter().rev().find(|d| d.join("initdb").is_file())
    })
}

/// Runs a server program as `nobody` when we are root: PostgreSQL refuses to run as root.
fn as_server(program: &Path) -> Command {
    if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("runuser");
        c.args(["-u", "nobody", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

extern "C" fn stop_cluster() {
    for cell in [&CLUSTER, &SELF_SIGNED] {
        if let Some(Some(c)) = cell.get() {
            let _ = as_server(&c.bin.join("pg_ctl")).arg("-D").arg(&c.data).args(["-m", "immediate", "stop"]).output();
        }
    }
}

impl Cluster {
    fn start((ca, cert, key): (String, String, String)) -> Result<Cluster, String> {
        let bin = bin_dir().ok_or("no initdb on PATH or under /usr/lib/postgresql")?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        if unsafe { libc::geteuid() } == 0 {
            let ok =
                Command::new("chown").args(["nobody:nogroup"]).arg(dir.path()).status().map_err(|e| e.to_string())?;
            if !ok.success() {
                return Err("chown nobody failed".into());
            }
        }
        let data = dir.path().join("data");
        let out = as_server(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale", "C"])
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!("initdb: {}", String::from_utf8_lossy(&out.stderr)));
        }
        // TLS as Debian's server has it on, with a certificate the system does not know.
        let ca_file = dir.path().join("ca.crt");
        let write = |name: &str, text: &str| -> Result<PathBuf, String> {
            let path = data.join(name);
            std::fs::write(&path, text).map_err(|e| e.to_string())?;
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .map_err(|e| e.to_string())?;
            if unsafe { libc::geteuid() } == 0 {
                Command::new("chown").args(["nobody:nogroup"]).arg(&path).status().map_err(|e| e.to_string())?;
            }
            Ok(path)
        };
        write("server.crt", &cert)?;
        write("server.key", &key)?;
        std::fs::write(&ca_file, ca).map_err(|e| e.to_string())?;
        let hba = data.join("pg_hba.conf");
        let rules = std::fs::read_to_string(&hba).map_err(|e| e.to_string())?;
        std::fs::write(&hba, format!("hostnossl all {TLS_ONLY} all reject\n{rules}")).map_err(|e| e.to_string())?;
        let port =
            std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
             -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key",
            dir.path().display()
        );
        let out = as_server(&bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .args(["-o", &options, "-l"])
            .arg(dir.path().join("log"))
            .args(["-w", "start"])
            .output()
            .map_err(|e| format!("pg_ctl: {e}"))?;
        if !out.status.success() {
            let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
            return Err(format!("pg_ctl start: {}{log}", String::from_utf8_lossy(&out.stderr)));
        }
        unsafe { libc::atexit(stop_cluster) };
        let cluster = Cluster { _dir: dir, data, bin, port, ca_file, key };
        cluster.admin().batch_execute(&format!("CREATE ROLE {TLS_ONLY} LOGIN SUPERUSER")).map_err(|e| e.to_string())?;
        Ok(cluster)
    }

    /// A port in front of the cluster whose "server" answers a TLS request with `answer`:
    /// `b'N'` as a server without TLS does (then passes the rest through, in clear), `b'S'` and
    /// then bytes that are no TLS, as a broken one. Connections that ask no TLS pass through.
    pub fn proxy(&self, answer: u8) -> u16 {
        use std::io::{Read, Write};
        const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = self.port;
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { continue };
                std::thread::spawn(move || -> std::io::Result<()> {
                    let mut first = [0u8; 8];
                    client.read_exact(&mut first)?;
                    let mut upstream = std::net::TcpStream::connect(("127.0.0.1", server))?;
                    if first == SSL_REQUEST {
                        client.write_all(&[answer])?;
                        if answer != b'N' {
                            return client.write_all(b"this is no TLS server hello");
                        }
                    } else {
                        upstream.write_all(&first)?;
                    }
                    let (mut down, mut up) = (client.try_clone()?, upstream.try_clone()?);
                    std::thread::spawn(move || std::io::copy(&mut upstream, &mut down));
                    std::io::copy(&mut client, &mut up)?;
                    up.shutdown(std::net::Shutdown::Both)
                });
            }
        });
        port
    }

    /// Stops the server (every connection dropped) and starts it again with the same options.
    pub fn restart(&self) {
        let out = as_server(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "restart", "-l"])
            .arg(self._dir.path().join("log"))
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_ctl restart: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The folder of the server's Unix-domain socket.
    pub fn socket_dir(&self) -> &Path {
        self._dir.path()
    }

    /// A new, empty database; its URL.
    pub fn database(&self) -> String {
        let name = format!("t{}_{}", std::process::id(), DATABASES.fetch_add(1, Ordering::SeqCst));
        self.admin().batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        self.url(&name)
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{database}?sslmode=disable", self.port)
    }

    pub fn client(&self, url: &str) -> postgres::Client {
        postgres::Client::connect(url, postgres::NoTls).unwrap()
    }

    fn admin(&self) -> postgres::Client {
        self.client(&self.url("postgres"))
    }
}

/// A "server" on 127.0.0.1 as one on the path could play it: it answers a TLS request with
/// 'N' (no TLS here), then asks for the password in clear and keeps what the client sends.
pub struct PasswordCatcher {
    pub port: u16,
    /// Connections answered so far.
    answered: std::sync::Arc<AtomicUsize>,
    /// What each connection received, when it ended.
    received: std::sync::Mutex<std::sync::mpsc::Receiver<Vec<u8>>>,
}

impl PasswordCatcher {
    pub fn start() -> PasswordCatcher {
        use std::io::{Read, Write};
        const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let answered = std::sync::Arc::new(AtomicUsize::new(0));
        let (tx, rx) = std::sync::mpsc::channel();
        let counter = answered.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(mut client) = client else { continue };
                let (tx, counter) = (tx.clone(), counter.clone());
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    let mut serve = || -> std::io::Result<()> {
                        client.set_read_timeout(Some(std::time::Duration::from_secs(60)))?;
                        let mut answer = client.try_clone()?;
                        let mut read = |n: usize, got: &mut Vec<u8>| -> std::io::Result<Vec<u8>> {
                            let mut buf = vec![0; n];
                            client.read_exact(&mut buf)?;
                            got.extend_from_slice(&buf);
                            Ok(buf)
                        };
                        let first = read(8, &mut got)?;
                        // Counted before any answer: a client that saw one was counted.
                        counter.fetch_add(1, Ordering::SeqCst);
                        let startup = if first == SSL_REQUEST {
                            answer.write_all(b"N")?;
                            read(4, &mut got)?
                        } else {
                            first[..4].to_vec()
                        };
                        let length = u32::from_be_bytes(startup[..4].try_into().unwrap()) as usize;
                        let already = if first == SSL_REQUEST { 4 } else { 8 };
                        read(length.saturating_sub(already).min(10_000), &mut got)?;
                        // AuthenticationCleartextPassword.
                        answer.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3])?;
                        let header = read(5, &mut got)?;
                        let length = u32::from_be_bytes(header[1..5].try_into().unwrap()) as usize;
                        read(length.saturating_sub(4).min(10_000), &mut got)?;
                        Ok(())
                    };
                    let _ = serve();
                    let _ = tx.send(got);
                });
            }
        });
        PasswordCatcher { port, answered, received: std::sync::Mutex::new(rx) }
    }

    /// Everything clients sent, once each connection answered has ended: to call when the
    /// clients have exited, so that no connection is still to come.
    pub fn received(&self) -> Vec<u8> {
        let rx = self.received.lock().unwrap();
        let mut all = Vec::new();
        for _ in 0..self.answered.swap(0, Ordering::SeqCst) {
            all.extend(rx.recv_timeout(std::time::Duration::from_secs(120)).expect("a connection that never ended"));
        }
        all
    }
}

/// The plan PostgreSQL makes for a source's query (written for both databases), its parameters
/// typed as the source binds them; with sequential scans priced out, so a plan that still scans
/// a table has no index to use.
pub fn plan(client: &mut postgres::Client, sql: &str, params: &[Param]) -> String {
    let sql = postgres_sql(sql, params);
    let values: Vec<Box<dyn postgres::types::ToSql + Sync>> = params
        .iter()
        .map(|p| -> Box<dyn postgres::types::ToSql + Sync> {
            match p {
                Param::Int(n) => Box::new(*n),
                Param::Text(t) => Box::new(t.clone()),
                Param::Texts(t) => Box::new(t.clone()),
            }
        })
        .collect();
    let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = values.iter().map(|b| b.as_ref()).collect();
    client.batch_execute("ANALYZE; SET enable_seqscan = off;").unwrap();
    let rows = client.query(&format!("EXPLAIN {sql}"), &refs).unwrap();
    rows.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>().join("\n")
}

/// Export schema v1 as a PostgreSQL exporter writes it: ids from a sequence, times as
/// timestamptz.
pub const EXPORT_SCHEMA: &str = "
CREATE TABLE bots (id TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE conversations (
  id TEXT PRIMARY KEY, bot_id TEXT NOT NULL REFERENCES bots(id), visitor_id TEXT NOT NULL,
  started_at TEXT NOT NULL, page_url TEXT);
CREATE TABLE messages (
  id BIGSERIAL PRIMARY KEY, conversation_id TEXT NOT NULL REFERENCES conversations(id),
  sent_at TIMESTAMPTZ NOT NULL, sender TEXT NOT NULL, gambit_id TEXT, input_type TEXT, field TEXT,
  body TEXT NOT NULL);
CREATE INDEX messages_by_conversation ON messages(conversation_id, id);
INSERT INTO bots VALUES ('lead', 'Lead Bot');
";

pub struct PgExport {
    pub client: postgres::Client,
}

impl PgExport {
    #[allow(clippy::too_many_arguments)]
    pub fn message(
        &mut self,
        conversation: &str,
        at: &str,
        sender: &str,
        step: Option<&str>,
        input: Option<&str>,
        field: Option<&str>,
        body: &str,
    ) -> i64 {
        let at = chrono::DateTime::parse_from_rfc3339(at).unwrap();
        self.client
            .query_one(
                "INSERT INTO messages (conversation_id, sent_at, sender, gambit_id, input_type, field, body) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                &[&conversation, &at, &sender, &step, &input, &field, &body],
            )
            .unwrap()
            .get(0)
    }

    pub fn lead_who_leaves(&mut self, id: &str, name: &str, email: &str, minute: u32) {
        let at = |s: u32| format!("2026-11-24T09:{minute:02}:{s:02}Z");
        self.client
            .execute("INSERT INTO conversations VALUES ($1, 'lead', $2, $3, NULL)", &[&id, &format!("v-{id}"), &at(0)])
            .unwrap();
        self.message(id, &at(0), "bot", Some("ask_name"), Some("text"), None, "What's your name?");
        self.message(id, &at(10), "visitor", None, None, Some("name"), name);
        self.message(id, &at(11), "bot", Some("ask_email"), Some("email"), None, "Your email?");
        self.message(id, &at(20), "visitor", None, None, Some("email"), email);
        self.message(id, &at(21), "bot", Some("ask_phone"), Some("phone"), None, "And your phone?");
    }
}
