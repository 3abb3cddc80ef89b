//! `chat-notifier check`: everything a run needs, tried without sending or changing anything.
//! One line per part on stdout (one per placeholder an owner must fill, see
//! `config::Placeholders`); the run fails when any part does.

use std::path::Path;

use anyhow::{Context, Result, bail};
use chrono::{TimeDelta, Utc};

use crate::config::Routing;
use crate::config::{self, Config, Transport};
use crate::domain::{
    Author as Who, ChatState, Conversation, END_OF_FLOW, Earlier, EarlierField, Message, Person, Transcript,
    thread::Thread,
};
use crate::mail::render::{Draft, Renderer};
use crate::mail::send::Mailer;
use crate::state::State;

pub fn check(config_path: &Path, smtp: bool) -> Result<()> {
    let mut failed = 0;
    let mut report = |part: &str, result: Result<String>| -> Result<()> {
        let line = match result {
            Ok(detail) => format!("{part:<10} ok      {detail}\n"),
            Err(e) => {
                failed += 1;
                format!("{part:<10} FAILED  {}\n", crate::domain::text::line(&format!("{e:#}")))
            }
        };
        super::print(line)
    };
    let config = match config::load(config_path) {
        Ok(config) => {
            report("config", Ok(config_path.display().to_string()))?;
            config
        }
        Err(e) => {
            report("config", Err(e))?;
            bail!("check failed: the config is not usable");
        }
    };
    report("templates", templates(&config))?;
    // What the owner has yet to fill: one line each, and never looked up or connected to.
    let holes = config.placeholders();
    for hole in holes.mail {
        report("mail", Err(hole.into()))?;
    }
    if holes.source.is_empty() {
        report("source", crate::source::open(&config).and_then(|s| s.describe()))?;
    }
    for hole in holes.source {
        report("source", Err(hole.into()))?;
    }
    report(
        "state",
        match crate::state::At::of(&config) {
            crate::state::At::File(path) => state(&path),
            at => State::check_postgres(&at, &config.settings_fingerprint()),
        },
    )?;
    if holes.transport.is_empty() {
        report("transport", transport(&config, smtp))?;
    }
    for hole in holes.transport {
        report("transport", Err(hole.into()))?;
    }
    for destination in &config.destinations {
        report("destination", self::destination(destination, smtp))?;
    }
    if failed > 0 {
        bail!("check failed: {failed} part(s) above");
    }
    Ok(())
}

/// Renders every template set, state and subject against a sample conversation.
fn templates(config: &Config) -> Result<String> {
    let routing = Routing::new(config);
    let renderer = Renderer::new(&routing, config.mail.limits())?;
    let (conversation, transcript, person) = sample();
    let mut rendered = 0;
    for settings in routing.all() {
        for state in ChatState::ALL {
            for thread in [
                Thread::default(),
                Thread {
                    subject: Some("Earlier [#X]".into()),
                    message_ids: vec!["<a@b>".into()],
                    index: Some(crate::domain::thread::thread_index("sample", None, Utc::now())),
                },
            ] {
                let since = if thread.subject.is_some() { 4 } else { 0 };
                let draft = Draft {
                    conversation: &conversation,
                    transcript: &Transcript::of(transcript.clone(), since),
                    person: &person,
                    state,
                    thread: &thread,
                    now: Utc::now(),
                    from: &config.mail.from,
                    // Both kinds of line, so a template's use of either is tried.
                    markdown: true,
                    last_step: true,
                };
                renderer.compose(&draft, settings, "example.com").with_context(|| {
                    format!("rendering a {} email for {}", state.as_str(), which(settings.index, config))
                })?;
                rendered += 1;
            }
        }
    }
    Ok(format!(
        "{rendered} sample emails rendered ({} template set(s), {} bot setting(s), text and HTML)",
        routing.template_sets.len(),
        routing.all().len()
    ))
}

fn which(index: usize, config: &Config) -> String {
    match index {
        0 => "the default settings".to_owned(),
        i => format!("bot {:?}", config.bots[i - 1].id),
    }
}

/// Read only: a check must not create or migrate it.
fn state(path: &Path) -> Result<String> {
    crate::state::refuse_links(path)?;
    if !path.exists() {
        return Ok(format!("{} (not created yet: the first run creates it)", path.display()));
    }
    let (version, current) = State::schema_of(path)?;
    if version != current {
        if version > current {
            bail!(
                "state {}: written by a newer chat-notifier (schema {version}, this one knows {current})",
                path.display()
            );
        }
        return Ok(format!("{} (schema {version}: the next run upgrades it to {current})", path.display()));
    }
    let s = State::open_read_only(path)?.summary()?;
    Ok(format!(
        "{} ({} conversations, {} emails waiting, {} parked)",
        path.display(),
        s.conversations,
        s.waiting,
        s.parked
    ))
}

fn transport(config: &Config, smtp: bool) -> Result<String> {
    match &config.transport {
        Transport::Smtp(s) if !smtp => {
            // Its password read as a run reads it: a variable not set fails here, not at 3 am.
            Mailer::from_config(&config.transport)?;
            Ok(format!("smtp {}:{} (not contacted: --smtp connects and logs in)", s.host, s.port()))
        }
        Transport::Smtp(s) => {
            let mut mailer = Mailer::from_config(&config.transport)?;
            mailer.connect()?;
            mailer.finish()?;
            let login = s.username.as_ref().map(|u| format!(" and logged in as {u}")).unwrap_or_default();
            Ok(format!("smtp {}:{}: connected{login}", s.host, s.port()))
        }
        Transport::Sendmail { command } => {
            let meta = std::fs::metadata(command).with_context(|| format!("sendmail {}", command.display()))?;
            use std::os::unix::fs::PermissionsExt;
            if meta.permissions().mode() & 0o111 == 0 {
                bail!("sendmail {}: not executable", command.display());
            }
            Ok(format!("sendmail {}", command.display()))
        }
        Transport::Folder { path, .. } => {
            Mailer::from_config(&config.transport)?;
            let probe = tempfile::tempfile_in(path).with_context(|| format!("folder {}: not writable", path.display()));
            probe.map(|_| format!("folder {}", path.display()))
        }
    }
}

/// A destination's secrets read, and with `--smtp` (which contacts what a run contacts) the
/// destination reached, nothing sent: a webhook's server connected to (and its TLS
/// certificate verified), Slack's token tried with `auth.test`.
fn destination(config: &crate::config::DestinationConfig, contact: bool) -> Result<String> {
    let mut opened = crate::destination::open(std::slice::from_ref(config))?;
    let what = format!("{} {}", config.kind.as_str(), config.name);
    if !contact {
        return Ok(format!("{what}: secrets read (not contacted: --smtp contacts it, sending nothing)"));
    }
    let found = opened[0].check().with_context(|| what.clone())?;
    Ok(format!("{what}: {found}"))
}

/// A returning visitor's conversation: every part of every template is exercised.
fn sample() -> (Conversation, Vec<Message>, Person) {
    let start = Utc::now() - TimeDelta::hours(2);
    let conversation = Conversation {
        id: "sample-conversation".into(),
        bot_id: "sample".into(),
        bot_name: "Sample Bot".into(),
        visitor_id: "sample-visitor".into(),
        started_at: Some(start.fixed_offset()),
        page_url: Some("https://example.com/pricing".into()),
    };
    let lines = [
        (Who::Bot, "ask_name", None, "Hi! What's your name?"),
        (Who::Visitor, "ask_name", Some("name"), "Jane <b>Doe</b>"),
        (Who::Bot, "ask_email", None, "Your email?"),
        (Who::Visitor, "ask_email", Some("email"), "jane@example.com"),
        (Who::Bot, "ask_phone", None, "And a phone number?"),
        (Who::Visitor, "ask_phone", Some("phone"), "+1 555 0100"),
        (Who::Bot, "done", None, "Thanks!"),
    ];
    let transcript = lines
        .iter()
        .enumerate()
        .map(|(i, (author, step, field, body))| Message {
            id: i as i64 + 1,
            sent_at: start + TimeDelta::minutes(i as i64),
            author: *author,
            gambit_id: Some((*step).into()),
            input_type: Some(if *step == "done" { END_OF_FLOW } else { "text" }.into()),
            field: field.map(str::to_owned),
            body: (*body).into(),
        })
        .collect();
    let person = Person {
        conversations: vec![Earlier {
            identifier: "SAMP-LE00-0001".into(),
            bot: "Sample Bot".into(),
            state: Some(ChatState::Abandoned),
            last_activity: start - TimeDelta::days(3),
        }],
        more: 2,
        fields: vec![EarlierField {
            name: "company".into(),
            value: "Example Inc.".into(),
            identifier: "SAMP-LE00-0001".into(),
            given_at: start - TimeDelta::days(3),
        }],
    };
    (conversation, transcript, person)
}
