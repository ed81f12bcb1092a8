#!/usr/bin/env bash
# Restore the Outreach sync server's database from scripts/backup-server.sh's file (docs/DEPLOY.md).
#
#   scripts/restore-server.sh [--db URL] BACKUP_FILE
#
# Stop every server process first; start them again afterwards: they migrate a backup of an older
# version on start. PostgreSQL: pg_restore into the database of URL (empty, or holding a previous
# state of the same server: its objects are dropped and made again, in one transaction). SQLite:
# the file of URL must not exist (move a damaged one away first); the backup, and BACKUP_FILE.key
# when there is one, are put in its place.
# Then each team's log continues ADVANCE (10^9) positions further on: a device that had pulled
# entries the backup lacks holds a place past the restored log's end, and would otherwise skip,
# unseen, whatever is stored from now on under the positions it thinks it has read. (Positions
# are allowed to leave gaps: an erasure leaves them too.)
# What the devices pushed after the backup was taken is not in it: see DEPLOY.md, "Restore".
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/_server-db.sh"
db_url=${OUTREACH_DB_URL:-}
if [ "${1:-}" = "--db" ]; then db_url=${2:-}; shift 2 || true; fi
backup=${1:-}
if [ -z "$db_url" ] || [ -z "$backup" ] || [ $# -ne 1 ]; then
  echo "usage: $0 [--db URL] BACKUP_FILE   (or OUTREACH_DB_URL=URL $0 BACKUP_FILE)" >&2
  exit 2
fi
[ -f "$backup" ] || { echo "$0: no backup file at $backup" >&2; exit 1; }
umask 077
ADVANCE=1000000000
advance_sql="UPDATE team SET next_seq = next_seq + $ADVANCE"
case "$db_url" in
  postgresql*)
    pg_env "$db_url"
    pg_restore --clean --if-exists --no-owner --exit-on-error --single-transaction --dbname "$PGDATABASE" "$backup"
    search_path=${PG_SCHEMA:+SET search_path TO \"$PG_SCHEMA\";}
    psql -X -q -v ON_ERROR_STOP=1 --dbname "$PGDATABASE" -c "$search_path $advance_sql"
    ;;
  sqlite*)
    path=$(sqlite_path "$db_url")
    if [ -e "$path" ]; then
      echo "$0: $path exists: stop the server and move it away first (nothing was changed)" >&2
      exit 1
    fi
    "$PYTHON" - "$backup" <<'PY'
import sqlite3, sys
conn = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
ok = conn.execute("PRAGMA integrity_check").fetchone()[0]
names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
conn.close()
if ok != "ok" or "schema_migrations" not in names:
    sys.exit(f"not a sound backup of this server: integrity {ok}, tables {sorted(names)[:5]}")
PY
    rm -f "$path-wal" "$path-shm"
    cp "$backup" "$path.restoring"
    "$PYTHON" - "$path.restoring" "$advance_sql" <<'PY'
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
with conn:
    conn.execute(sys.argv[2])
conn.close()
PY
    mv "$path.restoring" "$path"
    if [ -f "$backup.key" ]; then
      [ -e "$path.key" ] && ! cmp -s "$backup.key" "$path.key" && mv "$path.key" "$path.key.before-restore"
      cp "$backup.key" "$path.key" && chmod 600 "$path.key"
    fi
    ;;
  *) echo "$0: not a database URL this server uses: ${db_url%%:*}:..." >&2; exit 2 ;;
esac
echo "restored into the database of ${db_url%%://*}://...; each team's log goes on $ADVANCE positions further: start the server"
