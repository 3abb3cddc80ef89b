//! Applies SQL files to a SQLite database, creating it if needed: how the demo and the tests
//! build the example export without a sqlite3 shell.
//!
//!     cargo run --example load_sql -- target/demo/export.sqlite examples/export-day1.sql

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [db, files @ ..] = args.as_slice() else { bail!("usage: load_sql DATABASE FILE.sql...") };
    let conn = rusqlite::Connection::open(db).with_context(|| format!("opening {db}"))?;
    for file in files {
        let sql = std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?;
        conn.execute_batch(&sql).with_context(|| format!("applying {file} to {db}"))?;
    }
    Ok(())
}
