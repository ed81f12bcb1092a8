"""The coordinator's desk in the `outreach` CLI: overview and goal, exports, the aggregate report,
the national count, duplicates and merge, retention review, access requests and the audit log.
Thin: each command parses flags, calls `models.reports` / `models.exports` / `models.review`, and
prints. Every export of personal data asks for confirmation (or --yes) and says where it goes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from datetime import date
from pathlib import Path
from typing import Any

from models import exports, reports, review
from models.errors import InvalidInput
from models.vocab import AuditAction, RecordType

from .i18n import Translator

__all__ = ["add_commands"]


def _ws(args: argparse.Namespace) -> Any:
    from .cli import open_workspace, require_desk

    ws = open_workspace(args)
    require_desk(ws)
    return ws


def _person_id(ws: Any, typed: str) -> str:
    from .cli import person_id

    return person_id(ws, typed)


def _short(ws: Any, kind: str, rid: str | None) -> str:
    from .cli import short

    return short(ws, kind, rid)


def _line(text: str | None) -> str:
    from .cli import one_line

    return one_line(text)


def _say(key: str, **params: Any) -> str:
    from .cli import say

    return say(key, **params)


def _translator() -> Translator:
    """The app's translations (Danish unless OUTREACH_LANG=en): headings and values in files."""
    lang = os.environ.get("OUTREACH_LANG", "da")
    return Translator(lang if lang in ("da", "en") else "da")


def _date(text: str | None, flag: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(flag, f"not a date: use YYYY-MM-DD (got {text!r})") from None


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(obj).items()}
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    return obj


def _confirm(args: argparse.Namespace, question: str) -> bool:
    if args.yes:
        return True
    if not sys.stdin.isatty():
        from .cli import CliError

        raise CliError("this writes personal data to a file: confirm with --yes")
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes", "j", "ja")


def cmd_overview(args: argparse.Namespace, out: Any) -> int:
    ws = _ws(args)
    if args.target is not None:
        reports.set_goal(ws, target=args.target, baseline=args.baseline)
    ov = reports.overview(ws, start=_date(args.start, "from"), end=_date(args.end, "to"), worker=args.worker)
    g = ov.goal

    def text() -> str:
        goal = (_say("cli.overview.goal_reached", current=g.current, baseline=g.baseline, target=g.target)
                if g.remaining <= 0 else
                _say("cli.overview.goal", current=g.current, baseline=g.baseline, target=g.target, n=g.remaining))
        lines = [
            goal,
            f"Persons known: {ov.persons_known}  " + "  ".join(f"{k} {v}" for k, v in ov.by_status.items()),
            "Active by category: " + "  ".join(f"{k} {v}" for k, v in ov.by_category.items() if v),
            f"Met this week {ov.met_this_week}, this month {ov.met_this_month}, this year {ov.met_this_year}",
            f"New this year {ov.new_this_year}; housed this year {ov.housed_this_year}"
            + (f" (median {ov.median_days_to_housed_this_year:.0f} days from first contact)"
               if ov.median_days_to_housed_this_year is not None else ""),
        ]
        return "\n".join(lines)
    out.emit(_plain(ov), text)
    return 0


def cmd_export(args: argparse.Namespace, out: Any) -> int:
    ws = _ws(args)
    req = exports.ExportRequest(kind=args.kind, person_id=args.person, start=_date(args.start, "from"),
                                end=_date(args.end, "to"), year=args.year, week=args.week)
    path = Path(args.out).expanduser().resolve()
    warn = exports.export_warning(ws, req, path)
    if warn.inside_data_dir:
        raise InvalidInput("out", "never write plaintext next to the encrypted data: choose another folder")
    if warn.exists and not args.force:
        from .cli import CliError

        raise CliError(_say("cli.export.exists", path=path))
    note = f" It is inside a synced folder ({warn.synced_folder}): the file will leave this computer." \
        if warn.synced_folder else ""
    if not _confirm(args, f"Write {warn.rows} rows of personal data, unencrypted, to {path}?{note}"):
        return 1
    done = exports.write_export(ws, req, path, translate=_translator())
    out.emit({"path": str(path), "rows": done.rows},
             f"Wrote {done.rows} rows to {path}. It is not encrypted: delete it when done.{note}")
    return 0


def cmd_report(args: argparse.Namespace, out: Any) -> int:
    ws = _ws(args)
    rep = exports.aggregate_report(ws, start=_date(args.start, "from"), end=_date(args.end, "to"), worker=args.worker)
    t = _translator()
    if args.html:
        Path(args.html).write_text(exports.aggregate_html(rep, translate=t), encoding="utf-8")
    if args.csv:
        Path(args.csv).write_bytes(exports.aggregate_csv(rep, translate=t))
    out.emit(_plain(rep), lambda: exports.aggregate_csv(rep, translate=t).decode("utf-8-sig"))
    return 0


def cmd_count(args: argparse.Namespace, out: Any) -> int:
    ws = _ws(args)
    count = exports.national_count(ws, year=args.year, week=args.week)
    out.emit({"year": args.year, "week": args.week, "counts": count.counts, "total": count.total},
             lambda: f"Count week {args.year}-W{args.week:02d}: {count.total} persons\n"
             + "\n".join(f"  {k:<14} {v}" for k, v in count.counts.items()))
    return 0


def cmd_duplicates(args: argparse.Namespace, out: Any) -> int:
    ws = _ws(args)
    found = review.duplicate_suggestions(ws, min_score=args.min_score)
    persons = ws.index.records[RecordType.PERSON]

    def alias(pid: str) -> str:
        return _line(str((persons.get(pid) or {}).get("alias") or ""))

    def text() -> str:
        if not found:
            return _say("cli.duplicates.none")
        rows = [_say("cli.duplicates.head")]
        rows += [f"{_short(ws, 'person', d.person_a):<12} {alias(d.person_a):<26.26} "
                 f"{_short(ws, 'person', d.person_b):<12} {alias(d.person_b):<26.26} {d.score:>5.0%}  "
                 + "; ".join(_say(f"duplicate.{r}") for r in d.reasons) for d in found]
        return "\n".join(rows) + "\n" + _say("cli.duplicates.next")
    out.emit([{**_plain(d), "alias_a": alias(d.person_a), "alias_b": alias(d.person_b)} for d in found], text)
    return 0


def cmd_merge(args: argparse.Namespace, out: Any) -> int:
    ws = _ws(args)
    res = review.merge_persons(ws, keep_id=_person_id(ws, args.keep), drop_id=_person_id(ws, args.drop))
    out.emit(_plain(res), f"Merged: {res.contacts} contacts and {res.follow_ups} follow-ups moved to {res.keep_id}.")
    return 0


def cmd_retention(args: argparse.Namespace, out: Any) -> int:
    ws = _ws(args)
    if args.keep:
        review.keep_person(ws, _person_id(ws, args.keep), reason=args.reason or "")
    items = review.retention_review(ws, months=args.months)

    def line(i: Any) -> str:
        since = (_say("cli.retention.not_met_since", date=f"{i.since:%d-%m-%Y}") if i.last_contact
                 else _say("cli.retention.never_met", date=f"{i.since:%d-%m-%Y}"))
        kept = (" " + _say("cli.retention.kept", date=f"{i.kept_on:%d-%m-%Y}", reason=_line(i.reason))
                if i.kept_on else "")
        return f"{_short(ws, 'person', i.person_id):<12} {_line(i.alias):<30.30} {since}{kept}"

    def text() -> str:
        if not items:
            return _say("cli.retention.none", n=args.months)
        return "\n".join(line(i) for i in items) + "\n" + _say("cli.retention.next")
    out.emit([_plain(i) for i in items], text)
    return 0


def cmd_access(args: argparse.Namespace, out: Any) -> int:
    ws = _ws(args)
    rep = review.access_request(ws, _person_id(ws, args.person))
    out.emit(json.loads(review.access_json(rep)), lambda: review.access_text(rep, translate=_translator()))
    return 0


def cmd_audit(args: argparse.Namespace, out: Any) -> int:
    ws = _ws(args)
    pid = _person_id(ws, args.person) if args.person else None
    events = review.audit_log(ws, person_id=pid, actor=args.worker, action=args.action, limit=args.limit)
    out.emit([_plain(e) for e in events],
             lambda: "\n".join(f"{e.at:%d-%m-%Y %H:%M}  {e.actor:<16.16} {e.action.value:<7} "
                               f"{(e.target_type.value if e.target_type else '-'):<8} {e.target_id or ''} "
                               f"{e.detail or ''}" for e in events) or "No audit events.")
    return 0


def add_commands(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    def add(name: str, handler: Any, help_text: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_text)
        sp.set_defaults(handler=handler)
        return sp

    def period(sp: argparse.ArgumentParser, *, worker: bool = True) -> None:
        sp.add_argument("--from", dest="start", help="YYYY-MM-DD")
        sp.add_argument("--to", dest="end", help="YYYY-MM-DD")
        if worker:  # the export files have no worker filter: a flag they would ignore is refused instead
            sp.add_argument("--worker", help="only contacts this worker took part in")

    sp = add("overview", cmd_overview, "the figures against the goal")
    period(sp)
    sp.add_argument("--target", type=int, help="set the goal (default 100)")
    sp.add_argument("--baseline", type=int, help="set the starting point (default 169)")
    sp = add("export", cmd_export, "write persons, contacts or follow-ups as CSV for Danish Excel")
    sp.add_argument("kind", choices=[k.value for k in exports.ExportKind])
    sp.add_argument("--out", required=True, help="the file to write")
    sp.add_argument("--person")
    sp.add_argument("--year", type=int)
    sp.add_argument("--week", type=int, default=6)
    sp.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    sp.add_argument("--force", action="store_true", help="replace the file if it is there")
    period(sp, worker=False)
    sp = add("report", cmd_report, "the aggregate report (no personal data) as CSV or HTML")
    period(sp)
    sp.add_argument("--html", help="also write a printable page here")
    sp.add_argument("--csv", help="also write the CSV here")
    sp = add("count", cmd_count, "the national homeless count for a week, each person once")
    sp.add_argument("--year", type=int, default=date.today().year)
    sp.add_argument("--week", type=int, default=6)
    sp = add("duplicates", cmd_duplicates, "persons probably registered twice")
    sp.add_argument("--min-score", type=float, default=0.6)
    sp = add("merge", cmd_merge, "merge a duplicate person into another")
    sp.add_argument("keep")
    sp.add_argument("drop")
    sp = add("retention", cmd_retention, "persons not met for a long time (GDPR retention review)")
    sp.add_argument("--months", type=int, default=24)
    sp.add_argument("--keep", metavar="PERSON", help="keep this person, with --reason")
    sp.add_argument("--reason")
    sp = add("access", cmd_access, "everything stored about one person (GDPR art. 15)")
    sp.add_argument("person")
    sp = add("audit", cmd_audit, "who read, changed, exported or erased what")
    sp.add_argument("--person")
    sp.add_argument("--worker")
    sp.add_argument("--action", choices=[a.value for a in AuditAction])
    sp.add_argument("--limit", type=int, default=100)
