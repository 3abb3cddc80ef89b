//! Writes a Dify database (PostgreSQL) the way Dify's API writes one: its tables, a chat app,
//! web-app chats exchange by exchange (the row with an empty answer when the visitor sends, the
//! answer when the reply ends), in three steps as a morning goes by: the demo of
//! `examples/demo-dify.sh`, from the same writer the tests use (`tests/support/dify.rs`).
//!
//!     cargo run --example dify_db -- postgresql://postgres@127.0.0.1:5546/dify morning
//!     cargo run --example dify_db -- postgresql://postgres@127.0.0.1:5546/dify answered
//!     cargo run --example dify_db -- postgresql://postgres@127.0.0.1:5546/dify back

#[path = "../tests/support/dify.rs"]
mod dify;

use anyhow::{Result, bail};
use dify::{Ask, CHAT_APP, DifyDb};

const JANE: &str = "c0000000-0000-4000-8000-00000000000a";
const SAM: &str = "c0000000-0000-4000-8000-00000000000b";
const JANE_USER: &str = "e0000000-0000-4000-8000-00000000000a";
const SAM_USER: &str = "e0000000-0000-4000-8000-00000000000b";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, step] = args.as_slice() else { bail!("usage: dify_db POSTGRESQL-URL morning|answered|back") };
    let client = postgres::Client::connect(url, postgres::NoTls)?;
    match step.as_str() {
        "morning" => {
            let mut db = DifyDb::create(client);
            db.end_user(JANE_USER, CHAT_APP, "b7c1f0e2-jane-browser", None);
            db.end_user(SAM_USER, CHAT_APP, "4d2a9c31-sam-browser", None);
            // Jane fills the start form and asks; the reply streams and is saved at its end.
            let inputs = r#"{"work_email": "jane@example.com", "company": "Acme", "team_size": 20}"#;
            db.ask(&Ask {
                inputs,
                ..Ask::web(
                    "d0000000-0000-4000-8000-0000000000a1",
                    JANE,
                    JANE_USER,
                    "2026-11-24 09:00:00",
                    "Do you have a plan for a team of 20?",
                )
            });
            db.answer(
                "d0000000-0000-4000-8000-0000000000a1",
                "2026-11-24 09:00:06",
                "Yes, **Team**:\n\n| Plan | Seats | Price |\n|---|---|---|\n| Team | up to 25 | $99/mo |",
            );
            db.rename(JANE, "2026-11-24 09:00:08", "Team plan for 20");
            // Her second question: the reply is still being written.
            db.ask(&Ask::web(
                "d0000000-0000-4000-8000-0000000000a2",
                JANE,
                JANE_USER,
                "2026-11-24 09:01:00",
                "Can we pay yearly?",
            ));
            // Sam asks and closes the tab: the answer is never written.
            db.ask(&Ask::web(
                "d0000000-0000-4000-8000-0000000000b1",
                SAM,
                SAM_USER,
                "2026-11-24 09:02:00",
                "Are you open on Sundays?",
            ));
        }
        "answered" => {
            let mut db = DifyDb { client };
            db.answer("d0000000-0000-4000-8000-0000000000a2", "2026-11-24 09:06:00", "Yes: yearly billing saves 20%.");
        }
        "back" => {
            let mut db = DifyDb { client };
            db.ask(&Ask::web(
                "d0000000-0000-4000-8000-0000000000a3",
                JANE,
                JANE_USER,
                "2026-11-24 10:00:00",
                "Great, how do we start?",
            ));
            db.answer("d0000000-0000-4000-8000-0000000000a3", "2026-11-24 10:00:05", "Sign up at example.com/team.");
        }
        other => bail!("unknown step {other:?}: morning, answered or back"),
    }
    Ok(())
}
