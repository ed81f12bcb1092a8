"""`python -m bench`: the command line and the order of the figures. See docs/PERFORMANCE.md."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from . import limits
from .figures import DeviceRun
from .load import enroll, run_load, run_longpoll, wake_latencies
from .machine import Noise, git_revision
from .procs import REPO_ROOT, blob_server, create_team_cli, pg_schema, server_process, temp_dir
from .profiling import Profiles
from .stats import Figure, Results, percentile

__all__ = ["main", "build_parser"]

FULL_PERSONS = 1_000
FULL_CONTACTS = 100_000


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description="The Outreach benchmark (issue 6); see docs/PERFORMANCE.md.")
    parser.add_argument("--quick", action="store_true",
                        help="small data set (50 persons, 5,000 contacts), 50 devices, short load runs: under 60 s")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply the data set (full: 1,000 persons, 100,000 contacts; --scale 10 for 10x)")
    parser.add_argument("--devices", type=int, default=None, help="simulated devices (default 200; quick 50)")
    parser.add_argument("--team-size", type=int, default=8,
                        help="devices per team in the load run (default 8, the size of one outreach unit)")
    parser.add_argument("--think", type=float, default=2.0,
                        help="mean seconds between a device's sync cycles in the paced load run (default 2)")
    parser.add_argument("--duration", type=float, default=None, help="seconds of the paced load run (default 20; quick 4)")
    parser.add_argument("--pg", metavar="URL", default=os.environ.get("OUTREACH_TEST_PG_URL"),
                        help="also load-test on PostgreSQL (default: $OUTREACH_TEST_PG_URL)")
    parser.add_argument("--only", choices=("devices", "load"), default=None,
                        help="only the device figures, or only the server under many devices")
    parser.add_argument("--profile", metavar="DIR", type=Path, default=None,
                        help="write pyinstrument (device) and py-spy (server) profiles of each phase to DIR")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results.json")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (data files, logs)")
    return parser


def _terminate(_signum: int, _frame: object) -> None:
    raise SystemExit(143)  # unwinds the context managers: servers stopped, temp dir removed


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    quick = args.quick
    base = 0.05 if quick else 1.0
    persons = max(10, round(FULL_PERSONS * base * args.scale))
    contacts = max(100, round(FULL_CONTACTS * base * args.scale))
    devices = args.devices or (50 if quick else 200)
    duration = args.duration or (4.0 if quick else 20.0)
    scale = {"persons": persons, "contacts": contacts}
    results = Results(scale, "quick" if quick else "full")
    results.info.update({"devices": devices, "team_size": args.team_size, "think_s": args.think,
                         "load_seconds": duration, "postgres": bool(args.pg), "profiled": args.profile is not None})
    results.info["revision"] = git_revision()
    profiles = Profiles(args.profile)
    started = time.perf_counter()
    noise = Noise()
    print(f"Outreach benchmark ({results.mode}): {persons:,} persons, {contacts:,} contacts; "
          f"{devices} devices in teams of {args.team_size}; revision {results.info['revision']}", flush=True)
    if noise.load_start[0] > 0.5:
        print(f"  warning: the machine is busy before we start (load average {noise.load_start[0]:.2f})")

    with temp_dir(args.keep) as tmp, blob_server(tmp) as blob:
        if args.keep:
            print(f"  work dir: {tmp}")
        sizes = [300]
        failures: list[str] = []
        # --- the device figures, on one server with one team -------------------------------------
        if args.only != "load":
            with _phase("device figures", failures):
                sizes = device_figures(results, tmp, blob.url, profiles, persons, contacts, quick)
        # --- the server under many devices --------------------------------------------------------
        if args.only != "devices":
            with _phase("load on SQLite", failures):
                load_figures(results, "sqlite", None, tmp / "load-sqlite", devices, args, duration, sizes, profiles,
                             blob.url)
            if args.pg:
                with _phase("load on PostgreSQL", failures), pg_schema(args.pg) as url:
                    load_figures(results, "postgres", url, tmp / "load-pg", devices, args, duration, sizes,
                                 profiles, blob.url)
                with _phase("several server processes on PostgreSQL", failures), pg_schema(args.pg) as url:
                    process_figures(results, url, tmp / "procs-pg", devices, args, duration, sizes)
        results.info["failures"] = failures

    elapsed = time.perf_counter() - started
    results.info["machine_noise"] = noise.report()
    out: Path = args.out
    results.write(out, elapsed)
    print()
    print(results.table())
    print(f"\n{len(results.figures)} figures in {elapsed:.1f} s; written to {out}")
    other = results.info["machine_noise"].get("other_cpu_share", 0.0)
    if other > 0.1:
        print(f"warning: other processes used {other:.0%} of the machine's CPU during the run: figures are noisy")
    missed = [f.name for f in results.figures if f.met is False]
    if missed:
        print("targets missed: " + ", ".join(missed))
    if failures:
        print("FAILED: " + "; ".join(failures))
        return 1
    return 0


@contextmanager
def _phase(name: str, failures: list[str]) -> Iterator[None]:
    """A phase that fails is reported (traceback on stderr, named in results.json) and the run goes on."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - a benchmark reports what broke and carries on
        traceback.print_exc()
        failures.append(f"{name}: {type(exc).__name__}: {exc}")


def device_figures(results: Results, tmp: Path, blob_url: str, profiles: Profiles, persons: int, contacts: int,
                   quick: bool) -> list[int]:
    """Generation, push, pull, unlock, save, search, round trip. Returns the sealed op sizes."""
    with server_process(None, tmp / "server") as server:
        rtt = limits.http_rtt(blob_url)
        rtt_p50 = percentile(rtt, 50)
        results.add("limit.http_rtt.p50", rtt_p50 * 1000, "ms", note="tiny GET, bare uvicorn app, loopback")
        run = DeviceRun(results, tmp, server.url, server.pid, profiles, persons, contacts, quick)
        run.rtt_limit = 2 * rtt_p50 * 1000
        run.generate(create_team_cli(server.db_url, "Bench"))  # type: ignore[attr-defined]
        run.push()
        run.join_b()
        run.pull()
        device_limits(run, blob_url, tmp)
        run.unlock(repeats=2 if quick else 3)
        commit = limits.sqlite_commit(60 if quick else 200, b"x" * 400, tmp)
        run.save_limit = percentile(commit, 95) * 1000
        results.add("limit.sqlite_commit.p95", percentile(commit, 95) * 1000, "ms",
                    note="one-row write transaction, WAL + synchronous=FULL (the fsync)",
                    p50_ms=percentile(commit, 50) * 1000)
        run.save(100 if quick else 300)
        run.search(2 if quick else 5)
        run.round_trip(8 if quick else 40)
        server_log = (tmp / "server").glob("server-*.log")
        results.info["server_log_lines"] = sum(len(p.read_text(errors="replace").splitlines()) for p in server_log)
        for dev in (run.a, run.b):
            if dev is not None:
                dev.engine.close()
                dev.ws.close()
    return run.sealed_sizes or [300]


def device_limits(run: DeviceRun, blob_url: str, tmp: Path) -> None:
    """The limits of push and pull, and their ratios: HTTP of the same sizes + SQLite insert of the
    same number of plaintext rows."""
    r = run.results
    b = run.b
    assert b is not None
    rows = [json.dumps(v, default=str, ensure_ascii=False).encode()
            for table in b.ws.index.records.values() for v in table.values()]
    n = run.ops
    rows = (rows * (n // max(1, len(rows)) + 1))[:n]
    t_insert = limits.sqlite_insert(rows, tmp)
    t_pull_http = limits.http_replay(blob_url, run.pull_log)
    t_push_http = limits.http_replay(blob_url, run.push_log)
    down = sum(e.down for e in run.pull_log)
    up = sum(e.up for e in run.push_log)
    r.add("limit.sqlite_insert", n / t_insert, "rows/s",
          note=f"{n} plaintext rows (avg {sum(map(len, rows)) / max(1, n):.0f} B), one transaction")
    r.add("limit.http_pull_bytes", down / t_pull_http / 1e6, "MB/s",
          note=f"{len(run.pull_log)} GETs of the pull's response sizes, bare uvicorn")
    r.add("limit.http_push_bytes", up / t_push_http / 1e6, "MB/s",
          note=f"{len(run.push_log)} POSTs of the push's body sizes, bare uvicorn")
    pull_limit = n / (t_pull_http + t_insert)
    push_limit = n / (t_push_http + t_insert)
    for fig in r.figures:
        if fig.name == "pull.rate":
            _set_limit(fig, pull_limit, rate=True)
            fig.extra.update(limit_http_s=t_pull_http, limit_insert_s=t_insert)
        elif fig.name == "push.rate":
            _set_limit(fig, push_limit, rate=True)
            fig.extra.update(limit_http_s=t_push_http, limit_insert_s=t_insert)
    r.add("pull.ratio_to_limit", run.pull_seconds / (t_pull_http + t_insert), "x", target="<= 3",
          note="initial pull time / (transfer of the same bytes + insert of the same rows)")
    r.add("push.ratio_to_limit", run.push_seconds / (t_push_http + t_insert), "x",
          note="push time / (transfer of the same bytes + insert of the same rows)")
    # design floors: how much of each figure the design itself costs
    t_floor_pull = limits.pull_floor(run.op_bodies, tmp) * n / max(1, len(run.op_bodies))
    batch = max(1, round(n / max(1, sum(1 for e in run.push_log if e.method == "POST"))))
    t_floor_push = limits.push_floor(run.sealed_sizes, batch, tmp)
    r.add("floor.pull", n / (t_floor_pull + t_pull_http), "ops/s",
          note="per op: open (AES-GCM, zlib, json) + re-seal as a row + insert, plus the transfer")
    r.add("floor.push", n / (t_floor_push + t_push_http), "ops/s",
          note=f"server storage in an op-shaped table (ids in per-device order), {batch} ops per transaction, "
               "plain sqlite3, plus the transfer")
    r.add("pull.ratio_to_floor", (run.pull_seconds + run.fold_seconds) / (t_floor_pull + t_pull_http), "x",
          note="pull + fold (pull.usable_rate) over the design's own per-op work: the code's overhead")
    r.add("push.ratio_to_floor", run.push_seconds / (t_floor_push + t_push_http), "x")


def _set_limit(fig: Figure, limit: float, *, rate: bool) -> None:
    """Give a figure recorded before its limit was measured that limit and its ratio."""
    fig.limit = limit
    fig.limit_unit = fig.unit
    fig.ratio = (limit / fig.value) if rate else (fig.value / limit)


def load_figures(results: Results, label: str, db_url: str | None, workdir: Path, devices: int,
                 args: argparse.Namespace, duration: float, sizes: list[int], profiles: Profiles,
                 blob_url: str) -> None:
    with server_process(db_url, workdir) as server:
        start = time.perf_counter()
        teams = enroll(server.url, server.db_url, devices, args.team_size)  # type: ignore[attr-defined]
        enroll_s = time.perf_counter() - start
        scale = {"devices": devices, "team_size": args.team_size, "think_s": args.think, "seconds": duration}
        with profiles.phase(f"load-{label}", server.pid, client=False):
            res = run_load(teams, seconds=duration, think=args.think, payload_sizes=sizes, server_pid=server.pid,
                           warmup=min(2.0, duration / 4))
        target_p99 = "<= 250" if label == "sqlite" else None
        target_err = "<= 0" if label == "sqlite" else None
        results.add(f"load.{label}.rps", res.rps, "req/s", scale=scale,
                    note=f"{devices} devices, a push+pull cycle every ~{args.think:g} s each; enrolled in "
                         f"{enroll_s:.1f} s", server_cpu=res.server_cpu, client_cpu=res.client_cpu,
                    ops_pushed=res.ops_pushed, ops_pulled=res.ops_pulled)
        results.add(f"load.{label}.p50", res.p(50) * 1000, "ms", scale=scale,
                    push_p50_ms=res.p(50, "push") * 1000, pull_p50_ms=res.p(50, "pull") * 1000)
        results.add(f"load.{label}.p99", res.p(99) * 1000, "ms", scale=scale, target=target_p99,
                    push_p99_ms=res.p(99, "push") * 1000, pull_p99_ms=res.p(99, "pull") * 1000,
                    max_ms=res.p(100) * 1000)
        results.add(f"load.{label}.errors", res.errors, "requests", scale=scale, target=target_err,
                    kinds=res.error_kinds)
        results.add(f"load.{label}.server_cpu", res.server_cpu * 100, "% core", scale=scale,
                    note=f"the server process; the load generator used {res.client_cpu * 100:.0f}% of a core")
        # capacity: the same devices with no think time (closed loop)
        cap_seconds = max(3.0, duration / 2)
        with profiles.phase(f"capacity-{label}", server.pid, client=False):
            cap = run_load(teams, seconds=cap_seconds, think=0.0, payload_sizes=sizes, server_pid=server.pid,
                           warmup=1.0, seed=2)
        limit_rps = None
        if label == "sqlite":
            limit_rps, _ = limits.http_capacity(blob_url, min(devices, 200), 1.0 if args.quick else cap_seconds / 2)
        results.add(f"load.{label}.capacity", cap.rps, "req/s", scale={**scale, "think_s": 0},
                    limit=limit_rps, rate=True,
                    note="same devices, no think time (closed loop); limit: tiny GETs to a bare uvicorn app",
                    p50_ms=cap.p(50) * 1000, p99_ms=cap.p(99) * 1000, errors=cap.errors,
                    server_cpu=cap.server_cpu, client_cpu=cap.client_cpu)
        # online devices holding long-polls: what waiting costs
        if args.quick and label != "sqlite":
            return
        lp_seconds = max(3.0, duration / 2)
        with profiles.phase(f"longpoll-{label}", server.pid, client=False):
            lp = run_longpoll(teams, seconds=lp_seconds, server_pid=server.pid)
        results.add(f"load.{label}.longpoll_cpu", lp.server_cpu * 100, "% core", scale={**scale, "think_s": None},
                    note=f"server CPU while {lp.waiting} devices wait in long-polls (nothing to send)",
                    errors=lp.errors)
        results.add(f"load.{label}.longpoll_push_p50", percentile(lp.probe, 50) * 1000, "ms",
                    scale={**scale, "think_s": None},
                    note="one push meanwhile (every 0.5 s)", p99_ms=percentile(lp.probe, 99) * 1000, n=len(lp.probe))


def process_figures(results: Results, db_url: str, workdir: Path, devices: int, args: argparse.Namespace,
                    duration: float, sizes: list[int]) -> None:
    """Several server processes on one PostgreSQL (issue 18): how fast a long-poll on one process
    wakes for a push through another (LISTEN/NOTIFY), beside the same-process figure of the same run;
    and the paced load of `devices` devices through one server with two uvicorn workers."""
    rounds = 10 if args.quick else 40
    with server_process(db_url, workdir / "a") as first, server_process(db_url, workdir / "b") as second:
        coord, worker = enroll(first.url, db_url, 2, 2)[0]
        same, same_errors = wake_latencies(coord, first.url, worker, first.url, rounds=rounds)
        cross, cross_errors = wake_latencies(coord, second.url, worker, first.url, rounds=rounds)
    scale = {"rounds": rounds, "processes": 2}
    note = "long-poll on one server process, push of one op through another; from the push's start"
    beside = {"same_process_p50_ms": percentile(same, 50) * 1000, "same_process_p95_ms": percentile(same, 95) * 1000,
              "errors": cross_errors, "same_process_errors": same_errors}
    results.add("load.pg.xproc_wake.p50", percentile(cross, 50) * 1000, "ms", scale=scale, note=note, **beside)
    results.add("load.pg.xproc_wake.p95", percentile(cross, 95) * 1000, "ms", scale=scale, target="<= 100",
                note=note, max_ms=percentile(cross, 100) * 1000, **beside)
    results.add("load.pg.same_process_wake.p95", percentile(same, 95) * 1000, "ms", scale=scale,
                note="the same, long-poll and push through one process", errors=same_errors)
    with server_process(db_url, workdir / "workers", extra=["--workers", "2"]) as server:
        teams = enroll(server.url, db_url, devices, args.team_size)
        res = run_load(teams, seconds=duration, think=args.think, payload_sizes=sizes, server_pid=server.pid,
                       warmup=min(2.0, duration / 4), seed=3)
    scale = {"devices": devices, "team_size": args.team_size, "think_s": args.think, "seconds": duration,
             "workers": 2}
    results.add("load.pg.workers2.p99", res.p(99) * 1000, "ms", scale=scale, target="<= 250",
                note=f"{devices} devices through one server with 2 workers; errors: {res.errors}",
                errors=res.errors, kinds=res.error_kinds, rps=res.rps, p50_ms=res.p(50) * 1000,
                push_p99_ms=res.p(99, "push") * 1000, pull_p99_ms=res.p(99, "pull") * 1000,
                server_cpu=res.server_cpu, client_cpu=res.client_cpu)


if __name__ == "__main__":
    sys.exit(main())
