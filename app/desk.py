"""The coordinator's desk behind the screens: devices (invite, the pending ones admitted on sync,
or, when the coordinator asks for it, only once the fingerprint a joining phone shows was typed in
and matched; revoke, the recovery code's status), the overview against the goal with its monthly series,
review (conflicts side by side, duplicate persons and their merge), data protection (erasure,
retention review, access requests, the audit log) and the files a coordinator takes away (CSV for
Danish Excel, the aggregate report, the national count).

One `Desk` per UI session, reached as `Services.desk`. Like `Services` it runs every call that may
block in a worker thread (under the session's UI lock when it touches the workspace, without it
when it waits for the server) and turns domain objects into the plain rows of `app.state`. The
figures are computed on this device from the opened records; nothing plaintext goes to the server.
It never builds a control and holds no SQL and no cipher code.
"""

from __future__ import annotations

import logging
import time
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.domain.vocab import AuditAction
from models.errors import InvalidInput, NotFound
from models.usecases import exports, reports, review
from sync import protocol as proto
from sync.engine import CheckpointReport, RevokeReport
from sync.errors import ProofMismatch, SyncError

from .i18n import Translator
from .state import (
    PERIOD_CHOICES,
    AuditRow,
    CountView,
    DeskConflict,
    DeskDevice,
    DevicesView,
    DuplicateRow,
    ErasureView,
    ExportDone,
    ExportPlan,
    Invite,
    OverviewView,
    RetentionRow,
    period_bounds,
    typed_fingerprint,
)

if TYPE_CHECKING:
    from models.workspace import Workspace
    from sync.engine import SyncEngine

    from .services import Services

__all__ = ["Desk", "FingerprintMismatch", "default_export_dir", "qr_png"]

log = logging.getLogger("outreach.app")


def default_export_dir() -> Path:
    """Where files for the coordinator go unless they choose another folder: their documents
    folder (never the app's data dir, which must hold no plaintext)."""
    import platformdirs

    return Path(platformdirs.user_documents_dir()).expanduser() / "Outreach"


def qr_png(text: str, *, scale: int = 6) -> bytes:
    """A QR code of `text` as PNG bytes (segno: pure Python, on the mobile package list)."""
    import io

    import segno

    buf = io.BytesIO()
    segno.make(text, error="m").save(buf, kind="png", scale=scale, border=2)
    return buf.getvalue()


class FingerprintMismatch(ProofMismatch):
    """The fingerprint typed at the desk is not the one the server lists for that device: its key
    may have been swapped on the way. It was not let in (said at the field, not as a join error)."""


class Desk:
    """The desk's calls for one session. Every public coroutine runs off the UI loop."""

    def __init__(self, services: Services) -> None:
        self.s = services
        self._names_at = -1e9  # when the device names were last fetched (monotonic)
        self._access: review.AccessRequest | None = None  # the access request shown, until saved

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
        admitted = await self.s._network(self._admit)
        return await self._devices_view(admitted)

    async def _devices_view(self, admitted: int) -> DevicesView:
        listing = await self.s._network(self.engine.devices)
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
            with self.s._lock:  # the order a sync run takes them in
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
            with self.engine.exclusive(), self.s._lock:  # the order a sync run takes them in
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

        admitted = await self.s._network(run)
        return await self._devices_view(admitted)

    async def invite(self, role: str = proto.Role.WORKER.value, hours: float = 24) -> Invite:
        if role not in {r.value for r in proto.Role}:
            raise InvalidInput("role", "worker or coordinator")
        if not 0.25 <= hours <= 24 * 7:
            raise InvalidInput("hours", "between 15 minutes and 7 days")
        code = await self.s._network(self.engine.invite, proto.Role(role), int(hours * 3600))
        return Invite(code=code, role=role, hours=hours, qr_png=qr_png(code))

    async def retire(self, device_id: str) -> None:
        """Ask a device still in hand to leave: its next sync sends everything it holds, then it
        clears itself, and the next sync here revokes it. Nothing it wrote is lost. Audited."""
        if device_id == self.ws.device_id:
            raise InvalidInput("device", "a device cannot retire itself")

        def run() -> None:
            with self.engine.exclusive(), self.s._lock:
                try:
                    self.engine.retire(device_id)
                except ValueError:
                    raise InvalidInput("device", "no active device with that id") from None
                self.ws.audit(AuditAction.CHANGE, None, None, detail=f"device asked to retire: {device_id}")

        await self.s._network(run)

    async def revoke(self, device_id: str) -> RevokeReport:
        """Revoke a lost device at once: refused by the server, it wipes itself on its next
        contact, and whatever it recorded after its last sync is lost; a new key epoch goes to
        the devices that remain. Returns the new epoch."""
        if device_id == self.ws.device_id:
            raise InvalidInput("device", "a device cannot revoke itself")

        def run() -> RevokeReport:
            with self.engine.exclusive(), self.s._lock:
                report = self.engine.revoke_with_report(device_id)
                self.ws.audit(AuditAction.CHANGE, None, None,
                              detail=f"device revoked: {device_id}; new key for {len(report.keyed)} devices")
            return report

        return await self.s._network(run)

    async def checkpoint(self) -> CheckpointReport | None:
        """Sync, then write a checkpoint of the team's state (new devices start from it instead of
        the whole log); None when there is nothing new since the last one, or changes still wait."""

        def run() -> CheckpointReport | None:
            self.engine.sync()  # takes the run lock itself, and the UI's lock inside it
            with self.engine.exclusive(), self.s._lock:
                return self.engine.make_checkpoint(force=True)

        return await self.s._network(run)

    # =============================================================================== overview
    async def overview(self, *, period: str = "12m", worker: str | None = None,
                       today: date | None = None) -> OverviewView:
        if period not in PERIOD_CHOICES:
            raise InvalidInput("period", f"one of {', '.join(PERIOD_CHOICES)}")
        return await self.s.call(self._overview, period, worker or None, today or date.today())

    def _overview(self, period: str, worker: str | None, today: date) -> OverviewView:
        ws = self.ws
        start, end = period_bounds(period, today)
        f = reports.facts(ws)  # once: the overview and every series read the same snapshot
        ov = reports.overview(ws, today=today, start=start, end=end, worker=worker, snapshot=f)
        series = {kind.value: reports.monthly_series(ws, kind, start=start, end=end, worker=worker,
                                                     by_category=kind is not reports.SeriesKind.HOMELESS,
                                                     today=today, snapshot=f)
                  for kind in reports.SeriesKind}
        workers = sorted({w for c in f.contacts for w in c.workers}, key=str.casefold)
        return OverviewView(overview=ov, series=series, workers=workers, period=period, worker=worker)

    async def set_goal(self, target: int, baseline: int | None = None) -> None:
        await self.s.call(reports.set_goal, self.ws, target=target, baseline=baseline)

    # ================================================================================= review
    async def conflicts(self) -> list[DeskConflict]:
        return await self.s.call(self._conflicts)

    def _conflicts(self) -> list[DeskConflict]:
        names = self._device_names()
        return [DeskConflict(item=i, key=f"{i.record_id}:{i.field}") for i in review.conflicts(self.ws, device_names=names)]

    def _device_names(self) -> dict[str, str]:
        """Device id -> name, as last seen in the device list (kept as a non-personal setting)."""
        import json

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
        import json

        self.ws.set_settings(desk_device_names=json.dumps(names, sort_keys=True))
        self._names_at = time.monotonic()

    async def refresh_device_names(self, *, force: bool = False) -> None:
        """After a coordinator's sync: the devices' names, so that a conflict says who (at most
        every ten minutes, or at once when devices were let in). A failure only leaves them old."""
        if not force and time.monotonic() - self._names_at < 600:
            return
        try:
            listing = await self.s._network(self.engine.devices)
        except SyncError as exc:
            log.info("device names not refreshed: %s", type(exc).__name__)
            return
        await self.s.call(self._store_names, {d.device_id: d.name for d in listing.devices})

    async def resolve(self, conflict: DeskConflict, *, keep: str | None = None, value: Any = None) -> None:
        """Keep side "a" or "b", or write a new value (synced as a normal change, audited)."""
        if keep is not None:
            if keep not in ("a", "b"):
                raise InvalidInput("resolution", "keep a or b")
            await self.s.call(review.resolve_conflict, self.ws, conflict.item, keep=keep)  # type: ignore[arg-type]
            return
        if value is None or (isinstance(value, str) and not value.strip()):
            raise InvalidInput("value", "write the value to keep")
        await self.s.call(review.resolve_conflict, self.ws, conflict.item, value=value)

    async def duplicates(self, *, min_score: float = 0.6) -> list[DuplicateRow]:
        return await self.s.call(self._duplicates, min_score)

    def _duplicates(self, min_score: float) -> list[DuplicateRow]:
        rows = []
        for d in review.duplicate_suggestions(self.ws, min_score=min_score):
            a, b = self._person_row(d.person_a), self._person_row(d.person_b)
            if a is None or b is None:
                continue
            rows.append(DuplicateRow(a=a, b=b, score=d.score, reasons=tuple(d.reasons)))
        return rows

    def _person_row(self, person_id: str) -> Any:
        try:
            return self.s._person_row(self.ws.get_person(person_id))
        except NotFound:
            return None

    async def merge(self, *, keep_id: str, drop_id: str) -> review.MergeResult:
        return await self.s.call(review.merge_persons, self.ws, keep_id=keep_id, drop_id=drop_id)

    async def not_duplicates(self, person_a: str, person_b: str) -> None:
        await self.s.call(review.dismiss_duplicate, self.ws, person_a, person_b)

    # ======================================================================= data protection
    async def erasure_preview(self, person_id: str) -> ErasureView:
        p = await self.s.call(review.erasure_preview, self.ws, person_id)
        return ErasureView(person_id=p.person_id, alias=p.alias, contacts=p.contacts, follow_ups=p.follow_ups,
                           records=p.records)

    async def erase(self, person_id: str) -> int:
        """Purge the person, their contacts and follow-ups on the server and here (art. 17); an
        erasure record without personal data stays. Needs the server: an erasure that did not
        reach it would come back with the next pull."""

        def run() -> int:
            with self.engine.exclusive(), self.s._lock:
                return int(self.engine.erase_person(person_id))

        return await self.s._network(run)

    async def retention(self, months: int = review.DEFAULT_RETENTION_MONTHS) -> list[RetentionRow]:
        items = await self.s.call(review.retention_review, self.ws, months=months)
        return [RetentionRow(person_id=i.person_id, alias=i.alias, last_contact=i.last_contact, since=i.since,
                             kept_on=i.kept_on, reason=i.reason) for i in items]

    async def keep(self, person_id: str, reason: str) -> None:
        await self.s.call(review.keep_person, self.ws, person_id, reason=reason)

    async def access_text(self, person_id: str) -> str:
        """Everything stored about one person, as a readable document (the request is audited)."""
        t = self._t()

        def run() -> str:
            self._access = review.AccessRequest(self.ws, person_id, translate=t)  # gathered once: saved as shown
            return self._access.show()  # audited

        return await self.s.call(run)

    async def access_files(self, person_id: str, folder: str) -> tuple[Path, Path]:
        """The access request as a printable page and as JSON in `folder`; audited."""
        t = self._t()

        def run() -> tuple[Path, Path]:
            target = self._folder(folder)
            shown, self._access = self._access, None  # the request the dialog shows: gathered once
            rep = shown if shown and shown.person_id == person_id and shown.ws is self.ws and self.ws.unlocked \
                else review.AccessRequest(self.ws, person_id, translate=t)
            page, body = rep.files()  # audited
            stem = f"outreach-access-{person_id[:8]}-{date.today().isoformat()}"
            html_path, json_path = target / f"{stem}.html", target / f"{stem}.json"
            exports.write_private(html_path, page.encode("utf-8"))
            exports.write_private(json_path, body.encode("utf-8"))
            return html_path, json_path

        return await self.s.call(run)

    async def audit(self, *, person_id: str | None = None, actor: str | None = None, action: str | None = None,
                    limit: int = 200) -> tuple[list[AuditRow], list[str]]:
        """Audit events newest first with the filters' choices (the workers named in the log)."""
        if action and action not in {a.value for a in AuditAction}:
            raise InvalidInput("action", "unknown action")
        return await self.s.call(self._audit, person_id or None, actor or None, action or None, limit)

    def _audit(self, person_id: str | None, actor: str | None, action: str | None,
               limit: int) -> tuple[list[AuditRow], list[str]]:
        ws = self.ws
        aliases: dict[str, str | None] = {}
        rows = []
        for e in review.audit_log(ws, person_id=person_id, actor=actor, action=action, limit=limit):
            target = e.target_id
            if target and target not in aliases:
                aliases[target] = self.s._alias(target)
            rows.append(AuditRow(id=e.id, at=e.at, actor=e.actor, device_id=e.device_id, action=e.action.value,
                                 target_type=e.target_type.value if e.target_type else None, target_id=target,
                                 target_alias=aliases.get(target) if target else None, detail=e.detail))
        return rows, review.audit_actors(ws)

    # ============================================================================ files
    def _folder(self, folder: str) -> Path:
        text = (folder or "").strip()
        if not text:
            raise InvalidInput("folder", "choose a folder")
        target = Path(text).expanduser()
        if not target.is_absolute():
            raise InvalidInput("folder", "write the whole path of the folder")
        target = target.resolve()
        if exports.is_within(target, self.ws.data_dir):
            raise InvalidInput("folder", "never next to the encrypted data")
        if target.exists() and not target.is_dir():
            raise InvalidInput("folder", "that is a file, not a folder")
        target.mkdir(parents=True, exist_ok=True)
        return target

    def _request(self, kind: str, period: str, year: int | None, week: int | None) -> exports.ExportRequest:
        try:
            export_kind = exports.ExportKind(kind)
        except ValueError:
            raise InvalidInput("kind", "unknown export") from None
        if export_kind is exports.ExportKind.COUNT_FORMS:
            _check_week(year, week)
            return exports.ExportRequest(kind=export_kind, year=year, week=week or 6)
        if period != "all" and period not in PERIOD_CHOICES:
            raise InvalidInput("period", f"all or one of {', '.join(PERIOD_CHOICES)}")
        start, end = period_bounds(period, date.today()) if period != "all" else (None, None)
        return exports.ExportRequest(kind=export_kind, start=start, end=end)

    async def plan_export(self, kind: str, folder: str, *, period: str = "all", year: int | None = None,
                          week: int | None = None) -> ExportPlan:
        """What the confirmation says: rows, the file, and whether the folder is a synced one.
        Writes nothing and audits nothing."""
        return await self.s.call(self._plan_export, kind, folder, period, year, week)

    def _plan_export(self, kind: str, folder: str, period: str, year: int | None, week: int | None) -> ExportPlan:
        req = self._request(kind, period, year, week)
        target = self._folder(folder)
        name = exports.export_filename(req, date.today())
        warn = exports.export_warning(self.ws, req, target / name)
        return ExportPlan(kind=kind, period=period, year=year, week=week, path=warn.path, rows=warn.rows,
                          synced_folder=warn.synced_folder, exists=warn.exists)

    async def export(self, plan: ExportPlan) -> ExportDone:
        """Write the confirmed export (audited: what and how many rows, never a value)."""
        t = self._t()

        def run() -> ExportDone:
            req = self._request(plan.kind, plan.period, plan.year, plan.week)
            done = exports.write_export(self.ws, req, plan.path, translate=t)
            return ExportDone(path=plan.path, rows=done.rows)

        return await self.s.call(run)

    async def report_files(self, folder: str, *, period: str = "12m", worker: str | None = None) -> tuple[Path, Path]:
        """The aggregate report (no personal data) as CSV and as a printable page."""
        t = self._t()
        if period not in PERIOD_CHOICES:
            raise InvalidInput("period", f"one of {', '.join(PERIOD_CHOICES)}")

        def run() -> tuple[Path, Path]:
            target = self._folder(folder)
            start, end = period_bounds(period, date.today())
            rep = exports.aggregate_report(self.ws, start=start, end=end, worker=worker or None)
            stem = f"outreach-report-{rep.period.start.isoformat()}-{rep.period.end.isoformat()}"
            csv_path, html_path = target / f"{stem}.csv", target / f"{stem}.html"
            exports.write_private(csv_path, exports.aggregate_csv(rep, translate=t))
            exports.write_private(html_path, exports.aggregate_html(rep, translate=t).encode("utf-8"))
            return csv_path, html_path

        return await self.s.call(run)

    async def national_count(self, year: int, week: int) -> CountView:
        _check_week(year, week)
        count = await self.s.call(exports.national_count, self.ws, year=year, week=week)
        return CountView(year=count.year, week=count.week, start=count.start, end=count.end,
                         counts=dict(count.counts), total=count.total)


def _check_week(year: int | None, week: int | None) -> None:
    if year is None or not 2000 <= year <= 2100:
        raise InvalidInput("year", "a year between 2000 and 2100")
    if week is None or not 1 <= week <= date(year, 12, 28).isocalendar()[1]:
        raise InvalidInput("week", "a week of that year")

