//! Sources on a real PostgreSQL server (a throwaway cluster, `support::pg`): export schema v1
//! written there by many runtime hosts, and Rasa's tracker store. The same emails and
//! guarantees as on SQLite, plus what only a server does: ids committed out of order, a
//! connection cut mid-run, a database that is not there.

mod support;

use std::time::{Duration, Instant};

use chat_notifier::source::export_v1;
use support::pg::{EXPORT_SCHEMA, PgExport};
use support::{Fixture, SmtpServer, mails, pg};

/// A fixture reading export v1 from a new database of the test cluster.
fn export_on_postgres(server: &SmtpServer) -> Option<(Fixture, PgExport, String)> {
    let cluster = pg::cluster()?;
    let url = cluster.database();
    let mut client = cluster.client(&url);
    client.batch_execute(EXPORT_SCHEMA).unwrap();
    let f = Fixture::new(server.port());
    f.use_source(&format!("kind = \"export\"\nurl = \"{url}\""));
    Some((f, PgExport { client }, url))
}

#[test]
fn export_v1_on_postgres_gives_the_lead_path_in_one_thread() {
    let server = SmtpServer::start();
    let Some((f, mut db, _)) = export_on_postgres(&server) else { return };
    db.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    f.run_at("2026-11-24T09:10:00Z", &[], 0);
    assert!(server.received().is_empty());
    f.run_at("2026-11-24T09:31:00Z", &[], 0);
    db.message("c1", "2026-11-25T08:00:00Z", "visitor", None, None, Some("phone"), "+1 555 0100");
    db.message("c1", "2026-11-25T08:00:01Z", "bot", Some("done"), Some("end_conversation"), None, "Thanks!");
    f.run_at("2026-11-25T08:01:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 2);
    assert!(m[0].subject.starts_with("Lead Bot: chat with Jane Doe [#"), "{}", m[0].subject);
    assert_eq!(m[0].reply_to.as_deref(), Some("jane@example.com"));
    assert_eq!(m[1].subject, format!("Re: {}", m[0].subject));
    assert_eq!(m[1].in_reply_to.as_deref(), Some(m[0].message_id.as_str()));
    assert!(
        m[1].text.contains("came back and finished") && m[1].text.contains("[2026-11-25 08:00] Visitor: +1 555 0100"),
        "{}",
        m[1].text
    );
    let check = f.run(&["check"]);
    assert!(check.stdout.contains("(export schema v1 on PostgreSQL, 1 bot(s))"), "{}", check.stdout);
    let out = f.run_at("2026-11-26T08:00:00Z", &[], 0);
    assert_eq!(out.stderr, "");
    assert_eq!(server.received().len(), 2);
}

/// Sequence ids are handed out at insert and committed in any order: a run that read id N+1
/// can meet a committed N later. It must still be read, once.
#[test]
fn a_row_committed_after_a_higher_id_was_read_is_still_read_once() {
    let server = SmtpServer::start();
    let Some((f, mut db, url)) = export_on_postgres(&server) else { return };
    db.lead_who_leaves("a", "Ann", "ann@example.com", 0);
    db.lead_who_leaves("b", "Bob", "bob@example.com", 1);
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    assert_eq!(server.received().len(), 2, "both abandoned");

    // Ann finishes in a transaction that takes its id first and commits last.
    let mut slow = pg::cluster().unwrap().client(&url);
    let mut late = slow.transaction().unwrap();
    let ann_end: i64 = late
        .query_one(
            "INSERT INTO messages (conversation_id, sent_at, sender, gambit_id, input_type, field, body) \
             VALUES ('a', '2026-11-24T11:00:00Z', 'bot', 'done', 'end_conversation', NULL, 'Thanks!') RETURNING id",
            &[],
        )
        .unwrap()
        .get(0);
    let bob_back = db.message("b", "2026-11-24T11:00:01Z", "visitor", None, None, None, "hello again");
    assert!(bob_back > ann_end, "the later id is committed first");
    f.run_at("2026-11-24T11:00:30Z", &[], 0); // reads Bob's message, past Ann's uncommitted one
    late.commit().unwrap();
    f.run_at("2026-11-24T11:01:00Z", &[], 0);
    f.run_at("2026-11-24T12:00:00Z", &[], 0);
    let m = mails(&server);
    let ann: Vec<_> = m.iter().filter(|m| m.subject.contains("Ann")).collect();
    assert_eq!(ann.len(), 2, "{:?}", m.iter().map(|m| &m.subject).collect::<Vec<_>>());
    assert!(ann[1].text.contains("came back and finished"), "{}", ann[1].text);
    let bob: Vec<_> = m.iter().filter(|m| m.subject.contains("Bob")).collect();
    assert_eq!(bob.len(), 2, "Bob's resumed email, once");
    assert_eq!(m.len(), 4);
}

#[test]
fn a_connection_cut_mid_run_is_one_line_and_the_next_run_loses_nothing() {
    let server = SmtpServer::start();
    let Some((f, mut db, url)) = export_on_postgres(&server) else { return };
    db.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    let cluster = pg::cluster().unwrap();
    // Hold the messages table: the run connects, then waits on it; cut its connection there.
    let mut holder = cluster.client(&url);
    let mut lock = holder.transaction().unwrap();
    lock.batch_execute("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE").unwrap();
    let child = f.spawn(&["run", "--now", "2026-11-24T10:00:00Z"]);
    let mut admin = cluster.client(&cluster.url("postgres"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let cut = admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE wait_event_type = 'Lock' AND datname = current_database() IS NOT TRUE AND pid <> pg_backend_pid()",
                &[],
            )
            .unwrap();
        if !cut.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the run never waited on the lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let shown = url.split('?').next().unwrap();
    assert!(stderr.starts_with("chat-notifier: error: export ") && stderr.contains(shown), "{stderr}");
    assert!(stderr.contains("terminating connection") || stderr.contains("connection closed"), "{stderr}");
    lock.rollback().unwrap();
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    assert_eq!(mails(&server).len(), 1, "the email, once");
}

#[test]
fn an_unreachable_server_or_missing_database_is_one_line_without_the_password() {
    let server = SmtpServer::start();
    let Some(cluster) = pg::cluster() else { return };
    let f = Fixture::new(server.port());
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    for (url, why) in [
        (format!("postgresql://postgres@127.0.0.1:{free}/nothing?sslmode=disable&connect_timeout=2"), "onnect"),
        (cluster.url("no_such_database"), "database \"no_such_database\" does not exist"),
    ] {
        f.use_source(&format!("kind = \"export\"\nurl = \"{url}\"\npassword_env = \"PGPASS_TEST\""));
        let out = f.run_with_env(&["run", "--now", "2026-11-24T10:00:00Z"], &[("PGPASS_TEST", "hunter2")]);
        assert_eq!(out.code, 1, "{}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
        assert!(out.stderr.contains(&url) && out.stderr.contains(why), "{}", out.stderr);
        assert!(!out.stderr.contains("hunter2"));
        assert!(!f.state.exists());
    }
    f.use_source("kind = \"export\"\nurl = \"postgresql://bot:hunter2@db.example.com/bots\"");
    let out = f.run(&["check"]);
    assert_eq!(out.code, 1);
    assert!(out.stdout.contains("source.url: passwords are not read from the config file"), "{}", out.stdout);
    assert!(!out.stdout.contains("hunter2") && !out.stderr.contains("hunter2"));
}

#[test]
fn a_rasa_store_on_postgres_gives_the_lead_path_in_one_thread() {
    let server = SmtpServer::start();
    let Some(cluster) = pg::cluster() else { return };
    let url = cluster.database();
    let rasa = support::rasa::RasaStore::create_postgres(cluster.client(&url));
    let f = Fixture::new(server.port());
    f.use_source(&format!(
        "kind = \"rasa\"\nurl = \"{url}\"\nbot_name = \"Lead Bot\"\ncomplete_on_actions = [\"action_submit_lead\"]"
    ));
    rasa.lead_who_leaves("4a1c9e", "Jane Doe", "jane@example.com", 0);
    f.run_at("2026-11-24T09:35:00Z", &[], 0);
    rasa.finishes("4a1c9e", "+1 555 0100", "2026-11-24T09:50:00Z");
    f.run_at("2026-11-24T09:51:00Z", &[], 0);
    let m = mails(&server);
    assert_eq!(m.len(), 2);
    assert!(m[0].text.contains("at step utter_ask_phone"), "{}", m[0].text);
    assert_eq!(m[1].subject, format!("Re: {}", m[0].subject));
    assert!(m[1].text.contains("came back and finished"), "{}", m[1].text);
    let out = f.run_at("2026-11-25T09:00:00Z", &[], 0);
    assert_eq!(out.stderr, "");
}

/// Every query a run makes on the export is served by an index: with sequential scans
/// priced out, a plan that still scans a table has no index to use.
#[test]
fn no_query_a_run_makes_scans_the_export_on_postgres() {
    let Some(cluster) = pg::cluster() else { return };
    let url = cluster.database();
    let mut client = cluster.client(&url);
    client.batch_execute(EXPORT_SCHEMA).unwrap();
    for (_, sql, params) in export_v1::queries() {
        let plan = pg::plan(&mut client, sql, &params);
        assert!(!plan.contains("Seq Scan on messages") && !plan.contains("Seq Scan on conversations"), "{sql}\n{plan}");
        assert!(plan.contains("Index"), "{sql}\n{plan}");
    }
}

/// PostgreSQL's `timestamptz` holds what no chat happens at: `infinity`, `-infinity`, and years
/// past what chat-notifier's times can hold (up to 294276). Each such `sent_at` is a bad row like
/// any other: named once (row, table, column, value), skipped, and the rest goes out.
#[test]
fn a_sent_at_of_infinity_or_beyond_is_a_bad_row_named_once() {
    let server = SmtpServer::start();
    let Some((f, mut db, _)) = export_on_postgres(&server) else { return };
    db.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    let mut bad = Vec::new();
    for value in ["infinity", "-infinity", "294276-12-31 23:59:59.999999+00"] {
        let id: i64 = db
            .client
            .query_one(
                "INSERT INTO messages (conversation_id, sent_at, sender, body) \
                 VALUES ('c1', $1::text::timestamptz, 'visitor', 'when?') RETURNING id",
                &[&value],
            )
            .unwrap()
            .get(0);
        bad.push((id, value));
    }
    db.lead_who_leaves("c2", "Sam Lee", "sam@example.com", 1);

    let out = f.run_at("2026-11-24T10:00:00Z", &[], 0);
    let stderr = out.stderr_past_first_run();
    let warnings: Vec<&str> = stderr.lines().collect();
    for (id, value) in
        [(bad[0].0, "\"infinity\""), (bad[1].0, "\"-infinity\""), (bad[2].0, "\"+294276-12-31T23:59:59.999999+00:00\"")]
    {
        let line = format!("messages row {id} skipped: sent_at {value} is not an RFC 3339 timestamp");
        assert_eq!(
            warnings.iter().filter(|w| w.starts_with("chat-notifier: warn: export ") && w.ends_with(&line)).count(),
            1,
            "{line} in {warnings:#?}"
        );
    }
    assert_eq!(warnings.len(), 3, "{warnings:#?}");
    let m = mails(&server);
    assert_eq!(m.len(), 2, "both chats emailed: {:?}", m.iter().map(|m| &m.subject).collect::<Vec<_>>());
    assert!(m.iter().all(|m| !m.text.contains("when?")), "the bad rows are not in any email");
    let out = f.run_at("2026-11-24T11:00:00Z", &[], 0);
    assert_eq!(out.stderr, "", "each bad row is reported once");
    // The report reads the whole export: the bad rows are left out there too.
    let report = f.run(&["report", "--now", "2026-11-24T12:00:00Z", "--format", "json"]);
    assert_eq!(report.code, 0, "{}", report.stderr);
}

/// A password is never read from the config file: not in `user:pw@`, not in the query
/// (`password=`, `sslpassword=`, however spelt), not past an `@` that the URL parser would take
/// for the credentials' end. And a URL is shown (errors, `check`) with the values of its query
/// only where they are harmless (`sslmode`, `connect_timeout`, ...): any other key's value is
/// left out, whatever it holds.
#[test]
fn a_password_in_the_url_s_query_is_refused_and_no_query_value_that_may_hide_one_is_shown() {
    let server = SmtpServer::start();
    let Some(cluster) = pg::cluster() else { return };
    let f = Fixture::new(server.port());
    let port = cluster.port;
    let url = cluster.database();
    for (url, key) in [
        (format!("{url}&password=hunter2"), "password"),
        (format!("{url}&sslpassword=hunter2"), "sslpassword"),
        (format!("{url}&pass%77ord=hunter2"), "password"),
        (format!("postgresql://127.0.0.1:{port}/db?application_name=me:hunter2@elsewhere"), "@"),
    ] {
        f.use_source(&format!("kind = \"export\"\nurl = \"{url}\""));
        let check = f.run(&["check"]);
        assert_eq!(check.code, 1, "{url}: {}", check.stdout);
        let line = check.stdout.lines().find(|l| l.starts_with("config")).unwrap_or_default();
        let expected = if key == "@" {
            "source.url: an @ after the host: write it as %40"
        } else {
            "source.url: passwords are not read from the config file"
        };
        assert!(line.contains("FAILED") && line.contains(expected), "{url}: {}", check.stdout);
        if key != "@" {
            assert!(line.contains(&format!("({key}=)")), "names the key: {line}");
        }
        let run = f.run(&["run", "--now", "2026-11-24T10:00:00Z"]);
        assert_eq!((run.code, run.stderr.lines().count()), (1, 1), "{url}: {}", run.stderr);
        for out in [&check.stdout, &check.stderr, &run.stdout, &run.stderr] {
            assert!(!out.contains("hunter2"), "{url}: {out}");
        }
    }
    // Shown: sslmode, application_name, connect_timeout; not shown: options' value.
    let shown = |url: &str| url.replacen("options=-c%20my.token%3Dhunter2", "options=***", 1);
    let good = format!("{url}&application_name=notifier&options=-c%20my.token%3Dhunter2&connect_timeout=5");
    f.use_source(&format!("kind = \"export\"\nurl = \"{good}\""));
    let check = f.run(&["check"]);
    assert!(
        check.stdout.contains(&format!("source     FAILED  export {}: not export schema v1", shown(&good))),
        "{}",
        check.stdout
    );
    let gone =
        good.replace(url.split('?').next().unwrap(), &cluster.url("no_such_database").replace("?sslmode=disable", ""));
    f.use_source(&format!("kind = \"export\"\nurl = \"{gone}\""));
    let run = f.run(&["run", "--now", "2026-11-24T10:00:00Z"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.starts_with(&format!("chat-notifier: error: export {}: connecting: ", shown(&gone)))
            && run.stderr.contains("database \"no_such_database\" does not exist"),
        "{}",
        run.stderr
    );
    for out in [&check.stdout, &check.stderr, &run.stdout, &run.stderr] {
        assert!(!out.contains("hunter2"), "{out}");
    }
}

/// `sslmode` as libpq means it, against the test cluster: TLS on, as on Debian's default
/// server, with a certificate for localhost and 127.0.0.1 from a CA the system does not know.
/// The role `TLS_ONLY` is let in over TLS only, so its login proves the connection encrypted.
#[test]
fn sslmode_has_libpq_s_meanings() {
    let server = SmtpServer::start();
    let Some(cluster) = pg::cluster() else { return };
    let url = cluster.database();
    cluster.client(&url).batch_execute(EXPORT_SCHEMA).unwrap();
    let database = url.split('?').next().unwrap().rsplit('/').next().unwrap().to_owned();
    let f = Fixture::new(server.port());
    let ca = cluster.ca_file.display().to_string();
    let other_ca = f.dir.path().join("other-ca.crt");
    std::fs::write(&other_ca, pg::ca_and_certificate(&["localhost"]).0).unwrap();
    let other_ca = other_ca.display().to_string();
    let port = cluster.port;
    let at = |user: &str, host: &str, query: &str| {
        let query = if query.is_empty() { String::new() } else { format!("?{query}") };
        format!("postgresql://{user}@{host}:{port}/{database}{query}")
    };
    let tls = pg::TLS_ONLY;
    let socket = cluster.socket_dir().display();
    // A name the certificate does not bear, connecting to 127.0.0.1 all the same.
    let elsewhere = "db.example.com";
    let wrong_ca =
        format!("TLS: the server's certificate is not signed by the CA in sslrootcert {other_ca} (sslmode=verify-ca)");
    let cases: Vec<(String, Option<&str>)> = vec![
        (at("postgres", "127.0.0.1", "sslmode=disable"), None),
        (at(tls, "127.0.0.1", "sslmode=disable"), Some("no encryption")),
        // libpq's default, prefer: TLS when offered, the certificate unchecked.
        (at(tls, "127.0.0.1", ""), None),
        (at(tls, "127.0.0.1", "sslmode=prefer"), None),
        (at(tls, "127.0.0.1", "sslmode=require"), None),
        (at(tls, "127.0.0.1", &format!("sslmode=require&sslrootcert={ca}")), None),
        // require with a root: checked as verify-ca is (libpq's rule).
        (at(tls, "127.0.0.1", &format!("sslmode=require&sslrootcert={other_ca}")), Some(&wrong_ca)),
        (at(tls, "127.0.0.1", &format!("sslmode=verify-full&sslrootcert={ca}")), None),
        (at(tls, "localhost", &format!("sslmode=verify-full&sslrootcert={ca}")), None),
        (
            at(tls, "127.0.0.1", "sslmode=verify-full"),
            Some(
                "TLS: the server's certificate is not signed by a CA the system trusts (sslmode=verify-full); \
                 give sslrootcert=PATH, the certificate of the CA that signed it",
            ),
        ),
        (at(tls, elsewhere, &format!("hostaddr=127.0.0.1&sslmode=verify-ca&sslrootcert={ca}")), None),
        // As libpq: sslmode does not apply to a Unix-domain socket.
        (format!("postgresql://postgres@/{database}?host={socket}&port={port}&sslmode=require"), None),
        (
            at(tls, elsewhere, &format!("hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={ca}")),
            Some(
                "TLS: the server's certificate is not for db.example.com but for localhost, 127.0.0.1 \
                 (sslmode=verify-full checks the host's name; verify-ca only the CA)",
            ),
        ),
    ];
    for (url, failure) in cases {
        f.use_source(&format!("kind = \"export\"\nurl = \"{url}\""));
        let check = f.run(&["check"]);
        let line = check.stdout.lines().find(|l| l.starts_with("source")).unwrap_or_default().to_owned();
        match failure {
            None => assert!(
                line.starts_with("source     ok      export postgresql://"),
                "{url}: {}{}",
                check.stdout,
                check.stderr
            ),
            Some(why) => {
                assert!(
                    line.starts_with("source     FAILED  export postgresql://") && line.contains(why),
                    "{url}: {why}: {}",
                    check.stdout
                );
                let run = f.run(&["run", "--now", "2026-11-24T10:00:00Z"]);
                assert_eq!((run.code, run.stderr.lines().count()), (1, 1), "{url}: {}", run.stderr);
                assert!(run.stderr.contains(why), "{url}: {why}: {}", run.stderr);
            }
        }
    }
}

/// `prefer` talks in clear only to a server that says it has no TLS; one that says it has and
/// then fails the handshake is an error, never a reason to fall back. `require` and the
/// `verify-*` modes never talk in clear.
#[test]
fn prefer_falls_back_to_clear_only_where_the_server_has_no_tls() {
    let server = SmtpServer::start();
    let Some(cluster) = pg::cluster() else { return };
    let url = cluster.database();
    cluster.client(&url).batch_execute(EXPORT_SCHEMA).unwrap();
    let database = url.split('?').next().unwrap().rsplit('/').next().unwrap().to_owned();
    let f = Fixture::new(server.port());
    let ca = cluster.ca_file.display().to_string();
    let (no_tls, broken_tls) = (cluster.proxy(b'N'), cluster.proxy(b'S'));
    let at = |user: &str, port: u16, query: &str| format!("postgresql://{user}@127.0.0.1:{port}/{database}?{query}");
    let tls = pg::TLS_ONLY;
    let cases = [
        (at("postgres", no_tls, "sslmode=prefer"), None),
        (at("postgres", no_tls, "connect_timeout=10"), None),
        // In clear: the server lets TLS_ONLY in over TLS only.
        (at(tls, no_tls, "sslmode=prefer"), Some("no encryption")),
        (at("postgres", no_tls, "sslmode=require"), Some("server does not support TLS")),
        (at("postgres", no_tls, &format!("sslmode=verify-full&sslrootcert={ca}")), Some("server does not support TLS")),
        (at("postgres", broken_tls, "sslmode=prefer"), Some("error performing TLS handshake")),
    ];
    for (url, failure) in cases {
        f.use_source(&format!("kind = \"export\"\nurl = \"{url}\""));
        let check = f.run(&["check"]);
        let line = check.stdout.lines().find(|l| l.starts_with("source")).unwrap_or_default().to_owned();
        match failure {
            None => assert!(line.starts_with("source     ok      export "), "{url}: {}{}", check.stdout, check.stderr),
            Some(why) => assert!(
                line.starts_with("source     FAILED  export ") && line.contains(why),
                "{url}: {why}: {}",
                check.stdout
            ),
        }
    }
}
