//! A real SMTP server for the tests: it speaks the protocol over TCP on 127.0.0.1 (greeting,
//! EHLO, MAIL, RCPT, DATA with dot-unstuffing, RSET, NOOP, QUIT), records what it accepts,
//! and can be told to fail in the ways real servers do.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Received {
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
    /// Answer the end of DATA with this reply for messages containing the needle; accept others.
    RejectDataContaining { needle: String, reply: String },
    /// Read the message, then say nothing for this long before accepting.
    StallAfterData(Duration),
    /// Accept the first `accept` messages; record the next one as received, then never answer:
    /// the moment a crash leaves a message delivered but not marked sent.
    HangAfterData { accept: usize },
}

#[derive(Default)]
struct Shared {
    received: Vec<Received>,
    behavior: Behavior,
    /// When set, AUTH PLAIN with this user and password is required before MAIL.
    login: Option<(String, String)>,
    connections: usize,
    /// Every MAIL FROM seen, accepted or not: attempts, not deliveries.
    attempts: usize,
}

pub struct SmtpServer {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
}

impl SmtpServer {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Mutex::new(Shared::default()));
        let for_thread = Arc::clone(&shared);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let shared = Arc::clone(&for_thread);
                thread::spawn(move || {
                    let _ = serve(stream, &shared);
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

    pub fn set(&self, behavior: Behavior) {
        self.shared.lock().unwrap().behavior = behavior;
    }
}

fn serve(stream: TcpStream, shared: &Mutex<Shared>) -> std::io::Result<()> {
    shared.lock().unwrap().connections += 1;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::new(QuickAck(stream));
    let mut reply = |line: &str| -> std::io::Result<()> { out.write_all(format!("{line}\r\n").as_bytes()) };
    reply("220 127.0.0.1 test ESMTP ready")?;
    let (mut from, mut rcpts) = (None::<String>, Vec::<String>::new());
    let mut logged_in = false;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let command = line.trim_end_matches(['\r', '\n']);
        let verb = command.split([' ', ':']).next().unwrap_or("").to_ascii_uppercase();
        let (behavior, login) = {
            let s = shared.lock().unwrap();
            (s.behavior.clone(), s.login.clone())
        };
        match verb.as_str() {
            "EHLO" if login.is_some() => {
                reply("250-127.0.0.1 hello\r\n250-8BITMIME\r\n250-AUTH PLAIN\r\n250 SIZE 20000000")?
            }
            "EHLO" => reply("250-127.0.0.1 hello\r\n250-8BITMIME\r\n250-SIZE 20000000\r\n250 SMTPUTF8")?,
            "AUTH" => {
                let initial = command.split(' ').nth(2).unwrap_or("");
                let given =
                    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, initial).unwrap_or_default();
                let expected = login.map(|(u, p)| format!("\0{u}\0{p}").into_bytes());
                logged_in = expected.as_deref() == Some(&given[..]);
                reply(if logged_in {
                    "235 2.7.0 authenticated"
                } else {
                    "535 5.7.8 authentication credentials invalid"
                })?
            }
            "MAIL" if login.is_some() && !logged_in => reply("530 5.7.0 authentication required")?,
            "HELO" => reply("250 127.0.0.1 hello")?,
            "NOOP" => reply("250 ok")?,
            "RSET" => {
                (from, rcpts) = (None, Vec::new());
                reply("250 ok")?
            }
            "QUIT" => {
                reply("221 bye")?;
                return Ok(());
            }
            "MAIL" => {
                shared.lock().unwrap().attempts += 1;
                match behavior {
                    Behavior::RejectMail(r) => reply(&r)?,
                    _ => {
                        from = Some(address(command));
                        reply("250 ok")?
                    }
                }
            }
            "RCPT" if from.is_some() => match behavior {
                Behavior::RejectRcpt(r) => reply(&r)?,
                _ => {
                    rcpts.push(address(command));
                    reply("250 ok")?
                }
            },
            "DATA" if !rcpts.is_empty() => {
                reply("354 end with <CRLF>.<CRLF>")?;
                let data = read_data(&mut reader)?;
                match behavior {
                    Behavior::RejectDataContaining { needle, reply: r }
                        if String::from_utf8_lossy(&data).contains(&needle) =>
                    {
                        reply(&r)?
                    }
                    other => {
                        if let Behavior::StallAfterData(pause) = &other {
                            thread::sleep(*pause);
                        }
                        let received =
                            Received { mail_from: from.take().unwrap(), rcpt_to: std::mem::take(&mut rcpts), data };
                        let count = {
                            let mut s = shared.lock().unwrap();
                            s.received.push(received);
                            s.received.len()
                        };
                        if matches!(other, Behavior::HangAfterData { accept } if count > accept) {
                            thread::sleep(Duration::from_secs(120));
                            return Ok(());
                        }
                        reply("250 queued")?
                    }
                }
                (from, rcpts) = (None, Vec::new());
            }
            "RCPT" | "DATA" => reply("503 bad sequence of commands")?,
            _ => reply("502 command not implemented")?,
        }
    }
}

/// Reads with delayed ACKs off. lettre (0.11.23) writes a message's body and its final
/// `\r\n.\r\n` as two writes without TCP_NODELAY, so Nagle holds the second until the
/// server ACKs the first: 40 ms a message against Linux's delayed ACK (lettre PR #1159 fixes
/// it upstream, unreleased). Real servers show that cost; the tests, which check what
/// arrives, need not wait for it.
struct QuickAck(TcpStream);

impl Read for QuickAck {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // Linux drops TCP_QUICKACK again after a while: set it before every read.
        let on: libc::c_int = 1;
        // SAFETY: a valid socket descriptor and a c_int option of the size given.
        unsafe {
            libc::setsockopt(
                self.0.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        self.0.read(buf)
    }
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
