#!/bin/sh
# Two "hosts" (two processes, two configs, two working folders) run chat-notifier against one
# state on PostgreSQL (a throwaway server, Debian's postgresql, as examples/demo-typebot.sh makes
# one) and send to one mail server: a small SMTP sink on 127.0.0.1 (python3) that keeps each
# message it takes, and is slow to answer the 20th. Host A is killed (SIGKILL) while it waits
# for that answer, mid-way through a run of 600 emails; host B, tried at once, finds the lease
# held, and takes over once it lapses (state_lease = "5s" here; 60s by default); host A comes
# back for the next chats. In the end the sink holds every chat's email once, but the one host
# A was sending when it died, twice with the same Message-ID.
set -eu
cd "$(dirname "$0")/.."
pgbin=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | tail -1)")
[ -x "$pgbin/initdb" ] || { echo "demo-two-hosts: needs PostgreSQL's server (apt-get install postgresql)" >&2; exit 1; }
cargo build --quiet --bin chat-notifier --example load_sql
bin=target/debug/chat-notifier
load=target/debug/examples/load_sql
demo=target/demo-two-hosts
url="postgresql://postgres@127.0.0.1:5546/notifier?sslmode=disable"
rm -rf $demo && mkdir -p $demo
pg=$(mktemp -d)
server() { if [ "$(id -u)" = 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown nobody:nogroup "$pg"
server "$pgbin/initdb" -D "$pg/data" -A trust -U postgres --no-sync >/dev/null
server "$pgbin/pg_ctl" -D "$pg/data" -l "$pg/log" -w start \
  -o "-c listen_addresses=127.0.0.1 -p 5546 -k $pg -c fsync=off" >/dev/null
trap 'server "$pgbin/pg_ctl" -D "$pg/data" -m fast stop >/dev/null; rm -rf "$pg"' EXIT
server "$pgbin/psql" -X -q -h 127.0.0.1 -p 5546 -U postgres -c "CREATE DATABASE notifier"

# The mail server: takes every message (saved in $demo/inbox), but answers the 20th only after
# 60 s (it says so in $demo/inbox/stalled), so that a host can be killed while it waits.
mkdir -p $demo/inbox
cat >$demo/sink.py <<'PY'
import os, socketserver, sys, threading, time
inbox, count, lock = sys.argv[2], [0], threading.Lock()
class Smtp(socketserver.StreamRequestHandler):
    def handle(self):
        say = lambda line: (self.wfile.write(line.encode() + b"\r\n"), self.wfile.flush())
        say("220 sink ESMTP")
        while line := self.rfile.readline():
            verb = line[:4].upper()
            if verb == b"DATA":
                say("354 go ahead")
                data = b""
                while (l := self.rfile.readline()) not in (b".\r\n", b""):
                    data += l[1:] if l.startswith(b"..") else l
                with lock:
                    count[0] += 1
                    n = count[0]
                open(os.path.join(inbox, f"{n:04}.eml"), "wb").write(data)
                if n == 20:
                    open(os.path.join(inbox, "stalled"), "w").close()
                    time.sleep(60)
                say("250 queued")
            elif verb == b"QUIT":
                return say("221 bye")
            else:
                say("250 ok")
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer.daemon_threads = True
socketserver.ThreadingTCPServer(("127.0.0.1", int(sys.argv[1])), Smtp).serve_forever()
PY
python3 $demo/sink.py 2526 $demo/inbox &
sink=$!
trap 'kill $sink; server "$pgbin/pg_ctl" -D "$pg/data" -m fast stop >/dev/null; rm -rf "$pg"' EXIT

# The same config on both hosts.
for host in a b; do
  mkdir -p $demo/host-$host
  cat >$demo/host-$host/notifier.toml <<TOML
export = "../export.sqlite"
state = "$url"
state_lease = "5s"
time_zone = "UTC"
[mail]
from = "Chat Notifier <notifier@example.com>"
to = ["Owner <owner@example.com>"]
burst = 10000
[transport]
kind = "smtp"
host = "127.0.0.1"
port = 2526
security = "none"
timeout = "120s"
TOML
done
a="$bin --config $demo/host-a/notifier.toml"
b="$bin --config $demo/host-b/notifier.toml"

# $1 chats from number $2 on, as the bot runtime writes them: each visitor gave a name and an
# email, then left at the phone question.
chats() {
  i=$2
  {
    [ "$2" = 0 ] && sed -n '/^CREATE TABLE bots/,/^CREATE INDEX/p' examples/export-day1.sql \
      && echo "INSERT INTO bots VALUES ('lead', 'Lead Bot');"
    echo "BEGIN;"
    while [ "$i" -lt $(($2 + $1)) ]; do
      at=$(printf '2026-11-24T%02d:%02d' $((8 + i / 60 % 12)) $((i % 60)))
      echo "INSERT INTO conversations VALUES ('chat-$i', 'lead', 'v-$i', '$at:00Z', NULL);"
      echo "INSERT INTO messages (conversation_id, sent_at, sender, gambit_id, input_type, field, body) VALUES
        ('chat-$i', '$at:00Z', 'bot', 'ask_name', 'text', NULL, 'What''s your name?'),
        ('chat-$i', '$at:10Z', 'visitor', NULL, NULL, 'name', 'Visitor $i'),
        ('chat-$i', '$at:11Z', 'bot', 'ask_email', 'email', NULL, 'Your email?'),
        ('chat-$i', '$at:20Z', 'visitor', NULL, NULL, 'email', 'visitor$i@example.com'),
        ('chat-$i', '$at:21Z', 'bot', 'ask_phone', 'phone', NULL, 'And your phone?');"
      i=$((i + 1))
    done
    echo "COMMIT;"
  } >$demo/chats.sql
  $load $demo/export.sqlite $demo/chats.sql
}
received() { ls "$demo/inbox" | grep -c '\.eml$' || true; }
step() { printf '\n##### %s\n\n' "$*"; }

chats 600 0
step "00:00 UTC: 600 chats to tell about; host A's cron starts a run"
$a run --now 2026-11-25T00:00:00Z 2>&1 &
pid=$!
# Killed while the mail server holds its 20th email (taken, not yet answered).
n=0
while [ ! -e $demo/inbox/stalled ] && [ $n -lt 6000 ]; do sleep 0.01; n=$((n + 1)); done
kill -9 $pid 2>/dev/null && echo "host A killed mid-way (SIGKILL) while its email $(received) waited for the server's answer" \
  || echo "host A finished before it could be killed"
wait $pid 2>/dev/null || true

step "host B's cron, at once: the lease of host A's run has not lapsed yet"
$b run --now 2026-11-25T00:00:00Z 2>&1 && code=0 || code=$?
echo "exit code $code; the server has $(received) emails"
step "check on host B: the state, its schema, the lease's holder, each host's settings"
$b check 2>&1 | grep '^state' || true

sleep 6
step "host B's cron, after the lease lapsed: it takes over"
$b run --now 2026-11-25T00:00:00Z 2>&1 && code=0 || code=$?
echo "exit code $code; the server has $(received) emails"

chats 10 600
step "00:10 UTC: host A is back; 10 more chats"
$a run --now 2026-11-25T00:10:00Z 2>&1 && code=0 || code=$?
echo "exit code $code; the server has $(received) emails"
$b run --now 2026-11-25T00:10:00Z 2>&1 && code=0 || code=$?
echo "host B, after it: exit code $code, nothing more: $(received) emails"

step "Every chat's email, once: what the server received"
cat $demo/inbox/*.eml | tr -d '\r' | grep '^Message-ID:' | sort >$demo/ids
cat $demo/inbox/*.eml | tr -d '\r' | grep '^Subject:' | sort -u >$demo/subjects
emails=$(wc -l <$demo/ids)
distinct=$(sort -u $demo/ids | wc -l)
echo "$emails emails, $distinct distinct Message-IDs, $(wc -l <$demo/subjects) chats"
twice=$(uniq -d $demo/ids)
if [ -n "$twice" ]; then
  echo "sent twice, with the same $twice: the one host A was sending when it died"
else
  echo "none sent twice"
fi
[ "$distinct" = 610 ] && [ "$(wc -l <$demo/subjects)" = 610 ] && [ $((emails - distinct)) -le 1 ] \
  && echo "each of the 610 chats told once (at most the one in flight at the kill twice)"
