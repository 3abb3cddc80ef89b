#!/usr/bin/env bash
# Issue 27: a million chats with the ids real runtimes use. Each case timed as a whole process
# beside its floor, on the same export, in the same run (BENCHMARKS.md, "Issue 27").
#
#   bench/issue27.sh                      # uuid and sequential ids at 10k, 100k and 1M
#   SHAPES=uuid bench/issue27.sh 100000   # chosen shapes and sizes
#   BIN=/path/to/chat-notifier bench/issue27.sh 10000   # another build (default: release)
#
# Cases, per shape and size (the export of gen_export, its newest activity just before NOW):
#   first run     `run --backfill --yes` on a fresh state, folder transport, default mail.burst:
#                 wall time, bytes written and read (/proc/PID/io), peak RSS, the state's size
#                 and the WAL it leaves; floor: the sqlite3 aggregate reading every message once
#   flood guard   `run --backfill --dry-run`, default mail.burst, fresh state; same floor
#   preview       `run --backfill --dry-run`, burst off; same floor
#   idle after    the first idle run on the state (and WAL) the first run left; floor: sqlite3
#                 opening the export and reading max(id)
#   incremental   1,000 new messages 10 minutes later, on the state the first run left, emails
#                 to the folder; floor: the same emails' bytes written as files (cp -r, sync)
#   idle          the next runs, nothing new; floor: sqlite3 max(id)
# Scratch files go to $BENCH_DIR (default /tmp/chat-notifier-bench-27); a 1M export is 1.7 GB.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("${@:-10000 100000 1000000}")
read -r -a sizes <<<"${sizes[*]}"
read -r -a shapes <<<"${SHAPES:-uuid seq}"
for tool in sqlite3 hyperfine python3; do command -v "$tool" >/dev/null || { echo "needs $tool" >&2; exit 2; }; done

if [ -z "${BIN:-}" ]; then cargo build --release --quiet --bin chat-notifier --example gen_export
else [ -x target/release/examples/gen_export ] || cargo build --release --quiet --example gen_export; fi
bin=${BIN:-$PWD/target/release/chat-notifier}
gen=$PWD/target/release/examples/gen_export
work=${BENCH_DIR:-/tmp/chat-notifier-bench-27}
mkdir -p "$work"
NOW=2026-11-24T12:00:00Z
LATER=2026-11-24T12:10:00Z

# One run of a command: wall seconds, peak RSS (MB), bytes read and written by the process
# (/proc/PID/io, read while it is a zombie), as "wall rss_mb read_bytes write_bytes".
probe() {
  python3 - "$@" <<'PY'
import os, subprocess, sys, time
t = time.monotonic()
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)
wall = time.monotonic() - t
io = dict(l.split(": ") for l in open(f"/proc/{p.pid}/io").read().splitlines())
_, status, ru = os.wait4(p.pid, 0)
if status != 0:
    sys.exit(f"exit status {status} from {sys.argv[1:]}")
print(f"{wall:.3f} {ru.ru_maxrss // 1024} {int(io['read_bytes'])} {int(io['write_bytes'])}")
PY
}
mean() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['results'][0]['mean'])" "$1"; }
h() { hyperfine --style none --export-json "$work/h.json" "$@" >/dev/null 2>&1; mean "$work/h.json"; }
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "$1" "$2"; }
ms() { python3 -c "import sys; print(f'{float(sys.argv[1]) * 1000:,.1f}')" "$1"; }
mb() { python3 -c "import sys; print(f'{int(sys.argv[1]) / 1e6:,.1f}')" "$1"; }

table=$work/table.md
printf '\n| ids | conversations | case | chat-notifier | floor | ratio | target | peak RSS | bytes written / read |\n|---|---|---|---|---|---|---|---|---|\n' >>"$table"
for shape in "${shapes[@]}"; do
  for n in "${sizes[@]}"; do
    d=$work/$shape-$n
    mkdir -p "$d"
    export=$d/export.sqlite
    [ -f "$export.base" ] || "$gen" --conversations "$n" --ids "$shape" --out "$export.base" --now "$NOW"
    [ -f "$export.later" ] || { cp "$export.base" "$export.later"; "$gen" --append 1000 --ids "$shape" --out "$export.later" --now "$LATER"; }
    cp "$export.base" "$export"
    runs=$(( n >= 1000000 ? 1 : (n >= 100000 ? 2 : 5) ))
    for burst in default all; do
      {
        printf 'export = "export.sqlite"\nstate = "state.sqlite"\n[mail]\n'
        printf 'from = "notifier@example.com"\nto = ["owner@example.com"]\n'
        [ "$burst" = all ] && printf 'burst = 1000000\n'
        printf '[transport]\nkind = "folder"\npath = "out"\n'
      } >"$d/$burst.toml"
    done
    fresh() { rm -rf "$d"/state.sqlite* "$d/out" "$d/copy"; }

    floor_open=$(h --warmup 3 --runs 20 "sqlite3 $export 'select max(id) from messages'")
    aggregate="select conversation_id, count(*), max(sent_at), max(input_type = 'end_conversation') from messages group by conversation_id"
    floor_scan=$(h --warmup 1 --runs "$runs" "sqlite3 $export \"$aggregate\" > /dev/null")

    # The previews, on a fresh state each (a dry run leaves it so).
    fresh
    read -r guard guard_rss _ _ <<<"$(probe "$bin" --config "$d/default.toml" -q run --backfill --dry-run --now "$NOW")"
    read -r preview preview_rss _ _ <<<"$(probe "$bin" --config "$d/all.toml" -q run --backfill --dry-run --now "$NOW")"

    # The first real run: every chat older than the horizon emailed (--backfill), the default
    # burst sending 50 and summarising the rest.
    fresh
    read -r first first_rss first_read first_written <<<"$(probe "$bin" --config "$d/default.toml" -q run --backfill --yes --now "$NOW")"
    emails=$(ls "$d/out" | wc -l)
    summarised=$(sqlite3 "file:$d/state.sqlite?mode=ro" "select count(*) from outbox where status = 'summarised'")
    wal=$(stat -c %s "$d/state.sqlite-wal" 2>/dev/null || echo 0)
    mkdir -p "$d/after-first"
    rm -f "$d"/after-first/*
    cp "$d"/state.sqlite* "$d/after-first/"
    rm -f "$d/after-first/state.sqlite.lock"
    # The size of the state proper: the file once its WAL is in it.
    cp "$d/after-first/state.sqlite" "$d/measure.sqlite"
    [ -f "$d/after-first/state.sqlite-wal" ] && cp "$d/after-first/state.sqlite-wal" "$d/measure.sqlite-wal"
    sqlite3 "$d/measure.sqlite" 'PRAGMA wal_checkpoint(TRUNCATE)' >/dev/null
    state_bytes=$(stat -c %s "$d/measure.sqlite")
    rm -f "$d"/measure.sqlite*
    restore="rm -rf $d/state.sqlite-wal $d/state.sqlite-shm $d/out; cp $d/after-first/* $d/"

    # The first idle run after it: what the first run left (its WAL) is this run's to carry.
    idle_after=$(h --runs 10 --prepare "$restore" "$bin --config $d/all.toml -q run --now $NOW")

    # Incremental: 1,000 new messages, ten minutes later, from the state the first run left.
    cp "$export.later" "$export"
    inc=$(h --runs "$(( runs * 2 ))" --prepare "$restore" "$bin --config $d/all.toml -q run --now $LATER")
    eval "$restore"
    read -r _ inc_rss _ _ <<<"$(probe "$bin" --config "$d/all.toml" -q run --now "$LATER")"
    inc_emails=$(ls "$d/out" | wc -l)
    floor_files=$(h --warmup 2 --runs 10 --prepare "rm -rf $d/copy" "cp -r $d/out $d/copy && sync -f $d/copy")

    # Idle: the runs after that, nothing new.
    idle=$(h --warmup 2 --runs 20 "$bin --config $d/all.toml -q run --now $LATER")
    after_wal=$(stat -c %s "$d/state.sqlite-wal" 2>/dev/null || echo 0)

    conversations=$(sqlite3 "file:$export?mode=ro" 'select count(*) from conversations')
    {
      echo "| $shape | $n | first real run (--backfill, default burst: $emails emails, $summarised summarised) | $(ms "$first") ms | $(ms "$floor_scan") ms (sqlite3 aggregate) | $(ratio "$first" "$floor_scan") | 5 | $first_rss MB | $(mb "$first_written") / $(mb "$first_read") MB written / read; state $(mb "$state_bytes") MB ($(ratio "$first_written" "$state_bytes") x); WAL left $(mb "$wal") MB |"
      echo "| $shape | $n | flood guard (--backfill --dry-run, default burst) | $(ms "$guard") ms | $(ms "$floor_scan") ms | $(ratio "$guard" "$floor_scan") | 5 | $guard_rss MB | |"
      echo "| $shape | $n | backfill preview (--backfill --dry-run, burst off) | $(ms "$preview") ms | $(ms "$floor_scan") ms | $(ratio "$preview" "$floor_scan") | 5 | $preview_rss MB | |"
      echo "| $shape | $n | first idle run after the first run | $(ms "$idle_after") ms | $(ms "$floor_open") ms (sqlite3 max(id)) | $(ratio "$idle_after" "$floor_open") | 2 | | |"
      echo "| $shape | $n | incremental (1,000 new messages 10 min later, $inc_emails emails to folder) | $(ms "$inc") ms | $(ms "$floor_files") ms (the same files copied, synced) | $(ratio "$inc" "$floor_files") | 2 | $inc_rss MB | |"
      echo "| $shape | $n | idle | $(ms "$idle") ms | $(ms "$floor_open") ms | $(ratio "$idle" "$floor_open") | 2 | | WAL after: $(mb "$after_wal") MB |"
    } >>"$table"
    echo "$shape $n: $conversations conversations, bin $bin" >>"$work/notes"
    tail -6 "$table"
    rm -rf "$d/out" "$d/copy"
  done
done
