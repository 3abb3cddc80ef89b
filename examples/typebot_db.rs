//! Writes a Typebot database (PostgreSQL) the way Typebot writes one: its tables, a published
//! lead flow and results answer by answer, in two steps as a day of chats goes by: the demo of
//! `examples/demo-typebot.sh`, from the same writer the tests use (`tests/support/typebot.rs`).
//!
//!     cargo run --example typebot_db -- postgresql://postgres@127.0.0.1:5545/typebot morning
//!     cargo run --example typebot_db -- postgresql://postgres@127.0.0.1:5545/typebot later

#[path = "../tests/support/typebot.rs"]
mod typebot;

use anyhow::{Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, step] = args.as_slice() else { bail!("usage: typebot_db POSTGRESQL-URL morning|later") };
    let client = postgres::Client::connect(url, postgres::NoTls)?;
    match step.as_str() {
        "morning" => {
            let mut db = typebot::TypebotDb::create(client);
            // Jane gives her name and email, and leaves at the phone question.
            db.lead_who_leaves("clx4jane000000000000000a", "Jane Doe", "jane@example.com", 0);
            // Sam answers everything at once; the flow ends and Typebot flips isCompleted.
            db.lead_who_leaves("clx4sam0000000000000000b", "Sam Lee", "sam@example.com", 5);
            db.finishes("clx4sam0000000000000000b", "+15550199", "2026-11-24T09:06:00Z");
        }
        "later" => {
            let mut db = typebot::TypebotDb { client };
            // Jane comes back to the same result (Typebot remembers the visitor) and finishes.
            db.finishes("clx4jane000000000000000a", "+15550100", "2026-11-24T09:50:00Z");
        }
        other => bail!("unknown step {other:?}: morning or later"),
    }
    Ok(())
}
