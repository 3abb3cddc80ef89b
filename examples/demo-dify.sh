#!/bin/sh
# chat-notifier on a Dify database, no mail server needed: a throwaway PostgreSQL server
# (Debian's postgresql; run as nobody under root, which PostgreSQL refuses) holds Dify's tables.
# Jane fills the start form and chats; her second answer is still being written at 09:05 (no
# email) and saved at 09:06; once quiet, one email with what she typed into the form. Sam's answer
# never came: his email says so. Jane comes back: a "resumed" email in the same thread. Emails
# land in target/demo-dify/outbox.
set -eu
cd "$(dirname "$0")/.."
pgbin=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | tail -1)")
[ -x "$pgbin/initdb" ] || { echo "demo-dify: needs PostgreSQL's server (apt-get install postgresql)" >&2; exit 1; }
cargo build --quiet --bin chat-notifier --example dify_db
notifier="target/debug/chat-notifier --config examples/dify.toml"
writer=target/debug/examples/dify_db
url="postgresql://postgres@127.0.0.1:5546/dify?sslmode=disable"
rm -rf target/demo-dify && mkdir -p target/demo-dify
pg=$(mktemp -d)
server() { if [ "$(id -u)" = 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown nobody:nogroup "$pg"
server "$pgbin/initdb" -D "$pg/data" -A trust -U postgres --no-sync >/dev/null
server "$pgbin/pg_ctl" -D "$pg/data" -l "$pg/log" -w start \
  -o "-c listen_addresses=127.0.0.1 -p 5546 -k $pg -c fsync=off" >/dev/null
trap 'server "$pgbin/pg_ctl" -D "$pg/data" -m fast stop >/dev/null; rm -rf "$pg"' EXIT
server "$pgbin/psql" -X -q -h 127.0.0.1 -p 5546 -U postgres -c "CREATE DATABASE dify"

step() { printf '\n##### %s\n\n' "$*"; }

$writer "$url" morning
step "check: what chat-notifier finds in the database"
$notifier check
step "09:05 UTC: Jane's second answer is still being written: nothing to send"
$notifier -v run --now 2026-11-24T09:05:00Z
$writer "$url" answered
step "09:40 UTC: both chats went quiet"
$notifier -v run --now 2026-11-24T09:40:00Z
step "Jane's email"
sed -n '/^What they told/,/^Sent by/p' "$(grep -l 'Can we pay yearly' target/demo-dify/outbox/*.eml | head -1)"
step "Sam's email: the reply never came"
sed -n '/^Transcript/,/^Sent by/p' "$(grep -l 'open on Sundays' target/demo-dify/outbox/*.eml)"
$writer "$url" back
step "10:40 UTC: Jane came back"
$notifier -v run --now 2026-11-24T10:40:00Z
step "One thread per chat, as a mail client shows it"
grep -h -e '^Subject:' -e '^In-Reply-To:' target/demo-dify/outbox/*.eml | sort
