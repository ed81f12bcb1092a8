"""The device's keys beyond the passphrase: its fingerprint, its signing key, the team's signing
key (the coordinator's authority), and the team keys by epoch: joining a team re-seals everything
written before under the team's key; a new epoch moves the queued ops to it.

It never overwrites a held team key (every row of its epoch would be lost) and never lets a key
leave the vault unwrapped.
"""

from __future__ import annotations

from ..domain.vocab import RecordType
from ..storage.vault import fingerprint
from .session import Session
from .writes import Writer

__all__ = ["Keys"]


class Keys:
    def __init__(self, session: Session, writer: Writer) -> None:
        self._s = session
        self._w = writer

    def fingerprint(self) -> str:
        """This device's public key as a person compares it by eye."""
        return fingerprint(self._s.unlocked_vault().public_key)

    def set_authority(self, seed: bytes | None = None) -> None:
        """Hold the team's signing key: `seed` as given (a grant, the recovery code), or a new one."""
        vault = self._s.unlocked_vault()
        entry = vault.new_authority() if seed is None else vault.set_authority(seed)
        store = self._s.store
        with store.atomic():
            store.put_key("authority", entry)

    def ensure_signing_key(self) -> bytes:
        """This device's signing key (made now for a vault of the previous version); its public half."""
        vault = self._s.unlocked_vault()
        if not vault.has_signing_key:
            entry = vault.new_signing_key()
            store = self._s.store
            with store.atomic():
                store.put_key("signing", entry)
        return vault.signing_vk

    def adopt_team_keys(self, keys: dict[int, bytes], current_epoch: int) -> None:
        """Join a team: its keys replace this device's own, and everything written before joining
        (rows and queued ops) is re-sealed under the team key of `current_epoch`. Nothing is lost."""
        vault = self._s.unlocked_vault()
        store = self._s.store
        open_state = self._w.open_state
        with store.atomic():
            states = {rtype: [(rid, open_state(rtype, rid, e, b)) for rid, e, b in store.iter_rows(rtype)]
                      for rtype in RecordType}
            queued = [(seq, op_id, rid, vault.open_op(rid, e, vault.device_id, seq, op_id, payload))
                      for seq, op_id, rid, e, payload in store.outbox_all()]
            old = vault.replace_team_keys(keys)
            try:
                store.delete_keys("team:")
                for epoch, key in keys.items():
                    store.put_key(f"team:{epoch}", vault.wrap_secret(f"team:{epoch}", key))
                store.set_meta("epoch", current_epoch)
                for rtype, items in states.items():
                    store.put_rows(rtype, [(rid, current_epoch, vault.seal_row(rtype.value, rid, current_epoch,
                                                                               st.to_json())) for rid, st in items])
                for seq, op_id, rid, body in queued:
                    store.replace_outbox_payload(seq, current_epoch, vault.seal_op(
                        rid, current_epoch, vault.device_id, seq, op_id, body))
                store.drop_snapshot()  # sealed under the device's own key: the next lock seals a new one
            except BaseException:
                vault.replace_team_keys(old)
                raise

    def add_epoch_key(self, epoch: int, key: bytes) -> None:
        """Keep a team key epoch; a newer epoch becomes current and queued ops move to it."""
        vault = self._s.unlocked_vault()
        store = self._s.store
        if epoch in vault.epochs and vault.team_key(epoch) != key:
            raise ValueError("never overwrite a held team key: every row of its epoch would be lost")
        with store.atomic():
            store.put_key(f"team:{epoch}", vault.add_team_key(epoch, key))
            if epoch > self._s.epoch:
                store.set_meta("epoch", epoch)
                for seq, op_id, rid, e, payload in store.outbox_all():
                    body = vault.open_op(rid, e, vault.device_id, seq, op_id, payload)
                    store.replace_outbox_payload(seq, epoch, vault.seal_op(rid, epoch, vault.device_id, seq, op_id, body))

    def has_epoch(self, epoch: int) -> bool:
        return epoch in self._s.unlocked_vault().epochs
