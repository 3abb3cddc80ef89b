#!/bin/sh
# The main job on the bundled example export, no mail server needed: cron runs a day apart,
# with the bot runtime writing in between. Before each run, --dry-run prints the emails it is
# about to send; the run itself writes them as .eml files into target/demo/outbox.
set -eu
cd "$(dirname "$0")/.."
cargo build --quiet --bin chat-notifier --example load_sql
notifier="target/debug/chat-notifier --config notifier.example.toml"
load=target/debug/examples/load_sql
rm -rf target/demo && mkdir -p target/demo

step() { printf '\n##### %s\n\n' "$*"; }

$load target/demo/export.sqlite examples/export-day1.sql
step "Run 1, 2026-11-20 12:00 UTC, first run on an export with history. Preview (--dry-run):"
$notifier run --dry-run --now 2026-11-20T12:00:00Z
step "Run 1 for real (-v: one line per email):"
$notifier -v run --now 2026-11-20T12:00:00Z

$load target/demo/export.sqlite examples/export-day2.sql
step "Run 2, 2026-11-21 12:00 UTC; the bot runtime has written more since. Preview (--dry-run):"
$notifier run --dry-run --now 2026-11-21T12:00:00Z
step "Run 2 for real:"
$notifier -v run --now 2026-11-21T12:00:00Z

step "Run 3, a minute later: nothing new, so nothing is printed (exit code $($notifier run --now 2026-11-21T12:01:00Z; echo $?))"
step "The emails, as a mail client gets them: target/demo/outbox/*.eml"
grep -h '^Subject:' target/demo/outbox/*.eml | sort
