# Shared by backup-server.sh and restore-server.sh: a server database URL taken apart.
PYTHON=${PYTHON:-python3}

# pg_env URL: export PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE (and PG_SCHEMA when the URL's
# options set a search_path) for pg_dump / pg_restore, so that no password is on a command line.
pg_env() {
  local assignments
  assignments=$("$PYTHON" - "$1" <<'PY'
import shlex, sys
from urllib.parse import parse_qs, unquote, urlsplit
url = urlsplit(sys.argv[1])
query = parse_qs(url.query)
values = {"PGHOST": url.hostname or "", "PGPORT": str(url.port or ""), "PGUSER": unquote(url.username or ""),
          "PGPASSWORD": unquote(url.password or ""), "PGDATABASE": unquote(url.path.lstrip("/"))}
for option in " ".join(query.get("options", [])).split():
    if option.startswith("-csearch_path="):
        values["PG_SCHEMA"] = option.split("=", 1)[1].split(",")[0]
for key in ("host", "port", "user", "password", "dbname", "sslmode", "sslrootcert"):
    if key in query:
        name = {"dbname": "PGDATABASE", "sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT"}.get(key, "PG" + key.upper())
        values[name] = query[key][0]
for key, value in values.items():
    if value:
        print(f"export {key}={shlex.quote(value)}")
PY
)
  eval "$assignments"
}

# sqlite_path URL: the file of a sqlite:///PATH URL (sqlite:////abs/path: absolute; the server's
# settings make every path absolute).
sqlite_path() {
  local rest=${1#*:///}
  echo "${rest%%\?*}"
}
