#!/usr/bin/env bash
# The state on PostgreSQL beside the same on SQLite (issue 26, BENCHMARKS.md "The state on
# PostgreSQL"): idle and incremental runs at each size, the export the same (bench/run.sh's
# gen_export, on SQLite), only `state` differs; then the cost per email of sending from each
# state, where PostgreSQL adds the lease check before each email and the outbox claims, with
# the statements each email costs counted by pg_stat_statements.
#
#   bench/state.sh                   # 100k and 1M conversations
#   bench/state.sh 100000            # chosen sizes
#   CHAT_NOTIFIER_BIN=/path/to/build GEN_EXPORT=/path/to/gen_export bench/state.sh   # a build made before
#
# A throwaway PostgreSQL 15 cluster (Debian's postgresql; as nobody under root) on 127.0.0.1,
# its settings the defaults (fsync on), reached over TCP without TLS. Needs sqlite3, hyperfine,
# python3 (bench/run.sh installs them). Scratch files go to $BENCH_DIR (default
# /tmp/chat-notifier-bench; exports already there are reused).
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("${@:-100000 1000000}")
read -r -a sizes <<<"${sizes[*]}"

pgbin=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | tail -1)")
[ -x "$pgbin/initdb" ] || { echo "bench/state.sh: needs PostgreSQL's server (apt-get install postgresql)" >&2; exit 1; }
# CHAT_NOTIFIER_BIN and GEN_EXPORT measure builds made before (the release build otherwise).
if [ -z "${CHAT_NOTIFIER_BIN:-}" ]; then cargo build --release --quiet --bin chat-notifier --example gen_export; fi
bin=${CHAT_NOTIFIER_BIN:-$PWD/target/release/chat-notifier}
gen=${GEN_EXPORT:-$PWD/target/release/examples/gen_export}
work=${BENCH_DIR:-/tmp/chat-notifier-bench}
mkdir -p "$work"

NOW=2026-11-24T12:00:00Z        # the export's newest activity is just before this
SETTLED=2026-11-26T12:00:00Z    # first run: everything is older than the 24h horizon
COUNTED=2026-11-26T12:30:00Z    # the hourly count of rows read is taken, not due again by LATER
LATER=2026-11-26T13:00:00Z      # 1,000 new messages written in the hour before this

mean() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['results'][0]['mean'])" "$1"; }
ms() { python3 -c "import sys; print(f'{float(sys.argv[1]) * 1000:.1f}')" "$1"; }
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "$1" "$2"; }
h() { hyperfine --style none --export-json "$work/h.json" "$@" >/dev/null 2>&1; mean "$work/h.json"; }

# The cluster, pg_stat_statements loaded (it counts; it does not change what a run does).
pg=$(mktemp -d)
server() { if [ "$(id -u)" = 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown nobody:nogroup "$pg"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
server "$pgbin/initdb" -D "$pg/data" -A trust -U postgres -E UTF8 --locale C >/dev/null
server "$pgbin/pg_ctl" -D "$pg/data" -l "$pg/log" -w start \
  -o "-c listen_addresses=127.0.0.1 -p $port -k $pg -c shared_preload_libraries=pg_stat_statements" >/dev/null
trap 'server "$pgbin/pg_ctl" -D "$pg/data" -m fast stop >/dev/null; rm -rf "$pg"' EXIT
psql() { "$pgbin/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres "$@"; }
url() { echo "postgresql://postgres@127.0.0.1:$port/$1?sslmode=disable"; }
# A database made again from a saved one: what each timed run starts from.
fresh() { psql -d postgres -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1 TEMPLATE $2 STRATEGY FILE_COPY"; }
config() { # kind n state out
  printf 'export = "export-%s.sqlite"\nstate = "%s"\n[mail]\nfrom = "notifier@example.com"\nto = ["owner@example.com"]\nburst = 1000000\n[transport]\nkind = "folder"\npath = "%s"\n' \
    "$2" "$3" "$4" >"$work/state-bench-$1-$2.toml"
  echo "$work/state-bench-$1-$2.toml"
}

table=$work/state-table.md
printf '\n| conversations | messages | case | SQLite state | PostgreSQL state | PostgreSQL / SQLite |\n|---|---|---|---|---|---|\n' >"$table"
for n in "${sizes[@]}"; do
  export=$work/export-$n.sqlite
  [ -f "$export.base" ] || { "$gen" --conversations "$n" --out "$export" --now "$NOW"; cp "$export" "$export.base"; }
  cp "$export.base" "$export"
  messages=$(sqlite3 "$export" 'select count(*) from messages')
  sq=$(config sqlite "$n" "sb-state-$n.sqlite" "sb-out-sqlite-$n")
  pq=$(config pg "$n" "$(url "s$n")" "sb-out-pg-$n")

  # Settled on each state: a first run that records all history, a second that takes the
  # hourly count of rows read; saved.
  rm -rf "$work/sb-state-$n.sqlite"* "$work"/sb-out-*-"$n"
  psql -d postgres -c "DROP DATABASE IF EXISTS s$n" -c "DROP DATABASE IF EXISTS base$n" -c "CREATE DATABASE s$n"
  for c in "$sq" "$pq"; do
    "$bin" --config "$c" -q run --now "$SETTLED"
    "$bin" --config "$c" -q run --now "$COUNTED"
  done
  sqlite3 "$work/sb-state-$n.sqlite" "PRAGMA wal_checkpoint(TRUNCATE)" >/dev/null
  cp "$work/sb-state-$n.sqlite" "$work/sb-state-$n.base"
  psql -d postgres -c "CREATE DATABASE base$n TEMPLATE s$n STRATEGY FILE_COPY"
  sqlite_kb=$(( $(stat -c %s "$work/sb-state-$n.sqlite") / 1024 ))
  pg_kb=$(psql -d postgres -At -c "select pg_database_size('s$n') / 1024")
  "$gen" --append 1000 --out "$export" --now "$LATER"

  # Incremental: each timed run from the settled state, reading the 1,000 new messages.
  prep_sq="rm -rf $work/sb-state-$n.sqlite-wal $work/sb-state-$n.sqlite-shm $work/sb-out-sqlite-$n; cp $work/sb-state-$n.base $work/sb-state-$n.sqlite"
  prep_pg="rm -rf $work/sb-out-pg-$n; $pgbin/psql -X -q -h 127.0.0.1 -p $port -U postgres -d postgres -c 'DROP DATABASE IF EXISTS s$n' -c 'CREATE DATABASE s$n TEMPLATE base$n STRATEGY FILE_COPY'"
  inc_sq=$(h --runs 10 --prepare "$prep_sq" "$bin --config $sq -q run --now $LATER")
  inc_pg=$(h --runs 10 --prepare "$prep_pg" "$bin --config $pq -q run --now $LATER")
  eval "$prep_sq"
  eval "$prep_pg" >/dev/null
  "$bin" --config "$sq" -q run --now "$LATER"
  "$bin" --config "$pq" -q run --now "$LATER"
  emails_sq=$(ls "$work/sb-out-sqlite-$n" | wc -l)
  emails_pg=$(ls "$work/sb-out-pg-$n" | wc -l)
  # Idle: nothing new, nothing due.
  idle_sq=$(h --warmup 2 --runs 20 "$bin --config $sq -q run --now $LATER")
  idle_pg=$(h --warmup 2 --runs 20 "$bin --config $pq -q run --now $LATER")
  {
    echo "| $n | $messages | incremental (1,000 new messages; $emails_sq / $emails_pg emails to folder) | $(ms "$inc_sq") ms | $(ms "$inc_pg") ms | $(ratio "$inc_pg" "$inc_sq") |"
    echo "| $n | $messages | idle | $(ms "$idle_sq") ms | $(ms "$idle_pg") ms | $(ratio "$idle_pg" "$idle_sq") |"
    echo "| $n | $messages | state's size, settled | $sqlite_kb KB | $pg_kb KB | $(ratio "$pg_kb" "$sqlite_kb") |"
  } >>"$table"
  tail -3 "$table"
done

# The cost per email: the same emails queued in each state by a run that found no server (a
# closed port), then a run that only sends them (folder transport), against an idle run on the
# state it leaves. On PostgreSQL each email is claimed from the outbox (FOR UPDATE SKIP LOCKED)
# and the lease checked before it goes; pg_stat_statements counts the statements that run made.
send=$work/state-send
rm -rf "$send" && mkdir -p "$send"
[ -f "$work/export-send.sqlite" ] || "$gen" --conversations 3000 --out "$work/export-send.sqlite" --now "$NOW"
psql -d postgres -c "DROP DATABASE IF EXISTS send" -c "DROP DATABASE IF EXISTS sendbase" -c "CREATE DATABASE send"
for kind in sqlite pg; do
  state=$([ $kind = sqlite ] && echo state.sqlite || url send)
  printf 'export = "../export-send.sqlite"\nstate = "%s"\n[mail]\nfrom = "notifier@example.com"\nto = ["owner@example.com"]\nburst = 1000000\n' "$state" >"$send/$kind-down.toml"
  cp "$send/$kind-down.toml" "$send/$kind.toml"
  printf '[transport]\nkind = "smtp"\nhost = "127.0.0.1"\nport = 2599\nsecurity = "none"\n' >>"$send/$kind-down.toml"
  printf '[transport]\nkind = "folder"\npath = "eml-%s"\n' "$kind" >>"$send/$kind.toml"
  "$bin" --config "$send/$kind-down.toml" -q run --backfill --yes --now "$NOW" || true
done
sqlite3 "$send/state.sqlite" "PRAGMA wal_checkpoint(TRUNCATE)" >/dev/null
cp "$send/state.sqlite" "$send/queued.base"
psql -d postgres -c "CREATE DATABASE sendbase TEMPLATE send STRATEGY FILE_COPY"
queued=$(sqlite3 "$send/state.sqlite" "select count(*) from outbox where status = 'pending'")
queued_pg=$(psql -d send -At -c "select count(*) from outbox where status = 'pending'")
prep_sq="rm -rf $send/state.sqlite-wal $send/state.sqlite-shm $send/eml-sqlite; cp $send/queued.base $send/state.sqlite"
prep_pg="rm -rf $send/eml-pg; $pgbin/psql -X -q -h 127.0.0.1 -p $port -U postgres -d postgres -c 'DROP DATABASE IF EXISTS send' -c 'CREATE DATABASE send TEMPLATE sendbase STRATEGY FILE_COPY'"
send_sq=$(h --runs 5 --prepare "$prep_sq" "$bin --config $send/sqlite.toml -q run --now $NOW")
send_pg=$(h --runs 5 --prepare "$prep_pg" "$bin --config $send/pg.toml -q run --now $NOW")
# The statements of one such run on PostgreSQL, counted.
eval "$prep_pg" >/dev/null
psql -d send -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" -c "SELECT pg_stat_statements_reset()" >/dev/null
"$bin" --config "$send/pg.toml" -q run --now "$NOW"
statements=$(psql -d send -At -F ' | ' -c "SELECT calls, round(total_exec_time::numeric, 1), regexp_replace(left(query, 90), '\s+', ' ', 'g')
  FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'send') AND query NOT LIKE '%pg_stat_statements%'
  ORDER BY calls DESC, total_exec_time DESC LIMIT 12")
sent_pg=$(ls "$send/eml-pg" | wc -l)
idle_send_sq=$(h --warmup 2 --runs 10 "$bin --config $send/sqlite.toml -q run --now $NOW")
idle_send_pg=$(h --warmup 2 --runs 10 "$bin --config $send/pg.toml -q run --now $NOW")
per() { python3 -c "import sys; print(f'{(float(sys.argv[1]) - float(sys.argv[2])) * 1e6 / int(sys.argv[3]):.0f}')" "$1" "$2" "$3"; }
{
  echo
  echo "| sending queued emails (folder) | emails | SQLite state | PostgreSQL state | per email, SQLite | per email, PostgreSQL | PostgreSQL's extra per email |"
  echo "|---|---|---|---|---|---|---|"
  echo "| a run that only sends them, less an idle run | $queued / $queued_pg | $(ms "$send_sq") ms (idle $(ms "$idle_send_sq") ms) | $(ms "$send_pg") ms (idle $(ms "$idle_send_pg") ms) | $(per "$send_sq" "$idle_send_sq" "$queued") µs | $(per "$send_pg" "$idle_send_pg" "$queued_pg") µs | $(python3 -c "import sys; a=(float(sys.argv[1])-float(sys.argv[2]))/int(sys.argv[5]); b=(float(sys.argv[3])-float(sys.argv[4]))/int(sys.argv[6]); print(f'{(b - a) * 1e6:.0f}')" "$send_sq" "$idle_send_sq" "$send_pg" "$idle_send_pg" "$queued" "$queued_pg") µs |"
  echo
  echo "The statements of one such run on PostgreSQL ($sent_pg emails), by calls (calls | total ms in the server | statement):"
  echo
  echo '```'
  echo "$statements"
  echo '```'
} >>"$table"
echo
cat "$table"
