//! The SMTP client (RFC 5321): one connection carries a whole batch. TLS from the first byte or
//! after STARTTLS, AUTH PLAIN or LOGIN, and each email's MAIL, RCPT and DATA written at once
//! where the server offers PIPELINING (RFC 2920): two round trips an email instead of four.
//! lettre's connection writes one command and waits for its answer, and cannot be made to
//! pipeline (BENCHMARKS.md, sending); lettre still builds the messages.
//!
//! What the server sends is untrusted: replies are bytes (the code decides, the text is shown
//! lossily and cleaned), `timeout` is a deadline for a whole dialogue (opening the connection,
//! one email, a RSET or QUIT), never per read, and the client reads only answers it asked for:
//! a byte buffered past the last awaited answer (after the 220 to STARTTLS above all, where it
//! would be read as coming from inside TLS) drops the connection (response injection).

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use rustls::pki_types::ServerName;

/// Longest reply line read: RFC 5321 allows 512 octets; a server sending more is broken.
const REPLY_LINE: u64 = 4096;
/// Lines of one multi-line reply (an EHLO lists a dozen extensions).
const REPLY_LINES: usize = 100;
/// Recipients of one transaction: RFC 5321 4.5.3.1.8 has every server take 100; more go in
/// further transactions of the same message.
pub const RCPT_LIMIT: usize = 100;

/// What went wrong, as the sending loop needs to tell it apart.
#[derive(Debug)]
pub enum Error {
    /// The server's answer, when it is not the one the step needs (a refusal, mostly).
    Reply { code: u16, text: String },
    /// The connection failed, timed out or was closed.
    Io(io::Error),
    /// The TLS session failed once set up (a corrupt record, an alert): as good as lost.
    Tls(String),
    /// The connection failed, timed out or was closed in the middle of one message's
    /// transaction, after the server accepted its MAIL: the loss is that message's attempt.
    Lost(io::Error),
    /// The server offers PIPELINING but answered no pipelined envelope within the timeout: a
    /// server that reads one command at a time and drops the rest (RFC 2920 lets it). Nothing
    /// of the message was sent; one command at a time works with it.
    Stalled(io::Error),
    /// The server broke the protocol: an answer that is no SMTP answer (garbage, a line past
    /// 4096 bytes, too many lines, lines of different codes), a code the command cannot get
    /// (a 354 to MAIL), bytes nothing asked for (response injection). The connection is dropped;
    /// before a message's MAIL (greeting, EHLO, STARTTLS, AUTH) the server is unavailable.
    Protocol(String),
    /// The server broke the protocol in one message's transaction, from its MAIL on: that
    /// message's failure, as `Lost`, so that one message the server garbles cannot hold the
    /// others for ever.
    Violated(String),
    /// Bytes nothing asked for were waiting before a message's MAIL went (a late answer to the
    /// message before, an injection): nothing of this message was written, the connection is
    /// dropped, and the message may go on a new one.
    Unasked(String),
    /// The server offers PIPELINING and refused the pipelined envelope with 503 (bad sequence):
    /// nothing was taken; one command at a time works with it.
    Unpipelined(String),
    /// The server takes fewer recipients than this message has (a 452 4.5.3, or a 452 to a RCPT
    /// after others were accepted; RFC 5321 4.5.3.1.10): this message's own failure, no limit
    /// on the rest.
    TooManyRecipients { code: u16, text: String },
    /// Anything else: TLS set-up, a step the server does not offer.
    Other(String),
}

impl Error {
    pub fn code(&self) -> Option<u16> {
        match self {
            Error::Reply { code, .. } => Some(*code),
            _ => None,
        }
    }

    pub fn is_permanent(&self) -> bool {
        self.code().is_some_and(|c| (500..600).contains(&c))
    }

    pub fn is_transient(&self) -> bool {
        self.code().is_some_and(|c| (400..500).contains(&c))
    }

    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Io(e) | Error::Lost(e) | Error::Stalled(e) if timed_out(e))
    }
}

fn timed_out(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Error::Reply { code, text } if (500..600).contains(code) => write!(f, "permanent error ({code}): {text}"),
            Error::Reply { code, text } if (400..500).contains(code) => write!(f, "transient error ({code}): {text}"),
            Error::Reply { code, text } => write!(f, "unexpected answer ({code}): {text}"),
            Error::Io(e) => write!(f, "{e}"),
            Error::Tls(why) => write!(f, "TLS: {why}"),
            Error::Lost(e) => write!(f, "the connection was lost during this email's transaction: {e}"),
            Error::Stalled(e) => write!(f, "no answer to the pipelined MAIL, RCPT and DATA: {e}"),
            Error::Protocol(why) | Error::Unasked(why) => f.write_str(why),
            Error::Violated(why) => write!(f, "the server broke the protocol in this email's transaction: {why}"),
            Error::Unpipelined(text) => write!(f, "the server refused the pipelined MAIL, RCPT and DATA (503): {text}"),
            Error::TooManyRecipients { code, text } => write!(f, "too many recipients for the server ({code}): {text}"),
            Error::Other(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        // rustls reports a bad certificate as an I/O error wrapping its own.
        match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
            Some(tls) => Error::Tls(tls.to_string()),
            None => Error::Io(in_words(e)),
        }
    }
}

/// An I/O error as one line of words: rustls says a connection closed without TLS's goodbye
/// with a link to its manual, which is no help in a cron mail.
fn in_words(e: io::Error) -> io::Error {
    let text = e.to_string();
    if e.kind() == io::ErrorKind::UnexpectedEof && text.contains("close_notify") {
        return io::Error::new(
            e.kind(),
            "the server closed the connection without ending TLS first (no close_notify): cut off, or a server \
             that does not close TLS properly",
        );
    }
    match text.find(": http") {
        Some(at) => io::Error::new(e.kind(), text[..at].to_owned()),
        None => e,
    }
}

/// How the connection is secured.
#[derive(Clone)]
pub enum Tls {
    None,
    /// STARTTLS, required: never a silent fall back to plain text.
    Starttls(Arc<rustls::ClientConfig>),
    /// TLS from the first byte (port 465).
    Wrapper(Arc<rustls::ClientConfig>),
}

/// Where and how to connect.
pub struct Settings<'a> {
    pub host: &'a str,
    pub port: u16,
    pub tls: &'a Tls,
    pub timeout: Duration,
    pub login: Option<(&'a str, &'a str)>,
    /// Whether to pipeline where the server offers it: off once a server offering it stalled.
    pub pipelining: bool,
}

/// The TLS settings: the system's roots, or (for a local relay, when the owner says so) any
/// certificate at all.
pub fn tls_config(accept_invalid_certs: bool) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        rustls::ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let config = if accept_invalid_certs {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyCertificate(provider))).with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// One SMTP session, logged in and ready for MAIL.
pub struct Connection {
    stream: BufReader<Stream>,
    /// How long one dialogue may take: opening, one email, a RSET, a QUIT.
    timeout: Duration,
    pipelining: bool,
    smtputf8: bool,
    /// A failure left the session in an unknown state: open another.
    broken: bool,
    /// The envelope `begin` wrote, whose answers `send` has yet to read.
    begun: Option<Vec<String>>,
    /// Answers owed by the server for what was written, and what asked for the last of them:
    /// anything buffered once none is owed was sent unasked.
    owed: usize,
    asked: &'static str,
    /// The login's secrets as they could come back in a reply (the AUTH argument, the password,
    /// their base64): masked in any reply text before it is shown or stored.
    secrets: Vec<String>,
}

impl Connection {
    /// Connects, secures and logs in, all of it within one `timeout`.
    pub fn open(settings: &Settings) -> Result<Self, Error> {
        if settings.login.is_some() && matches!(settings.tls, Tls::None) && !crate::config::is_loopback(settings.host) {
            // The config refuses this already; never a password in clear, whatever the caller.
            return Err(Error::Other(format!("no AUTH without TLS to {:?}, which is not this machine", settings.host)));
        }
        let deadline = Instant::now() + settings.timeout;
        let tcp = connect(settings.host, settings.port, deadline)?;
        if settings.login.is_some() && matches!(settings.tls, Tls::None) {
            // Whatever the name said (`localhost.` is looked up in DNS, and anyone answering it
            // gets the login): the password goes in clear only to an address on this machine.
            let peer = tcp.peer_addr()?.ip();
            if !crate::config::is_loopback_ip(peer) {
                return Err(Error::Other(format!(
                    "no login in clear: {:?} is {peer}, not this machine; the password was not sent (use \
                     security = \"starttls\" or \"tls\")",
                    settings.host
                )));
            }
        }
        let socket = Socket { tcp, deadline };
        let server = ServerName::try_from(settings.host.to_owned())
            .map_err(|_| Error::Other(format!("TLS: {:?} is not a host name", settings.host)))?;
        let stream = match settings.tls {
            Tls::Wrapper(config) => Stream::tls(config, server.clone(), socket)?,
            _ => Stream::Plain(socket),
        };
        let mut c = Connection {
            stream: BufReader::new(stream),
            timeout: settings.timeout,
            pipelining: false,
            smtputf8: false,
            broken: false,
            begun: None,
            owed: 1,
            asked: "the greeting",
            secrets: Vec::new(),
        };
        c.expect("the greeting", 220)?;
        let mut offered = c.hello()?;
        if let Tls::Starttls(config) = settings.tls {
            if !offered.iter().any(|e| e == "STARTTLS") {
                return Err(Error::Other("the server does not offer STARTTLS, which the config requires".into()));
            }
            // Its 220 is the last plain-text byte read: anything buffered after it is refused by
            // `reply_lines` (CVE-2011-0411), and what comes later goes to the TLS handshake.
            c.command("STARTTLS\r\n", "STARTTLS", 220)?;
            let Stream::Plain(socket) = std::mem::replace(c.stream.get_mut(), Stream::Closed) else {
                return Err(Error::Other("STARTTLS on a TLS connection".into()));
            };
            *c.stream.get_mut() = Stream::tls(config, server, socket)?;
            offered = c.hello()?;
        }
        if let Some((user, password)) = settings.login {
            c.log_in(&offered, user, password)?;
        }
        c.pipelining = settings.pipelining && offered.iter().any(|e| e == "PIPELINING");
        c.smtputf8 = offered.iter().any(|e| e == "SMTPUTF8");
        Ok(c)
    }

    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Writes the MAIL, RCPT and DATA of the next message, where the server offers PIPELINING,
    /// without waiting for their answers: the server reads them while the caller records the
    /// message before. Nothing is delivered until `send`, with the same envelope, sends the
    /// message; a connection dropped meanwhile delivers nothing.
    pub fn begin(&mut self, from: &str, to: &[&str]) -> Result<(), Error> {
        if !self.pipelining || self.begun.is_some() || self.broken || self.unasked() > 0 {
            // Bytes nothing asked for: `send` says so.
            return Ok(());
        }
        // An address that needs SMTPUTF8 where it is not offered: `send` says so.
        let Ok(commands) = self.envelope(from, chunks(to)[0]) else { return Ok(()) };
        self.deadline(self.timeout);
        self.write(commands.concat().as_bytes(), commands.len(), "DATA")?;
        self.begun = Some(commands);
        Ok(())
    }

    /// Sends one message (RFC 5322 bytes, CRLF line ends) from `from` to `to`. A refusal of
    /// this one message leaves the connection ready for the next.
    ///
    /// The whole dialogue, MAIL to the answer to the message, must end within the timeout. A
    /// connection lost once the server accepted MAIL is `Error::Lost`: this message's attempt.
    pub fn send(&mut self, from: &str, to: &[&str], message: &[u8]) -> Result<(), Error> {
        let begun = self.begun.take();
        if begun.is_none() && self.unasked() > 0 {
            // Sent after the last answer, before anything asked: never read as this message's.
            self.broken = true;
            return Err(Error::Unasked(self.unasked_words()));
        }
        // More than 100 recipients: several transactions of the same message.
        for (i, to) in chunks(to).into_iter().enumerate() {
            let commands = match self.envelope(from, to) {
                Ok(commands) => commands,
                Err(e) => {
                    // Whatever `begin` wrote is waiting for a message: the connection is given up.
                    self.broken |= begun.is_some() || i > 0;
                    return Err(e);
                }
            };
            let begun = match &begun {
                Some(written) if i == 0 && *written != commands => {
                    self.broken = true;
                    return Err(Error::Other("the envelope begun is not this message's".into()));
                }
                written => i == 0 && written.is_some(),
            };
            self.deadline(self.timeout);
            // Past the first transaction, part of the message went: any loss is this message's.
            let mut mail_accepted = i > 0;
            let result = self.transaction(&commands, begun, message, &mut mail_accepted);
            match result {
                Ok(()) => {}
                Err(Error::Io(e)) if mail_accepted => return Err(Error::Lost(e)),
                Err(Error::Tls(why)) if mail_accepted => {
                    return Err(Error::Lost(io::Error::other(format!("TLS: {why}"))));
                }
                Err(Error::Protocol(why)) => {
                    self.broken = true;
                    return Err(Error::Violated(why));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn transaction(
        &mut self,
        commands: &[String],
        begun: bool,
        message: &[u8],
        mail_accepted: &mut bool,
    ) -> Result<(), Error> {
        let verbs: Vec<&'static str> = (0..commands.len())
            .map(|i| {
                if i == 0 {
                    "MAIL"
                } else if i + 1 == commands.len() {
                    "DATA"
                } else {
                    "RCPT"
                }
            })
            .collect();
        // Each answer in order; a refusal stops a session without PIPELINING at that command.
        let mut replies = Vec::with_capacity(commands.len());
        if self.pipelining {
            if !begun {
                self.write(commands.concat().as_bytes(), commands.len(), "DATA")?;
            }
            for verb in &verbs {
                match self.reply(verb) {
                    Ok(reply) => {
                        *mail_accepted |= replies.is_empty() && reply.0 < 300;
                        replies.push(reply);
                    }
                    // An answer out of step with the command is said as such, whatever came
                    // before it (a late answer to the message before, read as this MAIL's).
                    Err(e @ Error::Protocol(_)) => return Err(e),
                    // A server that refuses with 421 closes the connection before answering the
                    // rest: its refusal is the answer ("421 4.7.0 Try again later" is throttling).
                    Err(e) => match replies.into_iter().find(|(code, _)| *code >= 400) {
                        Some((code, text)) => {
                            self.broken = true;
                            return Err(Error::Reply { code, text });
                        }
                        // No answer in time to what went at once: a server that takes one
                        // command at a time. The message was not sent.
                        None => match e {
                            Error::Io(e) if timed_out(&e) => return Err(Error::Stalled(e)),
                            e => return Err(e),
                        },
                    },
                }
            }
        } else {
            for (command, verb) in commands.iter().zip(&verbs) {
                self.write(command.as_bytes(), 1, verb)?;
                let reply = self.reply(verb)?;
                *mail_accepted |= replies.is_empty() && reply.0 < 300;
                let refused = reply.0 >= 400;
                replies.push(reply);
                if refused {
                    break;
                }
            }
        }
        let data = replies.len() == commands.len() && replies.last().is_some_and(|r| r.0 == 354);
        if let Some(k) = replies.iter().position(|(code, _)| *code >= 400) {
            let (code, text) = replies[k].clone();
            if data || (self.pipelining && code == 503) {
                // A recipient was refused but DATA was taken: whatever is sent now is delivered to
                // the others. Closing the connection is the one way to abandon the message. After
                // a 503 to what was pipelined, the server's state is anyone's guess.
                self.broken = true;
            } else {
                self.reset();
            }
            if self.pipelining && code == 503 {
                // Bad sequence, first of all: a server that does not take pipelined commands
                // although it offers it. Nothing was taken; one at a time works with it.
                return Err(Error::Unpipelined(text));
            }
            // A 452 to a RCPT after others were taken is the server's limit on recipients (RFC
            // 5321 4.5.3.1.10), unless its enhanced code says otherwise (4.2.2 mailbox full).
            let enhanced = text.as_bytes().get(..2).is_some_and(|b| b[0].is_ascii_digit() && b[1] == b'.');
            if code == 452 && (text.starts_with("4.5.3") || (verbs[k] == "RCPT" && k > 1 && !enhanced)) {
                return Err(Error::TooManyRecipients { code, text });
            }
            return Err(Error::Reply { code, text });
        }
        if !data {
            return Err(Error::Protocol("the server did not answer DATA with 354".into()));
        }
        let mut body = Vec::with_capacity(message.len() + message.len() / 64 + 5);
        stuff(message, &mut body);
        self.write(&body, 1, "the message")?;
        match self.reply("the message")? {
            (200..=299, _) => Ok(()),
            (code, text) => {
                self.broken |= code == 421;
                if code == 452 && text.starts_with("4.5.3") {
                    return Err(Error::TooManyRecipients { code, text });
                }
                Err(Error::Reply { code, text })
            }
        }
    }

    /// QUIT, answered or not: everything went already. After a `begin` not followed by its
    /// `send`, the server may be waiting for a message: the connection is dropped instead.
    pub fn quit(&mut self) {
        if self.broken || self.begun.is_some() {
            return;
        }
        self.deadline(self.timeout);
        match self.write(b"QUIT\r\n", 1, "QUIT") {
            Ok(()) => {
                let _ = self.reply("QUIT");
            }
            // Everything went already; what came unasked after it is said, not read.
            Err(e @ Error::Protocol(_)) => log::warn!("{e}; the connection was dropped instead of saying QUIT"),
            Err(_) => {}
        }
    }

    /// MAIL, RCPT for each recipient, DATA. An address that is not ASCII (its domain is, in
    /// IDNA form: `mail::ascii_mailbox`) goes only where the server offers SMTPUTF8 (RFC 6531).
    fn envelope(&self, from: &str, to: &[&str]) -> Result<Vec<String>, Error> {
        let utf8 = match [from].iter().chain(to).find(|a| !a.is_ascii()) {
            None => "",
            Some(_) if self.smtputf8 => " SMTPUTF8",
            Some(address) => {
                return Err(Error::Other(format!(
                    "the address {:?} needs SMTPUTF8 (RFC 6531), which the server does not offer",
                    crate::domain::text::header(address, 100)
                )));
            }
        };
        let mut commands = vec![format!("MAIL FROM:<{from}>{utf8}\r\n")];
        commands.extend(to.iter().map(|t| format!("RCPT TO:<{t}>\r\n")));
        commands.push("DATA\r\n".to_owned());
        Ok(commands)
    }

    /// EHLO; the extensions the server offers, upper case, each its keyword and parameters. A
    /// server that does not know EHLO gets HELO and offers none (RFC 5321 3.2).
    fn hello(&mut self) -> Result<Vec<String>, Error> {
        let name = client_name();
        let (code, lines) = self.command_lines(&format!("EHLO {name}\r\n"), "EHLO")?;
        match code {
            250 => Ok(lines.iter().skip(1).map(|l| l.to_ascii_uppercase()).collect()),
            500 | 502 => self.command(&format!("HELO {name}\r\n"), "HELO", 250).map(|()| Vec::new()),
            _ => Err(Error::Reply { code, text: lines.join(" ") }),
        }
    }

    fn log_in(&mut self, offered: &[String], user: &str, password: &str) -> Result<(), Error> {
        let mechanisms: Vec<&str> = offered
            .iter()
            .filter_map(|e| e.strip_prefix("AUTH").filter(|m| m.starts_with([' ', '='])))
            .flat_map(|m| m[1..].split_whitespace())
            .collect();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let plain = b64(&format!("\0{user}\0{password}"));
        // A server may echo what it was given ("535 bad credentials: <it>"): never shown.
        self.secrets = [plain.clone(), b64(&format!("{user}\0{user}\0{password}")), b64(password)]
            .into_iter()
            .flat_map(|s| [s.trim_end_matches('=').to_owned(), s])
            .chain([password.to_owned()])
            .filter(|s| s.len() >= 4)
            .collect();
        // The longest first: a password inside its own base64 is not left half masked.
        self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        if mechanisms.contains(&"PLAIN") {
            self.command(&format!("AUTH PLAIN {plain}\r\n"), "AUTH", 235)
        } else if mechanisms.contains(&"LOGIN") {
            self.command("AUTH LOGIN\r\n", "AUTH", 334)?;
            self.command(&format!("{}\r\n", b64(user)), "AUTH", 334)?;
            self.command(&format!("{}\r\n", b64(password)), "AUTH", 235)
        } else {
            Err(Error::Other("the server offers neither AUTH PLAIN nor AUTH LOGIN, and the config has a login".into()))
        }
    }

    /// RSET after a refused transaction; a connection that cannot even do that is given up.
    fn reset(&mut self) {
        self.deadline(self.timeout);
        if self.command("RSET\r\n", "RSET", 250).is_err() {
            self.broken = true;
        }
    }

    /// Writes one command (`verb` names it in errors: never the line, which may be a password).
    fn command(&mut self, line: &str, verb: &'static str, expected: u16) -> Result<(), Error> {
        self.write(line.as_bytes(), 1, verb)?;
        self.expect(verb, expected)
    }

    fn command_lines(&mut self, line: &str, verb: &'static str) -> Result<(u16, Vec<String>), Error> {
        self.write(line.as_bytes(), 1, verb)?;
        let (code, lines) = self.reply_lines()?;
        self.fits(verb, code)?;
        Ok((code, lines))
    }

    /// The dialogue starting now must end within `within`.
    fn deadline(&mut self, within: Duration) {
        if let Some(socket) = self.stream.get_mut().socket() {
            socket.deadline = Instant::now() + within;
        }
    }

    fn expect(&mut self, verb: &'static str, expected: u16) -> Result<(), Error> {
        let (code, text) = self.reply(verb)?;
        if code != expected {
            // 421: the server is closing the connection.
            self.broken |= code == 421 || code < 400;
            return Err(Error::Reply { code, text });
        }
        Ok(())
    }

    /// Whether `code` is an answer `verb` can get (RFC 5321 4.3.2): a 3xx only to DATA (354) and
    /// AUTH (334), never a 2xx to DATA. Anything else is the server out of step, or lying.
    fn fits(&mut self, verb: &str, code: u16) -> Result<(), Error> {
        let fits = match code / 100 {
            2 => verb != "DATA",
            3 => (verb == "DATA" && code == 354) || (verb == "AUTH" && code == 334),
            _ => true,
        };
        if fits {
            return Ok(());
        }
        self.broken = true;
        Err(Error::Protocol(format!("the server answered {verb} with {code}, which {verb} cannot get")))
    }

    /// Writes what asks for `answers` answers, the last of them to `asked`. When no answer was
    /// owed, anything received since the last was sent unasked: refused before it could be read
    /// as the answer to this.
    fn write(&mut self, bytes: &[u8], answers: usize, asked: &'static str) -> Result<(), Error> {
        if self.owed == 0 && self.unasked() > 0 {
            self.broken = true;
            return Err(Error::Protocol(self.unasked_words()));
        }
        self.owed += answers;
        self.asked = asked;
        let stream = self.stream.get_mut();
        let written = stream.write_all(bytes).and_then(|()| stream.flush());
        written.map_err(|e| self.failed(e))
    }

    /// One reply to `verb`, of a code it can get.
    fn reply(&mut self, verb: &'static str) -> Result<(u16, String), Error> {
        let (code, lines) = self.reply_lines()?;
        self.fits(verb, code)?;
        Ok((code, lines.join(" ")))
    }

    /// One reply: "250-first", "250-more", "250 last" (RFC 5321 4.2.1). Read as bytes: the
    /// code decides, the text (any encoding, a Latin-1 refusal too) is kept lossily, cleaned
    /// of control characters, the login's secrets masked. Every line carries the same code. The
    /// last answer owed must leave nothing received after it.
    fn reply_lines(&mut self) -> Result<(u16, Vec<String>), Error> {
        let mut lines = Vec::new();
        let mut first = None;
        let mut line = Vec::new();
        loop {
            line.clear();
            let read = (&mut self.stream).take(REPLY_LINE).read_until(b'\n', &mut line).map_err(|e| self.failed(e))?;
            if read == 0 || (!line.ends_with(b"\n") && (read as u64) < REPLY_LINE) {
                let closed = io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed the connection");
                return Err(self.failed(closed));
            }
            if !line.ends_with(b"\n") {
                self.broken = true;
                return Err(Error::Protocol(format!("an SMTP answer line longer than {REPLY_LINE} bytes")));
            }
            let text = String::from_utf8_lossy(&line);
            let mut text = crate::domain::text::line(text.trim_end_matches(['\r', '\n'])).into_owned();
            for secret in &self.secrets {
                text = text.replace(secret.as_str(), "***");
            }
            let code = line.get(..3).and_then(|c| std::str::from_utf8(c).ok()).and_then(|c| c.parse::<u16>().ok());
            let (Some(code), separator) = (code.filter(|c| (200..600).contains(c)), line.get(3)) else {
                self.broken = true;
                return Err(Error::Protocol(format!(
                    "not an SMTP answer: {:?}",
                    crate::domain::text::header(&text, 80)
                )));
            };
            if let Some(first) = first.filter(|f| *f != code) {
                // RFC 5321 4.2.1: each line of a reply carries its code.
                self.broken = true;
                return Err(Error::Protocol(format!(
                    "an SMTP answer whose lines carry different codes ({first}, then {code})"
                )));
            }
            first = Some(code);
            lines.push(text.get(4..).unwrap_or("").to_owned());
            if !matches!(separator, Some(b'-')) {
                self.answered()?;
                return Ok((code, lines));
            }
            if lines.len() >= REPLY_LINES {
                self.broken = true;
                return Err(Error::Protocol("an SMTP answer of too many lines".into()));
            }
        }
    }

    /// One answer owed is read. When it was the last, whatever is buffered after it was sent
    /// before anything asked for it: a man in the middle's (after the 220 to STARTTLS, it would
    /// be read as coming from inside TLS: CVE-2011-0411), or a server out of step (a 250 sent
    /// with the 354, before the message). Never read as an answer: the connection is dropped.
    fn answered(&mut self) -> Result<(), Error> {
        self.owed = self.owed.saturating_sub(1);
        if self.owed > 0 || self.unasked() == 0 {
            return Ok(());
        }
        self.broken = true;
        Err(Error::Protocol(self.unasked_words()))
    }

    /// What was received beyond the answers owed, looked at without waiting: in the buffer,
    /// decrypted by TLS and not yet read, or waiting in the socket (a later packet).
    fn unasked(&mut self) -> usize {
        let buffered = self.stream.buffer().len();
        buffered
            + match self.stream.get_mut() {
                Stream::Plain(socket) => socket.waiting(),
                Stream::Tls(tls) => tls_waiting(tls),
                Stream::Closed => 0,
            }
    }

    /// The line that says bytes came unasked, and after what.
    fn unasked_words(&mut self) -> String {
        let unasked = self.unasked();
        match self.asked {
            "STARTTLS" => format!(
                "the server sent data after its 220 to STARTTLS, before TLS began ({unasked} bytes): refusing it \
                 (response injection)"
            ),
            asked => format!(
                "the server sent data nothing asked for after its answer to {asked} ({unasked} bytes): refusing it \
                 (response injection)"
            ),
        }
    }

    fn failed(&mut self, e: io::Error) -> Error {
        self.broken = true;
        Error::from(e)
    }
}

/// The recipients of each transaction: at most `RCPT_LIMIT` in one; none is one transaction.
fn chunks<'a, 'b>(to: &'a [&'b str]) -> Vec<&'a [&'b str]> {
    if to.is_empty() { vec![to] } else { to.chunks(RCPT_LIMIT).collect() }
}

/// Plain text TLS holds or can decrypt now from what the socket has, without waiting; what
/// is no TLS record counts as received too. TLS's own messages (a session ticket) are none.
fn tls_waiting(tls: &mut rustls::StreamOwned<rustls::ClientConnection, Socket>) -> usize {
    if tls.sock.tcp.set_nonblocking(true).is_err() {
        return 0;
    }
    let mut read = 0;
    // Bounded: each read takes a record's worth at most, and a server could send for ever.
    for _ in 0..64 {
        match tls.conn.read_tls(&mut tls.sock.tcp) {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
        if tls.conn.process_new_packets().is_err() {
            let _ = tls.sock.tcp.set_nonblocking(false);
            return read.max(1);
        }
    }
    let _ = tls.sock.tcp.set_nonblocking(false);
    tls.conn.process_new_packets().map_or(read.max(1), |state| state.plaintext_bytes_to_read())
}

/// The message as DATA sends it: a dot at the start of a line doubled (RFC 5321 4.5.2), and
/// the closing line.
fn stuff(message: &[u8], out: &mut Vec<u8>) {
    let mut start_of_line = true;
    for &b in message {
        if start_of_line && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        start_of_line = b == b'\n';
    }
    if !start_of_line {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

fn connect(host: &str, port: u16, deadline: Instant) -> Result<TcpStream, Error> {
    let mut last = None;
    for address in (host, port).to_socket_addrs()? {
        let tcp = remaining(deadline).and_then(|left| TcpStream::connect_timeout(&address, left));
        match tcp {
            Ok(tcp) => {
                // Commands and a message's last bytes are small writes, each waited on.
                tcp.set_nodelay(true)?;
                return Ok(tcp);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.map_or_else(|| Error::Other(format!("{host}: no address")), Error::Io))
}

/// The time left until `deadline`, or the error of a dialogue that took too long.
fn remaining(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "no complete answer within the timeout"));
    }
    Ok(left)
}

/// The TCP connection under a deadline: each read and write may wait only for what is left
/// of the dialogue's time, so a server that dribbles a byte at a time cannot stretch it.
struct Socket {
    tcp: TcpStream,
    deadline: Instant,
}

impl Socket {
    /// Bytes received and not read, looked at without waiting (0 at the end of the stream).
    fn waiting(&self) -> usize {
        if self.tcp.set_nonblocking(true).is_err() {
            return 0;
        }
        let mut buf = [0u8; 4096];
        let waiting = self.tcp.peek(&mut buf).unwrap_or(0);
        let _ = self.tcp.set_nonblocking(false);
        waiting
    }

    fn timed<T>(result: io::Result<T>) -> io::Result<T> {
        result.map_err(|e| {
            if timed_out(&e) {
                io::Error::new(io::ErrorKind::TimedOut, "no complete answer within the timeout")
            } else {
                e
            }
        })
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match remaining(self.deadline) {
            Ok(left) => {
                self.tcp.set_read_timeout(Some(left))?;
                Self::timed(self.tcp.read(buf))
            }
            // Past the deadline, what the server sent in time is still taken: the timeout
            // judges the server, not how busy this machine kept the client.
            Err(late) => {
                self.tcp.set_nonblocking(true)?;
                let read = self.tcp.read(buf);
                self.tcp.set_nonblocking(false)?;
                read.map_err(|e| if timed_out(&e) { late } else { e })
            }
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tcp.set_write_timeout(Some(remaining(self.deadline)?))?;
        Self::timed(self.tcp.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

/// The name EHLO gives: this machine's, as lettre gave it, when it is a plain host name.
fn client_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into the buffer it is given.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let name: String = buf.iter().take_while(|&&b| b != 0).map(|&b| char::from(b)).collect();
    let plain = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'));
    if ok && plain { name } else { "localhost".to_owned() }
}

/// The connection, before and after TLS.
enum Stream {
    Plain(Socket),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, Socket>>),
    /// Only while STARTTLS swaps one for the other.
    Closed,
}

impl Stream {
    fn tls(config: &Arc<rustls::ClientConfig>, server: ServerName<'static>, socket: Socket) -> Result<Self, Error> {
        let session =
            rustls::ClientConnection::new(Arc::clone(config), server).map_err(|e| Error::Other(format!("TLS: {e}")))?;
        let mut tls = rustls::StreamOwned::new(session, socket);
        // The handshake now, so that a bad certificate is said as such.
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        Ok(Stream::Tls(Box::new(tls)))
    }

    fn socket(&mut self) -> Option<&mut Socket> {
        match self {
            Stream::Plain(s) => Some(s),
            Stream::Tls(s) => Some(&mut s.sock),
            Stream::Closed => None,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
            Stream::Closed => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
            Stream::Closed => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
            Stream::Closed => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}

/// Accepts any certificate, still checking that the server holds its key: what
/// `accept_invalid_certs = true` asks for, for a relay with a self-signed certificate.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_without_tls_goes_only_to_a_loopback_host() {
        for host in [
            "127.0.0.1",
            "127.8.9.1",
            "::1",
            "[::1]",
            "::ffff:127.0.0.1",
            "[::ffff:127.0.0.1]",
            "localhost",
            "LocalHost",
        ] {
            assert!(crate::config::is_loopback(host), "{host}");
        }
        for host in [
            "mail.example.com",
            "10.0.0.1",
            "192.168.1.2",
            "::2",
            "localhost.example.com",
            "evil.localhost",
            "",
            "localhost.",
            "LOCALHOST.",
            "127.0.0.1.",
            "[localhost]",
            "::ffff:10.0.0.1",
        ] {
            assert!(!crate::config::is_loopback(host), "{host}");
        }
    }

    #[test]
    fn past_its_deadline_a_socket_takes_what_came_in_time_and_waits_for_nothing_more() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let tcp = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let mut socket = Socket { tcp, deadline: Instant::now() + Duration::from_secs(30) };
        server.write_all(b"250 ok\r\n").unwrap();
        let mut buf = [0u8; 3];
        assert_eq!(socket.read(&mut buf).unwrap(), 3, "within the deadline");
        socket.deadline = Instant::now();
        let mut rest = [0u8; 16];
        let n = socket.read(&mut rest).unwrap();
        assert_eq!(&rest[..n], b" ok\r\n", "sent in time, read late: taken");
        let started = Instant::now();
        let late = socket.read(&mut rest).unwrap_err();
        assert_eq!(late.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(5), "no wait past the deadline");
        assert_eq!(socket.write(b"x").unwrap_err().kind(), io::ErrorKind::TimedOut);
    }

    /// Bytes that come after the last answer, in a later packet (a late "554" to the message
    /// before, an injection), are found before the next MAIL is written: never read as its
    /// answer, nothing of the message written, the connection given up. Deterministic: the
    /// test waits until the bytes are in the client's socket.
    #[test]
    fn bytes_received_after_the_last_answer_stop_the_next_mail_from_going() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (opened, open) = std::sync::mpsc::channel::<()>();
        let server = std::thread::spawn(move || {
            let (tcp, _) = listener.accept().unwrap();
            let mut out = tcp.try_clone().unwrap();
            let mut lines = BufReader::new(tcp).lines();
            out.write_all(b"220 ready\r\n").unwrap();
            assert!(lines.next().unwrap().unwrap().starts_with("EHLO "));
            out.write_all(b"250 hello\r\n").unwrap();
            // Once the client is open: after the last answer it was owed, as a later packet.
            open.recv().unwrap();
            out.write_all(b"554 5.7.1 late\r\n").unwrap();
            // Whatever the client writes before closing.
            lines.map_while(Result::ok).collect::<Vec<String>>()
        });
        let settings = Settings {
            host: "127.0.0.1",
            port,
            tls: &Tls::None,
            timeout: Duration::from_secs(30),
            login: None,
            pipelining: true,
        };
        let mut c = Connection::open(&settings).unwrap();
        opened.send(()).unwrap();
        if let Stream::Plain(socket) = c.stream.get_mut() {
            // Until the late bytes are in the socket, unread.
            socket.tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            assert!(socket.tcp.peek(&mut [0u8; 1]).unwrap() > 0);
        }
        let sent = c.send("a@example.com", &["b@example.com"], b"Subject: x\r\n\r\nx\r\n");
        match sent {
            Err(Error::Unasked(why)) => assert_eq!(
                why,
                "the server sent data nothing asked for after its answer to EHLO (16 bytes): refusing it (response \
                 injection)"
            ),
            other => panic!("{other:?}"),
        }
        assert!(c.is_broken());
        c.quit();
        drop(c);
        assert_eq!(server.join().unwrap(), Vec::<String>::new(), "no MAIL, no QUIT written");
    }

    #[test]
    fn dots_are_doubled_at_the_start_of_lines_only() {
        let mut out = Vec::new();
        stuff(b".a\r\nb.c\r\n..\r\n.", &mut out);
        assert_eq!(out, b"..a\r\nb.c\r\n...\r\n..\r\n.\r\n");
        out.clear();
        stuff(b"end\r\n", &mut out);
        assert_eq!(out, b"end\r\n.\r\n");
    }
}
