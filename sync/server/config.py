"""The server's settings: one validated, immutable object built by the CLI (or a test) and passed in.

It owns the defaults and the checks (database URL form, TLS files present, sane limits, the server
key: given or in a file, required for PostgreSQL, strong, its file readable by its owner only). It
must never create an engine, read the environment or hold secrets of teams: nothing here runs at
import time beyond the class definition. Its validation errors never show the values given
(``hide_input_in_errors``): a key or a database password must not reach a log.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from sync.protocol import MAX_BODY_BYTES
from sync.server.keys import check_key_file, parse_key_text

__all__ = ["ServerSettings"]

_DIALECTS = {"sqlite": "sqlite", "sqlite+pysqlite": "sqlite", "postgresql+psycopg": "postgresql"}


class ServerSettings(BaseModel):
    """Everything the server needs to run. Relative SQLite paths are made absolute when built."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True, hide_input_in_errors=True)

    db_url: str = "sqlite:///outreach-server.db"
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8700
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    log_file: Path | None = None
    code_ttl_seconds: Annotated[int, Field(ge=60, le=30 * 24 * 3600)] = 24 * 3600
    throttle_failures: Annotated[int, Field(ge=1, le=1000)] = 10
    throttle_window_seconds: Annotated[int, Field(ge=1, le=24 * 3600)] = 15 * 60
    # Failed code lookups per minute from all addresses together: past it every join and recover
    # waits (429 throttled), so that many addresses together still guess slowly.
    throttle_server_failures_per_minute: Annotated[int, Field(ge=1, le=100_000)] = 120
    # The server key (sync/server/keys.py): hex of at least 32 random bytes, given here (the CLI
    # reads OUTREACH_SERVER_KEY) or in a file of mode 0600. Neither: a SQLite file's server keeps it
    # in `<database file>.key`, made on first start; a PostgreSQL server refuses to start.
    server_key: SecretStr | None = None
    server_key_file: Path | None = None
    # Peers whose X-Forwarded-For uvicorn believes (the client address the throttle counts):
    # the reverse proxy's address, comma-separated addresses or networks, or "*" (docs/DEPLOY.md).
    forwarded_allow_ips: str = "127.0.0.1"
    max_body_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = MAX_BODY_BYTES
    # A long-poll wakes at once for pushes and purges through this process, and on PostgreSQL
    # through any process (LISTEN/NOTIFY, `listen`). It re-reads the database every this many
    # seconds too; None: 2 s where nothing tells it of other processes (SQLite, or PostgreSQL while
    # its listening connection is lost), else 20 s, as a mere safety net.
    longpoll_recheck_seconds: Annotated[float, Field(gt=0, le=60)] | None = None
    # PostgreSQL: one connection per process LISTENs for other processes' pushes (sync/server/wake.py).
    listen: bool = True
    # Server processes (uvicorn workers) sharing the port. More than one only on PostgreSQL: SQLite
    # has one writer, and its long-polls would not hear each other.
    workers: Annotated[int, Field(ge=1, le=64)] = 1
    # Database connections kept open: at least the worker threads that may hold one at once
    # (AnyIO's default thread limiter is 40). No overflow: a connection is never reopened per request.
    pool_size: Annotated[int, Field(ge=1, le=500)] = 40
    # Seconds a request waits for a free database connection before it is answered 503 unavailable.
    pool_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 10.0
    access_log: bool = False  # uvicorn's line per request (costs CPU; the server logs ids and counts anyway)
    # Seconds between two `last_seen` writes for one device: spares the database a write per request.
    last_seen_resolution_seconds: Annotated[float, Field(ge=0, le=3600)] = 60.0
    # Serve the OpenAPI document of the protocol at GET /v1/openapi.json (without a token: it says
    # nothing the repository's sync/PROTOCOL.md does not). On by default, for development and for
    # tools; `outreach-server --no-openapi` turns it off.
    openapi: bool = True

    @field_validator("db_url")
    @classmethod
    def _check_db_url(cls, value: str) -> str:
        try:
            url = make_url(value)
        except ArgumentError as exc:
            raise ValueError(f"not a database URL: {exc}") from exc
        if url.drivername not in _DIALECTS:
            raise ValueError("use sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST/DB")
        if _DIALECTS[url.drivername] == "sqlite":
            if not url.database or url.database == ":memory:":
                return "sqlite://"  # in memory: for tests and trials, gone when the process ends
            path = Path(url.database).expanduser()
            if not path.is_absolute():
                path = Path.cwd() / path
            if not path.parent.is_dir():
                raise ValueError(f"the directory of the database file does not exist: {path.parent}")
            return url.set(database=str(path)).render_as_string(hide_password=False)
        if not url.database:
            raise ValueError("the PostgreSQL URL names no database")
        return value

    @field_validator("server_key")
    @classmethod
    def _check_server_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_key_text(value.get_secret_value())
        return value

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _check_forwarded(cls, value: str) -> str:
        items = [item.strip() for item in value.split(",") if item.strip()]
        for item in items:
            if item == "*":
                continue
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"not an address or network: {item!r} (or use *)") from None
        return ",".join(items)

    @field_validator("ssl_certfile", "ssl_keyfile", "log_file", "server_key_file")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser().absolute()

    @model_validator(mode="after")
    def _check_tls(self) -> ServerSettings:
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("give both --ssl-certfile and --ssl-keyfile, or neither")
        for path in (self.ssl_certfile, self.ssl_keyfile):
            if path is not None and not path.is_file():
                raise ValueError(f"no such file: {path}")
        if self.log_file is not None and not self.log_file.parent.is_dir():
            raise ValueError(f"the directory of the log file does not exist: {self.log_file.parent}")
        return self

    @model_validator(mode="after")
    def _check_workers(self) -> ServerSettings:
        if self.workers > 1 and self.dialect == "sqlite":
            raise ValueError(
                f"--workers {self.workers} needs PostgreSQL: a SQLite database is served by one process "
                "(run without --workers, or use --db postgresql+psycopg://...; docs/DEPLOY.md)"
            )
        return self

    @model_validator(mode="after")
    def _check_key_source(self) -> ServerSettings:
        if self.server_key is not None and self.server_key_file is not None:
            raise ValueError("give the server key as --server-key-file or OUTREACH_SERVER_KEY, not both")
        if self.server_key is None and self.server_key_file is None and self.dialect == "postgresql":
            raise ValueError(
                "a PostgreSQL server needs its key: --server-key-file PATH or OUTREACH_SERVER_KEY "
                "(make one with: openssl rand -hex 32)"
            )
        path = self.server_key_path
        if path is not None and (self.server_key_file is not None or path.exists()):
            check_key_file(path)  # a default file not made yet is made on first start
        return self

    @property
    def dialect(self) -> Literal["sqlite", "postgresql"]:
        return "sqlite" if _DIALECTS[make_url(self.db_url).drivername] == "sqlite" else "postgresql"

    @property
    def in_memory(self) -> bool:
        return self.db_url == "sqlite://"

    @property
    def tls(self) -> bool:
        return self.ssl_certfile is not None

    @property
    def server_key_path(self) -> Path | None:
        """The file the server key is in (or will be made in): the one given, else beside a SQLite
        file; None when the key is given or the database is in memory."""
        if self.server_key is not None:
            return None
        if self.server_key_file is not None:
            return self.server_key_file
        if self.dialect == "sqlite" and not self.in_memory:
            database = make_url(self.db_url).database
            assert database is not None
            return Path(database + ".key")
        return None
