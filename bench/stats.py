"""Figures, percentiles, the printed table and `results.json`.

A figure is one number with its unit. Where the issue sets a target, the figure carries it and
whether it is met. Where a limit of the machine applies, the figure carries the limit and the ratio:
always "how many times the limit's cost", so 1.0 is as fast as the machine allows and 3.0 is three
times slower (for a rate: limit / value; for a time: value / limit).
"""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = ["Figure", "Results", "percentile", "summary"]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks."""
    if not values:
        return math.nan
    data = sorted(values)
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": max(values) if values else math.nan,
    }


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    scale: dict[str, Any]
    date: str
    target: str | None = None  # e.g. ">= 20000" or "<= 10"
    met: bool | None = None
    limit: float | None = None
    limit_unit: str | None = None
    ratio: float | None = None  # times the limit's cost (>= 1 is slower than the limit)
    note: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _check(value: float, target: str | None) -> bool | None:
    if target is None or value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    op, _, bound = target.partition(" ")
    b = float(bound)
    return value >= b if op == ">=" else value <= b if op == "<=" else value == b


class Results:
    def __init__(self, scale: dict[str, Any], mode: str) -> None:
        self.scale = scale
        self.mode = mode
        self.started = datetime.now().astimezone()
        self.figures: list[Figure] = []
        self.info: dict[str, Any] = {}

    def add(
        self,
        name: str,
        value: float,
        unit: str,
        *,
        target: str | None = None,
        limit: float | None = None,
        limit_unit: str | None = None,
        rate: bool = False,
        note: str | None = None,
        scale: dict[str, Any] | None = None,
        **extra: Any,
    ) -> Figure:
        ratio = None
        if limit is not None and value and not math.isnan(value) and limit > 0:
            ratio = (limit / value) if rate else (value / limit)
        fig = Figure(
            name=name,
            value=value,
            unit=unit,
            scale=dict(scale or self.scale),
            date=datetime.now().astimezone().isoformat(timespec="seconds"),
            target=target,
            met=_check(value, target),
            limit=limit,
            limit_unit=limit_unit or (unit if limit is not None else None),
            ratio=ratio,
            note=note,
            extra=extra,
        )
        self.figures.append(fig)
        elapsed = (datetime.now().astimezone() - self.started).total_seconds()
        print(f"  {_row(fig)}  [{elapsed:5.1f} s]", flush=True)
        return fig

    # ------------------------------------------------------------------ output
    def table(self) -> str:
        head = f"{'figure':<40} {'value':>12} {'unit':<10} {'target':>10} {'ok':>3} {'limit':>12} {'ratio':>7}"
        lines = [head, "-" * len(head)]
        lines += [_row(f) for f in self.figures]
        return "\n".join(lines)

    def markdown(self) -> str:
        lines = [
            "| figure | value | unit | target | met | limit | ratio to limit |",
            "|---|---:|---|---:|:-:|---:|---:|",
        ]
        for f in self.figures:
            met = "" if f.met is None else ("yes" if f.met else "**no**")
            limit = "" if f.limit is None else f"{_fmt(f.limit)} {f.limit_unit or ''}".strip()
            ratio = "" if f.ratio is None else f"{f.ratio:.2f}x"
            target = "" if f.target is None else f.target.replace(">=", "≥").replace("<=", "≤")
            lines.append(f"| `{f.name}` | {_fmt(f.value)} | {f.unit} | {target} | {met} | {limit} | {ratio} |")
        return "\n".join(lines)

    def write(self, path: Path, elapsed: float) -> None:
        doc = {
            "run": {
                "mode": self.mode,
                "scale": self.scale,
                "started": self.started.isoformat(timespec="seconds"),
                "elapsed_s": round(elapsed, 1),
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                },
                **self.info,
            },
            "figures": [_clean(asdict(f)) for f in self.figures],
        }
        path.write_text(json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n")


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in d.items() if v is not None and v != {}}
    for k, v in out.items():
        if isinstance(v, float):
            out[k] = None if math.isnan(v) else round(v, 4)
    return out


def _fmt(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def _row(f: Figure) -> str:
    ok = "" if f.met is None else ("yes" if f.met else "NO")
    limit = "" if f.limit is None else _fmt(f.limit)
    ratio = "" if f.ratio is None else f"{f.ratio:.2f}x"
    target = f.target or ""
    return f"{f.name:<40} {_fmt(f.value):>12} {f.unit:<10} {target:>10} {ok:>3} {limit:>12} {ratio:>7}"
