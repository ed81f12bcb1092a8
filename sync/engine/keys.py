"""The team's keys on this device: key grants in and out, key epochs, and the recovery code.

It owns adopting keys from grants (on first receipt, then each new epoch), making grants for a
device a coordinator verified (signed by the team's authority, carrying the signed cut-offs), and
wrapping the team keys under the recovery code for the server. A key is adopted only from a grant
the team's authority signed (docs/SECURITY.md); it must never overwrite a key held here, never
adopt an unsigned or forged one (that becomes a notice and `KeyRefused`), and never call another
part of the engine.
"""

from __future__ import annotations

import logging
import time
from typing import NoReturn

from models.storage.vault import Grant, RecoveryCode, SealError, Vault
from sync import protocol as p
from sync.engine.context import EngineContext
from sync.errors import KeyRefused, ProofMismatch

__all__ = ["Keys"]

log = logging.getLogger("outreach.sync.engine")


class Keys:
    """Grants, epochs and the recovery code of one engine."""

    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx

    def grant(self, team: str, epoch: int, device_id: str, public_key: bytes, role: str, **bind: object) -> str:
        """The team key of `epoch` wrapped for a device, in a grant signed by the team's authority."""
        vault = self.ctx.ws.vault
        assert vault is not None
        return p.b64e(vault.make_grant(team, epoch, device_id, public_key, role=role,
                                       purges_unsigned_through=self.ctx.purges_unsigned_through(),
                                       cutoffs=self.ctx.cutoffs(), **bind))  # type: ignore[arg-type]

    def refresh(self) -> bool:
        """Fetch this device's key grants and adopt what they hold: the team's keys on first
        receipt, new epochs later. A key is adopted only from a grant signed by the team's
        authority (docs/SECURITY.md); an unsigned or forged one, or a second key for an epoch held
        here, changes nothing: it becomes a notice and `KeyRefused`. Returns True when the device
        is (now) active."""
        ctx = self.ctx
        ws = ctx.ws
        vault = ws.vault
        assert vault is not None
        resp = ctx.client().keys()
        mine = [k for k in resp.keys if k.device_id in (None, ws.device_id)]
        if not mine:
            me = ctx.client().me()
            ws.set_settings(device_status=me.status.value)
            if me.status == p.DeviceStatus.REJECTED:
                raise ProofMismatch("The coordinator's device refused this device: its key did not match the "
                                    "code it joined with. Ask the coordinator for a new code.")
            return False
        team = ctx.team_id()
        active = ws.setting("device_status") == p.DeviceStatus.ACTIVE.value
        pinned_vk = ctx.authority_vk()
        join_secret = ws.secret("join_code")
        grants: dict[int, Grant] = {}
        for k in sorted(mine, key=lambda k: k.epoch):
            try:
                blob = p.b64d(k.wrapped)
            except ValueError:
                self._refuse(k.epoch, "a malformed grant", changed=False)
            try:
                grant = vault.open_grant(team, k.epoch, blob, pinned_vk=pinned_vk, invite_secret=join_secret,
                                         team_bind=active)
            except SealError as exc:  # GrantError, or a wrap that does not open
                held = active and ws.has_epoch(k.epoch)
                if held and _legacy_wrap_of(vault, team, k.epoch, blob) == vault.team_key(k.epoch):
                    continue  # the previous version's unsigned copy of a key held here: changes nothing
                self._refuse(k.epoch, str(exc), changed=held)
            if active and ws.has_epoch(k.epoch) and vault.team_key(k.epoch) != grant.key:
                self._refuse(k.epoch, "a second key for an epoch held here", changed=True)
            pinned_vk = grant.vk
            grants[k.epoch] = grant
        if not grants:
            return active
        newest = grants[max(grants)]
        if ctx.authority_vk() is None:
            ctx.pin_authority(newest.vk, newest.purges_unsigned_through)
        kept = ctx.cutoffs()
        cutoffs = dict(kept)
        for grant in grants.values():
            for dev, cut in grant.cutoffs.items():
                cutoffs.setdefault(dev, cut)
        if cutoffs != kept:
            ctx.set_json_secret("cutoffs", cutoffs)
        if not active:
            ws.adopt_team_keys({e: g.key for e, g in grants.items()}, max(grants))
            ws.set_settings(device_status=p.DeviceStatus.ACTIVE.value, role=newest.role)
            ws.set_secret("join_code", None)
            log.info("received the team key (epochs %s)", sorted(grants))
        else:
            for epoch, grant in sorted(grants.items()):
                if not ws.has_epoch(epoch):
                    ws.add_epoch_key(epoch, grant.key)
            ws.set_settings(role=newest.role)
        seed = next((g.authority_seed for g in grants.values() if g.authority_seed), None)
        if seed is not None and not vault.can_sign:
            ws.set_authority(seed)
        return True

    def _refuse(self, epoch: int, why: str, *, changed: bool) -> NoReturn:
        self.ctx.ws.add_notice("key_refused", None, None, f"epoch {epoch}: {why}")
        log.warning("a team key for epoch %d refused: %s", epoch, why)
        raise KeyRefused(KeyRefused.CHANGED if changed else KeyRefused.UNSIGNED, changed=changed)

    # ------------------------------------------------------------------ the recovery code
    def new_recovery_code(self) -> str:
        """Make (or replace) the team's recovery code: the team keys wrapped under it go to the server."""
        ws = self.ctx.ws
        code = RecoveryCode.generate()
        ws.set_secret("recovery", code.secret)
        self.upload_recovery(code)
        ws.set_settings(recovery_made_at=time.time())
        return str(code)

    def recovery_status(self) -> dict[str, object]:
        """What the desk shows about the recovery code (never the code itself)."""
        ws = self.ctx.ws
        made = ws.setting("recovery_made_at")
        return {"on_this_device": ws.secret("recovery") is not None,
                "made_at": float(made) if made else None,
                "epochs_covered": ws.vault.epochs if ws.vault else []}

    def upload_recovery(self, code: RecoveryCode) -> None:
        vault = self.ctx.ws.vault
        assert vault is not None
        team = self.ctx.team_id()
        seed = vault.authority_seed if vault.can_sign else b""
        self.ctx.client().upload_recovery(p.RecoveryUpload(
            recovery_lookup=p.b64e(code.lookup),
            keys=[p.WrappedKey(epoch=e, wrapped=p.b64e(code.wrap(team, e, vault.team_key(e), seed)))
                  for e in vault.epochs],
        ))

    def upload_kept_recovery(self) -> None:
        """The recovery code kept here (if any) wraps the team keys again: after a new epoch."""
        recovery = self.ctx.ws.secret("recovery")
        if recovery:
            self.upload_recovery(RecoveryCode(recovery))


def _legacy_wrap_of(vault: Vault, team_id: str, epoch: int, blob: bytes) -> bytes | None:
    """The key in an unsigned wrap of the previous version, or None when it does not open."""
    try:
        return vault.unwrap_from_team(team_id, epoch, blob)
    except (SealError, ValueError):
        return None
