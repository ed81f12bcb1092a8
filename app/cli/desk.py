"""The coordinator's desk in the `outreach` CLI: overview and goal, exports, the aggregate report,
the national count, duplicates and merge, retention review, access requests and the audit log.
Thin: each command parses flags, calls `models.usecases.reports` / `models.usecases.exports` / `models.usecases.review`, and
prints. Every export of personal data asks for confirmation (or --yes) and says where it goes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
from datetime import date
from pathlib import Path
from typing import Any

from models.domain.vocab import AuditAction, RecordType
from models.errors import InvalidInput
from models.usecases import exports, reports, review

from .common import CliError, one_line, open_workspace, person_id, require_desk, say, short, words

__all__ = ["add_commands"]


def _ws(args: argparse.Namespace) -> Any:
    ws = open_workspace(args)
    require_desk(ws)
    return ws


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
        raise CliError(say("cli.export.confirm_needed"))
    return input(f"{question} {say('cli.yes_no')} ").strip().lower() in ("y", "yes", "j", "ja")


def cmd_overview(args: argparse.Namespace, out: Any) -> int:
    ws = _ws(args)
    if args.target is not None:
        reports.set_goal(ws, target=args.target, baseline=args.baseline)
    ov = reports.overview(ws, start=_date(args.start, "from"), end=_date(args.end, "to"), worker=args.worker)
    g = ov.goal

    def text() -> str:
        goal = (say("cli.overview.goal_reached", current=g.current, baseline=g.baseline, target=g.target)
                if g.remaining <= 0 else
                say("cli.overview.goal", current=g.current, baseline=g.baseline, target=g.target, n=g.remaining))
        t = words()
        lines = [
            goal,
            say("cli.overview.known", n=ov.persons_known) + "  "
            + "  ".join(f"{t.vocab('status', k)} {v}" for k, v in ov.by_status.items()),
            say("cli.overview.by_category") + " "
            + "  ".join(f"{t.vocab('category', k)} {v}" for k, v in ov.by_category.items() if v),
            say("cli.overview.met", week=ov.met_this_week, month=ov.met_this_month, year=ov.met_this_year),
            say("cli.overview.new_housed", new=ov.new_this_year, housed=ov.housed_this_year)
            + (" " + say("cli.overview.median", days=f"{ov.median_days_to_housed_this_year:.0f}")
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
        raise CliError(say("cli.export.inside_data"))
    if warn.exists and not args.force:
        raise CliError(say("cli.export.exists", path=path))
    note = " " + say("cli.export.synced", folder=warn.synced_folder) if warn.synced_folder else ""
    if not _confirm(args, say("cli.export.question", n=warn.rows, path=path) + note):
        return 1
    done = exports.write_export(ws, req, path, translate=words())
    out.emit({"path": str(path), "rows": done.rows}, say("cli.export.done", n=done.rows, path=path) + note)
    return 0


def cmd_report(args: argparse.Namespace, out: Any) -> int:
    ws = _ws(args)
    rep = exports.aggregate_report(ws, start=_date(args.start, "from"), end=_date(args.end, "to"), worker=args.worker)
    t = words()
    if args.html:
        Path(args.html).write_text(exports.aggregate_html(rep, translate=t), encoding="utf-8")
    if args.csv:
        Path(args.csv).write_bytes(exports.aggregate_csv(rep, translate=t))
    out.emit(_plain(rep), lambda: exports.aggregate_csv(rep, translate=t).decode("utf-8-sig"))
    return 0


def _category_words(value: str) -> str:
    t = words()
    return t("report.unknown") if value == exports.COUNT_UNKNOWN else t.vocab("category", value)


def cmd_count(args: argparse.Namespace, out: Any) -> int:
    ws = _ws(args)
    count = exports.national_count(ws, year=args.year, week=args.week)
    out.emit({"year": args.year, "week": args.week, "counts": count.counts, "total": count.total},
             lambda: say("cli.count.head", week=f"{args.year}-W{args.week:02d}", n=count.total) + "\n"
             + "\n".join(f"  {_category_words(k):<50} {v}" for k, v in count.counts.items()))
    return 0


def cmd_duplicates(args: argparse.Namespace, out: Any) -> int:
    ws = _ws(args)
    found = review.duplicate_suggestions(ws, min_score=args.min_score)
    persons = ws.index.records[RecordType.PERSON]

    def alias(pid: str) -> str:
        return one_line(str((persons.get(pid) or {}).get("alias") or ""))

    def text() -> str:
        if not found:
            return say("cli.duplicates.none")
        rows = [say("cli.duplicates.head")]
        rows += [f"{short(ws, 'person', d.person_a):<12} {alias(d.person_a):<26.26} "
                 f"{short(ws, 'person', d.person_b):<12} {alias(d.person_b):<26.26} {d.score:>5.0%}  "
                 + "; ".join(say(f"duplicate.{r}") for r in d.reasons) for d in found]
        return "\n".join(rows) + "\n" + say("cli.duplicates.next")
    out.emit([{**_plain(d), "alias_a": alias(d.person_a), "alias_b": alias(d.person_b)} for d in found], text)
    return 0


def cmd_merge(args: argparse.Namespace, out: Any) -> int:
    ws = _ws(args)
    res = review.merge_persons(ws, keep_id=person_id(ws, args.keep), drop_id=person_id(ws, args.drop))
    out.emit(_plain(res), say("cli.merge.done", contacts=res.contacts, follow_ups=res.follow_ups,
                              id=short(ws, "person", res.keep_id)))
    return 0


def cmd_retention(args: argparse.Namespace, out: Any) -> int:
    ws = _ws(args)
    if args.keep:
        review.keep_person(ws, person_id(ws, args.keep), reason=args.reason or "")
    items = review.retention_review(ws, months=args.months)

    def line(i: Any) -> str:
        since = (say("cli.retention.not_met_since", date=f"{i.since:%d-%m-%Y}") if i.last_contact
                 else say("cli.retention.never_met", date=f"{i.since:%d-%m-%Y}"))
        kept = (" " + say("cli.retention.kept", date=f"{i.kept_on:%d-%m-%Y}", reason=one_line(i.reason))
                if i.kept_on else "")
        return f"{short(ws, 'person', i.person_id):<12} {one_line(i.alias):<30.30} {since}{kept}"

    def text() -> str:
        if not items:
            return say("cli.retention.none", n=args.months)
        return "\n".join(line(i) for i in items) + "\n" + say("cli.retention.next")
    out.emit([_plain(i) for i in items], text)
    return 0


def cmd_access(args: argparse.Namespace, out: Any) -> int:
    ws = _ws(args)
    rep = review.access_request(ws, person_id(ws, args.person))
    # the audit details are stored in English (ids and counts): said in this run's language
    shown = dataclasses.replace(rep, audit_events=tuple({**e, "detail": detail_words(e.get("detail"))}
                                                        for e in rep.audit_events))
    out.emit(json.loads(review.access_json(rep)), lambda: review.access_text(shown, translate=words()))
    return 0


# What the layers write as an audit event's detail (English, ids and counts, never personal data),
# and the words for it; a detail of another shape is shown as it is.
_DETAILS: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p), k) for p, k in (
    (r"^access request: (?P<records>\d+) records, (?P<conflicts>\d+) conflicts$", "cli.detail.access"),
    (r"^merged (?P<id>\w+): (?P<contacts>\d+) contacts, (?P<follow_ups>\d+) follow-ups$", "cli.detail.merged"),
    (r"^retention: keep$", "cli.detail.retention_keep"),
    (r"^conflict resolved: (?P<field>\w+)$", "cli.detail.conflict_resolved"),
    (r"^csv (?P<kind>[\w_]+)(?P<rest>.*): (?P<rows>\d+) rows$", "cli.detail.export"),
    (r"^compare fingerprints before a device is let in: (?P<on>on|off)$", "cli.detail.compare"),
    (r"^device fingerprint compared: (?P<id>\w+)$", "cli.detail.compared"),
    (r"^device asked to retire: (?P<id>\w+)$", "cli.detail.retire"),
    (r"^device revoked: (?P<id>\w+); new key for (?P<n>\d+) devices$", "cli.detail.revoked"),
    (r"^(?P<n>\d+) records removed late$", "cli.detail.erased_late"),
    (r"^(?P<n>\d+) records$", "cli.detail.erased"),
    (r"^(?P<how>[\w ]+): (?P<n>\d+) shown$", "cli.detail.shown"),
    (r"^fields: (?P<fields>[\w, ]+)$", "cli.detail.fields"),
    (r"^device retired: (?P<id>\w+)$", "cli.detail.retired"),
))


_HOW = ("search", "list", "show")


def detail_words(detail: str | None) -> str:
    if not detail:
        return ""
    for pattern, key in _DETAILS:
        found = pattern.match(detail)
        if found:
            params = found.groupdict()
            if "kind" in params:
                params["kind"] = say(f"cli.export_kind.{params['kind']}")
            if "on" in params:
                params["on"] = say("cli.on") if params["on"] == "on" else say("cli.off")
            if "how" in params:  # a look-up: by a search, a list, a person opened
                params["how"] = say(f"cli.detail.how.{params['how']}") if params["how"] in _HOW else params["how"]
            if "fields" in params:  # the names of the fields an edit changed (never their values)
                t = words()
                params["fields"] = ", ".join(t(f"export.{f}") if t.has(f"export.{f}") else f
                                             for f in params["fields"].split(", "))
            return say(key, **params)
    return detail


def cmd_audit(args: argparse.Namespace, out: Any) -> int:
    ws = _ws(args)
    pid = person_id(ws, args.person) if args.person else None
    events = review.audit_log(ws, person_id=pid, actor=args.worker, action=args.action, limit=args.limit)
    t = words()

    def line(e: Any) -> str:
        what = t.vocab("record", e.target_type) if e.target_type else "-"
        target = short(ws, e.target_type.value, e.target_id) if e.target_type and e.target_id else ""
        return (f"{e.at:%d-%m-%Y %H:%M}  {one_line(e.actor):<16.16} {t.vocab('action', e.action):<18.18} "
                f"{what:<12.12} {target:<12} {one_line(detail_words(e.detail))}")
    out.emit([_plain(e) for e in events], lambda: "\n".join(line(e) for e in events) or say("cli.audit.none"))
    return 0


def add_commands(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    def add(name: str, handler: Any, help_text: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_text)
        sp.set_defaults(handler=handler)
        return sp

    def period(sp: argparse.ArgumentParser, *, worker: bool = True) -> None:
        sp.add_argument("--from", dest="start", help=say("cli.help.date"))
        sp.add_argument("--to", dest="end", help=say("cli.help.date"))
        if worker:  # the export files have no worker filter: a flag they would ignore is refused instead
            sp.add_argument("--worker", help=say("cli.help.worker_filter"))

    sp = add("overview", cmd_overview, say("cli.help.overview"))
    period(sp)
    sp.add_argument("--target", type=int, help=say("cli.help.target"))
    sp.add_argument("--baseline", type=int, help=say("cli.help.baseline"))
    sp = add("export", cmd_export, say("cli.help.export"))
    sp.add_argument("kind", choices=[k.value for k in exports.ExportKind])
    sp.add_argument("--out", required=True, help=say("cli.help.out"))
    sp.add_argument("--person")
    sp.add_argument("--year", type=int)
    sp.add_argument("--week", type=int, default=6)
    sp.add_argument("--yes", action="store_true", help=say("cli.help.yes"))
    sp.add_argument("--force", action="store_true", help=say("cli.help.force"))
    period(sp, worker=False)
    sp = add("report", cmd_report, say("cli.help.report"))
    period(sp)
    sp.add_argument("--html", help=say("cli.help.html"))
    sp.add_argument("--csv", help=say("cli.help.csv"))
    sp = add("count", cmd_count, say("cli.help.count"))
    sp.add_argument("--year", type=int, default=date.today().year)
    sp.add_argument("--week", type=int, default=6)
    sp = add("duplicates", cmd_duplicates, say("cli.help.duplicates"))
    sp.add_argument("--min-score", type=float, default=0.6)
    sp = add("merge", cmd_merge, say("cli.help.merge"))
    sp.add_argument("keep")
    sp.add_argument("drop")
    sp = add("retention", cmd_retention, say("cli.help.retention"))
    sp.add_argument("--months", type=int, default=24)
    sp.add_argument("--keep", metavar="PERSON", help=say("cli.help.keep"))
    sp.add_argument("--reason")
    sp = add("access", cmd_access, say("cli.help.access"))
    sp.add_argument("person")
    sp = add("audit", cmd_audit, say("cli.help.audit"))
    sp.add_argument("--person")
    sp.add_argument("--worker")
    sp.add_argument("--action", choices=[a.value for a in AuditAction])
    sp.add_argument("--limit", type=int, default=100)
