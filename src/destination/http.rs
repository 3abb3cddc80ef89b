//! A small blocking HTTP/1.1 client for the destinations: one POST per connection, over TLS
//! (rustls, the system's roots, never downgraded: no option turns verification off) or plain
//! TCP to this machine only. Everything the server sends is untrusted and bounded: the whole
//! request (the name's lookup, connect, TLS, sending, the answer) has one deadline however
//! slowly bytes trickle in, the answer's head is at most 16 KiB and its body is kept up to
//! 64 KiB. Redirects are answers like any other, never followed.
//!
//! Why not a crate (`ureq`): the deadline must hold for the whole exchange and a plain-text
//! URL must reach only this machine, checked on the address connected to; both are a few lines
//! here on the sockets the SMTP client already handles the same way, and the build keeps one
//! TLS stack and no new dependency tree.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;

/// Bytes of an answer's status line and headers.
const HEAD_MAX: u64 = 16 * 1024;
/// Bytes of an answer's body kept; the rest is not read.
pub const BODY_MAX: usize = 64 * 1024;

/// A URL, parsed: `https://host[:port]/path?query`, or `http://` to this machine.
#[derive(Clone, PartialEq, Eq)]
pub struct Url {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// The path and query: a catch hook's secret, never shown.
    pub target: String,
}

impl std::fmt::Debug for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.shown())
    }
}

impl Url {
    /// Parses a URL; errors never repeat it (it may hold a secret).
    pub fn parse(s: &str) -> Result<Url, String> {
        let (tls, rest) = if let Some(rest) = s.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = s.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err("the URL must begin with https:// (or http:// to this machine)".into());
        };
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let target = if target.starts_with('?') { format!("/{target}") } else { target.to_owned() };
        if authority.contains('@') {
            return Err("the URL must not hold a user or password".into());
        }
        if target.chars().any(|c| c.is_ascii_control() || c == ' ') || target.contains('#') {
            return Err("the URL's path has a space, a control character or a fragment".into());
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or("the URL's IPv6 address is not closed with ]")?;
            (format!("[{host}]"), after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host.to_owned(), Some(port)),
                None => (authority.to_owned(), None),
            }
        };
        if host.is_empty() || host.trim_matches(['[', ']']).is_empty() {
            return Err("the URL has no host".into());
        }
        if !host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']')) {
            return Err("the URL's host is not a plain host name or address".into());
        }
        let port = match port {
            None => {
                if tls {
                    443
                } else {
                    80
                }
            }
            Some(p) => p.parse().map_err(|_| "the URL's port is not a number".to_owned())?,
        };
        if !tls && !crate::config::is_loopback(&host) {
            return Err(format!(
                "plain http:// goes only to this machine (127.0.0.1, ::1 or localhost); {host} needs https://"
            ));
        }
        Ok(Url { tls, host: host.to_ascii_lowercase(), port, target })
    }

    /// The URL as logs show it: scheme, host and port, never the path (a catch hook's secret).
    pub fn shown(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        let default = if self.tls { 443 } else { 80 };
        if self.port == default {
            format!("{scheme}://{}/…", self.host)
        } else {
            format!("{scheme}://{}:{}/…", self.host, self.port)
        }
    }

    /// The same server, another path (Slack's methods under its API's base URL).
    pub fn join(&self, path: &str) -> Url {
        let base = self.target.split('?').next().unwrap_or("").trim_end_matches('/');
        Url { target: format!("{base}/{path}"), ..self.clone() }
    }
}

/// An answer: its status, headers (names lowercased) and the first `BODY_MAX` bytes of its body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The start of the body as one line of text, for an error, the destination's secrets
    /// masked in the whole body before it is cut (a secret cut in two would show its start).
    pub fn said(&self, secrets: &super::Secrets) -> String {
        let text = secrets.mask(&String::from_utf8_lossy(&self.body));
        let text = crate::domain::text::line(&text).split_whitespace().collect::<Vec<_>>().join(" ");
        match text.char_indices().nth(200) {
            Some((end, _)) => text[..end].to_owned(),
            None => text,
        }
    }
}

#[derive(Debug)]
pub enum Error {
    /// Nothing was sent: no connection, or TLS failed (a certificate refused).
    Unreachable(String),
    /// The request went, or began to, and no complete answer came: the server may have it.
    Lost(String),
}

/// The TLS settings: the system's roots, verification always on.
pub fn tls_config() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        .unwrap_or_else(|_| {
            // ring offers the default versions; this is never reached.
            rustls::ClientConfig::builder().with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth()
        });
    Arc::new(config)
}

/// POSTs `body` to `url` with `headers`, all within `timeout`.
pub fn post(
    url: &Url,
    headers: &[(&str, String)],
    body: &[u8],
    timeout: Duration,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<Response, Error> {
    let deadline = Instant::now() + timeout;
    let mut stream = open(url, deadline, tls)?;
    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: chat-notifier/{}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n",
        url.target,
        host_header(url),
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let lost = |e: io::Error| Error::Lost(words(&e, "sending"));
    stream.write_all(head.as_bytes()).map_err(lost)?;
    stream.write_all(body).map_err(lost)?;
    stream.flush().map_err(lost)?;
    read_response(&mut BufReader::new(stream)).map_err(|e| Error::Lost(words(&e, "reading the answer")))
}

/// Where a destination whose URL is its secret posts (a webhook, a Slack incoming webhook, a
/// Discord webhook): the URL from `url_env` / `url_file`, the deadline, TLS.
pub struct Endpoint {
    pub url: Url,
    pub timeout: Duration,
    pub tls: Arc<rustls::ClientConfig>,
    /// The URL's path and query, masked in what its server says.
    pub secrets: super::Secrets,
}

impl Endpoint {
    pub fn open(config: &crate::config::DestinationConfig) -> anyhow::Result<Self> {
        let url = Url::parse(&config.secret("url")?)
            .map_err(|e| anyhow::anyhow!("destinations (name = {:?}).url_env / url_file: {e}", config.name))?;
        let mut secrets = super::Secrets::default();
        secrets.add_url(&url);
        Ok(Endpoint { url, timeout: config.timeout(), tls: tls_config(), secrets })
    }

    /// What `check` says: the server reached (TLS verified), nothing sent.
    pub fn probe(&self) -> anyhow::Result<String> {
        probe(&self.url, self.timeout, &self.tls).map_err(|e| match e {
            Error::Unreachable(e) | Error::Lost(e) => {
                anyhow::anyhow!("{}: {}", self.url.shown(), self.secrets.mask(&e))
            }
        })?;
        Ok(format!(
            "{} reachable (connected{}, nothing sent)",
            self.url.shown(),
            if self.url.tls { " and TLS verified" } else { "" }
        ))
    }
}

/// Opens a connection (and TLS) to `url`'s server and closes it: whether it can be reached,
/// sending nothing.
pub fn probe(url: &Url, timeout: Duration, tls: &Arc<rustls::ClientConfig>) -> Result<(), Error> {
    open(url, Instant::now() + timeout, tls).map(drop)
}

fn host_header(url: &Url) -> String {
    let default = if url.tls { 443 } else { 80 };
    if url.port == default { url.host.clone() } else { format!("{}:{}", url.host, url.port) }
}

fn open(url: &Url, deadline: Instant, tls: &Arc<rustls::ClientConfig>) -> Result<Stream, Error> {
    let unreachable = |e: io::Error| Error::Unreachable(words(&e, "connecting"));
    let bare = url.host.trim_matches(['[', ']']);
    let addresses = resolve(bare, url.port, deadline).map_err(unreachable)?;
    let mut last = None;
    let mut tcp = None;
    for address in addresses {
        // Plain text goes to this machine only, whatever a name resolved to.
        if !url.tls && !crate::config::is_loopback_ip(address.ip()) {
            last =
                Some(io::Error::other(format!("{} is not this machine; plain http:// goes only here", address.ip())));
            continue;
        }
        match remaining(deadline).and_then(|left| TcpStream::connect_timeout(&address, left)) {
            Ok(t) => {
                tcp = Some(t);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let tcp = tcp.ok_or_else(|| unreachable(last.unwrap_or_else(|| io::Error::other("no address"))))?;
    let _ = tcp.set_nodelay(true);
    let socket = Socket { tcp, deadline };
    if !url.tls {
        return Ok(Stream::Plain(socket));
    }
    let name = ServerName::try_from(bare.to_owned())
        .map_err(|_| Error::Unreachable(format!("{} is no name TLS can check", url.host)))?;
    let session =
        rustls::ClientConnection::new(Arc::clone(tls), name).map_err(|e| Error::Unreachable(format!("TLS: {e}")))?;
    let mut stream = rustls::StreamOwned::new(session, socket);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock).map_err(|e| Error::Unreachable(words(&e, "TLS handshake")))?;
    }
    Ok(Stream::Tls(Box::new(stream)))
}

/// The host's addresses, looked up within the deadline: the system's resolver has no timeout
/// of its own, so it runs on a thread of its own, left to finish alone if it is too slow.
fn resolve(host: &str, port: u16, deadline: Instant) -> io::Result<Vec<std::net::SocketAddr>> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![std::net::SocketAddr::new(ip, port)]);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let name = host.to_owned();
    std::thread::spawn(move || {
        let _ = tx.send((name.as_str(), port).to_socket_addrs().map(Iterator::collect::<Vec<_>>));
    });
    match rx.recv_timeout(remaining(deadline)?) {
        Ok(found) => found,
        Err(_) => {
            Err(io::Error::new(io::ErrorKind::TimedOut, format!("looking up {host}: no answer within the timeout")))
        }
    }
}

fn read_response(r: &mut impl BufRead) -> io::Result<Response> {
    loop {
        let (status, headers) = read_head(r)?;
        // 1xx answers are interim (100 Continue): the real one follows.
        if (100..200).contains(&status) {
            continue;
        }
        let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        let body = if status == 204 || status == 304 {
            Vec::new()
        } else if header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
            read_chunked(r)?
        } else if let Some(length) = header("content-length") {
            let length: u64 =
                length.trim().parse().map_err(|_| io::Error::other(format!("a Content-Length of {length:?}")))?;
            let keep = length.min(BODY_MAX as u64);
            let mut body = Vec::new();
            r.take(keep).read_to_end(&mut body)?;
            if (body.len() as u64) < keep {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the connection closed mid-answer ({} of {length} bytes)", body.len()),
                ));
            }
            body
        } else {
            let mut body = Vec::new();
            r.take(BODY_MAX as u64).read_to_end(&mut body)?;
            body
        };
        return Ok(Response { status, headers, body });
    }
}

fn read_head(r: &mut impl BufRead) -> io::Result<(u16, Vec<(String, String)>)> {
    let mut limited = r.take(HEAD_MAX);
    let mut line = Vec::new();
    let mut status = None;
    let mut headers = Vec::new();
    loop {
        line.clear();
        let n = limited.read_until(b'\n', &mut line)?;
        if n == 0 || !line.ends_with(b"\n") {
            let why =
                if limited.limit() == 0 { "an answer's head past 16 KiB" } else { "the connection closed mid-answer" };
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, why));
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\r', '\n']);
        match status {
            None => {
                let mut parts = text.splitn(3, ' ');
                let version = parts.next().unwrap_or("");
                let code = parts.next().and_then(|c| c.parse::<u16>().ok()).filter(|c| (100..600).contains(c));
                match code {
                    Some(code) if version.starts_with("HTTP/1.") => status = Some(code),
                    _ => return Err(io::Error::other("an answer that is no HTTP/1.1 answer")),
                }
            }
            Some(code) if text.is_empty() => return Ok((code, headers)),
            Some(_) => {
                if let Some((name, value)) = text.split_once(':') {
                    headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
                }
            }
        }
    }
}

fn read_chunked(r: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut line = Vec::new();
        r.take(1024).read_until(b'\n', &mut line)?;
        if !line.ends_with(b"\n") {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the connection closed mid-answer"));
        }
        let text = String::from_utf8_lossy(&line);
        let size = text.trim().split(';').next().unwrap_or("");
        let size = u64::from_str_radix(size, 16).map_err(|_| io::Error::other("a chunk size that is no number"))?;
        if size == 0 {
            return Ok(body);
        }
        let keep = size.min((BODY_MAX - body.len()) as u64);
        let before = body.len();
        r.take(keep).read_to_end(&mut body)?;
        if ((body.len() - before) as u64) < keep {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the connection closed mid-answer"));
        }
        if body.len() >= BODY_MAX {
            // Enough of it: the rest is not read.
            return Ok(body);
        }
        let mut crlf = Vec::new();
        r.take(2).read_to_end(&mut crlf)?;
    }
}

/// An I/O error in words, saying what was being done.
fn words(e: &io::Error, doing: &str) -> String {
    if let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        return format!("{doing}: TLS: {tls}");
    }
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            format!("{doing}: no complete answer within the timeout")
        }
        io::ErrorKind::ConnectionRefused => format!("{doing}: connection refused"),
        io::ErrorKind::UnexpectedEof => format!("{doing}: {e}"),
        _ => format!("{doing}: {e}"),
    }
}

fn remaining(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "no complete answer within the timeout"));
    }
    Ok(left)
}

/// The TCP connection under the request's deadline: each read and write waits only for what
/// is left of it.
struct Socket {
    tcp: TcpStream,
    deadline: Instant,
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.tcp.set_read_timeout(Some(remaining(self.deadline)?))?;
        self.tcp.read(buf)
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tcp.set_write_timeout(Some(remaining(self.deadline)?))?;
        self.tcp.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

enum Stream {
    Plain(Socket),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, Socket>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_are_shown_without_their_path() {
        let u = Url::parse("https://hooks.zapier.com/hooks/catch/123/abc/").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.target.as_str()),
            (true, "hooks.zapier.com", 443, "/hooks/catch/123/abc/")
        );
        assert_eq!(u.shown(), "https://hooks.zapier.com/…");
        let local = Url::parse("http://127.0.0.1:8080?x=1").unwrap();
        assert_eq!((local.target.as_str(), local.shown()), ("/?x=1", "http://127.0.0.1:8080/…".to_owned()));
        assert_eq!(Url::parse("http://[::1]:9/h").unwrap().host, "[::1]");
        for bad in [
            "ftp://x/",
            "http://example.com/h",
            "https://u:p@x.com/",
            "https://x.com:port/",
            "https:///x",
            "https://x.com/a b",
        ] {
            let e = Url::parse(bad).unwrap_err();
            assert!(!e.contains("u:p") && !e.contains("/a b"), "{bad}: {e}");
        }
        assert_eq!(
            Url::parse("https://slack.com/api").unwrap().join("chat.postMessage").target,
            "/api/chat.postMessage"
        );
    }

    #[test]
    fn answers_are_read_within_their_bounds() {
        let read = |s: &str| read_response(&mut io::Cursor::new(s.as_bytes().to_vec()));
        let r = read("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
        let r =
            read("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!(r.body, b"abcde");
        assert!(read("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort").is_err(), "closed mid-body");
        assert!(read("HTTP/1.1 200 OK\r\nContent-Le").is_err(), "closed mid-head");
        assert!(read("SMTP 220 hello\r\n\r\n").is_err());
        let huge = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(20_000));
        assert!(read(&huge).is_err(), "a head past 16 KiB");
        let r = read(&format!("HTTP/1.1 500 x\r\n\r\n{}", "b".repeat(100_000))).unwrap();
        assert_eq!(r.body.len(), BODY_MAX);
    }
}
