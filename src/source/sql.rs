//! The one place a source's SQL meets a database: SQLite (a file, read only) or PostgreSQL
//! (a server, in read-only transactions). Sources write their queries once, with `?1`-style
//! placeholders and `rarray(?N)` for a list of ids; PostgreSQL gets them rewritten (`$N` with
//! the parameter's type, `unnest(...)`). Rows come back as plain cells, whatever the database.
//! The connection to PostgreSQL is made here too: TLS as libpq's `sslmode` means it (`Tls`),
//! and the URL shown without what may be secret (`shown_url`).

use std::borrow::Cow;
use std::cell::RefCell;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{ToSql, Type};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OpenFlags};

/// A value as a source reads it. Text keeps its bytes: SQLite can hold invalid UTF-8, and
/// whether that makes a row unusable is the source's call.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(Vec<u8>),
}

impl Cell {
    pub fn int(&self) -> Option<i64> {
        match self {
            Cell::Int(n) => Some(*n),
            Cell::Real(f) => Some(*f as i64),
            Cell::Text(t) => std::str::from_utf8(t).ok()?.trim().parse().ok(),
            Cell::Null => None,
        }
    }

    pub fn real(&self) -> Option<f64> {
        match self {
            Cell::Int(n) => Some(*n as f64),
            Cell::Real(f) => Some(*f),
            Cell::Text(t) => std::str::from_utf8(t).ok()?.trim().parse().ok(),
            Cell::Null => None,
        }
    }

    /// `lossy`, borrowing text that is valid UTF-8 already: no copy for a caller that cleans
    /// it into a string of its own anyway.
    pub fn lossy_str(&self) -> Option<Cow<'_, str>> {
        match self {
            Cell::Text(t) => Some(String::from_utf8_lossy(t)),
            other => other.lossy().map(Cow::Owned),
        }
    }

    /// Whatever is there, as text, invalid UTF-8 replaced.
    pub fn lossy(&self) -> Option<String> {
        match self {
            Cell::Null => None,
            Cell::Int(n) => Some(n.to_string()),
            Cell::Real(f) => Some(f.to_string()),
            Cell::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
        }
    }
}

/// A parameter of a query.
#[derive(Debug, Clone)]
pub enum Param {
    Int(i64),
    Text(String),
    /// A list of ids: `rarray(?N)`.
    Texts(Vec<String>),
}

pub enum Db {
    Sqlite(Connection),
    Postgres(RefCell<postgres::Client>),
}

impl Db {
    pub fn sqlite(path: &Path) -> Result<Db> {
        let conn =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        // The runtime may be writing: wait out its commits rather than fail.
        conn.busy_timeout(Duration::from_secs(10))?;
        // One plan per statement, whatever is bound: an ANALYZEd store (sqlite_stat4) would
        // otherwise have statements compiled again for each new value.
        conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
        rusqlite::vtab::array::load_module(&conn)?;
        Ok(Db::Sqlite(conn))
    }

    /// Connects to `url` (a libpq URL without a password) with `password`; TLS as the URL's
    /// `sslmode` and `sslrootcert` say, with libpq's meanings (`Tls`).
    pub fn postgres(url: &str, password: Option<&str>) -> Result<Db> {
        let (stripped, _) = Tls::from_url(url, true)?;
        let mut config: postgres::Config = stripped.parse().context("not a PostgreSQL URL")?;
        // No sslmode: libpq's prefer on this machine, require across a network (`Tls`).
        let nearby = nearby(&config);
        let (_, tls) = Tls::from_url(url, nearby)?;
        let defaulted = !nearby && !crate::config::url_params(url).iter().any(|p| p.key == "sslmode");
        if let Some(password) = password {
            config.password(password);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        // As libpq: sslmode does not apply to Unix-domain sockets (the server has no TLS there).
        let hosts = config.get_hosts();
        let local = !hosts.is_empty()
            && config.get_hostaddrs().is_empty()
            && hosts.iter().all(|h| matches!(h, postgres::config::Host::Unix(_)));
        config.ssl_mode(if local { postgres::config::SslMode::Disable } else { tls.ssl_mode() });
        let (connector, why) = tls.connector()?;
        let mut client = config.connect(connector).map_err(|e| match why.lock().ok().and_then(|mut w| w.take()) {
            // What the certificate check found, in words, rather than rustls' enum.
            Some(why) => anyhow::anyhow!("TLS: {why}"),
            None => match pg_error(e) {
                // tokio-postgres's words for a server that answered "no TLS here".
                e if defaulted && e.to_string().contains("server does not support TLS") => anyhow::anyhow!(
                    "the server does not offer TLS, which chat-notifier asks of a host across a network when \
                     source.url gives no sslmode: add sslmode=disable to source.url if the network to it is trusted"
                ),
                e => e,
            },
        })?;
        // Read only, whatever the role may do: one statement, one snapshot, as on SQLite.
        client.batch_execute("SET default_transaction_read_only = on").map_err(pg_error)?;
        Ok(Db::Postgres(RefCell::new(client)))
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }

    /// Checks that a query is valid here (its tables and columns exist) without running it.
    /// `Ok(Err(why))`: the schema is not what the query needs; `Err`: the database failed.
    pub fn prepare(&self, sql: &str, params: &[Param]) -> Result<Result<(), String>> {
        match self {
            Db::Sqlite(conn) => match conn.prepare_cached(sql) {
                Ok(_) => Ok(Ok(())),
                Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) => Err(sqlite_error(e)),
                // Its runtime writing, past the busy timeout: transient, not another schema.
                Err(e)
                    if matches!(
                        e.sqlite_error_code(),
                        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                    ) =>
                {
                    Err(anyhow::anyhow!(
                        "the database is locked (its runtime is writing to it, holding it past the busy timeout); \
                         the next run reads it"
                    ))
                }
                Err(e) => Ok(Err(format!("{:#}", sqlite_error(e)))),
            },
            Db::Postgres(client) => {
                let sql = postgres_sql(sql, params);
                let mut client = client.try_borrow_mut().context("a query while another is being read")?;
                match client.prepare(&sql) {
                    Ok(_) => Ok(Ok(())),
                    // Class 42: syntax errors and undefined tables or columns, what another
                    // schema (or none) answers.
                    Err(e) if e.code().is_some_and(|c| c.code().starts_with("42")) => {
                        Ok(Err(format!("{:#}", pg_error(e))))
                    }
                    Err(e) => Err(pg_error(e)),
                }
            }
        }
    }

    /// Calls `f` with each row, one at a time: the memory is one row's.
    pub fn each(&self, sql: &str, params: &[Param], mut f: impl FnMut(&[Cell]) -> Result<()>) -> Result<()> {
        match self {
            Db::Sqlite(conn) => {
                let mut stmt = conn.prepare_cached(sql).map_err(sqlite_error)?;
                let values: Vec<Box<dyn rusqlite::ToSql>> = params.iter().map(sqlite_param).collect();
                let mut rows = stmt.query(rusqlite::params_from_iter(values.iter())).map_err(sqlite_error)?;
                let n = rows.as_ref().map_or(0, |s| s.column_count());
                let mut cells = vec![Cell::Null; n];
                while let Some(row) = rows.next().map_err(sqlite_error)? {
                    for (i, cell) in cells.iter_mut().enumerate() {
                        match (row.get_ref(i)?, &mut *cell) {
                            // A text column's buffer serves the next row too: an allocation per
                            // cell of every row was an eighth of a report over a whole export.
                            (ValueRef::Text(t) | ValueRef::Blob(t), Cell::Text(buffer)) => {
                                buffer.clear();
                                buffer.extend_from_slice(t);
                            }
                            (ValueRef::Text(t) | ValueRef::Blob(t), _) => *cell = Cell::Text(t.to_vec()),
                            (ValueRef::Null, _) => *cell = Cell::Null,
                            (ValueRef::Integer(n), _) => *cell = Cell::Int(n),
                            (ValueRef::Real(f), _) => *cell = Cell::Real(f),
                        }
                    }
                    f(&cells)?;
                }
                Ok(())
            }
            Db::Postgres(client) => {
                let sql = postgres_sql(sql, params);
                let boxed: Vec<Box<dyn ToSql + Sync>> = params.iter().map(postgres_param).collect();
                let refs: Vec<&(dyn ToSql + Sync)> = boxed.iter().map(|b| b.as_ref() as &(dyn ToSql + Sync)).collect();
                // One query at a time on a connection: a second one while rows are being read
                // is a bug in the caller, said as an error rather than a panic.
                let mut client = client.try_borrow_mut().context("a query while another is being read")?;
                let mut rows = client.query_raw(&sql, refs).map_err(pg_error)?;
                let mut cells = Vec::new();
                while let Some(row) = rows.next().map_err(pg_error)? {
                    cells.clear();
                    for (i, column) in row.columns().iter().enumerate() {
                        cells.push(postgres_cell(&row, i, column.type_())?);
                    }
                    f(&cells)?;
                }
                Ok(())
            }
        }
    }

    pub fn rows(&self, sql: &str, params: &[Param]) -> Result<Vec<Vec<Cell>>> {
        let mut out = Vec::new();
        self.each(sql, params, |row| {
            out.push(row.to_vec());
            Ok(())
        })?;
        Ok(out)
    }

    pub fn one(&self, sql: &str, params: &[Param]) -> Result<Option<Vec<Cell>>> {
        Ok(self.rows(sql, params)?.into_iter().next())
    }

    /// The first column of the first row, as an integer (counts, max ids).
    pub fn int(&self, sql: &str, params: &[Param]) -> Result<Option<i64>> {
        Ok(self.one(sql, params)?.and_then(|row| row.first().and_then(Cell::int)))
    }

    /// Whether `table` has an index whose first column is `column`.
    /// Of `indexes` (table, first column, the statement making it), the statements of those the
    /// database lacks, each ended by `;`: what `check` tells an owner to run once.
    pub fn lacking(&self, indexes: &[(&str, &str, &str)]) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for (table, column, statement) in indexes {
            if !self.has_index(table, column)? {
                out.push(format!("{statement};"));
            }
        }
        Ok(out)
    }

    pub fn has_index(&self, table: &str, column: &str) -> Result<bool> {
        let sql = match self {
            Db::Sqlite(_) => {
                "SELECT EXISTS (SELECT 1 FROM pragma_index_list(?1) AS l \
                 JOIN pragma_index_info(l.name) AS i WHERE i.seqno = 0 AND i.name = ?2)"
            }
            Db::Postgres(_) => {
                "SELECT count(*) FROM pg_index x JOIN pg_class t ON t.oid = x.indrelid \
                 JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = x.indkey[0] \
                 WHERE t.relname = ?1 AND a.attname = ?2 AND pg_table_is_visible(t.oid)"
            }
        };
        Ok(self.int(sql, &[Param::Text(table.into()), Param::Text(column.into())])?.unwrap_or(0) > 0)
    }
}

/// `?N` becomes `$N` cast to its parameter's type (so an int4 column compares with an int8
/// parameter), and `rarray(?N) AS page` a `unnest` of a text array.
pub fn postgres_sql(sql: &str, params: &[Param]) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut rest = sql;
    while let Some(at) = rest.find('?') {
        let digits = rest[at + 1..].chars().take_while(char::is_ascii_digit).count();
        let n: usize = rest[at + 1..at + 1 + digits].parse().unwrap_or(0);
        let rarray = rest[..at].ends_with("rarray(");
        out.push_str(&(if rarray { &rest[..at - "rarray(".len()] } else { &rest[..at] }).replace("CROSS JOIN", "JOIN"));
        let cast = match params.get(n.wrapping_sub(1)) {
            Some(Param::Int(_)) => "int8",
            Some(Param::Texts(_)) => "text[]",
            _ => "text",
        };
        if rarray {
            out.push_str(&format!("unnest(${n}::{cast}"));
        } else {
            out.push_str(&format!("${n}::{cast}"));
        }
        rest = &rest[at + 1 + digits..];
        if rarray && let Some(after) = rest.strip_prefix(") AS page") {
            out.push_str(") AS page(value)");
            rest = after;
        }
    }
    out.push_str(&rest.replace("CROSS JOIN", "JOIN"));
    out
}

fn sqlite_param(p: &Param) -> Box<dyn rusqlite::ToSql> {
    match p {
        Param::Int(n) => Box::new(*n),
        Param::Text(t) => Box::new(t.clone()),
        // What rarray() reads.
        Param::Texts(t) => Box::new(std::rc::Rc::new(t.iter().cloned().map(Value::Text).collect::<Vec<_>>())),
    }
}

fn postgres_param(p: &Param) -> Box<dyn ToSql + Sync> {
    match p {
        Param::Int(n) => Box::new(*n),
        Param::Text(t) => Box::new(t.clone()),
        Param::Texts(t) => Box::new(t.clone()),
    }
}

fn postgres_cell(row: &postgres::Row, i: usize, ty: &Type) -> Result<Cell> {
    fn get<'a, T: postgres::types::FromSql<'a>>(row: &'a postgres::Row, i: usize) -> Result<Option<T>> {
        row.try_get::<_, Option<T>>(i).map_err(pg_error)
    }
    let text = |s: Option<String>| s.map_or(Cell::Null, |s| Cell::Text(s.into_bytes()));
    Ok(match *ty {
        Type::INT2 => get::<i16>(row, i)?.map_or(Cell::Null, |n| Cell::Int(n.into())),
        Type::INT4 => get::<i32>(row, i)?.map_or(Cell::Null, |n| Cell::Int(n.into())),
        Type::INT8 => get::<i64>(row, i)?.map_or(Cell::Null, Cell::Int),
        Type::FLOAT4 => get::<f32>(row, i)?.map_or(Cell::Null, |f| Cell::Real(f.into())),
        Type::FLOAT8 => get::<f64>(row, i)?.map_or(Cell::Null, Cell::Real),
        Type::BOOL => get::<bool>(row, i)?.map_or(Cell::Null, |b| Cell::Int(b.into())),
        // A timestamp without a zone is taken as UTC. What is no time (`infinity`) or beyond
        // what chrono holds comes as text that is no RFC 3339 time: the source's bad row.
        Type::TIMESTAMPTZ | Type::TIMESTAMP => text(get::<PgTime>(row, i)?.map(|t| t.rfc3339())),
        Type::JSON | Type::JSONB => text(get::<serde_json::Value>(row, i)?.map(|v| v.to_string())),
        _ => text(get::<String>(row, i)?),
    })
}

/// A `timestamp` or `timestamptz` as PostgreSQL sends it: microseconds since 2000-01-01 UTC,
/// `i64::MAX` and `i64::MIN` for `infinity` and `-infinity`. Read raw, since the column holds
/// years chrono cannot (up to 294276), and one row's odd time must not fail the whole query.
struct PgTime(i64);

impl<'a> postgres::types::FromSql<'a> for PgTime {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(PgTime(i64::from_be_bytes(raw.try_into().map_err(|_| "a timestamp is 8 bytes")?)))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::TIMESTAMP | Type::TIMESTAMPTZ)
    }
}

impl PgTime {
    /// RFC 3339 in UTC as chrono writes it (`+10000-...` past year 9999); `infinity` and
    /// `-infinity` as PostgreSQL writes them.
    fn rfc3339(&self) -> String {
        const MICROS_PER_DAY: i64 = 86_400_000_000;
        match self.0 {
            i64::MAX => return "infinity".into(),
            i64::MIN => return "-infinity".into(),
            _ => {}
        }
        let epoch = chrono::NaiveDate::from_ymd_opt(2000, 1, 1).unwrap_or_default().and_time(chrono::NaiveTime::MIN);
        if let Some(t) = epoch.checked_add_signed(chrono::TimeDelta::microseconds(self.0)) {
            return t.and_utc().to_rfc3339();
        }
        // Past chrono's years: the civil date (proleptic Gregorian, as PostgreSQL counts), from
        // the days since 0000-03-01 (Howard Hinnant's `civil_from_days`).
        let (days, micros) = (self.0.div_euclid(MICROS_PER_DAY), self.0.rem_euclid(MICROS_PER_DAY));
        let z = days + 730_425; // 2000-01-01 is day 730,425 after 0000-03-01.
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        let (secs, fraction) = (micros / 1_000_000, micros % 1_000_000);
        let sign = if year < 0 { "-" } else { "+" };
        let mut out = format!(
            "{sign}{:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
            year.abs(),
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        );
        if fraction > 0 {
            let digits = format!("{fraction:06}");
            // As chrono: milliseconds when they say it all, else microseconds.
            out.push('.');
            out.push_str(if fraction % 1000 == 0 { &digits[..3] } else { &digits });
        }
        out + "+00:00"
    }
}

/// SQLite's own words, without the statement rusqlite appends to them.
fn sqlite_error(e: rusqlite::Error) -> anyhow::Error {
    let message = match &e {
        rusqlite::Error::SqlInputError { msg, .. } | rusqlite::Error::SqliteFailure(_, Some(msg)) => msg.clone(),
        other => other.to_string(),
    };
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => anyhow::anyhow!("not a SQLite database"),
        _ => anyhow::anyhow!(message),
    }
}

/// The server's message and its detail, on one line.
fn pg_error(e: postgres::Error) -> anyhow::Error {
    match e.as_db_error() {
        Some(db) => anyhow::anyhow!("{}{}", db.message(), db.detail().map(|d| format!(" ({d})")).unwrap_or_default()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                // rustls' errors, through tokio-rustls' io::Error, in words: their Display is Debug.
                let tls = s
                    .downcast_ref::<rustls::Error>()
                    .or_else(|| s.downcast_ref::<std::io::Error>()?.get_ref()?.downcast_ref::<rustls::Error>());
                let s_text = tls.map_or_else(|| s.to_string(), |e| tls_words(e).to_owned());
                if !text.contains(&s_text) {
                    text = format!("{text}: {s_text}");
                }
                source = s.source();
            }
            anyhow::anyhow!(text)
        }
    }
}

/// A TLS failure other than the certificate's check (`Verifier` says those), in words.
fn tls_words(e: &rustls::Error) -> &'static str {
    use rustls::AlertDescription as Alert;
    use rustls::Error as E;
    match e {
        E::InvalidMessage(_) | E::InappropriateMessage { .. } | E::InappropriateHandshakeMessage { .. } => {
            "the server's answer is not TLS as it should be"
        }
        E::AlertReceived(Alert::HandshakeFailure | Alert::ProtocolVersion | Alert::InsufficientSecurity) => {
            "the server refused the handshake: no TLS version or cipher in common"
        }
        E::AlertReceived(Alert::CertificateRequired) => {
            "the server asks for a client certificate, which chat-notifier does not send"
        }
        E::AlertReceived(_) => "the server ended the handshake",
        E::PeerIncompatible(_) => "the server offers no TLS version or cipher chat-notifier accepts",
        E::PeerMisbehaved(_) | E::PeerSentOversizedRecord => "the server broke the TLS protocol",
        E::NoCertificatesPresented => "the server presented no certificate",
        E::InvalidCertificate(_) | E::InvalidCertRevocationList(_) => "the server's certificate was refused",
        E::DecryptError | E::EncryptError => "the TLS connection could not be decrypted",
        _ => "TLS failed",
    }
}

/// Whether every host of a connection is on this machine: a Unix-domain socket, `localhost`
/// or a loopback address (127.0.0.0/8, ::1), each `hostaddr` too. A host name reached through
/// a loopback `hostaddr` (a tunnel) is not: the tunnel's far end talks across the network.
fn nearby(config: &postgres::Config) -> bool {
    let host = |h: &postgres::config::Host| match h {
        // As for SMTP: not `localhost.`, which DNS answers.
        postgres::config::Host::Tcp(name) => crate::config::is_loopback(name),
        #[cfg(unix)]
        postgres::config::Host::Unix(_) => true,
    };
    config.get_hosts().iter().all(host) && config.get_hostaddrs().iter().all(|ip| crate::config::is_loopback_ip(*ip))
}

/// TLS to PostgreSQL as libpq's `sslmode` means it. No `sslmode` is libpq's default, `prefer`,
/// for a host on this machine (`nearby`), and `require` for one across a network: `prefer`
/// gives the password to anyone on the path who says the server has no TLS. Only `disable`
/// and `prefer` ever talk in clear, and `prefer` only to a server that says it has no TLS: a
/// handshake that fails is an error, never a reason to fall back.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tls {
    /// `disable`: plain.
    Disable,
    /// `prefer`: TLS without checking the certificate when the server offers it, else plain.
    Prefer,
    /// `require`: TLS, the certificate unchecked (anyone on the path can pose as the server).
    Require,
    /// `verify-ca` (and `require` with `sslrootcert`, as libpq): TLS, the certificate signed by
    /// a root of `Roots`, whatever name it bears.
    VerifyCa(Roots),
    /// `verify-full`: signed by a root of `Roots`, and for the host connected to.
    VerifyFull(Roots),
}

/// Where the roots a certificate is checked against come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Roots {
    /// The system's (no `sslrootcert`, or `sslrootcert=system`).
    System,
    /// The PEM file `sslrootcert` names.
    File(String),
}

impl Tls {
    /// The TLS a URL asks for, and the URL without the parameters read here (the connection's
    /// parser knows neither `sslrootcert` nor libpq's `verify-*` modes). `nearby`: the hosts
    /// are all on this machine, where no `sslmode` means `prefer` (else `require`).
    fn from_url(url: &str, nearby: bool) -> Result<(String, Tls)> {
        let params = crate::config::url_params(url);
        let last = |key: &str| params.iter().rev().find(|p| p.key == key).map(|p| p.value.clone());
        let roots = match last("sslrootcert") {
            None => None,
            Some(path) if path == "system" => Some(Roots::System),
            Some(path) => Some(Roots::File(path)),
        };
        let default = match (&roots, nearby) {
            (Some(Roots::System), _) => "verify-full",
            (_, true) => "prefer",
            (_, false) => "require",
        };
        let tls = match last("sslmode").as_deref().unwrap_or(default) {
            "disable" => Tls::Disable,
            "prefer" => Tls::Prefer,
            "require" => roots.map_or(Tls::Require, Tls::VerifyCa),
            "verify-ca" => Tls::VerifyCa(roots.unwrap_or(Roots::System)),
            "verify-full" => Tls::VerifyFull(roots.unwrap_or(Roots::System)),
            other => anyhow::bail!(
                "sslmode={other:?} is not one chat-notifier knows: give {}",
                crate::config::SSL_MODES.join(", ")
            ),
        };
        let kept: Vec<&str> =
            params.iter().filter(|p| p.key != "sslmode" && p.key != "sslrootcert").map(|p| p.raw).collect();
        let base = match url.split_once("://") {
            Some((scheme, rest)) => format!("{scheme}://{}", rest.split('?').next().unwrap_or("")),
            None => url.to_owned(),
        };
        Ok((if kept.is_empty() { base } else { format!("{base}?{}", kept.join("&")) }, tls))
    }

    fn ssl_mode(&self) -> postgres::config::SslMode {
        match self {
            Tls::Disable => postgres::config::SslMode::Disable,
            Tls::Prefer => postgres::config::SslMode::Prefer,
            _ => postgres::config::SslMode::Require,
        }
    }

    /// The connector, and where its certificate check leaves what it found wrong.
    fn connector(&self) -> Result<(tokio_postgres_rustls::MakeRustlsConnect, Arc<Mutex<Option<String>>>)> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (check, roots) = match self {
            Tls::Disable | Tls::Prefer | Tls::Require => (Check::Encrypt, None),
            Tls::VerifyCa(roots) => (Check::Ca, Some(roots)),
            Tls::VerifyFull(roots) => (Check::Full, Some(roots)),
        };
        let (store, pinned, named, file) = match roots {
            None => (rustls::RootCertStore::empty(), Vec::new(), String::new(), None),
            Some(Roots::System) => {
                let mut store = rustls::RootCertStore::empty();
                store.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
                (store, Vec::new(), "a CA the system trusts".into(), None)
            }
            Some(Roots::File(path)) => {
                let (store, certs) = root_file(path)?;
                (store, certs, format!("the CA in sslrootcert {path}"), Some(path.clone()))
            }
        };
        let why = Arc::new(Mutex::new(None));
        let verifier =
            Verifier { check, roots: store, pinned, named, file, provider: provider.clone(), why: why.clone() };
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Ok((tokio_postgres_rustls::MakeRustlsConnect::new(tls), why))
    }
}

/// The certificates of a PEM file: as roots, and as they are (a server's own, pinned).
fn root_file(path: &str) -> Result<(rustls::RootCertStore, Vec<rustls::pki_types::CertificateDer<'static>>)> {
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(path).with_context(|| format!("sslrootcert {path}"))?;
    let mut store = rustls::RootCertStore::empty();
    let mut certs = Vec::new();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|_| anyhow::anyhow!("sslrootcert {path}: not PEM certificates"))?;
        store
            .add(cert.clone())
            .map_err(|_| anyhow::anyhow!("sslrootcert {path}: a certificate in it cannot be read"))?;
        certs.push(cert);
    }
    if store.is_empty() {
        anyhow::bail!("sslrootcert {path}: no certificate in it");
    }
    Ok((store, certs))
}

/// What is checked of the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Nothing: the connection is encrypted, the server unproven (libpq's `prefer`, `require`).
    Encrypt,
    /// Signed by a root, whatever its name.
    Ca,
    /// Signed by a root, and for the host.
    Full,
}

/// The server's certificate checked as `sslmode` says; the handshake's signatures always are
/// (the server holds the certificate's key). A certificate that is one of `sslrootcert`'s, byte
/// for byte, is pinned, as OpenSSL (libpq) takes it: a self-signed server certificate, which
/// OpenSSL 3 and Debian mark CA:TRUE, given as its own root. What fails is said in words in
/// `why`, never in rustls' Debug.
#[derive(Debug)]
struct Verifier {
    check: Check,
    roots: rustls::RootCertStore,
    /// The certificates of the `sslrootcert` file, as they are.
    pinned: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// The roots, for messages: "the CA in sslrootcert /etc/ssl/pg-root.crt".
    named: String,
    /// The `sslrootcert` file, if one is given.
    file: Option<String>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    why: Arc<Mutex<Option<String>>>,
}

impl Verifier {
    fn said(&self, why: String, e: rustls::Error) -> rustls::Error {
        if let Ok(mut slot) = self.why.lock() {
            *slot = Some(why);
        }
        e
    }

    /// What is wrong with the server's certificate, in words, for `sslmode={mode}`.
    fn words(&self, e: &rustls::Error, mode: &str) -> String {
        use rustls::CertificateError as Bad;
        let date = |t: &rustls::pki_types::UnixTime| {
            i64::try_from(t.as_secs())
                .ok()
                .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
                .map_or_else(String::new, |t| t.format(" %Y-%m-%d %H:%M UTC").to_string())
        };
        let what = match e {
            rustls::Error::InvalidCertificate(bad) => match bad {
                Bad::UnknownIssuer | Bad::BadSignature => {
                    let hint = match self.file {
                        Some(_) => "",
                        None => "; give sslrootcert=PATH, the certificate of the CA that signed it",
                    };
                    return format!("the server's certificate is not signed by {} (sslmode={mode}){hint}", self.named);
                }
                Bad::BadEncoding => "cannot be read".into(),
                Bad::Expired => "has expired".into(),
                Bad::ExpiredContext { not_after, .. } => format!("expired on{}", date(not_after)),
                Bad::NotValidYet => "is not valid yet".into(),
                Bad::NotValidYetContext { not_before, .. } => format!("is not valid before{}", date(not_before)),
                Bad::Revoked => "has been revoked".into(),
                Bad::UnknownRevocationStatus => "has a revocation status that cannot be known".into(),
                Bad::ExpiredRevocationList | Bad::ExpiredRevocationListContext { .. } => {
                    "is checked against a revocation list that has expired".into()
                }
                Bad::UnhandledCriticalExtension => "has a critical extension chat-notifier does not know".into(),
                #[allow(deprecated)]
                Bad::UnsupportedSignatureAlgorithm
                | Bad::UnsupportedSignatureAlgorithmContext { .. }
                | Bad::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
                    "is signed with an algorithm chat-notifier does not support".into()
                }
                Bad::NotValidForName | Bad::NotValidForNameContext { .. } => "is not for this host".into(),
                Bad::InvalidPurpose | Bad::InvalidPurposeContext { .. } => {
                    "is not for a server (its extended key usage)".into()
                }
                Bad::InvalidOcspResponse => "comes with an OCSP response that cannot be read".into(),
                Bad::ApplicationVerificationFailure => "was refused".into(),
                // webpki's own errors, which rustls passes on by name (their Display is Debug).
                Bad::Other(other) => match other.0.to_string().as_str() {
                    "CaUsedAsEndEntity" => match &self.file {
                        Some(path) => {
                            return format!(
                                "the server's certificate is a CA's, not the one in sslrootcert {path} \
                                 (sslmode={mode}); to pin a self-signed certificate, give that very certificate as \
                                 sslrootcert"
                            );
                        }
                        None => "is a CA's, not a server's".into(),
                    },
                    "EndEntityUsedAsCa" => "comes with a chain where a server's certificate signs as a CA".into(),
                    "PathLenConstraintViolated" => "comes through more CAs than its CA allows".into(),
                    "NameConstraintViolation" => "bears a name its CA may not certify".into(),
                    "UnsupportedCertVersion" => "is of an X.509 version chat-notifier does not read".into(),
                    "SignatureAlgorithmMismatch" => "is signed with an algorithm other than it says".into(),
                    "MaximumPathDepthExceeded"
                    | "MaximumSignatureChecksExceeded"
                    | "MaximumPathBuildCallsExceeded"
                    | "MaximumNameConstraintComparisonsExceeded" => "has a chain too long to check".into(),
                    _ => "cannot be checked".into(),
                },
                _ => "cannot be checked".into(),
            },
            _ => "cannot be checked".into(),
        };
        format!("the server's certificate {what} (sslmode={mode})")
    }
}

/// What is read of a certificate here, where webpki does not say it: its validity, whether it
/// has a subjectAltName, and the common names of its subject. None if it is not DER as RFC 5280
/// lays it out.
#[derive(Debug, PartialEq, Eq)]
struct CertFacts {
    not_before: i64,
    not_after: i64,
    has_san: bool,
    common_names: Vec<String>,
}

/// A DER reader: one element (tag, contents) at a time, None at the end or on bad bytes.
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, rest) = self.0.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = match first {
            0..=0x7f => (usize::from(first), rest),
            0x81..=0x84 => {
                let (bytes, rest) = rest.split_at_checked(usize::from(first & 0x7f))?;
                (bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b)), rest)
            }
            _ => return None,
        };
        let (contents, rest) = rest.split_at_checked(len)?;
        self.0 = rest;
        Some((tag, contents))
    }
}

impl CertFacts {
    fn of(der: &[u8]) -> Option<CertFacts> {
        let Some((0x30, cert)) = Der(der).next() else { return None };
        let Some((0x30, tbs)) = Der(cert).next() else { return None };
        let mut tbs = Der(tbs);
        let mut item = tbs.next()?;
        if item.0 == 0xa0 {
            item = tbs.next()?; // the version: the serial number follows.
        }
        let _serial = item;
        let (_signature, _issuer) = (tbs.next()?, tbs.next()?);
        let Some((0x30, validity)) = tbs.next() else { return None };
        let mut validity = Der(validity);
        let (not_before, not_after) = (der_time(validity.next()?)?, der_time(validity.next()?)?);
        let Some((0x30, subject)) = tbs.next() else { return None };
        let _key = tbs.next()?;
        let mut has_san = false;
        while let Some((tag, contents)) = tbs.next() {
            if tag != 0xa3 {
                continue;
            }
            let Some((0x30, extensions)) = Der(contents).next() else { return None };
            let mut extensions = Der(extensions);
            while let Some((0x30, extension)) = extensions.next() {
                has_san |= Der(extension).next() == Some((0x06, &[0x55, 0x1d, 0x11][..]));
            }
        }
        let mut common_names = Vec::new();
        let mut names = Der(subject);
        while let Some((0x31, set)) = names.next() {
            let mut set = Der(set);
            while let Some((0x30, pair)) = set.next() {
                let mut pair = Der(pair);
                if pair.next() == Some((0x06, &[0x55, 0x04, 0x03][..]))
                    && let Some((0x0c | 0x13 | 0x14 | 0x16, value)) = pair.next()
                {
                    common_names.push(String::from_utf8_lossy(value).into_owned());
                }
            }
        }
        Some(CertFacts { not_before, not_after, has_san, common_names })
    }
}

/// A UTCTime or GeneralizedTime (`YYMMDDHHMMSSZ`, `YYYYMMDDHHMMSSZ`), in seconds since 1970.
fn der_time((tag, text): (u8, &[u8])) -> Option<i64> {
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    let full = match tag {
        // RFC 5280: a two-digit year of 50 or more is 19YY.
        0x17 => format!("{}{text}", if text.get(..2)?.parse::<u8>().ok()? >= 50 { "19" } else { "20" }),
        0x18 => text.to_owned(),
        _ => return None,
    };
    chrono::NaiveDateTime::parse_from_str(&full, "%Y%m%d%H%M%S").ok().map(|t| t.and_utc().timestamp())
}

/// Whether a certificate's name (`db.example.com`, `*.example.com`) is for `host`, as libpq
/// matches a common name: in any case, a `*` standing for the whole leftmost label of a name.
fn name_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(rest) => {
            host.parse::<std::net::IpAddr>().is_err()
                && host.split_once('.').is_some_and(|(first, tail)| !first.is_empty() && tail == rest)
        }
        None => pattern == host,
    }
}

impl rustls::client::danger::ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        use rustls::CertificateError as Bad;
        if self.check == Check::Encrypt {
            return Ok(rustls::client::danger::ServerCertVerified::assertion());
        }
        let mode = if self.check == Check::Full { "verify-full" } else { "verify-ca" };
        let unreadable = |e: rustls::Error| self.said(self.words(&e, mode), e);
        let facts = CertFacts::of(end_entity.as_ref());
        if self.pinned.iter().any(|pin| pin.as_ref() == end_entity.as_ref()) {
            // The very certificate the owner gave: no chain to build, its dates still checked.
            let facts = facts.as_ref().ok_or_else(|| unreadable(Bad::BadEncoding.into()))?;
            let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
            let at =
                |t: i64| rustls::pki_types::UnixTime::since_unix_epoch(Duration::from_secs(t.max(0).unsigned_abs()));
            if now > facts.not_after {
                let e = Bad::ExpiredContext { time: at(now), not_after: at(facts.not_after) };
                return Err(unreadable(e.into()));
            }
            if now < facts.not_before {
                let e = Bad::NotValidYetContext { time: at(now), not_before: at(facts.not_before) };
                return Err(unreadable(e.into()));
            }
        } else {
            let cert = rustls::server::ParsedCertificate::try_from(end_entity).map_err(unreadable)?;
            let algorithms = self.provider.signature_verification_algorithms.all;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &cert,
                &self.roots,
                intermediates,
                now,
                algorithms,
            )
            .map_err(unreadable)?;
        }
        if self.check == Check::Full {
            let cert = rustls::server::ParsedCertificate::try_from(end_entity).map_err(unreadable)?;
            if let Err(e) = rustls::client::verify_server_name(&cert, server_name) {
                let name = server_name.to_str();
                // As libpq: a certificate without a subjectAltName is for the names in its CN.
                let common_names = facts.as_ref().filter(|f| !f.has_san).map(|f| f.common_names.clone());
                if common_names.as_ref().is_some_and(|cns| cns.iter().any(|cn| name_matches(cn, &name))) {
                    return Ok(rustls::client::danger::ServerCertVerified::assertion());
                }
                let names = match (&e, common_names) {
                    (_, Some(cns)) => cns.join(", "),
                    // rustls writes them `DnsName("db")`, `IpAddress(10.0.0.1)`: the names alone.
                    (rustls::Error::InvalidCertificate(Bad::NotValidForNameContext { presented, .. }), None) => {
                        presented
                            .iter()
                            .map(|n| {
                                let inner = n.split_once('(').map_or(n.as_str(), |(_, n)| n.trim_end_matches(')'));
                                inner.trim_matches('"').to_owned()
                            })
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                    _ => String::new(),
                };
                let names = if names.is_empty() { String::new() } else { format!(" but for {names}") };
                let why = format!(
                    "the server's certificate is not for {name}{names} (sslmode=verify-full checks the host's \
                     name; verify-ca only the CA)"
                );
                return Err(self.said(why, e));
            }
        }
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The query parameters whose values are shown with a URL: settings, never secrets. Any other
/// key's value (`options`, a key this version does not know, a mistyped `passwd`) is left out.
const SHOWN_PARAMS: [&str; 15] = [
    "sslmode",
    "sslrootcert",
    "sslnegotiation",
    "connect_timeout",
    "application_name",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "target_session_attrs",
    "load_balance_hosts",
    "channel_binding",
    "keepalives",
    "tcp_user_timeout",
];

/// The URL as it may be shown: without a password, should one be there, and with the value of
/// each query parameter not in `SHOWN_PARAMS` written `***`.
pub fn shown_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => format!("{}@{host}", userinfo.split(':').next().unwrap_or("")),
        None => authority.to_owned(),
    };
    // A first @ past the host (refused by the config) ends the credentials for the connection.
    if rest.find('@').is_some_and(|at| at > end) {
        return format!("{scheme}://{authority}/***");
    }
    let path = path.split('?').next().unwrap_or("");
    let params = crate::config::url_params(url);
    if params.is_empty() {
        return format!("{scheme}://{authority}{path}");
    }
    let query: Vec<String> = params
        .iter()
        .map(|p| match p.raw.split_once('=') {
            Some((key, _)) if SHOWN_PARAMS.contains(&p.key.as_str()) => format!("{key}={}", &p.raw[key.len() + 1..]),
            Some((key, _)) => format!("{key}=***"),
            None => p.raw.to_owned(),
        })
        .collect();
    format!("{scheme}://{authority}{path}?{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_gets_typed_placeholders_and_unnest() {
        let params = [Param::Texts(vec![]), Param::Int(1)];
        assert_eq!(
            postgres_sql("SELECT c.id FROM rarray(?1) AS page CROSS JOIN c ON c.id = page.value WHERE n > ?2", &params),
            "SELECT c.id FROM unnest($1::text[]) AS page(value) JOIN c ON c.id = page.value WHERE n > $2::int8"
        );
        assert_eq!(
            postgres_sql("WHERE id = ?1 AND s = ?2", &[Param::Int(1), Param::Text("x".into())]),
            "WHERE id = $1::int8 AND s = $2::text"
        );
    }

    /// PostgreSQL's range of times, written as chrono writes what it can hold and the same way
    /// past it; `infinity` as PostgreSQL writes it.
    #[test]
    fn every_postgres_time_has_a_text() {
        let micros = |t: &str| {
            let epoch = chrono::DateTime::parse_from_rfc3339("2000-01-01T00:00:00Z").unwrap();
            (chrono::DateTime::parse_from_rfc3339(t).unwrap() - epoch).num_microseconds().unwrap()
        };
        for t in ["2026-11-24T09:00:00+00:00", "2026-11-24T09:00:00.250+00:00", "1999-12-31T23:59:59.000001+00:00"] {
            assert_eq!(PgTime(micros(t)).rfc3339(), t);
        }
        assert_eq!(PgTime(i64::MAX).rfc3339(), "infinity");
        assert_eq!(PgTime(i64::MIN).rfc3339(), "-infinity");
        // PostgreSQL's last microsecond, 294276-12-31 23:59:59.999999 UTC, and chrono's last day.
        assert_eq!(PgTime(9_223_371_331_199_999_999).rfc3339(), "+294276-12-31T23:59:59.999999+00:00");
        assert_eq!(PgTime(9_223_371_331_200_000_000 - 1_000).rfc3339(), "+294276-12-31T23:59:59.999+00:00");
        let last = chrono::NaiveDate::MAX.and_hms_opt(12, 0, 0).unwrap().and_utc();
        let epoch = chrono::NaiveDate::from_ymd_opt(2000, 1, 1).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc();
        let past = (last - epoch).num_microseconds().unwrap() + 86_400_000_000;
        assert_eq!(PgTime(past - 86_400_000_000).rfc3339(), "+262142-12-31T12:00:00+00:00", "chrono's last day");
        assert_eq!(PgTime(past).rfc3339(), "+262143-01-01T12:00:00+00:00", "the day after, counted here");
        for t in [PgTime(i64::MAX - 1), PgTime(i64::MIN + 1), PgTime(past)] {
            assert!(chrono::DateTime::parse_from_rfc3339(&t.rfc3339()).is_err(), "{}", t.rfc3339());
        }
    }

    /// `sslmode` and `sslrootcert` as libpq reads them, taken out of the URL the connection's
    /// parser gets (it knows neither `sslrootcert` nor the `verify-*` modes).
    #[test]
    fn sslmode_and_sslrootcert_read_as_libpq_does() {
        let file = || Roots::File("/r.crt".into());
        for (url, stripped, tls) in [
            ("postgresql://h/d", "postgresql://h/d", Tls::Prefer),
            ("postgresql://h/d?sslmode=disable", "postgresql://h/d", Tls::Disable),
            (
                "postgresql://h/d?sslmode=require&application_name=x",
                "postgresql://h/d?application_name=x",
                Tls::Require,
            ),
            ("postgresql://h/d?sslrootcert=/r.crt&sslmode=require", "postgresql://h/d", Tls::VerifyCa(file())),
            ("postgresql://h/d?sslmode=prefer&sslrootcert=/r.crt", "postgresql://h/d", Tls::Prefer),
            ("postgresql://h/d?sslmode=verify-ca", "postgresql://h/d", Tls::VerifyCa(Roots::System)),
            (
                "postgresql://u@h:1/d?sslmode=verify-full&sslrootcert=%2Fr.crt",
                "postgresql://u@h:1/d",
                Tls::VerifyFull(file()),
            ),
            ("postgresql://h/d?sslrootcert=system", "postgresql://h/d", Tls::VerifyFull(Roots::System)),
            ("postgresql://h/d?sslmode=disable&sslmode=require", "postgresql://h/d", Tls::Require),
        ] {
            assert_eq!(Tls::from_url(url, true).unwrap(), (stripped.to_owned(), tls), "{url}");
        }
        // Across a network, no sslmode is require (with a root: checked, as libpq's require).
        for (url, tls) in [
            ("postgresql://h/d", Tls::Require),
            ("postgresql://h/d?sslrootcert=/r.crt", Tls::VerifyCa(file())),
            ("postgresql://h/d?sslrootcert=system", Tls::VerifyFull(Roots::System)),
            ("postgresql://h/d?sslmode=prefer", Tls::Prefer),
            ("postgresql://h/d?sslmode=disable", Tls::Disable),
        ] {
            assert_eq!(Tls::from_url(url, false).unwrap().1, tls, "{url}");
        }
        let allow = Tls::from_url("postgresql://h/d?sslmode=allow", true).unwrap_err().to_string();
        assert!(allow.contains("sslmode=\"allow\" is not one chat-notifier knows"), "{allow}");
    }

    /// A self-signed certificate as OpenSSL 3 makes one (CA:TRUE, CN only), valid `from`-`to`.
    fn self_signed(cn: &str, sans: &[&str], from: (i32, u8, u8), to: (i32, u8, u8)) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
        params.not_after = rcgen::date_time_ymd(to.0, to.1, to.2);
        params.self_signed(&rcgen::KeyPair::generate().unwrap()).unwrap().der().to_vec()
    }

    fn pinning(check: Check, cert: &[u8]) -> Verifier {
        let cert = rustls::pki_types::CertificateDer::from(cert.to_vec());
        Verifier {
            check,
            roots: rustls::RootCertStore::empty(),
            pinned: vec![cert],
            named: "the CA in sslrootcert /p.crt".into(),
            file: Some("/p.crt".into()),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            why: Arc::new(Mutex::new(None)),
        }
    }

    /// What is read of a certificate here: its dates, whether it has a subjectAltName, its CN.
    #[test]
    fn certificate_facts_are_read_from_its_der() {
        let at = |y, m, d| chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap().and_hms_opt(0, 0, 0).unwrap();
        let facts = CertFacts::of(&self_signed("db.example.com", &[], (2020, 1, 2), (2060, 3, 4))).unwrap();
        assert_eq!(
            facts,
            CertFacts {
                not_before: at(2020, 1, 2).and_utc().timestamp(),
                not_after: at(2060, 3, 4).and_utc().timestamp(),
                has_san: false,
                common_names: vec!["db.example.com".into()],
            }
        );
        assert!(CertFacts::of(&self_signed("x", &["localhost"], (2020, 1, 1), (2030, 1, 1))).unwrap().has_san);
        let der = self_signed("x", &[], (2020, 1, 1), (2030, 1, 1));
        for cut in [0, 1, 5, 40, der.len() / 2] {
            assert_eq!(CertFacts::of(&der[..cut]), None, "cut at {cut}");
        }
        assert_eq!(der_time((0x17, b"491231235959Z")), Some(at(2050, 1, 1).and_utc().timestamp() - 1));
        assert_eq!(der_time((0x17, b"500101000000Z")), Some(at(1950, 1, 1).and_utc().timestamp()));
        assert_eq!(der_time((0x18, b"20500101000000Z")), Some(at(2050, 1, 1).and_utc().timestamp()));
        assert_eq!(der_time((0x17, b"500101000000")), None);
        for (pattern, host, ok) in [
            ("localhost", "LOCALHOST", true),
            ("db.example.com.", "db.example.com", true),
            ("*.example.com", "db.example.com", true),
            ("*.example.com", "a.db.example.com", false),
            ("*.example.com", "example.com", false),
            ("*.0.0.1", "127.0.0.1", false),
            ("127.0.0.1", "127.0.0.1", true),
            ("localhost", "127.0.0.1", false),
        ] {
            assert_eq!(name_matches(pattern, host), ok, "{pattern} {host}");
        }
    }

    /// A pinned certificate is taken without a chain, its dates and (verify-full) its name still
    /// checked, the name from its CN where it has no subjectAltName.
    #[test]
    fn a_pinned_certificate_is_checked_for_its_dates_and_name() {
        use rustls::client::danger::ServerCertVerifier;
        let now = rustls::pki_types::UnixTime::now();
        let name = |n: &str| rustls::pki_types::ServerName::try_from(n.to_owned()).unwrap();
        let verify = |v: &Verifier, cert: &[u8], host: &str| {
            let cert = rustls::pki_types::CertificateDer::from(cert.to_vec());
            let result = v.verify_server_cert(&cert, &[], &name(host), &[], now);
            result.map(|_| ()).map_err(|_| v.why.lock().unwrap().take().unwrap_or_default())
        };
        let good = self_signed("localhost", &[], (2020, 1, 1), (4000, 1, 1));
        assert_eq!(verify(&pinning(Check::Full, &good), &good, "localhost"), Ok(()));
        assert_eq!(verify(&pinning(Check::Ca, &good), &good, "elsewhere.example.com"), Ok(()));
        assert_eq!(
            verify(&pinning(Check::Full, &good), &good, "db.example.com"),
            Err("the server's certificate is not for db.example.com but for localhost (sslmode=verify-full checks \
                 the host's name; verify-ca only the CA)"
                .into())
        );
        let expired = self_signed("localhost", &[], (2000, 1, 1), (2001, 1, 1));
        assert_eq!(
            verify(&pinning(Check::Ca, &expired), &expired, "localhost"),
            Err("the server's certificate expired on 2001-01-01 00:00 UTC (sslmode=verify-ca)".into())
        );
        let early = self_signed("localhost", &[], (3999, 1, 1), (4000, 1, 1));
        assert_eq!(
            verify(&pinning(Check::Full, &early), &early, "localhost"),
            Err("the server's certificate is not valid before 3999-01-01 00:00 UTC (sslmode=verify-full)".into())
        );
        // Another certificate than the pinned one: a CA's, said so in words.
        let other = self_signed("localhost", &[], (2020, 1, 1), (4000, 1, 1));
        let why = verify(&pinning(Check::Full, &good), &other, "localhost").unwrap_err();
        assert!(why.starts_with("the server's certificate is a CA's, not the one in sslrootcert /p.crt"), "{why}");
    }

    /// Every certificate error rustls can give is said in words, never in its Debug.
    #[test]
    #[allow(deprecated)]
    fn certificate_errors_are_words() {
        use rustls::CertificateError as Bad;
        let t = rustls::pki_types::UnixTime::since_unix_epoch(Duration::from_secs(1_800_000_000));
        let other = |name: &str| Bad::Other(rustls::OtherError(Arc::new(std::io::Error::other(name.to_owned()))));
        let mut errors: Vec<rustls::Error> = [
            Bad::BadEncoding,
            Bad::Expired,
            Bad::ExpiredContext { time: t, not_after: t },
            Bad::NotValidYet,
            Bad::NotValidYetContext { time: t, not_before: t },
            Bad::Revoked,
            Bad::UnhandledCriticalExtension,
            Bad::UnknownIssuer,
            Bad::UnknownRevocationStatus,
            Bad::ExpiredRevocationList,
            Bad::ExpiredRevocationListContext { time: t, next_update: t },
            Bad::BadSignature,
            Bad::UnsupportedSignatureAlgorithm,
            Bad::UnsupportedSignatureAlgorithmContext { signature_algorithm_id: vec![1], supported_algorithms: vec![] },
            Bad::UnsupportedSignatureAlgorithmForPublicKeyContext {
                signature_algorithm_id: vec![1],
                public_key_algorithm_id: vec![2],
            },
            Bad::NotValidForName,
            Bad::InvalidPurpose,
            Bad::InvalidOcspResponse,
            Bad::ApplicationVerificationFailure,
            other("CaUsedAsEndEntity"),
            other("EndEntityUsedAsCa"),
            other("PathLenConstraintViolated"),
            other("NameConstraintViolation"),
            other("MaximumPathDepthExceeded"),
            other("SomethingNew"),
        ]
        .into_iter()
        .map(rustls::Error::from)
        .collect();
        errors.push(rustls::Error::General("x".into()));
        for file in [None, Some("/p.crt".to_owned())] {
            let mut v = pinning(Check::Full, b"");
            v.file = file;
            for e in &errors {
                let words = v.words(e, "verify-ca");
                assert!(words.starts_with("the server's certificate "), "{e:?}: {words}");
                for debug in ["Other", "Error", "Context", "{", "\"", "Bad", "Ca", "Unknown", "Expired", "Invalid"] {
                    assert!(!words.contains(debug), "{e:?}: {words}");
                }
            }
        }
        let ca = pinning(Check::Full, b"").words(&other("CaUsedAsEndEntity").into(), "verify-full");
        assert!(ca.contains("a CA's, not the one in sslrootcert /p.crt (sslmode=verify-full); to pin"), "{ca}");
        let expired = pinning(Check::Full, b"").words(&Bad::ExpiredContext { time: t, not_after: t }.into(), "x");
        assert_eq!(expired, "the server's certificate expired on 2027-01-15 08:00 UTC (sslmode=x)");
    }

    /// A host on this machine: a socket, localhost, a loopback address; every one of them.
    #[test]
    fn nearby_hosts_are_those_on_this_machine() {
        let nearby = |url: &str| super::nearby(&url.parse::<postgres::Config>().unwrap());
        for url in [
            "postgresql://127.0.0.1/d",
            "postgresql://127.8.9.10:5433/d",
            "postgresql://localhost/d",
            "postgresql://LOCALHOST/d",
            "postgresql://[::1]/d",
            "postgresql:///d?host=/run/postgresql",
            "postgresql://localhost,127.0.0.2/d",
            "postgresql://localhost/d?hostaddr=127.0.0.1",
        ] {
            assert!(nearby(url), "{url}");
        }
        for url in [
            "postgresql://db.example.com/d",
            "postgresql://10.0.0.5/d",
            "postgresql://localhost.example.com/d",
            "postgresql://db.example.com/d?hostaddr=127.0.0.1",
            "postgresql://localhost/d?hostaddr=10.0.0.5",
            "postgresql://localhost,db.example.com/d",
            "postgresql://[::ffff:10.0.0.5]/d",
            "postgresql://localhost./d",
            "postgresql://LOCALHOST./d",
        ] {
            assert!(!nearby(url), "{url}");
        }
    }

    #[test]
    fn urls_are_shown_without_passwords() {
        assert_eq!(
            shown_url("postgresql://bot:s3cret@db.example.com:5432/rasa?sslmode=require"),
            "postgresql://bot@db.example.com:5432/rasa?sslmode=require"
        );
        assert_eq!(shown_url("postgresql://bot@db/rasa"), "postgresql://bot@db/rasa");
        assert_eq!(
            shown_url(
                "postgresql://bot@db/rasa?sslmode=verify-full&password=s3cret&options=-c%20x%3Dy&passwd&connect_timeout=5"
            ),
            "postgresql://bot@db/rasa?sslmode=verify-full&password=***&options=***&passwd&connect_timeout=5"
        );
        assert_eq!(shown_url("postgresql://db/rasa?application_name=me:s3cret@db2"), "postgresql://db/***");
        assert_eq!(
            shown_url("postgresql://bot@db/rasa?application_name=me@work"),
            "postgresql://bot@db/rasa?application_name=me@work"
        );
        assert_eq!(shown_url("postgresql://db?pass%77ord=s3cret"), "postgresql://db?pass%77ord=***");
    }
}
