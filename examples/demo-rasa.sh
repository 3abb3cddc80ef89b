#!/bin/sh
# chat-notifier on a Rasa bot's tracker store, no mail server needed: Jane leaves the lead form
# at the phone question (an "abandoned" email), comes back within Rasa's session and finishes
# (a "completed" email, in the same thread). Emails land in target/demo-rasa/outbox.
set -eu
cd "$(dirname "$0")/.."
cargo build --quiet --bin chat-notifier --example rasa_store
notifier="target/debug/chat-notifier --config examples/rasa.toml"
store=target/debug/examples/rasa_store
rm -rf target/demo-rasa && mkdir -p target/demo-rasa

step() { printf '\n##### %s\n\n' "$*"; }

$store target/demo-rasa/rasa.db morning
step "check: what chat-notifier finds in the store"
$notifier check
step "09:40 UTC: Sam finished, Jane left midway half an hour ago"
$notifier -v run --now 2026-11-24T09:40:00Z
$store target/demo-rasa/rasa.db later
step "09:51 UTC: Jane came back and finished"
$notifier -v run --now 2026-11-24T09:51:00Z
step "Jane's thread, as a mail client shows it"
grep -h -e '^Subject:' -e '^In-Reply-To:' target/demo-rasa/outbox/*.eml | sort
