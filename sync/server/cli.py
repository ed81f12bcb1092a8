"""`outreach-server`: run the sync server, or create a team and print its one-time operator code.

    outreach-server [--db URL] [--server-key-file F] [--host H] [--port P]
                    [--ssl-certfile F --ssl-keyfile F] [--log-file F] [--forwarded-allow-ips IPS]
                    [--access-log] [--no-openapi]
    outreach-server [--db URL] [--server-key-file F] team create NAME [--json]

With no arguments it serves on 127.0.0.1:8700 with the SQLite file ``outreach-server.db`` in the
current directory and its server key in ``outreach-server.db.key`` beside it (made on first start).
A PostgreSQL server needs its key given: ``--server-key-file`` or the environment variable
``OUTREACH_SERVER_KEY`` (hex, ``openssl rand -hex 32``). Migrations run on every start. It only
wires settings, logging, the database and uvicorn together and turns errors into one line on
stderr with a non-zero exit (2 for bad usage or settings, 1 for a failure). It must never print or
log anything a device sent, nor the server key; the operator code it prints is shown once and
stored only as the keyed hash of its lookup half and its secret half sealed, both under the server
key, until it is used (sync/server/keys.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.config
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, NoReturn

from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from sync.protocol import EnrollmentCode
from sync.server import crud
from sync.server.config import ServerSettings
from sync.server.db import Database, MigrationError, migrate
from sync.server.keys import ServerKeyError, load_server_key

__all__ = ["main", "build_parser"]

PROG = "outreach-server"
KEY_ENV = "OUTREACH_SERVER_KEY"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: error: {message} (see {PROG} --help)\n")


def _common(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    default: Any = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--db", metavar="URL", default=default, help="sqlite:///PATH or postgresql+psycopg://..."
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


def _settings(args: argparse.Namespace) -> ServerSettings:
    values = {
        "db_url": args.db,
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
    }
    return ServerSettings(**{key: value for key, value in values.items() if value is not None})


def _logging_config(settings: ServerSettings) -> dict[str, Any]:
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
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
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
    app = create_app(settings)
    log.info("serving on %s:%d database=%s", settings.host, settings.port, settings.dialect)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        ssl_certfile=str(settings.ssl_certfile) if settings.ssl_certfile else None,
        ssl_keyfile=str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
        log_config=_logging_config(settings),
        access_log=settings.access_log,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        timeout_graceful_shutdown=3,  # long-polls would otherwise hold a stop for up to 30 s
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = _settings(args)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "settings"
        print(f"{PROG}: error: {where}: {first['msg']}", file=sys.stderr)
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
