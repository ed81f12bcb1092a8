"""The coordinator's desk behind the screens: devices (in `desk_devices`: invite, the pending ones
admitted on sync, or, when the coordinator asks for it, only once the fingerprint a joining phone
shows was typed in and matched; revoke, the recovery code's status), the overview against the goal
with its monthly series, review (conflicts side by side, duplicate persons and their merge), data protection (erasure,
retention review, access requests, the audit log) and the files a coordinator takes away (CSV for
Danish Excel, the aggregate report, the national count).

One `Desk` per UI session, reached as `Services.desk`. It takes the session (`session.Session`:
its workspace, engine, UI lock and worker threads), not the facade that holds it. Like the
facade it runs every call that may block in a worker thread (under the session's UI lock when it
touches the workspace, without it when it waits for the server) and turns domain objects into the
plain rows of `app.state`. The figures are computed on this device from the opened records;
nothing plaintext goes to the server. It never builds a control and holds no SQL and no cipher code.
"""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path
from typing import Any

from models.domain.vocab import AuditAction
from models.errors import InvalidInput, NotFound
from models.usecases import exports, reports, review

from ..state import (
    PERIOD_CHOICES,
    AuditRow,
    CountView,
    DeskConflict,
    DuplicateRow,
    ErasureView,
    ExportDone,
    ExportPlan,
    OverviewView,
    RetentionRow,
    period_bounds,
)
from .desk_devices import DeskDevices
from .rows import alias, person_row

__all__ = ["Desk", "default_export_dir"]

log = logging.getLogger("outreach.app")


def default_export_dir() -> Path:
    """Where files for the coordinator go unless they choose another folder: their documents
    folder (never the app's data dir, which must hold no plaintext)."""
    import platformdirs

    return Path(platformdirs.user_documents_dir()).expanduser() / "Outreach"


class Desk(DeskDevices):
    """The desk's calls for one session (the team's devices: `DeskDevices`). Every public
    coroutine runs off the UI loop."""

    _access: review.AccessRequest | None = None  # the access request shown, until saved: gathered once

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
            return person_row(self.ws, self.ws.get_person(person_id))
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
            with self.engine.exclusive(), self.s.ui_lock:
                return int(self.engine.erase_person(person_id))

        return await self.s.network(run)

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
        found = []
        for e in review.audit_log(ws, person_id=person_id, actor=actor, action=action, limit=limit):
            target = e.target_id
            if target and target not in aliases:
                aliases[target] = alias(self.ws, target)
            found.append(AuditRow(id=e.id, at=e.at, actor=e.actor, device_id=e.device_id, action=e.action.value,
                                 target_type=e.target_type.value if e.target_type else None, target_id=target,
                                 target_alias=aliases.get(target) if target else None, detail=e.detail))
        return found, review.audit_actors(ws)

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
