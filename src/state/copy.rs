//! `state copy`: a SQLite state file into an empty PostgreSQL database, every table as it is
//! (ids, threads, outbox, digests), in one transaction, through COPY.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};
use rusqlite::types::ValueRef;

use super::{At, MIGRATIONS, State, pg, try_lock};
use crate::pgconn::pg_error;

/// What a copy moved, as its line says it.
pub struct Copied(Vec<(&'static str, usize)>);

impl std::fmt::Display for Copied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(t, n)| format!("{n} {t}")).collect();
        write!(f, "{}", parts.join(", "))
    }
}

/// Copies the state file `from` into the PostgreSQL state `to`, holding the file's lock and the
/// database's lease meanwhile (none when a run holds either). Refused when the database holds
/// a state with anything in it.
pub fn copy(from: &Path, to: &At) -> Result<Option<Copied>> {
    let shown = to.shown();
    if !from.exists() {
        bail!("state copy: there is no state file at {} (nothing to copy)", from.display());
    }
    let Some(_file_lock) = try_lock(&At::File(from.to_owned()))? else { return Ok(None) };
    let source = State::open_read_only(from)?;
    let Some(conn) = source.conn.sqlite_conn() else { bail!("state copy: not a state file") };
    let Some(_lease) = try_lock(to)? else { return Ok(None) };
    let mut client = to.connect()?;
    let in_use: i64 = client
        .query_typed_one(
            "SELECT (SELECT count(*) FROM conversations) + (SELECT count(*) FROM outbox) \
             + (SELECT count(*) FROM digest_items) + (SELECT count(*) FROM bots) + (SELECT count(*) FROM deliveries) \
             + (SELECT count(*) FROM recent_rows) + (SELECT count(*) FROM progress WHERE watermark > 0 OR baseline_done)",
            &[],
        )
        .map_err(pg_error)
        .with_context(|| format!("state {shown}: reading"))?
        .get(0);
    if in_use > 0 {
        bail!("state copy: {shown} is not empty (it holds a state already); refusing to copy over it");
    }
    let mut tx = client.transaction().map_err(pg_error)?;
    let mut counts = Vec::new();
    // The rows a new schema starts with make way for the file's.
    tx.batch_execute("DELETE FROM progress; DELETE FROM deliveries_guard;").map_err(pg_error)?;
    for table in pg::TABLES.iter().copied().filter(|t| *t != "last_run") {
        let mut columns: Vec<String> = conn
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        if table == "digest_items" {
            columns.insert(0, "rowid".to_owned());
        }
        if table == "tallies" {
            // Kept by the trigger while conversations were copied; the file's are the same.
            tx.batch_execute("DELETE FROM tallies").map_err(pg_error)?;
        }
        let list = columns.join(", ");
        let mut stmt = conn.prepare(&format!("SELECT {list} FROM {table}"))?;
        let mut rows = stmt.query([])?;
        let mut writer = tx
            .copy_in(&format!("COPY {table} ({list}) FROM STDIN"))
            .map_err(pg_error)
            .with_context(|| format!("state {shown}: copying {table}"))?;
        let mut n = 0;
        let mut line = String::new();
        while let Some(row) = rows.next()? {
            line.clear();
            for i in 0..columns.len() {
                if i > 0 {
                    line.push('\t');
                }
                match row.get_ref(i)? {
                    ValueRef::Null => line.push_str("\\N"),
                    ValueRef::Integer(v) => {
                        let _ = write!(line, "{v}");
                    }
                    ValueRef::Real(v) => {
                        let _ = write!(line, "{v}");
                    }
                    ValueRef::Text(t) | ValueRef::Blob(t) => escape(&mut line, &String::from_utf8_lossy(t)),
                }
            }
            line.push('\n');
            writer.write_all(line.as_bytes()).with_context(|| format!("state {shown}: copying {table}"))?;
            n += 1;
        }
        writer.finish().map_err(pg_error).with_context(|| format!("state {shown}: copying {table}"))?;
        counts.push((table, n));
    }
    for (table, column) in [("outbox", "id"), ("deliveries", "id"), ("digest_items", "rowid")] {
        tx.batch_execute(&format!(
            "SELECT setval(pg_get_serial_sequence('{table}', '{column}'), \
             (SELECT coalesce(max({column}), 0) + 1 FROM {table}), false)"
        ))
        .map_err(pg_error)?;
    }
    tx.commit().map_err(pg_error).with_context(|| format!("state {shown}: committing the copy"))?;
    let shown_counts = counts
        .into_iter()
        .filter(|(t, _)| ["conversations", "outbox", "digest_items", "bots", "deliveries"].contains(t))
        .map(|(t, n)| (if t == "outbox" { "emails" } else { t }, n))
        .collect();
    debug_assert_eq!(pg::migrations().len(), MIGRATIONS.len());
    Ok(Some(Copied(shown_counts)))
}

/// A value as COPY's text format writes it.
fn escape(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
}
