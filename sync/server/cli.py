"""`outreach-server`: run the sync server, or create a team and print its one-time operator code.

    outreach-server [--db URL | --data-dir DIR] [--server-key-file F] [--host H] [--port P]
                    [--workers N] [--pool-size N] [--ssl-certfile F --ssl-keyfile F] [--log-file F]
                    [--forwarded-allow-ips IPS] [--access-log] [--no-openapi]
    outreach-server [--db URL | --data-dir DIR] [--server-key-file F] team create NAME [--json]

The database: ``--db URL``, else the environment variable ``OUTREACH_DB_URL`` (keeps a PostgreSQL
password off the command line), else the SQLite file ``server.db`` in the data directory:
``--data-dir``, else ``OUTREACH_DATA_DIR``, else the user's data directory (platformdirs), the same
rule the app's launcher follows, so that ``make run`` and ``make server`` (both ``data/``), or
``python -m app.run`` and ``outreach-server`` (both the user's), find one database. Its server key
is ``server.db.key`` beside it (made on first start). It prints which database it opened, and
how many teams it holds, on stderr. A PostgreSQL server needs its key given: ``--server-key-file``
or ``OUTREACH_SERVER_KEY`` (hex, ``openssl rand -hex 32``). Migrations run on every start, once,
before the workers start (``--workers N``: PostgreSQL only). It only wires settings, logging, the
database and uvicorn together and turns errors into one line on stderr with a non-zero exit (2 for
bad usage or settings, 1 for a failure). It must never print or log anything a device sent, nor
the server key or a database password; the operator code it prints is shown once and stored only
as the keyed hash of its lookup half and its secret half sealed, both under the server key, until
it is used (sync/server/keys.py).
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import logging.config
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import platformdirs
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from sync.protocol import EnrollmentCode
from sync.server import crud
from sync.server.config import ServerSettings
from sync.server.db import Database, MigrationError, migrate
from sync.server.keys import ServerKeyError, load_server_key

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["main", "build_parser", "default_data_dir", "worker_app"]

PROG = "outreach-server"
KEY_ENV = "OUTREACH_SERVER_KEY"
DB_ENV = "OUTREACH_DB_URL"
DATA_ENV = "OUTREACH_DATA_DIR"  # the app's launcher reads the same variable (app/config.py)
SETTINGS_ENV = "OUTREACH_SERVER_SETTINGS"  # the parent's settings (no key) for its workers
DB_FILE = "server.db"
WORKER_HEALTHCHECK_SECONDS = 60


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: error: {message} (see {PROG} --help)\n")


def _common(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    default: Any = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--db",
        metavar="URL",
        default=default,
        help=f"sqlite:///PATH or postgresql+psycopg://... (or set {DB_ENV}); default: DIR/{DB_FILE}",
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        default=default,
        help=f"keep the SQLite database in DIR/{DB_FILE} (default: {DATA_ENV}, else the user's data "
        "directory, as the app's launcher does)",
    )
    parser.add_argument(
        "--log-file", metavar="PATH", default=default, help="write logs here instead of stderr"
    )
    parser.add_argument(
        "--server-key-file",
        metavar="PATH",
        default=default,
        help=f"the server key (hex, mode 0600); or set {KEY_ENV}; default for SQLite: DATABASE.key, "
        "made on first start",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="The Outreach sync server: it stores only ciphertext.")
    _common(parser, suppress=False)
    parser.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port to listen on (default 8700)")
    parser.add_argument("--ssl-certfile", metavar="PATH", default=None, help="TLS certificate (PEM)")
    parser.add_argument("--ssl-keyfile", metavar="PATH", default=None, help="TLS private key (PEM)")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="server processes sharing the port (PostgreSQL only; default 1)",
    )
    parser.add_argument(
        "--pool-size",
        type=int,
        default=None,
        metavar="N",
        help="database connections each process keeps (default 40)",
    )
    parser.add_argument(
        "--forwarded-allow-ips",
        metavar="IPS",
        default=None,
        help="proxies whose X-Forwarded-For is believed (default 127.0.0.1; see docs/DEPLOY.md)",
    )
    parser.add_argument(
        "--access-log",
        action="store_true",
        default=None,
        help="log a line per request (off by default: it costs CPU)",
    )
    parser.add_argument(
        "--no-openapi",
        dest="openapi",
        action="store_false",
        default=None,
        help="do not serve the OpenAPI document at /v1/openapi.json",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    team = commands.add_parser("team", help="manage teams")
    team_commands = team.add_subparsers(
        dest="team_command", metavar="ACTION", required=True, parser_class=_Parser
    )
    create = team_commands.add_parser("create", help="create a team and print its one-time operator code")
    _common(create, suppress=True)
    create.add_argument("name", help="the team's name, e.g. the unit's")
    create.add_argument("--json", action="store_true", help='print {"team_id": ..., "code": ...}')
    return parser


def default_data_dir(env: dict[str, str] | None = None) -> Path:
    """Where the server keeps its SQLite file when told nothing: `OUTREACH_DATA_DIR`, else the
    user's data directory; the rule of the app's launcher (`app.config.resolve_data_dir`)."""
    env = dict(os.environ) if env is None else env
    if env.get(DATA_ENV):
        return Path(env[DATA_ENV]).expanduser().resolve()
    return Path(platformdirs.user_data_dir("outreach", "outreach")).resolve()


class _UsageError(ValueError):
    pass


def _database(args: argparse.Namespace) -> tuple[str, Path | None]:
    """The database URL, and the data directory to make first when it is a default SQLite file."""
    db, data_dir = getattr(args, "db", None), getattr(args, "data_dir", None)
    if db and data_dir:
        raise _UsageError("give --db or --data-dir, not both")
    if db:
        return db, None
    if not data_dir and os.environ.get(DB_ENV):
        return os.environ[DB_ENV], None
    directory = Path(data_dir).expanduser().resolve() if data_dir else default_data_dir()
    return f"sqlite:///{directory / DB_FILE}", directory


def _settings(args: argparse.Namespace) -> ServerSettings:
    db_url, directory = _database(args)
    values = {
        "db_url": db_url,
        "host": getattr(args, "host", None),
        "port": getattr(args, "port", None),
        "ssl_certfile": getattr(args, "ssl_certfile", None),
        "ssl_keyfile": getattr(args, "ssl_keyfile", None),
        "log_file": args.log_file,
        "access_log": getattr(args, "access_log", None),
        "openapi": getattr(args, "openapi", None),
        "server_key_file": getattr(args, "server_key_file", None),
        "server_key": os.environ.get(KEY_ENV) or None,
        "forwarded_allow_ips": getattr(args, "forwarded_allow_ips", None),
        "workers": getattr(args, "workers", None),
        "pool_size": getattr(args, "pool_size", None),
    }
    given = {key: value for key, value in values.items() if value is not None}
    if directory is not None and not directory.is_dir():
        # Every other value is checked before the directory is made: a typo makes no folder.
        ServerSettings(**{**given, "db_url": "sqlite://"})
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    return ServerSettings(**given)


def _say_database(db: Database, *, log_only: bool = False) -> None:
    """One line on stderr (unless the log goes there already) and in the log: which database this
    is, and whether it holds teams."""
    teams, devices = db.census()
    if teams:
        what = f"{teams} team{'s' if teams != 1 else ''}, {devices} device{'s' if devices != 1 else ''}"
    else:
        what = "new and empty: no teams yet"
    line = f"database {db.label} ({what})"
    if not log_only:
        print(f"{PROG}: {line}", file=sys.stderr, flush=True)
    logging.getLogger("outreach.server").info("%s", line)


def _logging_config(settings: ServerSettings) -> dict[str, Any]:
    # Several workers write one log: each line says which process wrote it.
    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    if settings.workers > 1:
        fmt = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
    if settings.log_file is not None:
        handler: dict[str, Any] = {
            "class": "logging.FileHandler",
            "filename": str(settings.log_file),
            "formatter": "plain",
        }
    else:
        handler = {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", "formatter": "plain"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": fmt}},
        "handlers": {"main": handler},
        "loggers": {
            name: {"handlers": ["main"], "level": "INFO", "propagate": False}
            for name in ("outreach", "uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }


def _create_team(settings: ServerSettings, name: str, *, as_json: bool) -> int:
    name = name.strip()
    if not name or len(name) > 200:
        print(f"{PROG}: error: a team name has 1 to 200 characters", file=sys.stderr)
        return 2
    code = EnrollmentCode.generate()
    key = load_server_key(settings)
    db = Database.from_settings(settings)
    try:
        migrate(db.engine)
        _say_database(db)
        with db.transaction(write=True) as session:
            team = crud.create_team(
                session, name=name, lookup=code.lookup, secret=code.secret, key=key,
                ttl_seconds=settings.code_ttl_seconds, now=time.time(),
            )
    finally:
        db.dispose()
    if as_json:
        print(json.dumps({"team_id": team.id, "code": str(code)}))
    else:
        hours = settings.code_ttl_seconds / 3600
        print(f"Team created: {team.id}")
        print(f"One-time operator code (works once, for {hours:g} h; it is not shown again):")
        print(str(code))
        print("The first device to join with it becomes the team's coordinator.")
    return 0


def _serve(settings: ServerSettings) -> int:
    import uvicorn

    from sync.server.app import create_app

    logging.config.dictConfig(_logging_config(settings))
    log = logging.getLogger("outreach.server")
    if settings.host not in ("127.0.0.1", "localhost", "::1") and not settings.tls:
        log.warning("listening on %s without TLS: put a TLS proxy in front of it", settings.host)
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "ssl_certfile": str(settings.ssl_certfile) if settings.ssl_certfile else None,
        "ssl_keyfile": str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
        "log_config": _logging_config(settings),
        "access_log": settings.access_log,
        "proxy_headers": True,
        "forwarded_allow_ips": settings.forwarded_allow_ips,
        "timeout_graceful_shutdown": 3,  # long-polls would otherwise hold a stop for up to 30 s
    }
    if settings.workers == 1:
        app = create_app(settings)
        _say_database(app.state.ctx.db, log_only=settings.log_file is None)
        _check_connections(app.state.ctx.db, settings, log)
        log.info("serving on %s:%d database=%s", settings.host, settings.port, settings.dialect)
        uvicorn.run(app, **options)
        return 0
    # Several processes: the schema is brought up to date here, once, before any worker starts (each
    # worker's own `migrate` then finds nothing to do, under the same advisory lock).
    db = Database.from_settings(settings)
    try:
        migrate(db.engine)
        _say_database(db, log_only=settings.log_file is None)
        _check_connections(db, settings, log)
    finally:
        db.dispose()
    os.environ[SETTINGS_ENV] = settings.model_dump_json(exclude={"server_key"})  # the key stays where it was
    log.info("serving on %s:%d database=%s workers=%d", settings.host, settings.port, settings.dialect,
             settings.workers)
    if "timeout_worker_healthcheck" in inspect.signature(uvicorn.run).parameters:  # uvicorn >= 0.35
        # A worker that does not answer the parent's ping in 5 s (uvicorn's default) is killed and
        # started again: on a busy host its imports alone can take longer, and it never comes up.
        options["timeout_worker_healthcheck"] = WORKER_HEALTHCHECK_SECONDS
    uvicorn.run("sync.server.cli:worker_app", factory=True, workers=settings.workers, **options)
    return 0


def _check_connections(db: Database, settings: ServerSettings, log: logging.Logger) -> None:
    """Warn when the workers' pools together may want more connections than PostgreSQL allows."""
    allowed = db.max_connections()
    wanted = settings.workers * (settings.pool_size + 1)  # + each process's listening connection
    if allowed is not None and wanted > allowed - 3:  # PostgreSQL keeps 3 for superusers by default
        log.warning(
            "%d workers x (pool %d + 1 listener) = %d connections, PostgreSQL allows %d: lower "
            "--pool-size or raise max_connections (docs/DEPLOY.md)",
            settings.workers, settings.pool_size, wanted, allowed,
        )


def worker_app() -> FastAPI:
    """One worker's application (`uvicorn --factory`): the parent's settings from the environment,
    the server key from where the parent had it (its file, or `OUTREACH_SERVER_KEY`)."""
    from sync.server.app import create_app

    values = json.loads(os.environ[SETTINGS_ENV])
    key = os.environ.get(KEY_ENV)
    if key and not values.get("server_key_file"):
        values["server_key"] = key
    return create_app(ServerSettings(**values))  # uvicorn has set up this process's logging


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = _settings(args)
    except _UsageError as exc:
        print(f"{PROG}: error: {exc} (see {PROG} --help)", file=sys.stderr)
        return 2
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "settings"
        message = first["msg"].removeprefix("Value error, ")
        print(f"{PROG}: error: {where}: {message}", file=sys.stderr)
        return 2
    try:
        if args.command == "team":
            return _create_team(settings, args.name, as_json=args.json)
        return _serve(settings)
    except ServerKeyError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except (SQLAlchemyError, MigrationError, OSError) as exc:
        reason: BaseException = getattr(exc, "orig", None) or exc  # the driver's words, not the SQL
        message = " ".join(str(reason).split())
        print(f"{PROG}: error: {type(reason).__name__}: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
