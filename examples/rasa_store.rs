//! Writes a Rasa SQL tracker store (SQLite, as Rasa's default `rasa.db`) with the events a real
//! lead-form bot writes, in two steps as a day of chats goes by: the demo of
//! `examples/demo-rasa.sh`, from the same writer the tests use (`tests/support/rasa.rs`).
//!
//!     cargo run --example rasa_store -- target/demo-rasa/rasa.db morning
//!     cargo run --example rasa_store -- target/demo-rasa/rasa.db later

#[path = "../tests/support/rasa.rs"]
mod rasa;

use anyhow::{Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path, step] = args.as_slice() else { bail!("usage: rasa_store STORE.db morning|later") };
    let path = std::path::Path::new(path);
    match step.as_str() {
        "morning" => {
            let _ = std::fs::remove_file(path);
            let store = rasa::RasaStore::create(path);
            // Jane gives her name and email, and leaves at the phone question.
            store.lead_who_leaves("web-4a1c9e", "Jane Doe", "jane@example.com", 0);
            // Sam answers everything at once.
            store.lead_who_leaves("web-77bd02", "Sam Lee", "sam@example.com", 5);
            store.finishes("web-77bd02", "+1 555 0199", "2026-11-24T09:06:00Z");
        }
        "later" => {
            let store = rasa::RasaStore { store: rasa::Store::Sqlite(rusqlite::Connection::open(path)?) };
            // Jane is back within Rasa's session (60 minutes) and finishes.
            store.finishes("web-4a1c9e", "+1 555 0100", "2026-11-24T09:50:00Z");
        }
        other => bail!("unknown step {other:?}: morning or later"),
    }
    Ok(())
}
