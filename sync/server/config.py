"""The server's settings: one validated, immutable object built by the CLI (or a test) and passed in.

It owns the defaults and the checks (database URL form, TLS files present, sane limits). It must
never create an engine, read the environment or hold secrets of teams: nothing here runs at import
time beyond the class definition.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from sync.protocol import MAX_BODY_BYTES

__all__ = ["ServerSettings"]

_DIALECTS = {"sqlite": "sqlite", "sqlite+pysqlite": "sqlite", "postgresql+psycopg": "postgresql"}


class ServerSettings(BaseModel):
    """Everything the server needs to run. Relative SQLite paths are made absolute when built."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    db_url: str = "sqlite:///outreach-server.db"
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8700
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    log_file: Path | None = None
    code_ttl_seconds: Annotated[int, Field(ge=60, le=30 * 24 * 3600)] = 24 * 3600
    throttle_failures: Annotated[int, Field(ge=1, le=1000)] = 10
    throttle_window_seconds: Annotated[int, Field(ge=1, le=24 * 3600)] = 15 * 60
    max_body_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = MAX_BODY_BYTES
    # A long-poll wakes at once for pushes and purges through this process; it re-reads the
    # database every this many seconds too, to see what other processes on the same PostgreSQL
    # (or SQLite file) stored.
    longpoll_recheck_seconds: Annotated[float, Field(gt=0, le=60)] = 2.0
    # Database connections kept open: at least the worker threads that may hold one at once
    # (AnyIO's default thread limiter is 40). No overflow: a connection is never reopened per request.
    pool_size: Annotated[int, Field(ge=1, le=500)] = 40
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

    @field_validator("ssl_certfile", "ssl_keyfile", "log_file")
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

    @property
    def dialect(self) -> Literal["sqlite", "postgresql"]:
        return "sqlite" if _DIALECTS[make_url(self.db_url).drivername] == "sqlite" else "postgresql"

    @property
    def in_memory(self) -> bool:
        return self.db_url == "sqlite://"

    @property
    def tls(self) -> bool:
        return self.ssl_certfile is not None
