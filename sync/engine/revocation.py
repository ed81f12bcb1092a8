"""Devices leaving: revocation (at once, with a new key epoch) and retirement (handed over first).

Two ways for a device to leave. `revoke` is for a lost or stolen one: at once, and whatever it did
not sync is lost (`loss_preview` says since when). `retire` is for one still in hand: the
coordinator signs a roster entry asking it to leave; the device's next sync pushes everything it
holds, writes an audit event saying it handed over, and clears itself; the coordinator's next sync
after that event revokes it (a new key epoch, as for any revoke). The server cannot forge the
request (signed) and hiding it only delays the retirement. This module owns both, and the signed
cut-off of a revoked device. It must never key a device no coordinator verified, and never strand
an active device without the new key unless asked to.
"""

from __future__ import annotations

import logging
import time

from models.domain.vocab import AuditAction, RecordType
from sync import protocol as p
from sync.engine.authority import Authority
from sync.engine.context import EngineContext
from sync.engine.keys import Keys
from sync.engine.pull import Pull
from sync.engine.push import Push
from sync.engine.reports import RevokeReport
from sync.engine.roster import Roster
from sync.errors import DeviceRetired, Offline, WouldStrand
from sync.gaps import Gaps

__all__ = ["Revocation"]

log = logging.getLogger("outreach.sync.engine")


class Revocation:
    """Revoke, retire, and finish retirements."""

    HANDED_OVER = "device retired: "  # the audit detail of a retired device's last word, + its id

    def __init__(self, ctx: EngineContext, roster: Roster, keys: Keys, authority: Authority, puller: Pull,
                 pusher: Push) -> None:
        self.ctx = ctx
        self.roster = roster
        self.keys = keys
        self.authority = authority
        self.puller = puller
        self.pusher = pusher

    def revoke(self, device_id: str) -> int:
        """Coordinator: revoke a device and start a new key epoch for the devices that remain.
        Returns the new epoch."""
        return self.revoke_with_report(device_id).epoch

    def keyable(self, listing: p.DeviceList, leaving: str) -> tuple[list[tuple[p.DevicePublic, str]], list[str]]:
        """The active devices that will get a new epoch (each with its role) and those that
        cannot: no coordinator verified their key (neither pinned here nor in the signed roster),
        or the listed key differs from the verified one."""
        ctx = self.ctx
        pinned = ctx.pinned()
        roles = ctx.pinned_roles()
        roster = self.roster.refresh()
        ok: list[tuple[p.DevicePublic, str]] = []
        stranded: list[str] = []
        for dev in listing.devices:
            if dev.status != p.DeviceStatus.ACTIVE or dev.device_id == leaving:
                continue
            entry = roster.get(dev.device_id)
            if dev.device_id == ctx.ws.device_id:
                ok.append((dev, p.Role.COORDINATOR.value))
                continue
            known = pinned.get(dev.device_id) or (entry.pub if entry is not None and entry.cutoff is None else None)
            if known is None or known != dev.public_key:
                log.warning("device %s: public key not verified by a coordinator; not given the new key", dev.device_id)
                stranded.append(dev.device_id)
                continue
            ok.append((dev, roles.get(dev.device_id) or (entry.role if entry else p.Role.WORKER.value)))
        return ok, stranded

    def revoke_with_report(self, device_id: str, *, strand: bool = False) -> RevokeReport:
        """Coordinator: revoke a device and start a new key epoch for the devices that remain,
        every active device whose key a coordinator verified (pinned here or in the signed
        roster). When some active device would be left without the new key, nothing is done
        and `WouldStrand` names them, unless `strand`. Returns the epoch and who got it."""
        ctx = self.ctx
        self.authority.ensure()
        client = ctx.client()
        _ok, stranded = self.keyable(client.devices(), device_id)
        if stranded and not strand:
            raise WouldStrand(stranded)
        client.revoke(device_id)
        # everything it wrote before the server shut it out, then its signed cut-off: its ops after
        # that, or relayed later under an old key, count nowhere (and the new epoch's grants say so)
        self.puller.pull(fold=False)
        cutoff = ctx.seen(device_id)
        kept = ctx.ws.sync_value("gaps")  # and its history as this device saw it, when it saw the whole log
        history = Gaps.from_json(kept).history(device_id) if kept else None
        cutoffs = ctx.cutoffs()
        cutoffs[device_id] = cutoff
        ctx.set_json_secret("cutoffs", cutoffs)
        old = self.roster.roster().get(device_id)
        self.roster.publish([self.roster.entry(device_id, old.sign_vk if old else None,
                                               old.role if old else p.Role.WORKER.value,
                                               old.unsigned_through if old else 0, cutoff, history=history)])
        vault = ctx.ws.vault
        assert vault is not None
        team = ctx.team_id()
        listing = client.devices()
        keyable, _stranded = self.keyable(listing, device_id)
        epoch = max(listing.current_epoch, max(vault.epochs)) + 1
        key, _ = vault.new_team_key(epoch)
        ctx.ws.add_epoch_key(epoch, key)
        wraps = [p.WrappedKey(epoch=epoch, device_id=dev.device_id,
                              wrapped=self.keys.grant(team, epoch, dev.device_id, p.b64d(dev.public_key), role))
                 for dev, role in keyable]
        client.upload_keys(p.KeysUpload(epoch=epoch, keys=wraps))
        self.keys.upload_kept_recovery()
        pinned = ctx.pinned()
        pinned.pop(device_id, None)
        ctx.set_json_secret("pinned", pinned)
        ctx.ws.set_sync_values(checkpoint_due=1)  # a checkpoint under the new key epoch
        return RevokeReport(epoch, tuple(w.device_id for w in wraps if w.device_id is not None))

    def retire(self, device_id: str) -> None:
        """Coordinator: ask a device to hand everything over and leave (the module says how)."""
        ctx = self.ctx
        self.authority.ensure()
        if device_id == ctx.ws.device_id:
            raise ValueError("a device cannot retire itself")
        old = self.roster.refresh().get(device_id)
        if old is None or old.cutoff is not None:
            raise ValueError("no active device with that id")
        self.roster.publish([self.roster.entry(device_id, old.sign_vk, old.role, old.unsigned_through, retire=True)])

    def retiring(self) -> list[str]:
        """Devices asked to retire that have not left yet (as this device knows the roster)."""
        return sorted(d for d, e in self.roster.roster().items() if e.retire and e.cutoff is None)

    def loss_preview(self, device_id: str) -> tuple[float | None, int]:
        """What revoking a device at once can lose: (when it last reached the server, None: never;
        the highest change number of it this device has seen). Everything it recorded after that
        moment is lost with it."""
        ctx = self.ctx
        listing = ctx.client().devices()
        last = next((d.last_seen for d in listing.devices if d.device_id == device_id), None)
        return last, ctx.seen(device_id)

    def asked_to_retire(self) -> bool:
        """A worker's device: whether the coordinator's signed roster asks it to hand over and
        leave (looked at once every `ROSTER_EVERY` seconds at most)."""
        ctx = self.ctx
        if ctx.authority_vk() is None or ctx.is_coordinator:
            return False
        now = time.time()
        if now - float(ctx.ws.sync_value("roster_checked", "0") or 0) < ctx.roster_every:
            return False
        entry = self.roster.refresh().get(ctx.ws.device_id)
        ctx.ws.set_sync_values(roster_checked=now)
        return entry is not None and entry.retire and entry.cutoff is None

    def hand_over(self) -> None:
        """Retired: push everything (with a last audit event saying so), then clear this device.
        A push that fails leaves everything here for the next try."""
        ctx = self.ctx
        ws = ctx.ws
        ws.audit(AuditAction.CHANGE, None, None, detail=self.HANDED_OVER + ws.device_id)
        self.pusher.push()
        if ws.outbox_count():
            raise Offline("Not everything could be sent yet; this device is cleared once it is.")
        log.warning("this device was retired by the coordinator: everything was sent; clearing local data")
        ctx.close()
        ws.wipe()
        raise DeviceRetired()

    def finish_retirements(self) -> int:
        """Coordinator: revoke each retiring device whose hand-over event has arrived. Returns
        how many were revoked."""
        ctx = self.ctx
        waiting = self.retiring()
        if not waiting:
            return 0
        done = {str(v.get("detail"))[len(self.HANDED_OVER):] for v in ctx.ws.index.records[RecordType.AUDIT].values()
                if str(v.get("detail") or "").startswith(self.HANDED_OVER)}
        finished = [d for d in waiting if d in done]
        for device_id in finished:
            self.revoke(device_id)
        return len(finished)
