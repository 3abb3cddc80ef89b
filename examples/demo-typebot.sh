#!/bin/sh
# chat-notifier on a Typebot database, no mail server needed: a throwaway PostgreSQL server
# (Debian's postgresql; run as nobody under root, which PostgreSQL refuses) holds Typebot's
# tables. Jane leaves the lead flow at the phone question (an "abandoned" email), comes back and
# finishes (a "completed" email, in the same thread); Sam finishes at once, found by Typebot's
# in-place isCompleted. Emails land in target/demo-typebot/outbox.
set -eu
cd "$(dirname "$0")/.."
pgbin=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | tail -1)")
[ -x "$pgbin/initdb" ] || { echo "demo-typebot: needs PostgreSQL's server (apt-get install postgresql)" >&2; exit 1; }
cargo build --quiet --bin chat-notifier --example typebot_db
notifier="target/debug/chat-notifier --config examples/typebot.toml"
writer=target/debug/examples/typebot_db
url="postgresql://postgres@127.0.0.1:5545/typebot?sslmode=disable"
rm -rf target/demo-typebot && mkdir -p target/demo-typebot
# The server's files in a temporary folder: one the unprivileged server user can reach
# wherever the checkout lives.
pg=$(mktemp -d)
server() { if [ "$(id -u)" = 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown nobody:nogroup "$pg"
server "$pgbin/initdb" -D "$pg/data" -A trust -U postgres --no-sync >/dev/null
server "$pgbin/pg_ctl" -D "$pg/data" -l "$pg/log" -w start \
  -o "-c listen_addresses=127.0.0.1 -p 5545 -k $pg -c fsync=off" >/dev/null
trap 'server "$pgbin/pg_ctl" -D "$pg/data" -m fast stop >/dev/null; rm -rf "$pg"' EXIT
server "$pgbin/psql" -X -q -h 127.0.0.1 -p 5545 -U postgres -c "CREATE DATABASE typebot"

step() { printf '\n##### %s\n\n' "$*"; }

$writer "$url" morning
step "check: what chat-notifier finds in the database"
$notifier check
step "09:40 UTC: Sam finished, Jane left midway half an hour ago"
$notifier -v run --now 2026-11-24T09:40:00Z
$writer "$url" later
step "09:51 UTC: Jane came back and finished"
$notifier -v run --now 2026-11-24T09:51:00Z
step "Jane's thread, as a mail client shows it"
grep -h -e '^Subject:' -e '^In-Reply-To:' target/demo-typebot/outbox/*.eml | sort
step "Jane's second email"
sed -n '/^Jane Doe came back/,/^Sent by/p' "$(grep -l '^In-Reply-To:' target/demo-typebot/outbox/*.eml)"
