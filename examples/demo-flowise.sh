#!/bin/sh
# chat-notifier on a Flowise install's database (SQLite, Flowise's default), no mail server
# needed: Jane fills the widget's lead form, asks about prices and leaves (an "ended" email with
# her details); she comes back the next day in the same chat (a "resumed" email, in the same
# thread). Emails land in target/demo-flowise/outbox.
set -eu
cd "$(dirname "$0")/.."
cargo build --quiet --bin chat-notifier --example flowise_db
notifier="target/debug/chat-notifier --config examples/flowise.toml"
db=target/demo-flowise/database.sqlite
rm -rf target/demo-flowise && mkdir -p target/demo-flowise

step() { printf '\n##### %s\n\n' "$*"; }

target/debug/examples/flowise_db "$db" day1
step "check: what chat-notifier finds in the database"
$notifier check
step "Monday 10:40 UTC: Jane left the chat half an hour ago"
$notifier -v run --now 2026-12-07T10:40:00Z
target/debug/examples/flowise_db "$db" day2
step "Tuesday 09:50 UTC: Jane came back and left again"
$notifier -v run --now 2026-12-08T09:50:00Z
step "Jane's thread, as a mail client shows it"
grep -h -e '^Subject:' -e '^In-Reply-To:' target/demo-flowise/outbox/*.eml | sort
step "the leads, and where visitors stop"
$notifier leads --now 2026-12-08T09:50:00Z
$notifier report --now 2026-12-08T09:50:00Z
