"""The hybrid logical clock of one device. It owns the timestamp that orders every field write;
it must never go backwards, not across restarts (the store persists the last value) and not when
the wall clock jumps back. A timestamp is one int: milliseconds since the epoch << 16 | counter,
so that it sorts, serialises and compares as a plain number. Ties between devices are broken by
the device id in `merge`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["HLC", "hlc_ms"]

_COUNTER_BITS = 16
_COUNTER_MASK = (1 << _COUNTER_BITS) - 1


def hlc_ms(stamp: int) -> int:
    """The physical part of a timestamp, in milliseconds since the Unix epoch."""
    return stamp >> _COUNTER_BITS


class HLC:
    def __init__(self, last: int = 0, wall_ms: Callable[[], int] | None = None) -> None:
        self.last = last
        self._wall_ms = wall_ms or (lambda: time.time_ns() // 1_000_000)

    def now(self) -> int:
        """A timestamp greater than every one this clock has issued or seen."""
        wall = self._wall_ms() << _COUNTER_BITS
        self.last = wall if wall > self.last else self.last + 1
        return self.last

    def observe(self, stamp: int) -> None:
        """Move past a timestamp received from another device."""
        if stamp > self.last:
            self.last = stamp
