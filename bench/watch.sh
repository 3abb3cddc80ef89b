#!/usr/bin/env bash
# The watcher's figures (issue 29) in BENCHMARKS.md: `chat-notifier watch` on a store of 100k
# conversations (examples/gen_export), export v1 on SQLite and on PostgreSQL:
#   - latency: from the commit of a completed chat's last message to its email accepted by a
#     local SMTP server (a sink of this script's own that notes when it answers 250 to each),
#     p50 / p95 / max over N chats written a second or so apart;
#   - CPU per idle hour: the watcher's own CPU time (utime + stime, /proc) over an idle spell,
#     scaled to an hour, beside a timer that starts `run` every `interval` (hyperfine's user +
#     system time of one idle run, times the ticks in an hour);
#   - resident memory over 10,000 cycles: one commit to the store per cycle, VmRSS sampled.
#
#   nice bench/watch.sh                 # 100k conversations, 60 chats each, 10,000 cycles
#   CHATS=20 CYCLES=1000 IDLE=60 nice bench/watch.sh 10000
#
# Needs sqlite3, hyperfine, python3 and postgresql (what bench/run.sh and bench/sources.sh
# install). Scratch files go to $BENCH_DIR/watch (default /tmp/chat-notifier-bench/watch).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}
chats=${CHATS:-60}
cycles=${CYCLES:-10000}
idle=${IDLE:-300}
interval=${INTERVAL:-5}

cargo build --release --quiet --bin chat-notifier --example gen_export
bin=$PWD/target/release/chat-notifier
gen=$PWD/target/release/examples/gen_export
work=${BENCH_DIR:-/tmp/chat-notifier-bench}/watch
mkdir -p "$work"
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -d "$work/pg" ] && server "$pgbin/pg_ctl" -D "$work/pg" -m fast stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
server() { if [ "$(id -u)" = 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi; }

# The SMTP sink: one line per email accepted, "<unix time> <subject>", written as it answers 250.
cat >"$work/sink.py" <<'PY'
import socketserver, sys, time
log = open(sys.argv[2], "a", buffering=1)
class Smtp(socketserver.StreamRequestHandler):
    def handle(self):
        w = lambda s: self.wfile.write(s.encode() + b"\r\n")
        w("220 sink ESMTP")
        while True:
            line = self.rfile.readline()
            if not line:
                return
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                w("250-sink"); w("250-8BITMIME"); w("250 PIPELINING")
            elif verb == b"DATA":
                w("354 go on")
                subject = ""
                for data in iter(self.rfile.readline, b""):
                    if data == b".\r\n":
                        break
                    if data.lower().startswith(b"subject:") and not subject:
                        subject = data[8:].strip().decode(errors="replace")
                w("250 queued")
                log.write(f"{time.time():.6f} {subject}\n")
            elif verb == b"QUIT":
                w("221 bye"); return
            else:
                w("250 ok")
class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
Server(("127.0.0.1", int(sys.argv[1])), Smtp).serve_forever()
PY
port=2526
: >"$work/accepted.log"
python3 "$work/sink.py" $port "$work/accepted.log" & pids+=($!)

# The store: 100k conversations whose newest activity is three days old, so the first run
# records them all without an email, as a watcher started on an old store finds it.
start=$(date -u -d '3 days ago' +%Y-%m-%dT%H:%M:%SZ)
export=$work/export-$n.sqlite
rm -f "$export"*
"$gen" --conversations "$n" --out "$export" --now "$start"
messages=$(sqlite3 "$export" 'select count(*) from messages')

config() { # FILE STATE, then the source's lines
  local file=$1 state=$2; shift 2
  { printf 'state = "%s"\n' "$state"; printf '%s\n' "$@"
    printf '[mail]\nfrom = "notifier@example.com"\nto = ["owner@example.com"]\nburst = 1000000\n'
    printf '[transport]\nkind = "smtp"\nhost = "127.0.0.1"\nport = %s\nsecurity = "none"\n' $port
    printf '[watch]\ninterval = "%ss"\n' "$interval"; } >"$file"
}

# Completed chats written into the store, each committed at the end, one to two seconds apart;
# prints "<commit time> <name>" per chat. $1: sqlite FILE or pg DB.
cat >"$work/writer.py" <<'PY'
import random, sqlite3, subprocess, sys, time
kind, where, count, prefix = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
random.seed(7)
def stamp():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
def sql_sqlite(statements):
    db = sqlite3.connect(where, isolation_level=None, timeout=30)
    db.execute("BEGIN")
    for s, p in statements:
        db.execute(s, p)
    db.execute("COMMIT")
    db.close()
def sql_pg(statements):
    text = "BEGIN;\n"
    for s, p in statements:
        for v in p:
            s = s.replace("?", "NULL" if v is None else "'" + str(v).replace("'", "''") + "'", 1)
        text += s + ";\n"
    subprocess.run(["psql", "-X", "-q", "-h", "127.0.0.1", "-p", "5544", "-U", "postgres", "-d", where],
                   input=text + "COMMIT;\n", text=True, check=True)
run = sql_sqlite if kind == "sqlite" else sql_pg
msg = ("INSERT INTO messages (id, conversation_id, sent_at, sender, gambit_id, input_type, field, body) "
       "VALUES ((SELECT coalesce(max(id), 0) + 1 FROM messages), ?, ?, ?, ?, ?, ?, ?)")
for i in range(count):
    name = f"{prefix}{i}x"
    cid = f"{prefix}-{i}-{time.time_ns()}"
    run([("INSERT INTO conversations VALUES (?, 'lead', ?, ?, 'https://example.com/')", (cid, "v-" + cid, stamp())),
         (msg, (cid, stamp(), "bot", "ask_name", "text", None, "What's your name?")),
         (msg, (cid, stamp(), "visitor", None, None, "name", name))])
    time.sleep(0.2)
    before = time.time()  # the commit is after this: the latency is counted from before it
    run([(msg, (cid, stamp(), "bot", "done", "end_conversation", None, "Thanks, we will be in touch!"))])
    print(f"{before:.6f} {name}", flush=True)
    time.sleep(random.uniform(1.0, 2.0))
PY

# p50 / p95 / max of the latencies of the chats named with $1, from the writer's and the sink's logs.
latencies() {
  python3 - "$1" "$work/written-$1.log" "$work/accepted.log" <<'PY'
import re, sys
prefix, written, accepted = sys.argv[1], sys.argv[2], sys.argv[3]
sent = {l.split()[1]: float(l.split()[0]) for l in open(written) if l.strip()}
got = {}
for l in open(accepted):
    t, _, subject = l.strip().partition(" ")
    m = re.search(rf"\b({prefix}\d+x)\b", subject)
    if m and m.group(1) not in got:
        got[m.group(1)] = float(t)
lat = sorted(got[k] - sent[k] for k in sent if k in got)
missing = len(sent) - len(lat)
q = lambda p: lat[min(len(lat) - 1, int(round(p * (len(lat) - 1))))]
print(f"{q(0.5):.2f} s | {q(0.95):.2f} s | {lat[-1]:.2f} s | {len(lat)}{f' ({missing} missing)' if missing else ''}")
PY
}

# A watcher's CPU seconds so far (utime + stime), from /proc.
cpu() { python3 -c "import os,sys; f=open(f'/proc/{sys.argv[1]}/stat').read().rsplit(')',1)[1].split(); print((int(f[11])+int(f[12]))/os.sysconf('SC_CLK_TCK'))" "$1"; }
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
# hyperfine's user + system seconds of one run.
run_cpu() { python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['results'][0]; print(r['user']+r['system'], r['mean'])" "$1"; }
per_hour() { python3 -c "import sys; print(f'{float(sys.argv[1]) * float(sys.argv[2]):.1f}')" "$1" "$2"; }

wait_for() { # SECONDS COMMAND...: until the command succeeds
  local limit=$1; shift
  for _ in $(seq $((limit * 10))); do "$@" && return 0; sleep 0.1; done
  return 1
}
accepted_all() { [ "$(grep -c " $1[0-9]*x\b" "$work/accepted.log" || true)" -ge "$chats" ]; }

measure_store() { # LABEL PREFIX CONFIG WRITER-KIND WHERE
  local label=$1 prefix=$2 cfg=$3 kind=$4 where=$5 pid c0 c1 tick
  rm -f "$work/$prefix-state.sqlite"*
  "$bin" --config "$cfg" -q run
  "$bin" --config "$cfg" watch 2>"$work/$prefix-watch.err" & pid=$!; pids+=($pid)
  sleep 2
  python3 "$work/writer.py" "$kind" "$where" "$chats" "$prefix" >"$work/written-$prefix.log"
  wait_for 120 accepted_all "$prefix" || echo "not every $label email arrived" >&2
  echo "| $label | $(latencies "$prefix") |" >>"$work/latency.md"
  # Idle: nothing written for $idle seconds.
  sleep 5; c0=$(cpu $pid); sleep "$idle"; c1=$(cpu $pid)
  kill -TERM $pid; wait $pid || true
  # The timer beside it: one idle `run` per tick, on the same settled state.
  tick=$(python3 -c "import sys; print(3600 / float(sys.argv[1]))" "$interval")
  hyperfine --style none --warmup 2 --runs 20 --export-json "$work/h.json" "$bin --config $cfg -q run" >/dev/null 2>&1 || true
  read -r run_cpu_s run_wall < <(run_cpu "$work/h.json")
  echo "| $label | $(per_hour "$(python3 -c "print(($c1 - $c0) / $idle)")" 3600) s | $(per_hour "$run_cpu_s" "$tick") s ($(python3 -c "print(f'{$run_wall * 1000:.1f}')") ms a run, $tick runs) |" >>"$work/idle.md"
  [ -s "$work/$prefix-watch.err" ] && { echo "$label watcher said:" >&2; cat "$work/$prefix-watch.err" >&2; }
  return 0
}

printf '| store (%s conversations, %s messages) | p50 | p95 | max | chats |\n|---|---|---|---|---|\n' "$n" "$messages" >"$work/latency.md"
printf '| store | watcher, CPU per idle hour | timer every %ss, CPU per idle hour |\n|---|---|---|\n' "$interval" >"$work/idle.md"

# SQLite.
config "$work/sqlite.toml" "sl-state.sqlite" "export = \"export-$n.sqlite\""
measure_store "export v1, SQLite (inotify)" sl "$work/sqlite.toml" sqlite "$export"

# PostgreSQL: the same store copied in (as bench/sources.sh does), on a cluster of its own.
if [ ! -d "$work/pg" ]; then
  mkdir -p "$work/pg"; [ "$(id -u)" = 0 ] && chown nobody:nogroup "$work/pg" "$work"
  server "$pgbin/initdb" -D "$work/pg" -A trust -U postgres --no-sync >/dev/null
fi
server "$pgbin/pg_ctl" -D "$work/pg" -o "-c listen_addresses=127.0.0.1 -p 5544 -k /tmp" -l "$work/pg.log" -w start >/dev/null
psql() { command psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p 5544 -U postgres "$@"; }
db=watch_$n
psql -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
psql -d "$db" -c "CREATE TABLE bots (id TEXT PRIMARY KEY, name TEXT NOT NULL);
  CREATE TABLE conversations (id TEXT PRIMARY KEY, bot_id TEXT NOT NULL, visitor_id TEXT NOT NULL, started_at TEXT NOT NULL, page_url TEXT);
  CREATE TABLE messages (id BIGINT PRIMARY KEY, conversation_id TEXT NOT NULL, sent_at TEXT NOT NULL, sender TEXT NOT NULL,
    gambit_id TEXT, input_type TEXT, field TEXT, body TEXT NOT NULL);"
copy() { sqlite3 -csv "$export" "$1" | psql -d "$db" -c "\\copy $2 FROM STDIN CSV"; }
copy "select * from bots" bots
# Without the chats the SQLite case wrote.
copy "select * from conversations where id not like 'sl-%'" conversations
copy "select * from messages where conversation_id not like 'sl-%'" messages
psql -d "$db" -c "CREATE INDEX messages_by_conversation ON messages (conversation_id, id); ANALYZE"
config "$work/pg.toml" "pg-state.sqlite" '[source]' 'kind = "export"' "url = \"postgresql://postgres@127.0.0.1:5544/$db?sslmode=disable\""
measure_store "export v1, PostgreSQL (interval ${interval}s)" pg "$work/pg.toml" pg "$db"

# Memory over $cycles cycles: a commit each (one message into a chat still going), each waking a
# cycle; VmRSS after the first 100 and at the end.
rm -f "$work/sl-state.sqlite"*
"$bin" --config "$work/sqlite.toml" -q run
"$bin" --config "$work/sqlite.toml" -vv watch 2>"$work/soak.err" & pid=$!; pids+=($pid)
sleep 2
python3 - "$export" "$cycles" "$pid" "$work/soak.err" "$work/rss.log" <<'PY'
import sqlite3, sys, time
path, cycles, pid, log, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
db = sqlite3.connect(path, isolation_level=None)
db.execute("INSERT INTO conversations VALUES ('soak', 'lead', 'v-soak', '2026-01-01T00:00:00Z', NULL)")
rss = lambda: int([l.split()[1] for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS:")][0])
count = lambda: open(log).read().count("ingest: ")
samples = []
for i in range(cycles):
    before = count() if i % 100 == 0 else None
    db.execute("INSERT INTO messages (id, conversation_id, sent_at, sender, body) VALUES "
               "((SELECT max(id) + 1 FROM messages), 'soak', strftime('%Y-%m-%dT%H:%M:%SZ', 'now'), 'visitor', 'still typing')")
    if before is not None:
        # Every hundredth write waits for its cycle: the writes do not outrun the cycles.
        deadline = time.time() + 30
        while count() <= before and time.time() < deadline:
            time.sleep(0.005)
    else:
        time.sleep(0.03)
    if i + 1 in (100, 1000, cycles // 2, cycles):
        samples.append((i + 1, count(), rss()))
open(out, "w").write("\n".join(f"{w} {c} {r}" for w, c, r in samples) + "\n")
PY
kill -TERM $pid; wait $pid || true
{
  printf '| writes | cycles | VmRSS |\n|---|---|---|\n'
  while read -r w c r; do printf '| %s | %s | %s KiB |\n' "$w" "$c" "$r"; done <"$work/rss.log"
} >"$work/rss.md"

echo "## latency, commit to SMTP-accepted"; cat "$work/latency.md"
echo; echo "## CPU per idle hour"; cat "$work/idle.md"
echo; echo "## memory over cycles"; cat "$work/rss.md"
