#!/usr/bin/env bash
# Issue 27's "no behaviour change": two builds must write the same emails byte for byte.
#
#   bench/same-emails.sh BIN_OLD BIN_NEW [conversations]    # default 10000
#
# For each id shape (random UUIDs, sequential), on the same generated export, each build makes:
# a first real run with --backfill and the default mail.burst (the flood guard's summary), the
# same with no burst (every email), an incremental run 10 minutes later over 1,000 new messages
# (emails to the folder), an idle run after it, and the dry-run previews of the first run (with
# and without the burst). Then `diff -r` of the two builds' outputs: silent and exit 0 when they
# are the same. Scratch files go to $BENCH_DIR (default /tmp/chat-notifier-same-emails).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: $0 BIN_OLD BIN_NEW [conversations]" >&2; exit 2; }
old=$(realpath "$1")
new=$(realpath "$2")
n=${3:-10000}
work=${BENCH_DIR:-/tmp/chat-notifier-same-emails}
cargo build --release --quiet --example gen_export
gen=$PWD/target/release/examples/gen_export
NOW=2026-11-24T12:00:00Z
LATER=2026-11-24T12:10:00Z

rm -rf "$work"
mkdir -p "$work"
status=0
for shape in uuid seq; do
  base=$work/export-$shape-$n.sqlite
  "$gen" --conversations "$n" --ids "$shape" --out "$base" --now "$NOW"
  cp "$base" "$base.later"
  "$gen" --append 1000 --ids "$shape" --out "$base.later" --now "$LATER"
  for build in old new; do
    bin=${!build}
    dir=$work/$build/$shape
    mkdir -p "$dir"
    cp "$base" "$dir/export.sqlite"
    for burst in default all; do
      {
        printf 'export = "export.sqlite"\nstate = "state-%s.sqlite"\n[mail]\n' "$burst"
        printf 'from = "notifier@example.com"\nto = ["owner@example.com"]\n'
        [ "$burst" = all ] && printf 'burst = 1000000\n'
        printf '[transport]\nkind = "folder"\npath = "out-%s"\n' "$burst"
      } >"$dir/$burst.toml"
      # The previews first (a dry run works on a scratch copy: the state stays fresh).
      "$bin" --config "$dir/$burst.toml" -q run --backfill --dry-run --now "$NOW" >"$dir/preview-$burst.txt"
      "$bin" --config "$dir/$burst.toml" -q run --backfill --yes --now "$NOW"
    done
    # Incremental: 1,000 new messages, ten minutes later, on the state of the run with no burst.
    cp "$base.later" "$dir/export.sqlite"
    sed 's/path = "out-all"/path = "out-later"/' "$dir/all.toml" >"$dir/later.toml"
    "$bin" --config "$dir/later.toml" -q run --now "$LATER"
    "$bin" --config "$dir/later.toml" -q run --now "$LATER"
    "$bin" --config "$dir/later.toml" -q run --dry-run --now "$LATER" >"$dir/preview-idle.txt"
    # What the state says of each conversation and email, beside the files.
    for burst in default all; do
      sqlite3 "$dir/state-$burst.sqlite" "select id, last_message, covered_through, emails, subject, thread, held_through, visitor_id, bot_id from conversations order by id" >"$dir/conversations-$burst.txt"
      sqlite3 "$dir/state-$burst.sqlite" "select conversation_id, state, covers_through, message_id, status, subject from outbox order by id" >"$dir/outbox-$burst.txt"
    done
    rm -f "$dir"/export.sqlite* "$dir"/state-*.sqlite* "$dir"/*.toml "$dir"/*.lock
    # MIME boundaries are random per email: each is named by its rank in its file instead.
    python3 - "$dir" <<'PY'
import pathlib, re, sys
for eml in pathlib.Path(sys.argv[1]).rglob("*.eml"):
    data = eml.read_bytes()
    for i, b in enumerate(dict.fromkeys(re.findall(rb'boundary="([^"]+)"', data))):
        data = data.replace(b, b"BOUNDARY-%d" % i)
    eml.write_bytes(data)
PY
  done
  emails=$(find "$work/old/$shape" -name '*.eml' | wc -l)
  if diff -r "$work/old/$shape" "$work/new/$shape" >"$work/diff-$shape.txt"; then
    echo "$shape ids, $n conversations: the same $emails emails, previews and state rows"
  else
    echo "$shape ids, $n conversations: DIFFERENT (see $work/diff-$shape.txt)" >&2
    status=1
  fi
done
exit $status
