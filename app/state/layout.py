"""The screens' fixed choices and the layout rule: when a window counts as wide, how long a search
waits after a keystroke, the auto-lock and "not seen for" choices, the desk's periods (and the
days each covers), and the session's preferences. No I/O, no control.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

__all__ = ["WIDE_MIN_WIDTH", "SEARCH_PAUSE", "is_wide", "Preferences", "AUTOLOCK_CHOICES", "NOT_SEEN_CHOICES", "PERIOD_CHOICES", "period_bounds"]

WIDE_MIN_WIDTH = 600
# the pause after a keystroke before searching. None: a search takes ~12 ms at 1,000 persons
# (p95), so every keystroke searches at once and a result for text since changed is dropped; the
# 100 ms from keystroke to results (issue 4) go to the search and the round trip to the browser
SEARCH_PAUSE = 0.0
AUTOLOCK_CHOICES = (1, 2, 5, 10, 15, 30)
NOT_SEEN_CHOICES = (7, 14, 30, 90)


def is_wide(width: float | None) -> bool:
    """Under 600 px: one pane and a bottom bar; from 600 px: a rail and list beside detail."""
    return bool(width) and float(width or 0) >= WIDE_MIN_WIDTH



@dataclass
class Preferences:
    language: str = "da"
    autolock_minutes: int = 5


# ------------------------------------------------------------------------- the coordinator's desk
PERIOD_CHOICES = ("12m", "this_year", "last_year", "24m")


def period_bounds(period: str, today: date) -> tuple[date, date]:
    """The days a period choice of the desk covers (both ends included)."""
    if period == "this_year":
        return date(today.year, 1, 1), today
    if period == "last_year":
        return date(today.year - 1, 1, 1), date(today.year - 1, 12, 31)
    if period in ("12m", "24m"):
        months = 12 if period == "12m" else 24
        index = today.year * 12 + today.month - 1 - (months - 1)
        return date(index // 12, index % 12 + 1, 1), today
    raise ValueError(period)
