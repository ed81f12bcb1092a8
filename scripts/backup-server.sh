#!/usr/bin/env bash
# Back up the Outreach sync server's database (docs/DEPLOY.md, "Backup and restore").
#
#   scripts/backup-server.sh [--db URL] BACKUP_FILE
#
# URL: --db, else $OUTREACH_DB_URL; the same URL the server runs with.
#   postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB  pg_dump in its custom format: one consistent
#     snapshot, taken while the servers keep running. A URL whose options set a search_path
#     (one schema of a shared database) dumps that schema only. The password goes to pg_dump in
#     its environment, never on a command line.
#   sqlite:///PATH  SQLite's online backup (consistent while the server runs), and the server key
#     PATH.key, when there is one, copied to BACKUP_FILE.key (mode 0600): open invite codes need it.
# A PostgreSQL server's key (--server-key-file / OUTREACH_SERVER_KEY) is not in the database:
# keep a copy of it apart from the backups. The backup holds what the server holds: sealed records
# and metadata (ids, sizes, times), no readable personal data; keep it as carefully anyway.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/_server-db.sh"
db_url=${OUTREACH_DB_URL:-}
if [ "${1:-}" = "--db" ]; then db_url=${2:-}; shift 2 || true; fi
out=${1:-}
if [ -z "$db_url" ] || [ -z "$out" ] || [ $# -ne 1 ]; then
  echo "usage: $0 [--db URL] BACKUP_FILE   (or OUTREACH_DB_URL=URL $0 BACKUP_FILE)" >&2
  exit 2
fi
umask 077
case "$db_url" in
  postgresql*)
    pg_env "$db_url"
    args=(--format=custom --no-owner --file "$out")
    [ -n "${PG_SCHEMA:-}" ] && args+=(--schema "$PG_SCHEMA")
    pg_dump "${args[@]}"
    ;;
  sqlite*)
    path=$(sqlite_path "$db_url")
    [ -f "$path" ] || { echo "$0: no database file at $path" >&2; exit 1; }
    rm -f "$out"
    "$PYTHON" - "$path" "$out" <<'PY'
import sqlite3, sys
source, target = sqlite3.connect(sys.argv[1]), sqlite3.connect(sys.argv[2])
with target:
    source.backup(target)  # SQLite's online backup: a consistent copy while the server writes
target.close()
source.close()
PY
    if [ -f "$path.key" ]; then cp "$path.key" "$out.key" && chmod 600 "$out.key"; fi
    ;;
  *) echo "$0: not a database URL this server uses: ${db_url%%:*}:..." >&2; exit 2 ;;
esac
echo "backup written: $out"
