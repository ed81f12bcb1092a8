"""The server's own key: what keys the stored code lookups and seals the founding code's secret.

It owns the key's text form (hex of at least 32 random bytes), its strength check, where it lives
(given in the settings, a file named there, or for a SQLite file a ``.key`` file beside it, made on
first start with mode 0600; in memory a fresh one) and the two uses of it:

- **Lookups.** An enrollment code's lookup half (8 characters, ~39.6 bits) is stored as
  ``HMAC-SHA256(lookup key, LOOKUP)``, not as its plain SHA-256: a copy of the database alone no
  longer gives the lookups away to a few minutes of hashing; the key is not in the database.
- **The founding secret.** The operator's code is made by the server's own CLI; the first device
  that joins with it becomes the team's coordinator, with a key of its own choosing. The lookup
  alone must not do that, so the server checks the device's proof
  ``HMAC-SHA256(secret, public key ‖ signing key ‖ device id)``, the one every joining device
  already sends. An HMAC can only be checked by whoever holds its key, so the server must keep the
  secret itself (a hash of it checks nothing), and it keeps it *sealed* under the server key (a
  pad and a MAC from HMAC-SHA256, bound to the invite's lookup hash) for as long as the code is
  open, and drops it when the code is used. That is safe because the founding secret is used
  once, by the server's CLI and the founding device only: it wraps no team key (the founding
  device makes the team key itself), no other device ever checks it, and after founding (or
  expiry) it opens nothing. Whoever holds both a copy of the database and the key file while a
  founding code is open could found that team, as whoever holds the CLI's printout can; a
  coordinator's invite secrets never reach the server (it cannot check those proofs: the
  coordinator's device does).

It must never log or print a key, a lookup or a secret, and never read the environment (the CLI
passes ``OUTREACH_SERVER_KEY`` in as a setting). It imports only the standard library: the server
never imports `cryptography`.

    ServerKeyError      a key that is missing, weak, unreadable or readable by others (a ValueError)
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
import tempfile
from pathlib import Path
from typing import Protocol

__all__ = ["ServerKey", "ServerKeyError", "KEY_BYTES", "KeySettings", "parse_key_text", "check_key_file",
           "load_server_key"]

KEY_BYTES = 32  # at least: `openssl rand -hex 32`
_MIN_DISTINCT = 16  # of 32 random bytes about 30 differ; a repeated pattern has few
_SEAL_VERSION = b"\x01"
_NONCE = 16
_TAG = 16
_MAX_SECRET = 32  # one HMAC-SHA256 output of pad; a code's secret is 26 characters


class ServerKeyError(ValueError):
    """The server key cannot be used (missing, weak, unreadable, or readable by others)."""


def parse_key_text(text: str, *, where: str = "the server key") -> bytes:
    """The key bytes of its text form: hex of at least 32 random-looking bytes."""
    cleaned = text.strip()
    try:
        key = bytes.fromhex(cleaned)
    except ValueError:
        raise ServerKeyError(f"{where} is not hex (make one with: openssl rand -hex 32)") from None
    if len(key) < KEY_BYTES:
        raise ServerKeyError(f"{where} has {len(key)} bytes; it needs at least {KEY_BYTES} (openssl rand -hex 32)")
    if len(set(key)) < _MIN_DISTINCT:
        raise ServerKeyError(f"{where} is too weak: not random bytes (make one with: openssl rand -hex 32)")
    return key


def check_key_file(path: Path) -> bytes:
    """The key in `path`, refused unless it is a file only its owner may read and write."""
    try:
        info = path.stat()
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ServerKeyError(f"cannot read the server key file {path}: {type(exc).__name__}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ServerKeyError(f"the server key file {path} is not a file")
    if os.name == "posix" and info.st_mode & 0o077:
        raise ServerKeyError(f"the server key file {path} is open to other users: chmod 600 it")
    return parse_key_text(text, where=f"the server key file {path}")


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


class ServerKey:
    """The server key's two uses, each under a subkey of its own."""

    def __init__(self, key: bytes) -> None:
        if len(key) < KEY_BYTES or len(set(key)) < _MIN_DISTINCT:
            raise ServerKeyError("the server key is too short or not random")
        self._lookup_key = _hmac(key, b"outreach/v1/server-key/code-lookup")
        self._pad_key = _hmac(key, b"outreach/v1/server-key/founding-pad")
        self._mac_key = _hmac(key, b"outreach/v1/server-key/founding-mac")

    @classmethod
    def generate(cls) -> ServerKey:
        return cls(secrets.token_bytes(KEY_BYTES))

    def __repr__(self) -> str:
        return "ServerKey(...)"

    def lookup_hash(self, lookup: str) -> str:
        """What the server stores of a code's lookup half (any case, spaces around it ignored)."""
        return hmac.new(self._lookup_key, lookup.strip().upper().encode("utf-8"), hashlib.sha256).hexdigest()

    def seal_founding(self, secret: bytes, *, lookup_hash: str) -> bytes:
        """The founding secret as the server keeps it until the code is used: version, nonce, MAC,
        and the secret under a one-time pad (a fresh nonce per seal)."""
        if not 0 < len(secret) <= _MAX_SECRET:
            raise ValueError("a founding secret has 1 to 32 bytes")
        nonce = secrets.token_bytes(_NONCE)
        pad = _hmac(self._pad_key, nonce + lookup_hash.encode("ascii"))
        body = bytes(a ^ b for a, b in zip(secret, pad, strict=False))
        tag = _hmac(self._mac_key, _SEAL_VERSION + nonce + lookup_hash.encode("ascii") + body)[:_TAG]
        return _SEAL_VERSION + nonce + tag + body

    def open_founding(self, sealed: bytes, *, lookup_hash: str) -> bytes | None:
        """The founding secret, or None when the seal is not this key's for this lookup."""
        head = 1 + _NONCE + _TAG
        if len(sealed) <= head or sealed[:1] != _SEAL_VERSION:
            return None
        nonce, tag, body = sealed[1 : 1 + _NONCE], sealed[1 + _NONCE : head], sealed[head:]
        expected = _hmac(self._mac_key, _SEAL_VERSION + nonce + lookup_hash.encode("ascii") + body)[:_TAG]
        if not hmac.compare_digest(tag, expected):
            return None
        pad = _hmac(self._pad_key, nonce + lookup_hash.encode("ascii"))
        return bytes(a ^ b for a, b in zip(body, pad, strict=False))


def _create_key_file(path: Path) -> None:
    """Write a new key to `path` unless one is there: written whole to a 0600 file beside it, then
    linked into place (a second server starting at once finds the first one's key, never half of it)."""
    fd, temp = tempfile.mkstemp(prefix=".outreach-key-", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_bytes(KEY_BYTES).hex() + "\n")
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(temp, path)
        except FileExistsError:
            pass
    finally:
        os.unlink(temp)


class _Secret(Protocol):
    def get_secret_value(self) -> str: ...


class KeySettings(Protocol):
    """What `load_server_key` reads of the server's settings (`config.ServerSettings`, which
    imports this module to check a key: named here by its shape, so that the two never import
    each other)."""

    @property
    def server_key(self) -> _Secret | None: ...
    @property
    def server_key_file(self) -> Path | None: ...
    @property
    def server_key_path(self) -> Path | None: ...
    @property
    def in_memory(self) -> bool: ...


def load_server_key(settings: KeySettings) -> ServerKey:
    """The key the settings name: given, in a file, beside the SQLite file (made on first start),
    or for an in-memory database a fresh one (its codes die with it)."""
    if settings.server_key is not None:
        return ServerKey(parse_key_text(settings.server_key.get_secret_value()))
    path = settings.server_key_path
    if path is None:
        if not settings.in_memory:  # the settings refuse this; a guard, not a path
            raise ServerKeyError("no server key: give --server-key-file PATH or OUTREACH_SERVER_KEY")
        return ServerKey.generate()
    if not path.exists() and settings.server_key_file is None:
        _create_key_file(path)
    return ServerKey(check_key_file(path))
