#!/bin/sh
# A day of an owner's inbox, no mail server needed (examples/inbox.toml, Europe/Berlin): cron
# runs every 30 minutes while the bot runtime writes. Late at night three visitors leave
# without a contact (listed in the 08:00 digest) and one leaves an email (her own email at
# once); at eight a newsletter sends 25 leads in an hour (10 emails an hour: the rest wait, in
# order); then the bot goes quiet (an alert after 7 h), and a chat in the evening clears it.
set -eu
cd "$(dirname "$0")/.."
cargo build --quiet --bin chat-notifier --example load_sql
notifier="target/debug/chat-notifier --config examples/inbox.toml"
load=target/debug/examples/load_sql
dir=target/demo-inbox
rm -rf $dir && mkdir -p $dir

# The chats to come, staged; before each run, what the runtime wrote by then moves in.
{
  sed -n '/^CREATE TABLE/,/^);/p' examples/export-day1.sql
  echo "CREATE INDEX messages_by_conversation ON messages(conversation_id, id);"
  echo "INSERT INTO bots VALUES ('lead', 'Lead Bot');"
  echo "CREATE TABLE staged_conversations AS SELECT * FROM conversations WHERE 0;"
  echo "CREATE TABLE staged AS SELECT conversation_id, sent_at, sender, gambit_id, input_type, field, body FROM messages WHERE 0;"
  chat() { # ID NAME EMAIL START (HH:MM on a day: 2026-11-DDTHH:MM)
    echo "INSERT INTO staged_conversations VALUES ('$1', 'lead', 'v-$1', '$4:00Z', 'https://acme.example/pricing');"
    echo "INSERT INTO staged VALUES ('$1', '$4:00Z', 'bot', 'ask_name', 'text', NULL, 'Hi! What''s your name?');"
    echo "INSERT INTO staged VALUES ('$1', '$4:20Z', 'visitor', NULL, NULL, 'name', '$2');"
    echo "INSERT INTO staged VALUES ('$1', '$4:21Z', 'bot', 'ask_email', 'email', NULL, 'Your email, to send you the quote?');"
    [ -n "$3" ] && echo "INSERT INTO staged VALUES ('$1', '$4:40Z', 'visitor', NULL, NULL, 'email', '$3');"
    [ -n "$3" ] && echo "INSERT INTO staged VALUES ('$1', '$4:41Z', 'bot', 'ask_phone', 'phone', NULL, 'And a phone number?');"
    true
  }
  chat eve1 "Noah" "" 2026-11-25T22:05
  chat eve2 "Mia" "" 2026-11-25T23:10
  chat eve3 "Luca" "" 2026-11-26T00:30
  chat eve4 "Emma Weber" "emma@example.com" 2026-11-26T01:00
  for i in $(seq 10 34); do
    chat "post$i" "Reader $i" "reader$i@example.com" "2026-11-26T07:$(( (i - 10) * 2 + 10 ))"
  done
  chat late "Jonas Becker" "jonas@example.com" 2026-11-26T19:50
} >$dir/day.sql
$load $dir/export.sqlite $dir/day.sql

t=$(date -u -d 2026-11-25T21:00:00Z +%s); end=$(date -u -d 2026-11-26T21:00:00Z +%s)
while [ "$t" -le "$end" ]; do
  now=$(date -u -d "@$t" +%Y-%m-%dT%H:%M:%SZ)
  printf "INSERT INTO conversations SELECT * FROM staged_conversations WHERE started_at <= '%s';
    DELETE FROM staged_conversations WHERE started_at <= '%s';
    INSERT INTO messages (conversation_id, sent_at, sender, gambit_id, input_type, field, body)
      SELECT * FROM staged WHERE sent_at <= '%s' ORDER BY sent_at, rowid;
    DELETE FROM staged WHERE sent_at <= '%s';" "$now" "$now" "$now" "$now" >$dir/step.sql
  $load $dir/export.sqlite $dir/step.sql
  # What each run sent, at the run's time in Berlin.
  $notifier -v run --now "$now" 2>&1 | sed -n "s/^chat-notifier: info: sent \([a-z]*\) email for \(#[^ ]*\) .*/$(TZ=Europe/Berlin date -d "@$t" '+%a %H:%M')  \1 \2/p" >>$dir/sent.log
  t=$((t + 1800))
done

# The text part of an email, quoted-printable undone (soft breaks, =3D).
text() { sed -n '/^Content-Type: text\/plain/,/^--[0-9A-Za-z]/p' "$1" | tr -d '\r' | sed -e '1,3d;$d' -e ':a' -e '/=$/{N;s/=\n//;ba' -e '}' -e 's/=3D/=/g'; }
printf '\n##### The inbox: what each run sent, and the subject (times in Europe/Berlin)\n\n'
while read -r day time kind id; do
  # The n-th email of a thread: its root subject first, then the "Re: " ones.
  n=$(grep -c -F " $id" $dir/seen.log 2>/dev/null || true); echo " $id" >>$dir/seen.log
  subject=$(grep -h '^Subject: ' $dir/outbox/*.eml | grep -F "[$id]" | sed 's/^Subject: //' | sort | sed -n "$((n + 1))p")
  printf '%s %s  %-9s %s\n' "$day" "$time" "$kind" "$subject"
done <$dir/sent.log
printf '\n##### The digest\n\n'
text "$(grep -l '^X-Chat-State: digest' $dir/outbox/*.eml)"
for f in $(grep -l '^X-Chat-State: alert' $dir/outbox/*.eml | while read -r f; do
  echo "$(date -d "$(sed -n 's/^Date: //p' "$f" | head -1)" +%s) $f"; done | sort -n | cut -d' ' -f2); do
  printf '\n##### %s\n\n' "$(sed -n 's/^Subject: //p' "$f")"
  text "$f"
done
