"""Enrolment: how a device comes into a team, and how a coordinator lets devices in.

It owns joining with a one-time code (the operator's code founds the team), recovering a
coordinator with the recovery code, making invites (their secret half stays here), and admitting
pending devices: each one's proof checked with the invite's secret kept here (and, when the team
wants it, its fingerprint compared by a person) before every key epoch is granted to it. It must
never grant a key to a device whose proof did not check, nor send an invite's secret to the server.
"""

from __future__ import annotations

import json
import logging
import platform

from models.storage.vault import RecoveryCode, SealError, fingerprint, make_proof, verify_proof
from sync import protocol as p
from sync.engine.authority import Authority
from sync.engine.context import EngineContext
from sync.engine.keys import Keys
from sync.engine.reports import JoinResult
from sync.engine.roster import Roster, RosterEntry
from sync.errors import ProofMismatch, SyncError

__all__ = ["Enrolment"]

log = logging.getLogger("outreach.sync.engine")


class Enrolment:
    """Join, recover, invite, admit."""

    def __init__(self, ctx: EngineContext, roster: Roster, keys: Keys, authority: Authority) -> None:
        self.ctx = ctx
        self.roster = roster
        self.keys = keys
        self.authority = authority

    # --------------------------------------------------------------- membership
    def join(self, url: str, code_text: str, *, device_name: str | None = None, allow_insecure: bool = False) -> JoinResult:
        """Join a team with a one-time code. With the operator's code this device founds the team:
        its key becomes the team key (epoch 1) and a recovery code is made."""
        ctx = self.ctx
        if ctx.joined:
            raise SyncError("This device is already in a team.")
        try:
            code = p.EnrollmentCode.parse(code_text)
        except ValueError as exc:
            raise SyncError(f"That is not a valid code: {exc}.") from None
        ws = ctx.ws
        device_id = ws.device_id
        public_key = ws.vault.public_key if ws.vault else b""
        signing_key = ws.ensure_signing_key()
        ctx.allow_insecure = ctx.allow_insecure or allow_insecure
        client = ctx.client(url)
        resp = client.join(p.JoinRequest(
            lookup=code.lookup, device_id=device_id,
            device_name=device_name or f"{platform.system() or 'device'} {device_id[:4]}",
            public_key=p.b64e(public_key), signing_key=p.b64e(signing_key),
            proof=p.b64e(make_proof(code.secret_bytes, public_key + signing_key, device_id)),
        ))
        ws.set_secret("token", resp.token.encode())
        # kept until the coordinator's first grant: the key that grant's signer is bound to
        ws.set_secret("join_code", code.secret_bytes)
        ws.set_settings(server_url=client.base_url, team_id=resp.team_id, team_name=resp.team_name,
                        role=resp.role.value, device_status=resp.status.value, signing_announced=1,
                        allow_insecure="1" if ctx.allow_insecure else None)
        result = JoinResult(resp.team_name, resp.role.value, resp.status.value, resp.founding, fingerprint(public_key))
        ctx.close()
        if resp.founding:
            # this device's own key becomes the team's key of epoch 1, and it makes the authority
            vault = ws.vault
            assert vault is not None
            ws.set_authority()
            ctx.pin_authority(vault.authority_vk, 0)
            ws.set_secret("join_code", None)
            coordinator = p.Role.COORDINATOR.value
            self.roster.publish([self.roster.entry(device_id, signing_key, coordinator)])
            ctx.client().upload_keys(p.KeysUpload(epoch=max(vault.epochs), keys=[
                p.WrappedKey(epoch=e, device_id=device_id,
                             wrapped=self.keys.grant(resp.team_id, e, device_id, public_key, coordinator))
                for e in vault.epochs
            ]))
            ctx.pin(device_id, p.b64e(public_key), coordinator)
            result.recovery_code = self.keys.new_recovery_code()
            ws.set_settings(device_status=p.DeviceStatus.ACTIVE.value)
        log.info("joined team %s as %s (%s)", resp.team_id, resp.role.value, resp.status.value)
        return result

    def recover(self, url: str, code_text: str, *, device_name: str | None = None,
                allow_insecure: bool = False) -> JoinResult:
        """A new coordinator device gets the team's keys back with the recovery code."""
        ctx = self.ctx
        if ctx.joined:
            raise SyncError("This device is already in a team.")
        try:
            code = RecoveryCode.parse(code_text)
        except ValueError as exc:
            raise SyncError(f"That is not a valid recovery code: {exc}.") from None
        ws = ctx.ws
        assert ws.vault is not None
        ctx.allow_insecure = ctx.allow_insecure or allow_insecure
        client = ctx.client(url)
        resp = client.recover(p.RecoverRequest(
            recovery_lookup=p.b64e(code.lookup), device_id=ws.device_id,
            device_name=device_name or f"{platform.system() or 'device'} {ws.device_id[:4]}",
            public_key=p.b64e(ws.vault.public_key),
        ))
        try:
            opened = {k.epoch: code.unwrap(resp.team_id, k.epoch, p.b64d(k.wrapped)) for k in resp.recovery_keys}
        except (SealError, ValueError) as exc:
            raise ProofMismatch("The recovery code does not open the team's keys.") from exc
        if not opened or any(len(secret) not in (32, 64) for secret in opened.values()):
            raise ProofMismatch("The recovery code does not open the team's keys.")
        keys = {epoch: secret[:32] for epoch, secret in opened.items()}
        seeds = {secret[32:] for secret in opened.values() if len(secret) == 64}
        ws.set_secret("token", resp.token.encode())
        ws.set_secret("recovery", code.secret)
        ws.set_settings(server_url=client.base_url, team_id=resp.team_id, team_name=resp.team_name,
                        role=resp.role.value, device_status=p.DeviceStatus.ACTIVE.value,
                        allow_insecure="1" if ctx.allow_insecure else None)
        ws.adopt_team_keys(keys, max(keys))
        if len(seeds) == 1:  # the team's authority, restored; none: a team of the previous version
            ws.set_authority(seeds.pop())
            ctx.pin_authority(ws.vault.authority_vk, 0)
        ctx.close()
        me = ws.device_id
        pub = ws.vault.public_key
        ws.set_settings(signing_announced=1)
        if ctx.can_sign():
            self.roster.publish([self.roster.entry(me, ws.ensure_signing_key(), p.Role.COORDINATOR.value)])
        for epoch in sorted(keys):
            wrapped = (self.keys.grant(resp.team_id, epoch, me, pub, p.Role.COORDINATOR.value) if ctx.can_sign()
                       else p.b64e(ws.vault.wrap_for_device(resp.team_id, epoch, me, pub)))
            ctx.client().upload_keys(p.KeysUpload(epoch=epoch, keys=[p.WrappedKey(
                epoch=epoch, device_id=me, wrapped=wrapped)]))
        ctx.pin(me, p.b64e(pub), p.Role.COORDINATOR.value)
        return JoinResult(resp.team_name, resp.role.value, "active", False, fingerprint(pub))

    # ----------------------------------------------------------------- invites
    def invite(self, role: p.Role = p.Role.WORKER, expires_in: int = 24 * 3600) -> str:
        """Coordinator: a one-time code for a new device. Its secret half stays on this device."""
        ws = self.ctx.ws
        code = p.EnrollmentCode.generate()
        kept = {"s": code.secret, "role": role.value, "exp": ws.now() + expires_in}
        ws.set_secret(f"invite:{code.lookup}", json.dumps(kept).encode())
        self.ctx.client().invite(p.InviteRequest(lookup=code.lookup, role=role, expires_in_seconds=expires_in))
        return str(code)

    def _invite(self, lookup: str) -> tuple[bytes, str, float] | None:
        """(secret, invited role, expiry) of an invite made here. An invite kept by the previous
        version holds only its secret: taken as a worker's, never expiring here."""
        raw = self.ctx.ws.secret(f"invite:{lookup}")
        if raw is None:
            return None
        try:
            kept = json.loads(raw)
            return kept["s"].encode("ascii"), str(kept["role"]), float(kept["exp"])
        except (ValueError, KeyError, TypeError, AttributeError):
            return raw, p.Role.WORKER.value, float("inf")

    def _invites(self) -> list[str]:
        return [name[len("invite:"):] for name in self.ctx.ws.secret_names("invite:")]

    def forget_expired_invites(self) -> int:
        """Drop the secrets of invites past their expiry: nobody can join with them any more."""
        ws = self.ctx.ws
        now, dropped = ws.now(), 0
        for lookup in self._invites():
            found = self._invite(lookup)
            if found is not None and found[2] <= now:
                ws.set_secret(f"invite:{lookup}", None)
                dropped += 1
        return dropped

    def open_invites(self) -> int:
        """Invites made here that can still be used."""
        now = self.ctx.ws.now()
        return sum(1 for lookup in self._invites() if (found := self._invite(lookup)) and found[2] > now)

    # --------------------------------------------------- compare before admitting (optional)
    @property
    def confirms_devices(self) -> bool:
        """Whether this coordinator admits a device only after someone compared its fingerprint."""
        return self.ctx.ws.setting("confirm_devices") == "1"

    def set_confirms_devices(self, on: bool) -> None:
        self.ctx.ws.set_settings(confirm_devices="1" if on else None)

    def confirm_device(self, device_id: str, fingerprint_seen: str) -> None:
        """Coordinator: the fingerprint on the joining device's screen is `fingerprint_seen`; when
        it is the one the server lists for that pending device, the next admission lets it in.
        Raises ProofMismatch when they differ (a key swapped on the way: it is not let in)."""
        listing = self.ctx.client().devices()
        dev = next((d for d in listing.devices if d.device_id == device_id), None)
        if dev is None or dev.status != p.DeviceStatus.PENDING:
            raise SyncError("No device waiting to be let in has that id.")
        shown = "".join(fingerprint_seen.split()).upper()
        if shown != "".join(self.fingerprints(listing)[device_id].split()):
            raise ProofMismatch("The fingerprints differ: this is not the key of the device in your hand. "
                                "It was not let in.")
        self.ctx.ws.set_secret(f"approved:{device_id}", b"1")

    def awaiting_confirmation(self, listing: p.DeviceList) -> list[str]:
        """Pending devices invited from here that wait for their fingerprint to be compared."""
        if not self.confirms_devices:
            return []
        ws = self.ctx.ws
        return [d.device_id for d in listing.devices if d.status == p.DeviceStatus.PENDING and d.invite_lookup
                and self._invite(d.invite_lookup) is not None and ws.secret(f"approved:{d.device_id}") is None]

    def fingerprints(self, listing: p.DeviceList) -> dict[str, str]:
        """Each listed device's fingerprint, the figure its own screen shows: compare before trusting."""
        return {d.device_id: fingerprint(p.b64d(d.public_key)) for d in listing.devices}

    # ----------------------------------------------------------------- admission
    def admit_pending(self) -> tuple[int, int]:
        """Coordinator: check each pending device's proof with the code's secret kept here; wrap
        every team key epoch for those that pass, reject those that fail. (admitted, rejected)"""
        ctx = self.ctx
        ws = ctx.ws
        self.authority.ensure()
        self.forget_expired_invites()
        listing = ctx.client().devices()
        vault = ws.vault
        assert vault is not None
        team = ctx.team_id()
        wraps: dict[int, list[p.WrappedKey]] = {}
        rejected: list[str] = []
        entries: list[RosterEntry] = []
        for dev in listing.devices:
            if dev.status != p.DeviceStatus.PENDING or not dev.invite_lookup:
                continue
            invite = self._invite(dev.invite_lookup)
            if invite is None:
                continue  # invited from another coordinator device (that one admits it), or expired
            secret, role, _expires = invite
            public_key = p.b64d(dev.public_key)
            signing_key = p.b64d(dev.signing_key) if dev.signing_key else None
            if not verify_proof(secret, public_key + (signing_key or b""), dev.device_id, p.b64d(dev.proof)):
                log.warning("device %s: proof does not match its public key; refused", dev.device_id)
                rejected.append(dev.device_id)
                continue
            if self.confirms_devices and ws.secret(f"approved:{dev.device_id}") is None:
                continue  # waits until someone compared its fingerprint (`confirm_device`)
            ws.set_secret(f"approved:{dev.device_id}", None)
            if dev.role.value != role:  # the server's word; the signed grant carries the invited role
                log.warning("device %s: the server names another role than it was invited for; granted as invited",
                            dev.device_id)
            for epoch in vault.epochs:
                wraps.setdefault(epoch, []).append(p.WrappedKey(
                    epoch=epoch, device_id=dev.device_id,
                    wrapped=self.keys.grant(team, epoch, dev.device_id, public_key, role, invite_secret=secret)))
            ctx.pin(dev.device_id, dev.public_key, role)
            entries.append(self.roster.entry(dev.device_id, signing_key, role))
            ws.set_secret(f"invite:{dev.invite_lookup}", None)
        # the roster first: a device can write only once it has a key, and its ops then check
        self.roster.publish(entries + self.authority.confirm_announced(listing))
        client = ctx.client()
        for n, epoch in enumerate(sorted(wraps)):
            client.upload_keys(p.KeysUpload(epoch=epoch, keys=wraps[epoch], reject=rejected if n == 0 else []))
        if rejected and not wraps:
            client.upload_keys(p.KeysUpload(epoch=max(vault.epochs), keys=[], reject=rejected))
        admitted = len({k.device_id for ks in wraps.values() for k in ks})
        return admitted, len(rejected)
