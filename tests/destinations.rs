//! Destinations beside email, through the binary, against real HTTP servers on 127.0.0.1: a
//! signed webhook (the signature verified as the README tells receivers to), a receiver that
//! fails, throttles, hangs, closes mid-answer or redirects, a kill -9 mid-delivery; a
//! Slack-compatible Web API that keeps threads. Emails go as before, whatever a destination does.

mod support;

use std::process::Command;

use sha2::{Digest, Sha256};
use support::http::{HttpServer, Reply, Request};
use support::{Fixture, SmtpServer, identifier, mails};

const SECRET: &str = "whsec_test_secret";
/// The catch hook's path: a secret, never printed.
const HOOK_PATH: &str = "/hooks/catch/123/s3cr3tpath";

/// A webhook destination `crm` to `url`, its URL and secret in files; `extra` goes in its table.
fn webhook_to(f: &Fixture, smtp: u16, url: &str, extra: &str) {
    std::fs::write(f.dir.path().join("hook.url"), format!("{url}\n")).unwrap();
    std::fs::write(f.dir.path().join("hook.secret"), format!("{SECRET}\n")).unwrap();
    f.write_config(
        smtp,
        &format!(
            "[[destinations]]\nname = \"crm\"\nkind = \"webhook\"\nurl_file = \"hook.url\"\n\
             secret_file = \"hook.secret\"\n{extra}\n{}",
            if extra.contains("timeout") { "" } else { "timeout = \"3s\"\n" }
        ),
    );
}

fn webhook(f: &Fixture, smtp: u16, server: &HttpServer, extra: &str) {
    webhook_to(f, smtp, &server.url(HOOK_PATH), extra);
}

/// The rows of a query on the state, each value as text.
fn rows(f: &Fixture, sql: &str) -> Vec<Vec<String>> {
    let conn = rusqlite::Connection::open(&f.state).unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    let n = stmt.column_count();
    let rows = stmt.query_map([], |r| {
        (0..n)
            .map(|i| {
                Ok(match r.get::<_, rusqlite::types::Value>(i)? {
                    rusqlite::types::Value::Text(s) => s,
                    rusqlite::types::Value::Integer(n) => n.to_string(),
                    other => format!("{other:?}"),
                })
            })
            .collect()
    });
    rows.unwrap().collect::<Result<_, _>>().unwrap()
}

/// HMAC-SHA256, written out here apart from the crate's (RFC 2104).
fn hmac(key: &[u8], message: &[u8]) -> String {
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key);
    let inner = Sha256::new().chain_update(block.map(|b| b ^ 0x36)).chain_update(message).finalize();
    let outer = Sha256::new().chain_update(block.map(|b| b ^ 0x5c)).chain_update(inner).finalize();
    outer.iter().map(|b| format!("{b:02x}")).collect()
}

/// Verifies a request as the README tells receivers to: the `t` and `v1` of the signature
/// header, an HMAC-SHA256 of `t.body` under the secret, and `t` within five minutes of now.
/// Returns the document.
fn verified(r: &Request) -> serde_json::Value {
    let header = r.header("chat-notifier-signature").expect("a signature header");
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = Some(value),
            Some(("v1", value)) => v1.push(value),
            _ => {}
        }
    }
    let t = t.expect("a timestamp");
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(&r.body);
    assert!(v1.contains(&hmac(SECRET.as_bytes(), &signed).as_str()), "the signature verifies: {header}");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((now - t.parse::<i64>().unwrap()).abs() <= 300, "signed now: {t}");
    let doc = r.json();
    assert_eq!(r.header("idempotency-key"), doc["id"].as_str(), "the key is the document's id");
    doc
}

/// Runs the README's receiver code (`python` or `js`) on a request, where its interpreter is
/// installed: it must accept the request, and refuse it under another secret.
fn verified_by_the_readme(r: &Request, language: &str) {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let fence = format!("```{language}\n");
    let start = readme
        .match_indices(&fence)
        .map(|(i, _)| i + fence.len())
        .find(|&i| {
            readme[i..].starts_with("# verify a chat-notifier webhook")
                || readme[i..].starts_with("// verify a chat-notifier webhook")
        })
        .expect("the README's example");
    let code = &readme[start..];
    let code = &code[..code.find("```").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("body"), &r.body).unwrap();
    let (interpreter, driver) = match language {
        "python" => (
            "python3",
            format!(
                "{code}\nimport sys\nbody = open(sys.argv[1], 'rb').read()\n\
                 print('verified' if verify(sys.argv[2], sys.argv[3], body) else 'refused')\n"
            ),
        ),
        _ => (
            "node",
            format!(
                "{code}\nconst body = require('fs').readFileSync(process.argv[2]);\n\
                 console.log(verify(process.argv[3], process.argv[4], body) ? 'verified' : 'refused');\n"
            ),
        ),
    };
    std::fs::write(dir.path().join("verify"), driver).unwrap();
    let run = |secret: &str| {
        Command::new(interpreter)
            .arg(dir.path().join("verify"))
            .arg(dir.path().join("body"))
            .arg(secret)
            .arg(r.header("chat-notifier-signature").unwrap())
            .output()
    };
    let Ok(out) = run(SECRET) else {
        assert!(std::env::var_os("CI").is_none(), "{interpreter} is needed under CI");
        eprintln!("{interpreter} is not installed: the README's {language} example is not run");
        return;
    };
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "verified", "{}", String::from_utf8_lossy(&out.stderr));
    let wrong = run("whsec_wrong").unwrap();
    assert_eq!(String::from_utf8_lossy(&wrong.stdout).trim(), "refused");
}

/// `examples/demo-webhook.sh`'s receiver (the README's Python function, then its handler),
/// started on 127.0.0.1 under `SECRET`, printing to `log`: its URL, or none where Python is not
/// installed.
fn demo_receiver(dir: &std::path::Path, log: &std::path::Path) -> Option<(std::process::Child, String)> {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let verify = &readme[readme.find("# verify a chat-notifier webhook\n").expect("the README's example")..];
    let verify = &verify[..verify.find("```").unwrap()];
    let script = std::fs::read_to_string(format!("{root}/examples/demo-webhook.sh")).unwrap();
    let handler = &script[script.find("<<'PY'\n").expect("the receiver's heredoc") + 7..];
    let handler = &handler[..handler.find("\nPY\n").unwrap()];
    std::fs::write(dir.join("receiver.py"), format!("{verify}\n{handler}\n")).unwrap();
    let url_file = dir.join("demo.url");
    let spawned = Command::new("python3")
        .arg(dir.join("receiver.py"))
        .arg(&url_file)
        .env("DEMO_WEBHOOK_SECRET", SECRET)
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(std::fs::File::create(dir.join("receiver.err")).unwrap())
        .spawn();
    let Ok(mut child) = spawned else {
        assert!(std::env::var_os("CI").is_none(), "python3 is needed under CI");
        eprintln!("python3 is not installed: the demo's receiver is not run");
        return None;
    };
    // The receiver writes its URL once it listens (renamed into place): waited for, bounded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Ok(url) = std::fs::read_to_string(&url_file) {
            return Some((child, url.trim().to_owned()));
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the receiver exited {status}: {}", std::fs::read_to_string(dir.join("receiver.err")).unwrap());
        }
        assert!(std::time::Instant::now() < deadline, "the receiver did not start within a minute");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn the_demo_receiver_verifies_first_and_takes_every_documented_event() {
    let smtp = SmtpServer::start();
    let f = Fixture::new(smtp.port());
    let log = f.dir.path().join("received.log");
    let Some((mut receiver, url)) = demo_receiver(f.dir.path(), &log) else { return };
    std::fs::write(f.dir.path().join("hook.url"), format!("{url}\n")).unwrap();
    std::fs::write(f.dir.path().join("hook.secret"), format!("{SECRET}\n")).unwrap();
    f.write_config(
        smtp.port(),
        "alert_if_silent = \"6h\"\n[[destinations]]\nname = \"crm\"\nkind = \"webhook\"\nurl_file = \"hook.url\"\n\
         secret_file = \"hook.secret\"\nburst = 2\nmax_attempts = 1\ntimeout = \"30s\"\n",
    );
    for i in 0..4 {
        f.lead_who_leaves(&format!("c{i}"), &format!("Visitor {i}"), &format!("v{i}@example.com"), i);
    }
    // Two chats one by one and a summary of the rest; then the bot falls silent: its alarm.
    for now in ["2026-11-24T10:00:00Z", "2026-11-24T15:12:00Z", "2026-11-24T18:00:00Z"] {
        let out = f.run_at(now, &[], 0);
        assert!(!out.stderr.contains("not sent") && !out.stderr.contains("parked"), "{now}: {}", out.stderr);
    }
    let status = f.run(&["status", "--now", "2026-11-24T18:01:00Z"]).stdout;
    assert!(status.contains("webhook crm: 0 waiting, 0 parked"), "nothing waits or is parked: {status}");
    // A request whose signature fails is refused before its body is read, whatever the body.
    let mut stream =
        std::net::TcpStream::connect(url.trim_start_matches("http://").split('/').next().unwrap()).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();
    use std::io::{Read, Write};
    let body = "not json at all";
    write!(
        stream,
        "POST /hooks/catch/demo HTTP/1.1\r\nHost: x\r\nChat-Notifier-Signature: t=1,v1=00\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    receiver.kill().unwrap();
    receiver.wait().unwrap();
    let received = std::fs::read_to_string(&log).unwrap();
    let errors = std::fs::read_to_string(f.dir.path().join("receiver.err")).unwrap();
    assert!(answer.starts_with("HTTP/1.0 401"), "answer {answer:?}; receiver: {errors}");
    for event in
        ["received conversation.abandoned #", "received summary: 2 more chats", "received bot.silent (Lead Bot)"]
    {
        assert!(received.contains(event), "{event}: {received}{errors}");
    }
    assert!(received.contains("refused a request whose signature does not verify"), "{received}");
    assert!(!errors.contains("Traceback"), "{errors}");
}

#[test]
fn a_signed_webhook_carries_each_state_once_beside_the_emails() {
    let smtp = SmtpServer::start();
    let hook = HttpServer::start();
    let f = Fixture::new(smtp.port());
    webhook(&f, smtp.port(), &hook, "");
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    let out = f.run_at("2026-11-24T09:30:21Z", &[], 0);
    assert_eq!(out.stderr_past_first_run(), "", "quiet when all goes");
    let requests = hook.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", HOOK_PATH));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let doc = verified(r);
    verified_by_the_readme(r, "python");
    verified_by_the_readme(r, "js");
    let email = &mails(&smtp)[0];
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["event"], "conversation.abandoned");
    assert_eq!(doc["state"], "abandoned");
    assert_eq!(doc["conversation"]["id"], "c1");
    assert_eq!(doc["conversation"]["identifier"], identifier(&email.subject), "the email's identifier");
    assert_eq!(doc["conversation"]["page_url"], "https://example.com/pricing");
    assert_eq!(doc["bot"], serde_json::json!({ "id": "lead", "name": "Lead Bot" }));
    assert_eq!(doc["visitor"]["display"], "Jane Doe");
    assert_eq!(
        doc["visitor"]["fields"],
        serde_json::json!([{ "name": "name", "value": "Jane Doe" }, { "name": "email", "value": "jane@example.com" }])
    );
    assert_eq!((doc["step"].as_str(), doc["question"].as_str()), (Some("ask_phone"), Some("And your phone?")));
    assert_eq!(doc["transcript"]["messages"].as_array().unwrap().len(), 5);
    assert_eq!(doc["transcript"]["messages"][1]["sender"], "visitor");
    assert_eq!(doc["transcript"]["messages"][1]["at"], "2026-11-24T09:00:10Z");
    assert_eq!(doc["decided_at"], "2026-11-24T09:30:21Z");

    // Nothing new: nothing sent.
    f.run_at("2026-11-24T10:30:00Z", &[], 0);
    assert_eq!(hook.requests().len(), 1);
    // Back the next day, finishes: one more, with its own key.
    f.visitor("c1", "2026-11-25T08:00:00Z", Some("phone"), "+1 555 0100");
    f.end("c1", "2026-11-25T08:00:01Z");
    f.run_at("2026-11-25T08:01:00Z", &[], 0);
    let requests = hook.requests();
    assert_eq!((requests.len(), mails(&smtp).len()), (2, 2), "one notification and one email per state");
    let completed = verified(&requests[1]);
    assert_eq!(completed["state"], "completed");
    assert_eq!(completed["conversation"]["came_back"], true);
    assert_ne!(completed["id"], doc["id"]);
    let new: Vec<bool> =
        completed["transcript"]["messages"].as_array().unwrap().iter().map(|m| m["new"].as_bool().unwrap()).collect();
    assert_eq!(new, [false, false, false, false, false, true, true], "the lines since the last notification are new");
}

#[test]
fn a_receiver_that_answers_500_gets_it_again_with_the_same_key_and_body() {
    let smtp = SmtpServer::start();
    let hook = HttpServer::start();
    let f = Fixture::new(smtp.port());
    webhook(&f, smtp.port(), &hook, "");
    hook.script([Reply::status(500)]);
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    let out = f.run_at("2026-11-24T09:30:21Z", &[], 3);
    assert_eq!(mails(&smtp).len(), 1, "the email went");
    let stderr = out.stderr_past_first_run();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].contains("abandoned notification for #")
            && lines[0].contains("to webhook \"crm\" not sent (attempt 1): http://127.0.0.1:")
            && lines[0].contains("answered 500")
            && lines[0].contains("not its own failure"),
        "{}",
        lines[0]
    );
    assert!(!out.stderr.contains(HOOK_PATH), "the hook's path is a secret: {}", out.stderr);
    // Within the backoff (a minute after the first try): not tried, and quiet.
    let out = f.run_at("2026-11-24T09:30:50Z", &[], 0);
    assert_eq!((hook.requests().len(), out.stderr.as_str()), (1, ""));
    let status = f.run(&["status", "--now", "2026-11-24T09:30:50Z"]).stdout;
    assert!(
        status.contains(
            "webhook crm: 1 waiting, 0 parked; the next goes at 2026-11-24 09:31 UTC; last error: http://127.0.0.1:"
        ) && status.contains("answered 500"),
        "{status}"
    );
    f.run_at("2026-11-24T09:35:00Z", &[], 0);
    let requests = hook.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].header("idempotency-key"), requests[1].header("idempotency-key"));
    assert_eq!(requests[0].body, requests[1].body, "the same bytes");
    verified(&requests[1]);
    let rows = rows(&f, "SELECT status, attempts, refusals, last_error IS NULL, document IS NULL FROM deliveries");
    assert_eq!(rows, [["sent", "2", "0", "1", "1"]], "no attempt of its own counted; the document dropped once sent");
}

#[test]
fn a_receiver_that_throttles_is_waited_for_as_its_retry_after_says() {
    let smtp = SmtpServer::start();
    let hook = HttpServer::start();
    let f = Fixture::new(smtp.port());
    webhook(&f, smtp.port(), &hook, "");
    hook.script([Reply::with_header(429, "Retry-After", "3600")]);
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    f.lead_who_leaves("c2", "John Roe", "john@example.com", 1);
    let out = f.run_at("2026-11-24T09:31:21Z", &[], 0);
    assert_eq!(hook.requests().len(), 1, "one try, then it backs off");
    assert_eq!(mails(&smtp).len(), 2, "the emails went");
    assert!(
        out.stderr.contains("webhook \"crm\" is throttling") && out.stderr.contains("answered 429"),
        "{}",
        out.stderr
    );
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    assert_eq!(hook.requests().len(), 1, "within the hour it asked for");
    let status = f.run(&["status", "--json", "--now", "2026-11-24T10:00:00Z"]).stdout;
    assert!(status.contains("\"not_before\": \"2026-11-24T10:31:21Z\""), "{status}");
    f.run_at("2026-11-24T10:32:00Z", &[], 0);
    let requests = hook.requests();
    assert_eq!(requests.len(), 3, "both went, the throttled one again");
    let rows = rows(&f, "SELECT conversation_id, status, refusals FROM deliveries ORDER BY id");
    assert_eq!(rows, [["c1", "sent", "0"], ["c2", "sent", "0"]], "throttling counts no attempt");
}

#[test]
fn a_slow_receiver_is_given_up_at_the_timeout_and_one_that_closes_mid_answer_is_tried_again() {
    let smtp = SmtpServer::start();
    let hook = HttpServer::start();
    let f = Fixture::new(smtp.port());
    webhook(&f, smtp.port(), &hook, "");
    // Answers only once released: the run can end only by its deadline.
    hook.script([Reply::Hold(Box::new(Reply::status(200))), Reply::CloseMidBody]);
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    let out = f.run_at("2026-11-24T09:30:21Z", &[], 3);
    hook.release();
    assert!(out.stderr.contains("no complete answer within the timeout"), "{}", out.stderr);
    assert_eq!(mails(&smtp).len(), 1, "the email went");
    let out = f.run_at("2026-11-24T09:35:00Z", &[], 3);
    assert!(out.stderr.contains("the connection closed mid-answer (10 of 100 bytes)"), "{}", out.stderr);
    let rows = rows(&f, "SELECT status, refusals FROM deliveries");
    assert_eq!(rows, [["pending", "2"]], "each a try of its own: the receiver may have it");
    f.run_at("2026-11-24T09:40:00Z", &[], 0);
    let keys: Vec<_> = hook.requests().iter().map(|r| r.header("idempotency-key").unwrap().to_owned()).collect();
    assert_eq!(keys.len(), 3);
    assert!(keys.iter().all(|k| *k == keys[0]), "the same key every time: {keys:?}");
}

#[test]
fn a_redirect_is_not_followed_and_parks_after_max_attempts() {
    let smtp = SmtpServer::start();
    let hook = HttpServer::start();
    let elsewhere = HttpServer::start();
    let f = Fixture::new(smtp.port());
    webhook(&f, smtp.port(), &hook, "max_attempts = 2");
    hook.answer(Reply::with_header(302, "Location", &elsewhere.url("/stolen")));
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    f.lead_who_leaves("c2", "John Roe", "john@example.com", 1);
    let out = f.run_at("2026-11-24T09:31:21Z", &[], 3);
    assert_eq!(hook.requests().len(), 2, "a refusal of one is no reason to hold the other");
    assert!(out.stderr.contains("answered 302 (a redirect, not followed"), "{}", out.stderr);
    assert!(out.stderr.contains("1 of max_attempts = 2 failures of its own"), "{}", out.stderr);
    let status = f.run(&["status", "--now", "2026-11-24T09:32:00Z"]).stdout;
    assert!(status.contains("webhook crm: 2 waiting"), "{status}");
    let out = f.run_at("2026-11-24T09:40:00Z", &[], 3);
    assert!(out.stderr.contains("parked after 2 failures of its own"), "{}", out.stderr);
    f.run_at("2026-11-24T09:50:00Z", &[], 0);
    assert_eq!(hook.requests().len(), 4, "parked: not tried again");
    assert!(elsewhere.requests().is_empty(), "never followed");
    let status = f.run(&["status", "--now", "2026-11-24T09:50:00Z"]).stdout;
    assert!(status.contains("webhook crm: 0 waiting, 2 parked"), "{status}");
}

#[test]
fn status_lists_each_parked_notification_with_its_conversation_and_reason() {
    let smtp = SmtpServer::start();
    let hook = HttpServer::start();
    let f = Fixture::new(smtp.port());
    webhook(&f, smtp.port(), &hook, "max_attempts = 1");
    hook.answer(Reply::status(410));
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    f.lead_who_leaves("c2", "John Roe", "john@example.com", 1);
    f.run_at("2026-11-24T09:31:21Z", &[], 3);
    let ids: Vec<String> = mails(&smtp).iter().map(|m| identifier(&m.subject).to_owned()).collect();
    assert_eq!(ids.len(), 2);
    let status = f.run(&["status", "--now", "2026-11-24T09:40:00Z"]).stdout;
    assert!(status.contains("webhook crm: 0 waiting, 2 parked"), "{status}");
    for id in &ids {
        let line = status.lines().find(|l| l.contains(&format!("#{id}"))).unwrap_or_else(|| panic!("#{id}: {status}"));
        assert!(line.starts_with("  parked: abandoned notification for #"), "{line}");
        assert!(line.contains("answered 410"), "{line}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&f.run(&["status", "--json", "--now", "2026-11-24T09:40:00Z"]).stdout).unwrap();
    let parked = json["destinations"][0]["parked_notifications"].as_array().expect("listed");
    assert_eq!(parked.len(), 2, "{parked:?}");
    for p in parked {
        assert_eq!(p["state"], "abandoned");
        assert!(ids.iter().any(|id| p["about"] == format!("#{id}")), "{p}");
        assert!(["c1", "c2"].contains(&p["conversation_id"].as_str().unwrap()), "{p}");
        assert!(p["reason"].as_str().unwrap().contains("answered 410"), "{p}");
    }
}

#[test]
fn the_inbox_keeps_getting_its_emails_while_the_webhook_is_down() {
    let smtp = SmtpServer::start();
    // A port nobody listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let f = Fixture::new(smtp.port());
    webhook_to(&f, smtp.port(), &format!("http://127.0.0.1:{port}{HOOK_PATH}"), "");
    for i in 0..3 {
        f.lead_who_leaves(&format!("c{i}"), &format!("Visitor {i}"), &format!("v{i}@example.com"), i);
    }
    let out = f.run_at("2026-11-24T09:33:00Z", &[], 3);
    assert_eq!(mails(&smtp).len(), 3, "every email went");
    let stderr = out.stderr_past_first_run();
    let warnings: Vec<&str> = stderr.lines().collect();
    assert_eq!(warnings.len(), 1, "one try, the rest waits: {warnings:#?}");
    assert!(warnings[0].contains("connection refused"), "{}", warnings[0]);
    // Up again: everything that waited goes, once.
    let hook = HttpServer::start();
    webhook(&f, smtp.port(), &hook, "");
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    let ids: Vec<String> =
        hook.requests().iter().map(|r| verified(r)["conversation"]["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, ["c0", "c1", "c2"], "in the order decided");
    assert_eq!(mails(&smtp).len(), 3);
}

#[test]
fn killed_mid_delivery_the_notification_goes_again_once_with_the_same_key() {
    let smtp = SmtpServer::start();
    let hook = HttpServer::start();
    let f = Fixture::new(smtp.port());
    webhook(&f, smtp.port(), &hook, "timeout = \"60s\"");
    hook.script([Reply::Hold(Box::new(Reply::status(200)))]);
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    f.lead_who_leaves("c2", "John Roe", "john@example.com", 1);
    let mut child = f.spawn(&["run", "--now", "2026-11-24T09:31:21Z"]);
    hook.wait_for(1);
    // The receiver has the first notification; the run waits for its answer.
    child.kill().unwrap();
    child.wait().unwrap();
    hook.release();
    f.run_at("2026-11-24T09:35:00Z", &[], 0);
    let requests = hook.requests();
    let keys: Vec<&str> = requests.iter().map(|r| r.header("idempotency-key").unwrap()).collect();
    assert_eq!(keys.len(), 3, "the one in flight again, the other once");
    assert_eq!(keys[0], keys[1], "the one in flight goes again with the same key");
    assert_ne!(keys[1], keys[2]);
    assert_eq!(requests[0].body, requests[1].body);
    f.run_at("2026-11-24T09:40:00Z", &[], 0);
    assert_eq!(hook.requests().len(), 3, "nothing more");
}

#[test]
fn dry_run_shows_the_exact_json_without_secrets_and_changes_nothing() {
    let smtp = SmtpServer::start();
    let hook = HttpServer::start();
    let f = Fixture::new(smtp.port());
    webhook(&f, smtp.port(), &hook, "");
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    f.run_at("2026-11-24T09:00:30Z", &[], 0);
    let before = f.state_dump();
    let out = f.run_at("2026-11-24T09:30:21Z", &["--dry-run"], 0);
    assert!(hook.requests().is_empty() && smtp.received().is_empty(), "nothing sent");
    assert_eq!(f.state_dump(), before, "nothing changed");
    assert!(out.stdout.contains("=== webhook \"crm\": abandoned notification for #"), "{}", out.stdout);
    assert!(out.stdout.contains("Idempotency-Key: cn1_"), "{}", out.stdout);
    let json = out.stdout.lines().find(|l| l.starts_with("{\"version\":1,")).expect("the document, as sent");
    let doc: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(doc["state"], "abandoned");
    assert!(!out.stdout.contains(SECRET) && !out.stdout.contains(HOOK_PATH), "no secret: {}", out.stdout);
    // The run that sends, sends exactly that.
    f.run_at("2026-11-24T09:30:21Z", &[], 0);
    assert_eq!(String::from_utf8(hook.requests()[0].body.clone()).unwrap(), json);
}

#[test]
fn check_reaches_the_webhook_without_sending_and_names_a_missing_secret() {
    let smtp = SmtpServer::start();
    let hook = HttpServer::start();
    let f = Fixture::new(smtp.port());
    webhook(&f, smtp.port(), &hook, "");
    let out = f.run(&["check", "--smtp"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("webhook crm: http://127.0.0.1:"), "{}", out.stdout);
    assert!(out.stdout.contains("reachable (connected, nothing sent)"), "{}", out.stdout);
    assert!(hook.requests().is_empty(), "nothing sent");
    std::fs::remove_file(f.dir.path().join("hook.secret")).unwrap();
    for args in [&["check"][..], &["run"]] {
        let out = f.run(args);
        assert_eq!(out.code, 1, "{args:?}: {}", out.stderr);
        let line = if args == ["check"] {
            out.stdout.lines().find(|l| l.starts_with("destination FAILED")).expect("the destination's line")
        } else {
            out.stderr.trim()
        };
        assert!(!line.contains('\n'), "one line: {line}");
        assert!(line.contains("destinations (name = \"crm\").secret_file: reading "), "{line}");
        assert!(line.contains("hook.secret"), "{line}");
    }
}

/// Every file of the state (the database, and its journal if one is left), as text.
fn state_bytes(f: &Fixture) -> String {
    let mut all = String::new();
    for suffix in ["", "-wal", "-journal"] {
        let mut path = f.state.clone().into_os_string();
        path.push(suffix);
        if let Ok(bytes) = std::fs::read(&path) {
            all.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    all
}

#[test]
fn a_receiver_that_echoes_its_request_gets_no_secret_into_logs_status_or_the_state() {
    let smtp = SmtpServer::start();
    let hook = HttpServer::start();
    let f = Fixture::new(smtp.port());
    webhook_to(&f, smtp.port(), &hook.url(&format!("{HOOK_PATH}?token=QSECRETVALUE42")), "max_attempts = 2");
    hook.answer(Reply::Echo { status: 400, slack: false });
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    let out = f.run_at("2026-11-24T09:31:21Z", &[], 3);
    let sent = hook.requests();
    let signature = sent[0].header("chat-notifier-signature").unwrap().to_owned();
    let v1 = signature.rsplit("v1=").next().unwrap().to_owned();
    let secrets = ["s3cr3tpath", "QSECRETVALUE42", SECRET, &signature, &v1];
    let clean = |what: &str, text: &str| {
        for secret in secrets {
            assert!(!text.contains(secret), "{what} shows {secret:?}: {text}");
        }
    };
    // What the receiver said is still shown, its secrets masked.
    assert!(out.stderr.contains("answered 400: bad request to *** sig *** auth"), "{}", out.stderr);
    clean("the run's warning", &out.stderr);
    let status = f.run(&["status", "--now", "2026-11-24T09:32:00Z"]).stdout;
    assert!(status.contains("bad request to ***"), "{status}");
    clean("status", &status);
    let json = f.run(&["status", "--json", "--now", "2026-11-24T09:32:00Z"]).stdout;
    assert!(json.contains("bad request to ***"), "{json}");
    clean("status --json", &json);
    let out = f.run_at("2026-11-24T09:40:00Z", &[], 3);
    assert!(out.stderr.contains("parked after 2 failures of its own"), "{}", out.stderr);
    clean("the run's error", &out.stderr);
    let stored = rows(&f, "SELECT last_error FROM deliveries");
    assert!(stored[0][0].contains("bad request to ***"), "{stored:?}");
    clean("the state", &state_bytes(&f));

    // Slack, naming the token in its error, to a message and to check's auth.test.
    let api = HttpServer::slack();
    let f = Fixture::new(smtp.port());
    slack(&f, smtp.port(), &api, "max_attempts = 1");
    api.script([Reply::Echo { status: 200, slack: true }, Reply::Echo { status: 200, slack: true }]);
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    let out = f.run_at("2026-11-24T09:31:21Z", &[], 3);
    assert!(out.stderr.contains("invalid_auth: Bearer ***"), "{}", out.stderr);
    assert!(!out.stderr.contains("xoxb-test-token"), "{}", out.stderr);
    assert!(!state_bytes(&f).contains("xoxb-test-token"), "the token is stored in the state");
    let check = f.run(&["check", "--smtp"]);
    assert_eq!(check.code, 1, "{}", check.stdout);
    assert!(check.stdout.contains("invalid_auth: Bearer ***"), "{}", check.stdout);
    assert!(!check.stdout.contains("xoxb-test-token") && !check.stderr.contains("xoxb-test-token"), "{}", check.stdout);
}

// Slack.

/// A Slack destination `sales` on a local Slack-compatible server; `extra` goes in its table.
fn slack(f: &Fixture, smtp: u16, server: &HttpServer, extra: &str) {
    std::fs::write(f.dir.path().join("slack.token"), "xoxb-test-token\n").unwrap();
    f.write_config(
        smtp,
        &format!(
            "[[destinations]]\nname = \"sales\"\nkind = \"slack\"\ntoken_file = \"slack.token\"\n\
             channel = \"C0LEADS\"\napi_url = \"{}\"\n{extra}\n{}",
            server.url("/api"),
            if extra.contains("timeout") { "" } else { "timeout = \"5s\"\n" }
        ),
    );
}

#[test]
fn each_conversation_is_one_slack_thread_across_its_states() {
    let smtp = SmtpServer::start();
    let api = HttpServer::slack();
    let f = Fixture::new(smtp.port());
    slack(&f, smtp.port(), &api, "reply_broadcast = true");
    f.lead_who_leaves("c1", "Jane <!channel> Doe", "jane@example.com", 0);
    f.lead_who_leaves("c2", "John Roe", "john@example.com", 1);
    f.run_at("2026-11-24T09:31:21Z", &[], 0);
    // c1 finishes the next day; c2 comes back and leaves again.
    f.visitor("c1", "2026-11-25T08:00:00Z", Some("phone"), "+1 555 0100");
    f.end("c1", "2026-11-25T08:00:01Z");
    f.visitor("c2", "2026-11-25T08:00:00Z", None, "still there?");
    f.run_at("2026-11-25T08:01:00Z", &[], 0);
    f.run_at("2026-11-25T08:31:00Z", &[], 0);
    // And c1 comes back after finishing.
    f.visitor("c1", "2026-11-25T09:00:00Z", None, "one more thing");
    f.run_at("2026-11-25T09:31:00Z", &[], 0);
    let posted = api.posted();
    let states: Vec<(String, Option<String>)> = posted
        .iter()
        .map(|p| {
            let text = p.body["text"].as_str().unwrap().to_owned();
            (text, p.thread_ts.clone())
        })
        .collect();
    assert_eq!(posted.len(), 5, "{states:#?}");
    let roots: Vec<&support::http::Posted> = posted.iter().filter(|p| p.thread_ts.is_none()).collect();
    assert_eq!(roots.len(), 2, "one message per conversation: {states:#?}");
    let mail = mails(&smtp);
    for root in &roots {
        let text = root.body["text"].as_str().unwrap();
        let id = text.rsplit("[#").next().unwrap().trim_end_matches(']');
        let replies: Vec<&support::http::Posted> =
            posted.iter().filter(|p| p.thread_ts.as_deref() == Some(root.ts.as_str())).collect();
        let conversation = if text.contains("Jane") { "c1" } else { "c2" };
        assert_eq!(replies.len(), if conversation == "c1" { 2 } else { 1 }, "{states:#?}");
        assert!(replies.iter().all(|r| r.body["text"].as_str().unwrap().contains(id)), "same identifier in its thread");
        assert!(mail.iter().any(|m| identifier(&m.subject) == id), "the emails' identifier");
    }
    let completed = posted.iter().find(|p| p.body["text"].as_str().unwrap().contains("finished the chat")).unwrap();
    assert_eq!(completed.body["reply_broadcast"], true, "a completion broadcast");
    let resumed: Vec<_> = posted.iter().filter(|p| p.body["text"].as_str().unwrap().contains("came back")).collect();
    assert!(resumed.iter().all(|p| p.body.get("reply_broadcast").is_none()));
    // What the visitor typed is text, never a mention.
    let all = serde_json::to_string(&posted.iter().map(|p| &p.body).collect::<Vec<_>>()).unwrap();
    assert!(!all.contains("<!channel>") && all.contains("&lt;!channel&gt;"), "escaped");
    // Slack's limits: sections within 3000 characters, at most 50 blocks.
    for p in &posted {
        let blocks = p.body["blocks"].as_array().unwrap();
        assert!(blocks.len() <= 50);
        for b in blocks {
            if let Some(t) = b["text"]["text"].as_str() {
                assert!(t.chars().count() <= 3000);
            }
        }
    }
}

#[test]
fn slack_ratelimited_is_waited_for_and_errors_park_or_wait() {
    let smtp = SmtpServer::start();
    let api = HttpServer::slack();
    let f = Fixture::new(smtp.port());
    slack(&f, smtp.port(), &api, "max_attempts = 1");
    // A Retry-After of a second: waited for within the run, never dropped.
    api.script([Reply::Status {
        status: 429,
        headers: vec![("Retry-After".into(), "1".into())],
        body: serde_json::json!({ "ok": false, "error": "ratelimited" }).to_string(),
    }]);
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    let out = f.run_at("2026-11-24T09:30:21Z", &[], 0);
    assert_eq!((api.requests().len(), api.posted().len()), (2, 1), "{}", out.stderr);
    // A wrong token: Slack's invalid_auth refuses it, parked after max_attempts = 1.
    std::fs::write(f.dir.path().join("slack.token"), "xoxb-wrong\n").unwrap();
    f.lead_who_leaves("c2", "John Roe", "john@example.com", 1);
    let out = f.run_at("2026-11-24T09:31:21Z", &[], 3);
    assert!(
        out.stderr.contains("parked after 1 failures of its own: Slack chat.postMessage at http://127.0.0.1:"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("invalid_auth") && !out.stderr.contains("xoxb-"), "{}", out.stderr);
    let check = f.run(&["check", "--smtp"]);
    assert_eq!(check.code, 1);
    assert!(
        check.stdout.contains("destination FAILED  slack sales: Slack auth.test at http://127.0.0.1:"),
        "{}",
        check.stdout
    );
    assert!(check.stdout.contains("invalid_auth") && !check.stdout.contains("xoxb"), "{}", check.stdout);
    std::fs::write(f.dir.path().join("slack.token"), "xoxb-test-token\n").unwrap();
    let check = f.run(&["check", "--smtp"]);
    assert_eq!(check.code, 0, "{}", check.stderr);
    assert!(check.stdout.contains("slack sales: token valid (auth.test): notifier in Acme"), "{}", check.stdout);
}

#[test]
fn a_slack_answer_without_a_usable_ts_is_delivered_once_and_the_later_ones_go_on_their_own_saying_so() {
    let smtp = SmtpServer::start();
    for answer in [
        serde_json::json!({ "ok": true, "channel": "C0LEADS", "ts": format!("1790000000.000001\r\nX: {}", "9".repeat(5000)) }),
        serde_json::json!({ "ok": true, "channel": "C0LEADS" }),
    ] {
        let api = HttpServer::slack();
        let f = Fixture::new(smtp.port());
        slack(&f, smtp.port(), &api, "");
        api.script([Reply::json(200, answer.clone())]);
        f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
        let out = f.run_at("2026-11-24T09:31:21Z", &[], 0);
        assert_eq!(api.requests().len(), 1, "{answer}: {}", out.stderr);
        assert!(out.stderr.contains("delivered, but Slack answered ok"), "{}", out.stderr);
        assert!(out.stderr.contains("later notifications there go as messages of their own"), "{}", out.stderr);
        let roots = rows(&f, "SELECT root FROM destination_threads");
        assert!(roots.iter().all(|r| r[0].len() <= 32 && !r[0].contains('\n')), "stored as-is: {roots:?}");
        // Jane finishes, then comes back: each goes, once, as a message of its own that says why.
        f.visitor("c1", "2026-11-25T08:00:00Z", Some("phone"), "+1 555 0100");
        f.end("c1", "2026-11-25T08:00:01Z");
        let out = f.run_at("2026-11-25T08:01:00Z", &[], 0);
        f.visitor("c1", "2026-11-25T09:00:00Z", None, "one more thing");
        let again = f.run_at("2026-11-25T09:31:00Z", &[], 0);
        let posted = api.posted();
        assert_eq!(posted.len(), 2, "{}{}", out.stderr, again.stderr);
        assert_eq!(api.requests().len(), 3, "never posted twice");
        for p in &posted {
            assert!(p.thread_ts.is_none(), "{:?}", p.thread_ts);
            assert!(p.body.to_string().contains("could not keep this chat's thread here"), "{}", p.body);
        }
        assert!(!again.stderr.contains("delivered, but"), "said once: {}", again.stderr);
    }
}

#[test]
fn a_discord_answer_without_the_posts_id_is_delivered_once_and_the_later_ones_go_on_their_own_saying_so() {
    let smtp = SmtpServer::start();
    let discord = HttpServer::discord();
    let f = Fixture::new(smtp.port());
    std::fs::write(f.dir.path().join("discord.url"), discord.url("/api/webhooks/42/token") + "\n").unwrap();
    f.write_config(smtp.port(), "[[destinations]]\nname = \"forum\"\nkind = \"discord\"\nurl_file = \"discord.url\"\n");
    discord.script([Reply::status(204)]);
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    let out = f.run_at("2026-11-24T09:31:21Z", &[], 0);
    assert_eq!(discord.requests().len(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("delivered, but Discord webhook http://127.0.0.1:"), "{}", out.stderr);
    assert!(out.stderr.contains("answered 204 without the post's id"), "{}", out.stderr);
    f.visitor("c1", "2026-11-25T08:00:00Z", Some("phone"), "+1 555 0100");
    f.end("c1", "2026-11-25T08:00:01Z");
    f.run_at("2026-11-25T08:01:00Z", &[], 0);
    let posted = discord.posted();
    assert_eq!((discord.requests().len(), posted.len()), (2, 1));
    let content = posted[0].body["content"].as_str().unwrap();
    assert!(content.contains("could not keep this chat's thread here"), "{content}");
    assert!(posted[0].body["content"].as_str().unwrap().chars().count() <= 2000);
}

#[test]
fn killed_mid_post_slack_gets_at_most_one_duplicate_in_the_same_thread() {
    let smtp = SmtpServer::start();
    let api = HttpServer::slack();
    let f = Fixture::new(smtp.port());
    slack(&f, smtp.port(), &api, "timeout = \"60s\"");
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    f.run_at("2026-11-24T09:30:21Z", &[], 0);
    f.visitor("c1", "2026-11-25T08:00:00Z", Some("phone"), "+1 555 0100");
    f.end("c1", "2026-11-25T08:00:01Z");
    // The reply is posted (Slack has it), and the run is killed before it hears so.
    let root = api.posted()[0].ts.clone();
    api.script([Reply::Hold(Box::new(Reply::json(200, serde_json::json!({ "ok": true, "ts": "1790000000.999999" }))))]);
    let mut child = f.spawn(&["run", "--now", "2026-11-25T08:01:00Z"]);
    api.wait_for(2);
    child.kill().unwrap();
    child.wait().unwrap();
    api.release();
    f.run_at("2026-11-25T08:05:00Z", &[], 0);
    let requests: Vec<Request> = api.requests();
    assert_eq!(requests.len(), 3);
    let (in_flight, again) = (requests[1].json(), requests[2].json());
    assert_eq!(in_flight, again, "the same message, the same key");
    assert_eq!(again["thread_ts"], root.as_str(), "in the conversation's thread");
    assert_eq!(again["metadata"]["event_payload"]["id"], requests[1].json()["metadata"]["event_payload"]["id"]);
    assert!(again["metadata"]["event_payload"]["id"].as_str().unwrap().starts_with("cn1_"));
}

/// The webhook's documents pinned whole (`tests/golden/webhook-*.json`, the README's examples):
/// a public format receivers parse. After an intended change: `GOLDEN_UPDATE=1 cargo test --test
/// destinations golden`, then read the diff (and the README's examples).
#[test]
fn golden_webhook_documents_for_each_state() {
    let smtp = SmtpServer::start();
    let hook = HttpServer::start();
    let f = Fixture::new(smtp.port());
    webhook(&f, smtp.port(), &hook, "");
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    f.run_at("2026-11-24T09:30:21Z", &[], 0);
    f.visitor("c1", "2026-11-25T08:00:00Z", Some("phone"), "+1 555 0100");
    f.end("c1", "2026-11-25T08:00:01Z");
    f.run_at("2026-11-25T08:01:00Z", &[], 0);
    f.visitor("c1", "2026-11-25T09:00:00Z", None, "Can you call after 5 pm?");
    f.run_at("2026-11-25T09:31:00Z", &[], 0);
    let requests = hook.requests();
    assert_eq!(requests.len(), 3);
    let update = std::env::var_os("GOLDEN_UPDATE").is_some();
    for (r, name) in requests.iter().zip(["webhook-abandoned", "webhook-completed", "webhook-resumed"]) {
        verified(r);
        // Read as the schema's own type, written back byte for byte: the pretty form pinned
        // here is the body as sent, in its field order.
        let doc: chat_notifier::destination::document::Document = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(serde_json::to_vec(&doc).unwrap(), r.body, "the body is the document, exactly");
        let pretty = serde_json::to_string_pretty(&doc).unwrap() + "\n";
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(format!("{name}.json"));
        if update {
            std::fs::write(&path, &pretty).unwrap();
        } else {
            let golden = std::fs::read_to_string(&path).unwrap_or_default();
            assert_eq!(pretty, golden, "{name}.json differs (GOLDEN_UPDATE=1 rewrites it for review)");
        }
    }
}

#[test]
fn the_webhooks_transcript_is_bounded_as_the_emails_are() {
    let smtp = SmtpServer::start();
    let hook = HttpServer::start();
    let f = Fixture::new(smtp.port());
    webhook(&f, smtp.port(), &hook, "");
    f.mail_setting("transcript_messages = 5\nmessage_chars = 20");
    f.conversation("c1", "2026-11-24T09:00:00Z");
    f.visitor("c1", "2026-11-24T08:59:59Z", Some("company"), &format!("Acme\nInc {}", "y".repeat(100_000)));
    for i in 0..12 {
        f.visitor("c1", &format!("2026-11-24T09:00:{i:02}Z"), None, &format!("message {i} {}", "x".repeat(30)));
    }
    f.run_at("2026-11-24T09:31:00Z", &[], 0);
    let doc = verified(&hook.requests()[0]);
    let lines = doc["transcript"]["messages"].as_array().unwrap();
    let shown: Vec<(u64, &str)> =
        lines.iter().map(|l| (l["skipped_before"].as_u64().unwrap(), l["body"].as_str().unwrap())).collect();
    assert_eq!(doc["transcript"]["omitted"], 8);
    assert_eq!(shown.len(), 5, "{shown:#?}");
    assert_eq!(shown[0], (0, "Acme\nInc yyyyyyyyyyy… (99989 more characters not shown)"));
    assert_eq!(shown[1], (0, "message 0 xxxxxxxxxx… (20 more characters not shown)"));
    let company = doc["visitor"]["fields"][0]["value"].as_str().unwrap();
    assert!(company.starts_with("Acme Inc yyy") && company.chars().count() < 560, "one line, cut: {company}");
    assert_eq!(shown[3].0, 8, "the gap after the first three: {shown:#?}");
    assert!(shown[4].1.starts_with("message 11 "), "the latest: {shown:#?}");
    let email = &mails(&smtp)[0];
    assert!(email.text.contains("8 earlier messages not shown"), "the email shows the same: {}", email.text);
    assert!(email.text.contains(company), "the same field value as the email: {}", email.text);
}

#[test]
fn https_verifies_the_certificate_and_never_falls_back_to_plain_text() {
    let smtp = SmtpServer::start();
    let hook = HttpServer::start_tls();
    let f = Fixture::new(smtp.port());
    webhook_to(&f, smtp.port(), &hook.https_url(HOOK_PATH), "");
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    // A certificate the system does not trust: nothing sent, no attempt counted.
    let out = f.run_at("2026-11-24T09:30:21Z", &[], 3);
    assert!(out.stderr.contains("TLS handshake: TLS: invalid peer certificate"), "{}", out.stderr);
    assert!(hook.requests().is_empty(), "nothing sent, in plain text or otherwise");
    assert_eq!(rows(&f, "SELECT status, refusals FROM deliveries"), [["pending", "0"]]);
    // Trusted (the system's roots are where SSL_CERT_FILE says): sent over TLS, once.
    let roots = f.dir.path().join("roots.pem");
    std::fs::write(&roots, hook.certificate.as_deref().unwrap()).unwrap();
    let roots = roots.to_str().unwrap();
    let out = f.run_with_env(&["run", "--now", "2026-11-24T10:00:00Z"], &[("SSL_CERT_FILE", roots)]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let requests = hook.requests();
    assert_eq!(requests.len(), 1);
    verified(&requests[0]);
    assert_eq!(mails(&smtp).len(), 1);
}

#[test]
fn a_destination_taken_out_of_the_config_keeps_what_waits_for_it_and_fails_no_run() {
    let smtp = SmtpServer::start();
    let hook = HttpServer::start();
    let f = Fixture::new(smtp.port());
    webhook(&f, smtp.port(), &hook, "");
    hook.script([Reply::status(503)]);
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    f.run_at("2026-11-24T09:30:21Z", &[], 3);
    f.write_config(smtp.port(), "");
    f.lead_who_leaves("c2", "John Roe", "john@example.com", 5);
    let out = f.run_at("2026-11-24T09:40:00Z", &[], 0);
    assert_eq!((mails(&smtp).len(), out.stderr.as_str()), (2, ""), "emails as usual, quietly");
    let status = f.run(&["status", "--now", "2026-11-24T09:40:00Z"]).stdout;
    assert!(status.contains("destination (no longer configured) crm: 1 waiting, 0 parked"), "{status}");
    // Back in the config: it goes.
    webhook(&f, smtp.port(), &hook, "");
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    let ids: Vec<String> =
        hook.requests().iter().map(|r| r.json()["conversation"]["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, ["c1", "c1"], "c2 was decided while no destination was configured");
}

#[test]
fn a_backoff_holds_the_whole_destination_and_max_per_hour_only_its_own() {
    let smtp = SmtpServer::start();
    let hook = HttpServer::start();
    let f = Fixture::new(smtp.port());
    webhook(&f, smtp.port(), &hook, "max_per_hour = 2");
    // c0's refused (its own failure: the others go), c1's finds the receiver down.
    hook.script([Reply::status(404), Reply::status(503)]);
    for i in 0..4 {
        f.lead_who_leaves(&format!("c{i}"), &format!("Visitor {i}"), &format!("v{i}@example.com"), i);
    }
    f.run_at("2026-11-24T09:34:00Z", &[], 3);
    assert_eq!((hook.requests().len(), mails(&smtp).len()), (2, 4), "every email went");
    // Within the backoff, not even the refused one ahead of it is tried.
    let out = f.run_at("2026-11-24T09:34:30Z", &[], 0);
    assert_eq!((hook.requests().len(), out.stderr.as_str()), (2, ""));
    // Then two an hour, oldest first, counted on this destination's own deliveries.
    f.run_at("2026-11-24T09:40:00Z", &[], 0);
    let ids = |hook: &HttpServer| -> Vec<String> {
        hook.requests().iter().skip(2).map(|r| r.json()["conversation"]["id"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(ids(&hook), ["c0", "c1"]);
    let status = f.run(&["status", "--json", "--now", "2026-11-24T09:40:00Z"]).stdout;
    assert!(status.contains("\"pending\": 2"), "{status}");
    f.run_at("2026-11-24T10:20:00Z", &[], 0);
    assert_eq!(ids(&hook).len(), 2, "within the hour");
    f.run_at("2026-11-24T10:40:00Z", &[], 0);
    assert_eq!(ids(&hook), ["c0", "c1", "c2", "c3"], "in order, each once");
}

#[test]
fn a_slack_incoming_webhook_gets_plain_messages_with_the_identifier_and_no_threads() {
    let smtp = SmtpServer::start();
    let hook = HttpServer::start();
    let f = Fixture::new(smtp.port());
    std::fs::write(f.dir.path().join("slack.url"), hook.url("/services/T000/B000/XXXX") + "\n").unwrap();
    f.write_config(
        smtp.port(),
        "[[destinations]]\nname = \"alerts\"\nkind = \"slack-webhook\"\nurl_file = \"slack.url\"\nmax_attempts = 1\n",
    );
    hook.answer(Reply::Status { status: 200, headers: Vec::new(), body: "ok".into() });
    f.lead_who_leaves("c1", "Jane <!here> Doe", "jane@example.com", 0);
    f.run_at("2026-11-24T09:30:21Z", &[], 0);
    f.visitor("c1", "2026-11-25T08:00:00Z", Some("phone"), "+1 555 0100");
    f.end("c1", "2026-11-25T08:00:01Z");
    f.run_at("2026-11-25T08:01:00Z", &[], 0);
    let requests = hook.requests();
    assert_eq!(requests.len(), 2);
    let id = identifier(&mails(&smtp)[0].subject).to_owned();
    for r in &requests {
        let body = r.json();
        assert!(body["text"].as_str().unwrap().contains(&format!("[#{id}]")), "{body}");
        assert!(body.get("thread_ts").is_none() && body.get("channel").is_none(), "{body}");
        assert!(!r.body.windows(7).any(|w| w == b"<!here>"), "escaped");
    }
    // Slack says no_service for a URL revoked: this notification refused, parked at max_attempts.
    hook.answer(Reply::Status { status: 404, headers: Vec::new(), body: "no_service".into() });
    f.lead_who_leaves("c2", "John Roe", "john@example.com", 40);
    let out = f.run_at("2026-11-25T08:40:00Z", &[], 3);
    assert!(
        out.stderr.contains("parked after 1 failures of its own: Slack incoming webhook http://127.0.0.1:"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("answered 404: no_service") && !out.stderr.contains("XXXX"), "{}", out.stderr);
}

#[test]
fn a_silent_bots_alarm_and_all_clear_reach_the_destinations_in_one_slack_thread() {
    let smtp = SmtpServer::start();
    let hook = HttpServer::start();
    let api = HttpServer::slack();
    let f = Fixture::new(smtp.port());
    std::fs::write(f.dir.path().join("hook.url"), hook.url(HOOK_PATH) + "\n").unwrap();
    std::fs::write(f.dir.path().join("hook.secret"), format!("{SECRET}\n")).unwrap();
    std::fs::write(f.dir.path().join("slack.token"), "xoxb-test-token\n").unwrap();
    f.write_config(
        smtp.port(),
        &format!(
            "alert_if_silent = \"6h\"\n[[destinations]]\nname = \"crm\"\nkind = \"webhook\"\nurl_file = \"hook.url\"\n\
             secret_file = \"hook.secret\"\n[[destinations]]\nname = \"sales\"\nkind = \"slack\"\n\
             token_file = \"slack.token\"\nchannel = \"C0LEADS\"\napi_url = \"{}\"\n",
            api.url("/api")
        ),
    );
    f.conversation("a", "2026-11-24T09:12:00Z");
    f.visitor("a", "2026-11-24T09:12:00Z", None, "hello?");
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    f.run_at("2026-11-24T15:12:00Z", &[], 0);
    f.run_at("2026-11-24T18:00:00Z", &[], 0);
    f.conversation("b", "2026-11-25T07:40:00Z");
    f.visitor("b", "2026-11-25T07:40:00Z", None, "hello?");
    f.run_at("2026-11-25T07:45:00Z", &[], 0);
    let alarms: Vec<serde_json::Value> =
        hook.requests().iter().map(verified).filter(|d| d["event"].as_str().unwrap().starts_with("bot.")).collect();
    assert_eq!(alarms.len(), 2, "one alarm, never repeated, one all-clear: {alarms:#?}");
    assert_eq!(alarms[0]["event"], "bot.silent");
    assert_eq!(alarms[0]["bot"], serde_json::json!({ "id": "lead", "name": "Lead Bot" }));
    assert_eq!(alarms[0]["silent_since"], "2026-11-24T09:12:00Z");
    assert_eq!(
        alarms[0]["message"],
        "No chats recorded for Lead Bot since 2026-11-24 09:12 (UTC): is the bot or its export stuck?"
    );
    assert_eq!(
        (alarms[1]["event"].as_str(), alarms[1]["back_at"].as_str()),
        (Some("bot.active"), Some("2026-11-25T07:40:00Z"))
    );
    let events: Vec<String> =
        hook.requests().iter().map(|r| r.header("chat-notifier-event").unwrap().to_owned()).collect();
    assert!(events.iter().any(|e| e == "bot.silent") && events.iter().any(|e| e == "bot.active"), "{events:?}");
    let posted = api.posted();
    let raised =
        posted.iter().find(|p| p.body["text"].as_str().unwrap().contains("No chats recorded")).expect("the alarm");
    let cleared =
        posted.iter().find(|p| p.body["text"].as_str().unwrap().contains("coming in again")).expect("the all-clear");
    assert_eq!(
        (raised.thread_ts.as_deref(), cleared.thread_ts.as_deref()),
        (None, Some(raised.ts.as_str())),
        "one thread"
    );
}

#[test]
fn each_conversation_is_one_discord_forum_post_across_its_states() {
    let smtp = SmtpServer::start();
    let discord = HttpServer::discord();
    let f = Fixture::new(smtp.port());
    std::fs::write(f.dir.path().join("discord.url"), discord.url("/api/webhooks/42/token") + "\n").unwrap();
    f.write_config(smtp.port(), "[[destinations]]\nname = \"forum\"\nkind = \"discord\"\nurl_file = \"discord.url\"\n");
    f.lead_who_leaves("c1", "Jane **@everyone** Doe", "jane@example.com", 0);
    f.lead_who_leaves("c2", "John Roe", "john@example.com", 1);
    f.run_at("2026-11-24T09:31:21Z", &[], 0);
    f.visitor("c1", "2026-11-25T08:00:00Z", Some("phone"), "+1 555 0100");
    f.end("c1", "2026-11-25T08:00:01Z");
    f.run_at("2026-11-25T08:01:00Z", &[], 0);
    let posted = discord.posted();
    assert_eq!(posted.len(), 3);
    let posts: Vec<_> = posted.iter().filter(|p| p.thread_ts.is_none()).collect();
    assert_eq!(posts.len(), 2, "one forum post per conversation");
    let jane = posts.iter().find(|p| p.body["thread_name"].as_str().unwrap().contains("Jane")).unwrap();
    let id = identifier(&mails(&smtp)[0].subject).to_owned();
    let title = jane.body["thread_name"].as_str().unwrap();
    assert!(title.ends_with(&format!("[#{id}]")) && title.chars().count() <= 100, "{title}");
    let reply = posted.iter().find(|p| p.thread_ts.is_some()).unwrap();
    assert_eq!(reply.channel, jane.channel, "the completion is in Jane's post");
    assert!(reply.body.get("thread_name").is_none());
    assert!(reply.body["content"].as_str().unwrap().contains("finished the chat"), "{}", reply.body);
    for p in &posted {
        assert_eq!(p.body["allowed_mentions"], serde_json::json!({ "parse": [] }), "pings no one");
        assert!(p.body["content"].as_str().unwrap().chars().count() <= 2000);
    }
    assert!(jane.body["content"].as_str().unwrap().contains("Jane \\*\\*@everyone\\*\\* Doe"), "{}", jane.body);
    // A webhook deleted in Discord (Unknown Webhook): refused, parked after max_attempts.
    std::fs::write(f.dir.path().join("discord.url"), discord.url("/api/webhooks/41/gone") + "\n").unwrap();
    f.lead_who_leaves("c3", "Ann Lee", "ann@example.com", 40);
    let out = f.run_at("2026-11-25T08:40:00Z", &[], 3);
    assert!(out.stderr.contains("answered 404") && out.stderr.contains("Unknown Webhook"), "{}", out.stderr);
    assert!(!out.stderr.contains("gone"), "the URL's token is never shown: {}", out.stderr);
}

#[test]
fn prune_keeps_a_conversation_whose_notification_waits_and_removes_its_deliveries_once_gone() {
    let smtp = SmtpServer::start();
    let hook = HttpServer::start();
    let f = Fixture::new(smtp.port());
    webhook(&f, smtp.port(), &hook, "");
    hook.answer(Reply::status(503));
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    f.run_at("2026-11-24T09:30:21Z", &[], 3);
    let prune = f.run(&["prune", "--older-than", "30d", "--now", "2027-01-15T00:00:00Z"]);
    assert_eq!(prune.code, 0, "{}", prune.stderr);
    assert_eq!(f.tracked(), ["c1"], "its notification still waits: kept");
    hook.answer(Reply::status(200));
    f.run_at("2027-01-15T00:00:00Z", &[], 0);
    assert_eq!(hook.requests().len(), 2, "it went, late, once");
    f.run(&["prune", "--older-than", "30d", "--now", "2027-01-15T00:00:00Z"]);
    assert!(f.tracked().is_empty());
    assert_eq!(rows(&f, "SELECT count(*) FROM deliveries"), [["0"]], "its deliveries pruned with it");
}

// The flood guard, per destination.

/// A webhook's summary, verified: the listed conversations' ids, in order.
fn listed_ids(summary: &serde_json::Value) -> Vec<String> {
    summary["conversations"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn a_burst_over_a_webhooks_burst_goes_as_the_first_ones_and_one_summary_beside_the_emails_own_guard() {
    let smtp = SmtpServer::start();
    let hook = HttpServer::start();
    let f = Fixture::new(smtp.port());
    webhook(&f, smtp.port(), &hook, "burst = 3");
    f.mail_setting("burst = 5");
    for i in 0..8 {
        f.lead_who_leaves(&format!("c{i}"), &format!("Visitor {i}"), &format!("v{i}@example.com"), i);
    }
    let out = f.run_at("2026-11-24T10:00:00Z", &[], 0);
    let docs: Vec<serde_json::Value> = hook.requests().iter().map(verified).collect();
    assert_eq!(docs.len(), 4, "three one by one and one summary: {}", out.stderr);
    let one_by_one: Vec<&str> = docs[..3].iter().map(|d| d["conversation"]["id"].as_str().unwrap()).collect();
    assert_eq!(one_by_one, ["c0", "c1", "c2"]);
    let summary = &docs[3];
    assert_eq!((summary["version"].as_u64(), summary["event"].as_str()), (Some(1), Some("summary")));
    assert_eq!(hook.requests()[3].header("chat-notifier-event"), Some("summary"));
    assert_eq!((summary["burst"].as_u64(), summary["queued"].as_u64()), (Some(3), Some(8)));
    assert_eq!(listed_ids(summary), ["c3", "c4", "c5", "c6", "c7"], "exactly the rest, in order");
    let first = &summary["conversations"][0];
    assert_eq!((first["state"].as_str(), first["visitor"].as_str()), (Some("abandoned"), Some("Visitor 3")));
    assert_eq!(first["bot"], serde_json::json!({ "id": "lead", "name": "Lead Bot" }));
    assert!(first["notification_id"].as_str().unwrap().starts_with("cn1_"));
    // The emails' own guard, on mail.burst, as before: five one by one and one summary email.
    let m = mails(&smtp);
    assert_eq!(m.len(), 6);
    assert!(m[5].subject.starts_with("3 more chats in one run, listed here"), "{}", m[5].subject);
    assert_eq!(identifier(&m[3].subject), first["identifier"].as_str().unwrap(), "the emails' identifiers");
    // What the summary lists is marked so, and never goes one by one.
    let marked = rows(
        &f,
        "SELECT conversation_id FROM deliveries WHERE status = 'summarised' AND last_error LIKE 'listed in cn1_%' \
         ORDER BY id",
    );
    assert_eq!(marked.concat(), ["c3", "c4", "c5", "c6", "c7"]);
    f.run_at("2026-11-24T10:30:00Z", &[], 0);
    f.run_at("2026-11-24T11:30:00Z", &[], 0);
    assert_eq!(hook.requests().len(), 4, "nothing listed goes later");
    // A listed conversation that comes back and finishes gets its own notification.
    f.visitor("c4", "2026-11-24T12:00:00Z", Some("phone"), "+1 555 0100");
    f.end("c4", "2026-11-24T12:00:01Z");
    f.run_at("2026-11-24T12:01:00Z", &[], 0);
    let requests = hook.requests();
    assert_eq!(requests.len(), 5);
    let back = verified(&requests[4]);
    assert_eq!((back["conversation"]["id"].as_str(), back["state"].as_str()), (Some("c4"), Some("completed")));
}

#[test]
fn at_its_burst_a_destination_gets_each_one_by_one_and_the_default_burst_is_mail_bursts_default() {
    let smtp = SmtpServer::start();
    let hook = HttpServer::start();
    let f = Fixture::new(smtp.port());
    // mail.burst = 2 is the inbox's: the webhook keeps the default (50).
    webhook(&f, smtp.port(), &hook, "");
    f.mail_setting("burst = 2");
    for i in 0..4 {
        f.lead_who_leaves(&format!("c{i}"), &format!("Visitor {i}"), &format!("v{i}@example.com"), i);
    }
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    let events: Vec<String> =
        hook.requests().iter().map(|r| verified(r)["event"].as_str().unwrap().to_owned()).collect();
    assert_eq!(events, ["conversation.abandoned"; 4]);
    assert_eq!(mails(&smtp).len(), 3, "the inbox's own guard: two and a summary");
    // A burst of 0 is refused, naming the key.
    webhook(&f, smtp.port(), &hook, "burst = 0");
    let check = f.run(&["check"]);
    assert!(check.stdout.contains("destinations[0] (name = \"crm\").burst: must be at least 1"), "{}", check.stdout);
}

#[test]
fn killed_mid_summary_the_summary_goes_again_once_with_the_same_key() {
    let smtp = SmtpServer::start();
    let hook = HttpServer::start();
    let f = Fixture::new(smtp.port());
    webhook(&f, smtp.port(), &hook, "burst = 1\ntimeout = \"60s\"");
    hook.script([Reply::status(200), Reply::Hold(Box::new(Reply::status(200)))]);
    for i in 0..3 {
        f.lead_who_leaves(&format!("c{i}"), &format!("Visitor {i}"), &format!("v{i}@example.com"), i);
    }
    let mut child = f.spawn(&["run", "--now", "2026-11-24T10:00:00Z"]);
    hook.wait_for(2);
    // The receiver has the summary; the run waits for its answer.
    child.kill().unwrap();
    child.wait().unwrap();
    hook.release();
    f.run_at("2026-11-24T10:05:00Z", &[], 0);
    f.run_at("2026-11-24T10:10:00Z", &[], 0);
    let requests = hook.requests();
    assert_eq!(requests.len(), 3, "the summary in flight again, once; nothing else");
    let (in_flight, again) = (verified(&requests[1]), verified(&requests[2]));
    assert_eq!(in_flight["event"], "summary");
    assert_eq!(requests[1].header("idempotency-key"), requests[2].header("idempotency-key"), "the same key");
    assert_eq!(requests[1].body, requests[2].body, "the same body");
    assert_eq!(listed_ids(&again), ["c1", "c2"]);
    assert_eq!(
        rows(&f, "SELECT count(*) FROM deliveries WHERE state = 'summary'"),
        [["1"]],
        "one summary, never a second for the same chats"
    );
}

#[test]
fn a_burst_over_a_slack_destinations_burst_is_one_message_listing_the_rest() {
    let smtp = SmtpServer::start();
    let api = HttpServer::slack();
    let f = Fixture::new(smtp.port());
    slack(&f, smtp.port(), &api, "burst = 2");
    for i in 0..5 {
        f.lead_who_leaves(&format!("c{i}"), &format!("Visitor <!here> {i}"), &format!("v{i}@example.com"), i);
    }
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    let posted = api.posted();
    assert_eq!(posted.len(), 3, "two chats and one summary");
    assert!(posted.iter().all(|p| p.thread_ts.is_none()), "no thread per listed chat");
    let summary = &posted[2];
    assert_eq!(summary.body["text"], "3 more chats in one run, listed here");
    assert_eq!(summary.body["metadata"]["event_payload"]["state"], "summary");
    let all = serde_json::to_string(&summary.body["blocks"]).unwrap();
    let m = mails(&smtp);
    for (i, mail) in m.iter().enumerate() {
        let listed = all.contains(&format!("`#{}`", identifier(&mail.subject)));
        assert_eq!(listed, i >= 2, "chat {i}: {all}");
    }
    assert!(!all.contains("<!here>") && all.contains("&lt;!here&gt;"), "escaped: {all}");
    // A listed chat that comes back starts its own thread.
    f.visitor("c3", "2026-11-24T12:00:00Z", Some("phone"), "+1 555 0100");
    f.end("c3", "2026-11-24T12:00:01Z");
    f.run_at("2026-11-24T12:01:00Z", &[], 0);
    let posted = api.posted();
    assert_eq!(posted.len(), 4);
    assert_eq!(posted[3].thread_ts, None, "its first message at Slack");
    assert!(posted[3].body["text"].as_str().unwrap().contains("finished the chat"), "{:?}", posted[3].body);
}

#[test]
fn what_waits_for_a_destinations_hourly_limit_does_not_count_toward_its_burst() {
    let smtp = SmtpServer::start();
    let hook = HttpServer::start();
    let f = Fixture::new(smtp.port());
    webhook(&f, smtp.port(), &hook, "max_per_hour = 2\nburst = 3");
    // One new chat every 20 minutes for four hours: three an hour, two delivered an hour, so a
    // backlog builds, but no run ever queues more than one new notification.
    let mut now = chrono::DateTime::parse_from_rfc3339("2026-11-24T10:00:00Z").unwrap().to_utc();
    let at = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for i in 0..12u32 {
        let id = format!("c{i}");
        f.conversation(&id, &at(now - chrono::TimeDelta::minutes(45)));
        f.visitor(&id, &at(now - chrono::TimeDelta::minutes(45)), Some("email"), &format!("v{i}@example.com"));
        f.run_at(&at(now), &[], 0);
        now += chrono::TimeDelta::minutes(20);
    }
    assert_eq!(rows(&f, "SELECT count(*) FROM deliveries WHERE status = 'summarised'"), [["0"]]);
    for hour in 0..6 {
        f.run_at(&at(now + chrono::TimeDelta::hours(hour)), &[], 0);
    }
    let ids: Vec<String> =
        hook.requests().iter().map(|r| verified(r)["conversation"]["id"].as_str().unwrap().to_owned()).collect();
    let expected: Vec<String> = (0..12).map(|i| format!("c{i}")).collect();
    assert_eq!(ids, expected, "every chat once, in order, none summarised");
}

// Digests, per destination.

#[test]
fn a_destination_with_digest_true_gets_the_bots_digest_in_one_notification_and_the_others_each_chat_at_once() {
    let smtp = SmtpServer::start();
    let hook = HttpServer::start();
    let api = HttpServer::slack();
    let f = Fixture::new(smtp.port());
    std::fs::write(f.dir.path().join("hook.url"), format!("{}\n", hook.url(HOOK_PATH))).unwrap();
    std::fs::write(f.dir.path().join("hook.secret"), format!("{SECRET}\n")).unwrap();
    std::fs::write(f.dir.path().join("slack.token"), "xoxb-test-token\n").unwrap();
    std::fs::write(f.dir.path().join("daily.url"), format!("{}\n", hook.url("/daily"))).unwrap();
    f.write_config(
        smtp.port(),
        &format!(
            "[[destinations]]\nname = \"crm\"\nkind = \"webhook\"\nurl_file = \"hook.url\"\n\
             secret_file = \"hook.secret\"\ntimeout = \"3s\"\n\
             [[destinations]]\nname = \"daily\"\nkind = \"webhook\"\nurl_file = \"daily.url\"\n\
             secret_file = \"hook.secret\"\ntimeout = \"3s\"\ndigest = true\n\
             [[destinations]]\nname = \"sales\"\nkind = \"slack\"\ntoken_file = \"slack.token\"\n\
             channel = \"C0LEADS\"\napi_url = \"{}\"\ntimeout = \"5s\"\ndigest = true\n",
            api.url("/api")
        ),
    );
    f.daily_digest(smtp.port());
    f.gives_name_only("anon1", "Ann", "2026-11-24T10:00:00Z");
    f.gives_name_only("anon2", "Ben", "2026-11-24T11:00:00Z");
    f.lead_who_leaves("lead", "Lea", "lea@example.com", 5); // left an email: her own email
    f.run_at("2026-11-24T12:00:00Z", &[], 0);
    let crm = |hook: &HttpServer| -> Vec<String> {
        let to_crm = hook.requests().into_iter().filter(|r| r.path == HOOK_PATH);
        to_crm.map(|r| verified(&r)["conversation"]["id"].as_str().unwrap().to_owned()).collect()
    };
    let daily = |hook: &HttpServer| -> Vec<serde_json::Value> {
        hook.requests().iter().filter(|r| r.path == "/daily").map(verified).collect()
    };
    let mut at_once = crm(&hook);
    at_once.sort();
    assert_eq!(at_once, ["anon1", "anon2", "lead"], "the webhook: each chat at once");
    let posted = api.posted();
    assert_eq!(posted.len(), 1, "Slack: Lea's alone, the others wait for the digest");
    assert!(posted[0].body["text"].as_str().unwrap().contains("Lea"));

    f.run_at("2026-11-25T07:59:00Z", &[], 0);
    assert_eq!(api.posted().len(), 1, "not yet eight");
    f.run_at("2026-11-25T08:00:00Z", &[], 0);
    f.run_at("2026-11-25T08:30:00Z", &[], 0);
    let m = mails(&smtp);
    let digest = m.iter().find(|m| m.subject.starts_with("Digest for 2026-11-25: 2 chats")).expect("the digest email");
    let posted = api.posted();
    assert_eq!(posted.len(), 2, "one digest message, once");
    let message = &posted[1];
    assert_eq!(
        (message.body["text"].as_str(), message.thread_ts.as_deref()),
        (Some("Digest for 2026-11-25: 2 chats"), None)
    );
    assert_eq!(message.body["metadata"]["event_payload"]["state"], "digest");
    let blocks = serde_json::to_string(&message.body["blocks"]).unwrap();
    for line in digest.text.lines().filter(|l| l.starts_with("- #")) {
        let id = line[3..].split_whitespace().next().unwrap();
        assert!(blocks.contains(&format!("`#{id}`")), "{id} in {blocks}");
    }
    assert!(blocks.contains("Ann") && blocks.contains("Ben") && !blocks.contains(" Lea,"), "{blocks}");
    assert_eq!(crm(&hook).len(), 3, "the webhook without digest got nothing more");
    let docs = daily(&hook);
    let events: Vec<&str> = docs.iter().map(|d| d["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["conversation.abandoned", "digest"], "the webhook with digest = true: Lea's, then the digest");
    assert_eq!(docs[0]["conversation"]["id"], "lead");
    let docs = &docs[1..];
    assert_eq!((docs[0]["version"].as_u64(), docs[0]["event"].as_str()), (Some(1), Some("digest")));
    assert_eq!(
        (docs[0]["day"].as_str(), docs[0]["title"].as_str()),
        (Some("2026-11-25"), Some("Digest for 2026-11-25: 2 chats"))
    );
    let listed: Vec<&str> =
        docs[0]["conversations"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(listed, ["anon1", "anon2"]);
    assert_eq!(
        rows(&f, "SELECT destination, state, status FROM deliveries WHERE conversation_id = 'anon1' ORDER BY id"),
        [["crm", "abandoned", "sent"], ["daily", "abandoned", "summarised"], ["sales", "abandoned", "summarised"]]
    );

    // Ann comes back and finishes: her own notification everywhere, her first message at Slack.
    f.visitor("anon1", "2026-11-25T09:00:00Z", Some("email"), "ann@example.com");
    f.end("anon1", "2026-11-25T09:00:01Z");
    f.run_at("2026-11-25T09:01:00Z", &[], 0);
    let posted = api.posted();
    assert_eq!(posted.len(), 3);
    assert!(posted[2].body["text"].as_str().unwrap().contains("Ann finished the chat"), "{:?}", posted[2].body);
    assert_eq!(posted[2].thread_ts, None);
    assert_eq!(crm(&hook).last().map(String::as_str), Some("anon1"));
    assert_eq!((crm(&hook).len(), daily(&hook).len()), (4, 3), "a completion is no digest state: at once");
    assert_eq!(daily(&hook)[2]["event"], "conversation.completed");
}

#[test]
fn killed_mid_digest_the_destinations_digest_goes_again_once_with_the_same_key() {
    let smtp = SmtpServer::start();
    let hook = HttpServer::start();
    let f = Fixture::new(smtp.port());
    webhook(&f, smtp.port(), &hook, "digest = true\ntimeout = \"60s\"");
    f.daily_digest(smtp.port());
    f.gives_name_only("anon1", "Ann", "2026-11-24T10:00:00Z");
    f.gives_name_only("anon2", "Ben", "2026-11-24T11:00:00Z");
    f.run_at("2026-11-24T12:00:00Z", &[], 0);
    assert_eq!(hook.requests().len(), 0, "both wait for the digest");
    hook.script([Reply::Hold(Box::new(Reply::status(200)))]);
    let mut child = f.spawn(&["run", "--now", "2026-11-25T08:00:00Z"]);
    hook.wait_for(1);
    // The receiver has the digest; the run waits for its answer.
    child.kill().unwrap();
    child.wait().unwrap();
    hook.release();
    f.run_at("2026-11-25T08:05:00Z", &[], 0);
    f.run_at("2026-11-25T08:30:00Z", &[], 0);
    let requests = hook.requests();
    assert_eq!(requests.len(), 2, "the digest in flight again, once");
    let (in_flight, again) = (verified(&requests[0]), verified(&requests[1]));
    assert_eq!(in_flight["event"], "digest");
    assert_eq!(requests[0].header("idempotency-key"), requests[1].header("idempotency-key"), "the same key");
    assert_eq!(requests[0].body, requests[1].body, "the same body");
    assert_eq!(again["conversations"].as_array().unwrap().len(), 2);
    let digests = mails(&smtp).into_iter().filter(|m| m.subject.starts_with("Digest for 2026-11-25")).count();
    assert_eq!(digests, 1, "the email's digest once");
}

#[test]
fn prune_keeps_a_conversation_whose_notification_waits_for_a_destinations_digest() {
    let smtp = SmtpServer::start();
    let hook = HttpServer::start();
    let f = Fixture::new(smtp.port());
    webhook(&f, smtp.port(), &hook, "digest = true");
    f.daily_digest(smtp.port());
    f.gives_name_only("anon1", "Ann", "2026-11-24T10:00:00Z");
    f.run_at("2026-11-24T12:00:00Z", &[], 0);
    let out = f.run(&["prune", "--older-than", "1h", "--now", "2026-11-24T23:00:00Z"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    f.run_at("2026-11-25T08:00:00Z", &[], 0);
    let docs: Vec<serde_json::Value> = hook.requests().iter().map(verified).collect();
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["event"], "digest");
    assert_eq!(docs[0]["conversations"][0]["id"], "anon1", "{:#}", docs[0]);
}
