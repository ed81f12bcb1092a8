"""The sync engine: one workspace + one client -> team membership and sync runs.

It owns the team lifecycle on a device (join, invite, verify and admit devices, revoke with a new
key epoch, recover, erase) and the sync run: push the outbox in batches, pull pages by cursor and
store each page, still sealed, with its cursor in one local transaction (so that a run cut at any
point resumes where it stopped), then fold the stored ops into the rows. It keeps the sync status
that the chip in the UI shows. Keys never leave the vault except wrapped for a device whose proof
this coordinator checked itself, in a grant signed by the team's authority key; a device adopts a
key only from such a grant, never overwrites a key it holds, and applies only signed purges
(docs/SECURITY.md).
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
import threading
import time
import uuid
import zlib
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import requests

from models.storage.vault import (
    Grant,
    GrantError,
    RecoveryCode,
    SealError,
    Vault,
    fingerprint,
    make_proof,
    open_statement,
    verify_proof,
    verify_purge,
    verify_signature,
)
from models.workspace import RemoteOp, Workspace

from . import protocol as p
from .checkpoint import (
    PART_BYTES,
    CheckpointError,
    Manifest,
    frame_meta,
    frame_rows,
    frame_states,
    manifest_body,
    read_manifest,
    read_part,
    split_rows,
)
from .client import EncodedBody, SyncClient
from .errors import (
    DeviceRetired,
    DeviceRevoked,
    KeyRefused,
    NotJoined,
    Offline,
    ProofMismatch,
    Rejected,
    RevocationUnproven,
    StaleEpoch,
    SyncError,
    WouldStrand,
)
from .gaps import Gaps, Statement

__all__ = ["SyncEngine", "SyncStatus", "SyncReport", "JoinResult", "Progress", "RevokeReport", "WouldStrand"]

log = logging.getLogger("outreach.sync.engine")

Progress = Callable[[str, int, int], None]  # (phase, done, total); total 0 when unknown


@dataclass
class SyncStatus:
    joined: bool
    role: str | None
    device_status: str | None
    pending_ops: int
    last_success: float | None
    last_error: str | None
    server_url: str | None
    history_pending: bool = False  # a checkpoint's first tier taken, the older history still on its way


@dataclass
class SyncReport:
    pushed: int = 0
    pulled: int = 0
    applied: int = 0
    set_aside: int = 0
    purged: int = 0
    erased_late: int = 0  # records of erased persons that arrived late, purged on the server
    retired: int = 0  # devices that handed over and were revoked
    admitted: int = 0
    rejected: int = 0
    pending: bool = False
    from_checkpoint: int = 0  # rows a new device took from a checkpoint instead of replaying the log
    resent: int = 0  # acknowledged ops sent again: the server had lost them (a restore from an older backup)
    checkpoint: CheckpointReport | None = None  # one this coordinator wrote


@dataclass(frozen=True)
class CheckpointReport:
    """A checkpoint written: its id, the log position it holds the state up to, parts, bytes."""

    checkpoint_id: str
    seq: int
    parts: int
    size: int


@dataclass(frozen=True)
class RosterEntry:
    """The coordinator's signed word on one device: its signing key (None: a device of the
    previous version that does not sign yet, whose ops are taken as that version took them), the
    device sequence up to which its ops may come unsigned, and, once revoked, the last sequence
    of it that counts."""

    device_id: str
    sign_vk: bytes | None
    role: str
    unsigned_through: int
    cutoff: int | None
    n: int  # when the coordinator issued it (ms): an older entry never replaces a newer one
    retire: bool = False  # asked to hand everything over and leave (`SyncEngine.retire`)
    # its X25519 key (b64) as the admitting coordinator verified it: every coordinator, a second or
    # a recovered one too, wraps new key epochs for the devices the roster vouches for
    pub: str | None = None
    # once revoked: (statements, SHA-256 chain) of its history as the revoking coordinator saw the
    # whole log (`gaps.Gaps.history`): a device that saw the whole log too can tell a rewritten one
    history: tuple[int, str] | None = None

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"sign_vk": p.b64e(self.sign_vk) if self.sign_vk else None, "role": self.role,
                                  "unsigned_through": self.unsigned_through, "cutoff": self.cutoff, "n": self.n}
        if self.retire:
            out["retire"] = True
        if self.pub:
            out["pub"] = self.pub
        if self.history is not None:
            out["history"] = [self.history[0], self.history[1]]
        return out

    @classmethod
    def from_json(cls, device_id: str, d: dict[str, object]) -> RosterEntry:
        vk, cutoff = d.get("sign_vk"), d.get("cutoff")
        return cls(device_id, p.b64d(vk) if isinstance(vk, str) else None, str(d.get("role") or "worker"),
                   int(d.get("unsigned_through") or 0),  # type: ignore[call-overload]
                   cutoff if isinstance(cutoff, int) else None, int(d.get("n") or 0),  # type: ignore[call-overload]
                   d.get("retire") is True, _key32(d.get("pub")), _history(d.get("history")))


def _history(value: object) -> tuple[int, str] | None:
    if (isinstance(value, list) and len(value) == 2 and isinstance(value[0], int) and not isinstance(value[0], bool)
            and value[0] >= 0 and isinstance(value[1], str) and len(value[1]) in (0, 64)):
        return value[0], value[1]
    return None


def _key32(value: object) -> str | None:
    """A b64 32-byte key from a roster entry, or None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        return value if len(p.b64d(value)) == 32 else None
    except ValueError:
        return None


@dataclass(frozen=True)
class RevokeReport:
    """A revoke's outcome: the new epoch and the devices that got its key (ids)."""

    epoch: int
    keyed: tuple[str, ...]


@dataclass
class JoinResult:
    team_name: str
    role: str
    status: str
    founding: bool
    fingerprint: str
    recovery_code: str | None = None


class SyncEngine:
    def __init__(
        self,
        ws: Workspace,
        *,
        session: requests.Session | None = None,
        allow_insecure: bool = False,
        client_factory: Callable[..., SyncClient] = SyncClient,
        push_ops: int = p.MAX_PUSH_OPS,
        push_bytes: int = p.MAX_PUSH_BYTES,
        pull_limit: int = 1000,
    ) -> None:
        self.ws = ws
        self._session = session
        self._allow_insecure = allow_insecure
        self._factory = client_factory
        self.push_ops = push_ops
        self.push_bytes = push_bytes
        self.pull_limit = pull_limit
        self._client: SyncClient | None = None
        self._run_lock = threading.Lock()  # one sync run at a time per device
        self._roster_tried: set[str] = set()  # devices the server's roster was read for in this pull
        self._held_through: int | None = None  # the last pull page's word on what the server holds of this device

    # ------------------------------------------------------------------ plumbing
    def client(self, url: str | None = None, token: str | None = None) -> SyncClient:
        if url is not None:
            return self._factory(url, token=token, session=self._session, allow_insecure=self._allow_insecure)
        if self._client is None:
            server = self.ws.setting("server_url")
            secret = self.ws.secret("token")
            if not server or not secret:
                raise NotJoined()
            allow = self._allow_insecure or self.ws.setting("allow_insecure") == "1"
            self._client = self._factory(server, token=secret.decode(), session=self._session, allow_insecure=allow)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def joined(self) -> bool:
        return self.ws.setting("team_id") is not None

    @property
    def is_coordinator(self) -> bool:
        return self.ws.setting("role") == p.Role.COORDINATOR.value

    def ping(self) -> None:
        """Is the server there? One small request (SyncError when it is not reachable)."""
        self.client().health()

    def status(self) -> SyncStatus:
        last = self.ws.sync_value("last_success")
        return SyncStatus(
            joined=self.joined, role=self.ws.setting("role"), device_status=self.ws.setting("device_status"),
            pending_ops=self.ws.pending_changes(), last_success=float(last) if last else None,
            last_error=self.ws.sync_value("last_error") or None, server_url=self.ws.setting("server_url"),
            history_pending=self.ws.history_pending(),
        )

    def _team_id(self) -> str:
        team = self.ws.setting("team_id")
        if team is None:
            raise NotJoined()
        return team

    def _json_secret(self, name: str) -> dict[str, Any]:
        """A small JSON object kept as a secret (wrapped by the master key); {} when there is none."""
        raw = self.ws.secret(name)
        return json.loads(raw) if raw else {}

    def _set_json_secret(self, name: str, value: dict[str, Any]) -> None:
        self.ws.set_secret(name, json.dumps(value).encode())

    def _seen(self, device_id: str) -> int:
        """The highest device sequence of `device_id` this device has stored (`Workspace.receive`)."""
        return int(self.ws.sync_value(f"seen:{device_id}", "0") or 0)

    def _pinned(self) -> dict[str, str]:
        """Devices this coordinator admitted after checking their proof: id -> public key (b64)."""
        return self._json_secret("pinned")

    def _pin(self, device_id: str, public_key_b64: str, role: str = p.Role.WORKER.value) -> None:
        pinned = self._pinned()
        pinned[device_id] = public_key_b64
        self._set_json_secret("pinned", pinned)
        roles = self._pinned_roles()
        roles[device_id] = role
        self._set_json_secret("pinned_roles", roles)

    def _pinned_roles(self) -> dict[str, str]:
        """The role each pinned device was invited for (a device missing here: a worker)."""
        return self._json_secret("pinned_roles")

    # --------------------------------------------------------------- authority
    def authority_vk(self) -> bytes | None:
        """The team's verification key as pinned here (None: a team of the previous version that
        has not moved to signed authority yet)."""
        return self.ws.secret("authority_vk")

    def can_sign(self) -> bool:
        """Whether this device holds the team's signing key (a coordinator's device)."""
        return self.ws.vault is not None and self.ws.vault.can_sign

    def _pin_authority(self, vk: bytes, purges_unsigned_through: int) -> None:
        self.ws.set_secret("authority_vk", vk)
        self.ws.set_secret("purges_unsigned_through", str(purges_unsigned_through).encode())

    def _purges_unsigned_through(self) -> int:
        raw = self.ws.secret("purges_unsigned_through")
        return int(raw) if raw else 0

    def _grant(self, team: str, epoch: int, device_id: str, public_key: bytes, role: str, **bind: object) -> str:
        vault = self.ws.vault
        assert vault is not None
        return p.b64e(vault.make_grant(team, epoch, device_id, public_key, role=role,
                                       purges_unsigned_through=self._purges_unsigned_through(),
                                       cutoffs=self.cutoffs(), **bind))  # type: ignore[arg-type]

    def _ensure_authority(self) -> None:
        """A coordinator's device of a team made by the previous version: make the team's signing
        key, pin it, and grant every epoch again, signed and bound under the team keys, to every
        active device whose key this device verified itself; then the recovery code carries it.
        Unsigned purges up to this device's cursor are the previous version's."""
        vault = self.ws.vault
        assert vault is not None
        if vault.can_sign or not self.is_coordinator:
            return
        if self.authority_vk() is None:
            self.refresh_keys()  # another coordinator may have moved the team already: its grant, not a new key
        if self.authority_vk() is not None:
            return
        if self.client().roster().entries:
            raise ProofMismatch("The team already has a signing key that this device does not hold (a recovery code "
                                "older than it?). Nothing was changed: make a new recovery code on a coordinator's "
                                "device that has it.")
        self.ws.set_authority()
        self._pin_authority(vault.authority_vk, int(self.ws.sync_value("cursor", "0") or 0))
        team, me = self._team_id(), self.ws.device_id
        client = self.client()
        pinned = self._pinned()
        wraps: dict[int, list[p.WrappedKey]] = {}
        listing = client.devices()
        entries = []
        self._scan_seen()
        for dev in listing.devices:
            if dev.status == p.DeviceStatus.REVOKED:  # its history counts; nothing after it
                cutoff = self._seen(dev.device_id)
                entries.append(self._entry(dev.device_id, None, p.Role.WORKER.value, cutoff=cutoff))
                continue
            if dev.status != p.DeviceStatus.ACTIVE:
                continue
            if pinned.get(dev.device_id) != dev.public_key:
                # admitted by another coordinator device: its ops count as the previous version's
                # did (refusing them would lose its records), but it gets no key from here
                log.warning("device %s: key not verified here; not given the signed keys", dev.device_id)
                entries.append(self._entry(dev.device_id, None, p.Role.WORKER.value))
                continue
            role = p.Role.COORDINATOR.value if dev.device_id == me else p.Role.WORKER.value
            if dev.device_id == me:  # signs from its next op on
                through = int(self.ws.store.meta("device_seq", "0") or 0)
                entries.append(self._entry(me, self.ws.ensure_signing_key(), role, through))
                self.ws.set_settings(signing_announced=1)
            else:  # does not sign until it announces its key
                entries.append(self._entry(dev.device_id, None, role))
            for epoch in vault.epochs:
                wraps.setdefault(epoch, []).append(p.WrappedKey(epoch=epoch, device_id=dev.device_id, wrapped=self._grant(
                    team, epoch, dev.device_id, p.b64d(dev.public_key), role, team_bind=True)))
        self._publish_roster(entries)
        for epoch in sorted(wraps):
            client.upload_keys(p.KeysUpload(epoch=epoch, keys=wraps[epoch]))
        recovery = self.ws.secret("recovery")
        if recovery:
            self._upload_recovery(RecoveryCode(recovery))
        log.info("the team moved to signed authority (%d devices)", len({k.device_id for ks in wraps.values() for k in ks}))

    # ------------------------------------------------------------------ roster
    def roster(self) -> dict[str, RosterEntry]:
        """The devices as the coordinator signed them, as kept here (verified when they came)."""
        return {d: RosterEntry.from_json(d, e) for d, e in self._json_secret("roster").items()}

    def _keep_roster(self, entries: dict[str, RosterEntry]) -> None:
        self._set_json_secret("roster", {d: e.to_json() for d, e in entries.items()})

    def cutoffs(self) -> dict[str, int]:
        """Revoked devices and the last device sequence of each that counts, from signed grants."""
        return self._json_secret("cutoffs")

    def refresh_roster(self) -> dict[str, RosterEntry]:
        """Read the server's roster and keep each entry the team's authority signed for this team
        that is newer than the one kept; a forged entry becomes a notice."""
        vk = self.authority_vk()
        kept = self.roster()
        if vk is None:
            return kept
        team = self._team_id()
        changed = False
        for e in self.client().roster().entries:
            try:
                body = open_statement(vk, "roster", p.b64d(e.entry))
                if body.get("team") != team or body.get("device") != e.device_id:
                    raise GrantError("an entry of another device or team")
                entry = RosterEntry.from_json(e.device_id, body)
            except (SealError, ValueError, TypeError):
                self.ws.add_notice("roster_refused", None, e.device_id, "a device entry the coordinator did not sign")
                continue
            old = kept.get(e.device_id)
            if old is None or entry.n > old.n:
                kept[e.device_id] = entry
                changed = True
        if changed:
            self._keep_roster(kept)
        return kept

    def _roster_out(self, entry: RosterEntry) -> p.RosterEntryOut:
        vault = self.ws.vault
        assert vault is not None
        body = {"v": 2, "team": self._team_id(), "device": entry.device_id, **entry.to_json()}
        return p.RosterEntryOut(device_id=entry.device_id, entry=p.b64e(vault.sign_statement("roster", body)))

    def _publish_roster(self, entries: list[RosterEntry]) -> None:
        """Sign and upload roster entries (before the keys that let those devices write)."""
        if not entries:
            return
        self.client().upload_roster(p.RosterUpload(entries=[self._roster_out(e) for e in entries]))
        kept = self.roster()
        kept.update({e.device_id: e for e in entries})
        self._keep_roster(kept)

    def _entry(self, device_id: str, sign_vk: bytes | None, role: str, unsigned_through: int = 0,
               cutoff: int | None = None, *, retire: bool = False,
               history: tuple[int, str] | None = None) -> RosterEntry:
        return RosterEntry(device_id, sign_vk, role, unsigned_through, cutoff, int(self.ws.now() * 1000), retire,
                           self._verified_pub(device_id), history)

    def _verified_pub(self, device_id: str) -> str | None:
        """A device's X25519 key as a coordinator verified it: its own, one this coordinator
        pinned at admission, else one the roster signed."""
        vault = self.ws.vault
        if device_id == self.ws.device_id and vault is not None:
            return p.b64e(vault.public_key)
        pinned = self._pinned().get(device_id)
        if pinned:
            return pinned
        old = self.roster().get(device_id)
        return old.pub if old else None

    def _complete_roster(self) -> None:
        """Coordinator: roster entries of the previous version name no X25519 key; sign them
        again with the keys pinned here, so that every coordinator can key those devices."""
        if self.authority_vk() is None or self.ws.vault is None or not self.ws.vault.can_sign:
            return
        pinned = self._pinned()
        stale = [e for e in self.roster().values() if e.pub is None and e.cutoff is None
                 and (e.device_id in pinned or e.device_id == self.ws.device_id)]
        if stale:
            self._publish_roster([self._entry(e.device_id, e.sign_vk, e.role, e.unsigned_through, retire=e.retire)
                                  for e in stale])

    def _announce(self) -> None:
        """A device admitted by the previous version: tell the coordinator its new signing key,
        vouched for under the newest team key (which the server does not hold). Ops up to the
        current device sequence went unsigned."""
        ws, vault = self.ws, self.ws.vault
        assert vault is not None
        vk = ws.ensure_signing_key()
        epoch = max(vault.epochs)
        # the sequence of the first announce: what came after it was signed, whenever it is confirmed
        through = int(ws.setting("signing_through") or ws.store.meta("device_seq", "0") or 0)
        ws.set_settings(signing_through=through)
        team, me = self._team_id(), ws.device_id
        tag = vault.announce_mac(team, epoch, me, vk, through)
        self.client().announce_signing_key(p.SigningKeyAnnounce(
            signing_key=p.b64e(vk), announce=json.dumps({"epoch": epoch, "through": through, "mac": p.b64e(tag)})))
        entry = self.refresh_roster().get(me)
        if entry is not None and entry.sign_vk == vk:  # confirmed: no more announces
            ws.set_settings(signing_announced=1)

    def _confirm_announced(self, listing: p.DeviceList) -> list[RosterEntry]:
        """Coordinator: roster entries for the devices of the previous version that announced a
        signing key, vouched for under this device's newest team key."""
        vault = self.ws.vault
        assert vault is not None
        kept, pinned, roles = self.roster(), self._pinned(), self._pinned_roles()
        team, newest = self._team_id(), max(vault.epochs)
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
            out.append(self._entry(dev.device_id, vk, roles.get(dev.device_id, p.Role.WORKER.value), through))
        return out

    # --------------------------------------------------- compare before admitting (optional)
    @property
    def confirms_devices(self) -> bool:
        """Whether this coordinator admits a device only after someone compared its fingerprint."""
        return self.ws.setting("confirm_devices") == "1"

    def set_confirms_devices(self, on: bool) -> None:
        self.ws.set_settings(confirm_devices="1" if on else None)

    def confirm_device(self, device_id: str, fingerprint_seen: str) -> None:
        """Coordinator: the fingerprint on the joining device's screen is `fingerprint_seen`; when
        it is the one the server lists for that pending device, the next admission lets it in.
        Raises ProofMismatch when they differ (a key swapped on the way: it is not let in)."""
        listing = self.client().devices()
        dev = next((d for d in listing.devices if d.device_id == device_id), None)
        if dev is None or dev.status != p.DeviceStatus.PENDING:
            raise SyncError("No device waiting to be let in has that id.")
        shown = "".join(fingerprint_seen.split()).upper()
        if shown != "".join(self.fingerprints(listing)[device_id].split()):
            raise ProofMismatch("The fingerprints differ: this is not the key of the device in your hand. "
                                "It was not let in.")
        self.ws.set_secret(f"approved:{device_id}", b"1")

    def awaiting_confirmation(self, listing: p.DeviceList) -> list[str]:
        """Pending devices invited from here that wait for their fingerprint to be compared."""
        if not self.confirms_devices:
            return []
        return [d.device_id for d in listing.devices if d.status == p.DeviceStatus.PENDING and d.invite_lookup
                and self._invite(d.invite_lookup) is not None and self.ws.secret(f"approved:{d.device_id}") is None]

    def _scan_seen(self) -> None:
        """Read the whole log once for the highest sequence of each device (what a revocation's
        cut-off is made of), without storing it: a coordinator of the previous version pulled its
        history before this device kept count."""
        client, since = self.client(), 0
        highest: dict[str, int] = {}
        while True:
            page = client.pull(since, 5000)
            for o in page.ops:
                highest[o.device_id] = max(highest.get(o.device_id, 0), o.device_seq)
            since = page.next
            if not page.more:
                break
        self.ws.set_sync_values(**{f"seen:{dev}": seq for dev, seq in highest.items()
                                   if seq > self._seen(dev)})

    def fingerprints(self, listing: p.DeviceList) -> dict[str, str]:
        """Each listed device's fingerprint, the figure its own screen shows: compare before trusting."""
        return {d.device_id: fingerprint(p.b64d(d.public_key)) for d in listing.devices}

    # ----------------------------------------------------------------- invites
    def _invite(self, lookup: str) -> tuple[bytes, str, float] | None:
        """(secret, invited role, expiry) of an invite made here. An invite kept by the previous
        version holds only its secret: taken as a worker's, never expiring here."""
        raw = self.ws.secret(f"invite:{lookup}")
        if raw is None:
            return None
        try:
            kept = json.loads(raw)
            return kept["s"].encode("ascii"), str(kept["role"]), float(kept["exp"])
        except (ValueError, KeyError, TypeError, AttributeError):
            return raw, p.Role.WORKER.value, float("inf")

    def _invites(self) -> list[str]:
        return [name[len("invite:"):] for name in self.ws.secret_names("invite:")]

    def forget_expired_invites(self) -> int:
        """Drop the secrets of invites past their expiry: nobody can join with them any more."""
        now, dropped = self.ws.now(), 0
        for lookup in self._invites():
            found = self._invite(lookup)
            if found is not None and found[2] <= now:
                self.ws.set_secret(f"invite:{lookup}", None)
                dropped += 1
        return dropped

    def open_invites(self) -> int:
        """Invites made here that can still be used."""
        now = self.ws.now()
        return sum(1 for lookup in self._invites() if (found := self._invite(lookup)) and found[2] > now)

    # --------------------------------------------------------------- membership
    def join(self, url: str, code_text: str, *, device_name: str | None = None, allow_insecure: bool = False) -> JoinResult:
        """Join a team with a one-time code. With the operator's code this device founds the team:
        its key becomes the team key (epoch 1) and a recovery code is made."""
        if self.joined:
            raise SyncError("This device is already in a team.")
        try:
            code = p.EnrollmentCode.parse(code_text)
        except ValueError as exc:
            raise SyncError(f"That is not a valid code: {exc}.") from None
        ws = self.ws
        device_id = ws.device_id
        public_key = ws.vault.public_key if ws.vault else b""
        signing_key = ws.ensure_signing_key()
        self._allow_insecure = self._allow_insecure or allow_insecure
        client = self.client(url)
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
                        allow_insecure="1" if self._allow_insecure else None)
        result = JoinResult(resp.team_name, resp.role.value, resp.status.value, resp.founding, fingerprint(public_key))
        self.close()
        if resp.founding:
            # this device's own key becomes the team's key of epoch 1, and it makes the authority
            vault = ws.vault
            assert vault is not None
            ws.set_authority()
            self._pin_authority(vault.authority_vk, 0)
            ws.set_secret("join_code", None)
            coordinator = p.Role.COORDINATOR.value
            self._publish_roster([self._entry(device_id, signing_key, coordinator)])
            self.client().upload_keys(p.KeysUpload(epoch=max(vault.epochs), keys=[
                p.WrappedKey(epoch=e, device_id=device_id,
                             wrapped=self._grant(resp.team_id, e, device_id, public_key, coordinator))
                for e in vault.epochs
            ]))
            self._pin(device_id, p.b64e(public_key), coordinator)
            result.recovery_code = self.new_recovery_code()
            ws.set_settings(device_status=p.DeviceStatus.ACTIVE.value)
        log.info("joined team %s as %s (%s)", resp.team_id, resp.role.value, resp.status.value)
        return result

    def new_recovery_code(self) -> str:
        """Make (or replace) the team's recovery code: the team keys wrapped under it go to the server."""
        code = RecoveryCode.generate()
        self.ws.set_secret("recovery", code.secret)
        self._upload_recovery(code)
        self.ws.set_settings(recovery_made_at=time.time())
        return str(code)

    def recovery_status(self) -> dict[str, object]:
        """What the desk shows about the recovery code (never the code itself)."""
        made = self.ws.setting("recovery_made_at")
        return {"on_this_device": self.ws.secret("recovery") is not None,
                "made_at": float(made) if made else None,
                "epochs_covered": self.ws.vault.epochs if self.ws.vault else []}

    def _upload_recovery(self, code: RecoveryCode) -> None:
        vault = self.ws.vault
        assert vault is not None
        team = self._team_id()
        seed = vault.authority_seed if vault.can_sign else b""
        self.client().upload_recovery(p.RecoveryUpload(
            recovery_lookup=p.b64e(code.lookup),
            keys=[p.WrappedKey(epoch=e, wrapped=p.b64e(code.wrap(team, e, vault.team_key(e), seed)))
                  for e in vault.epochs],
        ))

    def recover(self, url: str, code_text: str, *, device_name: str | None = None,
                allow_insecure: bool = False) -> JoinResult:
        """A new coordinator device gets the team's keys back with the recovery code."""
        if self.joined:
            raise SyncError("This device is already in a team.")
        try:
            code = RecoveryCode.parse(code_text)
        except ValueError as exc:
            raise SyncError(f"That is not a valid recovery code: {exc}.") from None
        ws = self.ws
        assert ws.vault is not None
        self._allow_insecure = self._allow_insecure or allow_insecure
        client = self.client(url)
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
                        allow_insecure="1" if self._allow_insecure else None)
        ws.adopt_team_keys(keys, max(keys))
        if len(seeds) == 1:  # the team's authority, restored; none: a team of the previous version
            ws.set_authority(seeds.pop())
            self._pin_authority(ws.vault.authority_vk, 0)
        self.close()
        me = ws.device_id
        pub = ws.vault.public_key
        ws.set_settings(signing_announced=1)
        if self.can_sign():
            self._publish_roster([self._entry(me, ws.ensure_signing_key(), p.Role.COORDINATOR.value)])
        for epoch in sorted(keys):
            wrapped = (self._grant(resp.team_id, epoch, me, pub, p.Role.COORDINATOR.value) if self.can_sign()
                       else p.b64e(ws.vault.wrap_for_device(resp.team_id, epoch, me, pub)))
            self.client().upload_keys(p.KeysUpload(epoch=epoch, keys=[p.WrappedKey(
                epoch=epoch, device_id=me, wrapped=wrapped)]))
        self._pin(me, p.b64e(pub), p.Role.COORDINATOR.value)
        return JoinResult(resp.team_name, resp.role.value, "active", False, fingerprint(pub))

    def invite(self, role: p.Role = p.Role.WORKER, expires_in: int = 24 * 3600) -> str:
        """Coordinator: a one-time code for a new device. Its secret half stays on this device."""
        code = p.EnrollmentCode.generate()
        kept = {"s": code.secret, "role": role.value, "exp": self.ws.now() + expires_in}
        self.ws.set_secret(f"invite:{code.lookup}", json.dumps(kept).encode())
        self.client().invite(p.InviteRequest(lookup=code.lookup, role=role, expires_in_seconds=expires_in))
        return str(code)

    def devices(self) -> p.DeviceList:
        return self.client().devices()

    def admit_pending(self) -> tuple[int, int]:
        """Coordinator: check each pending device's proof with the code's secret kept here; wrap
        every team key epoch for those that pass, reject those that fail. (admitted, rejected)"""
        self._ensure_authority()
        self.forget_expired_invites()
        listing = self.client().devices()
        vault = self.ws.vault
        assert vault is not None
        team = self._team_id()
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
            if self.confirms_devices and self.ws.secret(f"approved:{dev.device_id}") is None:
                continue  # waits until someone compared its fingerprint (`confirm_device`)
            self.ws.set_secret(f"approved:{dev.device_id}", None)
            if dev.role.value != role:  # the server's word; the signed grant carries the invited role
                log.warning("device %s: the server names another role than it was invited for; granted as invited",
                            dev.device_id)
            for epoch in vault.epochs:
                wraps.setdefault(epoch, []).append(p.WrappedKey(
                    epoch=epoch, device_id=dev.device_id,
                    wrapped=self._grant(team, epoch, dev.device_id, public_key, role, invite_secret=secret)))
            self._pin(dev.device_id, dev.public_key, role)
            entries.append(self._entry(dev.device_id, signing_key, role))
            self.ws.set_secret(f"invite:{dev.invite_lookup}", None)
        # the roster first: a device can write only once it has a key, and its ops then check
        self._publish_roster(entries + self._confirm_announced(listing))
        client = self.client()
        for n, epoch in enumerate(sorted(wraps)):
            client.upload_keys(p.KeysUpload(epoch=epoch, keys=wraps[epoch], reject=rejected if n == 0 else []))
        if rejected and not wraps:
            client.upload_keys(p.KeysUpload(epoch=max(vault.epochs), keys=[], reject=rejected))
        admitted = len({k.device_id for ks in wraps.values() for k in ks})
        return admitted, len(rejected)

    def revoke(self, device_id: str) -> int:
        """Coordinator: revoke a device and start a new key epoch for the devices that remain.
        Returns the new epoch."""
        return self.revoke_with_report(device_id).epoch

    def _keyable(self, listing: p.DeviceList, leaving: str) -> tuple[list[tuple[p.DevicePublic, str]], list[str]]:
        """The active devices that will get a new epoch (each with its role) and those that
        cannot: no coordinator verified their key (neither pinned here nor in the signed roster),
        or the listed key differs from the verified one."""
        pinned = self._pinned()
        roles = self._pinned_roles()
        roster = self.refresh_roster()
        ok: list[tuple[p.DevicePublic, str]] = []
        stranded: list[str] = []
        for dev in listing.devices:
            if dev.status != p.DeviceStatus.ACTIVE or dev.device_id == leaving:
                continue
            entry = roster.get(dev.device_id)
            if dev.device_id == self.ws.device_id:
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
        self._ensure_authority()
        client = self.client()
        _ok, stranded = self._keyable(client.devices(), device_id)
        if stranded and not strand:
            raise WouldStrand(stranded)
        client.revoke(device_id)
        # everything it wrote before the server shut it out, then its signed cut-off: its ops after
        # that, or relayed later under an old key, count nowhere (and the new epoch's grants say so)
        self.pull(fold=False)
        cutoff = self._seen(device_id)
        kept = self.ws.sync_value("gaps")  # and its history as this device saw it, when it saw the whole log
        history = Gaps.from_json(kept).history(device_id) if kept else None
        cutoffs = self.cutoffs()
        cutoffs[device_id] = cutoff
        self._set_json_secret("cutoffs", cutoffs)
        old = self.roster().get(device_id)
        self._publish_roster([self._entry(device_id, old.sign_vk if old else None,
                                          old.role if old else p.Role.WORKER.value,
                                          old.unsigned_through if old else 0, cutoff, history=history)])
        vault = self.ws.vault
        assert vault is not None
        team = self._team_id()
        listing = client.devices()
        keyable, _stranded = self._keyable(listing, device_id)
        epoch = max(listing.current_epoch, max(vault.epochs)) + 1
        key, _ = vault.new_team_key(epoch)
        self.ws.add_epoch_key(epoch, key)
        wraps = [p.WrappedKey(epoch=epoch, device_id=dev.device_id,
                              wrapped=self._grant(team, epoch, dev.device_id, p.b64d(dev.public_key), role))
                 for dev, role in keyable]
        client.upload_keys(p.KeysUpload(epoch=epoch, keys=wraps))
        recovery = self.ws.secret("recovery")
        if recovery:
            self._upload_recovery(RecoveryCode(recovery))
        pinned = self._pinned()
        pinned.pop(device_id, None)
        self._set_json_secret("pinned", pinned)
        self.ws.set_sync_values(checkpoint_due=1)  # a checkpoint under the new key epoch
        return RevokeReport(epoch, tuple(w.device_id for w in wraps if w.device_id is not None))

    # ------------------------------------------------------------------ retire
    # Two ways for a device to leave. `revoke` is for a lost or stolen one: at once, and whatever
    # it did not sync is lost (`loss_preview` says since when). `retire` is for one still in hand:
    # the coordinator signs a roster entry asking it to leave; the device's next sync pushes
    # everything it holds, writes an audit event saying it handed over, and clears itself; the
    # coordinator's next sync after that event revokes it (a new key epoch, as for any revoke).
    # The server cannot forge the request (signed) and hiding it only delays the retirement.
    ROSTER_EVERY = 60.0  # seconds between two looks at this device's own roster entry
    HANDED_OVER = "device retired: "  # the audit detail of a retired device's last word, + its id

    def retire(self, device_id: str) -> None:
        """Coordinator: ask a device to hand everything over and leave (see above)."""
        self._ensure_authority()
        if device_id == self.ws.device_id:
            raise ValueError("a device cannot retire itself")
        old = self.refresh_roster().get(device_id)
        if old is None or old.cutoff is not None:
            raise ValueError("no active device with that id")
        self._publish_roster([self._entry(device_id, old.sign_vk, old.role, old.unsigned_through, retire=True)])

    def retiring(self) -> list[str]:
        """Devices asked to retire that have not left yet (as this device knows the roster)."""
        return sorted(d for d, e in self.roster().items() if e.retire and e.cutoff is None)

    def loss_preview(self, device_id: str) -> tuple[float | None, int]:
        """What revoking a device at once can lose: (when it last reached the server, None: never;
        the highest change number of it this device has seen). Everything it recorded after that
        moment is lost with it."""
        listing = self.client().devices()
        last = next((d.last_seen for d in listing.devices if d.device_id == device_id), None)
        return last, self._seen(device_id)

    def _asked_to_retire(self) -> bool:
        if self.authority_vk() is None or self.is_coordinator:
            return False
        now = time.time()
        if now - float(self.ws.sync_value("roster_checked", "0") or 0) < self.ROSTER_EVERY:
            return False
        entry = self.refresh_roster().get(self.ws.device_id)
        self.ws.set_sync_values(roster_checked=now)
        return entry is not None and entry.retire and entry.cutoff is None

    def _hand_over(self) -> None:
        """Retired: push everything (with a last audit event saying so), then clear this device.
        A push that fails leaves everything here for the next try."""
        from models.domain.vocab import AuditAction

        ws = self.ws
        ws.audit(AuditAction.CHANGE, None, None, detail=self.HANDED_OVER + ws.device_id)
        self.push()
        if ws.outbox_count():
            raise Offline("Not everything could be sent yet; this device is cleared once it is.")
        log.warning("this device was retired by the coordinator: everything was sent; clearing local data")
        self.close()
        ws.wipe()
        raise DeviceRetired()

    def finish_retirements(self) -> int:
        """Coordinator: revoke each retiring device whose hand-over event has arrived. Returns
        how many were revoked."""
        from models.domain.vocab import RecordType

        waiting = self.retiring()
        if not waiting:
            return 0
        done = {str(v.get("detail"))[len(self.HANDED_OVER):] for v in self.ws.index.records[RecordType.AUDIT].values()
                if str(v.get("detail") or "").startswith(self.HANDED_OVER)}
        finished = [d for d in waiting if d in done]
        for device_id in finished:
            self.revoke(device_id)
        return len(finished)

    def erase_person(self, person_id: str) -> int:
        """Coordinator: purge a person and their contacts and follow-ups on the server and here;
        leaves an audit record of the erasure that holds no personal data. Returns records erased."""
        from models.domain.vocab import AuditAction, RecordType

        self._ensure_authority()
        ids = self.ws.person_record_ids(person_id)
        vault = self.ws.vault
        assert vault is not None
        team = self._team_id()
        self.client().purge(ids, [vault.sign_purge(team, rid) for rid in ids])
        self.ws.erase_local(ids)
        self.ws.audit(AuditAction.ERASE, RecordType.PERSON, person_id, detail=f"{len(ids)} records")
        self.ws.set_sync_values(checkpoint_due=1)  # the server dropped the checkpoints that held them
        return len(ids)

    # ------------------------------------------------------------------ keys
    def refresh_keys(self) -> bool:
        """Fetch this device's key grants and adopt what they hold: the team's keys on first
        receipt, new epochs later. A key is adopted only from a grant signed by the team's
        authority (docs/SECURITY.md); an unsigned or forged one, or a second key for an epoch held
        here, changes nothing: it becomes a notice and `KeyRefused`. Returns True when the device
        is (now) active."""
        ws = self.ws
        vault = ws.vault
        assert vault is not None
        resp = self.client().keys()
        mine = [k for k in resp.keys if k.device_id in (None, ws.device_id)]
        if not mine:
            me = self.client().me()
            ws.set_settings(device_status=me.status.value)
            if me.status == p.DeviceStatus.REJECTED:
                raise ProofMismatch("The coordinator's device refused this device: its key did not match the "
                                    "code it joined with. Ask the coordinator for a new code.")
            return False
        team = self._team_id()
        active = ws.setting("device_status") == p.DeviceStatus.ACTIVE.value
        pinned_vk = self.authority_vk()
        join_secret = ws.secret("join_code")
        grants: dict[int, Grant] = {}
        for k in sorted(mine, key=lambda k: k.epoch):
            try:
                blob = p.b64d(k.wrapped)
            except ValueError:
                self._refuse_key(k.epoch, "a malformed grant", changed=False)
            try:
                grant = vault.open_grant(team, k.epoch, blob, pinned_vk=pinned_vk, invite_secret=join_secret,
                                         team_bind=active)
            except SealError as exc:  # GrantError, or a wrap that does not open
                held = active and ws.has_epoch(k.epoch)
                if held and _legacy_wrap_of(vault, team, k.epoch, blob) == vault.team_key(k.epoch):
                    continue  # the previous version's unsigned copy of a key held here: changes nothing
                self._refuse_key(k.epoch, str(exc), changed=held)
            if active and ws.has_epoch(k.epoch) and vault.team_key(k.epoch) != grant.key:
                self._refuse_key(k.epoch, "a second key for an epoch held here", changed=True)
            pinned_vk = grant.vk
            grants[k.epoch] = grant
        if not grants:
            return active
        newest = grants[max(grants)]
        if self.authority_vk() is None:
            self._pin_authority(newest.vk, newest.purges_unsigned_through)
        kept = self.cutoffs()
        cutoffs = dict(kept)
        for grant in grants.values():
            for dev, cut in grant.cutoffs.items():
                cutoffs.setdefault(dev, cut)
        if cutoffs != kept:
            self._set_json_secret("cutoffs", cutoffs)
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

    def _refuse_key(self, epoch: int, why: str, *, changed: bool) -> NoReturn:
        self.ws.add_notice("key_refused", None, None, f"epoch {epoch}: {why}")
        log.warning("a team key for epoch %d refused: %s", epoch, why)
        raise KeyRefused(KeyRefused.CHANGED if changed else KeyRefused.UNSIGNED, changed=changed)

    # ------------------------------------------------------------------ sync run
    def exclusive(self) -> threading.Lock:
        """The lock a sync run holds: a coordinator's action that changes keys or the device list
        (admit, revoke, erase) takes it too, so that it never interleaves with a background run.
        Take it before any lock of the caller's own (a run takes the UI's lock inside it)."""
        return self._run_lock

    def sync(self, progress: Progress | None = None, *, wait: float = 0.0) -> SyncReport:
        """One sync run: admit pending devices (coordinator), push everything, pull everything.
        Wipes the local data when the server says this device was revoked."""
        with self._run_lock:
            try:
                report = self._sync(progress, wait)
            except DeviceRevoked as exc:
                if not self._revocation_signed(exc):
                    self.ws.add_notice("revocation_unproven", None, self.ws.device_id,
                                       "the server said this device was revoked, without the coordinator's word")
                    unproven = RevocationUnproven()
                    self.ws.set_sync_values(last_error=str(unproven), last_error_at=time.time())
                    raise unproven from None
                log.warning("this device was revoked: wiping local data")
                self.close()
                self.ws.wipe()
                raise
            except SyncError as exc:
                if self.ws.unlocked:
                    self.ws.set_sync_values(last_error=str(exc), last_error_at=time.time())
                raise
            self.ws.set_sync_values(last_success=time.time(), last_error="")
            return report

    def _revocation_signed(self, exc: DeviceRevoked) -> bool:
        """Whether the coordinator signed this device's revocation (its roster entry with a
        cut-off, sent along by the server). A team without signed authority takes the server's
        word, as the previous version did."""
        vk = self.authority_vk()
        if vk is None:
            return True
        blob = exc.detail.get("revocation")
        if not isinstance(blob, str):
            return False
        try:
            body = open_statement(vk, "roster", p.b64d(blob))
        except (SealError, ValueError):
            return False
        return (body.get("team") == self._team_id() and body.get("device") == self.ws.device_id
                and isinstance(body.get("cutoff"), int))

    def _sync(self, progress: Progress | None, wait: float) -> SyncReport:
        report = SyncReport()
        ws = self.ws
        if not self.joined:
            raise NotJoined()
        if ws.setting("device_status") != p.DeviceStatus.ACTIVE.value and not self.refresh_keys():
            report.pending = True
            return report
        self.fold(progress)  # what a run cut short left behind: local work, also offline
        if self.authority_vk() is None:
            if self.is_coordinator:  # a team of the previous version: the log's end first, then sign
                self.pull(progress)
                self._ensure_authority()
            else:
                self.refresh_keys()  # the coordinator may have moved the team to signed authority
        if self.authority_vk() is not None and not self.ws.setting("signing_announced"):
            self._announce()  # a device of the previous version: from now on it signs its pushes
        if self.is_coordinator:
            report.admitted, report.rejected = self.admit_pending()
            self._complete_roster()
        report.pushed = self.push(progress)
        report.from_checkpoint = self._bootstrap(progress)
        pulled = self.pull(progress, wait=wait)
        report.pulled, report.applied, report.set_aside, report.purged = pulled
        if self._held_through is not None and self._held_through < ws.pushed_through():
            # the server lost ops it had acknowledged (restored from an older backup): send them again
            report.resent, lost = ws.resend_lost(self._held_through)
            ws.add_notice("lost_on_server", None, ws.device_id,
                          f"the server had lost {report.resent + lost} changes of this device: {report.resent} sent "
                          f"again" + (f", {lost} could not be (too old)" if lost else ""))
            report.pushed += self.push(progress)
        report.erased_late = self.purge_late()
        if self.is_coordinator:
            report.retired = self.finish_retirements()
        elif self._asked_to_retire():
            self._hand_over()
        if self.can_sign():
            try:
                report.checkpoint = self.make_checkpoint()
            except SyncError as exc:  # a checkpoint is a courtesy to new devices: the sync itself went well
                log.warning("no checkpoint written: %s", exc)
        return report

    # ------------------------------------------------------------------ checkpoints (issue 17)
    # A new device need not replay the team's whole log: a coordinator's device writes the team's
    # state up to a log position S as sealed parts (`sync/checkpoint.py`: its sealed rows as they
    # are, and the ids and counters beside them), signs a manifest of their hashes with the team's
    # authority, and the server keeps them blind. A device with nothing pulled yet takes the newest
    # one it can check, then pulls the log from S on. A part that is not what the signed manifest
    # says, a manifest the authority did not sign, or a checkpoint older than one it saw, is
    # refused and the device replays the log instead: never a half-taken checkpoint.
    CHECKPOINT_EVERY = 5000  # log entries since the last checkpoint that make a coordinator write one
    CHECKPOINT_PART_BYTES = PART_BYTES  # sealed rows per part

    def make_checkpoint(self, *, force: bool = False) -> CheckpointReport | None:
        """Coordinator: write a checkpoint of the team's state up to this device's cursor, when the
        log moved `CHECKPOINT_EVERY` entries since the last one, or an erasure dropped the last one
        or a revocation made a new key epoch (`checkpoint_due`), or `force`; and only when the rows
        are exactly the fold of the log up to the cursor (`Workspace.checkpoint_ready`). Else None."""
        if not self.can_sign():
            raise SyncError("Only a coordinator's device writes checkpoints.")
        ws, vault = self.ws, self.ws.vault
        assert vault is not None
        cursor = int(ws.sync_value("cursor", "0") or 0)
        last = int(ws.sync_value("checkpoint_made", "0") or 0)
        due = last > 0 and ws.sync_value("checkpoint_due") == "1"  # keep a team's checkpoint fresh
        if cursor == 0 or (cursor == last and not due) or (not force and not due
                                                            and cursor - last < self.CHECKPOINT_EVERY):
            return None
        if not ws.checkpoint_ready():
            return None
        team, epoch = self._team_id(), max(vault.epochs)
        checkpoint_id = uuid.uuid4().hex
        size = self.CHECKPOINT_PART_BYTES
        street, rest = ws.checkpoint_rows()
        # the first tier: what makes a new device usable in the street; then the rest
        datas = [frame_meta(ws.checkpoint_meta()), *frame_states(street, size)]
        tier = len(datas)
        datas += [frame_rows(group) for group in split_rows(rest, size)]
        sealed = [vault.seal_checkpoint_part(team, checkpoint_id, cursor, n, epoch, data)
                  for n, data in enumerate(datas, 1)]
        manifest = vault.sign_statement("checkpoint", manifest_body(team, checkpoint_id, cursor, epoch, sealed,
                                                                    int(ws.now() * 1000), tier))
        client = self.client()
        client.put_checkpoint(p.CheckpointIn(id=checkpoint_id, seq=cursor, epoch=epoch, parts=len(sealed),
                                             manifest=p.b64e(manifest)))
        for n, blob in enumerate(sealed, 1):
            client.put_checkpoint_part(checkpoint_id, n, blob)
        ws.set_sync_values(checkpoint_made=cursor, checkpoint_due=0)
        log.info("checkpoint %s written: log position %d, %d parts, %d bytes", checkpoint_id, cursor, len(sealed),
                 sum(map(len, sealed)))
        return CheckpointReport(checkpoint_id, cursor, len(sealed), sum(map(len, sealed)))

    def _staging(self, checkpoint_id: str | None = None) -> Path:
        root = self.ws.data_dir / "checkpoint"
        return root / checkpoint_id if checkpoint_id else root

    def _bootstrap(self, progress: Progress | None = None) -> int:
        """A device that has pulled nothing yet takes the newest checkpoint it can check and
        continues from its log position: the rows taken (0: none, the log is replayed)."""
        ws = self.ws
        vk = self.authority_vk()
        if vk is None or int(ws.sync_value("cursor", "0") or 0) != 0 or ws.vault is None:
            return 0
        team, floor = self._team_id(), int(ws.sync_value("checkpoint_floor", "0") or 0)
        pending = ws.sync_value("checkpoint_pending")  # its first tier taken, the rest on its way
        client = self.client()
        listing = client.checkpoints().checkpoints
        if pending and pending not in {c.id for c in listing}:
            # gone meanwhile (a purge, a newer one): the log, merged onto the rows of that first tier
            ws.set_sync_values(checkpoint_pending="")
            shutil.rmtree(self._staging(), ignore_errors=True)
            return 0
        for listed in listing:
            if listed.epoch not in ws.vault.epochs or (pending and listed.id != pending):
                continue
            try:
                manifest = read_manifest(open_statement(vk, "checkpoint", p.b64d(listed.manifest)))
                if (manifest.team_id, manifest.checkpoint_id, manifest.seq, manifest.epoch, len(manifest.parts)) != (
                        team, listed.id, listed.seq, listed.epoch, listed.parts):
                    raise CheckpointError("a checkpoint listed as another than its manifest says")
                if manifest.seq < floor:
                    raise CheckpointError("a checkpoint older than one this device took")
                return self._take_checkpoint(client, manifest, progress, first_taken=bool(pending))
            except (GrantError, CheckpointError, ValueError) as exc:
                ws.add_notice("checkpoint_refused", None, None, f"checkpoint {listed.id} refused: {exc}")
                shutil.rmtree(self._staging(listed.id), ignore_errors=True)
                if pending:  # the rest of one whose first tier was taken: the log, merged onto it
                    ws.set_sync_values(checkpoint_pending="")
                    return 0
            except Rejected as exc:
                if exc.code != p.ErrorCode.NOT_FOUND:
                    raise
                shutil.rmtree(self._staging(listed.id), ignore_errors=True)  # dropped meanwhile: the next one
        return 0

    def _fetch_parts(self, client: SyncClient, manifest: Manifest, first: int, last: int,
                     progress: Progress | None) -> None:
        """Parts `first`..`last` on disk, each checked against the manifest (a cut transfer
        resumes from the parts it has)."""
        staging = self._staging(manifest.checkpoint_id)
        for n in range(first, last + 1):
            path = staging / f"{n}.part"
            if path.exists():
                try:
                    manifest.check(n, path.read_bytes())
                    continue
                except CheckpointError:
                    path.unlink()
            blob = client.checkpoint_part(manifest.checkpoint_id, n)
            manifest.check(n, blob)
            path.write_bytes(blob)
            if progress:
                progress("checkpoint", n, len(manifest.parts))

    def _open_parts(self, manifest: Manifest, first: int, last: int) -> tuple[dict[str, Any] | None, bytes,
                                                                              list[tuple[str, str, int, bytes]]]:
        """(meta, states, rows) of parts `first`..`last`, every one checked and opened."""
        vault = self.ws.vault
        assert vault is not None
        staging = self._staging(manifest.checkpoint_id)
        meta: dict[str, Any] | None = None
        rows: list[tuple[str, str, int, bytes]] = []
        states: list[bytes] = []
        for n in range(first, last + 1):
            blob = (staging / f"{n}.part").read_bytes()
            manifest.check(n, blob)
            try:
                data = vault.open_checkpoint_part(manifest.team_id, manifest.checkpoint_id, manifest.seq, n,
                                                  manifest.epoch, blob)
            except SealError:
                raise CheckpointError(f"part {n} does not open under the team key") from None
            part = read_part(data)
            if (n == 1) != (part.kind == "meta"):
                raise CheckpointError("part 1 is the checkpoint's meta, and only part 1")
            if (part.kind == "states") != (1 < n <= manifest.tier):
                raise CheckpointError("the first tier holds the meta and the street's states, and only it")
            meta = part.meta if part.meta is not None else meta
            states.append(part.states)
            rows.extend(part.rows)
        return meta, b"".join(states), rows

    def _take_checkpoint(self, client: SyncClient, manifest: Manifest, progress: Progress | None, *,
                         first_taken: bool = False) -> int:
        """Fetch, check and take the first tier (what a worker needs in the street: the device is
        usable from then on), then the rest, each tier in one transaction. The cursor moves to the
        checkpoint's position only once both are in: until then the device pulls no log."""
        ws = self.ws
        staging = self._staging(manifest.checkpoint_id)
        staging.mkdir(parents=True, exist_ok=True)
        for other in self._staging().iterdir():
            if other != staging:
                shutil.rmtree(other, ignore_errors=True)
        total, tier = len(manifest.parts), manifest.tier
        taken = 0
        if not first_taken:
            self._fetch_parts(client, manifest, 1, tier, progress)
            meta, states, rows = self._open_parts(manifest, 1, tier)
            if meta is None:
                raise CheckpointError("a checkpoint without its meta part")
            done = tier == total
            values: dict[str, str | int] = (
                {"cursor": manifest.seq, "checkpoint_floor": manifest.seq} if done
                else {"checkpoint_pending": manifest.checkpoint_id, "checkpoint_meta": json.dumps(meta)})
            try:
                taken = ws.adopt_checkpoint(rows, meta, values, states=states or None)
            except (zlib.error, ValueError, TypeError) as exc:  # signed, yet not well formed: a bug, never taken
                raise CheckpointError(f"the first tier is not well formed: {exc}") from None
            log.info("checkpoint %s: first tier taken, %d rows", manifest.checkpoint_id, taken)
            if progress:
                progress("usable", taken, total)  # the device can be used from here on
            if done:
                shutil.rmtree(staging, ignore_errors=True)
                return taken
        self._fetch_parts(client, manifest, tier + 1, total, progress)
        _meta, _states, rows = self._open_parts(manifest, tier + 1, total)
        meta = json.loads(ws.sync_value("checkpoint_meta") or "{}")
        taken += ws.adopt_checkpoint(rows, meta, {"cursor": manifest.seq, "checkpoint_floor": manifest.seq,
                                                  "checkpoint_pending": "", "checkpoint_meta": ""})
        shutil.rmtree(staging, ignore_errors=True)
        log.info("checkpoint %s taken: log position %d", manifest.checkpoint_id, manifest.seq)
        return taken

    def purge_late(self) -> int:
        """Purge on the server the records of erased persons that reached this device after the
        erasure (a contact written offline, a follow-up pulled later): every device dropped them
        on arrival; the coordinator's device signs their purge, and the erasure's audit record
        says how many went late. A worker's device cannot sign: it forgets its list (the
        coordinator's device meets the same records). Returns the records purged."""
        ws = self.ws
        late = ws.late_erased()
        if not late:
            return 0
        vault = ws.vault
        if not self.is_coordinator or vault is None or not vault.can_sign:
            ws.forget_late_erased(late)
            return 0
        from models.domain.vocab import AuditAction, RecordType

        team = self._team_id()
        ids = sorted(late)
        for start in range(0, len(ids), self.PURGE_CHUNK):
            chunk = ids[start:start + self.PURGE_CHUNK]
            self.client().purge(chunk, [vault.sign_purge(team, rid) for rid in chunk])
        with ws.store.atomic():
            for person_id, n in sorted(Counter(late.values()).items()):
                ws.audit(AuditAction.ERASE, RecordType.PERSON, person_id, detail=f"{n} records removed late")
            ws.forget_late_erased(ids)
            ws.set_sync_values(checkpoint_due=1)
        return len(ids)

    PURGE_CHUNK = 5000

    ACK_EVERY = 10  # answered batches dropped from the outbox in one local commit

    def push(self, progress: Progress | None = None) -> int:
        """Push the outbox in batches, one request in flight at a time. Meanwhile a second thread
        encodes and compresses the next batch (zlib lets go of the GIL) and this one drops
        answered batches from the outbox, so the device works while the server does. The local
        ack is taken every `ACK_EVERY` batches and when the push ends, in whatever way: ops the
        server has but the outbox still holds are only pushed again, as duplicates."""
        client = self.client()
        total = self.ws.outbox_count()
        done = 0
        stale_retries = 0
        acked = unflushed = 0

        def flush() -> None:
            nonlocal unflushed
            if unflushed:
                unflushed = 0
                self.ws.ack(acked)

        def start(body: Future[EncodedBody | p.PushRequest] | None) -> Future[p.PushResponse] | None:
            return sender.submit(lambda: client.push(body.result())) if body is not None else None

        vault = self.ws.vault
        signer = vault.sign_as_device if vault is not None and vault.has_signing_key else None
        team, me = self._team_id(), self.ws.device_id
        acked = self.ws.pushed_through()  # what this push accounts for starts after it

        def encode(ops: list[tuple[int, str, str, int, bytes]],
                   first: int) -> Future[EncodedBody | p.PushRequest] | None:
            return encoder.submit(_push_body, client, ops, team, me, signer, first) if ops else None

        try:
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="outreach-push") as sender, \
                    ThreadPoolExecutor(max_workers=1, thread_name_prefix="outreach-push-encode") as encoder:
                batch = self.ws.outbox_batch(self.push_ops, self.push_bytes)
                sending = start(encode(batch, acked + 1))
                while sending is not None:
                    following = self.ws.outbox_batch(self.push_ops, self.push_bytes, batch[-1][0])
                    body = encode(following, batch[-1][0] + 1)  # while the server stores this batch
                    try:
                        resp = sending.result()
                    except StaleEpoch:
                        stale_retries += 1
                        if stale_retries > 3:
                            raise
                        flush()
                        self.refresh_keys()  # moves the queued ops to the new epoch
                        batch = self.ws.outbox_batch(self.push_ops, self.push_bytes)
                        sending = start(encode(batch, acked + 1))
                        continue
                    except Rejected as exc:
                        bad = _bad_op_index(exc, len(batch))
                        if bad is None:
                            raise
                        log.warning("op %s refused by the server (%s); set aside", batch[bad][1], exc.code)
                        flush()
                        self.ws.set_aside_outgoing(batch[bad][0], f"refused by the server: {exc}")
                        batch = self.ws.outbox_batch(self.push_ops, self.push_bytes)
                        sending = start(encode(batch, acked + 1))
                        continue
                    if resp.acked_through < batch[-1][0]:
                        raise Offline("The server acknowledged less than was sent; will retry.")
                    if resp.purged_records:  # changes of erased records: the worker is told, not silent
                        erased = set(resp.purged_records)
                        for seq, _op_id, rid, _epoch, _payload in batch:
                            if rid in erased:
                                self.ws.add_notice("erased_edit", rid, self.ws.device_id,
                                                   f"change {seq} of this device was not kept: the record was erased")
                    sending = start(body)
                    acked, unflushed = resp.acked_through, unflushed + 1
                    if unflushed >= self.ACK_EVERY:
                        flush()
                    done += len(batch)
                    if progress:
                        progress("push", done, total)
                    batch = following
        finally:
            flush()
        return done

    def pull(self, progress: Progress | None = None, *, wait: float = 0.0,
             fold: bool = True) -> tuple[int, int, int, int]:
        """Pull every page after the stored cursor, then fold what came. The next pages are fetched
        while this one is stored; each page lands in the inbox, still sealed, with its cursor in
        one local transaction, so a run cut anywhere resumes at the last stored page and the
        device needs the network only as long as the transfer takes. `fold=False` leaves the
        folding to `fold()`. (pulled, applied, set aside, purged)"""
        client = self.client()
        cursor = int(self.ws.sync_value("cursor", "0") or 0)
        pulled = purged = 0
        self._held_through = None
        limit = self.pull_limit
        self._roster_tried = set()
        checked: dict[int, frozenset[tuple[str, bytes]]] = {}  # batches of this pull: id -> digests its device signed
        gaps = Gaps.from_json(self.ws.sync_value("gaps"), since=cursor) if self.authority_vk() is not None else None
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="outreach-pull") as pool:
            # (since, page) requests in flight, oldest first. A page's `since` is the last one's
            # `next`, known only once it is read; while a full page of `limit` entries is being
            # stored, the one after the next is asked for on the guess that the log has no gap
            # there (a purge leaves one). A guessed page is used only if its `since` turns out to
            # be the cursor it was meant to follow; else it is dropped and asked for again.
            ahead: deque[tuple[int, Future[bytes]]] = deque(
                [(cursor, pool.submit(client.pull_body, cursor, limit, wait))])
            while True:
                since, request = ahead.popleft()
                page = client.parse_pull(request.result())  # here: the fetching threads do I/O only
                self._held_through = page.held_through
                if page.next < cursor:
                    raise Offline("The server's cursor went backwards; not applied.")
                if page.more:
                    while ahead and ahead[0][0] != page.next:  # a wrong guess
                        ahead.popleft()[1].cancel()
                    if not ahead:
                        ahead.append((page.next, pool.submit(client.pull_body, page.next, limit, 0.0)))
                    if len(ahead) == 1 and page.next - since == limit:
                        guess = page.next + limit
                        ahead.append((guess, pool.submit(client.pull_body, guess, limit, 0.0)))
                if page.current_epoch > max(self.ws.vault.epochs if self.ws.vault else [0]):
                    self.refresh_keys()
                ops = [RemoteOp(o.op_id, o.device_id, o.device_seq, o.record_id, o.key_epoch, p.b64d(o.payload))
                       for o in page.ops]
                accepted, refused = self._check_purges(page.purges, since, page.next)
                ops, refused_ops = self._check_ops(page, ops, checked, since, gaps)
                values: dict[str, str | int] = {}
                if gaps is not None:
                    gaps.purged(accepted)
                    values["gaps"] = gaps.to_json()
                # other devices' ops (this device's own come back too, and are dropped)
                pulled += self.ws.receive(ops, purges=accepted, refused_purges=refused, refused_ops=refused_ops,
                                          cursor=("cursor", page.next), values=values)
                cursor = page.next
                purged += len(page.purges)
                if progress:
                    progress("pull", pulled, 0)
                if not page.more:
                    for _, extra in ahead:
                        extra.cancel()
                    break
        if gaps is not None:
            self._report_missing(gaps)
        applied, set_aside = self.fold(progress) if fold else (0, 0)
        return pulled, applied, set_aside, purged

    def _report_missing(self, gaps: Gaps) -> None:
        """Caught up with the log: every other device's sequence that its statements cover is in,
        or erased by a signed purge, or the server withheld it. Each device's withheld changes
        become a notice (ids and sequences only), as does a revoked device's history that is not
        the one its coordinator signed."""
        erased, roster = self.ws.erased_ids(), self.roster()

        def from_start(device_id: str) -> bool:  # it signed from its first op: its sequence is owed from 1
            entry = roster.get(device_id)
            return entry is not None and entry.sign_vk is not None and entry.unsigned_through == 0

        for missing in gaps.missing(erased.__contains__, from_start):
            log.warning("device %s: %d changes did not arrive (%s)", missing.device_id, missing.count,
                        missing.describe())
            self.ws.add_notice("missing_ops", None, missing.device_id,
                               f"{missing.count} changes of this device did not arrive: {missing.describe()}")
        for device_id, entry in self.roster().items():
            seen = gaps.history(device_id)
            if entry.history is None or seen is None or device_id == self.ws.device_id:
                continue
            if seen != entry.history:
                self.ws.add_notice("history_differs", None, device_id,
                                   f"the server showed {seen[0]} pushes of this device, not the {entry.history[0]} "
                                   "its coordinator signed at its revocation, or other ones")

    def _check_ops(self, page: p.PullResponse, ops: list[RemoteOp], checked: dict[int, frozenset[tuple[str, bytes]]],
                   since: int = 0, gaps: Gaps | None = None) -> tuple[list[RemoteOp], list[tuple[RemoteOp, str, str]]]:
        """The ops of a page that their device wrote, as far as this device can tell, and the
        others with (notice kind, reason). An op counts when its device's signed push holds its
        digest, or when its device does not sign yet (the previous version) or its sequence is
        from before it signed; never after the device's revocation cut-off, and never from a
        device the coordinator did not admit. A team without signed authority takes every op."""
        if self.authority_vk() is None or not (ops or page.batches):
            return ops, []
        team, me = self._team_id(), self.ws.device_id
        digest_of = [p.op_digest(op.payload) for op in ops]
        by_batch: dict[int, list[p.Entry]] = {}
        for op, out, digest in zip(ops, page.ops, digest_of, strict=True):
            if out.batch is not None and out.seq > since:
                by_batch.setdefault(out.batch, []).append((op.device_seq, op.record_id, digest))
        roster, cutoffs = self.roster(), self.cutoffs()
        # a device not heard of, or one that signs now: its entry is new or changed (once per
        # device and pull, so that a device admitted during a long pull is known all the same)
        wanted = {o.device_id for o in ops if o.device_id != me and o.device_id not in roster} | {
            b.device_id for b in page.batches if (e := roster.get(b.device_id)) is not None and e.sign_vk is None}
        if wanted - self._roster_tried:
            roster = self.refresh_roster()
            self._roster_tried |= wanted
        beyond: set[int] = set()  # batches of a revoked device after the history its coordinator signed
        for batch in sorted(page.batches, key=lambda b: (b.pos is None, b.pos or 0)):
            entry = roster.get(batch.device_id)
            if entry is not None and entry.sign_vk is not None and batch.sig2 is not None:
                statement = self._statement(team, entry.sign_vk, batch, by_batch.get(batch.id, []))
                if statement is not None:
                    checked[batch.id] = checked.get(batch.id, frozenset()) | frozenset(
                        (batch.device_id, d) for _seq, _rid, d in statement[1])
                    if gaps is not None and batch.device_id != me:
                        limit = entry.history[0] if entry.history is not None and gaps.since == 0 else None
                        if gaps.statement(statement[0], seen=self._seen, limit=limit) < 0:
                            beyond.add(batch.id)
                    continue
            try:
                digests, sig = p.b64d(batch.digests), p.b64d(batch.sig)
            except ValueError:
                continue
            size = p.DIGEST_BYTES
            if (entry is not None and entry.sign_vk is not None and len(digests) % size == 0
                    and verify_signature(entry.sign_vk, p.batch_message(team, batch.device_id, digests), sig)):
                # what a batch of this id is known to hold: only what its device signed (a bogus
                # batch under the same id adds nothing and hides nothing)
                checked[batch.id] = checked.get(batch.id, frozenset()) | frozenset(
                    (batch.device_id, digests[i:i + size]) for i in range(0, len(digests), size))
        accepted: list[RemoteOp] = []
        refused: list[tuple[RemoteOp, str, str]] = []
        seen: dict[str, int] = {}
        for op, out, digest in zip(ops, page.ops, digest_of, strict=True):
            if out.seq <= since:
                continue  # not after the cursor asked for: a replay of what this device has stored
            if op.device_id == me:
                accepted.append(op)  # our own, back from the server: dropped by `receive`
                continue
            entry = roster.get(op.device_id)
            cutoff = cutoffs.get(op.device_id, entry.cutoff if entry else None)
            if cutoff is not None and op.device_id not in seen:
                seen[op.device_id] = self._seen(op.device_id)
            if entry is None:
                refused.append((op, "unknown_device", "an op from a device the coordinator did not admit"))
            elif out.batch is not None and out.batch in beyond:
                refused.append((op, "revoked_write", "an op of a revoked device, outside the history its "
                                "coordinator signed"))
            elif cutoff is not None and op.device_seq > cutoff:
                refused.append((op, "revoked_write", "an op of a revoked device, after its cut-off"))
            elif cutoff is not None and op.device_seq <= seen[op.device_id]:
                # a revoked device's sequence this device already had: written again after the fact
                refused.append((op, "revoked_write", "an op of a revoked device, under a sequence it used before"))
            elif entry.sign_vk is None or op.device_seq <= entry.unsigned_through or (
                    op.device_id, digest) in checked.get(out.batch if out.batch is not None else -1, ()):
                accepted.append(op)
                if cutoff is not None:
                    seen[op.device_id] = max(seen[op.device_id], op.device_seq)
            else:
                refused.append((op, "unsigned_op", "an op its device did not sign"))
        if gaps is not None:
            received: dict[str, list[int]] = {}
            for op in accepted:
                if op.device_id != me:
                    received.setdefault(op.device_id, []).append(op.device_seq)
            for device_id, seqs in received.items():
                gaps.received(device_id, seqs, self._seen)
        return accepted, refused

    @staticmethod
    def _statement(team: str, sign_vk: bytes, batch: p.BatchOut,
                   on_page: list[p.Entry]) -> tuple[Statement, list[p.Entry]] | None:
        """A batch's statement as its device signed it, from the page's ops of the batch and the
        entries the server says are not on the page; None when it does not verify (the server
        left out or changed something, or the device did not sign it)."""
        if batch.pos is None or batch.first is None or batch.last is None or batch.sig2 is None:
            return None
        try:
            sig = p.b64d(batch.sig2)
            entries = p.unpack_entries(p.b64d(batch.absent or "")) + on_page
            message = p.statement_message(team, batch.device_id, batch.first, batch.last, p.pack_entries(entries))
        except ValueError:
            return None
        if not verify_signature(sign_vk, message, sig):
            return None
        return Statement(batch.pos, batch.device_id, batch.first, batch.last,
                         tuple((seq, rid) for seq, rid, _d in entries), sig), entries

    def _check_purges(self, purges: list[p.PurgeOut], since: int, upto: int) -> tuple[list[str], list[str]]:
        """The record ids of a page's purges that the team's authority signed, and the others.
        Unsigned purges up to the position the coordinator signed as the previous version's are
        taken when they are where the page says it is (after `since`, up to `upto`): a device
        past that position takes none; a team that has no authority yet takes every purge, as
        the previous version did."""
        vk = self.authority_vk()
        if not purges or vk is None:
            return [x.record_id for x in purges], []
        team, legacy_through = self._team_id(), self._purges_unsigned_through()
        accepted: list[str] = []
        refused: list[str] = []
        for x in purges:
            if x.sig is None:
                ok = since < x.seq <= min(upto, legacy_through)
            else:
                try:
                    ok = verify_purge(vk, team, x.record_id, p.b64d(x.sig))
                except ValueError:
                    ok = False
            (accepted if ok else refused).append(x.record_id)
        return accepted, refused

    def fold(self, progress: Progress | None = None) -> tuple[int, int]:
        """Fold every pulled op waiting in the inbox into the rows, a transaction at a time (the
        UI may save between two). Local work only: also done offline, for what a run that was cut
        short left behind. Ops set aside for a stamp in the future whose time has come go first
        back in the inbox. (applied, set aside)"""
        self.ws.requeue_due()
        total = self.ws.inbox_count()
        done = applied = set_aside = 0
        while total:
            result = self.ws.fold()
            if not result.ops:
                break
            done += result.ops
            applied += result.applied
            set_aside += len(result.set_aside)
            if progress:
                progress("fold", done, max(total, done))
        return applied, set_aside


def _push_body(client: SyncClient, ops: list[tuple[int, str, str, int, bytes]], team: str, device_id: str,
               signer: Callable[[bytes], bytes] | None, first: int = 1) -> EncodedBody | p.PushRequest:
    """The wire body of a push of our own outbox rows (no model per op: they are not re-validated
    on the way out), signed by this device: its signature covers every op's digest, so that no
    one else can write in its name, and its statement (`protocol.statement_message`) accounts for
    its sequence from `first` to the push's last op, so that a puller can tell a withheld op. (The
    first signature is for pullers of protocol 1.1.) Should an id not be one of ours, the ops go
    as models and the server names the bad op, which is then set aside."""
    sig = sig2 = None
    first = min(first, ops[0][0])
    if signer is not None:
        digests = [p.op_digest(payload) for _seq, _op_id, _rid, _epoch, payload in ops]
        sig = signer(p.batch_message(team, device_id, b"".join(digests)))
        try:
            entries = p.pack_entries((op[0], op[2], d) for op, d in zip(ops, digests, strict=True))
            sig2 = signer(p.statement_message(team, device_id, first, max(op[0] for op in ops), entries))
        except ValueError:  # an id not of ours: the server names it
            sig2 = None
    try:
        return client.encode(p.encode_push(ops, sig, first, sig2))
    except ValueError:
        return p.PushRequest.model_construct(ops=[
            p.OpIn.model_construct(op_id=op_id, device_seq=seq, record_id=rid, key_epoch=epoch, payload=p.b64e(payload))
            for seq, op_id, rid, epoch, payload in ops], sig=p.b64e(sig) if sig is not None else None,
            first=first if sig2 is not None else None, sig2=p.b64e(sig2) if sig2 is not None else None)


def _bad_op_index(exc: Rejected, size: int) -> int | None:
    """The index of the one op a 422/413 names (`ops.N...`), if it names one."""
    if exc.code not in (p.ErrorCode.MALFORMED, p.ErrorCode.TOO_LARGE):
        return None
    parts = str(exc.detail.get("field", "")).split(".")
    if len(parts) >= 2 and parts[0] == "ops" and parts[1].isdigit() and int(parts[1]) < size:
        return int(parts[1])
    return None


def _legacy_wrap_of(vault: Vault, team_id: str, epoch: int, blob: bytes) -> bytes | None:
    """The key in an unsigned wrap of the previous version, or None when it does not open."""
    try:
        return vault.unwrap_from_team(team_id, epoch, blob)
    except (SealError, ValueError):
        return None
