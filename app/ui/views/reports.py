"""The desk's files: CSV exports of persons, contacts and follow-ups that open correctly in Danish
Excel (each asks first, says where the file goes and warns when that is a folder a cloud service
copies, and is audited), the aggregate report with no personal data (CSV and a printable page)
for management and the council, and the national homeless count of a chosen week, each person
once, with its per-person forms as CSV.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import flet as ft

from models.domain.vocab import HomelessCategory

from ...state import PERIOD_CHOICES, CountView, ExportPlan, parse_count
from ..components.ui import (
    dropdown,
    labelled,
    muted,
    page_body,
    primary_button,
    secondary_button,
    section_title,
    text_field,
    tid,
)
from .base import Ctx
from .desk import DeskScreen, desk_tabs
from .privacy import export_folder

__all__ = ["ReportsScreen"]

_EXPORTS = ("persons", "contacts", "follow_ups")


class ReportsScreen(DeskScreen):

    def __init__(self, ctx: Ctx, params: dict[str, str]) -> None:
        super().__init__(ctx, params)
        t = self.t
        mem = ctx.memory.setdefault("reports", {"period": "all", "year": str(date.today().year), "week": "6"})
        self.mem = mem
        self.folder_box, self.folder = text_field(t("files.folder"), "files-folder", value=export_folder(ctx),
                                                  expand=True)
        self.period_box, self.period = dropdown(
            t("desk.period"), "files-period",
            [("all", t("files.period_all"))] + [(p, t(f"desk.period_{p}")) for p in PERIOD_CHOICES],
            value=mem["period"], expand=True)
        self.year_box, self.year = text_field(t("count.year"), "count-year", value=mem["year"],
                                              keyboard=ft.KeyboardType.NUMBER, width=140)
        self.week_box, self.week = text_field(t("count.week"), "count-week", value=mem["week"],
                                              keyboard=ft.KeyboardType.NUMBER, width=120)
        self.count = ft.Column(spacing=6, horizontal_alignment=ft.CrossAxisAlignment.STRETCH)

    def build(self) -> ft.Control:
        t = self.t
        export_buttons = ft.Row([
            secondary_button(t(f"files.export_{k}"), self._export(k), f"export-{k.replace('_', '-')}",
                             icon=ft.Icons.TABLE_VIEW) for k in _EXPORTS], wrap=True, spacing=8)
        return page_body([
            desk_tabs(self.ctx, "reports"),
            section_title(t("files.where")),
            self.folder_box,
            muted(t("files.plain_warning"), size=13),
            section_title(t("files.exports")),
            muted(t("files.exports_intro")),
            self.period_box,
            export_buttons,
            section_title(t("report.title")),
            muted(t("files.report_intro")),
            primary_button(t("files.report"), self._report, "report-write", icon=ft.Icons.SUMMARIZE),
            section_title(t("count.title")),
            muted(t("count.intro")),
            ft.Row([self.year_box, self.week_box,
                    secondary_button(t("count.show"), self._count, "count-show", icon=ft.Icons.FACT_CHECK)],
                   wrap=True, spacing=8, vertical_alignment=ft.CrossAxisAlignment.START),
            tid(self.count, "count-result"),
            ft.Container(height=24),
        ], wide=self.ctx.wide, max_width=900)

    def _remember(self) -> str:
        folder = (self.folder.value or "").strip()
        self.ctx.memory["export_dir"] = folder
        self.mem["period"] = self.period.value or "all"
        return folder

    def _problem(self, words: str | None) -> None:
        self.folder.error = words
        self.update()

    # ------------------------------------------------------------------ exports
    def _week(self) -> tuple[int, int] | None:
        t = self.t
        self.mem["year"], self.mem["week"] = (self.year.value or "").strip(), (self.week.value or "").strip()
        try:
            year = parse_count(self.mem["year"], low=2000, high=2100)
        except ValueError:
            self.year.error = t("count.year_bad")
            self.update()
            return None
        try:
            week = parse_count(self.mem["week"], low=1, high=date(year, 12, 28).isocalendar()[1])
        except ValueError:
            self.week.error = t("count.week_bad")
            self.update()
            return None
        self.year.error = self.week.error = None
        return year, week

    def _export(self, kind: str) -> Any:
        async def start(e: Any = None) -> None:
            folder = self._remember()
            year = week = None
            if kind == "count_forms":
                chosen = self._week()
                if chosen is None:
                    return
                year, week = chosen
            plan, problem = await self.ctx.attempt(self.services.desk.plan_export(
                kind, folder, period=self.mem["period"], year=year, week=week))
            if problem or plan is None:
                self._problem(self.ctx.words(problem) if problem else None)
                return
            self._problem(None)
            self._confirm(plan)

        return start

    def _confirm(self, plan: ExportPlan) -> None:
        t = self.t
        lines: list[ft.Control] = [ft.Text(t("files.confirm_text", rows=plan.rows, path=str(plan.path)), size=15),
                 ft.Text(t("files.confirm_plain"), size=14)]
        if plan.synced_folder:
            lines.append(tid(ft.Text(t("files.synced_folder", service=plan.synced_folder), size=14,
                                     color=ft.Colors.ERROR, weight=ft.FontWeight.BOLD), "export-synced-warning"))
        if plan.exists:
            lines.append(ft.Text(t("files.replaces"), size=14))

        async def confirmed(ev: Any = None) -> None:
            self.ctx.page.pop_dialog()
            done, problem = await self.ctx.attempt(self.services.desk.export(plan))
            if problem or done is None:
                self._problem(self.ctx.words(problem) if problem else None)
                return
            self.ctx.toast(t("files.written", rows=done.rows, path=str(done.path)))
            self.update()

        self.ctx.confirm(t("files.confirm_title"), tid(ft.Column(lines, tight=True, spacing=10, width=460),
                                                       "export-confirm-text"),
                         confirm=t("files.write"), on_confirm=confirmed, identifier="export", icon=ft.Icons.SAVE_ALT)

    # ------------------------------------------------------------------ report
    async def _report(self, e: Any = None) -> None:
        folder = self._remember()
        period = self.mem["period"] if self.mem["period"] != "all" else "12m"
        paths, problem = await self.ctx.attempt(self.services.desk.report_files(folder, period=period))
        if problem or paths is None:
            self._problem(self.ctx.words(problem) if problem else None)
            return
        self._problem(None)
        self.ctx.toast(self.t("files.report_written", csv=paths[0].name, html=paths[1].name, folder=str(paths[0].parent)))

    # ------------------------------------------------------------------ count
    async def _count(self, e: Any = None) -> None:
        chosen = self._week()
        if chosen is None:
            return
        view, problem = await self.ctx.attempt(self.services.desk.national_count(*chosen))
        if problem or view is None:
            self.count.controls = [muted(self.ctx.words(problem) if problem else "")]
            self.update()
            return
        self._fill_count(view)
        self.update()

    def _fill_count(self, c: CountView) -> None:
        t = self.t
        rows: list[ft.Control] = [
            tid(ft.Text(t("count.total", total=c.total, year=c.year, week=c.week, start=t.date(c.start),
                          end=t.date(c.end)), size=16, weight=ft.FontWeight.BOLD), "count-total"),
        ]
        for cat in [*(h.value for h in HomelessCategory), "unknown"]:
            if cat in c.counts:
                words = t.vocab("category", cat) if cat != "unknown" else t("report.unknown")
                rows.append(labelled(words, str(c.counts[cat]), f"count-{cat}"))
        rows.append(secondary_button(t("files.export_count_forms"), self._export("count_forms"), "export-count-forms",
                                     icon=ft.Icons.TABLE_VIEW))
        self.count.controls = rows
