//! A real SMTP server for the tests: it speaks the protocol over TCP on 127.0.0.1 (greeting,
//! EHLO, MAIL, RCPT, DATA with dot-unstuffing, RSET, NOOP, QUIT; PIPELINING offered unless
//! told not to), records what it accepts, and can be told to fail in the ways real servers do,
//! and in the ways hostile ones (or a man in the middle) do: bytes injected before TLS, a
//! reply a byte at a time, a connection dropped on one email, a Latin-1 refusal.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Received {
    /// The message came over TLS (STARTTLS or implicit).
    pub tls: bool,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The message as transmitted, dot-unstuffed, CRLF line ends kept.
    pub data: Vec<u8>,
}

impl Received {
    pub fn text(&self) -> String {
        String::from_utf8(self.data.clone()).expect("7-bit message")
    }
}

/// How the server answers; changed between runs to inject faults.
#[derive(Debug, Clone, Default)]
pub enum Behavior {
    #[default]
    Accept,
    /// Answer MAIL FROM with this reply, e.g. "451 4.3.0 try again later".
    RejectMail(String),
    /// Answer RCPT TO with this reply.
    RejectRcpt(String),
    /// Answer RCPT TO this address with this reply; accept the others.
    RejectRcptTo { address: String, reply: String },
    /// Answer the end of DATA with this reply for messages containing the needle; accept others.
    RejectDataContaining { needle: String, reply: String },
    /// Read the message, then say nothing for this long before accepting.
    StallAfterData(Duration),
    /// Accept the first `accept` messages; record the next one as received, then never answer:
    /// the moment a crash leaves a message delivered but not marked sent.
    HangAfterData { accept: usize },
    /// SIGKILL process `pid` the moment the `nth` MAIL FROM arrives (1-based, over all
    /// connections), then go on as `Accept`: a client stopped while it pipelines the next email.
    KillOnMail { pid: u32, nth: usize },
    /// After `messages` on one connection, close it without a word when the next MAIL comes:
    /// a server's limit of messages per connection, or its idle timeout.
    CloseAfter { messages: usize },
    /// Send these bytes with the 220 to STARTTLS, in the same write, before TLS begins: a man
    /// in the middle's scripted answers (CVE-2011-0411). Then TLS as usual.
    InjectAfterStarttls(Vec<u8>),
    /// Send these bytes with the 354 to DATA, in the same write (a premature "250 queued"),
    /// then read the message and refuse it with a 554: a server out of step, or an injection.
    InjectWith354(Vec<u8>),
    /// Every reply from the greeting on goes a byte at a time, this long between bytes.
    Dribble(Duration),
    /// The replies to MAIL, RCPT, DATA and the message go a byte at a time, this long between
    /// bytes: each answer comes, the whole email's dialogue takes long.
    DribbleTransaction(Duration),
    /// Read a message containing the needle, then close the connection without answering (the
    /// message not taken); accept the others.
    CloseOnDataContaining(String),
    /// Read a message containing the needle, then write bytes that are no TLS record under
    /// the TLS session (a corrupted stream) and close; accept the others. TLS only.
    CorruptTlsOnDataContaining(String),
    /// Answer the end of DATA with these bytes (a whole reply line, any encoding) for messages
    /// containing the needle; accept others.
    RawReplyToDataContaining { needle: String, reply: Vec<u8> },
    /// Offer PIPELINING, but read one command at a time and drop whatever came with it: what a
    /// client pipelined is never answered (RFC 2920 lets a server be this way).
    DiscardPipelined,
    /// Offer PIPELINING, and answer a MAIL that came with more commands "250", then "503 bad
    /// sequence" to each of the rest, unread (taken one at a time, they are served as usual).
    RefusePipelined,
    /// Answer `verb` (MAIL, RCPT or DATA) with these bytes instead, then go on as if the usual
    /// answer had gone (a 354 to MAIL, a 250 to DATA: a server out of step, or lying).
    Misanswer { verb: String, reply: Vec<u8> },
    /// Take a message containing the needle, and answer it with a "250" of exactly `size` bytes
    /// (a multi-line reply) followed, in the same write, by `late`: bytes received that fill the
    /// client's buffer to its end exactly, the rest waiting in the socket or in TLS, unread.
    ReplyOfSizeThen { needle: String, size: usize, late: Vec<u8> },
}

#[derive(Default)]
struct Shared {
    received: Vec<Received>,
    behavior: Behavior,
    /// When set, AUTH PLAIN with this user and password is required before MAIL.
    login: Option<(String, String)>,
    connections: usize,
    /// Each command's verb, in the order received, over all connections.
    verbs: Vec<String>,
    /// Every MAIL FROM seen, accepted or not: attempts, not deliveries.
    attempts: usize,
    /// PIPELINING left out of EHLO.
    no_pipelining: bool,
    /// The login is offered as AUTH LOGIN (a prompt for each) instead of AUTH PLAIN.
    auth_login: bool,
    /// EHLO unknown: an old server that speaks HELO only.
    no_esmtp: bool,
    /// SMTPUTF8 offered in EHLO (RFC 6531).
    smtputf8: bool,
    /// Every MAIL command as received, parameters included.
    mail_commands: Vec<String>,
    /// Per command, in the order received: whether the client had sent more before this one
    /// was answered (RFC 2920 pipelining).
    pipelined: Vec<bool>,
    /// Recipients taken in one transaction; past them, "452 4.5.3 Too many recipients".
    rcpt_limit: Option<usize>,
    /// AUTH refused with what it was given in the refusal's text.
    echo_auth: bool,
    /// Every AUTH command line as received.
    auth_lines: Vec<String>,
}

/// How the server offers TLS, with a self-signed certificate for 127.0.0.1 and localhost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Plain,
    /// Plain at first; STARTTLS offered in EHLO.
    StartTls,
    /// TLS from the first byte (port 465 style).
    Implicit,
}

pub struct SmtpServer {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
}

impl SmtpServer {
    pub fn start() -> Self {
        Self::start_with(TlsMode::Plain)
    }

    pub fn start_with(tls: TlsMode) -> Self {
        Self::start_on(std::net::Ipv4Addr::LOCALHOST.into(), tls)
    }

    /// Listening on `ip` (one of this machine's addresses, not necessarily loopback).
    pub fn start_on(ip: std::net::IpAddr, tls: TlsMode) -> Self {
        Self::serving(TcpListener::bind((ip, 0)).expect("bind"), tls)
    }

    /// Answers every connection to `listener`, each on a thread of its own.
    fn serving(listener: TcpListener, tls: TlsMode) -> Self {
        let tls_config = (tls != TlsMode::Plain).then(self_signed);
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let for_thread = Arc::clone(&shared);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let shared = Arc::clone(&for_thread);
                let tls_config = tls_config.clone();
                thread::spawn(move || {
                    let _ = serve(stream, &shared, tls_config, tls == TlsMode::Implicit);
                });
            }
        });
        SmtpServer { addr, shared }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.lock().unwrap().received.clone()
    }

    pub fn attempts(&self) -> usize {
        self.shared.lock().unwrap().attempts
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.lock().unwrap().connections
    }

    /// Each command's verb ("EHLO", "MAIL", ...), in the order received.
    pub fn verbs(&self) -> Vec<String> {
        self.shared.lock().unwrap().verbs.clone()
    }

    /// Whether each command came with the next already sent, in the order received.
    pub fn pipelined(&self) -> Vec<bool> {
        self.shared.lock().unwrap().pipelined.clone()
    }

    /// Leave PIPELINING out of EHLO from now on: a client must then wait for each answer.
    pub fn without_pipelining(&self) {
        self.shared.lock().unwrap().no_pipelining = true;
    }

    /// Answer EHLO "500 unknown command" from now on, as a server without ESMTP does.
    pub fn without_esmtp(&self) {
        self.shared.lock().unwrap().no_esmtp = true;
    }

    /// Offer SMTPUTF8 (RFC 6531) from now on.
    pub fn offer_smtputf8(&self) {
        self.shared.lock().unwrap().smtputf8 = true;
    }

    /// Every MAIL command received, parameters included, in order.
    pub fn mail_commands(&self) -> Vec<String> {
        self.shared.lock().unwrap().mail_commands.clone()
    }

    /// Offer the login as AUTH LOGIN only, as some older servers do.
    pub fn offer_auth_login(&self) {
        self.shared.lock().unwrap().auth_login = true;
    }

    /// Take at most `n` recipients a transaction from now on; "452 4.5.3" to the next.
    pub fn limit_recipients(&self, n: usize) {
        self.shared.lock().unwrap().rcpt_limit = Some(n);
    }

    /// Refuse AUTH with what it was given in the refusal ("535 ... bad credentials: <it>").
    pub fn echo_auth(&self) {
        self.shared.lock().unwrap().echo_auth = true;
    }

    /// Every AUTH command line received.
    pub fn auth_lines(&self) -> Vec<String> {
        self.shared.lock().unwrap().auth_lines.clone()
    }

    /// Require AUTH PLAIN with these credentials from now on.
    pub fn require_login(&self, user: &str, password: &str) {
        self.shared.lock().unwrap().login = Some((user.to_owned(), password.to_owned()));
    }

    /// Waits (up to 20 s) until the server has received `n` messages.
    pub fn wait_for(&self, n: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while self.received().len() < n {
            assert!(std::time::Instant::now() < deadline, "the server received {} of {n}", self.received().len());
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Forgets what was received: the next test on the same server starts from nothing.
    pub fn clear(&self) {
        let mut shared = self.shared.lock().unwrap();
        shared.received.clear();
        shared.attempts = 0;
    }

    pub fn set(&self, behavior: Behavior) {
        self.shared.lock().unwrap().behavior = behavior;
    }
}

fn serve(
    stream: TcpStream,
    shared: &Mutex<Shared>,
    tls: Option<Arc<rustls::ServerConfig>>,
    implicit: bool,
) -> std::io::Result<()> {
    let greeting_behavior = {
        let mut s = shared.lock().unwrap();
        s.connections += 1;
        s.behavior.clone()
    };
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_nodelay(true)?;
    let plain = stream;
    let mut conn = BufReader::new(match (&tls, implicit) {
        (Some(config), true) => Conn::tls(config, plain)?,
        _ => Conn::Plain(plain),
    });
    // A pause between the bytes of each reply (`Behavior::Dribble`), when set.
    let dribble = std::cell::Cell::new(None::<Duration>);
    let reply = |conn: &mut BufReader<Conn>, line: &str| -> std::io::Result<()> {
        let out = conn.get_mut();
        let bytes = format!("{line}\r\n").into_bytes();
        match dribble.get() {
            Some(pause) => {
                for b in bytes {
                    out.write_all(&[b])?;
                    out.flush()?;
                    thread::sleep(pause);
                }
                Ok(())
            }
            None => {
                out.write_all(&bytes)?;
                out.flush()
            }
        }
    };
    if let Behavior::Dribble(pause) = greeting_behavior {
        dribble.set(Some(pause));
    }
    reply(&mut conn, "220 127.0.0.1 test ESMTP ready")?;
    let (mut from, mut rcpts) = (None::<String>, Vec::<String>::new());
    let mut logged_in = false;
    let mut accepted_here = 0;
    let mut line = String::new();
    loop {
        line.clear();
        if conn.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let command = line.trim_end_matches(['\r', '\n']).to_owned();
        let verb = command.split([' ', ':']).next().unwrap_or("").to_ascii_uppercase();
        let (behavior, login, no_pipelining, auth_login, no_esmtp, smtputf8, rcpt_limit, echo_auth) = {
            let mut s = shared.lock().unwrap();
            s.verbs.push(verb.clone());
            s.pipelined.push(!conn.buffer().is_empty());
            if verb == "MAIL" {
                s.mail_commands.push(command.clone());
            }
            if verb == "AUTH" {
                s.auth_lines.push(command.clone());
            }
            let s = &*s;
            (
                s.behavior.clone(),
                s.login.clone(),
                s.no_pipelining,
                s.auth_login,
                s.no_esmtp,
                s.smtputf8,
                s.rcpt_limit,
                s.echo_auth,
            )
        };
        let is_tls = matches!(conn.get_ref(), Conn::Tls(_));
        if let Behavior::DiscardPipelined = behavior {
            let more = conn.buffer().len();
            conn.consume(more);
        }
        // The answer this command gets instead of its own (`Behavior::Misanswer`), once it is
        // served as usual.
        let misanswer = match &behavior {
            Behavior::Misanswer { verb: v, reply } if *v == verb => Some(reply.clone()),
            _ => None,
        };
        let reply = |conn: &mut BufReader<Conn>, line: &str| -> std::io::Result<()> {
            match &misanswer {
                Some(bytes) => {
                    let out = conn.get_mut();
                    out.write_all(bytes)?;
                    out.flush()
                }
                None => reply(conn, line),
            }
        };
        if let Behavior::RefusePipelined = behavior
            && verb == "MAIL"
            && !conn.buffer().is_empty()
        {
            let rest = String::from_utf8_lossy(conn.buffer()).matches('\n').count();
            let more = conn.buffer().len();
            conn.consume(more);
            let answers = ["250 2.1.0 ok\r\n".to_owned(), "503 5.5.1 bad sequence of commands\r\n".repeat(rest)];
            let out = conn.get_mut();
            out.write_all(answers.concat().as_bytes())?;
            out.flush()?;
            continue;
        }
        dribble.set(match behavior {
            Behavior::Dribble(pause) => Some(pause),
            Behavior::DribbleTransaction(pause) if matches!(verb.as_str(), "MAIL" | "RCPT" | "DATA") => Some(pause),
            _ => None,
        });
        match verb.as_str() {
            "EHLO" if no_esmtp => reply(&mut conn, "500 5.5.1 unknown command")?,
            "EHLO" => {
                let mut lines = vec!["250-127.0.0.1 hello", "250-8BITMIME"];
                if tls.is_some() && !is_tls {
                    lines.push("250-STARTTLS");
                }
                if login.is_some() {
                    lines.push(if auth_login { "250-AUTH LOGIN" } else { "250-AUTH PLAIN" });
                }
                if !no_pipelining {
                    lines.push("250-PIPELINING");
                }
                if smtputf8 {
                    lines.push("250-SMTPUTF8");
                }
                lines.push("250 SIZE 20000000");
                reply(&mut conn, &lines.join("\r\n"))?
            }
            "STARTTLS" if tls.is_some() && !is_tls => {
                match &behavior {
                    Behavior::InjectAfterStarttls(injected) => {
                        let out = conn.get_mut();
                        out.write_all(&[b"220 2.0.0 ready to start TLS\r\n".as_slice(), injected].concat())?;
                        out.flush()?;
                    }
                    _ => reply(&mut conn, "220 2.0.0 ready to start TLS")?,
                }
                let Conn::Plain(plain) = conn.into_inner() else { unreachable!() };
                conn = BufReader::new(Conn::tls(tls.as_ref().unwrap(), plain)?);
                (from, rcpts, logged_in) = (None, Vec::new(), false);
            }
            "HELO" => reply(&mut conn, "250 127.0.0.1 hello")?,
            "NOOP" => reply(&mut conn, "250 ok")?,
            "RSET" => {
                (from, rcpts) = (None, Vec::new());
                reply(&mut conn, "250 ok")?
            }
            "QUIT" => {
                reply(&mut conn, "221 bye")?;
                return Ok(());
            }
            "AUTH" if echo_auth => {
                let given = command.get(5..).unwrap_or("");
                reply(&mut conn, &format!("535 5.7.8 bad credentials: {given}"))?
            }
            "AUTH" => {
                let decode = |s: &str| {
                    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, s.trim()).unwrap_or_default()
                };
                let (given, expected) = if auth_login && command.eq_ignore_ascii_case("AUTH LOGIN") {
                    let mut prompt = |ask: &str| -> std::io::Result<Vec<u8>> {
                        reply(&mut conn, ask)?;
                        let mut answer = String::new();
                        conn.read_line(&mut answer)?;
                        Ok(decode(&answer))
                    };
                    let user = prompt("334 VXNlcm5hbWU6")?;
                    let password = prompt("334 UGFzc3dvcmQ6")?;
                    ([user, b"\0".to_vec(), password].concat(), login.map(|(u, p)| format!("{u}\0{p}").into_bytes()))
                } else {
                    let initial = if auth_login { "" } else { command.split(' ').nth(2).unwrap_or("") };
                    (decode(initial), login.map(|(u, p)| format!("\0{u}\0{p}").into_bytes()))
                };
                logged_in = expected.as_deref() == Some(&given[..]);
                let answer =
                    if logged_in { "235 2.7.0 authenticated" } else { "535 5.7.8 authentication credentials invalid" };
                reply(&mut conn, answer)?
            }
            "MAIL" if login.is_some() && !logged_in => reply(&mut conn, "530 5.7.0 authentication required")?,
            "MAIL" if matches!(behavior, Behavior::CloseAfter { messages } if accepted_here >= messages) => {
                return Ok(());
            }
            "MAIL" => {
                let attempt = {
                    let mut s = shared.lock().unwrap();
                    s.attempts += 1;
                    s.attempts
                };
                if let Behavior::KillOnMail { pid, nth } = behavior
                    && attempt == nth
                {
                    // SAFETY: a signal to the process the test started.
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                }
                match behavior {
                    // The real server, inside TLS, refuses what the injected answers accepted.
                    Behavior::InjectAfterStarttls(_) => reply(&mut conn, "554 5.7.1 refused")?,
                    // 421: the server closes the connection after saying so (RFC 5321 3.8).
                    Behavior::RejectMail(r) if r.starts_with("421") => {
                        reply(&mut conn, &r)?;
                        return Ok(());
                    }
                    Behavior::RejectMail(r) => reply(&mut conn, &r)?,
                    _ => {
                        from = Some(address(&command));
                        reply(&mut conn, "250 ok")?
                    }
                }
            }
            "RCPT" if from.is_some() => match behavior {
                Behavior::RejectRcpt(r) => reply(&mut conn, &r)?,
                Behavior::RejectRcptTo { address: a, reply: r } if address(&command) == a => reply(&mut conn, &r)?,
                _ if rcpt_limit.is_some_and(|n| rcpts.len() >= n) => reply(&mut conn, "452 4.5.3 Too many recipients")?,
                _ => {
                    rcpts.push(address(&command));
                    reply(&mut conn, "250 ok")?
                }
            },
            "DATA" if !rcpts.is_empty() => {
                match &behavior {
                    Behavior::InjectWith354(injected) => {
                        let out = conn.get_mut();
                        out.write_all(&[b"354 end with <CRLF>.<CRLF>\r\n".as_slice(), injected].concat())?;
                        out.flush()?;
                    }
                    _ => reply(&mut conn, "354 end with <CRLF>.<CRLF>")?,
                }
                let data = read_data(&mut conn)?;
                let contains = |needle: &str| String::from_utf8_lossy(&data).contains(needle);
                match behavior {
                    Behavior::RejectDataContaining { needle, reply: r } if contains(&needle) => reply(&mut conn, &r)?,
                    Behavior::InjectWith354(_) => reply(&mut conn, "554 5.7.1 message refused")?,
                    Behavior::CloseOnDataContaining(needle) if contains(&needle) => return Ok(()),
                    Behavior::CorruptTlsOnDataContaining(needle) if contains(&needle) => {
                        if let Conn::Tls(tls) = conn.get_mut() {
                            tls.sock.write_all(b"250 2.0.0 not a TLS record\r\n")?;
                        }
                        return Ok(());
                    }
                    Behavior::RawReplyToDataContaining { needle, reply: r } if contains(&needle) => {
                        let out = conn.get_mut();
                        out.write_all(&r)?;
                        out.flush()?
                    }
                    Behavior::ReplyOfSizeThen { needle, size, late } if contains(&needle) => {
                        let out = conn.get_mut();
                        out.write_all(&[reply_of_size(size), late].concat())?;
                        out.flush()?
                    }
                    other => {
                        if let Behavior::StallAfterData(pause) = &other {
                            thread::sleep(*pause);
                        }
                        let received = Received {
                            tls: is_tls,
                            mail_from: from.take().unwrap(),
                            rcpt_to: std::mem::take(&mut rcpts),
                            data,
                        };
                        let count = {
                            let mut s = shared.lock().unwrap();
                            s.received.push(received);
                            s.received.len()
                        };
                        if matches!(other, Behavior::HangAfterData { accept } if count > accept) {
                            thread::sleep(Duration::from_secs(120));
                            return Ok(());
                        }
                        accepted_here += 1;
                        reply(&mut conn, "250 queued")?
                    }
                }
                (from, rcpts) = (None, Vec::new());
            }
            "RCPT" | "DATA" => reply(&mut conn, "503 bad sequence of commands")?,
            _ => reply(&mut conn, "502 command not implemented")?,
        }
    }
}

/// The connection, before and after TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
}

impl Conn {
    fn tls(config: &Arc<rustls::ServerConfig>, plain: TcpStream) -> std::io::Result<Self> {
        let session = rustls::ServerConnection::new(Arc::clone(config)).map_err(std::io::Error::other)?;
        Ok(Conn::Tls(Box::new(rustls::StreamOwned::new(session, plain))))
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// A certificate no client trusts unless told to: what a local relay often has.
fn self_signed() -> Arc<rustls::ServerConfig> {
    let key = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let private = rustls::pki_types::PrivateKeyDer::Pkcs8(key.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![key.cert.der().clone()], private)
        .unwrap();
    Arc::new(config)
}

/// A "250" reply of exactly `size` bytes (at least 8): lines of 500 bytes, then the last.
fn reply_of_size(size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size);
    while size - out.len() > 507 {
        out.extend_from_slice(format!("250-{}\r\n", "x".repeat(494)).as_bytes());
    }
    let last = size - out.len();
    out.extend_from_slice(format!("250 {}\r\n", "x".repeat(last - 6)).as_bytes());
    assert_eq!(out.len(), size);
    out
}

fn address(command: &str) -> String {
    let start = command.find('<').map_or(0, |i| i + 1);
    let end = command[start..].find('>').map_or(command.len(), |i| start + i);
    command[start..end].to_owned()
}

fn read_data(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line == b".\r\n" {
            return Ok(data);
        }
        // RFC 5321 4.5.2: a leading dot was doubled by the client.
        data.extend_from_slice(if line.starts_with(b"..") { &line[1..] } else { &line });
    }
}

impl SmtpServer {
    /// A server on 127.0.0.1:`port`, a port picked by `free_port` earlier: an SMTP server that was
    /// down, coming back where the client expects it.
    pub fn start_at(port: u16) -> Self {
        Self::serving(TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port)).expect("bind"), TlsMode::Plain)
    }
}

/// A port on 127.0.0.1 that nothing listens on now: an SMTP server that is down.
pub fn free_port() -> u16 {
    TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port()
}
