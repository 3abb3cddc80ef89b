//! Progress of long work, for a person at a terminal only: hidden when stderr is not a
//! terminal (cron, pipes, tests), when the work is short, and when log lines are asked for
//! (-v), which a bar would garble.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Below this much work nobody waits long enough to want a bar.
pub const WORTH_SHOWING: u64 = 20_000;

/// A bar over `len` items of `what` ("reading messages"); hidden unless worth showing.
pub fn bar(len: u64, what: &'static str) -> ProgressBar {
    if len < WORTH_SHOWING || !shown() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg:>18} [{bar:32}] {human_pos}/{human_len} ({eta} left)")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what);
    bar
}

/// A count of `what` done so far, when the total is not known; shown only if `long`.
pub fn counter(long: bool, what: &'static str) -> ProgressBar {
    if !long || !shown() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{msg:>18} {human_pos} {spinner}").expect("a valid template"));
    bar.set_message(what);
    bar
}

fn shown() -> bool {
    std::io::stderr().is_terminal() && log::max_level() <= log::LevelFilter::Warn
}
