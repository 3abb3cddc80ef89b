//! The one place the state's SQL meets its database: a SQLite file (the default) or a
//! PostgreSQL database that several hosts share. The state's modules write each statement once,
//! in SQLite's words with `?N` placeholders; PostgreSQL gets it rewritten (`sql_for_postgres`:
//! `$N`, `greatest`/`least` for the two-argument `max`/`min`, `ON CONFLICT DO NOTHING` for
//! `INSERT OR IGNORE`, ...) once per statement and kept. Where the two must differ the caller
//! asks `is_postgres` and writes both.
//!
//! On PostgreSQL every statement goes as one unnamed extended-protocol exchange with its
//! parameters' types given (`query_typed`): no named prepared statement outlives it, so a
//! connection through PgBouncer in transaction mode (which hands each transaction any server
//! connection) works as a direct one does.

use std::cell::RefCell;
use std::collections::HashMap;

use anyhow::{Context, Result, anyhow};
use postgres::types::{FromSql, IsNull, Kind, ToSql, Type};
use rusqlite::types::{ToSqlOutput, ValueRef};

/// A value bound to a statement, as both databases take it.
#[derive(Debug, Clone, Copy)]
pub enum V<'a> {
    Null,
    Int(i64),
    Real(f64),
    Text(&'a str),
    Bool(bool),
    /// Arrays, for PostgreSQL's batched statements (`unnest`, `= ANY`): one round trip for a
    /// batch of rows.
    Ints(&'a [i64]),
    Texts(&'a [String]),
    Bools(&'a [bool]),
}

/// What can be bound to a statement.
pub trait Bind {
    fn value(&self) -> V<'_>;
}

macro_rules! bind_int {
    ($($t:ty),*) => {$(
        impl Bind for $t {
            fn value(&self) -> V<'_> {
                V::Int(*self as i64)
            }
        }
    )*};
}
bind_int!(i64, i32, u32, usize);

impl Bind for bool {
    fn value(&self) -> V<'_> {
        V::Bool(*self)
    }
}
impl Bind for f64 {
    fn value(&self) -> V<'_> {
        V::Real(*self)
    }
}
impl Bind for str {
    fn value(&self) -> V<'_> {
        V::Text(self)
    }
}
impl Bind for String {
    fn value(&self) -> V<'_> {
        V::Text(self)
    }
}
impl Bind for [i64] {
    fn value(&self) -> V<'_> {
        V::Ints(self)
    }
}
impl Bind for [String] {
    fn value(&self) -> V<'_> {
        V::Texts(self)
    }
}
impl Bind for [bool] {
    fn value(&self) -> V<'_> {
        V::Bools(self)
    }
}
impl<T: Bind + ?Sized> Bind for &T {
    fn value(&self) -> V<'_> {
        (**self).value()
    }
}
impl<T: Bind> Bind for Option<T> {
    fn value(&self) -> V<'_> {
        self.as_ref().map_or(V::Null, Bind::value)
    }
}

/// The parameters of a statement: `args![a, b]`.
macro_rules! args {
    ($($x:expr),* $(,)?) => {
        &[$(&$x as &dyn $crate::state::db::Bind),*] as &[&dyn $crate::state::db::Bind]
    };
}
pub(crate) use args;

struct Sq<'a>(V<'a>);

impl rusqlite::ToSql for Sq<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self.0 {
            V::Null => ValueRef::Null,
            V::Int(n) => ValueRef::Integer(n),
            V::Real(f) => ValueRef::Real(f),
            V::Text(t) => ValueRef::Text(t.as_bytes()),
            V::Bool(b) => ValueRef::Integer(b.into()),
            V::Ints(_) | V::Texts(_) | V::Bools(_) => {
                return Err(rusqlite::Error::ToSqlConversionFailure("an array is PostgreSQL's only".into()));
            }
        }))
    }
}

/// A value sent to PostgreSQL as the type it is declared with (`pg_type`).
#[derive(Debug)]
struct Pg<'a>(V<'a>);

impl ToSql for Pg<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self.0 {
            V::Null => Ok(IsNull::Yes),
            V::Int(n) => n.to_sql(ty, out),
            V::Real(f) => f.to_sql(ty, out),
            V::Text(t) => t.to_sql(ty, out),
            V::Bool(b) => b.to_sql(ty, out),
            V::Ints(a) => a.to_sql(ty, out),
            V::Texts(a) => a.to_sql(ty, out),
            V::Bools(a) => a.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn to_sql_checked(
        &self,
        ty: &Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        self.to_sql(ty, out)
    }
}

/// The type a parameter is declared with; a NULL's is left for the server to infer.
fn pg_type(v: V<'_>) -> Type {
    match v {
        V::Null => Type::new("unknown".into(), 0, Kind::Simple, "pg_catalog".into()),
        V::Int(_) => Type::INT8,
        V::Real(_) => Type::FLOAT8,
        V::Text(_) => Type::TEXT,
        V::Bool(_) => Type::BOOL,
        V::Ints(_) => Type::INT8_ARRAY,
        V::Texts(_) => Type::TEXT_ARRAY,
        V::Bools(_) => Type::BOOL_ARRAY,
    }
}

/// A row as either database returns it.
pub enum Row<'a, 'b> {
    Sqlite(&'a rusqlite::Row<'b>),
    Pg(&'a postgres::Row),
}

impl Row<'_, '_> {
    pub fn get<T: Get>(&self, i: usize) -> Result<T> {
        match self {
            Row::Sqlite(r) => T::sqlite(r, i).map_err(anyhow::Error::new),
            Row::Pg(r) => {
                let cell: Cell = r.try_get(i).map_err(|e| anyhow!("{e}"))?;
                T::cell(cell).map_err(|why| anyhow!(why))
            }
        }
    }
}

/// A PostgreSQL value, whatever its type: what the state's columns hold.
#[derive(Debug)]
pub enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Bool(bool),
}

impl<'a> FromSql<'a> for Cell {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(match *ty {
            Type::INT8 => Cell::Int(i64::from_sql(ty, raw)?),
            Type::INT4 => Cell::Int(i32::from_sql(ty, raw)?.into()),
            Type::INT2 => Cell::Int(i16::from_sql(ty, raw)?.into()),
            Type::FLOAT8 => Cell::Real(f64::from_sql(ty, raw)?),
            Type::FLOAT4 => Cell::Real(f32::from_sql(ty, raw)?.into()),
            Type::BOOL => Cell::Bool(bool::from_sql(ty, raw)?),
            _ => Cell::Text(String::from_sql(ty, raw)?),
        })
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Cell::Null)
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// What a column can be read as, from either database.
pub trait Get: Sized {
    fn sqlite(r: &rusqlite::Row, i: usize) -> rusqlite::Result<Self>;
    fn cell(c: Cell) -> Result<Self, String>;
}

macro_rules! get_int {
    ($($t:ty),*) => {$(
        impl Get for $t {
            fn sqlite(r: &rusqlite::Row, i: usize) -> rusqlite::Result<Self> {
                r.get(i)
            }
            fn cell(c: Cell) -> Result<Self, String> {
                let n = match c {
                    Cell::Int(n) => n,
                    Cell::Bool(b) => b.into(),
                    other => return Err(format!("{other:?} is no integer")),
                };
                <$t>::try_from(n).map_err(|_| format!("{n} is out of range"))
            }
        }
    )*};
}
get_int!(i64, i32, u32, usize);

impl Get for bool {
    fn sqlite(r: &rusqlite::Row, i: usize) -> rusqlite::Result<Self> {
        r.get(i)
    }
    fn cell(c: Cell) -> Result<Self, String> {
        match c {
            Cell::Bool(b) => Ok(b),
            Cell::Int(n) => Ok(n != 0),
            other => Err(format!("{other:?} is no boolean")),
        }
    }
}

impl Get for f64 {
    fn sqlite(r: &rusqlite::Row, i: usize) -> rusqlite::Result<Self> {
        r.get(i)
    }
    fn cell(c: Cell) -> Result<Self, String> {
        match c {
            Cell::Real(f) => Ok(f),
            Cell::Int(n) => Ok(n as f64),
            other => Err(format!("{other:?} is no number")),
        }
    }
}

impl Get for String {
    fn sqlite(r: &rusqlite::Row, i: usize) -> rusqlite::Result<Self> {
        r.get(i)
    }
    fn cell(c: Cell) -> Result<Self, String> {
        match c {
            Cell::Text(t) => Ok(t),
            other => Err(format!("{other:?} is no text")),
        }
    }
}

impl<T: Get + rusqlite::types::FromSql> Get for Option<T> {
    fn sqlite(r: &rusqlite::Row, i: usize) -> rusqlite::Result<Self> {
        r.get(i)
    }
    fn cell(c: Cell) -> Result<Self, String> {
        match c {
            Cell::Null => Ok(None),
            c => T::cell(c).map(Some),
        }
    }
}

/// A connection to the state's database.
pub enum Conn {
    Sqlite(rusqlite::Connection),
    Pg(Box<RefCell<PgConn>>),
}

pub struct PgConn {
    pub client: postgres::Client,
    /// Each statement as PostgreSQL reads it, rewritten once.
    rewritten: HashMap<String, std::rc::Rc<str>>,
}

impl PgConn {
    pub fn new(client: postgres::Client) -> Self {
        PgConn { client, rewritten: HashMap::new() }
    }

    fn sql(&mut self, sql: &str) -> std::rc::Rc<str> {
        if let Some(s) = self.rewritten.get(sql) {
            return s.clone();
        }
        let s: std::rc::Rc<str> = sql_for_postgres(sql).into();
        self.rewritten.insert(sql.to_owned(), s.clone());
        s
    }

    pub fn query(&mut self, sql: &str, params: &[&dyn Bind]) -> Result<Vec<postgres::Row>> {
        let sql = self.sql(sql);
        let values: Vec<Pg> = params.iter().map(|p| Pg(p.value())).collect();
        let typed: Vec<(&(dyn ToSql + Sync), Type)> =
            values.iter().map(|v| (v as &(dyn ToSql + Sync), pg_type(v.0))).collect();
        self.client.query_typed(&sql, &typed).map_err(crate::pgconn::pg_error)
    }
}

impl Conn {
    pub fn is_postgres(&self) -> bool {
        matches!(self, Conn::Pg(_))
    }

    /// The SQLite connection, for what only a state file does (`state copy` reads it).
    pub fn sqlite_conn(&self) -> Option<&rusqlite::Connection> {
        match self {
            Conn::Sqlite(c) => Some(c),
            Conn::Pg(_) => None,
        }
    }

    fn pg(&self) -> Result<std::cell::RefMut<'_, PgConn>> {
        match self {
            Conn::Pg(c) => c.try_borrow_mut().context("a state query while another is being read"),
            Conn::Sqlite(_) => Err(anyhow!("not a PostgreSQL state")),
        }
    }

    /// Runs a statement; how many rows it changed.
    pub fn execute(&self, sql: &str, params: &[&dyn Bind]) -> Result<usize> {
        match self {
            Conn::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                Ok(stmt.execute(rusqlite::params_from_iter(params.iter().map(|p| Sq(p.value()))))?)
            }
            Conn::Pg(_) => {
                let mut pg = self.pg()?;
                let sql = pg.sql(sql);
                let values: Vec<Pg> = params.iter().map(|p| Pg(p.value())).collect();
                let typed: Vec<(&(dyn ToSql + Sync), Type)> =
                    values.iter().map(|v| (v as &(dyn ToSql + Sync), pg_type(v.0))).collect();
                // The count comes with the command's completion: query_typed gives rows only.
                let n = pg.client.execute_typed(&sql, &typed).map_err(crate::pgconn::pg_error)?;
                Ok(n as usize)
            }
        }
    }

    /// Several statements without parameters, as one string.
    pub fn batch(&self, sql: &str) -> Result<()> {
        match self {
            Conn::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Conn::Pg(_) => self.pg()?.client.batch_execute(sql).map_err(crate::pgconn::pg_error),
        }
    }

    /// Every row, each through `f`.
    pub fn query_map<T>(
        &self,
        sql: &str,
        params: &[&dyn Bind],
        mut f: impl FnMut(&Row) -> Result<T>,
    ) -> Result<Vec<T>> {
        match self {
            Conn::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let mut rows = stmt.query(rusqlite::params_from_iter(params.iter().map(|p| Sq(p.value()))))?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    out.push(f(&Row::Sqlite(r))?);
                }
                Ok(out)
            }
            Conn::Pg(_) => {
                let rows = self.pg()?.query(sql, params)?;
                rows.iter().map(|r| f(&Row::Pg(r))).collect()
            }
        }
    }

    /// The first row through `f`, none when there is none.
    pub fn query_opt<T>(
        &self,
        sql: &str,
        params: &[&dyn Bind],
        f: impl FnOnce(&Row) -> Result<T>,
    ) -> Result<Option<T>> {
        match self {
            Conn::Sqlite(c) => {
                let mut stmt = c.prepare_cached(sql)?;
                let mut rows = stmt.query(rusqlite::params_from_iter(params.iter().map(|p| Sq(p.value()))))?;
                match rows.next()? {
                    Some(r) => f(&Row::Sqlite(r)).map(Some),
                    None => Ok(None),
                }
            }
            Conn::Pg(_) => {
                let rows = self.pg()?.query(sql, params)?;
                rows.first().map(|r| f(&Row::Pg(r))).transpose()
            }
        }
    }

    /// The first row through `f`; an error when there is none.
    pub fn query_row<T>(&self, sql: &str, params: &[&dyn Bind], f: impl FnOnce(&Row) -> Result<T>) -> Result<T> {
        self.query_opt(sql, params, f)?.ok_or_else(|| anyhow::Error::new(rusqlite::Error::QueryReturnedNoRows))
    }

    /// The first column of the first row.
    pub fn one<T: Get>(&self, sql: &str, params: &[&dyn Bind]) -> Result<T> {
        self.query_row(sql, params, |r| r.get(0))
    }
}

/// A statement in SQLite's words, as PostgreSQL reads it.
pub fn sql_for_postgres(sql: &str) -> String {
    let mut s = String::with_capacity(sql.len() + 16);
    // ?N -> $N
    let mut chars = sql.char_indices().peekable();
    let mut in_quote = false;
    while let Some((_, c)) = chars.next() {
        if c == '\'' {
            in_quote = !in_quote;
        }
        if c == '?' && !in_quote && chars.peek().is_some_and(|(_, d)| d.is_ascii_digit()) {
            s.push('$');
        } else {
            s.push(c);
        }
    }
    let mut s = two_argument(&s, "max", "greatest");
    s = two_argument(&s, "min", "least");
    s = s.replace("LIMIT -1", "LIMIT ALL");
    if let Some(rest) = s.strip_prefix("INSERT OR IGNORE INTO") {
        s = format!("INSERT INTO{rest} ON CONFLICT DO NOTHING");
    }
    // SQLite's planner hints: PostgreSQL chooses for itself.
    while let Some(at) = s.find(" INDEXED BY ") {
        let end =
            s[at + 12..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).map_or(s.len(), |e| at + 12 + e);
        s.replace_range(at..end, "");
    }
    s
}

/// `max(a, b)` (SQLite's scalar max) as `greatest(a, b)`; the one-argument aggregate stays.
fn two_argument(sql: &str, name: &str, instead: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    let pattern = format!("{name}(");
    while let Some(at) = rest.find(&pattern) {
        let word_start = at == 0 || !rest[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
        let body = &rest[at + pattern.len()..];
        let (mut depth, mut comma) = (0i32, false);
        for c in body.chars() {
            match c {
                '(' => depth += 1,
                ')' if depth == 0 => break,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    comma = true;
                    break;
                }
                _ => {}
            }
        }
        out.push_str(&rest[..at]);
        out.push_str(if word_start && comma { instead } else { name });
        out.push('(');
        rest = body;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_rewritten_for_postgres() {
        assert_eq!(
            sql_for_postgres("SET a = max(a, excluded.a), b = (SELECT max(id) FROM t) WHERE x = ?1 AND y = '?2'"),
            "SET a = greatest(a, excluded.a), b = (SELECT max(id) FROM t) WHERE x = $1 AND y = '?2'"
        );
        assert_eq!(
            sql_for_postgres("INSERT OR IGNORE INTO r (a) VALUES (?1)"),
            "INSERT INTO r (a) VALUES ($1) ON CONFLICT DO NOTHING"
        );
        assert_eq!(
            sql_for_postgres("SELECT 1 FROM c INDEXED BY c_open WHERE min(a, b) > 0 LIMIT -1 OFFSET ?1"),
            "SELECT 1 FROM c WHERE least(a, b) > 0 LIMIT ALL OFFSET $1"
        );
    }
}
