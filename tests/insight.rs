//! What the owner can ask: status, completions, the man page. Through the built binary.

mod support;

use support::{Behavior, Fixture, SmtpServer, mails};

#[test]
fn status_lists_each_conversation_where_it_stands_and_changes_nothing() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.write_config(server.port(), "[[bots]]\nid = \"support\"\n[bots.notify]\nrequire_fields = [\"phone\"]");
    f.lead_who_leaves("sent", "Sam Lee", "sam@example.com", 0);
    f.end("sent", "2026-11-24T09:00:30Z");
    f.lead_who_leaves("refused", "Rita Refused", "rita@example.com", 1);
    f.conversation_of("support", "held", "2026-11-24T09:02:00Z");
    f.visitor("held", "2026-11-24T09:02:10Z", Some("name"), "Hal Held");
    server.set(Behavior::RejectDataContaining { needle: "Rita Refused".into(), reply: "451 4.3.0 later".into() });
    f.run_at("2026-11-24T10:00:00Z", &[], 3);
    f.lead_who_leaves("typing", "Tina Typing", "tina@example.com", 58);
    f.visitor("typing", "2026-11-24T10:04:00Z", None, "still here");
    f.run_at("2026-11-24T10:05:00Z", &[], 3);

    let before = f.state_dump();
    let out = f.run(&["status", "--now", "2026-11-24T10:06:00Z"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("0 parked, 1 failed, 0 pending, 1 waiting, 1 held, 1 notified"), "{}", out.stdout);
    let standing =
        |visitor: &str| lines.iter().find(|l| l.contains(visitor)).map(|l| l.split_whitespace().collect::<Vec<_>>());
    assert!(standing("Rita Refused").unwrap().contains(&"failed"));
    assert!(lines.iter().any(|l| l.contains("Rita Refused") && l.contains("451")), "the last error: {}", out.stdout);
    assert!(standing("Tina Typing").unwrap().contains(&"waiting"));
    assert!(standing("Hal Held").unwrap().contains(&"held"));
    assert!(standing("Sam Lee").unwrap().contains(&"notified"));
    assert!(f.state_dump() == before, "status changes no state");

    let out = f.run(&["status", "--json", "--now", "2026-11-24T10:06:00Z", "--bot", "support"]);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    let rows = json["conversations"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["state"], "held");
    assert_eq!(rows[0]["visitor"], "Hal Held");
    assert_eq!(json["summary"]["held"], 1);

    let out = f.run(&["status", "--state", "failed", "--now", "2026-11-24T10:06:00Z"]);
    assert_eq!(out.stdout.lines().count(), 3, "summary, header, one row: {}", out.stdout);
}

/// A busy site has thousands of chats in progress: status counts them all and lists the most
/// urgent (50 by default), reading names from the source for those only.
#[test]
fn status_lists_the_most_urgent_and_counts_the_rest() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.run_at("2026-11-24T09:00:00Z", &[], 0); // the first run, before the chats
    for i in 0..60 {
        let id = format!("t{i:02}");
        f.conversation(&id, "2026-11-24T10:30:00Z");
        f.visitor(&id, &format!("2026-11-24T10:30:{i:02}Z"), Some("name"), &format!("Visitor {i:02}"));
    }
    f.run_at("2026-11-24T10:31:00Z", &[], 0); // all still typing
    let now = ["--now", "2026-11-24T10:31:00Z"];
    let out = f.run(&[&["status"][..], &now].concat());
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("0 parked, 0 failed, 0 pending, 60 waiting"), "{}", out.stdout);
    assert_eq!(lines.len(), 1 + 1 + 50 + 1, "counts, header, 50 rows, the note: {}", out.stdout);
    assert!(lines[2].contains("Visitor 59"), "the most recent first: {}", lines[2]);
    assert_eq!(lines[52], "... and 10 more, less urgent (--limit N, or --all to list every one)");
    let all = f.run(&[&["status", "--all"][..], &now].concat());
    assert_eq!(all.stdout.lines().count(), 62, "{}", all.stdout);
    let json = f.run(&[&["status", "--json", "--limit", "5", "--bot", "lead"][..], &now].concat());
    let json: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    assert_eq!((json["conversations"].as_array().unwrap().len(), &json["not_listed"]), (5, &serde_json::json!(55)));
    assert_eq!(json["summary"]["waiting"], 60, "a bot the state has not learned yet is the source's");
}

#[test]
fn completions_and_man_page_come_from_the_command_line_definition() {
    let f = Fixture::new(1);
    std::fs::remove_file(&f.config).unwrap(); // they need no config
    for shell in ["bash", "zsh", "fish"] {
        let out = f.run(&["completions", shell]);
        assert_eq!(out.code, 0, "{shell}: {}", out.stderr);
        for word in ["chat-notifier", "prune", "status", "dry-run"] {
            assert!(out.stdout.contains(word), "{shell} completions name {word}");
        }
    }
    let out = f.run(&["man"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains(".TH chat-notifier 1"), "{}", &out.stdout[..200.min(out.stdout.len())]);
    assert!(out.stdout.contains("prune") && out.stdout.contains("check"));
    let version = f.run(&["--version"]);
    assert_eq!(version.stdout.trim(), format!("chat-notifier {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn preview_shows_the_next_email_and_the_last_one_exactly_as_sent() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.lead_who_leaves("c1", "Jane Doe", "jane@example.com", 0);
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    let sent = support::Mail::read(&server.received()[0]);
    let identifier = support::identifier(&sent.subject).to_owned();

    // --last, by identifier as the subject shows it: the same email, body rendered again.
    let out = f.run(&["preview", &format!("[#{identifier}]"), "--last"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains(&format!("Message-ID: <{}>", sent.message_id)), "{}", out.stdout);
    let text = out.stdout.split_once("\n\n").unwrap().1.split("\n======").next().unwrap();
    assert_eq!(text.trim_end(), sent.text.trim_end(), "the body as it was sent");

    // The visitor is back: the next email, in the same thread, not sent and not recorded.
    f.visitor("c1", "2026-11-25T09:00:00Z", Some("phone"), "<b>555</b>");
    let before = f.state_dump();
    let html = f.dir.path().join("preview.html");
    let out = f.run(&["preview", "c1", "--now", "2026-11-25T09:05:00Z", "--html", html.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains(&format!("Subject: Re: {}", sent.subject)), "{}", out.stdout);
    assert!(out.stdout.contains(&format!("In-Reply-To: <{}>", sent.message_id)));
    assert!(out.stdout.contains("came back to the chat"), "{}", out.stdout);
    assert!(out.stderr.contains("the visitor wrote 5 min ago"), "{}", out.stderr);
    assert!(std::fs::read_to_string(&html).unwrap().contains("&lt;b&gt;555&lt;&#x2f;b&gt;"));
    assert!(f.state_dump() == before, "preview changes no state");
    assert_eq!(server.received().len(), 1);

    let out = f.run(&["preview", "nope"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("no conversation with id or identifier \"nope\""), "{}", out.stderr);
}

/// A funnel the test knows: 10 chats with the lead bot. 4 finish (one of them after coming back
/// a day later), 3 stop at ask_email without answering it, 2 stop at ask_phone after giving
/// their email (leads to follow up), 1 stops at ask_name.
fn known_funnel(f: &Fixture) {
    let chat = |id: &str, steps: &[(&str, Option<&str>)], finish: bool, back_after_days: i64| {
        f.conversation(id, "2026-11-24T09:00:00Z");
        let mut minute = 0;
        let mut at = |extra: i64| {
            minute += 1;
            (chrono::DateTime::parse_from_rfc3339("2026-11-24T09:00:00Z").unwrap()
                + chrono::TimeDelta::minutes(minute)
                + chrono::TimeDelta::days(extra))
            .to_rfc3339()
        };
        for (i, (step, field)) in steps.iter().enumerate() {
            let later = if i + 1 == steps.len() { back_after_days } else { 0 };
            f.bot(id, &at(0), step, "text", "Question?");
            if let Some(field) = field {
                f.message(id, &at(later), "visitor", Some(step), None, Some(field), "answer@example.com");
            }
        }
        if finish {
            f.end(id, &at(back_after_days));
        }
    };
    let all = [("ask_name", Some("name")), ("ask_email", Some("email")), ("ask_phone", Some("phone"))];
    for i in 0..3 {
        chat(&format!("done{i}"), &all, true, 0);
    }
    chat("back", &all, true, 1);
    for i in 0..3 {
        chat(&format!("mail{i}"), &[all[0], ("ask_email", None)], false, 0);
    }
    for i in 0..2 {
        chat(&format!("phone{i}"), &[all[0], all[1], ("ask_phone", None)], false, 0);
    }
    chat("name0", &[("ask_name", None)], false, 0);
}

#[test]
fn report_figures_match_a_known_funnel() {
    let f = Fixture::new(1);
    known_funnel(&f);
    let out = f.run(&["report", "--format", "json", "--now", "2026-11-30T00:00:00Z"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let lead = &json["bots"][0];
    assert_eq!(lead["bot_id"], "lead");
    assert_eq!(lead["conversations"], 10);
    assert_eq!(lead["completed"], 4);
    assert_eq!(lead["completion_rate"], 0.4);
    assert_eq!(lead["leads_to_follow_up"], 2, "the two who gave an email and stopped at the phone");
    assert_eq!(lead["abandoned"], 7, "six that stopped, and the one that came back a day later");
    let steps: Vec<(String, u64, u64, bool)> = lead["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap().to_owned(),
                s["reached"].as_u64().unwrap(),
                s["stopped"].as_u64().unwrap(),
                s["worst"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("ask_name".to_owned(), 10, 1, false),
            ("ask_email".to_owned(), 9, 3, true),
            ("ask_phone".to_owned(), 6, 2, false),
        ]
    );

    let table = f.run(&["report", "--now", "2026-11-30T00:00:00Z"]).stdout;
    assert!(table.lines().any(|l| l.contains("ask_email") && l.contains("most stop here")), "{table}");
    let csv = f.run(&["report", "--format", "csv", "--now", "2026-11-30T00:00:00Z"]).stdout;
    assert_eq!(
        csv,
        "kind,bot_id,bot_name,conversations,completion_rate,in_progress,step,question,reached,stopped,stopped_share,\
         worst,day,started,completed,abandoned\n\
         step,lead,Lead Bot,10,0.4000,0,ask_name,Question?,10,1,0.1000,false,,,,\n\
         step,lead,Lead Bot,10,0.4000,0,ask_email,Question?,9,3,0.3333,true,,,,\n\
         step,lead,Lead Bot,10,0.4000,0,ask_phone,Question?,6,2,0.3333,false,,,,\n\
         day,lead,Lead Bot,10,0.4000,0,,,,,,,2026-11-24,10,3,6\n\
         day,lead,Lead Bot,10,0.4000,0,,,,,,,2026-11-25,0,1,0\n",
        "the whole CSV"
    );
    let leads = json["leads"].as_array().unwrap();
    assert_eq!(leads.len(), 2, "the two who gave an email and stopped, one line each: {leads:#?}");
    assert!(leads.iter().all(|l| l["email"] == "answer@example.com" && l["last_step"] == "ask_phone"), "{leads:#?}");
    let since = f.run(&["report", "--format", "json", "--since", "2026-11-25"]).stdout;
    let since: serde_json::Value = serde_json::from_str(&since).unwrap();
    assert_eq!(since, serde_json::json!({ "bots": [], "leads": [] }), "nothing started since");
}

#[test]
fn report_html_loads_in_a_real_browser() {
    let Some(chromium) = ["chromium", "chromium-browser"].into_iter().find(|c| which(c)) else {
        // .ci/run installs chromium; a developer machine without it says so instead of failing.
        assert!(std::env::var_os("CI").is_none(), "chromium is not installed (CI installs it in .ci/run)");
        eprintln!("skipped: chromium is not installed (apt-get install chromium)");
        return;
    };
    let f = Fixture::new(1);
    known_funnel(&f);
    let out = f.run(&["report", "--format", "html", "--now", "2026-11-30T00:00:00Z"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for fetches in ["<script", "src=", "href=", "url(", "@import"] {
        assert!(!out.stdout.contains(fetches), "self-contained, no script: found {fetches}");
    }
    let page = f.dir.path().join("report.html");
    std::fs::write(&page, &out.stdout).unwrap();
    let browser = |width: u32, extra: &[&str]| {
        std::process::Command::new(chromium)
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
            .arg(format!("--window-size={width},900"))
            .args(extra)
            .arg(format!("file://{}", page.display()))
            .output()
            .unwrap()
    };
    let dom = browser(1000, &["--dump-dom"]);
    assert!(dom.status.success(), "{}", String::from_utf8_lossy(&dom.stderr));
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains("<svg") && dom.contains("ask_email") && dom.contains("most stop here"), "the page rendered");
    assert!(dom.contains("Leads to follow up") && dom.contains("answer@example.com"), "the leads, listed");
    // A desktop and a phone (390 px, an iPhone's width): both render.
    for (width, name) in [(1000, "report-desktop.png"), (390, "report-phone.png")] {
        let shot = f.dir.path().join(name);
        let screenshot = browser(width, &[&format!("--screenshot={}", shot.display())]);
        assert!(screenshot.status.success(), "{}", String::from_utf8_lossy(&screenshot.stderr));
        let png = std::fs::read(&shot).unwrap();
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a screenshot of {} bytes", png.len());
        if let Some(dir) = std::env::var_os("REPORT_SCREENSHOT_DIR") {
            std::fs::copy(&shot, std::path::Path::new(&dir).join(name)).unwrap();
        }
    }
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(program).is_file()))
}

#[test]
fn progress_shows_on_a_terminal_and_never_in_cron() {
    let f = Fixture::new(1);
    f.set_transport("kind = \"folder\"\npath = \"outbox\"");
    // 3,000 chats of 8 messages: 24,000 messages, past the size worth a progress bar.
    f.sql(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 2999)
         INSERT INTO conversations SELECT 'c' || i, 'lead', 'v' || i, '2026-11-20T09:00:00Z', NULL FROM n;
         WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 23999)
         INSERT INTO messages (conversation_id, sent_at, sender, gambit_id, input_type, field, body)
         SELECT 'c' || (i / 8), '2026-11-20T09:00:00Z', CASE i % 2 WHEN 0 THEN 'bot' ELSE 'visitor' END,
                'step' || (i % 8 / 2), 'text', CASE i % 2 WHEN 1 THEN 'answer' END, 'text ' || i FROM n;",
    );
    let args = ["run", "--backfill", "--dry-run", "--now", "2026-11-24T12:00:00Z"];

    // As cron runs it: stderr is a pipe, and nothing is drawn.
    let piped = std::process::Command::new(support::bin())
        .arg("--config")
        .arg(&f.config)
        .args(args)
        .stdout(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(piped.status.success());
    let stderr = String::from_utf8_lossy(&piped.stderr);
    assert!(stderr.lines().all(|l| l.starts_with(support::FIRST_RUN)), "no progress in cron: {stderr}");

    // At a terminal (a pseudo-terminal made by script(1)): the bar is drawn.
    let command =
        format!("{} --config {} {} > /dev/null", support::bin().display(), f.config.display(), args.join(" "));
    let tty = std::process::Command::new("script").args(["-qec", &command, "/dev/null"]).output().unwrap();
    assert!(tty.status.success(), "{}", String::from_utf8_lossy(&tty.stderr));
    let screen = String::from_utf8_lossy(&tty.stdout);
    assert!(screen.contains("reading messages") && screen.contains("24,000"), "{screen:?}");
}

/// The report the owners asked for, on chats whose answers the test knows: steps named by
/// question, chats in progress apart, paths, what visitors ask, days, and the leads by person.
#[test]
fn the_report_names_steps_lists_paths_questions_days_and_leads_by_person() {
    let f = Fixture::new(1);
    let chat = |id: &str, visitor: &str, start: &str, lines: &[(&str, &str, Option<&str>, &str)], ends: bool| {
        let t0 = chrono::DateTime::parse_from_rfc3339(start).unwrap();
        f.conversation(id, start);
        f.sql(&format!("UPDATE conversations SET visitor_id = '{visitor}' WHERE id = '{id}'"));
        let mut minute = 0;
        for (who, step, field, body) in lines {
            let at = (t0 + chrono::TimeDelta::minutes(minute)).to_rfc3339();
            minute += 1;
            match *who {
                "bot" => f.bot(id, &at, step, "text", body),
                _ => f.message(id, &at, "visitor", Some(step), None, *field, body),
            };
        }
        if ends {
            f.end(id, &(t0 + chrono::TimeDelta::minutes(minute)).to_rfc3339());
        }
    };
    let name = ("bot", "ask_name", None, "What's your name?");
    let email = ("bot", "ask_email", None, "What's your email?");
    let phone = ("bot", "ask_phone", None, "And a phone number?");
    // Ana leaves on Monday with her email, finishes on Tuesday: a person who finished, no lead.
    chat(
        "ana1",
        "v-ana",
        "2026-11-23T09:00:00Z",
        &[
            name,
            ("visitor", "ask_name", Some("name"), "Ana"),
            email,
            ("visitor", "ask_email", Some("email"), "ana@example.com"),
            phone,
        ],
        false,
    );
    chat(
        "ana2",
        "v-ana",
        "2026-11-24T09:00:00Z",
        &[
            name,
            ("visitor", "ask_name", Some("name"), "Ana"),
            email,
            ("visitor", "ask_email", Some("email"), "ana@example.com"),
            phone,
            ("visitor", "ask_phone", Some("phone"), "+55 11 5555"),
        ],
        true,
    );
    // A lead whose name is a spreadsheet formula; two who ask the same thing at the email step.
    chat(
        "bob",
        "v-bob",
        "2026-11-24T09:10:00Z",
        &[
            name,
            ("visitor", "ask_name", Some("name"), "=HYPERLINK(\"x\")"),
            email,
            ("visitor", "ask_email", Some("email"), "bob@example.com"),
            phone,
        ],
        false,
    );
    chat(
        "dan",
        "v-dan",
        "2026-11-24T09:20:00Z",
        &[
            name,
            ("visitor", "ask_name", Some("name"), "Dan"),
            email,
            ("visitor", "ask_email", None, "Do you ship to Brazil?"),
        ],
        false,
    );
    chat(
        "eve",
        "undefined",
        "2026-11-24T09:30:00Z",
        &[
            name,
            ("visitor", "ask_name", Some("name"), "Eve"),
            email,
            ("visitor", "ask_email", None, "do you  ship to BRAZIL?"),
        ],
        false,
    );
    // Cara is still typing at 12:00: in progress, not a drop-off.
    chat(
        "cara",
        "v-cara",
        "2026-11-24T11:50:00Z",
        &[name, ("visitor", "ask_name", Some("name"), "Cara"), email],
        false,
    );

    let out = f.run(&["report", "--format", "json", "--now", "2026-11-24T12:00:00Z"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let bot = &json["bots"][0];
    assert_eq!(
        (bot["conversations"].as_u64(), bot["completed"].as_u64(), bot["in_progress"].as_u64()),
        (Some(6), Some(1), Some(1))
    );
    let steps: Vec<(&str, &str, u64)> = bot["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["step"].as_str().unwrap(), s["question"].as_str().unwrap(), s["stopped"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("ask_name", "What's your name?", 0),
            ("ask_email", "What's your email?", 2),
            ("ask_phone", "And a phone number?", 2)
        ],
        "Cara stopped nowhere: she may still be typing"
    );
    let paths: Vec<(String, u64, u64)> = bot["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["steps"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect::<Vec<_>>().join(">"),
                p["chats"].as_u64().unwrap(),
                p["completed"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(paths, [("ask_name>ask_email>ask_phone".to_owned(), 3, 1), ("ask_name>ask_email".to_owned(), 3, 0)]);
    let asks = &bot["asks"][0];
    assert_eq!(
        (asks["step"].as_str(), asks["question"].as_str(), asks["total"].as_u64()),
        (Some("ask_email"), Some("What's your email?"), Some(2))
    );
    assert_eq!(
        asks["top"][0],
        serde_json::json!({ "text": "Do you ship to Brazil?", "count": 2 }),
        "one question, however typed"
    );
    let days: Vec<(&str, u64, u64, u64)> = bot["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["day"].as_str().unwrap(),
                d["started"].as_u64().unwrap(),
                d["completed"].as_u64().unwrap(),
                d["abandoned"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(days, [("2026-11-23", 1, 0, 1), ("2026-11-24", 5, 1, 3)]);

    let leads = f.run(&["leads", "--format", "csv", "--now", "2026-11-24T12:00:00Z"]);
    assert_eq!(leads.code, 0, "{}", leads.stderr);
    let rows = parse_csv(&leads.stdout);
    assert_eq!(rows[0], ["name", "email", "phone", "bot", "last_step", "last_activity", "conversation", "chats"]);
    assert_eq!(rows.len(), 2, "Bob only: Ana finished on Tuesday, the others left no contact: {rows:?}");
    assert_eq!(rows[1][0], "'=HYPERLINK(\"x\")", "a formula is defused, not evaluated");
    assert_eq!(rows[1][1..5], ["bob@example.com", "", "Lead Bot", "ask_phone"]);
    assert_eq!(rows[1][6], format!("#{}", chat_notifier::domain::thread::identifier("bob")));
    let table = f.run(&["leads", "--now", "2026-11-24T12:00:00Z"]).stdout;
    assert!(table.lines().nth(1).is_some_and(|l| l.contains("bob@example.com") && l.contains("ask_phone")), "{table}");
}

/// RFC 4180, as a spreadsheet reads it: quoted cells, doubled quotes, CRLF rows.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = vec![];
    let mut row = vec![];
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => row.push(std::mem::take(&mut cell)),
            ('\r', false) => {}
            ('\n', false) => {
                row.push(std::mem::take(&mut cell));
                rows.push(std::mem::take(&mut row));
            }
            (c, _) => cell.push(c),
        }
    }
    rows
}

#[test]
fn status_keeps_its_columns_with_wide_names() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.lead_who_leaves("a", "Ann Lee", "ann@example.com", 0);
    f.lead_who_leaves("b", "王小明", "wang@example.com", 1);
    f.lead_who_leaves("c", "🙂🙂 Zoë 🎉", "zoe@example.com", 2);
    f.lead_who_leaves("d", "李华李华李华李华李华李华李华李华李华李华", "li@example.com", 3);
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    let out = f.run(&["status", "--now", "2026-11-24T10:06:00Z"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // Where each row's STATE column starts, in terminal cells (the CJK ideographs and emoji
    // used here take two, as terminals show them).
    let wide = |c: char| matches!(c as u32, 0x4E00..=0x9FFF | 0x1F300..=0x1FAFF);
    let cells = |s: &str| s.chars().map(|c| if wide(c) { 2 } else { 1 }).sum::<usize>();
    let starts: Vec<usize> = out
        .stdout
        .lines()
        .skip(1)
        .map(|l| {
            let at = l.find(" notified ").or_else(|| l.find(" STATE ")).unwrap_or_else(|| panic!("{l}"));
            cells(&l[..at])
        })
        .collect();
    assert_eq!(starts.len(), 5, "{}", out.stdout);
    assert!(starts.iter().all(|&s| s == starts[0]), "{starts:?}\n{}", out.stdout);
}

#[test]
fn a_lead_is_named_in_leads_as_in_their_email() {
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    f.conversation("ann", "2026-11-24T09:00:00Z");
    f.bot("ann", "2026-11-24T09:00:00Z", "ask_first", "text", "First name?");
    f.visitor("ann", "2026-11-24T09:00:10Z", Some("first_name"), "Ann");
    f.bot("ann", "2026-11-24T09:00:11Z", "ask_last", "text", "Last name?");
    f.visitor("ann", "2026-11-24T09:00:20Z", Some("last_name"), "Lee");
    f.bot("ann", "2026-11-24T09:00:21Z", "ask_email", "email", "Email?");
    f.visitor("ann", "2026-11-24T09:00:30Z", Some("email"), "ann@example.com");
    // A blank answer later takes nothing back, in the email as in the list.
    f.visitor("ann", "2026-11-24T09:00:40Z", Some("email"), "  ");
    f.run_at("2026-11-24T10:00:00Z", &[], 0);
    let email = mails(&server).pop().unwrap();
    assert!(email.subject.starts_with("Lead Bot: chat with Ann Lee [#"), "{}", email.subject);
    assert_eq!(email.reply_to.as_deref(), Some("ann@example.com"));
    let leads = f.run(&["leads", "--format", "csv", "--now", "2026-11-24T12:00:00Z"]);
    let rows = parse_csv(&leads.stdout);
    assert_eq!(rows.len(), 2, "{}", leads.stdout);
    assert_eq!(rows[1][0..2], ["Ann Lee", "ann@example.com"], "the name the email gave her");
}

/// Requests a local HTTP server receives: what a page loaded from it. Answers 404 to each.
fn http_recorder() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    // Serves until the test process ends.
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut line = String::new();
            let _ = std::io::BufReader::new(&stream).read_line(&mut line);
            record.lock().unwrap().push(line.trim().to_owned());
            let _ = stream.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (port, seen)
}

/// An LLM bot's markdown, as hostile as a visitor can talk it into writing, rendered in a real
/// browser from the email's HTML part: no script runs, no handler fires, nothing is fetched
/// (a page with a script and an image, loaded the same way first, shows that both would be
/// seen), links go only to http(s) or mailto, and the page still renders at a phone's width.
#[test]
fn hostile_markdown_in_an_email_runs_nothing_and_loads_nothing_in_a_real_browser() {
    let Some(chromium) = ["chromium", "chromium-browser"].into_iter().find(|c| which(c)) else {
        assert!(std::env::var_os("CI").is_none(), "chromium is not installed (CI installs it in .ci/run)");
        eprintln!("skipped: chromium is not installed (apt-get install chromium)");
        return;
    };
    let (port, requests) = http_recorder();
    let server = SmtpServer::start();
    let f = Fixture::new(server.port());
    let url = |path: &str| format!("http://127.0.0.1:{port}/{path}");
    let pwn = |how: &str| format!("document.body.setAttribute('data-pwned','{how}')");
    let hostile = [
        format!(
            "# Hi <script>document.title='PWNED'</script>\n\nInline <img src=\"{}\" onerror=\"{}\"> image",
            url("inline.gif"),
            pwn("onerror")
        ),
        format!(
            "<div onmouseover=\"x()\">\n<iframe src=\"{}\"></iframe>\n</div>\n\n<script>{}</script>",
            url("iframe"),
            pwn("block")
        ),
        format!(
            "<style>@import url({}); body {{ background: url({}) }}</style>\n<link rel=\"stylesheet\" href=\"{}\">",
            url("import.css"),
            url("bg.png"),
            url("link.css")
        ),
        format!(
            "![tracking pixel]({}) [click me](javascript:{}) [data](data:text/html,<script>alert(1)</script>) \
             <svg onload=\"{}\"></svg> <video poster=\"{}\"></video> <object data=\"{}\"></object> \
             [ok](https://example.com/ok) <a href=\"javascript:{}\">raw link</a>",
            url("pixel.gif"),
            pwn("link"),
            pwn("svg"),
            url("poster.jpg"),
            url("object"),
            pwn("raw-link")
        ),
        ">".repeat(2000) + " deep quote",
        (0..50).map(|i| format!("{}- level {i}\n", "  ".repeat(i))).collect::<String>(),
        "|a".repeat(300) + "|\n" + &"|-".repeat(300) + "|\n" + &("|b".repeat(300) + "|\n").repeat(5),
        "| Plan | Price |\n|---|--:|\n| Team | $12 |".to_owned(),
    ];
    f.conversation("eve", "2026-11-24T09:00:00Z");
    f.visitor("eve", "2026-11-24T09:00:00Z", Some("email"), "eve@example.com");
    for (i, markdown) in hostile.iter().enumerate() {
        f.answer("eve", "2026-11-24T09:00:10Z", i + 1, markdown);
    }
    assert_eq!(f.run_llm_at("2026-11-24T10:00:00Z"), 1);
    let html = mails(&server).remove(0).html;
    assert!(html.contains("the chat has gone quiet"), "an ended chat's email");

    let dir = f.dir.path();
    let browse = |page: &std::path::Path, extra: &[&str]| {
        let out = std::process::Command::new(chromium)
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=390,900"])
            .args(extra)
            .arg(format!("file://{}", page.display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // The control: a page with a script and an image does run and fetch, and it is seen.
    let control = dir.join("control.html");
    std::fs::write(
        &control,
        format!("<html><head><title>t</title></head><body><script>document.title='RAN'</script><img src=\"{}\"></body></html>", url("control.gif")),
    )
    .unwrap();
    let dom = browse(&control, &["--dump-dom"]);
    assert!(dom.contains("<title>RAN</title>"), "the control's script ran: {dom}");
    assert_eq!(*requests.lock().unwrap(), ["GET /control.gif HTTP/1.1"], "the control's image was fetched");

    let page = dir.join("email.html");
    std::fs::write(&page, &html).unwrap();
    let dom = browse(&page, &["--dump-dom"]);
    assert!(
        dom.contains("<title>Lead Bot: chat with eve@example.com"),
        "no script ran: {}",
        &dom[..300.min(dom.len())]
    );
    assert!(!dom.contains("data-pwned=\""), "no handler fired");
    for element in ["<script", "<img", "<iframe", "<style", "<link", "<svg", "<video", "<object", "<div"] {
        assert!(!dom.contains(element), "no {element} element in the rendered email");
    }
    // Text is serialized with `<` as `&lt;`: each `<a ` is an element, its href up to the quote.
    for tag in dom.split("<a ").skip(1).map(|rest| rest.split('>').next().unwrap_or_default()) {
        let href = tag.split("href=\"").nth(1).unwrap_or_default();
        assert!(["http://", "https://", "mailto:"].iter().any(|s| href.starts_with(s)), "a link: <a {tag}>");
    }
    assert!(dom.contains("&lt;a href=\"javascript:"), "a raw link in the markdown is text");
    assert!(dom.contains("<a href=\"https://example.com/ok\""), "a safe link stays a link");
    assert!(dom.contains(">[image: tracking pixel]</a>"), "an image is a link to it, not loaded");
    assert!(dom.contains("deep quote") && dom.contains("level 49"), "deep nesting is shown, cut");
    assert!(dom.matches("<blockquote").count() <= 12 && dom.matches("<ul").count() <= 12, "nesting cut");
    assert!(dom.contains("<th style=") && dom.contains(">$12</td>"), "a table renders");
    assert!(dom.contains("|a|a|a"), "a table too large to draw is its text");
    let shot = dir.join("email.png");
    browse(&page, &[&format!("--screenshot={}", shot.display())]);
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a screenshot of {} bytes", png.len());
    assert_eq!(*requests.lock().unwrap(), ["GET /control.gif HTTP/1.1"], "the email fetched nothing");
}

/// The report of an LLM bot (no last step): its steps are the lead form and the bot's answers
/// to the visitor's 1st, 2nd, ... message; "went quiet" where a flow bot's chats stop; completed
/// only where `complete_on` matched; a lead form filled is a lead even with no message after;
/// what visitors wrote grouped by their message; an answer that differs per chat is no step's
/// question. The whole table pinned, the JSON's figures read back, the HTML's words checked.
#[test]
fn the_report_of_an_llm_bot_reads_as_turns_that_went_quiet() {
    let f = Fixture::new(1);
    let ana = [("name", "Ana Souza"), ("email", "ana@example.com")];
    let ben = [("name", "Ben"), ("phone", "+1 555 0100")];
    f.llm_chat("ana", "2026-11-24T09:00:00Z", &ana, &["How much is it?", "Any discount?"], None);
    f.llm_chat("ben", "2026-11-24T09:00:00Z", &ben, &[], None);
    f.llm_chat(
        "cy",
        "2026-11-24T09:00:00Z",
        &[("email", "cy@example.com")],
        &["Can I book a demo?", "thanks"],
        Some(1),
    );
    f.llm_chat("dee", "2026-11-25T11:50:00Z", &[], &["prices?"], None);
    f.llm_chat("eve", "2026-11-24T09:00:00Z", &[], &["how much  is it?"], None);
    f.llm_chat("fay", "2026-11-24T09:00:00Z", &[], &["What are your hours?"], None);
    let findings = f.report_llm_at("2026-11-25T12:00:00Z");
    let table = chat_notifier::report::table::report(&findings.reports);
    let expected = "\
Lead Bot (lead): 6 chats, 1 completed (16.7%), 1 in progress, median time to complete 2m 00s
  went quiet without completing 4: 0.0% came back later, 0.0% completed later; 2 leads to follow up (left an email or phone, never completed)
  STEP                       REACHED     QUIET    SHARE  THE BOT SAID
  lead form                        6         1    16.7%  How can we reach you?
  message 1                        5         2    40.0%    <- most go quiet here
  message 2                        2         1    50.0%  
  most common paths:
         3 chats,      0 completed: lead form > message 1
         2 chats,      1 completed: lead form > message 1 > message 2
         1 chats,      0 completed: lead form

";
    assert_eq!(table, expected, "got:\n{table}");
    let bot = &findings.reports[0];
    assert!(!bot.has_last_step);
    let asks: Vec<(&str, Vec<(&str, u64)>)> = bot
        .asks
        .iter()
        .map(|a| (a.step.as_str(), a.top.iter().map(|q| (q.text.as_str(), q.count)).collect()))
        .collect();
    assert_eq!(
        asks,
        [
            (
                "message 1",
                vec![("How much is it?", 2), ("Can I book a demo?", 1), ("What are your hours?", 1), ("prices?", 1)]
            ),
            ("message 2", vec![("Any discount?", 1), ("thanks", 1)]),
        ]
    );
    let leads: Vec<(Option<&str>, Option<&str>, Option<&str>)> =
        findings.leads.iter().map(|l| (l.name.as_deref(), l.email.as_deref(), l.last_step.as_deref())).collect();
    assert_eq!(
        leads,
        [(Some("Ana Souza"), Some("ana@example.com"), Some("message 2")), (Some("Ben"), None, Some("lead form"))]
    );
    let json = chat_notifier::report::json::report(&findings.reports, &findings.leads).unwrap();
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["bots"][0]["has_last_step"], false);
    assert_eq!(json["bots"][0]["abandoned"], 4, "the field keeps its name");
    let html = chat_notifier::report::html::report(
        &findings.reports,
        &findings.leads,
        "2026-11-25T12:00:00Z".parse().unwrap(),
        chrono_tz::Tz::UTC,
    )
    .unwrap();
    for words in
        ["Went quiet without completing 4", "2 went quiet (40.0%): most go quiet here", "message 1: their first"]
    {
        assert!(html.contains(words), "{words:?} in the HTML report");
    }
    for flow_words in ["stopped", "most stop here", "Abandoned", "abandoned"] {
        assert!(!html.contains(flow_words), "{flow_words:?} in an LLM bot's HTML report");
    }
}
