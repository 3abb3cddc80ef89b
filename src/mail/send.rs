//! Gets an `Email` out: over SMTP, through sendmail, into a folder of .eml files, or printed
//! for a dry run. What a failure means for the rest of the batch is decided here, once.

use std::fmt::Write as _;
use std::io::Write;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailboxes, MultiPart};
use lettre::{Message, SendmailTransport, Transport as _};

use crate::config::{Security, Transport};
use crate::domain::Email;
use crate::mail::body;
use crate::mail::smtp::{self, Tls};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The server answered this one email with a refusal; the next may still go. `counts`:
    /// the refusal is the email's own (permanent, or too many recipients for the server) and
    /// counts toward `max_attempts`; a temporary one does not.
    Rejected { counts: bool, reason: String },
    /// No email can go now (connection refused, timeout, TLS, server shutting down): stop
    /// the batch, keep everything pending for the next run.
    Unavailable(String),
    /// The connection was lost or timed out in the middle of this email's transaction (after
    /// the server accepted its MAIL), or the server broke the protocol there (from its MAIL on:
    /// garbage, a code the command cannot get, bytes nothing asked for): an attempt for this
    /// email, which may be what the server cannot take, so that it cannot hold every email
    /// behind it for ever. After a timeout the batch stops (the next would wait as long);
    /// otherwise the next email is tried on a new connection.
    Lost { reason: String, timed_out: bool },
    /// The provider says it is throttling us ("421 4.7.0 Try again later", "450 4.7.28"): back
    /// off for the rest of the run, and count no attempt against the email, which did nothing
    /// wrong. Not "452 4.5.3", too many recipients (RFC 3463): that is the email's own.
    Throttled(String),
}

impl Failure {
    pub fn reason(&self) -> &str {
        match self {
            Failure::Rejected { reason, .. }
            | Failure::Unavailable(reason)
            | Failure::Throttled(reason)
            | Failure::Lost { reason, .. } => reason,
        }
    }
}

pub enum Mailer {
    Smtp(Box<Smtp>),
    Sendmail(SendmailTransport),
    Folder(Folder),
    Print(Box<dyn Write>),
}

impl Mailer {
    pub fn from_config(transport: &Transport) -> Result<Self> {
        Ok(match transport {
            Transport::Smtp(cfg) => {
                let tls = || smtp::tls_config(cfg.accept_invalid_certs).context("transport: setting up TLS");
                let tls = match cfg.security {
                    Security::Starttls => Tls::Starttls(tls()?),
                    Security::Tls => Tls::Wrapper(tls()?),
                    Security::None => Tls::None,
                };
                let login = match &cfg.username {
                    Some(user) => Some((user.clone(), cfg.password()?.unwrap_or_default())),
                    None => None,
                };
                Mailer::Smtp(Box::new(Smtp {
                    host: cfg.host.clone(),
                    port: cfg.port(),
                    tls,
                    timeout: cfg.timeout.0.to_std().unwrap_or(Duration::from_secs(30)),
                    login,
                    pipelining: true,
                    connection: None,
                    begun: None,
                }))
            }
            Transport::Sendmail { command } => Mailer::Sendmail(SendmailTransport::new_with_command(command)),
            Transport::Folder { path, mode } => {
                std::fs::create_dir_all(path)
                    .with_context(|| format!("transport.path: creating {}", path.display()))?;
                Mailer::Folder(Folder { path: path.clone(), mode: *mode, unsynced: Vec::new() })
            }
        })
    }

    /// Connects and logs in without sending: for `check --smtp`.
    pub fn connect(&mut self) -> Result<()> {
        if let Mailer::Smtp(smtp) = self {
            smtp.connection().map_err(|e| anyhow::anyhow!("connecting to the SMTP server: {e}"))?;
        }
        Ok(())
    }

    /// Flushes what a preview has buffered; says goodbye to the SMTP server.
    pub fn finish(&mut self) -> Result<()> {
        match self {
            Mailer::Print(out) => out.flush().context("writing to stdout")?,
            // Said goodbye to; an answer or not, everything went already.
            Mailer::Smtp(smtp) => {
                if let Some(mut connection) = smtp.connection.take() {
                    connection.quit();
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether sends may be marked sent a page at a time (after `sync`) instead of one by one:
    /// where the transport's own acknowledgement survives a crash (a folder's file renamed into
    /// place is found again by the next run), and for a preview, whose state is a scratch copy
    /// thrown away after. An SMTP server's 250 is neither.
    pub fn marks_in_batches(&self) -> bool {
        matches!(self, Mailer::Folder(_) | Mailer::Print(_))
    }

    /// A preview (a dry run's) records nothing as sent: its state is a scratch copy thrown away
    /// when the run ends, and nothing after delivery reads what was sent (issue 27: marking
    /// 80,000 previewed emails sent was a tenth of a big preview's time).
    pub fn records_nothing(&self) -> bool {
        matches!(self, Mailer::Print(_))
    }

    /// Makes what was written since the last call durable: one sync of the folder's file
    /// system for a whole batch, instead of one per file.
    pub fn sync(&mut self) -> std::io::Result<()> {
        match self {
            Mailer::Folder(folder) => folder.sync(),
            _ => Ok(()),
        }
    }

    /// What `send` does, for the log.
    pub fn verb(&self) -> &'static str {
        match self {
            Mailer::Print(_) => "previewed",
            _ => "sent",
        }
    }

    /// Over SMTP, starts the next email while the one before is recorded as sent: its envelope
    /// goes out now, so the server reads it meanwhile (`smtp::Connection::begin`), and `send`,
    /// the next call, delivers it. Were the run to stop in between, nothing of it is delivered.
    /// Nothing for the other transports.
    pub fn begin(&mut self, email: &Email) {
        if let Mailer::Smtp(smtp) = self
            && let Some(connection) = smtp.connection.as_mut().filter(|c| !c.is_broken())
            && let Ok(m) = message(email)
        {
            let (from, to) = addresses(&m);
            // A failure here is the next `send`'s to find: the connection is marked broken.
            let _ = connection.begin(&from, &to.iter().map(String::as_str).collect::<Vec<_>>());
            smtp.begun = Some((email.message_id.clone(), m));
        }
    }

    /// Sends one email. The inner result is this email's fate; the outer error stops the run
    /// (stdout closed under a dry run).
    pub fn send(&mut self, email: &Email) -> Result<Result<(), Failure>> {
        // A message that cannot be built now never can: the same data goes in every time.
        let message = || message(email).map_err(|e| Failure::Rejected { counts: true, reason: format!("{e:#}") });
        Ok(match self {
            Mailer::Print(out) => {
                out.write_all(preview(email).as_bytes()).context("writing to stdout")?;
                Ok(())
            }
            Mailer::Smtp(smtp) => {
                // Connect and log in before the first email, so that a failure there (a wrong
                // password answers 535, a permanent code) stops the batch instead of being
                // counted against, and eventually parking, each email in turn.
                if let Err(e) = smtp.connection() {
                    let reason = format!("connecting to the SMTP server: {}", failure(&e).reason());
                    return Ok(Err(Failure::Unavailable(reason)));
                }
                // Built already when it was begun.
                match smtp.begun.take().filter(|(id, _)| *id == email.message_id) {
                    Some((_, m)) => smtp.send(&m),
                    None => message().and_then(|m| smtp.send(&m)),
                }
            }
            Mailer::Sendmail(t) => message().and_then(|m| t.send(&m).map(drop).map_err(|e| transient(&e))),
            Mailer::Folder(folder) => message().and_then(|m| folder.write(email, &m)),
        })
    }
}

/// One SMTP connection for the whole batch, opened before the first email and reused.
pub struct Smtp {
    host: String,
    port: u16,
    tls: Tls,
    timeout: Duration,
    login: Option<(String, String)>,
    /// Pipelining where the server offers it; off for the rest of the run once a server that
    /// offers it stalled on a pipelined envelope.
    pipelining: bool,
    connection: Option<smtp::Connection>,
    /// The email `Mailer::begin` started (its Message-ID), as built.
    begun: Option<(String, Message)>,
}

impl Smtp {
    /// The connection, opened (TLS as configured, then logged in) when there is none or the
    /// last one broke.
    fn connection(&mut self) -> Result<&mut smtp::Connection, smtp::Error> {
        let connection = match self.connection.take() {
            Some(open) if !open.is_broken() => open,
            _ => smtp::Connection::open(&smtp::Settings {
                host: &self.host,
                port: self.port,
                tls: &self.tls,
                timeout: self.timeout,
                login: self.login.as_ref().map(|(user, password)| (user.as_str(), password.as_str())),
                pipelining: self.pipelining,
            })?,
        };
        Ok(self.connection.insert(connection))
    }

    fn send(&mut self, message: &Message) -> Result<(), Failure> {
        let bytes = message.formatted();
        let (from, to) = addresses(message);
        let to: Vec<&str> = to.iter().map(String::as_str).collect();
        // Kept from the email before: the server may have closed it since.
        let reused = self.connection.as_ref().is_some_and(|c| !c.is_broken());
        match self.attempt(&from, &to, &bytes) {
            // The connection kept from the last email was closed meanwhile (a server's limit of
            // messages per connection, its idle timeout): once more on a new one. Were this
            // email accepted after all, it would be sent again the same as if it stayed queued
            // for the next run.
            Err(e @ smtp::Error::Io(_)) if reused && !e.is_timeout() => {
                self.attempt(&from, &to, &bytes).map_err(|e| failure(&e))
            }
            // The server offers PIPELINING and did not answer a pipelined envelope, or refused it
            // as a bad sequence: nothing was sent. One command at a time from now on in this run,
            // as RFC 2920 allows it to need.
            Err(e @ (smtp::Error::Stalled(_) | smtp::Error::Unpipelined(_))) => {
                log::info!(
                    "the SMTP server offers PIPELINING but did not take pipelined commands ({e}); \
                     sending one command at a time for the rest of this run"
                );
                self.pipelining = false;
                self.attempt(&from, &to, &bytes).map_err(|e| failure(&e))
            }
            // Bytes came unasked after the email before was answered: said, the connection
            // dropped, and this email (nothing of it written) goes on a new one.
            Err(e @ smtp::Error::Unasked(_)) => {
                log::warn!("{e}; the connection was dropped and the next email goes on a new one");
                self.attempt(&from, &to, &bytes).map_err(|e| failure(&e))
            }
            sent => sent.map_err(|e| failure(&e)),
        }
    }

    fn attempt(&mut self, from: &str, to: &[&str], message: &[u8]) -> Result<(), smtp::Error> {
        self.connection()?.send(from, to, message)
    }
}

/// The envelope's sender and recipients (To and Cc).
fn addresses(message: &Message) -> (String, Vec<String>) {
    let envelope = message.envelope();
    let from = envelope.from().map(ToString::to_string).unwrap_or_default();
    (from, envelope.to().iter().map(ToString::to_string).collect())
}

/// Writes each email into a folder as `<Message-ID>.eml`: for a mail pickup folder, or a
/// machine with no mail server. A re-send after a crash overwrites the same file.
pub struct Folder {
    path: std::path::PathBuf,
    /// Visitors' details are in these files: 0600 unless the owner widens it.
    mode: u32,
    /// Files written since the last sync.
    unsynced: Vec<std::path::PathBuf>,
}

impl Folder {
    /// Writes under a temporary name and renames into place: a reader of the folder never
    /// sees half a file, and a full disk leaves nothing behind (the email stays queued).
    fn write(&mut self, email: &Email, message: &Message) -> Result<(), Failure> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let name: String = email
            .message_id
            .trim_matches(['<', '>'])
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@') { c } else { '_' })
            .collect();
        let target = self.path.join(format!("{name}.eml"));
        if target.exists() {
            // Renamed into place by a run that stopped before marking it sent: the file is the
            // acknowledgement, and a pickup agent may be reading it.
            return Ok(());
        }
        let temporary = self.path.join(format!(".{name}.eml.tmp"));
        let written = (|| -> std::io::Result<()> {
            let mut file =
                std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(self.mode).open(&temporary)?;
            // The umask may have narrowed what open gave: the mode is what was asked for.
            file.set_permissions(std::fs::Permissions::from_mode(self.mode))?;
            file.write_all(&message.formatted())?;
            // Durable with the rest of the batch (`sync`), before any of it is marked sent.
            std::fs::rename(&temporary, &target)
        })();
        written.map_err(|e| {
            let _ = std::fs::remove_file(&temporary);
            Failure::Rejected { counts: false, reason: format!("writing {}: {e}", target.display()) }
        })?;
        self.unsynced.push(target);
        Ok(())
    }
}

impl Folder {
    /// One `syncfs` of the folder's file system: the batch's files and their renames reach the
    /// disk together. When that fails, the batch's files are taken back, so the next run writes
    /// them again rather than trusting files that may not be on the disk.
    fn sync(&mut self) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let synced = std::fs::File::open(&self.path).and_then(|dir| {
            // SAFETY: syncfs on a descriptor this closure owns for the length of the call.
            if unsafe { libc::syncfs(dir.as_raw_fd()) } == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
        });
        let written = std::mem::take(&mut self.unsynced);
        if synced.is_err() {
            for file in written {
                let _ = std::fs::remove_file(file);
            }
        }
        synced
    }
}

fn transient(e: &dyn std::error::Error) -> Failure {
    Failure::Rejected { counts: false, reason: chain(e) }
}

fn failure(e: &smtp::Error) -> Failure {
    let mut reason = e.to_string().replace(['\r', '\n'], " ");
    if e.is_timeout() {
        reason = format!("the SMTP server did not answer within the timeout ({reason})");
    }
    match e {
        smtp::Error::Lost(_) | smtp::Error::Violated(_) => return Failure::Lost { reason, timed_out: e.is_timeout() },
        // The email's own: another email, with fewer recipients, goes.
        smtp::Error::TooManyRecipients { .. } => return Failure::Rejected { counts: true, reason },
        _ => {}
    }
    if is_throttling(e.code().map(|c| c.to_string()).as_deref(), &reason) {
        return Failure::Throttled(reason);
    }
    // 421: the server is closing the connection; nothing else will go through it now.
    if e.code() == Some(421) || !(e.is_permanent() || e.is_transient()) {
        Failure::Unavailable(reason)
    } else {
        Failure::Rejected { counts: e.is_permanent(), reason }
    }
}

/// Pure: whether a temporary refusal is the provider limiting how fast we send: by the
/// enhanced status codes providers use for it (RFC 3463; "421 4.7.0 Try again later" as Gmail
/// says it, 4.7.28 unusual rate), or its words. Greylisting ("451 4.7.1 ... try again later")
/// is a refusal of that one email, not a limit on the rest; too many recipients (4.5.3) is a
/// limit on one email's size, not on the rate.
fn is_throttling(code: Option<&str>, reason: &str) -> bool {
    let Some(code) = code.filter(|c| c.starts_with('4')) else { return false };
    let lower = reason.to_ascii_lowercase();
    if lower.contains(" 4.5.3") || lower.contains("recipient") {
        return false;
    }
    (code == "421" && lower.contains(" 4.7.0"))
        || lower.contains(" 4.7.28")
        || ["rate limit", "too many", "throttl"].iter().any(|w| lower.contains(w))
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            let _ = write!(out, ": {text}");
        }
        source = s.source();
    }
    out.replace(['\r', '\n'], " ")
}

/// The RFC 5322 message. Date and Message-ID come from the outbox, so a retry is the same email.
///
/// Internationalised domains go out in their IDNA form (`xn--...`), in the addresses, the
/// envelope, the Message-IDs and List-Id: these must be ASCII (an encoded word there is no
/// Message-ID at all to a client threading on it), and an address whose domain alone is not
/// ASCII then needs no SMTPUTF8. Emails queued before this are converted the same way.
pub fn message(email: &Email) -> Result<Message> {
    use crate::mail::{ascii_mailbox, ascii_message_ids};
    let mut b = Message::builder()
        .message_id(Some(ascii_message_ids(&email.message_id)))
        .date(SystemTime::from(email.date))
        .from(ascii_mailbox(&email.from))
        .subject(email.subject.clone())
        // RFC 3834: no vacation auto-replies to a machine; Exchange has its own header for it.
        .raw_header(raw("Auto-Submitted", "auto-generated"))
        .raw_header(raw("X-Auto-Response-Suppress", "All"));
    for to in email.to.iter() {
        b = b.to(ascii_mailbox(to));
    }
    for cc in email.cc.iter() {
        b = b.cc(ascii_mailbox(cc));
    }
    if let Some(reply_to) = &email.reply_to {
        b = b.reply_to(ascii_mailbox(reply_to));
    }
    if let Some(id) = &email.in_reply_to {
        b = b.in_reply_to(ascii_message_ids(id));
    }
    if let Some(refs) = &email.references {
        b = b.references(ascii_message_ids(refs));
    }
    for (name, value) in &email.headers {
        // Only the names chat-notifier writes: a stored row cannot add another header.
        if let Some(known) = crate::mail::FILTER_HEADERS.iter().find(|h| **h == name.as_str()) {
            let value = if *known == "List-Id" { ascii_message_ids(value) } else { value.clone() };
            b = b.raw_header(raw(known, &crate::domain::text::header(&value, 900)));
        }
    }
    b.multipart(MultiPart::alternative_plain_html(body::encode(&email.text), body::encode(&email.html)))
        .context("building the message")
}

fn raw(name: &'static str, value: &str) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), value.to_owned())
}

/// A dry run's view of an email: the headers that matter and the text part, readable.
pub fn preview(email: &Email) -> String {
    let mut out = String::new();
    let mut line = |name: &str, value: &str| {
        let _ = writeln!(out, "{name}: {value}");
    };
    use crate::mail::{ascii_mailbox, ascii_message_ids};
    let list = |m: &Mailboxes| m.iter().map(|m| ascii_mailbox(m).to_string()).collect::<Vec<_>>().join(", ");
    line("Date", &email.date.to_rfc2822());
    line("From", &ascii_mailbox(&email.from).to_string());
    line("To", &list(&email.to));
    if email.cc.iter().next().is_some() {
        line("Cc", &list(&email.cc));
    }
    if let Some(r) = &email.reply_to {
        line("Reply-To", &ascii_mailbox(r).to_string());
    }
    line("Subject", &email.subject);
    line("Message-ID", &ascii_message_ids(&email.message_id));
    if let Some(id) = &email.in_reply_to {
        line("In-Reply-To", &ascii_message_ids(id));
    }
    if let Some(refs) = &email.references {
        line("References", &ascii_message_ids(refs));
    }
    out.push('\n');
    out.push_str(&email.text);
    if !email.text.ends_with('\n') {
        out.push('\n');
    }
    out.push_str("\n======================================================================\n\n");
    out
}

pub fn recipients(email: &Email) -> Mailboxes {
    email.to.iter().chain(email.cc.iter()).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_is_told_from_other_refusals() {
        for (code, text) in [
            ("421", "421 4.7.0 Try again later, closing connection"),
            ("450", "450 4.7.28 Our system has detected an unusual rate of unsolicited mail"),
            ("451", "451 Rate limit exceeded for this sender"),
            ("421", "421 Too many connections from your IP"),
        ] {
            assert!(is_throttling(Some(code), text), "{text}");
        }
        for (code, text) in [
            ("451", "451 4.3.0 temporary local problem"),
            ("451", "451 4.7.1 greylisted, try again later"),
            ("550", "550 5.7.1 relaying denied"),
            ("452", "452 4.3.1 insufficient system storage"),
            ("452", "452 4.5.3 Too many recipients"),
            ("452", "452 Too many recipients"),
        ] {
            assert!(!is_throttling(Some(code), text), "{text}");
        }
    }
}
