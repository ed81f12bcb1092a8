#!/usr/bin/env bash
# What the tests need beyond Python packages: Debian's Chromium (browser tests) and a PostgreSQL
# on loopback (the end-to-end suite runs on it too). Installs them when missing and we are root,
# starts PostgreSQL as the postgres user, makes the `outreach` role and the `outreach_test`
# database, and prints the database URL on stdout (nothing when PostgreSQL cannot be had).
# Everything else goes to stderr.
set -uo pipefail
exec 3>&1 1>&2 </dev/null  # nothing here may wait for input

as_root() { [ "$(id -u)" = 0 ]; }
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v pg_ctlcluster >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  if as_root; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq 3>&- && apt-get install -y -qq "${need[@]}" >/dev/null 3>&- \
      || echo "test-services: could not install ${need[*]}"
  else
    echo "test-services: missing ${need[*]}; install them with: sudo apt-get install ${need[*]}"
  fi
fi

if [ -n "${OUTREACH_TEST_PG_URL:-}" ]; then echo "$OUTREACH_TEST_PG_URL" >&3; exit 0; fi
command -v pg_lsclusters >/dev/null 2>&1 && as_root || exit 0
cluster=$(pg_lsclusters -h 2>/dev/null | awk 'NR==1 {print $1" "$2}')
if [ -z "$cluster" ]; then
  ver=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1)
  [ -n "$ver" ] || exit 0
  pg_createcluster "$ver" main >/dev/null || exit 0
  cluster="$ver main"
fi
# 3>&-: the server must not inherit the pipe that carries the URL to `make test`'s $(...), which
# would then wait for the server to exit before reading the URL (it hung CI for 90 minutes)
pg_ctlcluster $cluster start 2>/dev/null 3>&- </dev/null || pg_ctlcluster $cluster status >/dev/null || exit 0
port=$(pg_lsclusters -h | awk 'NR==1 {print $3}')
psql_() { timeout 60 runuser -u postgres -- psql -w -p "$port" -qtAc "$1" 3>&-; }
for _ in 1 2 3 4 5 6 7 8 9 10; do psql_ "SELECT 1" >/dev/null 2>&1 && break; sleep 1; done
[ "$(psql_ "SELECT 1 FROM pg_roles WHERE rolname='outreach'")" = 1 ] \
  || psql_ "CREATE ROLE outreach LOGIN PASSWORD 'outreach' CREATEDB" >/dev/null || exit 0
[ "$(psql_ "SELECT 1 FROM pg_database WHERE datname='outreach_test'")" = 1 ] \
  || timeout 60 runuser -u postgres -- createdb -w -p "$port" -O outreach outreach_test 3>&- || exit 0
echo "postgresql+psycopg://outreach:outreach@127.0.0.1:${port}/outreach_test" >&3
