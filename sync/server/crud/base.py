"""What the data functions of every area share: hashing a token or lookup, chunking long IN
lists, the drivers' parameter marks, and the database's ping.

It must never hold a rule of an area, open a transaction, or log anything.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from sqlalchemy import literal
from sqlmodel import Session, select

__all__ = ["CHUNK", "PLACEHOLDER", "chunks", "ping", "sha256_hex"]


CHUNK = 500  # ids per IN (...) list


def sha256_hex(value: str | bytes) -> str:
    data = value.encode("utf-8") if isinstance(value, str) else value
    return hashlib.sha256(data).hexdigest()


def chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def ping(session: Session) -> None:
    session.exec(select(literal(1))).one()



# positional parameters of the drivers the server runs on (sqlite3, psycopg); another driver
# fails here with a KeyError, not with wrong SQL
PLACEHOLDER = {"qmark": "?", "format": "%s", "pyformat": "%s"}
