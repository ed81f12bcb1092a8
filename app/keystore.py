"""A laptop's keystore as the pepper of the passphrase KDF: the Secret Service on Linux, the
Keychain on macOS, the Credential Manager on Windows, through `keyring`. With it, a copy of the
data file is useless without the logged-in user's keystore too, as on a phone; without it (no
keystore, a headless machine), the workspace asks for a passphrase strong enough for offline
guessing instead (`Workspace(guard_offline=True)`).

The secret is made on first use and kept per data folder. It never leaves the keystore except
into the KDF; nothing here logs it. Phones use their own keystore (`flet-secure-storage`, see
`keystore_pepper`, given the app's `SecureStorage`); `desktop_pepper` is for the desktop and
the local web mode.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from pathlib import Path
from typing import Any

__all__ = ["desktop_pepper", "keystore_pepper", "SERVICE"]

log = logging.getLogger("outreach.keystore")

SERVICE = "outreach"


def _entry(data_dir: Path) -> str:
    return "pepper:" + hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:16]


def desktop_pepper(data_dir: Path, *, backend: Any = None) -> bytes:
    """This data folder's keystore secret (made on first use), or b"" when the machine has no
    usable keystore. `backend`: a keyring backend (tests); default: the platform's."""
    try:
        import keyring
        from keyring.errors import KeyringError
    except ImportError:
        return b""
    ring = backend or keyring.get_keyring()
    if getattr(ring, "priority", 0) <= 0:  # keyring's "fail" and "null" backends: no keystore here
        return b""
    name = _entry(data_dir)
    try:
        value = ring.get_password(SERVICE, name)
        if not value:
            value = secrets.token_hex(32)
            ring.set_password(SERVICE, name, value)
            if ring.get_password(SERVICE, name) != value:  # a keystore that does not keep what it is given
                return b""
        return bytes.fromhex(value)
    except (KeyringError, ValueError) as exc:
        log.warning("the keystore could not be used (%s): the passphrase alone protects a copy", type(exc).__name__)
        return b""


async def keystore_pepper(storage: Any, key: str = "outreach.pepper") -> bytes:
    """The device keystore's secret mixed into the PIN's KDF on phones (flet-secure-storage):
    a short PIN cannot be brute-forced from a copied data file without it. Made on first use."""
    value = await storage.get(key)
    if not value:
        value = secrets.token_hex(32)
        await storage.set(key, value)
    return bytes.fromhex(str(value))
