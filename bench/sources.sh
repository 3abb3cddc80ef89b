#!/usr/bin/env bash
# The sources' benchmarks (issues 9 and 14): the same export as bench/run.sh, read as Rasa's
# tracker store on SQLite (converted event by event into the JSON Rasa writes), as export schema
# v1 on PostgreSQL, and as Typebot's database (results, answers, a published flow). Incremental (1,000 new messages) and idle runs, each beside its store's own floor:
# sqlite3, or psql, reading max(id). Flowise (issue 23): its own tables, on SQLite and on
# PostgreSQL, the chats with the uuids Flowise gives them. Dify (issue 24): its own tables on
# PostgreSQL (tests/fixtures/dify/schema.sql), an exchange (the visitor's query and the bot's answer)
# per row.
#
#   bench/sources.sh                  # 10k, 100k and 1M conversations
#   bench/sources.sh 10000 100000     # chosen sizes
#   STORES="typebot" bench/sources.sh # some stores only (rasa, pg, typebot, flowise, flowise-pg, dify)
#
# Needs what bench/run.sh installs, and postgresql (a throwaway cluster in $BENCH_DIR, run as
# nobody under root). bench/run.sh calls it last.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("${@:-10000 100000 1000000}")
read -r -a sizes <<<"${sizes[*]}"
stores=" ${STORES:-rasa pg typebot flowise flowise-pg dify} "
for tool in sqlite3 hyperfine python3; do command -v "$tool" >/dev/null || { echo "bench/run.sh installs $tool" >&2; exit 1; }; done
pgbin=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | tail -1)" 2>/dev/null || true)
if [ -z "$pgbin" ] || [ ! -x "$pgbin/initdb" ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  pgbin=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | tail -1)")
fi
cargo build --release --quiet --bin chat-notifier --example gen_export
bin=$PWD/target/release/chat-notifier
gen=$PWD/target/release/examples/gen_export
work=${BENCH_DIR:-/tmp/chat-notifier-bench}/sources
pgport=${BENCH_PG_PORT:-5544}
mkdir -p "$work"
NOW=2026-11-24T12:00:00Z; SETTLED=2026-11-26T12:00:00Z; COUNTED=2026-11-26T12:30:00Z; LATER=2026-11-26T13:00:00Z

mean() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['results'][0]['mean'])" "$1"; }
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "$1" "$2"; }
ms() { python3 -c "import sys; print(f'{float(sys.argv[1]) * 1000:.1f}')" "$1"; }
h() { hyperfine --style none --export-json "$work/h.json" "$@" >/dev/null 2>&1; mean "$work/h.json"; }

# A PostgreSQL cluster of the benchmark's own, on 127.0.0.1:$pgport.
server() { if [ "$(id -u)" = 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi; }
pgdata=$work/pg
if [ ! -d "$pgdata" ]; then
  mkdir -p "$pgdata"; [ "$(id -u)" = 0 ] && chown nobody:nogroup "$pgdata" "$work"
  server "$pgbin/initdb" -D "$pgdata" -A trust -U postgres --no-sync >/dev/null
fi
server "$pgbin/pg_ctl" -D "$pgdata" -o "-c listen_addresses=127.0.0.1 -p $pgport -k /tmp -c shared_buffers=512MB" -l "$work/pg.log" -w start >/dev/null
trap 'server "$pgbin/pg_ctl" -D "$pgdata" -m fast stop >/dev/null' EXIT
psql() { command psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p $pgport -U postgres "$@"; }

# Rasa's events for the export's messages with ids above $2, appended to the store $1 (the
# export attached as x): a session per new conversation, an action before each bot line, the
# bot's and visitor's lines, a slot per answered field, action_submit_lead where a flow ends.
rasa_events() {
  sqlite3 "$1" "ATTACH '$3' AS x;
  CREATE TABLE IF NOT EXISTS events (id INTEGER NOT NULL, sender_id VARCHAR(255) NOT NULL,
    type_name VARCHAR(255) NOT NULL, timestamp FLOAT, intent_name VARCHAR(255), action_name VARCHAR(255),
    data TEXT, PRIMARY KEY (id));
  CREATE INDEX IF NOT EXISTS ix_events_sender_id ON events (sender_id);
  INSERT INTO events (sender_id, type_name, timestamp, intent_name, action_name, data)
  SELECT sender, type, ts, intent, action, data FROM (
    SELECT conversation_id AS sender, 'session_started' AS type, unixepoch(min(sent_at)) AS ts, NULL AS intent,
           NULL AS action, json_object('event', 'session_started', 'timestamp', unixepoch(min(sent_at))) AS data,
           min(id) * 4 AS k
      FROM x.messages GROUP BY conversation_id HAVING min(id) > $2
    UNION ALL
    SELECT conversation_id, 'action', unixepoch(sent_at), NULL, coalesce(gambit_id, 'utter_default'),
           json_object('event', 'action', 'timestamp', unixepoch(sent_at), 'name', coalesce(gambit_id, 'utter_default'),
                       'policy', 'RulePolicy', 'confidence', 1.0), id * 4 + 1
      FROM x.messages WHERE id > $2 AND sender = 'bot' AND input_type IS NOT 'end_conversation'
    UNION ALL
    SELECT conversation_id, 'action', unixepoch(sent_at), NULL, 'action_submit_lead',
           json_object('event', 'action', 'timestamp', unixepoch(sent_at), 'name', 'action_submit_lead'), id * 4 + 1
      FROM x.messages WHERE id > $2 AND sender = 'bot' AND input_type = 'end_conversation'
    UNION ALL
    SELECT conversation_id, CASE sender WHEN 'bot' THEN 'bot' ELSE 'user' END, unixepoch(sent_at),
           CASE sender WHEN 'visitor' THEN 'inform' END, NULL,
           CASE sender WHEN 'bot' THEN json_object('event', 'bot', 'timestamp', unixepoch(sent_at), 'text', body,
                                                  'data', json_object('buttons', NULL))
                       ELSE json_object('event', 'user', 'timestamp', unixepoch(sent_at), 'text', body,
                                        'parse_data', json_object('intent', json_object('name', 'inform', 'confidence', 0.93)),
                                        'input_channel', 'rest') END, id * 4 + 2
      FROM x.messages WHERE id > $2
    UNION ALL
    SELECT conversation_id, 'slot', unixepoch(sent_at), NULL, field,
           json_object('event', 'slot', 'timestamp', unixepoch(sent_at), 'name', field, 'value', body), id * 4 + 3
      FROM x.messages WHERE id > $2 AND sender = 'visitor' AND field IS NOT NULL
  ) ORDER BY k;"
}

config() { # FILE STATE OUT, then the [source] table's lines
  local file=$1 state=$2 out=$3; shift 3
  { printf 'state = "%s"\n[source]\n' "$state"; printf '%s\n' "$@"
    printf '[mail]\nfrom = "notifier@example.com"\nto = ["owner@example.com"]\nburst = 1000000\n[transport]\nkind = "folder"\npath = "%s"\n' "$out"; } >"$file"
}

# A first run on the base store records its history, and a second one takes the hourly count
# of rows read (ingest.rs): what a store's runs look like after its first hour.
settle() {
  rm -rf "$work/$1-state-$n.sqlite"* "$work/$1-out-$n"
  "$bin" --config "$work/$1-$n.toml" -q run --now "$SETTLED"
  "$bin" --config "$work/$1-$n.toml" -q run --now "$COUNTED"
  cp "$work/$1-state-$n.sqlite" "$work/$1-state-$n.base"
}

# Incremental (from the settled state, the new rows to read) and idle runs, beside the floor.
measure() { # PREFIX LABEL ROWS FLOOR-COMMAND FLOOR-NOTE
  local floor inc idle emails prepare
  floor=$(h --warmup 3 --runs 20 "$4")
  prepare="rm -rf $work/$1-state-$n.sqlite-wal $work/$1-state-$n.sqlite-shm $work/$1-out-$n; cp $work/$1-state-$n.base $work/$1-state-$n.sqlite"
  inc=$(h --runs 10 --prepare "$prepare" "$bin --config $work/$1-$n.toml -q run --now $LATER")
  eval "$prepare"; "$bin" --config "$work/$1-$n.toml" -q run --now "$LATER"
  emails=$(ls "$work/$1-out-$n" | wc -l)
  idle=$(h --warmup 2 --runs 20 "$bin --config $work/$1-$n.toml -q run --now $LATER")
  echo "| $2 | $n | $3 | incremental (1,000 new messages, $emails emails) | $(ms "$inc") ms | $(ms "$floor") ms$5 | $(ratio "$inc" "$floor") | 3 |" >>"$work/table.md"
  echo "| $2 | $n | $3 | idle | $(ms "$idle") ms | $(ms "$floor") ms$5 | $(ratio "$idle" "$floor") | 2 |" >>"$work/table.md"
}

printf '\n| store | conversations | rows | case | chat-notifier | floor | ratio | target |\n|---|---|---|---|---|---|---|---|\n' >"$work/table.md"
for n in "${sizes[@]}"; do
  base=$work/export-$n.base
  [ -f "$base" ] || "$gen" --ids "${IDS:-seq}" --conversations "$n" --out "$base" --now "$NOW"
  cp "$base" "$work/export-$n.sqlite"
  "$gen" --ids "${IDS:-seq}" --append 1000 --out "$work/export-$n.sqlite" --now "$LATER"
  base_max=$(sqlite3 "$base" 'select max(id) from messages')

  if [[ $stores == *" rasa "* ]]; then
  # Rasa on SQLite: the store at the base export, settled, then the 1,000 new messages' events.
  rasa=$work/rasa-$n.db
  rm -f "$rasa" && rasa_events "$rasa" 0 "$base"
  config "$work/rasa-$n.toml" "rasa-state-$n.sqlite" "rasa-out-$n" 'kind = "rasa"' "url = \"rasa-$n.db\"" \
    'complete_on_actions = ["action_submit_lead"]'
  settle rasa
  rasa_events "$rasa" "$base_max" "$work/export-$n.sqlite"
  measure rasa "Rasa on SQLite" "$(sqlite3 "$rasa" 'select count(*) from events') events" \
    "sqlite3 $rasa 'select max(id) from events'" ""

  fi

  if [[ $stores == *" pg "* ]]; then
  # Export v1 on PostgreSQL: the base export copied in, settled, then the new rows.
  db=bench_$n
  psql -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
  psql -d "$db" -c "CREATE TABLE bots (id TEXT PRIMARY KEY, name TEXT NOT NULL);
    CREATE TABLE conversations (id TEXT PRIMARY KEY, bot_id TEXT NOT NULL, visitor_id TEXT NOT NULL, started_at TEXT NOT NULL, page_url TEXT);
    CREATE TABLE messages (id BIGINT PRIMARY KEY, conversation_id TEXT NOT NULL, sent_at TEXT NOT NULL, sender TEXT NOT NULL,
      gambit_id TEXT, input_type TEXT, field TEXT, body TEXT NOT NULL);"
  copy() { sqlite3 -csv "$1" "$2" | psql -d "$db" -c "\\copy $3 FROM STDIN CSV"; }
  copy "$base" "select * from bots" bots
  copy "$work/export-$n.sqlite" "select * from conversations" conversations
  copy "$base" "select * from messages" messages
  psql -d "$db" -c "CREATE INDEX messages_by_conversation ON messages (conversation_id, id); ANALYZE"
  config "$work/pg-$n.toml" "pg-state-$n.sqlite" "pg-out-$n" 'kind = "export"' \
    "url = \"postgresql://postgres@127.0.0.1:$pgport/$db?sslmode=disable\""
  settle pg
  copy "$work/export-$n.sqlite" "select * from messages where id > $base_max" messages
  measure pg "export v1 on PostgreSQL" "$(psql -d "$db" -Atc "select count(*) from messages") messages" \
    "psql -X -h 127.0.0.1 -p $pgport -U postgres -d $db -Atc 'select max(id) from messages'" " (psql)"

  fi

  if [[ $stores == *" typebot "* ]]; then
  # Typebot: a result per conversation, an answer per visitor message (its id kept), each bot's
  # published flow built from its questions; settled; then the new answers, new results, and
  # the results they finish flipped in place, as Typebot writes them.
  db=typebot_$n
  psql -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
  psql -d "$db" -c "$(sed -n '/^pub const SCHEMA: &str = r#"/,/^"#;/p' tests/support/typebot.rs | sed '1d;$d')"
  flow=$(sqlite3 "$base" "WITH q AS (SELECT b.gambit_id AS g, b.body AS body, v.field AS field
      FROM (SELECT gambit_id, body FROM messages WHERE id < 200000 AND sender = 'bot'
              AND input_type IS NOT 'end_conversation' GROUP BY gambit_id) b
      JOIN (SELECT gambit_id, field FROM messages WHERE id < 200000 AND sender = 'visitor'
              AND field IS NOT NULL GROUP BY gambit_id) v ON v.gambit_id = b.gambit_id)
    SELECT json_array(json_object('id', 'g', 'blocks', (SELECT json_group_array(json(x)) FROM (
      SELECT json_object('id', 'b_' || g, 'type', 'text', 'content', json_object('richText',
        json_array(json_object('type', 'p', 'children', json_array(json_object('text', body)))))) AS x, g, 0 AS o FROM q
      UNION ALL SELECT json_object('id', 'i_' || g, 'type', 'text input',
        'options', json_object('variableId', 'v_' || field)), g, 1 FROM q
      ORDER BY g, o))))")
  sqlite3 -csv "$base" "select id, name from bots" | psql -d "$db" -c "CREATE TEMP TABLE b (id TEXT, name TEXT)" \
    -c "\\copy b FROM STDIN CSV" \
    -c "INSERT INTO \"Typebot\" (id, name, groups, variables, edges, theme, settings, \"workspaceId\")
          SELECT id, name, \$f\$$flow\$f\$, '[]', '[]', '{}', '{}', 'ws' FROM b" \
    -c "INSERT INTO \"PublicTypebot\" (id, \"typebotId\", groups, variables, edges, theme, settings)
          SELECT 'p_' || id, id, \$f\$$flow\$f\$, '[]', '[]', '{}', '{}' FROM b"
  # EXPORT FROM TO: each conversation with a message in (FROM, TO], its variables and completion
  # as of TO.
  results() {
    sqlite3 -csv "$1" "SELECT c.id, c.started_at, c.bot_id,
        (SELECT json_group_array(json_object('id', 'v_' || field, 'name', field, 'value', body)) FROM
          (SELECT field, body, max(id) FROM messages m WHERE m.conversation_id = c.id AND sender = 'visitor'
             AND field IS NOT NULL AND id <= $3 GROUP BY field)),
        EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = c.id AND input_type = 'end_conversation' AND id <= $3)
      FROM conversations c WHERE c.id IN (SELECT conversation_id FROM messages WHERE id > $2 AND id <= $3)"
  }
  answers() { # EXPORT FROM: the visitor's messages past FROM, as answers
    sqlite3 -csv "$1" "SELECT id, sent_at, 'i_' || gambit_id, body, conversation_id FROM messages
      WHERE sender = 'visitor' AND id > $2"
  }
  results "$base" 0 "$base_max" | psql -d "$db" \
    -c "\\copy \"Result\" (id, \"createdAt\", \"typebotId\", variables, \"isCompleted\") FROM STDIN CSV"
  answers "$base" 0 | psql -d "$db" -c "\\copy \"AnswerV2\" (id, \"createdAt\", \"blockId\", content, \"resultId\") FROM STDIN CSV"
  # The index the README recommends (Typebot's own schema has none on "resultId").
  psql -d "$db" -c "$(sed -n 's/^pub const RESULT_INDEX: &str = r#"\(.*\)"#;$/\1/p' tests/support/typebot.rs)" -c "ANALYZE"
  config "$work/typebot-$n.toml" "typebot-state-$n.sqlite" "typebot-out-$n" 'kind = "typebot"' \
    "url = \"postgresql://postgres@127.0.0.1:$pgport/$db?sslmode=disable\""
  settle typebot
  results "$work/export-$n.sqlite" "$base_max" 1000000000000 | psql -d "$db" \
    -c "CREATE TEMP TABLE r (id TEXT, at TEXT, bot TEXT, v JSONB, done BOOLEAN)" -c "\\copy r FROM STDIN CSV" \
    -c "INSERT INTO \"Result\" (id, \"createdAt\", \"typebotId\", variables, \"isCompleted\")
          SELECT id, at::timestamp, bot, v, done FROM r
          ON CONFLICT (id) DO UPDATE SET variables = excluded.variables, \"isCompleted\" = excluded.\"isCompleted\""
  answers "$work/export-$n.sqlite" "$base_max" | psql -d "$db" \
    -c "\\copy \"AnswerV2\" (id, \"createdAt\", \"blockId\", content, \"resultId\") FROM STDIN CSV"
  measure typebot "Typebot" "$(psql -d "$db" -Atc 'select count(*) from "AnswerV2"') answers" \
    "psql -X -h 127.0.0.1 -p $pgport -U postgres -d $db -Atc 'select max(id) from \"AnswerV2\"'" " (psql)"
  fi

  if [[ $stores == *" flowise "* || $stores == *" flowise-pg "* ]]; then
  # Flowise, as its server writes its chats (tests/fixtures/flowise/README.md): a chatflow per
  # bot, a chat_message per message (the visitor's userMessage, the bot's apiMessage, each with a
  # uuid and the chat's uuid chatId), a lead per conversation that gave an email. The rows as
  # CSV for both databases: EXPORT FROM TO, the messages in (FROM, TO].
  # KIND N: a uuid v4's shape, unique per kind and number, its first part scattered as random
  # uuids are (kinds: 1 chatflow, 2 chat, 3 message, 4 lead).
  uuid() { echo "printf('%08x-%04x-4%03x-8%03x-%012x', ($2 * 2654435761) % 4294967296, $1, ($2 >> 12) & 4095, $2 & 4095, $2)"; }
  conv="CAST(substr(conversation_id, 6) AS INTEGER)"
  flows() { sqlite3 -csv "$1" "SELECT $(uuid 1 rowid), name, '{\"nodes\":[],\"edges\":[]}' FROM bots"; }
  flowise_messages() {
    sqlite3 -csv "$1" "SELECT $(uuid 3 id), CASE sender WHEN 'bot' THEN 'apiMessage' ELSE 'userMessage' END,
        (SELECT $(uuid 1 b.rowid) FROM bots b JOIN conversations c ON c.bot_id = b.id WHERE c.id = m.conversation_id),
        body, strftime('%Y-%m-%d %H:%M:%f', sent_at), 'EXTERNAL', $(uuid 2 "$conv"), 'Buffer Memory', $(uuid 2 "$conv")
      FROM messages m WHERE id > $2 AND id <= $3 ORDER BY id"
  }
  leads() {
    sqlite3 -csv "$1" "SELECT $(uuid 4 "min(id)"),
        (SELECT $(uuid 1 b.rowid) FROM bots b JOIN conversations c ON c.bot_id = b.id WHERE c.id = m.conversation_id),
        $(uuid 2 "$conv"), '', body, '', strftime('%Y-%m-%d %H:%M:%S', min(sent_at))
      FROM messages m WHERE field = 'email' AND id > $2 AND id <= $3 GROUP BY conversation_id"
  }
  message_columns='id, role, chatflowid, content, "createdDate", "chatType", "chatId", "memoryType", "sessionId"'
  lead_columns='id, chatflowid, "chatId", name, email, phone, "createdDate"'
  fi

  if [[ $stores == *" flowise "* ]]; then
  fdb=$work/flowise-$n.sqlite
  rm -f "$fdb"
  sqlite3 "$fdb" <tests/fixtures/flowise/sqlite.sql
  sqlite3 "$fdb" "DELETE FROM chat_message; DELETE FROM lead; DELETE FROM chat_flow"
  load_flowise_sqlite() { # EXPORT FROM TO
    flowise_messages "$@" >"$work/fm.csv"; leads "$@" >"$work/fl.csv"
    sqlite3 "$fdb" ".mode csv" "CREATE TEMP TABLE m (a, b, c, d, e, f, g, h, i)" ".import $work/fm.csv m" \
      "INSERT INTO chat_message ($message_columns) SELECT * FROM m" \
      "CREATE TEMP TABLE l (a, b, c, d, e, f, g)" ".import $work/fl.csv l" \
      "INSERT INTO lead ($lead_columns) SELECT * FROM l"
  }
  flows "$base" >"$work/ff.csv"
  sqlite3 "$fdb" ".mode csv" "CREATE TEMP TABLE f (a, b, c)" ".import $work/ff.csv f" \
    "INSERT INTO chat_flow (id, name, \"flowData\") SELECT * FROM f"
  load_flowise_sqlite "$base" 0 "$base_max"
  config "$work/flowise-$n.toml" "flowise-state-$n.sqlite" "flowise-out-$n" 'kind = "flowise"' "url = \"flowise-$n.sqlite\""
  # The indexes `check` recommends (Flowise's schema has none on "chatId").
  "$bin" --config "$work/flowise-$n.toml" check 2>&1 | grep -o 'CREATE INDEX IF NOT EXISTS[^;]*;' | while read -r index; do
    sqlite3 "$fdb" "$index"
  done
  settle flowise
  load_flowise_sqlite "$work/export-$n.sqlite" "$base_max" 1000000000000
  measure flowise "Flowise on SQLite" "$(sqlite3 "$fdb" 'select count(*) from chat_message') messages" \
    "sqlite3 $fdb 'select max(rowid) from chat_message'" ""
  fi

  if [[ $stores == *" flowise-pg "* ]]; then
  # Flowise on PostgreSQL: its own schema (the fixture's dump, psql's meta-commands left out),
  # the rows copied in, the indexes `check` recommends made, settled, then the new rows.
  db=flowise_$n
  psql -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
  grep -v '^\\' tests/fixtures/flowise/postgres.sql | psql -d "$db" >/dev/null
  psql -d "$db" -c "DELETE FROM public.chat_message; DELETE FROM public.lead; DELETE FROM public.chat_flow"
  copy_flowise() { # EXPORT FROM TO
    flowise_messages "$@" | psql -d "$db" -c "\\copy public.chat_message ($message_columns) FROM STDIN CSV"
    leads "$@" | psql -d "$db" -c "\\copy public.lead ($lead_columns) FROM STDIN CSV"
  }
  flows "$base" | psql -d "$db" -c "\\copy public.chat_flow (id, name, \"flowData\") FROM STDIN CSV"
  copy_flowise "$base" 0 "$base_max"
  config "$work/flowise-pg-$n.toml" "flowise-pg-state-$n.sqlite" "flowise-pg-out-$n" 'kind = "flowise"' \
    "url = \"postgresql://postgres@127.0.0.1:$pgport/$db?sslmode=disable\""
  "$bin" --config "$work/flowise-pg-$n.toml" check 2>&1 | grep -o 'CREATE INDEX CONCURRENTLY[^;]*;' | while read -r index; do
    psql -d "$db" -c "$index"
  done
  psql -d "$db" -c "ANALYZE"
  settle flowise-pg
  copy_flowise "$work/export-$n.sqlite" "$base_max" 1000000000000
  measure flowise-pg "Flowise on PostgreSQL" "$(psql -d "$db" -Atc 'select count(*) from public.chat_message') messages" \
    "psql -X -h 127.0.0.1 -p $pgport -U postgres -d $db -Atc 'select max(\"createdDate\") from public.chat_message'" " (psql)"
  fi
  if [[ $stores == *" dify "* ]]; then
  # Dify, as its API writes its chats (tests/fixtures/dify/README.md): an app per bot, an end
  # user and a conversation per chat (the start form's inputs: the fields the chat gave), a
  # messages row per visitor message (its query, the bot's next line as its answer, written when
  # the reply ended; '' where none came). KIND N: uuids as Flowise's above (5 app, 6 conversation,
  # 7 message, 8 end user). EXPORT FROM TO: the rows of the messages in (FROM, TO].
  duuid() { echo "printf('%08x-%04x-4%03x-8%03x-%012x', ($2 * 2654435761) % 4294967296, $1, ($2 >> 12) & 4095, $2 & 4095, $2)"; }
  dconv="c.rowid"  # the conversation's rowid: its number in the base and in the export grown from it
  dify_chats() {
    sqlite3 -csv "$1" "SELECT $(duuid 6 "$dconv"), $(duuid 5 b.rowid), 'chat', 'New conversation',
        coalesce((SELECT json_group_object(field, body) FROM messages WHERE conversation_id = c.id AND field IS NOT NULL), '{}'),
        'normal', 'web-app', 'api', $(duuid 8 "$dconv"), strftime('%Y-%m-%d %H:%M:%S', f.at), strftime('%Y-%m-%d %H:%M:%S', f.at)
      FROM (SELECT conversation_id, min(id) AS first, min(sent_at) AS at FROM messages GROUP BY conversation_id
            HAVING first > $2 AND first <= $3) f
      JOIN conversations c ON c.id = f.conversation_id JOIN bots b ON b.id = c.bot_id"
  }
  dify_users() {
    sqlite3 -csv "$1" "SELECT $(duuid 8 "$dconv"), '5e1f0000-0000-4000-8000-000000000001', 'browser', c.visitor_id
      FROM (SELECT conversation_id, min(id) AS first FROM messages GROUP BY conversation_id HAVING first > $2 AND first <= $3) f
      JOIN conversations c ON c.id = f.conversation_id"
  }
  dify_messages() {
    sqlite3 -csv "$1" "SELECT $(duuid 7 v.id), $(duuid 5 b.rowid), $(duuid 6 "$dconv"), v.body, '\"\"', 0,
        coalesce(a.body, ''), 0, 'USD', 'web-app', 'api', $(duuid 8 "$dconv"),
        strftime('%Y-%m-%d %H:%M:%S', v.sent_at), strftime('%Y-%m-%d %H:%M:%f', coalesce(a.sent_at, v.sent_at))
      FROM messages v JOIN conversations c ON c.id = v.conversation_id JOIN bots b ON b.id = c.bot_id
      LEFT JOIN messages a ON a.id = (SELECT min(id) FROM messages n WHERE n.conversation_id = v.conversation_id
                                      AND n.id > v.id AND n.sender = 'bot')
      WHERE v.sender = 'visitor' AND v.id > $2 AND v.id <= $3"
  }
  chat_columns='id, app_id, mode, name, inputs, status, invoke_from, from_source, from_end_user_id, created_at, updated_at'
  user_columns='id, tenant_id, type, session_id'
  dmessage_columns='id, app_id, conversation_id, query, message, message_unit_price, answer, answer_unit_price, currency,
    invoke_from, from_source, from_end_user_id, created_at, updated_at'
  db=dify_$n
  psql -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
  psql -d "$db" -f tests/fixtures/dify/schema.sql >/dev/null
  sqlite3 -csv "$base" "SELECT $(duuid 5 rowid), '5e1f0000-0000-4000-8000-000000000001', name, 'chat', 1, 1 FROM bots" |
    psql -d "$db" -c "\\copy apps (id, tenant_id, name, mode, enable_site, enable_api) FROM STDIN CSV"
  copy_dify() { # EXPORT FROM TO
    dify_users "$@" | psql -d "$db" -c "\\copy end_users ($user_columns) FROM STDIN CSV"
    dify_chats "$@" | psql -d "$db" -c "\\copy conversations ($chat_columns) FROM STDIN CSV"
    dify_messages "$@" | psql -d "$db" -c "\\copy messages ($dmessage_columns) FROM STDIN CSV"
  }
  copy_dify "$base" 0 "$base_max"
  psql -d "$db" -c "ANALYZE"
  config "$work/dify-$n.toml" "dify-state-$n.sqlite" "dify-out-$n" 'kind = "dify"' \
    "url = \"postgresql://postgres@127.0.0.1:$pgport/$db?sslmode=disable\""
  # The indexes `check` prints where Dify's schema lacks one (none in a current schema).
  { "$bin" --config "$work/dify-$n.toml" check 2>&1 || true; } | { grep -o 'CREATE INDEX CONCURRENTLY[^;]*;' || true; } |
    while read -r index; do psql -d "$db" -c "$index"; done
  settle dify
  copy_dify "$work/export-$n.sqlite" "$base_max" 1000000000000
  measure dify "Dify" "$(psql -d "$db" -Atc 'select count(*) from messages') exchanges" \
    "psql -X -h 127.0.0.1 -p $pgport -U postgres -d $db -Atc 'select max(created_at) from messages'" " (psql)"
  fi
  tail -6 "$work/table.md"
done
echo; cat "$work/table.md"
