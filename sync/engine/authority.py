"""The team's signed authority, and how a team of the previous version moves to it.

It owns the move of a coordinator's device to signed authority (make the team's signing key, sign
a roster, grant every epoch again, signed), a device of the previous version announcing its new
signing key, and the coordinator confirming such announces. It must never grant a key to a device
whose key this device did not verify itself, never make a second signing key for a team that has
one, and never confirm an announce that is not vouched for under the newest team key.
"""

from __future__ import annotations

import json
import logging

from models.storage.vault import RecoveryCode
from sync import protocol as p
from sync.engine.context import EngineContext
from sync.engine.keys import Keys
from sync.engine.roster import Roster, RosterEntry
from sync.errors import ProofMismatch

__all__ = ["Authority"]

log = logging.getLogger("outreach.sync.engine")


class Authority:
    """Signed authority for a team: made, announced to, confirmed."""

    def __init__(self, ctx: EngineContext, roster: Roster, keys: Keys) -> None:
        self.ctx = ctx
        self.roster = roster
        self.keys = keys

    def ensure(self) -> None:
        """A coordinator's device of a team made by the previous version: make the team's signing
        key, pin it, and grant every epoch again, signed and bound under the team keys, to every
        active device whose key this device verified itself; then the recovery code carries it.
        Unsigned purges up to this device's cursor are the previous version's."""
        ctx = self.ctx
        ws = ctx.ws
        vault = ws.vault
        assert vault is not None
        if vault.can_sign or not ctx.is_coordinator:
            return
        if ctx.authority_vk() is None:
            self.keys.refresh()  # another coordinator may have moved the team already: its grant, not a new key
        if ctx.authority_vk() is not None:
            return
        if ctx.client().roster().entries:
            raise ProofMismatch("The team already has a signing key that this device does not hold (a recovery code "
                                "older than it?). Nothing was changed: make a new recovery code on a coordinator's "
                                "device that has it.")
        ws.set_authority()
        ctx.pin_authority(vault.authority_vk, int(ws.sync_value("cursor", "0") or 0))
        team, me = ctx.team_id(), ws.device_id
        client = ctx.client()
        pinned = ctx.pinned()
        wraps: dict[int, list[p.WrappedKey]] = {}
        listing = client.devices()
        entries = []
        self.scan_seen()
        for dev in listing.devices:
            if dev.status == p.DeviceStatus.REVOKED:  # its history counts; nothing after it
                cutoff = ctx.seen(dev.device_id)
                entries.append(self.roster.entry(dev.device_id, None, p.Role.WORKER.value, cutoff=cutoff))
                continue
            if dev.status != p.DeviceStatus.ACTIVE:
                continue
            if pinned.get(dev.device_id) != dev.public_key:
                # admitted by another coordinator device: its ops count as the previous version's
                # did (refusing them would lose its records), but it gets no key from here
                log.warning("device %s: key not verified here; not given the signed keys", dev.device_id)
                entries.append(self.roster.entry(dev.device_id, None, p.Role.WORKER.value))
                continue
            role = p.Role.COORDINATOR.value if dev.device_id == me else p.Role.WORKER.value
            if dev.device_id == me:  # signs from its next op on
                through = int(ws.store.meta("device_seq", "0") or 0)
                entries.append(self.roster.entry(me, ws.ensure_signing_key(), role, through))
                ws.set_settings(signing_announced=1)
            else:  # does not sign until it announces its key
                entries.append(self.roster.entry(dev.device_id, None, role))
            for epoch in vault.epochs:
                wraps.setdefault(epoch, []).append(p.WrappedKey(epoch=epoch, device_id=dev.device_id, wrapped=(
                    self.keys.grant(team, epoch, dev.device_id, p.b64d(dev.public_key), role, team_bind=True))))
        self.roster.publish(entries)
        for epoch in sorted(wraps):
            client.upload_keys(p.KeysUpload(epoch=epoch, keys=wraps[epoch]))
        recovery = ws.secret("recovery")
        if recovery:
            self.keys.upload_recovery(RecoveryCode(recovery))
        log.info("the team moved to signed authority (%d devices)", len({k.device_id for ks in wraps.values() for k in ks}))

    def scan_seen(self) -> None:
        """Read the whole log once for the highest sequence of each device (what a revocation's
        cut-off is made of), without storing it: a coordinator of the previous version pulled its
        history before this device kept count."""
        ctx = self.ctx
        client, since = ctx.client(), 0
        highest: dict[str, int] = {}
        while True:
            page = client.pull(since, 5000)
            for o in page.ops:
                highest[o.device_id] = max(highest.get(o.device_id, 0), o.device_seq)
            since = page.next
            if not page.more:
                break
        ctx.ws.set_sync_values(**{f"seen:{dev}": seq for dev, seq in highest.items()
                                  if seq > ctx.seen(dev)})

    def announce(self) -> None:
        """A device admitted by the previous version: tell the coordinator its new signing key,
        vouched for under the newest team key (which the server does not hold). Ops up to the
        current device sequence went unsigned."""
        ctx = self.ctx
        ws, vault = ctx.ws, ctx.ws.vault
        assert vault is not None
        vk = ws.ensure_signing_key()
        epoch = max(vault.epochs)
        # the sequence of the first announce: what came after it was signed, whenever it is confirmed
        through = int(ws.setting("signing_through") or ws.store.meta("device_seq", "0") or 0)
        ws.set_settings(signing_through=through)
        team, me = ctx.team_id(), ws.device_id
        tag = vault.announce_mac(team, epoch, me, vk, through)
        ctx.client().announce_signing_key(p.SigningKeyAnnounce(
            signing_key=p.b64e(vk), announce=json.dumps({"epoch": epoch, "through": through, "mac": p.b64e(tag)})))
        entry = self.roster.refresh().get(me)
        if entry is not None and entry.sign_vk == vk:  # confirmed: no more announces
            ws.set_settings(signing_announced=1)

    def confirm_announced(self, listing: p.DeviceList) -> list[RosterEntry]:
        """Coordinator: roster entries for the devices of the previous version that announced a
        signing key, vouched for under this device's newest team key."""
        ctx = self.ctx
        vault = ctx.ws.vault
        assert vault is not None
        kept, pinned, roles = self.roster.roster(), ctx.pinned(), ctx.pinned_roles()
        team, newest = ctx.team_id(), max(vault.epochs)
        out = []
        for dev in listing.devices:
            if dev.status != p.DeviceStatus.ACTIVE or not dev.signing_key or not dev.announce:
                continue
            if pinned.get(dev.device_id) != dev.public_key:
                continue
            have = kept.get(dev.device_id)
            if have is not None and have.sign_vk is not None:
                continue
            try:
                said = json.loads(p.b64d(dev.announce))
                vk, through, epoch = p.b64d(dev.signing_key), int(said["through"]), int(said["epoch"])
                ok = epoch == newest and vault.check_announce(team, epoch, dev.device_id, vk, through,
                                                              p.b64d(said["mac"]))
            except (ValueError, KeyError, TypeError, RecursionError):  # the server's bytes, whatever they hold
                ok = False
            if not ok:
                log.warning("device %s: its announced signing key is not vouched for; not confirmed", dev.device_id)
                continue
            out.append(self.roster.entry(dev.device_id, vk, roles.get(dev.device_id, p.Role.WORKER.value), through))
        return out
