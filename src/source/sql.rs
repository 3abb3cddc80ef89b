//! The one place a source's SQL meets a database: SQLite (a file, read only) or PostgreSQL
//! (a server, in read-only transactions). Sources write their queries once, with `?1`-style
//! placeholders and `rarray(?N)` for a list of ids; PostgreSQL gets them rewritten (`$N` with
//! the parameter's type, `unnest(...)`). Rows come back as plain cells, whatever the database.
//! The connection to PostgreSQL is made by `pgconn` (TLS as libpq's `sslmode` means it, the URL
//! shown without what may be secret), which a state on PostgreSQL shares.

use std::borrow::Cow;
use std::cell::RefCell;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{ToSql, Type};
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OpenFlags};

pub use crate::pgconn::{connect_postgres, pg_error, shown_url};

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
        let mut client = connect_postgres(url, password, "source.url")?;
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
}
