"""The coordinator's desk, its first part: the team's devices (the list as the server keeps it,
pending ones admitted as a sync would, or only once the fingerprint a joining phone shows was typed
in and matched; invite, retire, revoke, a checkpoint, the recovery code's status) and the names of
the devices that conflicts and the audit are said with. The base of `desk.Desk`, which adds the
overview, review, data protection and files.

It takes the session (`session.Session`: its workspace, engine, UI lock and worker threads), not
the facade that holds it, and runs every call that may block in a worker thread (under the UI lock
when it touches the workspace, without it when it waits for the server). It never builds a
control and holds no SQL and no cipher code.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime

from models.domain.vocab import AuditAction
from models.errors import InvalidInput
from models.workspace import Workspace
from sync import protocol as proto
from sync.engine import CheckpointReport, RevokeReport, SyncEngine
from sync.errors import ProofMismatch, SyncError

from ..i18n import Translator
from ..state import DeskDevice, DevicesView, Invite, typed_fingerprint
from .problems import FingerprintMismatch
from .session import Session

__all__ = ["DeskDevices", "qr_png"]

log = logging.getLogger("outreach.app")


def qr_png(text: str, *, scale: int = 6) -> bytes:
    """A QR code of `text` as PNG bytes (segno: pure Python, on the mobile package list)."""
    import io

    import segno

    buf = io.BytesIO()
    segno.make(text, error="m").save(buf, kind="png", scale=scale, border=2)
    return buf.getvalue()


class DeskDevices:
    """The team's devices, for one session's desk. Every public coroutine runs off the UI loop."""


    def __init__(self, session: Session) -> None:
        self.s = session
        self._names_at = -1e9  # when the device names were last fetched (monotonic)

    @property
    def ws(self) -> Workspace:
        return self.s.ws

    @property
    def engine(self) -> SyncEngine:
        return self.s.engine

    def _t(self) -> Translator:
        return Translator(self.s.prefs.language)

    # ================================================================================ devices
    async def devices(self) -> DevicesView:
        """The team's devices as the server lists them (pending ones admitted first, as a sync
        would), this device marked, each with its fingerprint, and the recovery code's status."""
        admitted = await self.s.network(self._admit)
        return await self._devices_view(admitted)

    async def _devices_view(self, admitted: int) -> DevicesView:
        listing = await self.s.network(self.engine.devices)
        recovery, confirms, awaiting, retiring = await self.s.call(self._kept_here, listing)
        prints = self.engine.fingerprints(listing)
        me = self.ws.device_id
        rows = [DeskDevice(
            device_id=d.device_id, name=d.name, role=d.role.value, status=d.status.value,
            joined_at=datetime.fromtimestamp(d.joined_at),
            last_seen=datetime.fromtimestamp(d.last_seen) if d.last_seen else None,
            key_epoch=d.key_epoch, this_device=d.device_id == me, fingerprint=prints.get(d.device_id, ""),
            awaiting_confirmation=d.device_id in awaiting,
            retiring=d.device_id in retiring and d.status.value == "active",
        ) for d in listing.devices]
        order = {"pending": 0, "active": 1, "rejected": 2, "revoked": 3}
        rows.sort(key=lambda r: (order.get(r.status, 9), not r.this_device, r.name.casefold()))
        made = recovery.get("made_at")
        return DevicesView(
            devices=rows, current_epoch=listing.current_epoch, invites_pending=listing.invites_pending,
            recovery_here=bool(recovery.get("on_this_device")),
            recovery_made=datetime.fromtimestamp(float(made)) if isinstance(made, (int, float)) else None,
            admitted=admitted, confirms_devices=confirms,
        )

    def _kept_here(self, listing: proto.DeviceList) -> tuple[dict[str, object], bool, set[str], set[str]]:
        """What this device keeps about the list: the recovery code, whether a fingerprint is
        compared before a device is let in, which pending devices wait for that, and which were
        asked to retire."""
        return (self.engine.recovery_status(), self.engine.confirms_devices,
                set(self.engine.awaiting_confirmation(listing)), set(self.engine.retiring()))

    ADMIT_WAIT = 5.0  # seconds the list waits for a sync run in progress (which lets devices in itself)

    def _admit(self) -> int:
        run = self.engine.exclusive()
        if not run.acquire(timeout=self.ADMIT_WAIT):  # a long sync (a slow network, retries): show the list
            return 0
        try:
            with self.s.ui_lock:  # the order a sync run takes them in
                admitted, _rejected = self.engine.admit_pending()
        finally:
            run.release()
        return int(admitted)

    async def set_confirms_devices(self, on: bool) -> None:
        """Let a new device in only after the fingerprint on its screen was typed in here (on), or
        as soon as its proof checks (off). Kept on this device; audited."""
        await self.s.call(self._set_confirms, bool(on))

    def _set_confirms(self, on: bool) -> None:
        if self.engine.confirms_devices == on:
            return
        self.engine.set_confirms_devices(on)
        self.ws.audit(AuditAction.CHANGE, None, None,
                      detail=f"compare fingerprints before a device is let in: {'on' if on else 'off'}")

    async def confirm_device(self, device_id: str, fingerprint_seen: str) -> DevicesView:
        """The coordinator typed the fingerprint the joining phone shows: when it is the listed
        one, the device is let in at once (its proof checked as always); when it differs it is not
        (FingerprintMismatch). Returns the list as it is afterwards."""
        try:
            typed_fingerprint(fingerprint_seen or "")
        except ValueError:
            raise InvalidInput("fingerprint", "type the fingerprint the new device shows: 0-9 and A-F") from None

        def run() -> int:
            with self.engine.exclusive(), self.s.ui_lock:  # the order a sync run takes them in
                listing = self.engine.devices()
                if device_id not in self.engine.awaiting_confirmation(listing):
                    raise InvalidInput("device_waiting", "no device with that id waits to be let in")
                listed = self.engine.fingerprints(listing)[device_id]
                try:
                    seen = typed_fingerprint(fingerprint_seen, length=len("".join(listed.split())))
                except ValueError:
                    raise InvalidInput("fingerprint", f"{len(''.join(listed.split()))} characters, "
                                                      "0-9 and A-F") from None
                try:
                    self.engine.confirm_device(device_id, seen)
                except ProofMismatch as exc:
                    log.warning("device %s: the fingerprint typed in differs from its key; not let in", device_id)
                    raise FingerprintMismatch(str(exc)) from None
                self.ws.audit(AuditAction.CHANGE, None, None, detail=f"device fingerprint compared: {device_id}")
                admitted, _rejected = self.engine.admit_pending()
            return int(admitted)

        admitted = await self.s.network(run)
        return await self._devices_view(admitted)

    async def invite(self, role: str = proto.Role.WORKER.value, hours: float = 24) -> Invite:
        if role not in {r.value for r in proto.Role}:
            raise InvalidInput("role", "worker or coordinator")
        if not 0.25 <= hours <= 24 * 7:
            raise InvalidInput("hours", "between 15 minutes and 7 days")
        code = await self.s.network(self.engine.invite, proto.Role(role), int(hours * 3600))
        return Invite(code=code, role=role, hours=hours, qr_png=qr_png(code))

    async def retire(self, device_id: str) -> None:
        """Ask a device still in hand to leave: its next sync sends everything it holds, then it
        clears itself, and the next sync here revokes it. Nothing it wrote is lost. Audited."""
        if device_id == self.ws.device_id:
            raise InvalidInput("device", "a device cannot retire itself")

        def run() -> None:
            with self.engine.exclusive(), self.s.ui_lock:
                try:
                    self.engine.retire(device_id)
                except ValueError:
                    raise InvalidInput("device", "no active device with that id") from None
                self.ws.audit(AuditAction.CHANGE, None, None, detail=f"device asked to retire: {device_id}")

        await self.s.network(run)

    async def revoke(self, device_id: str) -> RevokeReport:
        """Revoke a lost device at once: refused by the server, it wipes itself on its next
        contact, and whatever it recorded after its last sync is lost; a new key epoch goes to
        the devices that remain. Returns the new epoch."""
        if device_id == self.ws.device_id:
            raise InvalidInput("device", "a device cannot revoke itself")

        def run() -> RevokeReport:
            with self.engine.exclusive(), self.s.ui_lock:
                report = self.engine.revoke_with_report(device_id)
                self.ws.audit(AuditAction.CHANGE, None, None,
                              detail=f"device revoked: {device_id}; new key for {len(report.keyed)} devices")
            return report

        return await self.s.network(run)

    async def checkpoint(self) -> CheckpointReport | None:
        """Sync, then write a checkpoint of the team's state (new devices start from it instead of
        the whole log); None when there is nothing new since the last one, or changes still wait."""

        def run() -> CheckpointReport | None:
            self.engine.sync()  # takes the run lock itself, and the UI's lock inside it
            with self.engine.exclusive(), self.s.ui_lock:
                return self.engine.make_checkpoint(force=True)

        return await self.s.network(run)


    def _device_names(self) -> dict[str, str]:
        """Device id -> name, as last seen in the device list (kept as a non-personal setting)."""
        raw = self.ws.setting("desk_device_names")
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {}
        names = {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
        names.setdefault(self.ws.device_id, self.ws.worker_name() or self.ws.device_id[:8])
        return names

    async def remember_device_names(self, view: DevicesView) -> None:
        await self.s.call(self._store_names, {d.device_id: d.name for d in view.devices})

    def _store_names(self, names: dict[str, str]) -> None:
        self.ws.set_settings(desk_device_names=json.dumps(names, sort_keys=True))
        self._names_at = time.monotonic()

    async def refresh_device_names(self, *, force: bool = False) -> None:
        """After a coordinator's sync: the devices' names, so that a conflict says who (at most
        every ten minutes, or at once when devices were let in). A failure only leaves them old."""
        if not force and time.monotonic() - self._names_at < 600:
            return
        try:
            listing = await self.s.network(self.engine.devices)
        except SyncError as exc:
            log.info("device names not refreshed: %s", type(exc).__name__)
            return
        await self.s.call(self._store_names, {d.device_id: d.name for d in listing.devices})
