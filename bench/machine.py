"""What else the machine was doing: a benchmark on a shared 2-core box is only as good as its
quiet. `Noise` samples /proc/stat and this process tree's CPU time (os.times(): this process and
the children it has waited for, i.e. the server processes once stopped) and reports the share of
all cores that other processes used during the run. PostgreSQL's backends count as "other".
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from .procs import REPO_ROOT

__all__ = ["Noise", "git_revision"]


def _busy_jiffies() -> tuple[float, float] | None:
    try:
        parts = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    values = [int(x) for x in parts[:8]]
    total = sum(values)
    idle = values[3] + values[4]
    return (total - idle) / os.sysconf("SC_CLK_TCK"), total / os.sysconf("SC_CLK_TCK")


def _own() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class Noise:
    def __init__(self) -> None:
        self.start_wall = time.monotonic()
        self.start_busy = _busy_jiffies()
        self.start_own = _own()
        self.load_start = os.getloadavg()

    def report(self) -> dict[str, float]:
        wall = time.monotonic() - self.start_wall
        end = _busy_jiffies()
        out: dict[str, float] = {"loadavg_start": round(self.load_start[0], 2), "loadavg_end": round(os.getloadavg()[0], 2)}
        if self.start_busy and end and wall > 0:
            busy = end[0] - self.start_busy[0]
            own = _own() - self.start_own
            cpus = os.cpu_count() or 1
            out["other_cpu_share"] = round(max(0.0, busy - own) / (wall * cpus), 3)
            out["own_cpu_share"] = round(own / (wall * cpus), 3)
        return out


def git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
