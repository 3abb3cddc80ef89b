//! The state's schema on PostgreSQL, and what only a PostgreSQL state does: migrating once
//! however many hosts start at the same moment (a transaction-level advisory lock, never a
//! session-level one, which PgBouncer in transaction mode would break), and a dry run's copy.
//!
//! The version numbers are SQLite's (`MIGRATIONS`), kept in a `schema_version` table (one row
//! per version applied, with when and by which host) instead of `PRAGMA user_version`. No
//! PostgreSQL state existed before schema 18: its first migration is the whole schema of 18,
//! and 2 to 18 are empty; from 19 on, each SQLite migration has its PostgreSQL twin at the same
//! number.

use anyhow::{Context, Result, bail};

use super::MIGRATIONS;
use postgres::types::Type;

use crate::pgconn::pg_error;

/// The advisory lock key migrations take ("chatnoti" in ASCII).
const MIGRATION_LOCK: i64 = 0x6368_6174_6e6f_7469;

/// PostgreSQL's migrations, at SQLite's version numbers.
pub(super) fn migrations() -> Vec<&'static str> {
    let mut all = vec![include_str!("pg_schema.sql")];
    all.resize(MIGRATIONS.len(), "");
    all
}

/// The tables of the state, in an order in which they can be filled.
pub(super) const TABLES: [&str; 11] = [
    "progress",
    "conversations",
    "outbox",
    "recent_rows",
    "bots",
    "digest_items",
    "tallies",
    "deliveries",
    "destination_threads",
    "deliveries_guard",
    "last_run",
];

/// The schema version, none when no run has created the schema yet; refused when the database
/// has the state's tables but no version (another program's tables of the same names).
pub(super) fn known_version(client: &mut postgres::Client) -> Result<Option<usize>> {
    let row = client
        .query_typed_one(
            "SELECT to_regclass('schema_version') IS NOT NULL, to_regclass('conversations') IS NOT NULL \
             OR to_regclass('outbox') IS NOT NULL",
            &[],
        )
        .map_err(pg_error)?;
    let (versioned, ours): (bool, bool) = (row.get(0), row.get(1));
    if !versioned {
        if ours {
            bail!(
                "has a conversations or outbox table but no schema_version: not a chat-notifier state; give \
                 chat-notifier a database of its own (or a schema: ALTER ROLE ... SET search_path)"
            );
        }
        return Ok(None);
    }
    let version: i32 =
        client.query_typed_one("SELECT coalesce(max(version), 0) FROM schema_version", &[]).map_err(pg_error)?.get(0);
    Ok(Some(usize::try_from(version).unwrap_or(0)))
}

/// Brings the schema up to date, in one transaction under a transaction-level advisory lock:
/// hosts that start together wait for the first, then find the schema current. True when this
/// call created it (a first run).
pub(super) fn migrate(client: &mut postgres::Client) -> Result<bool> {
    let current = MIGRATIONS.len();
    match known_version(client)? {
        Some(v) if v == current => return Ok(false),
        Some(v) if v > current => {
            bail!("written by a newer chat-notifier (schema {v}, this one knows {current}); run that version")
        }
        _ => {}
    }
    let mut tx = client.transaction().map_err(pg_error)?;
    tx.query_typed("SELECT pg_advisory_xact_lock($1)", &[(&MIGRATION_LOCK, Type::INT8)]).map_err(pg_error)?;
    // Read from pg_class with this statement's snapshot, not through to_regclass: the name
    // lookup's cache still remembers the table missing from before the lock was granted (the
    // advisory lock brings no catalog invalidations), and would miss the other host's table.
    let versioned: bool = tx
        .query_typed_one(
            "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relname = 'schema_version' AND n.nspname = current_schema())",
            &[],
        )
        .map_err(pg_error)?
        .get(0);
    if !versioned {
        tx.batch_execute(
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, \
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now(), host TEXT NOT NULL)",
        )
        .map_err(pg_error)?;
    }
    let version: i32 =
        tx.query_typed_one("SELECT coalesce(max(version), 0) FROM schema_version", &[]).map_err(pg_error)?.get(0);
    let version = usize::try_from(version).unwrap_or(0);
    if version >= current {
        // Another host migrated while this one waited for the lock.
        tx.commit().map_err(pg_error)?;
        return Ok(false);
    }
    let host = super::lease::host();
    for (i, migration) in migrations().iter().enumerate().skip(version) {
        if !migration.is_empty() {
            tx.batch_execute(migration).map_err(pg_error).with_context(|| format!("migration {}", i + 1))?;
        }
        tx.execute_typed(
            "INSERT INTO schema_version (version, host) VALUES ($1, $2)",
            &[(&((i + 1) as i32), Type::INT4), (&host, Type::TEXT)],
        )
        .map_err(pg_error)?;
    }
    tx.commit().map_err(pg_error)?;
    log::info!("state schema migrated from {version} to {current} by this process");
    Ok(version == 0)
}

/// A dry run's copy: in a transaction left open (the caller never commits it), each table
/// copied into a temporary one of the same name, which the session finds before the real one.
pub(super) fn scratch(client: &mut postgres::Client) -> Result<()> {
    let schema: String = client
        .query_typed_one(
            "SELECT relnamespace::regnamespace::text FROM pg_class WHERE oid = 'conversations'::regclass",
            &[],
        )
        .map_err(pg_error)?
        .get(0);
    let mut sql = String::from("BEGIN;\n");
    for table in TABLES {
        sql.push_str(&format!(
            "CREATE TEMP TABLE {table} (LIKE {schema}.{table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS \
             INCLUDING INDEXES INCLUDING IDENTITY);\nINSERT INTO pg_temp.{table} SELECT * FROM {schema}.{table};\n"
        ));
    }
    for (table, column) in [("outbox", "id"), ("deliveries", "id"), ("digest_items", "rowid")] {
        sql.push_str(&format!(
            "SELECT setval(pg_get_serial_sequence('pg_temp.{table}', '{column}'), \
             (SELECT coalesce(max({column}), 0) + 1 FROM pg_temp.{table}), false);\n"
        ));
    }
    sql.push_str(&format!(
        "CREATE TRIGGER tallies_change AFTER INSERT OR DELETE OR UPDATE OF last_message, covered_through, \
         held_through ON pg_temp.conversations FOR EACH ROW EXECUTE FUNCTION {schema}.chat_notifier_tallies();\n"
    ));
    client.batch_execute(&sql).map_err(pg_error)
}

/// The last run's host, settings fingerprint and time (UTC), if any run recorded them.
pub(super) fn last_run(client: &mut postgres::Client) -> Result<Option<(String, String, String)>> {
    let rows = client
        .query_typed(
            "SELECT host, fingerprint, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
             FROM last_run WHERE id = 1",
            &[],
        )
        .map_err(pg_error)?;
    Ok(rows.first().map(|r| (r.get(0), r.get(1), r.get(2))))
}
