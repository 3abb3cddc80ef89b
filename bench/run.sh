#!/usr/bin/env bash
# Reproduces the figures in BENCHMARKS.md: each case timed as a whole process beside the
# floor it is compared to, on the same export in the same run.
#
#   bench/run.sh                      # 10k, 100k and 1M conversations (about 10 minutes)
#   bench/run.sh 10000 100000         # chosen sizes
#
# Needs sqlite3, hyperfine, GNU time and postfix's smtp-sink/smtp-source; installs them
# with apt-get when missing. Scratch files go to $BENCH_DIR (default /tmp/chat-notifier-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("${@:-10000 100000 1000000}")
read -r -a sizes <<<"${sizes[*]}"

missing=()
for tool in sqlite3 hyperfine smtp-sink smtp-source python3; do command -v "$tool" >/dev/null || missing+=("$tool"); done
[ -x /usr/bin/time ] || missing+=(time)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing sqlite3 hyperfine time postfix (for: ${missing[*]})" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sqlite3 hyperfine time postfix >/dev/null
  service postfix stop >/dev/null 2>&1 || true
fi

cargo build --release --quiet --bin chat-notifier --example gen_export
bin=$PWD/target/release/chat-notifier
gen=$PWD/target/release/examples/gen_export
work=${BENCH_DIR:-/tmp/chat-notifier-bench}
mkdir -p "$work"

NOW=2026-11-24T12:00:00Z        # the export's newest activity is just before this
SETTLED=2026-11-26T12:00:00Z    # first run: everything is older than the 24h horizon
COUNTED=2026-11-26T12:30:00Z    # the hourly count of rows read is taken, not due again by LATER
LATER=2026-11-26T13:00:00Z      # 1,000 new messages written in the hour before this
SOON=2026-11-24T12:01:00Z       # a minute after NOW: the chats in progress then are not due yet

# mean seconds of a hyperfine run, from its JSON export
mean() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['results'][0]['mean'])" "$1"; }
# peak RSS in MB of one run of a command
rss() { /usr/bin/time -f %M -o "$work/rss" "$@" >/dev/null 2>&1 || true; echo $(( $(cat "$work/rss") / 1024 )); }
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "$1" "$2"; }
ms() { python3 -c "import sys; print(f'{float(sys.argv[1]) * 1000:.1f}')" "$1"; }

printf '\n| conversations | messages | case | chat-notifier | floor | ratio | target | peak RSS |\n|---|---|---|---|---|---|---|---|\n' >"$work/table.md"
for n in "${sizes[@]}"; do
  export=$work/export-$n.sqlite
  [ -f "$export" ] || "$gen" --ids "${IDS:-seq}" --conversations "$n" --out "$export" --now "$NOW"
  [ -f "$export.base" ] || cp "$export" "$export.base"
  cp "$export.base" "$export"
  messages=$(sqlite3 "$export" 'select count(*) from messages')
  config=$work/$n.toml
  cat >"$config" <<TOML
export = "export-$n.sqlite"
state = "state-$n.sqlite"
[mail]
from = "notifier@example.com"
to = ["owner@example.com"]
burst = 1000000
[transport]
kind = "folder"
path = "out-$n"
TOML
  h() { hyperfine --style none --export-json "$work/h.json" "$@" >/dev/null 2>&1; mean "$work/h.json"; }

  # The floors: the sqlite3 shell starting and opening the file; reading every message once.
  floor_open=$(h --warmup 3 --runs 20 "sqlite3 $export 'select max(id) from messages'")
  aggregate="select conversation_id, count(*), max(sent_at), max(input_type = 'end_conversation') from messages group by conversation_id"
  floor_scan=$(h --warmup 1 --runs 3 "sqlite3 $export \"$aggregate\" > /dev/null")

  # Full first pass: a backfill preview of everything, on a fresh state.
  rm -rf "$work/state-$n.sqlite"* "$work/out-$n"
  full=$(h --runs 3 "$bin --config $config -q run --backfill --dry-run --now $NOW > /dev/null")
  full_rss=$(rss "$bin" --config "$config" -q run --backfill --dry-run --now "$NOW")

  # Settle: a first run that records all history without emails, a second that takes the
  # hourly count of rows read (ingest.rs), then 1,000 new messages.
  "$bin" --config "$config" -q run --now "$SETTLED"
  "$bin" --config "$config" -q run --now "$COUNTED"
  cp "$work/state-$n.sqlite" "$work/state-$n.base"
  "$gen" --ids "${IDS:-seq}" --append 1000 --out "$export" --now "$LATER"

  # Incremental: each timed run starts from the settled state and reads the 1,000 messages.
  prepare="rm -rf $work/state-$n.sqlite-wal $work/state-$n.sqlite-shm $work/out-$n; cp $work/state-$n.base $work/state-$n.sqlite"
  incremental=$(h --runs 10 --prepare "$prepare" "$bin --config $config -q run --now $LATER")
  eval "$prepare"
  inc_rss=$(rss "$bin" --config "$config" -q run --now "$LATER")
  emails=$(ls "$work/out-$n" | wc -l)
  # Target 2's floor: the same emails' bytes written as files by a plain copy, synced once.
  floor_files=$(h --warmup 2 --runs 10 --prepare "rm -rf $work/copy-$n" "cp -r $work/out-$n $work/copy-$n && sync -f $work/copy-$n")
  floor_email=$(python3 -c "import sys; print(float(sys.argv[1]) + 2 * float(sys.argv[2]))" "$floor_open" "$floor_files")

  # Idle: nothing new since, nothing due.
  idle=$(h --warmup 2 --runs 20 "$bin --config $config -q run --now $LATER")
  idle_rss=$(rss "$bin" --config "$config" -q run --now "$LATER")

  # Idle with the chats still going on open: a first run at the export's own "now" (history
  # older than 30 minutes recorded, the finished recent ones emailed) leaves the chats in
  # progress open and not due (20% of all); then idle runs a minute later.
  cp "$export.base" "$work/ip-$n.sqlite"
  sed -e "s/export-$n.sqlite/ip-$n.sqlite/" -e "s/state-$n.sqlite/ip-state-$n.sqlite/" -e "s/out-$n/ip-out-$n/" \
    -e 's/^\[mail\]/first_run_horizon = "30m"\n[mail]/' "$config" >"$work/ip-$n.toml"
  rm -rf "$work/ip-state-$n.sqlite"* "$work/ip-out-$n"
  "$bin" --config "$work/ip-$n.toml" -q run --now "$NOW"
  in_progress=$(sqlite3 "$work/ip-state-$n.sqlite" 'select count(*) from conversations where last_message > covered_through')
  floor_ip=$(h --warmup 3 --runs 20 "sqlite3 $work/ip-$n.sqlite 'select max(id) from messages'")
  idle_ip=$(h --warmup 2 --runs 20 "$bin --config $work/ip-$n.toml -q run --now $SOON")

  # The hand-run commands: report (its table) against the aggregate floor; status, with the
  # chats in progress open, against an idle run on the same state.
  report=$(h --warmup 1 --runs 3 "$bin --config $config -q report > /dev/null")
  report_rss=$(rss "$bin" --config "$config" -q report)
  status=$(h --warmup 2 --runs 10 "$bin --config $work/ip-$n.toml status > /dev/null")
  status_rss=$(rss "$bin" --config "$work/ip-$n.toml" status)

  # Incremental with the chats in progress open (target 7): the same state as idle above,
  # 1,000 new messages written in the hour before a run a minute later. Nothing in progress
  # is due then (idle above finds none), so the emails are those the new messages make.
  cp "$work/ip-state-$n.sqlite" "$work/ip-state-$n.base"
  "$gen" --ids "${IDS:-seq}" --append 1000 --out "$work/ip-$n.sqlite" --now "$SOON"
  prepare_ip="rm -rf $work/ip-state-$n.sqlite-wal $work/ip-state-$n.sqlite-shm $work/ip-out-$n; cp $work/ip-state-$n.base $work/ip-state-$n.sqlite"
  inc_ip=$(h --runs 10 --prepare "$prepare_ip" "$bin --config $work/ip-$n.toml -q run --now $SOON")
  eval "$prepare_ip"
  "$bin" --config "$work/ip-$n.toml" -q run --now "$SOON"
  emails_ip=$(ls "$work/ip-out-$n" | wc -l)
  floor_files_ip=$(h --warmup 2 --runs 10 --prepare "rm -rf $work/copy-$n" "cp -r $work/ip-out-$n $work/copy-$n && sync -f $work/copy-$n")
  floor_email_ip=$(python3 -c "import sys; print(float(sys.argv[1]) + 2 * float(sys.argv[2]))" "$floor_ip" "$floor_files_ip")

  state_kb=$(( $(stat -c %s "$work/state-$n.sqlite") / 1024 ))
  {
    echo "| $n | $messages | full first pass (backfill preview, $(sqlite3 "$export.base" "select count(distinct conversation_id) from messages") conversations) | $(ms "$full") ms | $(ms "$floor_scan") ms (sqlite3 aggregate) | $(ratio "$full" "$floor_scan") | 5 | $full_rss MB |"
    echo "| $n | $messages | incremental (1,000 new messages, $emails emails to folder) | $(ms "$incremental") ms | $(ms "$floor_email") ms (sqlite3 max(id) + 2 x the files copied and synced, $(ms "$floor_files") ms) | $(ratio "$incremental" "$floor_email") | 1 | $inc_rss MB |"
    echo "| $n | $messages | idle | $(ms "$idle") ms | $(ms "$floor_open") ms | $(ratio "$idle" "$floor_open") | 2 | $idle_rss MB |"
    echo "| $n | $messages | idle, $in_progress chats in progress | $(ms "$idle_ip") ms | $(ms "$floor_ip") ms | $(ratio "$idle_ip" "$floor_ip") | 2 | |"
    echo "| $n | $messages | incremental, $in_progress chats in progress (1,000 new messages, $emails_ip emails to folder) | $(ms "$inc_ip") ms | $(ms "$floor_email_ip") ms (sqlite3 max(id) + 2 x the files copied and synced, $(ms "$floor_files_ip") ms) | $(ratio "$inc_ip" "$floor_email_ip") | 1 | |"
    echo "| $n | $messages | report (table) | $(ms "$report") ms | $(ms "$floor_scan") ms (sqlite3 aggregate) | $(ratio "$report" "$floor_scan") | 3 | $report_rss MB |"
    echo "| $n | $messages | status, $in_progress chats in progress | $(ms "$status") ms | $(ms "$idle_ip") ms (idle run, same state) | $(ratio "$status" "$idle_ip") | 2 | $status_rss MB |"
  } >>"$work/table.md"
  echo "state file after $n conversations: ${state_kb} KB" >>"$work/state-sizes"
  cat "$work/table.md" | tail -7
done

# One long chat: what an email costs must follow what it shows (capped), not the chat's length.
# Before the transcript limits, 5k / 10k / 20k / 40k messages took 0.36 / 1.3 / 5 / 23 s.
printf '\n| one chat of | whole run, folder transport | its email |\n|---|---|---|\n' >>"$work/table.md"
for len in 5000 20000 40000 200000; do
  dir=$work/long-$len
  rm -rf "$dir" && mkdir -p "$dir"
  sqlite3 "$dir/export.sqlite" <examples/export-day1.sql
  sqlite3 "$dir/export.sqlite" "INSERT INTO conversations VALUES ('long', 'lead', 'v-long', '2026-11-20T10:00:00Z', NULL);
    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $len)
    INSERT INTO messages (conversation_id, sent_at, sender, gambit_id, input_type, field, body)
    SELECT 'long', '2026-11-20T10:30:00Z', CASE i % 2 WHEN 0 THEN 'bot' ELSE 'visitor' END, 'chat', 'text', NULL,
           'message number ' || i || ' ' || hex(randomblob(20)) FROM n;"
  printf 'export = "export.sqlite"\nstate = "state.sqlite"\n[mail]\nfrom = "notifier@example.com"\nto = ["owner@example.com"]\n[transport]\nkind = "folder"\npath = "out"\n' >"$dir/c.toml"
  long=$(hyperfine --style none --runs 3 --prepare "rm -rf $dir/state.sqlite* $dir/out" --export-json "$work/h.json" \
    "$bin --config $dir/c.toml -q run --backfill --now 2026-11-20T12:00:00Z" >/dev/null 2>&1; mean "$work/h.json")
  bytes=$(ls -S "$dir"/out/*.eml | head -1 | xargs stat -c %s)
  echo "| $len messages | $(ms "$long") ms | $(( bytes / 1024 )) KB |" >>"$work/table.md"
done

# Sending: emails a second over one connection to postfix's smtp-sink, beside smtp-source
# (postfix's own load generator) sending as many messages of the same size to the same sink.
pkill -f "smtp-sink -u nobody 127.0.0.1:2525" 2>/dev/null || true
smtp-sink -u nobody 127.0.0.1:2525 1000 >/dev/null 2>&1 &
sink=$!
trap 'kill $sink 2>/dev/null || true' EXIT
sleep 0.5
send=$work/send
rm -rf "$send" && mkdir -p "$send"
[ -f "$work/export-send.sqlite" ] || "$gen" --ids "${IDS:-seq}" --conversations 3000 --out "$work/export-send.sqlite" --now "$NOW"
for kind in smtp folder; do
  {
    printf 'export = "../export-send.sqlite"\nstate = "state.sqlite"\n'
    printf '[mail]\nfrom = "notifier@example.com"\nto = ["owner@example.com"]\nburst = 1000000\n[transport]\n'
    if [ $kind = smtp ]; then printf 'kind = "smtp"\nhost = "127.0.0.1"\nport = 2525\nsecurity = "none"\n'
    else printf 'kind = "folder"\npath = "eml"\n'; fi
  } >"$send/$kind.toml"
done
# The same emails as files, to know how many and how big they are.
"$bin" --config "$send/folder.toml" -q run --backfill --yes --now "$NOW"
emails=$(ls "$send/eml" | wc -l)
size=$(( $(cat "$send"/eml/*.eml | wc -c) / emails ))
prepare_send="rm -f $send/state.sqlite $send/state.sqlite-wal $send/state.sqlite-shm"
ours=$(hyperfine --style none --runs 5 --prepare "$prepare_send" --export-json "$work/h.json" \
  "$bin --config $send/smtp.toml -q run --backfill --yes --now $NOW" >/dev/null 2>&1; mean "$work/h.json")
# Sending alone: the same emails queued by a run that found no server (a closed port), then a
# run that only sends them.
sed 's/port = 2525/port = 2599/' "$send/smtp.toml" >"$send/down.toml"
rm -f "$send"/state.sqlite*
"$bin" --config "$send/down.toml" -q run --backfill --yes --now "$NOW" || true
sqlite3 "$send/state.sqlite" "PRAGMA wal_checkpoint(TRUNCATE)" >/dev/null
cp "$send/state.sqlite" "$send/queued.base"
prepare_queued="rm -f $send/state.sqlite-wal $send/state.sqlite-shm; cp $send/queued.base $send/state.sqlite"
only=$(hyperfine --style none --runs 5 --prepare "$prepare_queued" --export-json "$work/h.json" \
  "$bin --config $send/smtp.toml -q run --now $NOW" >/dev/null 2>&1; mean "$work/h.json")
theirs=$(hyperfine --style none --runs 5 --export-json "$work/h.json" \
  "smtp-source -d -s 1 -m $emails -l $size -f notifier@example.com -t owner@example.com 127.0.0.1:2525" >/dev/null 2>&1
  mean "$work/h.json")
{
  echo
  echo "| sending | emails (avg bytes) | chat-notifier (whole run: ingest, decide, render, send) | smtp-source, same count and size | ratio | target |"
  echo "|---|---|---|---|---|---|"
  echo "| one connection to smtp-sink | $emails ($size) | $(ms "$ours") ms = $(python3 -c "print(round($emails / $ours))") emails/s | $(ms "$theirs") ms = $(python3 -c "print(round($emails / $theirs))") messages/s | $(ratio "$ours" "$theirs") | >= 500/s, <= 2 |"
  echo "| the same, queued: a run that only sends | $emails ($size) | $(ms "$only") ms = $(python3 -c "print(round($emails / $only))") emails/s | $(ms "$theirs") ms | $(ratio "$only" "$theirs") | <= 1.25 (>= 0.8 x its rate) |"
} >>"$work/table.md"

echo
cat "$work/table.md"
echo
cat "$work/state-sizes"

# The sources (Rasa's tracker store, export v1 on PostgreSQL) at the same sizes.
bash bench/sources.sh "${sizes[@]}"
