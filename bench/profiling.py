"""Optional profiles of each phase (``python -m bench --profile DIR``): pyinstrument in the benchmark
process (the device side) and py-spy on the server process (``py-spy record --format raw``),
summarised as the functions with the most inclusive and self time. Profiling slows things down: the
figures of a profiled run are not the ones to quote.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["Profiles", "summarise_collapsed"]

_LINE = re.compile(r":\d+\)$")


def _py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def summarise_collapsed(path: Path, top: int = 30) -> str:
    """Inclusive and self sample shares per function of a py-spy raw (collapsed stacks) file."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        total += count
        frames = [_LINE.sub(")", f.strip()) for f in stack.split(";") if f.strip()]
        for f in set(frames):
            inclusive[f] += count
        if frames:
            own[frames[-1]] += count
    if not total:
        return "(no samples)\n"
    out = [f"{total} samples\n", "inclusive:"]
    out += [f"  {100 * c / total:5.1f}%  {f}" for f, c in inclusive.most_common(top)]
    out.append("self:")
    out += [f"  {100 * c / total:5.1f}%  {f}" for f, c in own.most_common(top)]
    return "\n".join(out) + "\n"


class Profiles:
    def __init__(self, directory: Path | None) -> None:
        self.dir = directory
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    @property
    def on(self) -> bool:
        return self.dir is not None

    @contextmanager
    def phase(self, name: str, server_pid: int | None = None, client: bool = True) -> Iterator[None]:
        if self.dir is None:
            yield
            return
        spy: subprocess.Popen[bytes] | None = None
        raw = self.dir / f"{name}.server.collapsed"
        tool = _py_spy()
        if server_pid is not None and tool:
            spy = subprocess.Popen([tool, "record", "--pid", str(server_pid), "--format", "raw", "--rate", "200",
                                    "--output", str(raw), "--nonblocking"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)  # let py-spy attach
        profiler = None
        if client:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.001)
            profiler.start()
        try:
            yield
        finally:
            if profiler is not None:
                profiler.stop()
                (self.dir / f"{name}.client.txt").write_text(
                    profiler.output_text(unicode=False, color=False, show_all=False))
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                try:
                    spy.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    spy.kill()
                if raw.exists():
                    (self.dir / f"{name}.server.txt").write_text(summarise_collapsed(raw))

    def note(self, name: str, text: str) -> None:
        if self.dir is not None:
            (self.dir / name).write_text(text)
