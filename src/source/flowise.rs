//! Flowise's database (`packages/server/src/database/entities`, both of its dialects), read
//! only: its SQLite file (`~/.flowise/database.sqlite`) or PostgreSQL (`DATABASE_TYPE=postgres`).
//!
//! A conversation is a `chatId` of one chatflow (`chatflowid`), named `{chatflowid}/{chatId}`;
//! its bot is the chatflow (`chat_flow.name`). The visitor's lines are `userMessage` rows, the
//! bot's `apiMessage` rows (markdown). Fields are the chat's `lead` rows (name, email, phone) and
//! the `leadEmail` on the visitor's messages; the person is the email, else the phone, given.
//! An LLM chat has no last step: it is judged once quiet, and finished (`END_OF_FLOW`) where a
//! bot answer called a tool of `complete_on_tools` or said a phrase of `complete_on_phrases`.
//! Steps, for the report: the lead form (where the bot has it on and the chat has a lead: the
//! widget shows the form once, and keeps a lead after "clear chat") and each answer as "message N"
//! (`domain::turn`), N the visitor's messages so far.
//!
//! Ids: `chat_message.id` is a uuid, in no order, and nothing is ordered but `"createdDate"`
//! (no zone; PostgreSQL: the Flowise process's wall time; SQLite: UTC text, milliseconds): a
//! row's id is its *position*, the stored wall time in microseconds since 1970 times 1000 plus a
//! tiebreak in 0..999 from the uuid, so positions order like `"createdDate"`; two rows may share
//! one, so each row also has a key (63 bits mixed from its whole uuid) that tells it apart in the
//! state's memory of rows read. Rows are read a whole timestamp at a time, so paging is exact,
//! and the commit window (`late_writes`) covers a question inserted after its answer. On SQLite
//! times are compared as `sqlite_time` writes them (text in one form, milliseconds), which an
//! index on that expression serves (`INDEXES_SQLITE`), and a row's position is from that same
//! text, so a time in another form SQLite reads (a date alone, a Julian day) is read at the place
//! the queries order it at (`check` names such rows); a row whose time is none has no place and
//! is never read (`check` names it). No row stamped ahead of the run's clock (beyond the
//! late-write window) is read (`Source::read_until`): it waits for its time, so the watermark
//! never runs ahead of rows still to be written (`check` names those a day ahead).
//!
//! Leads: the widget's lead form comes before the first message, so a `lead` row may be all a
//! chat has (the visitor filled the form and left), and a lead may come after an email. A lead is
//! a row of the same time-ordered stream: its position is its time turned from the leads' zone
//! into the messages' (the wall time a message of that instant carries; on SQLite both are UTC)
//! plus its uuid's tiebreak, its key from its uuid; it is read with the messages (a page of each
//! table, cut at the earlier whole timestamp where one is full), left out when read before,
//! anchored, counted by the hourly count and re-read by a resync as they are. So a lead sits
//! among its chat's messages in time order: an email's `covered_through` covers it or not as it
//! covers a message, and one given after an email is past it, new activity. Its fields are the
//! visitor's answers to the form (author `Visitor`, a field each: they count as the visitor
//! writing), activity of its chat where the chatflow is there (an orphan lead is passed over)
//! and the chat is of a type read. Where either zone's clocks go back (DST), a lead of the
//! repeated hour may land behind what was read, as a message does: the hourly count finds it.
//!
//! Why time on SQLite too, not rowids: the two tables share no order but time. A message's
//! rowid is no place for a lead, and a lead's id made from the rowids of the messages around it
//! would change when a question stamped before it is inserted after it (late writes are normal),
//! or need the state to remember when it was first seen; ids that change break `covered_through`
//! and the anchor. With positions by time, a deleted tail's rowids handed out again change
//! nothing (a row is its time and uuid, not its rowid), and a lead is ordered among messages as
//! on PostgreSQL.

use std::cell::{Cell as Slot, RefCell};
use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, NaiveDateTime, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::Value;

use super::sql::{Cell, Db, Param};
use super::timed::{
    Completion, LAST_ORDERED, canonical_uuid, in_zone, key_of, last_ordered, position_of, uuid_bits, wall_of,
    wall_text, wall_time,
};
use super::{Batch, Source, Visit};
use crate::config::Config;
use crate::domain::{Activity, Author, Conversation, END_OF_FLOW, Message, text};

/// How long after its stamp a message may still be written, by default: a visitor's question
/// is stamped when asked and inserted once the LLM has answered (seconds to minutes).
pub const LATE_WRITES: TimeDelta = TimeDelta::minutes(10);
/// How far ahead of the clock `check` names a row's time (a runtime's clock set wrong).
const FAR_AHEAD: TimeDelta = TimeDelta::days(1);
/// The step of the lead form, for the report.
pub const LEAD_FORM: &str = "lead form";
/// What the widget's lead form says when the chatflow gives it no title (flowise-embed).
pub const DEFAULT_LEAD_TITLE: &str = "Let us know where we can reach you";

/// The columns of a message row, in `Row::read`'s order; `{pos}` is the rowid on SQLite.
const COLUMNS: &str = r#"m.id, m.role, m.chatflowid, m."chatId", m."chatType", m."createdDate", m.content,
     m."usedTools", m."leadEmail""#;

/// The columns of a lead row, in `Flowise::read_leads`'s order.
const LEAD_COLUMNS: &str = r#"l.id, l.chatflowid, l."chatId", l.name, l.email, l.phone, l."createdDate""#;

/// The queries of one dialect.
struct Sql {
    /// Rows past the watermark with whether their chatflow is there.
    after: String,
    /// Rows at one time.
    at: String,
    chats: String,
    leads: String,
    flow: &'static str,
    last: String,
    count: String,
    everything: String,
    flows: &'static str,
    all_leads: String,
    /// Leads past a time, leads at one time, the latest lead's time, leads before a time:
    /// leads are rows of the time-ordered stream.
    leads_after: String,
    leads_at: String,
    lead_last: String,
    lead_count: String,
}

/// SQLite: a stored time as its text with milliseconds (`2026-12-07 09:12:28.345`), whatever
/// way it was written (a lead's has no fraction; a `T`, a `Z`); NULL where it is no time.
fn sqlite_time(alias: &str) -> String {
    format!(r#"strftime('%Y-%m-%d %H:%M:%f', {alias}."createdDate")"#)
}

fn sqlite_sql() -> Sql {
    let (tm, tl) = (sqlite_time("m"), sqlite_time("l"));
    // A row's time as the queries order it (a date alone, a Julian day: SQLite's reading of
    // it), the stored text where that is none (to name it).
    let read_as = |alias: &str, t: &str| format!(r#"coalesce({t}, {alias}."createdDate")"#);
    let cols = format!("m.rowid, {COLUMNS}").replace(r#"m."createdDate""#, &read_as("m", &tm));
    let lead_cols = LEAD_COLUMNS.replace(r#"l."createdDate""#, &read_as("l", &tl));
    let join = "FROM chat_message m LEFT JOIN chat_flow f ON f.id = m.chatflowid";
    // Times from 1970 up to `LAST_ORDERED`: what a position holds.
    let ordered = |t: &str| format!("{t} > '1970-01-01 00:00:00.000' AND {t} < '2200-01-01 00:00:00.000'");
    Sql {
        after: format!(
            "SELECT {cols}, f.id IS NOT NULL {join} WHERE {tm} > ?1 AND {tm} <= ?3 AND {} ORDER BY {tm} LIMIT ?2",
            ordered(&tm)
        ),
        at: format!("SELECT {cols}, f.id IS NOT NULL {join} WHERE {tm} = ?1"),
        // `IN`, not a join from the list: through the index where there is one (check's), else
        // one pass over the table for the whole page of chats, not one per chat.
        chats: format!(r#"SELECT {cols}, 1 FROM chat_message m WHERE m."chatId" IN rarray(?1)"#),
        leads: format!(r#"SELECT {lead_cols} FROM lead l WHERE l."chatId" IN rarray(?1)"#),
        flow: r#"SELECT f.id, f.name, f."chatbotConfig" FROM chat_flow f WHERE f.id = ?1"#,
        last: format!("SELECT max({tm}) FROM chat_message m WHERE {} AND {tm} <= ?1", ordered(&tm)),
        count: format!("SELECT count(*) FROM chat_message m WHERE {} AND {tm} < ?1", ordered(&tm)),
        everything: format!(
            r#"SELECT {cols}, f.id IS NOT NULL {join} WHERE {tm} <= ?1 ORDER BY m.chatflowid, m."chatId", {tm}"#
        ),
        flows: r#"SELECT f.id, f.name, f."chatbotConfig" FROM chat_flow f"#,
        all_leads: format!("SELECT {lead_cols} FROM lead l"),
        leads_after: format!(
            "SELECT {lead_cols} FROM lead l WHERE {tl} > ?1 AND {tl} <= ?3 AND {} ORDER BY {tl} LIMIT ?2",
            ordered(&tl)
        ),
        leads_at: format!("SELECT {lead_cols} FROM lead l WHERE {tl} = ?1"),
        lead_last: format!("SELECT max({tl}) FROM lead l WHERE {} AND {tl} <= ?1", ordered(&tl)),
        lead_count: format!("SELECT count(*) FROM lead l WHERE {} AND {tl} < ?1", ordered(&tl)),
    }
}

fn postgres_sql() -> Sql {
    // uuid columns as text; the position is computed here from the time and the uuid.
    let cols = COLUMNS.replacen("m.id,", "0, m.id::text,", 1).replace("m.chatflowid,", "m.chatflowid::text,");
    let join = "FROM chat_message m LEFT JOIN chat_flow f ON f.id = m.chatflowid";
    let lead_cols = LEAD_COLUMNS.replacen("l.id,", "l.id::text,", 1);
    Sql {
        after: format!(
            r#"SELECT {cols}, f.id IS NOT NULL {join}
             WHERE m."createdDate" > CAST(?1 AS timestamp) AND m."createdDate" <= CAST(?3 AS timestamp)
             AND m."createdDate" < CAST('{LAST_ORDERED}' AS timestamp)
             ORDER BY m."createdDate" LIMIT ?2"#
        ),
        at: format!(r#"SELECT {cols}, f.id IS NOT NULL {join} WHERE m."createdDate" = CAST(?1 AS timestamp)"#),
        chats: format!(
            r#"SELECT {cols}, 1 FROM rarray(?1) AS page CROSS JOIN chat_message m ON m."chatId" = page.value"#
        ),
        leads: format!(r#"SELECT {lead_cols} FROM rarray(?1) AS page CROSS JOIN lead l ON l."chatId" = page.value"#),
        flow: r#"SELECT f.id::text, f.name, f."chatbotConfig" FROM chat_flow f WHERE f.id = CAST(?1 AS uuid)"#,
        last: r#"SELECT max("createdDate") FROM chat_message
             WHERE "createdDate" < CAST('2200-01-01 00:00:00' AS timestamp) AND "createdDate" <= CAST(?1 AS timestamp)"#
            .to_owned(),
        count: r#"SELECT count(*) FROM chat_message
             WHERE "createdDate" > CAST('1970-01-01 00:00:00' AS timestamp) AND "createdDate" < CAST(?1 AS timestamp)"#
            .to_owned(),
        everything: format!(
            r#"SELECT {cols}, f.id IS NOT NULL {join}
             WHERE m."createdDate" <= CAST(?1 AS timestamp) ORDER BY m.chatflowid, m."chatId", m."createdDate""#
        ),
        flows: r#"SELECT f.id::text, f.name, f."chatbotConfig" FROM chat_flow f"#,
        all_leads: format!("SELECT {lead_cols} FROM lead l"),
        leads_after: format!(
            r#"SELECT {lead_cols} FROM lead l
             WHERE l."createdDate" > CAST(?1 AS timestamp) AND l."createdDate" <= CAST(?3 AS timestamp)
             AND l."createdDate" < CAST('{LAST_ORDERED}' AS timestamp)
             ORDER BY l."createdDate" LIMIT ?2"#
        ),
        leads_at: format!(r#"SELECT {lead_cols} FROM lead l WHERE l."createdDate" = CAST(?1 AS timestamp)"#),
        lead_last: r#"SELECT max("createdDate") FROM lead
             WHERE "createdDate" < CAST('2200-01-01 00:00:00' AS timestamp) AND "createdDate" <= CAST(?1 AS timestamp)"#
            .to_owned(),
        lead_count: r#"SELECT count(*) FROM lead
             WHERE "createdDate" > CAST('1970-01-01 00:00:00' AS timestamp) AND "createdDate" < CAST(?1 AS timestamp)"#
            .to_owned(),
    }
}

/// The queries a run makes on PostgreSQL with parameters of their types (for the query-plan
/// tests): each through an index once `INDEXES_POSTGRES` exist.
pub fn postgres_queries() -> Vec<(String, Vec<Param>)> {
    let s = postgres_sql();
    let t = || Param::Text("2026-12-07 09:00:00".into());
    let ids = || vec![Param::Texts(vec![])];
    vec![
        (s.after, vec![t(), Param::Int(0), t()]),
        (s.at, vec![t()]),
        (s.chats, ids()),
        (s.leads, ids()),
        (s.flow.to_owned(), vec![Param::Text("7f0c2e1a-5b7d-4c1e-9a3f-2d6b8e4f1a01".into())]),
        (s.last, vec![t()]),
        (s.count, vec![t()]),
        (s.leads_after, vec![t(), Param::Int(0), t()]),
        (s.leads_at, vec![t()]),
        (s.lead_last, vec![t()]),
        (s.lead_count, vec![t()]),
    ]
}

/// The same for SQLite, with `INDEXES_SQLITE`.
pub fn sqlite_queries() -> Vec<(String, Vec<Param>)> {
    let s = sqlite_sql();
    let t = || Param::Text("2026-12-07 09:00:00.000".into());
    let ids = || vec![Param::Texts(vec![])];
    vec![
        (s.after, vec![t(), Param::Int(0), t()]),
        (s.at, vec![t()]),
        (s.chats, ids()),
        (s.leads, ids()),
        (s.flow.to_owned(), vec![Param::Text(String::new())]),
        (s.last, vec![t()]),
        (s.count, vec![t()]),
        (s.leads_after, vec![t(), Param::Int(0), t()]),
        (s.leads_at, vec![t()]),
        (s.lead_last, vec![t()]),
        (s.lead_count, vec![t()]),
    ]
}

/// What makes each run's queries use an index on PostgreSQL (Flowise's schema indexes
/// `chatflowid` only): (table, column, statement).
pub const INDEXES_POSTGRES: [(&str, &str, &str); 4] = [
    (
        "chat_message",
        "createdDate",
        r#"CREATE INDEX CONCURRENTLY IF NOT EXISTS chat_message_createddate_idx ON chat_message ("createdDate")"#,
    ),
    (
        "chat_message",
        "chatId",
        r#"CREATE INDEX CONCURRENTLY IF NOT EXISTS chat_message_chatid_idx ON chat_message ("chatId")"#,
    ),
    ("lead", "chatId", r#"CREATE INDEX CONCURRENTLY IF NOT EXISTS lead_chatid_idx ON lead ("chatId")"#),
    ("lead", "createdDate", r#"CREATE INDEX CONCURRENTLY IF NOT EXISTS lead_createddate_idx ON lead ("createdDate")"#),
];

/// The same on SQLite, where times are text in more than one form: the time as the queries
/// read it (`sqlite_time`), an index on an expression.
pub const INDEXES_SQLITE: [(&str, &str, &str); 4] = [
    (
        "chat_message",
        "strftime",
        r#"CREATE INDEX IF NOT EXISTS chat_message_createddate_idx ON chat_message (strftime('%Y-%m-%d %H:%M:%f', "createdDate"))"#,
    ),
    ("chat_message", "chatId", r#"CREATE INDEX IF NOT EXISTS chat_message_chatid_idx ON chat_message ("chatId")"#),
    ("lead", "chatId", r#"CREATE INDEX IF NOT EXISTS lead_chatid_idx ON lead ("chatId")"#),
    (
        "lead",
        "strftime",
        r#"CREATE INDEX IF NOT EXISTS lead_createddate_idx ON lead (strftime('%Y-%m-%d %H:%M:%f', "createdDate"))"#,
    ),
];

pub struct Flowise {
    db: Db,
    sql: Sql,
    /// "flowise /root/.flowise/database.sqlite", or the URL without its password.
    name: String,
    chat_types: Vec<String>,
    complete: Completion,
    /// The zone Flowise stamps messages in (PostgreSQL: the process's; SQLite: UTC).
    message_zone: Tz,
    /// The zone leads are stamped in (PostgreSQL: the database session's; SQLite: UTC).
    lead_zone: Tz,
    /// The late-write window, in positions.
    window: i64,
    /// The same, as a time.
    late: TimeDelta,
    /// The latest stored wall time (of the messages' zone) a run reads: the run's clock plus
    /// the late-write window (`Source::read_until`); rows stamped after wait for a later run.
    until: Slot<NaiveDateTime>,
    /// The keys of the bad rows named this run: a row read again within the run (the look for
    /// what was erased, then the reading on from there) is named once.
    named: RefCell<HashSet<i64>>,
    /// Chatflows by id, read once a run; None where there is none.
    bots: RefCell<HashMap<String, Option<Bot>>>,
}

/// A chatflow, as emails and the report need it.
#[derive(Debug, Clone)]
struct Bot {
    name: String,
    /// The lead form's title, where the chatflow has the form on.
    lead_form: Option<String>,
}

/// One `chat_message` row, as read.
#[derive(Debug, Clone)]
struct Row {
    position: i64,
    key: i64,
    /// SQLite: its rowid, to name it; PostgreSQL: 0.
    rowid: i64,
    uuid: String,
    role: String,
    flow: String,
    chat: String,
    chat_type: String,
    /// The stored wall time; None: not a time.
    wall: Option<NaiveDateTime>,
    raw_time: String,
    content: String,
    tools: Option<String>,
    lead_email: Option<String>,
    flow_exists: bool,
}

/// One `lead` row.
#[derive(Debug, Clone)]
struct Lead {
    uuid: String,
    /// Its position in the time-ordered stream, from its time in the messages' zone (0: none).
    position: i64,
    key: i64,
    /// Its time as the messages' zone writes it (the wall of its position).
    wall: Option<NaiveDateTime>,
    flow: String,
    chat: String,
    name: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    at: Option<DateTime<Utc>>,
}

/// A row of the time-ordered stream (PostgreSQL): a message or a lead.
enum Entry {
    Message(Row),
    Lead(Lead),
}

impl Entry {
    /// (position, key): the order rows are read in, and what tells one from another.
    fn order(&self) -> (i64, i64) {
        match self {
            Entry::Message(r) => (r.position, r.key),
            Entry::Lead(l) => (l.position, l.key),
        }
    }
}

/// A conversation's rows, as read.
#[derive(Debug, Default)]
struct Chat {
    rows: Vec<Row>,
    leads: Vec<Lead>,
}

impl Flowise {
    pub fn open_sqlite(path: &Path, config: &Config) -> Result<Self> {
        let name = format!("flowise {}", path.display());
        if !path.is_file() {
            bail!("{name}: no such file");
        }
        let db = Db::sqlite(path).with_context(|| format!("{name}: opening"))?;
        Flowise::on(db, sqlite_sql(), name, config)
    }

    pub fn open_postgres(url: &str, config: &Config) -> Result<Self> {
        let source = config.source.as_ref().context("no source")?;
        let name = format!("flowise {}", super::sql::shown_url(url));
        let db = Db::postgres(url, source.password()?.as_deref()).with_context(|| format!("{name}: connecting"))?;
        Flowise::on(db, postgres_sql(), name, config)
    }

    fn on(db: Db, mut sql: Sql, name: String, config: &Config) -> Result<Self> {
        let source = config.source.as_ref().context("no source")?;
        // New rows are read for their times and tools; their text (an LLM's answers, long) only
        // where a phrase may finish a chat.
        let phrases = !source.complete_on_phrases.is_empty()
            || config.bots.iter().any(|b| b.complete_on_phrases.as_ref().is_some_and(|p| !p.is_empty()));
        if !phrases {
            sql.after = sql.after.replacen("m.content,", "'' AS content,", 1);
            sql.at = sql.at.replacen("m.content,", "'' AS content,", 1);
        }
        let pg = db.is_postgres();
        let late = source.late_writes.map_or(LATE_WRITES, |s| s.0);
        let flowise = Flowise {
            db,
            sql,
            name,
            chat_types: source.chat_types.clone().unwrap_or_else(|| vec!["EXTERNAL".to_owned()]),
            complete: Completion::of(config),
            message_zone: if pg { source.message_time_zone.unwrap_or(Tz::UTC) } else { Tz::UTC },
            lead_zone: if pg { source.lead_time_zone.unwrap_or(Tz::UTC) } else { Tz::UTC },
            window: late.num_microseconds().unwrap_or(i64::MAX / 1000).saturating_mul(1000),
            late,
            until: Slot::new(last_ordered()),
            named: RefCell::default(),
            bots: RefCell::default(),
        };
        flowise.check_schema()?;
        Ok(flowise)
    }

    /// One line naming the database and what is missing, before any state is touched.
    fn check_schema(&self) -> Result<()> {
        let name = &self.name;
        let queries = if self.db.is_postgres() { postgres_queries() } else { sqlite_queries() };
        for (sql, params) in queries {
            if let Err(why) = self.db.prepare(&sql, &params).with_context(|| name.clone())? {
                bail!(
                    "{name}: not a Flowise database this version reads ({why}); it reads Flowise 2.x-3.x's \
                     chat_message (role, chatflowid, \"chatId\", \"chatType\", \"createdDate\", content, \"usedTools\", \
                     \"leadEmail\"), lead and chat_flow"
                );
            }
        }
        Ok(())
    }

    fn pg(&self) -> bool {
        self.db.is_postgres()
    }

    /// Reads message rows: `c[0]` the rowid (SQLite) or 0, then `COLUMNS`, then whether the
    /// chatflow is there.
    fn read_rows(&self, sql: &str, params: &[Param]) -> Result<Vec<Row>> {
        let mut out = Vec::new();
        self.db
            .each(sql, params, |c| {
                out.push(self.row(c));
                Ok(())
            })
            .with_context(|| format!("{}: reading chat_message", self.name))?;
        Ok(out)
    }

    fn row(&self, c: &[Cell]) -> Row {
        let uuid = c[1].lossy().unwrap_or_default();
        let raw_time = c[6].lossy().unwrap_or_default();
        let wall = wall_time(&raw_time).map(|w| self.stored(w));
        let (hi, lo) = uuid_bits(&uuid);
        Row {
            position: wall.and_then(|w| position_of(w, lo)).unwrap_or(0),
            key: key_of(hi, lo),
            rowid: c[0].int().unwrap_or_default(),
            uuid,
            role: c[2].lossy().unwrap_or_default(),
            flow: c[3].lossy().unwrap_or_default().to_lowercase(),
            chat: c[4].lossy().unwrap_or_default(),
            chat_type: c[5].lossy().unwrap_or_default(),
            wall,
            raw_time,
            content: c[7].lossy().unwrap_or_default(),
            tools: c[8].lossy(),
            lead_email: c[9].lossy(),
            flow_exists: c[10].int() == Some(1),
        }
    }

    /// Reads lead rows: `LEAD_COLUMNS`.
    fn read_leads(&self, sql: &str, params: &[Param]) -> Result<Vec<Lead>> {
        let rows = self.db.rows(sql, params).with_context(|| format!("{}: reading lead", self.name))?;
        Ok(rows
            .iter()
            .map(|c| {
                let uuid = c[0].lossy().unwrap_or_default();
                let at = c[6].lossy().as_deref().and_then(wall_time).map(|w| in_zone(self.lead_zone, w));
                // Its time as the messages' zone writes it: its place among them.
                let wall = at.map(|t| self.stored(t.with_timezone(&self.message_zone).naive_local()));
                let (hi, lo) = uuid_bits(&uuid);
                Lead {
                    position: wall.and_then(|w| position_of(w, lo)).unwrap_or(0),
                    key: key_of(hi, lo),
                    wall,
                    uuid,
                    flow: c[1].lossy().unwrap_or_default().to_lowercase(),
                    chat: c[2].lossy().unwrap_or_default(),
                    name: c[3].lossy(),
                    email: c[4].lossy(),
                    phone: c[5].lossy(),
                    at,
                }
            })
            .collect())
    }

    /// A wall time at the precision the queries compare times at: SQLite's text, milliseconds
    /// (`sqlite_time`); PostgreSQL's timestamps, microseconds.
    fn stored(&self, wall: NaiveDateTime) -> NaiveDateTime {
        if self.pg() {
            return wall;
        }
        let nanos = wall.and_utc().timestamp_subsec_nanos();
        wall - TimeDelta::nanoseconds(i64::from(nanos % 1_000_000))
    }

    /// A wall time as a query's parameter.
    fn time(&self, wall: NaiveDateTime) -> Param {
        Param::Text(if self.pg() { wall_text(wall) } else { wall.format("%Y-%m-%d %H:%M:%S%.3f").to_string() })
    }

    /// A wall time of the messages' zone as the leads' zone writes the same instant.
    fn lead_wall(&self, wall: NaiveDateTime) -> NaiveDateTime {
        in_zone(self.message_zone, wall).with_timezone(&self.lead_zone).naive_local()
    }

    /// Of the chats of `leads`, those a lead makes activity of: their chatflow is there, and
    /// their messages (if any yet) are of a chat type read.
    fn lead_chats(&self, leads: &[Lead]) -> Result<HashSet<String>> {
        let mut out = HashSet::new();
        for lead in leads {
            if self.bot(&lead.flow)?.is_some() {
                out.insert(conversation_id(&lead.flow, &lead.chat));
            }
        }
        if out.is_empty() {
            return Ok(out);
        }
        let ids: Vec<&str> = out.iter().map(String::as_str).collect();
        let mut kinds: HashMap<String, bool> = HashMap::new();
        for (id, chat) in self.chats(&ids)? {
            kinds.insert(id, chat.rows.is_empty() || chat.rows.iter().any(|r| self.wanted(r)));
        }
        out.retain(|id| kinds.get(id).copied().unwrap_or(true));
        Ok(out)
    }

    /// The leads whose position is at the messages' wall time `wall`.
    fn leads_at(&self, wall: NaiveDateTime) -> Result<Vec<Lead>> {
        let mut leads = self.read_leads(&self.sql.leads_at, &[self.time(self.lead_wall(wall))])?;
        leads.retain(|l| l.wall == Some(wall));
        Ok(leads)
    }

    /// A row's time as an instant.
    fn at(&self, row: &Row) -> Option<DateTime<Utc>> {
        row.wall.map(|w| in_zone(self.message_zone, w))
    }

    /// Names a row in a warning: its rowid on SQLite, its id on PostgreSQL.
    fn shown(&self, row: &Row) -> String {
        if self.pg() {
            format!("chat_message row {}", text::line(&row.uuid))
        } else {
            format!("chat_message row {} (id {})", row.rowid, text::line(&row.uuid))
        }
    }

    /// Why a row cannot be used, if it cannot (said once, when first read).
    fn bad(&self, row: &Row) -> Option<String> {
        if !row.flow_exists {
            return Some(format!("its chatflow {} is gone (deleted)", text::line(&row.flow)));
        }
        if row.role != "userMessage" && row.role != "apiMessage" {
            return Some(format!("role {:?} is neither userMessage nor apiMessage", text::line(&row.role)));
        }
        if row.wall.is_none() || row.position == 0 {
            return Some(format!("createdDate {:?} is not a time", text::line(&row.raw_time)));
        }
        if let Err(why) = tools(row.tools.as_deref()) {
            return Some(why);
        }
        None
    }

    /// Whether a row is of a chat this source reads (its chat type).
    fn wanted(&self, row: &Row) -> bool {
        self.chat_types.contains(&row.chat_type)
    }

    fn bot(&self, flow: &str) -> Result<Option<Bot>> {
        if let Some(bot) = self.bots.borrow().get(flow) {
            return Ok(bot.clone());
        }
        let row = if self.pg() && !canonical_uuid(flow) {
            None
        } else {
            self.db
                .one(self.sql.flow, &[Param::Text(flow.to_owned())])
                .with_context(|| format!("{}: reading chat_flow", self.name))?
        };
        if let Some(why) = row.as_ref().and_then(|r| r[2].lossy()).and_then(|c| serde_json::from_str::<Value>(&c).err())
        {
            log::warn!(
                "{}: chat_flow {}: chatbotConfig is not JSON ({}); its chats are read without a lead form",
                self.name,
                text::line(flow),
                text::line(&why.to_string())
            );
        }
        let bot = row.map(|r| bot_of(&r));
        self.bots.borrow_mut().insert(flow.to_owned(), bot.clone());
        Ok(bot)
    }

    /// The rows and leads of conversations, by conversation id.
    fn chats(&self, ids: &[&str]) -> Result<HashMap<String, Chat>> {
        let mut wanted: HashSet<(String, String)> = HashSet::new();
        let mut chat_ids: Vec<String> = Vec::new();
        for id in ids {
            let Some((flow, chat)) = parse_id(id) else { continue };
            wanted.insert((flow.to_lowercase(), chat.to_owned()));
            chat_ids.push(chat.to_owned());
        }
        chat_ids.sort_unstable();
        chat_ids.dedup();
        let mut out: HashMap<String, Chat> = HashMap::new();
        if chat_ids.is_empty() {
            return Ok(out);
        }
        let page = Param::Texts(chat_ids);
        for row in self.read_rows(&self.sql.chats, std::slice::from_ref(&page))? {
            if wanted.contains(&(row.flow.clone(), row.chat.clone())) {
                out.entry(conversation_id(&row.flow, &row.chat)).or_default().rows.push(row);
            }
        }
        for lead in self.read_leads(&self.sql.leads, &[page])? {
            let id = conversation_id(&lead.flow, &lead.chat);
            // A lead is a row of its chat, which may have no message yet.
            if wanted.contains(&(lead.flow.clone(), lead.chat.clone())) {
                out.entry(id).or_default().leads.push(lead);
            } else if let Some(chat) = out.get_mut(&id) {
                chat.leads.push(lead);
            }
        }
        for chat in out.values_mut() {
            chat.rows.sort_by_key(|r| (r.position, r.key));
        }
        Ok(out)
    }

    fn conversation(&self, id: &str, bot: &Bot, chat: &Chat, messages: &[Message]) -> Conversation {
        let flow = parse_id(id).map(|(f, _)| f).unwrap_or_default();
        let given = crate::domain::given_fields(messages);
        let value = |field: &str| {
            given.iter().find(|(n, v)| n == field && !v.trim().is_empty()).map(|(_, v)| v.trim().to_lowercase())
        };
        let first = chat.rows.iter().filter_map(|r| self.at(r)).chain(chat.leads.iter().filter_map(|l| l.at)).min();
        Conversation {
            id: id.to_owned(),
            bot_id: text::line(flow).into_owned(),
            bot_name: text::line(&bot.name).into_owned(),
            // Flowise keeps no visitor id: the person is who they said they are.
            visitor_id: text::line(&value("email").or_else(|| value("phone")).unwrap_or_default()).into_owned(),
            started_at: first.map(|t| t.fixed_offset()),
            page_url: None,
        }
    }

    /// A chat's messages through position `through`: the lead form (where it has a lead), each lead's fields (the
    /// visitor's answers to the form), each `leadEmail` as an email field before its message,
    /// the visitor's and the bot's lines, a bot answer that finishes the chat marked
    /// `END_OF_FLOW`. On PostgreSQL a lead is a row of the chat at its own position (a chat may
    /// be its lead alone); on SQLite its fields take the id of the chat's first message at or
    /// after its time (else its last), and a chat with no message is not read.
    fn messages(&self, bot: &Bot, chat: &Chat, through: i64) -> Vec<Message> {
        let rows: Vec<(&Row, DateTime<Utc>)> = chat
            .rows
            .iter()
            .filter(|r| r.position <= through && self.wanted(r) && self.bad(r).is_none())
            .filter_map(|r| Some((r, self.at(r)?)))
            .collect();
        // Another kind of chat (the builder's own tests, by default): its leads neither.
        if rows.is_empty() && chat.rows.iter().any(|r| !self.wanted(r)) {
            return Vec::new();
        }
        let mut leads: Vec<(&Lead, DateTime<Utc>)> = chat
            .leads
            .iter()
            .filter(|l| l.position > 0 && l.position <= through)
            .filter_map(|l| Some((l, l.at?)))
            .collect();
        leads.sort_by_key(|(l, _)| (l.position, l.key));
        let (first_id, first_at) = match (rows.first(), leads.first()) {
            (Some(&(row, at)), Some(&(lead, lead_at))) => (row.position.min(lead.position), at.min(lead_at)),
            (Some(&(row, at)), None) => (row.position, at),
            (None, Some(&(lead, at))) => (lead.position, at),
            (None, None) => return Vec::new(),
        };
        let lead_fields = |(lead, at): (&Lead, DateTime<Utc>), out: &mut Vec<Message>| {
            for (name, value) in [("name", &lead.name), ("email", &lead.email), ("phone", &lead.phone)] {
                if let Some(v) = value.as_deref().filter(|v| !v.trim().is_empty()) {
                    out.push(Message {
                        id: lead.position,
                        sent_at: at,
                        author: Author::Visitor,
                        gambit_id: None,
                        input_type: None,
                        field: Some(name.to_owned()),
                        body: text::body(v.trim()).into_owned(),
                    });
                }
            }
        };
        let mut out = Vec::new();
        // The form where the chat has a lead: the widget shows it once, and after "clear chat"
        // keeps the lead in the browser and shows it no more (flowise-embed).
        if let Some(title) = bot.lead_form.as_ref().filter(|_| !leads.is_empty()) {
            out.push(Message {
                id: first_id,
                sent_at: first_at,
                author: Author::Bot,
                gambit_id: Some(LEAD_FORM.to_owned()),
                input_type: None,
                field: None,
                body: text::body(title).into_owned(),
            });
        }
        let mut pending = leads.into_iter().peekable();
        let mut asked = 0;
        for &(row, at) in &rows {
            while let Some(lead) = pending.next_if(|(l, _)| (l.position, l.key) < (row.position, row.key)) {
                lead_fields(lead, &mut out);
            }
            let message = |author, gambit_id: Option<String>, input_type: Option<&str>| Message {
                id: row.position,
                sent_at: at,
                author,
                gambit_id,
                input_type: input_type.map(str::to_owned),
                field: None,
                body: text::body(&row.content).into_owned(),
            };
            if row.role == "userMessage" {
                if let Some(email) = row.lead_email.as_deref().filter(|e| !e.trim().is_empty()) {
                    out.push(Message {
                        field: Some("email".to_owned()),
                        body: text::body(email.trim()).into_owned(),
                        ..message(Author::Field, None, None)
                    });
                }
                out.push(message(Author::Visitor, None, None));
                asked += 1;
            } else {
                let used = tools(row.tools.as_deref()).unwrap_or_default();
                let ends = self.complete.finishes(&row.flow, &row.content, &used);
                out.push(message(Author::Bot, Some(crate::domain::turn(asked)), ends.then_some(END_OF_FLOW)));
            }
        }
        for lead in pending {
            lead_fields(lead, &mut out);
        }
        out
    }

    /// The rows at one stored time.
    fn rows_at(&self, wall: NaiveDateTime) -> Result<Vec<Row>> {
        self.read_rows(&self.sql.at, &[self.time(wall)])
    }

    /// Names the message rows stamped more than a day ahead of `clock` (a host's clock set
    /// wrong, a row written by hand): runs read each only once its time has come.
    fn name_rows_far_ahead(&self, clock: DateTime<Utc>) -> Result<()> {
        let wall = self.stored((clock + FAR_AHEAD).with_timezone(&self.message_zone).naive_local());
        let (time, id) =
            if self.pg() { (r#"m."createdDate""#.to_owned(), "m.id::text") } else { (sqlite_time("m"), "m.id") };
        let cast = if self.pg() { "CAST(?1 AS timestamp)" } else { "?1" };
        let rowid = if self.pg() { "0" } else { "m.rowid" };
        let sql = format!(
            r#"SELECT {rowid}, {id}, m."createdDate", count(*) OVER () FROM chat_message m WHERE {time} > {cast}
             ORDER BY {time} LIMIT 1"#
        );
        let context = || format!("{}: reading chat_message", self.name);
        let Some(first) = self.db.one(&sql, &[self.time(wall)]).with_context(context)? else { return Ok(()) };
        let uuid = text::line(&first[1].lossy().unwrap_or_default()).into_owned();
        let row = if self.pg() {
            format!("row {uuid}")
        } else {
            format!("row {} (id {uuid})", first[0].int().unwrap_or_default())
        };
        log::warn!(
            "{}: {} chat_message row(s) are stamped more than a day ahead of the clock, each read only once its time \
             has come (the first: {row}, createdDate {})",
            self.name,
            first[3].int().unwrap_or_default(),
            // As stored: PostgreSQL's timestamp arrives as RFC 3339, its wall time taken as UTC.
            first[2]
                .lossy()
                .as_deref()
                .and_then(wall_time)
                .map_or_else(String::new, |w| w.format("%Y-%m-%d %H:%M:%S%.3f").to_string())
        );
        Ok(())
    }

    /// Whether leads and their chats' messages disagree by whole hours: the zones are set wrong.
    fn zone_skew(&self) -> Result<Option<i64>> {
        let leads = self.read_leads(&self.sql.all_leads, &[])?;
        let mut chats: Vec<String> = leads.iter().map(|l| l.chat.clone()).collect();
        chats.sort_unstable();
        chats.dedup();
        chats.truncate(500);
        let mut times: HashMap<(String, String), Vec<DateTime<Utc>>> = HashMap::new();
        for row in self.read_rows(&self.sql.chats, &[Param::Texts(chats)])? {
            if let Some(at) = self.at(&row) {
                times.entry((row.flow.clone(), row.chat.clone())).or_default().push(at);
            }
        }
        let mut hours: Vec<i64> = Vec::new();
        for lead in &leads {
            let (Some(at), Some(times)) = (lead.at, times.get(&(lead.flow.clone(), lead.chat.clone()))) else {
                continue;
            };
            let Some(gap) = times.iter().map(|t| *t - at).min_by_key(|d| d.num_seconds().abs()) else { continue };
            // The form is sent seconds to minutes from a message: a gap of whole hours is a zone's.
            let h = (gap.num_seconds() as f64 / 3600.0).round() as i64;
            if h != 0 && (gap.num_seconds() - h * 3600).abs() <= 10 * 60 {
                hours.push(h);
            } else {
                hours.push(0);
            }
        }
        hours.sort_unstable();
        Ok(hours.get(hours.len() / 2).copied().filter(|h| *h != 0))
    }
}

/// Pure: the chatflow a `chat_flow` row (id, name, chatbotConfig) describes.
fn bot_of(r: &[Cell]) -> Bot {
    let config = r[2].lossy().and_then(|c| serde_json::from_str::<Value>(&c).ok());
    let leads = config.as_ref().and_then(|c| c.get("leads"));
    let on = leads.and_then(|l| l.get("status")).and_then(Value::as_bool) == Some(true);
    let title = leads
        .and_then(|l| l.get("title"))
        .and_then(Value::as_str)
        .filter(|t| !t.trim().is_empty())
        .unwrap_or(DEFAULT_LEAD_TITLE);
    Bot {
        name: r[1].lossy().unwrap_or_else(|| r[0].lossy().unwrap_or_default()),
        lead_form: on.then(|| title.to_owned()),
    }
}

/// Pure: the tools a bot answer called (`usedTools`, a JSON list of `{tool, ...}`), or why the
/// column cannot be read.
fn tools(json: Option<&str>) -> Result<Vec<String>, String> {
    let Some(json) = json.filter(|j| !j.trim().is_empty()) else { return Ok(Vec::new()) };
    match serde_json::from_str::<Value>(json) {
        Ok(Value::Array(list)) => {
            Ok(list.iter().filter_map(|t| t.get("tool").and_then(Value::as_str)).map(str::to_owned).collect())
        }
        Ok(Value::Null) => Ok(Vec::new()),
        Ok(_) => Err("usedTools is not a list".to_owned()),
        Err(e) => Err(format!("usedTools is not JSON ({e})")),
    }
}

fn conversation_id(flow: &str, chat: &str) -> String {
    format!("{flow}/{chat}")
}

fn parse_id(id: &str) -> Option<(&str, &str)> {
    id.split_once('/')
}

fn anchor(row: &Row) -> String {
    format!("{}\u{1f}{}", conversation_id(&row.flow, &row.chat), row.uuid)
}

fn lead_anchor(lead: &Lead) -> String {
    format!("{}\u{1f}lead {}", conversation_id(&lead.flow, &lead.chat), lead.uuid)
}

impl Source for Flowise {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn describe(&self) -> Result<String> {
        let count = |sql: &str| self.db.int(sql, &[]).map(Option::unwrap_or_default);
        let (flows, messages, leads) = (
            count("SELECT count(*) FROM chat_flow")?,
            count("SELECT count(*) FROM chat_message")?,
            count("SELECT count(*) FROM lead")?,
        );
        if let Some(hours) = self.zone_skew()? {
            log::warn!(
                "{}: leads are stamped {} h {} their chats' messages: Flowise writes messages in its process's \
                 zone and leads in the database's; set source.message_time_zone and source.lead_time_zone to them",
                self.name,
                hours.abs(),
                if hours > 0 { "before" } else { "after" }
            );
        }
        if !self.pg() {
            // Read by time: a row whose time is none is in no place of the stream, never read.
            let sql = format!(
                "SELECT m.rowid, m.id, m.\"createdDate\" FROM chat_message m WHERE {} IS NULL ORDER BY m.rowid",
                sqlite_time("m")
            );
            let rows = self.db.rows(&sql, &[]).with_context(|| format!("{}: reading chat_message", self.name))?;
            if let Some(first) = rows.first() {
                log::warn!(
                    "{}: {} chat_message row(s) have a createdDate that is no time, never read (the first: row {} (id {}), \
                     createdDate {:?})",
                    self.name,
                    rows.len(),
                    first[0].int().unwrap_or_default(),
                    text::line(&first[1].lossy().unwrap_or_default()),
                    text::line(&first[2].lossy().unwrap_or_default())
                );
            }
        }
        self.name_rows_far_ahead(Utc::now())?;
        if !self.pg() {
            // A time SQLite reads but Flowise never writes (a date alone, a number): read at
            // SQLite's reading of it, named so the owner knows what writes such rows.
            let tm = sqlite_time("m");
            let sql = format!(
                r#"SELECT m.rowid, m.id, m."createdDate", {tm}, count(*) OVER () FROM chat_message m
                 WHERE {tm} IS NOT NULL AND (typeof(m."createdDate") <> 'text' OR m."createdDate"
                   NOT GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9][ T][0-9][0-9]:[0-9][0-9]*')
                 ORDER BY m.rowid LIMIT 1"#
            );
            let first = self.db.one(&sql, &[]).with_context(|| format!("{}: reading chat_message", self.name))?;
            if let Some(first) = first {
                log::warn!(
                    "{}: {} chat_message row(s) have a createdDate not in Flowise's form, read at the time SQLite \
                     reads in it (the first: row {} (id {}), createdDate {:?}, read as {})",
                    self.name,
                    first[4].int().unwrap_or_default(),
                    first[0].int().unwrap_or_default(),
                    text::line(&first[1].lossy().unwrap_or_default()),
                    text::line(&first[2].lossy().unwrap_or_default()),
                    text::line(&first[3].lossy().unwrap_or_default())
                );
            }
        }
        let indexes: &[(&str, &str, &str)] = if self.pg() { &INDEXES_POSTGRES } else { &INDEXES_SQLITE };
        let mut missing = Vec::new();
        for (table, column, statement) in indexes {
            let there = if *column == "strftime" {
                // An index on the time as the queries read it.
                let sql =
                    "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = ?1 AND instr(sql, ?2) > 0";
                let expression = Param::Text(r#"strftime('%Y-%m-%d %H:%M:%f', "createdDate")"#.to_owned());
                self.db.int(sql, &[Param::Text((*table).to_owned()), expression])?.unwrap_or(0) > 0
            } else {
                self.db.has_index(table, column)?
            };
            if !there {
                missing.push(format!("{statement};"));
            }
        }
        let index = if missing.is_empty() {
            String::new()
        } else {
            format!(
                "; Flowise's schema has no index for the queries each run makes (they scan its tables, slow past a \
                 few hundred thousand messages); create them once: {}",
                missing.join(" ")
            )
        };
        Ok(format!(
            "{} (Flowise): {flows} chatflow(s), {messages} messages, {leads} leads, chat types read: {}{index}",
            self.name.trim_start_matches("flowise "),
            self.chat_types.join(", ")
        ))
    }

    fn commit_window(&self) -> i64 {
        self.window
    }

    fn read_until(&self, clock: DateTime<Utc>) {
        // Within the late-write window ahead of the clock (a host's clock a little ahead): a row
        // written after this run is stamped no earlier than the clock, so no further back than the
        // window from what this run reads; it is read by the next run's pass over the window.
        // Where the clocks went back within the hour, the latest wall time shown is of the hour
        // before: a bound that moves back would hold back rows already stamped.
        let at = (clock + self.late).naive_utc();
        let offset = |t: NaiveDateTime| self.message_zone.offset_from_utc_datetime(&t).fix().local_minus_utc();
        let ahead = offset(at).max(offset(at - TimeDelta::hours(1)));
        self.until.set(self.stored(at + TimeDelta::seconds(i64::from(ahead))).min(last_ordered()));
    }

    fn activity_after(&self, after: i64, limit: usize, skip: &HashSet<i64>) -> Result<Batch> {
        let (mut rows, mut leads) = {
            // Whole timestamps: the rest of the one at `after`, then a page of each table cut at a
            // whole one, the earlier of the two where a page is full.
            let at = wall_of(after);
            let (mut rows, mut leads) =
                if after > 0 { (self.rows_at(at)?, self.leads_at(at)?) } else { (Vec::new(), Vec::new()) };
            rows.retain(|r| r.position > after);
            leads.retain(|l| l.position > after);
            let until = self.until.get();
            let mut page =
                self.read_rows(&self.sql.after, &[self.time(at), Param::Int(limit as i64), self.time(until)])?;
            let lead_after = if after > 0 { self.lead_wall(at) } else { NaiveDateTime::default() };
            let lead_until = self.time(self.lead_wall(until));
            let mut lead_page =
                self.read_leads(&self.sql.leads_after, &[self.time(lead_after), Param::Int(limit as i64), lead_until])?;
            lead_page.retain(|l| l.position > after);
            let full = |n: usize, last: Option<NaiveDateTime>| last.filter(|_| n >= limit);
            let cut = [
                full(page.len(), page.last().and_then(|r| r.wall)),
                full(lead_page.len(), lead_page.iter().filter_map(|l| l.wall).max()),
            ]
            .into_iter()
            .flatten()
            .min();
            if let Some(cut) = cut {
                page.retain(|r| r.wall.is_some_and(|w| w < cut));
                lead_page.retain(|l| l.wall.is_some_and(|w| w < cut));
                page.extend(self.rows_at(cut)?);
                lead_page.extend(self.leads_at(cut)?);
            }
            rows.extend(page);
            leads.extend(lead_page);
            (rows, leads)
        };
        let through = rows.iter().map(|r| r.position).chain(leads.iter().map(|l| l.position)).max();
        let mut batch = Batch { through, ..Batch::default() };
        rows.retain(|r| !skip.contains(&r.key));
        leads.retain(|l| !skip.contains(&l.key));
        // Leads are the visitor's answers to the form: activity of their chat where its chatflow
        // is there (an orphan lead is passed over without a word) and the chat is of a type read.
        let lead_chats = self.lead_chats(&leads)?;
        let mut entries: Vec<Entry> =
            rows.into_iter().map(Entry::Message).chain(leads.into_iter().map(Entry::Lead)).collect();
        entries.sort_by_key(|e| e.order());
        for entry in &entries {
            batch.rows += 1;
            batch.ids.push(entry.order());
            let row = match entry {
                Entry::Lead(lead) => {
                    batch.anchor = lead_anchor(lead);
                    let id = conversation_id(&lead.flow, &lead.chat);
                    if let (Some(at), true) = (lead.at, lead_chats.contains(&id)) {
                        batch.activity.push(Activity {
                            id: lead.position,
                            conversation_id: id,
                            sent_at: at,
                            author: Author::Visitor,
                            ends: false,
                        });
                    }
                    continue;
                }
                Entry::Message(row) => row,
            };
            batch.anchor = anchor(row);
            // Another kind of chat (the builder's own tests, by default): not the owner's visitors.
            if !self.wanted(row) {
                continue;
            }
            if let Some(why) = self.bad(row) {
                if self.named.borrow_mut().insert(row.key) {
                    log::warn!("{}: {} skipped: {why}", self.name, self.shown(row));
                }
                continue;
            }
            let (used, at) = (tools(row.tools.as_deref()).unwrap_or_default(), self.at(row).unwrap_or_default());
            let bot = row.role == "apiMessage";
            batch.activity.push(Activity {
                id: row.position,
                conversation_id: conversation_id(&row.flow, &row.chat),
                sent_at: at,
                author: if bot { Author::Bot } else { Author::Visitor },
                ends: bot && self.complete.finishes(&row.flow, &row.content, &used),
            });
        }
        Ok(batch)
    }

    fn conversations(&self, ids: &[&str]) -> Result<HashMap<String, Conversation>> {
        let mut out = HashMap::new();
        for (id, chat) in self.chats(ids)? {
            let Some(flow) = parse_id(&id).map(|(f, _)| f.to_owned()) else { continue };
            let Some(bot) = self.bot(&flow)? else { continue };
            let messages = self.messages(&bot, &chat, i64::MAX);
            if messages.is_empty() {
                continue;
            }
            let conversation = self.conversation(&id, &bot, &chat, &messages);
            out.insert(id, conversation);
        }
        Ok(out)
    }

    fn transcripts(&self, wanted: &[(&str, i64)], f: &mut dyn FnMut(&str, Message)) -> Result<()> {
        let ids: Vec<&str> = wanted.iter().map(|(id, _)| *id).collect();
        let chats = self.chats(&ids)?;
        for (id, through) in wanted {
            let (Some(chat), Some((flow, _))) = (chats.get(*id), parse_id(id)) else { continue };
            let Some(bot) = self.bot(&flow.to_lowercase())? else { continue };
            self.messages(&bot, chat, *through).into_iter().for_each(|m| f(id, m));
        }
        Ok(())
    }

    fn has_last_step(&self) -> bool {
        false
    }

    fn writes_markdown(&self) -> bool {
        true
    }

    fn last_message_id(&self) -> Result<i64> {
        let context = || format!("{}: reading chat_message", self.name);
        let until = self.until.get();
        let last = self.db.one(&self.sql.last, &[self.time(until)]).with_context(context)?;
        let message = match last.and_then(|r| r[0].lossy()).as_deref().and_then(wall_time) {
            Some(wall) => self.rows_at(wall)?.iter().map(|r| r.position).max().unwrap_or(0),
            None => 0,
        };
        let last = self
            .db
            .one(&self.sql.lead_last, &[self.time(self.lead_wall(until))])
            .with_context(|| format!("{}: reading lead", self.name))?;
        let lead = match last.and_then(|r| r[0].lossy()).as_deref().and_then(wall_time) {
            Some(wall) => self.read_leads(&self.sql.leads_at, &[self.time(wall)])?.iter().map(|l| l.position).max(),
            None => None,
        };
        Ok(message.max(lead.unwrap_or(0)))
    }

    fn anchor_at(&self, id: i64) -> Result<Option<String>> {
        let rows = self.rows_at(wall_of(id))?.into_iter().map(Entry::Message);
        let entries: Vec<Entry> = rows.chain(self.leads_at(wall_of(id))?.into_iter().map(Entry::Lead)).collect();
        // The last of them in the order rows are read, (position, key): the batch's anchor.
        Ok(entries.iter().filter(|e| e.order().0 == id).max_by_key(|e| e.order()).map(|e| match e {
            Entry::Message(r) => anchor(r),
            Entry::Lead(l) => lead_anchor(l),
        }))
    }

    fn count_through(&self, id: i64) -> Result<i64> {
        let context = || format!("{}: counting chat_message", self.name);
        let wall = wall_of(id);
        let before = self.db.int(&self.sql.count, &[self.time(wall)]).with_context(context)?.unwrap_or(0);
        let leads = self
            .db
            .int(&self.sql.lead_count, &[self.time(self.lead_wall(wall))])
            .with_context(|| format!("{}: counting lead", self.name))?
            .unwrap_or(0);
        let at = self.rows_at(wall)?.iter().filter(|r| r.position <= id).count()
            + self.leads_at(wall)?.iter().filter(|l| l.position <= id).count();
        Ok(before + leads + at as i64)
    }

    fn about_how_many_conversations(&self) -> u64 {
        0
    }

    fn each_conversation(&self, through: i64, f: &mut Visit) -> Result<i64> {
        // Flows and leads first: the connection reads one query at a time.
        let flows: HashMap<String, Bot> = self
            .db
            .rows(self.sql.flows, &[])?
            .iter()
            .map(|r| (r[0].lossy().unwrap_or_default().to_lowercase(), bot_of(r)))
            .collect();
        let mut leads: HashMap<String, Vec<Lead>> = HashMap::new();
        // Leads are rows of the stream; those through `through` are read here.
        let mut read = 0;
        for lead in self.read_leads(&self.sql.all_leads, &[])? {
            read += i64::from(lead.position > 0 && lead.position <= through);
            leads.entry(conversation_id(&lead.flow, &lead.chat)).or_default().push(lead);
        }
        let param = self.time(wall_of(through));
        let mut current: Option<(String, Chat)> = None;
        let mut flush = |current: Option<(String, Chat)>| -> Result<()> {
            let Some((id, mut chat)) = current else { return Ok(()) };
            let Some(bot) = parse_id(&id).and_then(|(flow, _)| flows.get(flow)) else { return Ok(()) };
            chat.rows.sort_by_key(|r| (r.position, r.key));
            chat.leads = leads.remove(&id).unwrap_or_default();
            let messages = self.messages(bot, &chat, through);
            if messages.is_empty() {
                return Ok(());
            }
            f(&id, Some(&self.conversation(&id, bot, &chat, &messages)), &messages)
        };
        self.db
            .each(&self.sql.everything, &[param], |c| {
                let row = self.row(c);
                // The rows of the last time read past `through` are not read yet, and
                // one at a time no position holds (before 1970) is never read.
                if row.position > through || row.position == 0 {
                    return Ok(());
                }
                read += 1;
                let id = conversation_id(&row.flow, &row.chat);
                if current.as_ref().is_none_or(|(current, _)| *current != id) {
                    flush(current.take())?;
                    current = Some((id, Chat::default()));
                }
                if let Some((_, chat)) = current.as_mut() {
                    chat.rows.push(row);
                }
                Ok(())
            })
            .with_context(|| format!("{}: reading chat_message", self.name))?;
        flush(current)?;
        {
            // Chats of a lead alone (no message yet), in id order as the rest.
            let mut alone: Vec<(String, Vec<Lead>)> = leads.into_iter().collect();
            alone.sort_by(|a, b| a.0.cmp(&b.0));
            for (id, leads) in alone {
                let Some(bot) = parse_id(&id).and_then(|(flow, _)| flows.get(flow)) else { continue };
                let chat = Chat { rows: Vec::new(), leads };
                let messages = self.messages(bot, &chat, through);
                if !messages.is_empty() {
                    f(&id, Some(&self.conversation(&id, bot, &chat, &messages)), &messages)?;
                }
            }
        }
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_like_the_stored_time_and_keys_tell_rows_apart() {
        let t = |s: &str| wall_time(s).unwrap();
        let (a, b) =
            (uuid_bits("34fc9e2b-2207-409c-9902-f2aabe8ce374"), uuid_bits("dbe4e2b3-29a5-4e3f-a74d-cebee98294a4"));
        let p = |w: &str, bits: (u64, u64)| position_of(t(w), bits.1).unwrap();
        assert!(p("2026-12-07 09:12:28.345", a) < p("2026-12-07 09:12:28.346", b), "a millisecond apart");
        assert!(p("2026-12-07 09:12:28.345", b) < p("2026-12-07 09:12:28.346", a));
        assert_eq!(wall_of(p("2026-12-07 09:12:28.345", a)), t("2026-12-07 09:12:28.345"));
        assert_ne!(key_of(a.0, a.1), key_of(b.0, b.1));
        let (c, d) =
            (uuid_bits("00000000-0000-4000-8000-100000000114"), uuid_bits("00000000-0000-4000-8000-100000000308"));
        assert_ne!(key_of(c.0, c.1), key_of(d.0, d.1), "uuids alike but for their last digits");
        assert_eq!((c.1 % 1000, d.1 % 1000), (500, 0), "the tiebreaks");
        assert_eq!(t("2026-12-07T09:12:28.345+00:00"), t("2026-12-07 09:12:28.345"), "as PostgreSQL's arrive");
        assert_eq!(t("2026-12-07 09:12:16"), t("2026-12-07T09:12:16.000Z"));
        assert!(wall_time("yesterday").is_none());
        assert!(canonical_uuid("7f0c2e1a-5b7d-4c1e-9a3f-2d6b8e4f1a01"));
        assert!(
            !canonical_uuid("7f0c2e1a5b7d4c1e9a3f2d6b8e4f1a01")
                && !canonical_uuid("7f0c2e1a-5b7d-4c1e-9a3f-2d6b8e4f1a0g")
        );
        assert_eq!(wall_text(t("2026-12-07 09:13:20")), "2026-12-07 09:13:20.000000");
    }

    #[test]
    fn zones_turn_wall_times_into_instants() {
        let w = wall_time("2026-12-07 10:11:21.298").unwrap();
        assert_eq!(in_zone(chrono_tz::Europe::Berlin, w).to_rfc3339(), "2026-12-07T09:11:21.298+00:00");
        let fall_back = wall_time("2026-10-25 02:30:00").unwrap();
        assert_eq!(in_zone(chrono_tz::Europe::Berlin, fall_back).to_rfc3339(), "2026-10-25T00:30:00+00:00");
        let skipped = wall_time("2026-03-29 02:30:00").unwrap();
        assert_eq!(in_zone(chrono_tz::Europe::Berlin, skipped).to_rfc3339(), "2026-03-29T01:30:00+00:00");
    }

    #[test]
    fn used_tools_and_phrases_finish_a_chat() {
        assert_eq!(
            tools(Some(r#"[{"tool":"order_lookup","toolInput":{},"toolOutput":"{}"}]"#)).unwrap(),
            ["order_lookup"]
        );
        assert_eq!(tools(None).unwrap(), Vec::<String>::new());
        assert!(tools(Some("[{")).unwrap_err().starts_with("usedTools is not JSON"));
        assert_eq!(tools(Some("{}")).unwrap_err(), "usedTools is not a list");
        let c = Completion {
            tools: vec!["book_call".into()],
            phrases: vec!["Thanks for your ORDER".into()],
            bots: HashMap::from([("b2".to_owned(), (Some(vec!["order_lookup".into()]), None))]),
        };
        assert!(c.finishes("b1", "ok", &["book_call".into()]));
        assert!(c.finishes("b1", "thanks for your order!", &[]));
        assert!(!c.finishes("b1", "ok", &["order_lookup".into()]));
        assert!(c.finishes("B2", "ok", &["order_lookup".into()]), "the bot's list replaces the source's");
        assert!(!c.finishes("b2", "ok", &["book_call".into()]));
        assert!(c.finishes("b2", "Thanks for your order", &[]), "phrases still the source's");
    }

    fn flowise(tools: &[&str]) -> Flowise {
        Flowise {
            db: Db::sqlite(Path::new(":memory:")).unwrap(),
            sql: sqlite_sql(),
            name: "flowise test".into(),
            chat_types: vec!["EXTERNAL".into()],
            complete: Completion {
                tools: tools.iter().map(|t| (*t).to_owned()).collect(),
                phrases: vec![],
                bots: HashMap::new(),
            },
            message_zone: Tz::UTC,
            lead_zone: Tz::UTC,
            window: 0,
            late: TimeDelta::zero(),
            until: Slot::new(last_ordered()),
            named: RefCell::default(),
            bots: RefCell::default(),
        }
    }

    fn row(position: i64, role: &str, at: &str, content: &str) -> Row {
        Row {
            position,
            key: position,
            rowid: position,
            uuid: format!("u{position}"),
            role: role.into(),
            flow: "f".into(),
            chat: "c".into(),
            chat_type: "EXTERNAL".into(),
            wall: wall_time(at),
            raw_time: at.into(),
            content: content.into(),
            tools: None,
            lead_email: None,
            flow_exists: true,
        }
    }

    #[test]
    fn a_chat_reads_as_lead_form_fields_and_numbered_turns() {
        // Leads at their own positions, among the rows': (2, 0) before the first, (4, 5) between
        // rows 4 and 5.
        let lead = |(position, key): (i64, i64), at: &str, name: &str, email: &str, phone: &str| Lead {
            uuid: "l".into(),
            position,
            key,
            wall: wall_time(at),
            flow: "f".into(),
            chat: "c".into(),
            name: Some(name.into()),
            email: Some(email.into()),
            phone: Some(phone.into()),
            at: wall_time(at).map(|w| w.and_utc()),
        };
        let chat = Chat {
            rows: vec![
                Row {
                    lead_email: Some("jane@example.com".into()),
                    ..row(3, "userMessage", "2026-12-07 09:12:28", "Price?")
                },
                row(4, "apiMessage", "2026-12-07 09:12:35", "$29"),
                row(5, "userMessage", "2026-12-07 09:13:20", "Yearly?"),
                Row {
                    tools: Some(r#"[{"tool":"book_call"}]"#.into()),
                    ..row(6, "apiMessage", "2026-12-07 09:13:26", "Booked.")
                },
                Row { chat_type: "INTERNAL".into(), ..row(7, "userMessage", "2026-12-07 09:14:00", "not this") },
                Row { role: "tool".into(), ..row(8, "userMessage", "2026-12-07 09:14:01", "nor this") },
            ],
            leads: vec![
                lead((2, 0), "2026-12-07 09:12:16", "Jane Doe", "jane@example.com", ""),
                lead((4, 5), "2026-12-07 09:13:00", "", "", "+1 555 0100"),
            ],
        };
        let bot = Bot { name: "Lead Bot".into(), lead_form: Some("Where can we reach you?".into()) };
        let m = flowise(&["book_call"]).messages(&bot, &chat, i64::MAX);
        type Line<'a> = (i64, Author, Option<&'a str>, Option<&'a str>, &'a str);
        let shown: Vec<Line> =
            m.iter().map(|m| (m.id, m.author, m.gambit_id.as_deref(), m.field.as_deref(), m.body.as_str())).collect();
        assert_eq!(
            shown,
            [
                (2, Author::Bot, Some(LEAD_FORM), None, "Where can we reach you?"),
                (2, Author::Visitor, None, Some("name"), "Jane Doe"),
                (2, Author::Visitor, None, Some("email"), "jane@example.com"),
                (3, Author::Field, None, Some("email"), "jane@example.com"),
                (3, Author::Visitor, None, None, "Price?"),
                (4, Author::Bot, Some("message 1"), None, "$29"),
                (4, Author::Visitor, None, Some("phone"), "+1 555 0100"),
                (5, Author::Visitor, None, None, "Yearly?"),
                (6, Author::Bot, Some("message 2"), None, "Booked."),
            ]
        );
        assert_eq!(m[0].sent_at, wall_time("2026-12-07 09:12:16").unwrap().and_utc(), "the form: at the lead's time");
        assert!(m[8].ends_flow() && !m[5].ends_flow(), "book_call finishes it");
        let through = flowise(&[]).messages(&bot, &chat, 4);
        assert_eq!(through.last().map(|m| m.id), Some(4), "up to the message asked for");
        assert_eq!(through.last().map(|m| m.body.as_str()), Some("+1 555 0100"), "a lead is a row at its position");
        let alone = Chat { rows: Vec::new(), leads: chat.leads.clone() };
        let m = flowise(&[]).messages(&bot, &alone, 3);
        let shown: Vec<(i64, Author, &str)> = m.iter().map(|m| (m.id, m.author, m.body.as_str())).collect();
        assert_eq!(
            shown,
            [
                (2, Author::Bot, "Where can we reach you?"),
                (2, Author::Visitor, "Jane Doe"),
                (2, Author::Visitor, "jane@example.com")
            ],
            "a lead with no message yet: the form and what it took"
        );
        assert!(!through.iter().any(Message::ends_flow));
        let plain = Bot { lead_form: None, ..bot };
        let m = flowise(&[]).messages(&plain, &chat, i64::MAX);
        assert_eq!((m[0].author, m[4].gambit_id.as_deref()), (Author::Visitor, Some("message 1")), "no form");
    }

    #[test]
    fn the_lead_form_is_on_where_the_chatflow_says() {
        let row = |config: Option<&str>| {
            vec![
                Cell::Text(b"f".to_vec()),
                Cell::Text(b"Lead Bot".to_vec()),
                config.map_or(Cell::Null, |c| Cell::Text(c.into())),
            ]
        };
        assert_eq!(
            bot_of(&row(Some(r#"{"leads":{"status":true,"title":"Reach you?"}}"#))).lead_form.as_deref(),
            Some("Reach you?")
        );
        assert_eq!(bot_of(&row(Some(r#"{"leads":{"status":true}}"#))).lead_form.as_deref(), Some(DEFAULT_LEAD_TITLE));
        assert_eq!(bot_of(&row(Some(r#"{"leads":{"status":false,"title":"x"}}"#))).lead_form, None);
        assert_eq!(bot_of(&row(Some("{not json"))).lead_form, None);
        assert_eq!(bot_of(&row(None)).name, "Lead Bot");
    }
}
