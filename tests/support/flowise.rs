//! Flowise databases for the tests: the fixtures Flowise 3.1.4 wrote (`tests/fixtures/flowise`,
//! its README says how), loaded into a SQLite file or a new database on the test cluster, and
//! further rows written as Flowise writes them: the columns `utilAddChatMessage` sets (the
//! visitor's `userMessage` stamped when the request started but inserted after the answer,
//! `sessionId` = `chatId`, `memoryType`), times in the fixtures' formats (SQLite: UTC text with
//! 3 fraction digits; PostgreSQL: the Flowise process's wall time, UTC here).
#![allow(dead_code)]

use std::path::Path;

use super::{Fixture, pg};

pub const LEAD_BOT: &str = "7f0c2e1a-5b7d-4c1e-9a3f-2d6b8e4f1a01";
pub const SUPPORT_BOT: &str = "7f0c2e1a-5b7d-4c1e-9a3f-2d6b8e4f1a02";
pub const OLD_BOT: &str = "7f0c2e1a-5b7d-4c1e-9a3f-2d6b8e4f1a03";
pub const JANE: &str = "c0a80001-1111-4a11-8a11-000000000001";
pub const JANE_AGAIN: &str = "c0a80001-2222-4a22-8a22-000000000002";
pub const ORDER: &str = "c0a80001-3333-4a33-8a33-000000000003";
pub const INTERNAL: &str = "c0a80001-4444-4a44-8a44-000000000004";
pub const ORPHAN_LEAD: &str = "c0a80001-5555-4a55-8a55-000000000005";
pub const GONE: &str = "c0a80001-6666-4a66-8a66-000000000006";
/// The lead form's title in Lead Bot's `chatbotConfig`.
pub const LEAD_TITLE: &str = "Let us know where we can reach you:";

/// The conversation id chat-notifier gives a chat: `{chatflowid}/{chatId}`.
pub fn conversation(bot: &str, chat: &str) -> String {
    format!("{bot}/{chat}")
}

fn fixture_sql(file: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/flowise").join(file)).unwrap()
}

/// A message row as `utilAddChatMessage` inserts it.
pub struct Msg<'a> {
    pub id: &'a str,
    pub role: &'a str,
    pub bot: &'a str,
    pub chat: &'a str,
    pub content: &'a str,
    /// `YYYY-MM-DD HH:MM:SS.SSS`, as the dialect stores it.
    pub at: &'a str,
    pub chat_type: &'a str,
    pub used_tools: Option<&'a str>,
    pub lead_email: Option<&'a str>,
}

impl<'a> Msg<'a> {
    pub fn visitor(id: &'a str, bot: &'a str, chat: &'a str, at: &'a str, content: &'a str) -> Self {
        Msg {
            id,
            role: "userMessage",
            bot,
            chat,
            content,
            at,
            chat_type: "EXTERNAL",
            used_tools: None,
            lead_email: None,
        }
    }

    pub fn bot(id: &'a str, bot: &'a str, chat: &'a str, at: &'a str, content: &'a str) -> Self {
        Msg { role: "apiMessage", ..Msg::visitor(id, bot, chat, at, content) }
    }

    fn values(&self) -> String {
        let q = |s: &str| format!("'{}'", s.replace('\'', "''"));
        let opt = |s: Option<&str>| s.map_or("NULL".to_owned(), q);
        format!(
            "({}, {}, {}, {}, {}, {}, {}, 'Buffer Memory', {}, {}, {})",
            q(self.id),
            q(self.role),
            q(self.bot),
            q(self.content),
            q(self.at),
            q(self.chat_type),
            q(self.chat),
            q(self.chat),
            opt(self.used_tools),
            opt(self.lead_email)
        )
    }

    pub fn insert_sql(&self) -> String {
        format!(
            r#"INSERT INTO chat_message (id, role, chatflowid, content, "createdDate", "chatType", "chatId", "memoryType",
               "sessionId", "usedTools", "leadEmail") VALUES {};"#,
            self.values()
        )
    }
}

/// A fixture whose source is Flowise's SQLite file (`database.sqlite`, from `sqlite.sql`);
/// `extra` goes into the `[source]` table.
pub fn sqlite(port: u16, extra: &str) -> Fixture {
    let f = Fixture::new(port);
    // As Python's sqlite3 loads the dump (the README): its tables are created in name order, so
    // a foreign key names a table created further on.
    f.sql_on(
        &f.dir.path().join("database.sqlite"),
        &format!("PRAGMA foreign_keys = OFF;\n{}", fixture_sql("sqlite.sql")),
    );
    f.use_source(&format!("kind = \"flowise\"\nurl = \"database.sqlite\"\n{extra}"));
    f
}

/// Runs SQL on a SQLite fixture's Flowise file, as Flowise's server would.
pub fn sqlite_write(f: &Fixture, sql: &str) {
    f.sql_on(&f.dir.path().join("database.sqlite"), sql);
}

/// A Flowise database on the test cluster, loaded from `postgres.sql`; a fixture reading it.
/// None where no PostgreSQL server runs.
pub fn postgres(port: u16, extra: &str) -> Option<(Fixture, postgres::Client, String)> {
    let cluster = pg::cluster()?;
    let url = cluster.database();
    // psql's meta-commands (\restrict) are no SQL.
    let sql: String =
        fixture_sql("postgres.sql").lines().filter(|l| !l.starts_with('\\')).map(|l| format!("{l}\n")).collect();
    cluster.client(&url).batch_execute(&sql).unwrap();
    // The dump empties the loading session's search_path: a new connection for the rest.
    let client = cluster.client(&url);
    let f = Fixture::new(port);
    f.use_source(&format!("kind = \"flowise\"\nurl = \"{url}\"\n{extra}"));
    Some((f, client, url))
}

/// A lead as `services/leads` `createLead` saves it: only `chatflowid`, `name`, `email`,
/// `phone`, `chatId` given (the widget posts `''` for a field its form does not ask), the id a
/// uuid and `createdDate` the database's default: given here, at the time that default would
/// have stamped (the database's `TimeZone`; SQLite: UTC, no fraction), so the tests' clock is
/// fixed.
pub struct NewLead<'a> {
    pub id: &'a str,
    pub bot: &'a str,
    pub chat: &'a str,
    pub name: &'a str,
    pub email: &'a str,
    pub phone: &'a str,
    pub at: &'a str,
}

impl NewLead<'_> {
    pub fn insert_sql(&self) -> String {
        let q = |s: &str| format!("'{}'", s.replace('\'', "''"));
        format!(
            r#"INSERT INTO lead (id, chatflowid, name, email, phone, "chatId", "createdDate") VALUES ({}, {}, {}, {}, {}, {}, {});"#,
            q(self.id),
            q(self.bot),
            q(self.name),
            q(self.email),
            q(self.phone),
            q(self.chat),
            q(self.at)
        )
    }
}
