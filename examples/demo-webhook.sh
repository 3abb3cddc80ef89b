#!/bin/sh
# Signed webhooks beside email (README: "Beyond the inbox"): a receiver on 127.0.0.1 (Python's
# http.server, checking each request with the README's own verification code) prints what it
# gets while two cron runs, a day apart, notify it of every state of the bundled example export.
set -eu
cd "$(dirname "$0")/.."
cargo build --quiet --bin chat-notifier --example load_sql
dir=target/demo-webhook
rm -rf "$dir" && mkdir -p "$dir/outbox"
DEMO_WEBHOOK_SECRET=whsec_demo_$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
export DEMO_WEBHOOK_SECRET
notifier="target/debug/chat-notifier --config examples/webhook.toml"

# The README's verification function, then a receiver that verifies each request before reading
# it and prints each notification: a chat's state, a flood summary or digest, a bot's alarm.
sed -n '/^# verify a chat-notifier webhook$/,/^```$/p' README.md | sed '$d' > "$dir/receiver.py"
cat >> "$dir/receiver.py" <<'PY'
import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

SECRET = os.environ["DEMO_WEBHOOK_SECRET"]

def describe(doc, key):
    """One notification in words: a chat's state, a flood summary or digest, a bot's alarm."""
    event = doc.get("event", "?")
    if "conversations" in doc:  # "summary" (the flood guard) or "digest": a list of chats
        chats = doc["conversations"]
        listed = ", ".join(f"#{c['identifier']} {c['state']}" for c in chats[:10])
        more = f" and {len(chats) - 10} more" if len(chats) > 10 else ""
        return f"received {event}: {doc.get('title', '')}, key {key}\n    {len(chats)} chats: {listed}{more}"
    if event.startswith("bot."):  # "bot.silent", "bot.active": the silent-source alarm
        return f"received {event} ({doc['bot']['name']}), key {key}\n    {doc.get('message', '')}"
    fields = ", ".join(f"{f['name']}: {f['value']}" for f in doc["visitor"]["fields"]) or "none"
    return (f"received {event} #{doc['conversation']['identifier']} ({doc['bot']['name']}, "
            f"{doc['visitor']['display']}), key {key}\n    fields: {fields}; "
            f"{len(doc['transcript']['messages'])} messages")

class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        # Verify first, on the raw bytes: nothing of a body whose signature fails is read.
        if not verify(SECRET, self.headers.get("Chat-Notifier-Signature", ""), body):
            print("refused a request whose signature does not verify (401)", flush=True)
            return self.answer(401)
        key = self.headers.get("Idempotency-Key")
        try:
            print(describe(json.loads(body), key), flush=True)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            # Signed, so it is chat-notifier's: taken (a 2xx; an error would only bring it back
            # until parked), said.
            print(f"received a document this receiver does not know ({e!r}), key {key}", flush=True)
        self.answer(200)

    def answer(self, status):
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

server = HTTPServer(("127.0.0.1", 0), Receiver)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(f"http://127.0.0.1:{server.server_port}/hooks/catch/demo\n")
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
server.serve_forever()
PY
python3 "$dir/receiver.py" "$dir/hook.url" > "$dir/received.log" 2>&1 &
receiver=$!
trap 'kill $receiver 2>/dev/null || true' EXIT
i=0
while [ ! -s "$dir/hook.url" ]; do
  i=$((i + 1)); [ $i -le 100 ] || { echo "the receiver did not start:"; cat "$dir/received.log"; exit 1; }
  sleep 0.1
done

target/debug/examples/load_sql "$dir/export.sqlite" examples/export-day1.sql
printf '\n##### Run 1, 2026-11-20 12:00 UTC: what the webhook would get (--dry-run, no secret shown)\n\n'
$notifier run --dry-run --now 2026-11-20T12:00:00Z \
  | awk '/^=== webhook/ && !done { on = 1 } on { print (length($0) > 150 ? substr($0, 1, 150) "..." : $0) } on && /^\{/ { on = 0; done = 1 }'
printf '\n##### Run 1 for real (-v)\n\n'
$notifier -v run --now 2026-11-20T12:00:00Z
target/debug/examples/load_sql "$dir/export.sqlite" examples/export-day2.sql
printf '\n##### Run 2, a day later\n\n'
$notifier -v run --now 2026-11-21T12:00:00Z
printf '\n##### What the receiver got\n\n'
cat "$dir/received.log"
