//! The Guarantees hold for every source: the same crash and overlap faults, injected for real
//! through the built binary, on the export and Rasa's tracker store, each on SQLite and on
//! PostgreSQL, and on Typebot's database.

mod support;

use std::time::{Duration, Instant};

use support::pg::{EXPORT_SCHEMA, PgExport};
use support::rasa::RasaStore;
use support::typebot::TypebotDb;
use support::{Behavior, Fixture, Mail, SmtpServer, assert_each_once, mails, pg};

const NOW: &str = "2026-11-25T00:00:00Z";

/// Somewhere leads are written, as each runtime writes them.
enum Writer {
    Export,
    Rasa(RasaStore),
    PgExport(std::cell::RefCell<PgExport>),
    Typebot(std::cell::RefCell<TypebotDb>),
}

impl Writer {
    fn lead_who_leaves(&self, f: &Fixture, id: &str, name: &str, minute: u32) {
        let email = format!("{id}@example.com");
        match self {
            Writer::Export => f.lead_who_leaves(id, name, &email, minute),
            Writer::Rasa(rasa) => rasa.lead_who_leaves(id, name, &email, minute),
            Writer::PgExport(db) => db.borrow_mut().lead_who_leaves(id, name, &email, minute),
            Writer::Typebot(db) => db.borrow_mut().lead_who_leaves(id, name, &email, minute),
        }
    }
}

/// Each source the product reads, as a fixture sending to `port`; PostgreSQL ones only where a
/// server can be started (always under CI).
fn every_source(port: u16) -> Vec<(&'static str, Fixture, Writer)> {
    let mut all = vec![("export on SQLite", Fixture::new(port), Writer::Export)];
    let (f, rasa) = Fixture::rasa(port, "");
    all.push(("Rasa on SQLite", f, Writer::Rasa(rasa)));
    if let Some(cluster) = pg::cluster() {
        let url = cluster.database();
        let mut client = cluster.client(&url);
        client.batch_execute(EXPORT_SCHEMA).unwrap();
        let f = Fixture::new(port);
        f.use_source(&format!("kind = \"export\"\nurl = \"{url}\""));
        all.push(("export on PostgreSQL", f, Writer::PgExport(std::cell::RefCell::new(PgExport { client }))));
        let url = cluster.database();
        let rasa = RasaStore::create_postgres(cluster.client(&url));
        let f = Fixture::new(port);
        f.use_source(&format!("kind = \"rasa\"\nurl = \"{url}\"\ncomplete_on_actions = [\"action_submit_lead\"]"));
        all.push(("Rasa on PostgreSQL", f, Writer::Rasa(rasa)));
    }
    if let Some((f, db, _)) = Fixture::typebot(port, "") {
        all.push(("Typebot", f, Writer::Typebot(std::cell::RefCell::new(db))));
    }
    all
}

#[test]
fn killed_between_acceptance_and_marking_resends_only_that_email_whatever_the_source() {
    let server = SmtpServer::start();
    for (source, f, writer) in every_source(server.port()) {
        server.clear();
        for i in 0..5 {
            writer.lead_who_leaves(&f, &format!("k{i}"), &format!("Visitor {i}"), i);
        }
        server.set(Behavior::HangAfterData { accept: 2 });
        let mut child = f.spawn(&["run", "--now", NOW]);
        server.wait_for(3);
        child.kill().unwrap(); // SIGKILL, between the server taking the third and its marking
        child.wait().unwrap();
        let in_flight = Mail::read(&server.received()[2]).message_id;
        server.set(Behavior::Accept);
        f.run_at(NOW, &[], 0);
        assert_each_once(&server, 5, 1, source);
        let copies = mails(&server).iter().filter(|m| m.message_id == in_flight).count();
        assert_eq!(copies, 2, "{source}: the in-flight email, and only it, went twice");
    }
}

#[test]
fn overlapping_runs_send_each_email_once_whatever_the_source() {
    let server = SmtpServer::start();
    for (source, f, writer) in every_source(server.port()) {
        server.clear();
        for i in 0..6 {
            writer.lead_who_leaves(&f, &format!("o{i}"), &format!("Visitor {i}"), i);
        }
        server.set(Behavior::StallAfterData(Duration::from_millis(150)));
        let first = f.spawn(&["run", "--now", NOW]);
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.received().is_empty() {
            assert!(Instant::now() < deadline, "{source}: the first run never sent");
            std::thread::sleep(Duration::from_millis(10));
        }
        let others: Vec<_> = (0..2).map(|_| f.spawn(&["run", "--now", NOW])).collect();
        let codes: Vec<i32> =
            others.into_iter().map(|c| c.wait_with_output().unwrap().status.code().unwrap()).collect();
        assert_eq!(codes, [4, 4], "{source}: each overlapping run found the lock held");
        assert!(server.received().len() < 6, "{source}: they overlapped the first run's batch");
        assert_eq!(first.wait_with_output().unwrap().status.code(), Some(0), "{source}");
        server.set(Behavior::Accept);
        f.run_at(NOW, &[], 0);
        assert_each_once(&server, 6, 0, source);
    }
}
