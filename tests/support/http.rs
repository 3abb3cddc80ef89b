//! A real HTTP/1.1 server for the destinations' tests, on 127.0.0.1: it reads each request
//! (head and Content-Length body), records it, and answers as a test's script says: a status
//! with headers and a body, an answer held until the test releases it (a slow receiver, or the
//! moment to kill the client), a connection closed mid-answer. `slack()` answers as the
//! documented subset of Slack's Web API (`chat.postMessage`, `auth.test`) and keeps each
//! channel's messages and threads.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// One request as the server read it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// How the server answers a request.
#[derive(Debug, Clone)]
pub enum Reply {
    Status {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Record the request, then answer nothing until the test calls `release` (at most a
    /// minute), then this.
    Hold(Box<Reply>),
    /// A head announcing 100 bytes, 10 of them, then the connection closed.
    CloseMidBody,
    /// A receiver that repeats the request in its answer, as a careless one does: `status` with
    /// `bad request to PATH sig SIGNATURE auth AUTHORIZATION`, or (`slack`) 200 with Slack's
    /// `{"ok": false, "error": "invalid_auth: AUTHORIZATION"}`.
    Echo {
        status: u16,
        slack: bool,
    },
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply::Status { status, headers: Vec::new(), body: String::new() }
    }

    pub fn with_header(status: u16, name: &str, value: &str) -> Reply {
        Reply::Status { status, headers: vec![(name.to_owned(), value.to_owned())], body: String::new() }
    }

    pub fn json(status: u16, body: serde_json::Value) -> Reply {
        Reply::Status {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.to_string(),
        }
    }
}

/// A message Slack keeps.
#[derive(Debug, Clone)]
pub struct Posted {
    pub channel: String,
    pub ts: String,
    pub thread_ts: Option<String>,
    pub body: serde_json::Value,
}

#[derive(Default)]
struct Shared {
    requests: Vec<Request>,
    /// Answers for the next requests, in order; then `default`.
    script: VecDeque<Reply>,
    default: Option<Reply>,
    released: bool,
    /// Slack mode: the messages posted.
    slack: Option<Vec<Posted>>,
    /// Discord mode: the messages posted (`channel` the forum post's id, `thread_ts` set on a
    /// message in an existing post).
    discord: Option<Vec<Posted>>,
}

pub struct HttpServer {
    port: u16,
    shared: Arc<(Mutex<Shared>, Condvar)>,
    /// Over TLS: its self-signed certificate, PEM (for SSL_CERT_FILE).
    pub certificate: Option<String>,
}

impl HttpServer {
    /// A server answering 200 to everything unless told otherwise.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// A Slack-compatible server: `auth.test` and `chat.postMessage` answered as Slack does.
    pub fn slack() -> Self {
        Self::start_with(Some(Vec::new()))
    }

    /// A Discord forum channel's webhook: `thread_name` starts a post, `thread_id` adds to one.
    pub fn discord() -> Self {
        let server = Self::listen(None, None);
        server.shared.0.lock().unwrap().discord = Some(Vec::new());
        server
    }

    /// Over TLS, with a certificate for 127.0.0.1 and localhost that no client trusts unless
    /// told to (`certificate`, for SSL_CERT_FILE).
    pub fn start_tls() -> Self {
        let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        let private = rustls::pki_types::PrivateKeyDer::Pkcs8(key.signing_key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![key.cert.der().clone()], private)
            .unwrap();
        let mut server = Self::listen(None, Some(Arc::new(config)));
        server.certificate = Some(key.cert.pem());
        server
    }

    fn start_with(slack: Option<Vec<Posted>>) -> Self {
        Self::listen(slack, None)
    }

    fn listen(slack: Option<Vec<Posted>>, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new((Mutex::new(Shared { slack, ..Shared::default() }), Condvar::new()));
        let theirs = Arc::clone(&shared);
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let shared = Arc::clone(&theirs);
                let tls = tls.clone();
                thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                    match tls {
                        None => serve(stream, &shared),
                        Some(config) => {
                            let Ok(session) = rustls::ServerConnection::new(config) else { return };
                            serve(rustls::StreamOwned::new(session, stream), &shared);
                        }
                    }
                });
            }
        });
        HttpServer { port, shared, certificate: None }
    }

    pub fn https_url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The next requests get these answers, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        let mut s = self.shared.0.lock().unwrap();
        s.script.extend(replies);
    }

    /// Every request after the script gets this answer (200 if never set).
    pub fn answer(&self, reply: Reply) {
        self.shared.0.lock().unwrap().default = Some(reply);
    }

    /// Lets held answers go.
    pub fn release(&self) {
        let (lock, cvar) = &*self.shared;
        lock.lock().unwrap().released = true;
        cvar.notify_all();
    }

    pub fn requests(&self) -> Vec<Request> {
        self.shared.0.lock().unwrap().requests.clone()
    }

    /// Waits (at most a minute) until `n` requests have come.
    pub fn wait_for(&self, n: usize) -> Vec<Request> {
        let (lock, cvar) = &*self.shared;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut s = lock.lock().unwrap();
        while s.requests.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "{n} requests expected within a minute, {} came", s.requests.len());
            s = cvar.wait_timeout(s, left).unwrap().0;
        }
        s.requests.clone()
    }

    /// Slack or Discord mode: the messages posted, in order.
    pub fn posted(&self) -> Vec<Posted> {
        let s = self.shared.0.lock().unwrap();
        s.slack.clone().or_else(|| s.discord.clone()).unwrap_or_default()
    }
}

fn read_request(r: &mut impl BufRead) -> Option<Request> {
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (n, v) = h.split_once(':')?;
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    let length: usize =
        headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; length];
    r.read_exact(&mut body).ok()?;
    Some(Request { method, path, headers, body })
}

fn serve(mut stream: impl Read + Write, shared: &Arc<(Mutex<Shared>, Condvar)>) {
    let mut reader = BufReader::new(&mut stream);
    let Some(request) = read_request(&mut reader) else { return };
    drop(reader);
    let (lock, cvar) = &**shared;
    let mut reply = {
        let mut s = lock.lock().unwrap();
        s.requests.push(request.clone());
        cvar.notify_all();
        let scripted = s.script.pop_front();
        match (scripted, s.slack.is_some(), s.discord.is_some()) {
            (Some(r), ..) => r,
            (None, true, _) => slack_answer(&mut s, &request),
            (None, _, true) => discord_answer(&mut s, &request),
            (None, ..) => s.default.clone().unwrap_or_else(|| Reply::status(200)),
        }
    };
    if let Reply::Echo { status, slack } = reply {
        let header = |name: &str| request.header(name).unwrap_or_default().to_owned();
        reply = if slack {
            let error = format!("invalid_auth: {}", header("authorization"));
            Reply::json(status, serde_json::json!({ "ok": false, "error": error }))
        } else {
            let body = format!(
                "bad request to {} sig {} auth {}",
                request.path,
                header("chat-notifier-signature"),
                header("authorization")
            );
            Reply::Status { status, headers: Vec::new(), body }
        };
    }
    let mut out = stream;
    if let Reply::Hold(then) = reply {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut s = lock.lock().unwrap();
        while !s.released && Instant::now() < deadline {
            s = cvar.wait_timeout(s, Duration::from_millis(200)).unwrap().0;
        }
        drop(s);
        reply = *then;
    }
    match reply {
        Reply::Status { status, headers, body } => {
            let mut head =
                format!("HTTP/1.1 {status} Whatever\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
            for (n, v) in headers {
                head.push_str(&format!("{n}: {v}\r\n"));
            }
            head.push_str("\r\n");
            let _ = out.write_all(head.as_bytes());
            let _ = out.write_all(body.as_bytes());
        }
        Reply::CloseMidBody => {
            let _ = out.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
        }
        Reply::Hold(_) | Reply::Echo { .. } => {}
    }
    let _ = out.flush();
}

/// Slack's answers: `auth.test` ok; `chat.postMessage` ok with a new `ts`, the message kept
/// (a reply must name a message of the channel in `thread_ts`, else `thread_not_found`).
fn slack_answer(s: &mut Shared, request: &Request) -> Reply {
    let authorized = request.header("authorization") == Some("Bearer xoxb-test-token");
    if !authorized {
        return Reply::json(200, serde_json::json!({ "ok": false, "error": "invalid_auth" }));
    }
    let posted = s.slack.as_mut().unwrap();
    if request.path.ends_with("/auth.test") {
        return Reply::json(200, serde_json::json!({ "ok": true, "user": "notifier", "team": "Acme" }));
    }
    if !request.path.ends_with("/chat.postMessage") {
        return Reply::json(404, serde_json::json!({ "ok": false, "error": "unknown_method" }));
    }
    let body = request.json();
    let channel = body["channel"].as_str().unwrap_or_default().to_owned();
    if channel != "C0LEADS" {
        return Reply::json(200, serde_json::json!({ "ok": false, "error": "channel_not_found" }));
    }
    let thread_ts = body["thread_ts"].as_str().map(str::to_owned);
    if let Some(t) = &thread_ts
        && !posted.iter().any(|p| &p.ts == t && p.thread_ts.is_none())
    {
        return Reply::json(200, serde_json::json!({ "ok": false, "error": "thread_not_found" }));
    }
    let ts = format!("1790000000.{:06}", posted.len() + 1);
    posted.push(Posted { channel: channel.clone(), ts: ts.clone(), thread_ts, body });
    Reply::json(200, serde_json::json!({ "ok": true, "channel": channel, "ts": ts }))
}

/// Discord's answers to a forum channel's webhook: with `?wait=true`, the message created, its
/// `channel_id` the post it is in (a new one for `thread_name`, else the `thread_id` given, which
/// must be a post of the forum).
fn discord_answer(s: &mut Shared, request: &Request) -> Reply {
    let posted = s.discord.as_mut().unwrap();
    if !request.path.starts_with("/api/webhooks/42/token") {
        return Reply::json(404, serde_json::json!({ "message": "Unknown Webhook", "code": 10015 }));
    }
    let query = request.path.split_once('?').map_or("", |(_, q)| q);
    let param = |name: &str| query.split('&').find_map(|kv| kv.strip_prefix(&format!("{name}="))).map(str::to_owned);
    let body = request.json();
    let id = format!("{}", 1_000 + posted.len());
    let channel = match (param("thread_id"), body["thread_name"].as_str()) {
        (Some(thread), _) if posted.iter().any(|p| p.channel == thread && p.thread_ts.is_none()) => thread,
        (Some(_), _) => return Reply::json(404, serde_json::json!({ "message": "Unknown Channel", "code": 10003 })),
        (None, Some(_)) => format!("9{id}"),
        (None, None) => {
            return Reply::json(
                400,
                serde_json::json!({ "message": "Webhooks posted to forum channels must have a thread_name or thread_id", "code": 220001 }),
            );
        }
    };
    let reply_to = param("thread_id");
    posted.push(Posted { channel: channel.clone(), ts: id.clone(), thread_ts: reply_to, body });
    if param("wait").as_deref() == Some("true") {
        Reply::json(200, serde_json::json!({ "id": id, "channel_id": channel }))
    } else {
        Reply::status(204)
    }
}
