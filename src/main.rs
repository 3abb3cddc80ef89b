use std::io::Write;
use std::process::ExitCode;

use chat_notifier::cli::Cli;
use clap::Parser;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { chat_notifier::exit::USAGE } else { chat_notifier::exit::OK });
        }
    };
    env_logger::Builder::new()
        .filter_level(cli.log_level())
        .format(|buf, record| {
            writeln!(buf, "chat-notifier: {}: {}", record.level().as_str().to_lowercase(), record.args())
        })
        .init();
    match chat_notifier::run(&cli) {
        Ok(outcome) => outcome.exit_code(),
        Err(e) => {
            // One line, for cron's mail and for grep.
            eprintln!("chat-notifier: error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::from(chat_notifier::exit::ERROR)
        }
    }
}
