#!/bin/sh
# Regenerates tests/fixtures/flowise/{sqlite,postgres}.sql with Flowise's own code. Run by hand, not in CI.
# Needs: FLOWISE_DIR (node_modules/flowise of flowise@3.1.4, sqlite3 rebuilt for Node 24), NODE24 (a Node 24
# binary), a PostgreSQL 15 server at PGHOST/PGPORT/PGUSER with an empty database $PGDATABASE, and WORK (scratch).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out="$here/../fixtures/flowise"
: "${FLOWISE_DIR:?}" "${NODE24:?}" "${WORK:?}" "${PGHOST:?}" "${PGPORT:?}" "${PGUSER:?}" "${PGDATABASE:?}"
export HOME="$WORK/home" TZ=UTC FLOWISE_DIR   # DataSource.init() creates ~/.flowise; the Flowise process runs in UTC
mkdir -p "$HOME"
rm -rf "$WORK/sqlite" && mkdir -p "$WORK/sqlite"
DATABASE_TYPE=sqlite DATABASE_PATH="$WORK/sqlite" "$NODE24" "$here/write.js"
python3 "$here/dump_sqlite.py" "$WORK/sqlite/database.sqlite" > "$out/sqlite.sql"
DATABASE_TYPE=postgres DATABASE_HOST="$PGHOST" DATABASE_PORT="$PGPORT" DATABASE_USER="$PGUSER" \
    DATABASE_PASSWORD="${PGPASSWORD:-unused}" DATABASE_NAME="$PGDATABASE" "$NODE24" "$here/write.js"
pg_dump --no-owner --no-privileges --column-inserts --restrict-key=flowisefixture "$PGDATABASE" > "$out/postgres.sql"
