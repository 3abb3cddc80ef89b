//! `[transport]`: how emails leave (SMTP, sendmail, a folder), and the rules a login obeys.

use std::path::PathBuf;

use anyhow::Result;
use chrono::TimeDelta;
use serde::Deserialize;
use serde::de::IgnoredAny;

use super::secret;
use crate::domain::Span;

#[derive(Debug, Deserialize)]
#[serde(try_from = "TransportTable")]
pub enum Transport {
    Smtp(Smtp),
    Sendmail {
        command: PathBuf,
    },
    /// Writes each email as an .eml file: previews and machines with no mail server.
    Folder {
        path: PathBuf,
        /// The files' permissions: 0600 unless widened for a pickup folder.
        mode: u32,
    },
}

#[derive(Debug)]
pub struct Smtp {
    pub host: String,
    pub port: Option<u16>,
    pub security: Security,
    pub username: Option<String>,
    /// Name of the environment variable holding the password.
    pub password_env: Option<String>,
    /// File whose first line is the password.
    pub password_file: Option<PathBuf>,
    pub timeout: Span,
    /// For a local relay with a self-signed certificate; certificates are verified otherwise.
    pub accept_invalid_certs: bool,
}

/// The `[transport]` table as written: one flat table, so that a wrong value is reported
/// with its own key and line (serde's tagged enums lose both), then checked per kind.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransportTable {
    kind: Kind,
    host: Option<String>,
    port: Option<u16>,
    security: Option<Security>,
    username: Option<String>,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    /// Only here to answer with a helpful error: secrets never live in the config file.
    password: Option<IgnoredAny>,
    timeout: Option<Span>,
    accept_invalid_certs: Option<bool>,
    command: Option<PathBuf>,
    path: Option<PathBuf>,
    mode: Option<String>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Smtp,
    Sendmail,
    Folder,
}

impl TryFrom<TransportTable> for Transport {
    type Error = String;

    fn try_from(t: TransportTable) -> Result<Self, String> {
        fn given(keys: &[(&'static str, bool)]) -> Vec<&'static str> {
            keys.iter().filter(|(_, set)| *set).map(|(k, _)| *k).collect()
        }
        let smtp_only = given(&[
            ("host", t.host.is_some()),
            ("port", t.port.is_some()),
            ("security", t.security.is_some()),
            ("username", t.username.is_some()),
            ("password_env", t.password_env.is_some()),
            ("password_file", t.password_file.is_some()),
            ("timeout", t.timeout.is_some()),
            ("accept_invalid_certs", t.accept_invalid_certs.is_some()),
        ]);
        // Whatever the kind: a password in the config file is refused, never ignored.
        if t.password.is_some() {
            return Err(
                "password: passwords are not read from the config file; use password_env or password_file".into()
            );
        }
        let folder_only = given(&[("path", t.path.is_some()), ("mode", t.mode.is_some())]);
        let (kind, foreign) = match t.kind {
            Kind::Smtp => ("smtp", [given(&[("command", t.command.is_some())]), folder_only].concat()),
            Kind::Sendmail => ("sendmail", [smtp_only.clone(), folder_only].concat()),
            Kind::Folder => ("folder", [smtp_only.clone(), given(&[("command", t.command.is_some())])].concat()),
        };
        if let Some(key) = foreign.first() {
            return Err(format!("{key} does not apply to kind = \"{kind}\""));
        }
        Ok(match t.kind {
            Kind::Sendmail => Transport::Sendmail { command: t.command.unwrap_or_else(|| "/usr/sbin/sendmail".into()) },
            Kind::Folder => Transport::Folder {
                path: t.path.ok_or("path is required for kind = \"folder\"")?,
                mode: match t.mode {
                    None => 0o600,
                    Some(m) => u32::from_str_radix(m.trim_start_matches("0o"), 8)
                        .ok()
                        .filter(|m| *m <= 0o666 && *m & 0o600 == 0o600)
                        .ok_or(format!("mode: {m:?} is not a file mode like \"0600\" or \"0640\" (owner read and write, no execute)"))?,
                },
            },
            Kind::Smtp => {
                if t.password_env.is_some() && t.password_file.is_some() {
                    return Err("password_env and password_file: give one, not both".into());
                }
                if t.username.is_none() && (t.password_env.is_some() || t.password_file.is_some()) {
                    return Err("username: needed when a password is given".into());
                }
                let host = t.host.filter(|h| !h.trim().is_empty()).ok_or("host is required for kind = \"smtp\"")?;
                if t.security == Some(Security::None) && t.username.is_some() && !is_loopback(&host) {
                    return Err(format!(
                        "username: no login without TLS: security = \"none\" would send the password in clear to \
                         {host:?}, which is not this machine (only a loopback address, 127.0.0.1 or ::1, or \
                         localhost, written so, may have one); use security = \"starttls\" or \"tls\""
                    ));
                }
                Transport::Smtp(Smtp {
                    host,
                    port: t.port,
                    security: t.security.unwrap_or_default(),
                    username: t.username,
                    password_env: t.password_env,
                    password_file: t.password_file,
                    timeout: t.timeout.unwrap_or_else(thirty_seconds),
                    accept_invalid_certs: t.accept_invalid_certs.unwrap_or(false),
                })
            }
        })
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Port 587, upgraded with STARTTLS, which is required.
    #[default]
    Starttls,
    /// Implicit TLS, port 465.
    Tls,
    /// Plain text, for a relay on the same machine or network.
    None,
}

/// Pure: whether `host` names this machine (a loopback address, `localhost`), where a login
/// may go without TLS (msmtp's rule): nothing on the way can read it. By name, never by what
/// DNS answers: an IP literal in 127.0.0.0/8, `::1` or `::ffff:127.x.x.x`, or exactly
/// `localhost` (any case). Not `localhost.`: a name with the root's dot is looked up in DNS
/// (glibc does not match it in /etc/hosts), where anyone may answer it.
pub fn is_loopback(host: &str) -> bool {
    let literal = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    match literal.parse::<std::net::IpAddr>() {
        Ok(ip) => is_loopback_ip(ip),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// Pure: whether `ip` is this machine's: 127.0.0.0/8, `::1`, or an IPv4-mapped loopback.
pub fn is_loopback_ip(ip: std::net::IpAddr) -> bool {
    ip.is_loopback() || matches!(ip, std::net::IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()))
}

impl Smtp {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.security {
            Security::Starttls => 587,
            Security::Tls => 465,
            Security::None => 25,
        })
    }

    /// The password, read from where the config points, only when a connection is made.
    pub fn password(&self) -> Result<Option<String>> {
        secret("transport", self.password_env.as_deref(), self.password_file.as_deref())
    }
}

fn thirty_seconds() -> Span {
    Span(TimeDelta::seconds(30))
}
