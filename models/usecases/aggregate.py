"""The aggregate report: the overview's figures for a period with no personal data (counts only;
the one name it can hold is the worker the coordinator filtered by), as CSV for Danish Excel and
as one printable, self-contained HTML page with the goal's chart.

It never holds a personal value and writes no file (the caller chooses where it goes).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from ..domain.vocab import Status
from .formats import Translate, fmt_date, fmt_decimal, stable_names
from .formats import csv_bytes as _csv_bytes
from .formats import text_cell as _text
from .formats import vocab_cell as _vocab
from .reports import (
    CATEGORIES,
    Goal,
    MonthlySeries,
    PeriodFigures,
    SeriesKind,
    _goal,
    _monthly_series,
    _period,
    _period_figures,
    _status,
    facts,
)

if TYPE_CHECKING:
    from ..workspace import Workspace

__all__ = ["AggregateReport", "aggregate_report", "aggregate_csv", "aggregate_html"]


# ========================================================================= aggregate report
@dataclass(frozen=True)
class AggregateReport:
    """The overview's figures for a period, with no personal data: counts only. The one name it
    can hold is the worker the coordinator filtered by."""

    made_on: date
    period: PeriodFigures
    persons_known: int  # now (the day the report is made)
    by_status: dict[str, int]
    active_by_category: dict[str, int]
    goal: Goal
    series: dict[SeriesKind, MonthlySeries]  # the period's months


def aggregate_report(ws: Workspace, *, start: date | None = None, end: date | None = None,
                     worker: str | None = None, today: date | None = None) -> AggregateReport:
    today = today or date.today()
    start, end = _period(start, end, today)
    f = facts(ws)
    scope = f.persons_of(worker)
    by_status = dict.fromkeys((s.value for s in Status), 0)
    active_by_category = dict.fromkeys(CATEGORIES, 0)
    for pid, p in scope.items():
        by_status[_status(p)] += 1
        if _status(p) == Status.ACTIVE.value:
            active_by_category[f.category(pid)] += 1
    series = {kind: _monthly_series(ws, f, kind, start=start, end=end, worker=worker, by_category=False,
                                    today=today) for kind in SeriesKind}
    return AggregateReport(made_on=today, period=_period_figures(f, start, end, worker), persons_known=len(scope),
                           by_status=by_status, active_by_category=active_by_category, goal=_goal(ws, f, worker),
                           series=series)


def _aggregate_sections(r: AggregateReport, t: Translate) -> list[tuple[str, list[list[str]]]]:
    """(heading, rows) blocks, the first row of each being its column headings."""
    p = r.period
    summary = [
        [t("report.figure"), t("report.value")],
        [t("report.period_start"), fmt_date(p.start)],
        [t("report.period_end"), fmt_date(p.end)],
        [t("report.made_on"), fmt_date(r.made_on)],
    ]
    if p.worker:
        summary.append([t("report.worker"), _text(p.worker)])
    summary += [
        [t("report.contacts"), str(p.contacts)],
        [t("report.persons_met"), str(p.persons_met)],
        [t("report.new_persons"), str(p.new_persons)],
        [t("report.housed"), str(p.housed)],
        [t("report.median_days_to_housed"), fmt_decimal(p.median_days_to_housed, 1)],
        [t("report.persons_known"), str(r.persons_known)],
        [t("report.homeless_now"), str(r.goal.current)],
        [t("report.target"), str(r.goal.target)],
        [t("report.baseline"), str(r.goal.baseline)],
    ]
    status = [[t("report.status"), t("report.persons_known")]] + [
        [_vocab(t, "status", s), str(n)] for s, n in r.by_status.items()]

    def cat(c: str) -> str:
        return t(f"category.{c}")

    categories = [[t("report.category"), t("report.active_now"), t("report.persons_met"), t("report.new_persons"),
                   t("report.housed")]] + [
        [cat(c), str(r.active_by_category.get(c, 0)), str(p.met_by_category.get(c, 0)),
         str(p.new_by_category.get(c, 0)), str(p.housed_by_category.get(c, 0))] for c in CATEGORIES]
    s = r.series
    months = s[SeriesKind.CONTACTS].months
    monthly = [[t("report.month"), t("report.contacts"), t("report.persons_met"), t("report.housed"),
                t("report.homeless_month_end")]] + [
        [m.strftime("%m-%Y"), str(s[SeriesKind.CONTACTS].totals[i]), str(s[SeriesKind.PERSONS_MET].totals[i]),
         str(s[SeriesKind.HOUSED].totals[i]), str(s[SeriesKind.HOMELESS].totals[i])] for i, m in enumerate(months)]
    return [(t("report.summary"), summary), (t("report.by_status"), status),
            (t("report.by_category"), categories), (t("report.by_month"), monthly)]


def aggregate_csv(report: AggregateReport, *, translate: Translate | None = None) -> bytes:
    """The aggregate report as one CSV for Danish Excel: blocks separated by an empty line, each
    starting with its heading. Holds counts only, so it is not audited as a personal export."""
    t = translate or stable_names
    rows: list[list[str]] = [[t("report.title")]]
    for heading, block in _aggregate_sections(report, t):
        rows += [[], [heading], *block]
    return _csv_bytes(rows)


_PRINT_CSS = """
@page { size: A4; margin: 18mm 16mm; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; color: #111;
       margin: 2rem auto; max-width: 60rem; padding: 0 1rem; font-size: 11pt; }
h1 { font-size: 18pt; margin: 0 0 .2rem; } h2 { font-size: 13pt; margin: 1.4rem 0 .4rem; }
p.meta { color: #444; margin: 0 0 1rem; }
table { border-collapse: collapse; width: 100%; margin-bottom: .6rem; }
th, td { border: 1px solid #bbb; padding: .25rem .5rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #eee; }
figure { margin: 0; } svg { width: 100%; height: auto; }
section { break-inside: avoid; page-break-inside: avoid; }
@media print { body { margin: 0; max-width: none; padding: 0; } thead { display: table-header-group; }
               a { color: inherit; text-decoration: none; } }
"""


def _svg_goal_chart(series: MonthlySeries, target: int, t: Translate) -> str:
    """The homeless curve against the target line, as inline SVG (no script, no external file)."""
    w, h, left, bottom, top = 640, 220, 40, 30, 10
    values = list(series.totals)
    if not values:
        return ""
    top_value = max([*values, target, 1])
    n = len(values)
    step = (w - left - 10) / max(n - 1, 1)

    def y(v: float) -> float:
        return top + (h - top - bottom) * (1 - v / top_value)

    points = " ".join(f"{left + i * step:.1f},{y(v):.1f}" for i, v in enumerate(values))
    labels = "".join(
        f'<text x="{left + i * step:.1f}" y="{h - 10}" font-size="10" text-anchor="middle">'
        f"{html.escape(m.strftime('%m-%y'))}</text>" for i, m in enumerate(series.months))
    return (
        f'<figure><svg viewBox="0 0 {w} {h}" role="img" aria-label="{html.escape(t("report.goal_chart"))}">'
        f'<line x1="{left}" y1="{y(0):.1f}" x2="{w - 10}" y2="{y(0):.1f}" stroke="#999"/>'
        f'<line x1="{left}" y1="{y(target):.1f}" x2="{w - 10}" y2="{y(target):.1f}" stroke="#2a7" '
        f'stroke-dasharray="6 4"/>'
        f'<text x="{left - 4}" y="{y(target) + 4:.1f}" font-size="10" text-anchor="end">{target}</text>'
        f'<text x="{left - 4}" y="{y(top_value) + 4:.1f}" font-size="10" text-anchor="end">{top_value}</text>'
        f'<polyline fill="none" stroke="#c33" stroke-width="2" points="{points}"/>{labels}</svg>'
        f"<figcaption>{html.escape(t('report.goal_chart'))}</figcaption></figure>"
    )


def aggregate_html(report: AggregateReport, *, translate: Translate | None = None) -> str:
    """The aggregate report as one self-contained, printable HTML page (inline CSS and SVG)."""
    t = translate or stable_names
    esc = html.escape
    parts = [
        "<!DOCTYPE html>", '<html lang="da"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(t('report.title'))}</title><style>{_PRINT_CSS}</style></head><body>",
        f"<h1>{esc(t('report.title'))}</h1>",
        f'<p class="meta">{esc(t("report.period"))}: {esc(fmt_date(report.period.start))} – '
        f'{esc(fmt_date(report.period.end))} · {esc(t("report.made_on"))}: {esc(fmt_date(report.made_on))}</p>',
    ]
    for heading, block in _aggregate_sections(report, t):
        head, body = block[0], block[1:]
        parts.append(f"<section><h2>{esc(heading)}</h2><table><thead><tr>")
        parts += [f"<th>{esc(c)}</th>" for c in head]
        parts.append("</tr></thead><tbody>")
        for row in body:
            parts.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>")
        parts.append("</tbody></table></section>")
    parts.append(f"<section><h2>{esc(t('report.goal'))}</h2>"
                 f"{_svg_goal_chart(report.series[SeriesKind.HOMELESS], report.goal.target, t)}</section>")
    parts.append("</body></html>")
    return "\n".join(parts)
