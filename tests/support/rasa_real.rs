//! Rasa's own code writing the tracker store: open-source Rasa (installed into `target/rasa-venv`
//! by `tests/rasa/install.sh`, which `.ci/run` runs) driven by `tests/rasa/write.py`, one Python
//! process per batch of steps, the steps as JSON on its stdin. Where the virtualenv is missing
//! the tests say so and pass, except under CI, where that is a failure.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How long one batch may take: Rasa's imports are slow on a busy machine, a batch is a few
/// hundred events.
const BATCH_TIMEOUT: Duration = Duration::from_secs(300);

/// The Python of the virtualenv holding Rasa.
pub struct Rasa {
    python: PathBuf,
    driver: PathBuf,
}

/// Rasa, when installed here; None (the test is skipped) where it is not, except under CI.
pub fn rasa() -> Option<Rasa> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join("target/rasa-venv/bin/python");
    if !root.join("target/rasa-venv/.recipe").is_file() || !python.is_file() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the real Rasa tests: tests/rasa/install.sh installs Rasa"
        );
        eprintln!("skipped: Rasa is not installed here; tests/rasa/install.sh installs it (target/rasa-venv)");
        return None;
    }
    Some(Rasa { python, driver: root.join("tests/rasa/write.py") })
}

/// A Rasa timestamp: float seconds since the epoch, with microseconds, for an RFC 3339 instant
/// plus `micros`.
pub fn at(rfc3339: &str, micros: i64) -> f64 {
    let t = chrono::DateTime::parse_from_rfc3339(rfc3339).unwrap();
    (t.timestamp_micros() + micros) as f64 / 1e6
}

/// The steps of one batch, as `tests/rasa/write.py` reads them.
#[derive(Default, Clone)]
pub struct Steps(pub Vec<Value>);

impl Steps {
    pub fn new() -> Self {
        Steps::default()
    }

    /// A message from the channel and the actions the policies predict after it.
    pub fn user(mut self, sender: &str, at: f64, text: &str, intent: &str, actions: &[&str]) -> Self {
        self.0.push(json!({ "sender": sender, "at": at, "user": text, "intent": intent, "actions": actions }));
        self
    }

    /// The same, with the channel's metadata (it goes into `session_started_metadata` when the
    /// message starts a session).
    pub fn user_from(
        mut self,
        sender: &str,
        at: f64,
        text: &str,
        intent: &str,
        metadata: Value,
        actions: &[&str],
    ) -> Self {
        self.0.push(json!({
            "sender": sender, "at": at, "user": text, "intent": intent, "metadata": metadata, "actions": actions
        }));
        self
    }

    /// A message that starts a session with the assistant's own `action_session_start` (an
    /// action server's), which writes no `session_started`.
    pub fn user_custom_start(mut self, sender: &str, at: f64, text: &str, intent: &str, actions: &[&str]) -> Self {
        self.0.push(json!({
            "sender": sender, "at": at, "user": text, "intent": intent, "actions": actions, "custom_session_start": true
        }));
        self
    }

    /// A reminder or an external event (`trigger_intent`) for `intent`, then `actions`.
    pub fn external(mut self, sender: &str, at: f64, intent: &str, actions: &[&str]) -> Self {
        self.0.push(json!({ "sender": sender, "at": at, "external": intent, "actions": actions }));
        self
    }

    /// Slots set with this metadata.
    pub fn slots(mut self, sender: &str, at: f64, slots: Value, metadata: Value) -> Self {
        self.0.push(json!({ "sender": sender, "at": at, "slots": slots, "metadata": metadata }));
        self
    }

    /// The sender's tracker erased (`DELETE /conversations/<id>/tracker`).
    pub fn delete(mut self, sender: &str) -> Self {
        self.0.push(json!({ "delete": sender }));
        self
    }

    /// A visitor who asks for a quote and fills the lead form (name, email, phone) a few
    /// seconds apart from `start`; the bot submits the lead and says goodbye.
    pub fn lead_completes(self, sender: &str, name: &str, email: &str, phone: &str, start: f64) -> Self {
        self.lead_gives(sender, name, email, start).user(
            sender,
            start + 30.000_021,
            phone,
            "inform",
            &["lead_form", "action_submit_lead", "utter_goodbye", "action_listen"],
        )
    }

    /// A visitor who gives a name and an email, and leaves at the phone question.
    pub fn lead_gives(self, sender: &str, name: &str, email: &str, start: f64) -> Self {
        self.user(sender, start, "hi, I'd like a quote", "request_quote", &["lead_form", "action_listen"])
            .user(sender, start + 10.000_7, name, "inform", &["lead_form", "action_listen"])
            .user(sender, start + 20.3, email, "inform", &["lead_form", "action_listen"])
    }

    /// A visitor who gives a name, then says "stop": the form is rejected and deactivated.
    pub fn lead_cancels(self, sender: &str, name: &str, start: f64) -> Self {
        self.user(sender, start, "hi, I'd like a quote", "request_quote", &["lead_form", "action_listen"])
            .user(sender, start + 10.000_7, name, "inform", &["lead_form", "action_listen"])
            .user(
                sender,
                start + 20.000_05,
                "stop",
                "stop",
                &["lead_form", "action_deactivate_loop", "utter_cancelled", "action_listen"],
            )
    }
}

impl Rasa {
    /// Writes the steps into the store at `url` (`sqlite:////abs/path` or a PostgreSQL URL)
    /// with Rasa's code; the highest event id after each step.
    pub fn write(&self, url: &str, steps: &Steps) -> Vec<i64> {
        let mut child = Command::new(&self.python)
            .args(["-W", "ignore"])
            .arg(&self.driver)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let scenario = json!({ "store": url, "steps": steps.0 });
        child.stdin.take().unwrap().write_all(scenario.to_string().as_bytes()).unwrap();
        let deadline = Instant::now() + BATCH_TIMEOUT;
        // The child's pipes are read by threads, so a chatty Rasa never blocks on a full pipe.
        let mut stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let out = std::thread::spawn(move || {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut stdout, &mut s).map(|_| s)
        });
        let err = std::thread::spawn(move || {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut stderr, &mut s).map(|_| s)
        });
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("tests/rasa/write.py did not finish in {BATCH_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let (out, err) = (out.join().unwrap().unwrap(), err.join().unwrap().unwrap());
        assert!(status.success(), "tests/rasa/write.py: {status}\n{err}");
        let answer: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
        answer["last_ids"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect()
    }
}

/// The URL Rasa's driver takes for an SQLite file.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite:///{}", path.canonicalize().unwrap_or_else(|_| path.to_owned()).display())
}
