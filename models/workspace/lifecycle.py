"""The life of one device's data directory: create it (`init`), unlock it with the wrong-try
throttle and the wipe at the limit, lock it (sealing the index's snapshot first), close it, wipe
it, and change the passphrase. It owns the throttle's counters in the store's meta.

It never logs the passphrase or says whether one was close; an unlock with the keystore secret
missing is never counted as a wrong try (the right passphrase would fail too).
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import uuid

from ..domain.index import Index
from ..errors import (
    InvalidInput,
    KeystoreUnavailable,
    Throttled,
    VaultExists,
    VaultMissing,
    VaultWiped,
    WrongPassphrase,
)
from ..storage.store import DB_NAME, Store
from ..storage.vault import KdfParams, SealError, Vault
from .loading import Loading
from .passphrase import ThrottlePolicy, check_passphrase, strong_offline
from .session import Session

__all__ = ["Lifecycle"]

log = logging.getLogger("outreach.workspace")


class Lifecycle:
    def __init__(self, session: Session, loading: Loading) -> None:
        self._s = session
        self._loading = loading
        self.needs_stronger_passphrase = False  # unlocked with one that would not be accepted today

    def policy(self) -> ThrottlePolicy:
        store = self._s.store
        return ThrottlePolicy(
            max_failures=int(store.meta("max_failures", "10") or 10),
            base=float(store.meta("delay_base", "1.0") or 1.0),
        )

    def init(self, passphrase: str, *, worker_name: str = "", max_failures: int = 10,
             delay_base: float = 1.0) -> str:
        """Create the vault: device key pair and a team key of epoch 1. Returns the device id."""
        s = self._s
        if s.exists():
            raise VaultExists(f"There is already Outreach data in {s.data_dir}.")
        check_passphrase(passphrase, offline=s.guard_offline)
        if not 1 <= max_failures <= 100:
            raise InvalidInput("max_failures", "must be between 1 and 100")
        s.data_dir.mkdir(parents=True, exist_ok=True)
        device_id = uuid.uuid4().hex
        params = KdfParams.default(fast=s.fast_kdf).with_pepper(s.pepper)
        vault = Vault(device_id)
        entries = vault.create(passphrase, params, s.pepper)
        tmp = s.data_dir / (DB_NAME + ".creating")
        for p in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
            p.unlink(missing_ok=True)
        store = Store(tmp)
        with store.atomic():
            for name, blob in entries.items():
                store.put_key(name, blob, params.to_json() if name == "master" else None)
            store.set_meta("device_id", device_id)
            store.set_meta("epoch", 1)
            store.set_meta("device_seq", 0)
            store.set_meta("hlc", 0)
            store.set_meta("failures", 0)
            store.set_meta("max_failures", max_failures)
            store.set_meta("delay_base", delay_base)
            store.set_meta("created_at", s.now())
            if worker_name:
                store.put_key("secret:worker_name", vault.wrap_secret("secret:worker_name", worker_name.encode()))
        store.close()
        os.replace(tmp, s.db_path)  # the vault appears whole or not at all
        s.vault = vault
        self._loading.load()
        return device_id

    def throttle_wait(self) -> float:
        """Seconds before the next unlock attempt is allowed (0 when it is allowed now)."""
        retry_at = float(self._s.store.meta("retry_at", "0") or 0)
        return max(0.0, retry_at - self._s.now())

    def failures(self) -> int:
        return int(self._s.store.meta("failures", "0") or 0)

    def unlock(self, passphrase: str) -> None:
        s = self._s
        store = s.store
        wait = self.throttle_wait()
        if wait > 0:
            raise Throttled(wait)
        params_json = store.kdf_params()
        if params_json is None:
            raise VaultMissing("This data file has no keys; it is damaged.")
        params = KdfParams.from_json(params_json)
        if not params.fits(s.pepper):
            raise KeystoreUnavailable()  # the right passphrase would fail too: never count it
        vault = Vault(s.device_id)
        try:
            vault.unlock(passphrase, params, store.keyring(), s.pepper)
        except SealError:
            failures = self.failures() + 1
            policy = self.policy()
            if failures >= policy.max_failures:
                log.warning("unlock failed %d times: wiping local data", failures)
                self.wipe()
                raise VaultWiped() from None
            delay = policy.delay(failures)
            with store.atomic():
                store.set_meta("failures", failures)
                store.set_meta("retry_at", s.now() + delay)
            raise WrongPassphrase(policy.max_failures - failures, delay) from None
        with store.atomic():
            store.set_meta("failures", 0)
            store.del_meta("retry_at")
        s.vault = vault
        if s.pepper and not params.pepper:  # a keystore is there now: the copy gains its protection
            self._rewrap(passphrase, passphrase)
        self.needs_stronger_passphrase = s.guard_offline and not strong_offline(passphrase)
        self._loading.load()

    @property
    def protection(self) -> str:
        """What protects a copy of the data file: "keystore" (the device's keystore secret and
        the passphrase), "passphrase" (one strong enough for offline guessing), or "pin" (a
        short one only: fine where the wrong-try counter is all an attacker meets)."""
        if self._s.pepper:
            return "keystore"
        return "passphrase" if self._s.guard_offline else "pin"

    def lock(self) -> None:
        """Drop the keys and the opened records; first seal the index whole for a fast unlock."""
        if self._s.unlocked and self._s.opened is not None:
            self._loading.save_snapshot()
        self.forget()

    def forget(self) -> None:
        s = self._s
        if s.vault is not None:
            s.vault.lock()
        s.vault = None
        s.index = Index()
        gc.unfreeze()

    def close(self) -> None:
        self.lock()
        if self._s.opened is not None:
            self._s.opened.close()
            self._s.opened = None

    def wipe(self) -> None:
        """Erase this device's data directory contents (the store's files and anything beside)."""
        s = self._s
        self.forget()
        if s.opened is not None:
            try:
                s.opened.close(checkpoint=False)
            finally:
                s.opened = None
        for p in s.data_dir.iterdir() if s.data_dir.exists() else []:
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)

    def change_passphrase(self, old: str, new: str) -> None:
        """Re-wraps the master key only; no record is re-encrypted."""
        check_passphrase(new, offline=self._s.guard_offline)
        self._rewrap(old, new)
        self.needs_stronger_passphrase = False

    def _rewrap(self, old: str, new: str) -> None:
        s = self._s
        vault = s.unlocked_vault()
        store = s.store
        old_params = KdfParams.from_json(store.kdf_params() or "")
        new_params = KdfParams.default(fast=s.fast_kdf).with_pepper(s.pepper)
        try:
            wrapped = vault.rewrap_master(old, new, old_params, new_params, store.keyring()["master"], s.pepper)
        except SealError:
            raise WrongPassphrase(self.policy().max_failures - self.failures()) from None
        with store.atomic():
            store.put_key("master", wrapped, new_params.to_json())
