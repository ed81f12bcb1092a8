"""`python -m bench.report [results.json]`: the results as a Markdown table (for docs/PERFORMANCE.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .procs import REPO_ROOT
from .stats import Figure, Results


def markdown(path: Path) -> str:
    doc = json.loads(path.read_text())
    run = doc["run"]
    results = Results(run["scale"], run["mode"])
    for f in doc["figures"]:
        results.figures.append(Figure(**{k: f.get(k) for k in Figure.__dataclass_fields__ if k in f}))
    noise = run.get("machine_noise", {})
    head = (f"Run of {run['started']} ({run['mode']}, revision {run.get('revision', '?')}): "
            f"{run['scale']['persons']:,} persons, {run['scale']['contacts']:,} contacts; "
            f"{run.get('devices')} devices in teams of {run.get('team_size')}, think {run.get('think_s')} s; "
            f"{run['elapsed_s']} s in all. Other processes used {noise.get('other_cpu_share', 0):.0%} of the "
            f"CPU meanwhile (load average {noise.get('loadavg_start')} at the start).")
    return head + "\n\n" + results.markdown() + "\n"


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO_ROOT / "bench" / "results.json"
    print(markdown(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
