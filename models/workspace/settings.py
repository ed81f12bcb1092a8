"""The device's small state beside the records: non-personal settings (server URL, team id, role,
...), the sync engine's values, small secrets kept wrapped by the master key (device token, invite
secrets, the worker's name), and the notices of what this device refused.

Settings and notices are not sealed: they must never hold a personal value (notices name kinds and
ids only). Secrets are never returned without an unlocked vault.
"""

from __future__ import annotations

import logging
from datetime import datetime

from ..errors import InvalidInput
from .session import Session
from .values import Notice

__all__ = ["Settings"]

log = logging.getLogger("outreach.workspace")


class Settings:
    def __init__(self, session: Session) -> None:
        self._s = session

    def add_notice(self, kind: str, record_id: str | None = None, device_id: str | None = None,
                   detail: str = "") -> None:
        """Note a refusal for the user (ids and kinds only: the table is not sealed)."""
        store = self._s.store
        with store.atomic():
            if store.add_notice(self._s.now(), kind, record_id, device_id, detail):
                log.warning("refused (%s): record %s device %s: %s", kind, record_id, device_id, detail)

    def notices(self) -> list[Notice]:
        return [Notice(datetime.fromtimestamp(at), kind, rid, dev, detail)
                for _n, at, kind, rid, dev, detail in self._s.store.notices()]

    def worker_name(self) -> str:
        blob = self._s.store.keyring().get("secret:worker_name")
        return self._s.unlocked_vault().unwrap_secret("secret:worker_name", blob).decode() if blob else ""

    def set_worker_name(self, name: str) -> None:
        name = name.strip()
        if len(name) > 80:
            raise InvalidInput("worker_name", "at most 80 characters")
        store = self._s.store
        with store.atomic():
            store.put_key("secret:worker_name", self._s.unlocked_vault().wrap_secret("secret:worker_name",
                                                                                      name.encode()))

    def setting(self, key: str, default: str | None = None) -> str | None:
        """Non-personal device state (server URL, team id, role, ...)."""
        return self._s.store.meta(key, default)

    def set_settings(self, **values: str | int | float | None) -> None:
        store = self._s.store
        with store.atomic():
            for key, value in values.items():
                if value is None:
                    store.del_meta(key)
                else:
                    store.set_meta(key, value)

    def secret(self, name: str) -> bytes | None:
        """A small secret kept wrapped by the master key (device token, invite secrets, ...)."""
        blob = self._s.store.keyring().get(f"secret:{name}")
        return self._s.unlocked_vault().unwrap_secret(f"secret:{name}", blob) if blob else None

    def secret_names(self, prefix: str) -> list[str]:
        """The names (without `secret:`) of the small secrets that start with `prefix`."""
        return sorted(name[len("secret:"):] for name in self._s.store.keyring()
                      if name.startswith(f"secret:{prefix}"))

    def set_secret(self, name: str, value: bytes | None) -> None:
        store = self._s.store
        with store.atomic():
            if value is None:
                store.delete_keys(f"secret:{name}")
            else:
                store.put_key(f"secret:{name}", self._s.unlocked_vault().wrap_secret(f"secret:{name}", value))

    def sync_value(self, key: str, default: str | None = None) -> str | None:
        return self._s.store.sync_state(key, default)

    def set_sync_values(self, **values: str | int | float) -> None:
        store = self._s.store
        with store.atomic():
            for key, value in values.items():
                store.set_sync_state(key, value)
