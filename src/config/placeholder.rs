//! Placeholders an owner must fill: an address, host or domain under `.invalid`, the top-level
//! domain reserved never to resolve nor receive mail (RFC 2606, RFC 6761). The Debian package's
//! config ships its mail addresses, source and mail server so; `check` names each one on a line
//! of its own, and reaches for none of them.

use lettre::message::Mailbox;

use super::{Config, ConfigError, Location, Transport, url_params};

/// The placeholders of a config, by the part of `check` they belong to; each error's key is
/// the config key, its problem says what to put there.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Placeholders {
    pub mail: Vec<ConfigError>,
    pub source: Vec<ConfigError>,
    pub transport: Vec<ConfigError>,
}

/// `owner.example.invalid`, `INVALID.`: a name under the reserved top-level domain.
pub fn is_placeholder(domain: &str) -> bool {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    domain == "invalid" || domain.ends_with(".invalid")
}

fn hole(key: String, value: &str, what: &str) -> ConfigError {
    ConfigError::new(key, format!("{value} is a placeholder (the reserved .invalid domain): put {what}"))
}

/// The first placeholder address of a list, if any (one line per key).
fn mailboxes(key: String, list: &[Mailbox], what: &str) -> Option<ConfigError> {
    list.iter().find(|m| is_placeholder(m.email.domain())).map(|m| hole(key, m.email.as_ref(), what))
}

/// The hosts a PostgreSQL URL names: in its authority (libpq allows `h1,h2:5433`) and in
/// `?host=` parameters.
fn postgres_hosts(url: &str) -> Vec<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let hosts = authority.rsplit_once('@').map_or(authority, |(_, hosts)| hosts);
    let mut found: Vec<String> = hosts
        .split(',')
        .map(|h| match h.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => h.split(':').next().unwrap_or(""),
        })
        .map(str::to_owned)
        .collect();
    for p in url_params(url).into_iter().filter(|p| p.key == "host") {
        found.extend(p.value.split(',').map(str::to_owned));
    }
    found.retain(|h| !h.is_empty());
    found
}

impl Config {
    /// What the owner has yet to fill (see the module's doc).
    pub fn placeholders(&self) -> Placeholders {
        let mut found = Placeholders::default();
        let mail = &self.mail;
        if is_placeholder(mail.from.email.domain()) {
            found.mail.push(hole("mail.from".into(), mail.from.email.as_ref(), "the address the emails come from"));
        }
        found.mail.extend(mailboxes("mail.to".into(), &mail.to, "the address that gets the emails"));
        found.mail.extend(mailboxes("mail.cc".into(), &mail.cc, "the address that gets copies, or remove it"));
        if let Some(domain) = mail.message_id_domain.as_deref().filter(|d| is_placeholder(d)) {
            found.mail.push(hole("mail.message_id_domain".into(), domain, "your own domain, or remove the key"));
        }
        for (i, bot) in self.bots.iter().enumerate() {
            let key = |k: &str| format!("bots[{i}] (id = {:?}).{k}", bot.id);
            if let Some(to) = &bot.to {
                found.mail.extend(mailboxes(key("to"), to, "the address that gets this bot's emails"));
            }
            if let Some(cc) = &bot.cc {
                found.mail.extend(mailboxes(key("cc"), cc, "the address that gets copies, or remove it"));
            }
        }
        if let Some(source) = &self.source
            && let Location::Postgres(url) = source.location()
            && let Some(host) = postgres_hosts(&url).into_iter().find(|h| is_placeholder(h))
        {
            found.source.push(hole("source.url".into(), &host, "the host where your bot keeps its chats"));
        }
        if let Transport::Smtp(smtp) = &self.transport {
            if is_placeholder(&smtp.host) {
                found.transport.push(hole("transport.host".into(), &smtp.host, "your mail server"));
            }
            if let Some(user) = &smtp.username
                && is_placeholder(user.rsplit_once('@').map_or(user.as_str(), |(_, domain)| domain))
            {
                found.transport.push(hole("transport.username".into(), user, "your login at the mail server"));
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_reserved_domain_is_a_placeholder() {
        for (domain, placeholder) in [
            ("your-domain.invalid", true),
            ("Your-Domain.INVALID.", true),
            ("invalid", true),
            ("example.com", false),
            ("invalid.example.com", false),
            ("notinvalid", false),
            ("smtp.invalid-mail.com", false),
            ("", false),
        ] {
            assert_eq!(is_placeholder(domain), placeholder, "{domain:?}");
        }
    }

    #[test]
    fn the_hosts_of_a_postgres_url() {
        for (url, hosts) in [
            ("postgresql://u@db.invalid:5432/x?sslmode=require", &["db.invalid"][..]),
            ("postgresql://db.example.com/x", &["db.example.com"]),
            ("postgresql://u@h1:5432,h2.invalid:5433/x", &["h1", "h2.invalid"]),
            ("postgres://[::1]:5432/x", &["::1"]),
            ("postgresql:///x?host=/run/postgresql&host=db.invalid", &["/run/postgresql", "db.invalid"]),
            ("postgresql://", &[]),
        ] {
            assert_eq!(postgres_hosts(url), hosts, "{url}");
        }
    }
}
