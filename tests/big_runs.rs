//! A first run over a big store (issue 27): its reading is one transaction and its decisions
//! are written in transactions of many pages, the hourly count of the store is taken with it,
//! and a run that wrote much leaves no WAL behind. Through the built binary, on exports of more
//! than 100,000 messages (the size from which a run reads in one transaction), with random ids.

mod support;

use std::path::Path;
use std::time::Duration;

use support::{Fixture, SmtpServer, assert_each_once};

const NOW: &str = "2026-11-25T00:00:00Z";

/// `n` conversations with UUID-like ids, each of 9 messages: the first `due` of them ended an
/// hour before NOW (each due an email), the others two days before (history, covered without an
/// email on a first run). Their messages are interleaved in time, as a runtime writes them.
fn big_export(f: &Fixture, n: u32, due: u32) {
    f.sql(&format!(
        "WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i < {n} - 1)
         INSERT INTO conversations SELECT
           lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4' || substr(lower(hex(randomblob(2))), 2)
             || '-a' || substr(lower(hex(randomblob(2))), 2) || '-' || printf('%012x', i),
           'lead', 'visitor-' || i, '2026-11-22T00:00:00Z', NULL FROM k;
         CREATE TEMP TABLE ids AS SELECT rowid - 1 AS i, id FROM conversations;
         WITH RECURSIVE step(s) AS (SELECT 0 UNION ALL SELECT s + 1 FROM step WHERE s < 8)
         INSERT INTO messages (conversation_id, sent_at, sender, gambit_id, input_type, field, body)
         SELECT id,
           strftime('%Y-%m-%dT%H:%M:%SZ', CASE WHEN i < {due} THEN '2026-11-24T23:00:00Z' ELSE '2026-11-23T00:00:00Z' END,
             printf('-%d seconds', (8 - s) * 60 + (i % 50))),
           CASE s % 2 WHEN 0 THEN 'bot' ELSE 'visitor' END,
           CASE s WHEN 8 THEN 'done' WHEN 1 THEN 'ask_name' ELSE 'chat' END,
           CASE s WHEN 8 THEN 'end_conversation' ELSE 'text' END,
           CASE s WHEN 1 THEN 'name' END,
           CASE s WHEN 1 THEN 'Visitor ' || i WHEN 8 THEN 'Thanks!' ELSE 'message ' || s || ' of ' || i END
         FROM step CROSS JOIN ids ORDER BY s, i;"
    ));
}

/// Runs started and SIGKILLed after each delay (those still running then); returns how many
/// were killed, asserting that some were.
fn killed_runs(f: &Fixture, delays_ms: &[u64]) -> usize {
    let mut kills = 0;
    for &delay_ms in delays_ms {
        let mut child = f.spawn(&["run", "--now", NOW]);
        std::thread::sleep(Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
    }
    assert!(kills > 0, "the runs were killed mid-way");
    kills
}

fn wal(state: &Path) -> u64 {
    let mut path = state.as_os_str().to_owned();
    path.push("-wal");
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

#[test]
fn killed_at_any_moment_of_a_big_first_run_nothing_is_lost_or_sent_twice() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    // Every email on its own (the flood guard is tested in tests/inbox.rs).
    f.mail_setting("burst = 1000");
    let due = 200;
    big_export(&f, 12_000, due);
    let kills = killed_runs(&f, &[50, 200, 500, 1000, 2000, 3500]);
    f.run_at(NOW, &[], 0);
    // Each due conversation emailed once (the one in flight at a kill may go twice, with its
    // Message-ID), the history none.
    assert_each_once(&server, due as usize, kills, "");
    let rows = f.state_rows("SELECT count(*), sum(covered_through = last_message), sum(emails) FROM conversations");
    assert_eq!(
        rows,
        [["Integer(12000)".to_owned(), "Integer(12000)".to_owned(), format!("Integer({due})")]],
        "every conversation covered, one email each"
    );
}

/// The same with the flood guard at work: the emails over the burst are decided with their
/// heads alone and listed in the summary, in the transaction that decides them. Killed at any
/// moment, the owner still gets exactly `burst` emails and one summary listing the rest.
#[test]
fn killed_at_any_moment_of_a_big_flood_guarded_first_run_each_chat_is_emailed_or_listed_once() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.mail_setting("burst = 20");
    let due = 200;
    big_export(&f, 12_000, due);
    killed_runs(&f, &[50, 300, 800, 1500, 2500, 4000]);
    f.run_at(NOW, &[], 0);
    let mut mails = support::mails(&server);
    mails.sort_by(|a, b| a.message_id.cmp(&b.message_id));
    mails.dedup_by(|a, b| a.message_id == b.message_id); // the one in flight at a kill
    let (summaries, chats): (Vec<_>, Vec<_>) =
        mails.iter().partition(|m| m.header("X-Chat-State").as_deref() == Some("digest"));
    assert_eq!(chats.len(), 20, "the burst, one by one");
    assert!(chats.iter().all(|m| m.text.contains("Thanks!")), "each a whole email");
    assert_eq!(summaries.len(), 1, "one summary");
    let listed: Vec<&str> = summaries[0].text.lines().filter_map(|l| l.strip_prefix("- ")).collect();
    let mut each: Vec<&str> = listed.iter().map(|s| support::identifier(s)).collect();
    each.extend(chats.iter().map(|m| support::identifier(&m.subject)));
    each.sort_unstable();
    each.dedup();
    assert_eq!(each.len(), due as usize, "every due chat emailed or listed, none both");
    let rows = f.state_rows("SELECT status, count(*) FROM outbox GROUP BY status ORDER BY status");
    let expected = [("sent", 21), ("summarised", due as i64 - 20)];
    let expected: Vec<Vec<String>> =
        expected.iter().map(|(s, n)| vec![format!("Text({s:?})"), format!("Integer({n})")]).collect();
    assert_eq!(rows, expected, "nothing left pending or parked");
}

#[test]
fn a_big_first_run_takes_the_hourly_count_with_it() {
    let f = Fixture::new(0);
    f.set_transport(&format!("kind = \"folder\"\npath = {:?}", f.dir.path().join("out")));
    big_export(&f, 12_000, 10);
    f.run_at(NOW, &[], 0);
    // It read every row below the watermark, and counted them as it read: the next count of the
    // store is an hour later, not the next run's (at a million chats, a second's pass).
    let rows = f.state_rows("SELECT audited_at, read_count, watermark FROM progress");
    let now_ms = chrono::DateTime::parse_from_rfc3339(NOW).unwrap().timestamp_millis();
    assert_eq!(rows, [[format!("Integer({now_ms})"), "Integer(108000)".to_owned(), "Integer(108000)".to_owned()]]);
}

#[test]
fn a_run_that_wrote_much_leaves_no_wal_behind_even_beside_a_reader() {
    let f = Fixture::new(0);
    f.set_transport(&format!("kind = \"folder\"\npath = {:?}", f.dir.path().join("out")));
    f.mail_setting("burst = 100000");
    f.run_at("2026-11-20T00:00:00Z", &[], 0);
    // A reader that has the state open (status, a monitoring script): SQLite's own cleanup at
    // close, which checkpoints and deletes the WAL, then leaves it in place, whole.
    let reader = rusqlite::Connection::open(&f.state).unwrap();
    let _: i64 = reader.query_row("SELECT count(*) FROM conversations", [], |r| r.get(0)).unwrap();
    // Not a first run: every one of these ended chats is emailed, about 8 MB of emails queued.
    big_export(&f, 1_000, 1_000);
    f.run_at(NOW, &[], 0);
    assert_eq!(std::fs::read_dir(f.dir.path().join("out")).unwrap().count(), 1_000);
    assert_eq!(wal(&f.state), 0, "the WAL this run wrote was moved into the state file and truncated");
    drop(reader);
}
