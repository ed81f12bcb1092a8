"""Charts of the coordinator's overview (flet-charts): a monthly bar chart, stacked by homeless
category when asked, and the goal's line (homeless persons known at each month's end against the
target). Pure controls: they take numbers and the words for them, never a service. Each chart
carries a semantics label that says its figures in words, since a canvas says nothing to a screen
reader.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import flet as ft
import flet_charts as fch

from .ui import tid

__all__ = ["CATEGORY_COLORS", "bar_chart", "goal_chart", "legend", "month_labels"]

# one colour a category, the same in every chart (CATEGORIES order; the last is "no category")
CATEGORY_COLORS: tuple[str, ...] = (
    ft.Colors.TEAL, ft.Colors.ORANGE, ft.Colors.INDIGO, ft.Colors.PINK, ft.Colors.LIGHT_GREEN,
    ft.Colors.BROWN, ft.Colors.CYAN, ft.Colors.DEEP_PURPLE, ft.Colors.AMBER, ft.Colors.BLUE_GREY,
)


def _nice_max(value: float) -> float:
    if value <= 5:
        return 5
    step = 10 ** (len(str(int(value))) - 1)
    return float((int(value / step) + 1) * step)


def _bottom(labels: Sequence[str]) -> fch.ChartAxis:
    every = max(1, len(labels) // 8)  # a phone has room for about eight month names
    return fch.ChartAxis(labels=[fch.ChartAxisLabel(value=i, label=ft.Text(text, size=11))
                                 for i, text in enumerate(labels) if i % every == 0 or i == len(labels) - 1],
                         label_size=26)


def bar_chart(identifier: str, summary: str, labels: Sequence[str], totals: Sequence[int], *,
              stacks: Sequence[Sequence[int]] | None = None, height: int = 220) -> ft.Control:
    """One bar a month; `stacks` (one list a category, CATEGORY_COLORS order) stacks each bar."""
    top = _nice_max(max(totals, default=0))
    groups = []
    for i, total in enumerate(totals):
        items = []
        if stacks:
            y = 0.0
            for c, series in enumerate(stacks):
                v = series[i] if i < len(series) else 0
                if v:
                    items.append(fch.BarChartRodStackItem(from_y=y, to_y=y + v,
                                                          color=CATEGORY_COLORS[c % len(CATEGORY_COLORS)]))
                    y += v
        rod = fch.BarChartRod(from_y=0, to_y=total, width=14, color=ft.Colors.PRIMARY, stack_items=items,
                              border_radius=3, tooltip=str(total))
        groups.append(fch.BarChartGroup(x=i, rods=[rod]))
    chart = fch.BarChart(
        groups=groups, max_y=top, interactive=True, height=height, expand=True,
        left_axis=fch.ChartAxis(label_size=36), bottom_axis=_bottom(labels),
        horizontal_grid_lines=fch.ChartGridLines(interval=max(1.0, top / 4), color=ft.Colors.OUTLINE_VARIANT,
                                                 width=1),
    )
    return tid(ft.Container(chart, height=height, padding=ft.Padding.only(top=8, right=8)), identifier, summary)


def goal_chart(identifier: str, summary: str, labels: Sequence[str], values: Sequence[int], *, target: int,
               baseline: int, height: int = 240, goal_words: str = "", now_words: str = "") -> ft.Control:
    """Homeless persons known at each month's end (a line), with the target and the starting point
    as flat lines."""
    top = _nice_max(max([*values, baseline, target], default=0))
    n = max(len(values), 1)
    series = [
        fch.LineChartData(points=[fch.LineChartDataPoint(x=i, y=v, tooltip=f"{now_words} {v}".strip())
                                  for i, v in enumerate(values)],
                          color=ft.Colors.PRIMARY, stroke_width=3, curved=False, point=True),
        fch.LineChartData(points=[fch.LineChartDataPoint(x=0, y=target, tooltip=f"{goal_words} {target}".strip()),
                                  fch.LineChartDataPoint(x=n - 1, y=target, tooltip=f"{goal_words} {target}".strip())],
                          color=ft.Colors.GREEN, stroke_width=2, dash_pattern=[6, 4]),
        fch.LineChartData(points=[fch.LineChartDataPoint(x=0, y=baseline), fch.LineChartDataPoint(x=n - 1, y=baseline)],
                          color=ft.Colors.OUTLINE, stroke_width=1, dash_pattern=[2, 4]),
    ]
    chart = fch.LineChart(
        data_series=series, min_y=0, max_y=top, min_x=0, max_x=max(n - 1, 1), height=height, expand=True,
        left_axis=fch.ChartAxis(label_size=36), bottom_axis=_bottom(labels),
        horizontal_grid_lines=fch.ChartGridLines(interval=max(1.0, top / 4), color=ft.Colors.OUTLINE_VARIANT,
                                                 width=1),
    )
    return tid(ft.Container(chart, height=height, padding=ft.Padding.only(top=8, right=8)), identifier, summary)


def legend(items: Sequence[tuple[str, str]]) -> ft.Control:
    """(colour, words) pairs in a wrapping row."""
    return ft.Row([ft.Row([ft.Container(width=12, height=12, bgcolor=color, border_radius=3),
                           ft.Text(words, size=12)], spacing=4, tight=True) for color, words in items],
                  wrap=True, spacing=12, run_spacing=4)


def month_labels(months: Sequence[date], names: Sequence[str]) -> list[str]:
    """`jan 26` style labels from the months' first days and the twelve short month names."""
    return [f"{names[m.month - 1]} {m.year % 100:02d}" for m in months]

