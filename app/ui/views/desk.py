"""The coordinator's desk, first screen: the goal (homeless persons known now against the target,
from the starting point of 169), the situation now (by status and by homeless category), who was
met this week, month and year, new and housed persons, and the monthly charts (contacts, unique
persons met, housed, the goal's curve), filtered by period and worker. Every figure is computed on
this device from the opened records. The desk's other screens are one tap away in its tab row.
"""

from __future__ import annotations

from typing import Any

import flet as ft

from models.domain.vocab import HomelessCategory

from ...state import PERIOD_CHOICES, OverviewView, parse_count
from ..components.charts import CATEGORY_COLORS, bar_chart, goal_chart, legend, month_labels
from ..components.ui import (
    ErrorLine,
    choice_chip,
    dropdown,
    labelled,
    muted,
    page_body,
    secondary_button,
    section_title,
    text_field,
    tid,
)
from .base import Ctx, Screen

__all__ = ["DeskScreen", "OverviewScreen", "DESK_TABS", "desk_tabs"]

# (name, route, i18n key)
DESK_TABS: list[tuple[str, str, str]] = [
    ("overview", "/desk", "desk.overview"),
    ("devices", "/desk/devices", "desk.devices"),
    ("review", "/desk/review", "desk.review"),
    ("privacy", "/desk/privacy", "desk.privacy"),
    ("reports", "/desk/reports", "desk.reports"),
]
_CATEGORY_ORDER: tuple[str, ...] = (*(c.value for c in HomelessCategory), "none")  # the charts' stacking order


def desk_tabs(ctx: Ctx, current: str) -> ft.Control:
    """The row that moves between the desk's screens (chips: they wrap on a phone)."""
    t = ctx.t

    def go(name: str, route: str) -> Any:
        def tap(e: Any) -> None:
            if name == current:  # the screen already shown: the chip stays chosen
                e.control.selected = True
                e.control.update()
            else:
                ctx.navigate(route)

        return tap

    return ft.Row([choice_chip(t(key), name == current, go(name, route), f"desk-tab-{name}")
                   for name, route, key in DESK_TABS], wrap=True, spacing=8, run_spacing=8)


def figure(label: str, value: Any, identifier: str, *, hint: str | None = None) -> ft.Control:
    """One big number with its words under it."""
    body: list[ft.Control] = [ft.Text(str(value), size=28, weight=ft.FontWeight.BOLD),
                              ft.Text(label, size=13, color=ft.Colors.ON_SURFACE_VARIANT)]
    if hint:
        body.append(ft.Text(hint, size=12, color=ft.Colors.ON_SURFACE_VARIANT, italic=True))
    box = ft.Container(ft.Column(body, spacing=2), padding=12, border_radius=12,
                       bgcolor=ft.Colors.SURFACE_CONTAINER_LOW)
    wrapped = tid(box, identifier, f"{label}: {value}")
    wrapped.col = {"xs": 6, "sm": 4, "md": 2}  # a ResponsiveRow reads its direct child's columns
    return wrapped


class DeskScreen(Screen):
    """A screen of the coordinator's desk (the routes refuse a worker's device)."""

    title_key = "desk.title"
    nav = "desk"


class OverviewScreen(DeskScreen):

    def __init__(self, ctx: Ctx, params: dict[str, str]) -> None:
        super().__init__(ctx, params)
        t = self.t
        mem = ctx.memory.setdefault("desk", {"period": "12m", "worker": ""})
        self.mem = mem
        self.period_box, self.period = dropdown(
            t("desk.period"), "desk-period", [(p, t(f"desk.period_{p}")) for p in PERIOD_CHOICES],
            value=mem["period"], on_select=self._on_filter, expand=True)
        self.worker_box, self.worker = dropdown(t("desk.worker"), "desk-worker", [("", t("common.all"))],
                                                value=mem["worker"], on_select=self._on_filter, expand=True)
        self.target_box, self.target = text_field(t("desk.target"), "desk-target", keyboard=ft.KeyboardType.NUMBER,
                                                  width=160)
        self.baseline_box, self.baseline = text_field(t("desk.baseline"), "desk-baseline",
                                                      keyboard=ft.KeyboardType.NUMBER, width=160)
        self.goal_message = ErrorLine("desk-goal-message")
        self.content = ft.Column(spacing=8, horizontal_alignment=ft.CrossAxisAlignment.STRETCH)

    def build(self) -> ft.Control:
        t = self.t
        filters = ft.ResponsiveRow([
            ft.Container(self.period_box, col={"xs": 12, "sm": 6}),
            ft.Container(self.worker_box, col={"xs": 12, "sm": 6}),
        ], spacing=8, run_spacing=8)
        goal_form = ft.Row([self.target_box, self.baseline_box,
                            secondary_button(t("desk.goal_save"), self._save_goal, "desk-goal-save")],
                           wrap=True, spacing=8, vertical_alignment=ft.CrossAxisAlignment.START)
        self.content.controls = [ft.ProgressRing(width=32, height=32)]
        return page_body([desk_tabs(self.ctx, "overview"), filters, self.content,
                          section_title(t("desk.goal_settings")), goal_form, self.goal_message.control,
                          ft.Container(height=24)], wide=self.ctx.wide, max_width=1000)

    async def load(self) -> None:
        data, problem = await self.ctx.attempt(self.services.desk.overview(period=self.mem["period"],
                                                                          worker=self.mem["worker"] or None))
        if problem or data is None:
            self.content.controls = [muted(self.ctx.words(problem) if problem else "", identifier="desk-error")]
            return
        self._fill(data)

    async def _on_filter(self, e: Any = None) -> None:
        self.mem["period"] = self.period.value or "12m"
        self.mem["worker"] = self.worker.value or ""
        await self.load()
        self.update()

    async def _save_goal(self, e: Any = None) -> None:
        t = self.t
        try:
            target = parse_count(self.target.value or "", low=0, high=1_000_000)
        except ValueError:
            self.target.error = t("desk.goal_bad")
            self.update()
            return
        baseline = None
        if (self.baseline.value or "").strip():
            try:
                baseline = parse_count(self.baseline.value or "", low=0, high=1_000_000)
            except ValueError:
                self.baseline.error = t("desk.goal_bad")
                self.update()
                return
        self.target.error = self.baseline.error = None
        _ok, problem = await self.ctx.attempt(self.services.desk.set_goal(target, baseline))
        if problem:
            self.goal_message.show(self.ctx.words(problem))
            self.update()
            return
        self.goal_message.show("")
        self.ctx.toast(t("desk.goal_saved"))
        await self.load()
        self.update()

    # ------------------------------------------------------------------ drawing
    def _fill(self, data: OverviewView) -> None:
        t, ov = self.t, data.overview
        g = ov.goal
        self.worker.options = [ft.DropdownOption(key="", text=t("common.all"))] + [
            ft.DropdownOption(key=w, text=w.title()) for w in data.workers]
        self.worker.value = data.worker or ""
        if not self.target.value:
            self.target.value = str(g.target)
        if not self.baseline.value:
            self.baseline.value = str(g.baseline)
        progress = max(0.0, min(1.0, g.progress))
        goal_words = t("desk.goal_reached", target=g.target) if g.reached else t(
            "desk.goal_line", current=g.current, target=g.target, remaining=g.remaining, baseline=g.baseline)
        goal_card = tid(ft.Container(ft.Column([
            ft.Text(t("desk.goal_title"), theme_style=ft.TextThemeStyle.TITLE_MEDIUM, weight=ft.FontWeight.BOLD),
            ft.Row([ft.Text(str(g.current), size=44, weight=ft.FontWeight.BOLD),
                    ft.Text(t("desk.goal_now"), size=15, expand=True)], spacing=12),
            ft.ProgressBar(value=progress, bar_height=10, border_radius=5,
                           semantics_label=t("desk.goal_progress", percent=round(progress * 100))),
            ft.Text(goal_words, size=15),
        ], spacing=8), padding=16, border_radius=16, bgcolor=ft.Colors.PRIMARY_CONTAINER), "desk-goal", goal_words)

        figures = ft.ResponsiveRow([
            figure(t("report.persons_known"), ov.persons_known, "desk-persons-known"),
            figure(t("desk.met_week"), ov.met_this_week, "desk-met-week"),
            figure(t("desk.met_month"), ov.met_this_month, "desk-met-month"),
            figure(t("desk.met_year"), ov.met_this_year, "desk-met-year"),
            figure(t("desk.new_year"), ov.new_this_year, "desk-new-year"),
            figure(t("desk.housed_year"), ov.housed_this_year, "desk-housed-year",
                   hint=t("desk.median_days", n=round(ov.median_days_to_housed_this_year))
                   if ov.median_days_to_housed_this_year is not None else None),
        ], spacing=8, run_spacing=8)

        status_rows = [labelled(t.vocab("status", k), str(v), f"desk-status-{k}") for k, v in ov.by_status.items()]
        category_rows = [labelled(t.vocab("category", k), str(ov.by_category.get(k, 0)), f"desk-category-{k}")
                         for k in _CATEGORY_ORDER if k in ov.by_category]

        names = [t(f"month.{i}") for i in range(1, 13)]
        charts: list[ft.Control] = []
        homeless = data.series["homeless"]
        labels = month_labels(homeless.months, names)
        charts += [section_title(t("report.goal_chart")),
                   goal_chart("desk-chart-goal", t("desk.chart_goal_words", values=", ".join(
                       f"{lab}: {v}" for lab, v in zip(labels, homeless.totals, strict=True)), target=g.target),
                       labels, list(homeless.totals), target=g.target, baseline=g.baseline,
                       goal_words=t("report.target"), now_words=t("report.homeless_month_end")),
                   legend([(ft.Colors.PRIMARY, t("report.homeless_month_end")), (ft.Colors.GREEN, t("report.target")),
                           (ft.Colors.OUTLINE, t("report.baseline"))])]
        for kind, key in (("contacts", "desk.chart_contacts"), ("persons_met", "desk.chart_persons_met"),
                          ("housed", "desk.chart_housed")):
            s = data.series[kind]
            labels = month_labels(s.months, names)
            stacks = [s.by_category.get(c, ()) for c in _CATEGORY_ORDER] if s.by_category else None
            words = t("desk.chart_words", title=t(key), values=", ".join(
                f"{lab}: {v}" for lab, v in zip(labels, s.totals, strict=True)))
            charts += [section_title(t(key), count=sum(s.totals)),
                       bar_chart(f"desk-chart-{kind}", words, labels, list(s.totals), stacks=stacks)]
        charts.append(legend([(CATEGORY_COLORS[i], t.vocab("category", c)) for i, c in enumerate(_CATEGORY_ORDER)]))
        p = ov.period
        period_words = t("desk.period_line", start=t.date(p.start), end=t.date(p.end), contacts=p.contacts,
                         met=p.persons_met, new=p.new_persons, housed=p.housed)
        self.content.controls = [
            goal_card, figures,
            tid(muted(period_words), "desk-period-figures"),
            ft.ResponsiveRow([
                ft.Container(ft.Column([section_title(t("report.by_status")), *status_rows], spacing=6),
                             col={"xs": 12, "sm": 6}),
                ft.Container(ft.Column([section_title(t("desk.active_by_category")), *category_rows], spacing=6),
                             col={"xs": 12, "sm": 6}),
            ]),
            *charts,
        ]
