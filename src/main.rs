use std::io::Write;
use std::process::ExitCode;

use chat_notifier::cli::Cli;
use chat_notifier::commands::watch::quiet::Quiet;
use chat_notifier::domain::text;
use chat_notifier::{commands, exit};
use clap::Parser;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE } else { exit::OK });
        }
    };
    let logger = env_logger::Builder::new()
        .filter_level(cli.log_level())
        // Log lines carry what stores and servers said: no escape, bell or CR of theirs reaches
        // a terminal or cron's mail, and no line of theirs can pass for one of ours.
        .format(|buf, record| {
            let message = record.args().to_string();
            writeln!(buf, "chat-notifier: {}: {}", record.level().as_str().to_lowercase(), text::line(&message))
        })
        .build();
    // `watch` says a problem that repeats each cycle once (commands::watch::quiet).
    let level = logger.filter();
    if log::set_boxed_logger(Box::new(Quiet::new(Box::new(logger)))).is_ok() {
        log::set_max_level(level);
    }
    ExitCode::from(match chat_notifier::run(&cli) {
        Ok(outcome) => outcome.exit_code(),
        // `status | head`: the reader has all it wanted.
        Err(e) if commands::is_broken_pipe(&e) => exit::OK,
        Err(e) => {
            // One line, for cron's mail and for grep, with nothing a server said left raw.
            eprintln!("chat-notifier: error: {}", text::line(&format!("{e:#}")));
            exit::ERROR
        }
    })
}
