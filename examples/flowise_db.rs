//! Writes a Flowise database (SQLite, as Flowise's default `~/.flowise/database.sqlite`) with
//! the rows Flowise writes for a chat on its embedded widget, in two steps a day apart: the demo
//! of `examples/demo-flowise.sh`. The tables are Flowise 3.1.4's own (its migrations made them:
//! `tests/fixtures/flowise/sqlite.sql`, whose two chatflows, Lead Bot and Support Bot, the demo
//! keeps); the rows have the columns and formats Flowise's `utilAddChatMessage` and the lead
//! service write (`tests/fixtures/flowise/README.md`): messages stamped in UTC with milliseconds,
//! the lead by the database's `datetime('now')`.
//!
//!     cargo run --example flowise_db -- target/demo-flowise/database.sqlite day1
//!     cargo run --example flowise_db -- target/demo-flowise/database.sqlite day2

use anyhow::{Context, Result, bail};
use rusqlite::{Connection, params};

const LEAD_BOT: &str = "7f0c2e1a-5b7d-4c1e-9a3f-2d6b8e4f1a01";
/// Jane's chat: the widget keeps its id in the browser (`<chatflowid>_EXTERNAL` in
/// localStorage), so her return the next day is the same chat.
const JANE: &str = "5b1e9a02-8c1d-4f0e-a3b7-6d2c9e4f7a10";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path, step] = args.as_slice() else { bail!("usage: flowise_db DATABASE.sqlite day1|day2") };
    match step.as_str() {
        "day1" => {
            let _ = std::fs::remove_file(path);
            let db = Connection::open(path)?;
            let schema = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/flowise/sqlite.sql"))
                .context("the Flowise schema")?;
            // Flowise turns SQLite's foreign keys on; the dump creates its tables in name order.
            db.execute_batch("PRAGMA foreign_keys = OFF")?;
            db.execute_batch(&schema)?;
            // A fresh install's chats: none of the fixture's, only its chatflows.
            db.execute_batch("DELETE FROM chat_message; DELETE FROM lead;")?;
            // Jane opens the widget on the pricing page: the lead form first, then her questions.
            db.execute(
                "INSERT INTO lead (id, chatflowid, \"chatId\", name, email, phone, \"createdDate\")
                 VALUES ('0e6f3b52-7d0a-4c4e-9b7e-3f1a2c5d8e01', ?1, ?2, 'Jane Doe', 'jane@example.com', '', '2026-12-07 10:02:10')",
                params![LEAD_BOT, JANE],
            )?;
            turn(
                &db,
                1,
                "2026-12-07 10:02:31.204",
                "How much does the Pro plan cost?",
                "2026-12-07 10:02:38.950",
                "Here are our plans:\n\n| Plan | Price | Seats |\n|---|---|---|\n| Starter | $9/month | 1 |\n| **Pro** | $29/month | 5 |\n\nPro includes **priority support** and [SSO](https://example.com/sso).",
            )?;
            turn(
                &db,
                2,
                "2026-12-07 10:03:40.117",
                "Is there a discount if I pay yearly?",
                "2026-12-07 10:03:46.532",
                "Yes: paying **yearly** saves 20%, so Pro is `$278.40/year`.\n\n> The discount applies from the first invoice.",
            )?;
        }
        "day2" => {
            let db = Connection::open(path)?;
            turn(
                &db,
                3,
                "2026-12-08 09:15:02.480",
                "Hi again! Can I start the Pro trial today?",
                "2026-12-08 09:15:09.013",
                "Of course:\n\n1. Click **Start trial** on the pricing page\n2. Sign in with jane@example.com\n3. Invite your team",
            )?;
        }
        other => bail!("unknown step {other:?}: day1 or day2"),
    }
    Ok(())
}

/// One exchange as Flowise writes it after the model answered: the visitor's `userMessage`,
/// stamped when she asked and carrying the lead's email, then the bot's `apiMessage`.
fn turn(db: &Connection, n: u32, asked: &str, question: &str, answered: &str, answer: &str) -> Result<()> {
    let mut insert = db.prepare(
        "INSERT INTO chat_message (id, role, chatflowid, content, \"createdDate\", \"chatType\", \"chatId\", \"memoryType\", \"sessionId\", \"leadEmail\")
         VALUES (?1, ?2, ?3, ?4, ?5, 'EXTERNAL', ?6, 'Buffer Memory', ?6, ?7)",
    )?;
    let id = |kind: char| format!("9d4c7e21-0b3a-4f5e-8c6d-1a2b3c4d5{kind}{n:02}");
    insert.execute(params![id('e'), "userMessage", LEAD_BOT, question, asked, JANE, "jane@example.com"])?;
    insert.execute(params![id('f'), "apiMessage", LEAD_BOT, answer, answered, JANE, None::<&str>])?;
    Ok(())
}
