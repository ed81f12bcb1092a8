"""The coordinator's overview: figures computed on this device from the opened records (nothing
plaintext leaves it), as small frozen dataclasses that the UI draws and the exports print. It owns
the definitions of the unit's figures and the goal setting (target and starting point, stored as
non-personal device settings); it must never write a record, print or log personal data.

Definitions (one rule each, used everywhere):

- **Met**: a contact that names a person and whose kind is not `not_found`. A person met in a
  period is counted once however many contacts they had.
- **Contacts** (the monthly series and the period's count): every contact record, anonymous and
  `not_found` ones included: they are the team's work.
- **First seen** of a person: the earliest of the day their record was created (`created_at`, the
  first write's clock) and the day of their first contact of any kind (contacts entered after the
  fact may predate the record). A person is **new** in a period when first seen falls in it.
- **Housed** in a period: `status` is `housed` now and `status_date` falls in the period (the app
  sets `status_date` when the status changes). A housed person without a status date is not
  counted. **Days to housed**: from first seen to `status_date` (negative spans are skipped).
- **Homeless now**: `status` is `active` and a homeless category is set.
- **Homeless at a month's end** (the goal's series), reconstructed from what the record holds
  (only the current status and category are kept, not their history): the person was first seen on
  or before that day, has a category now, and was active on that day, i.e. either the status is
  `active` and its `status_date` (if any) is on or before that day, or the status is another one
  that changed after that day (`status_date` later than the day; without a status date, the person
  is taken as active until their last contact). The current month's point is today.
- **By category**: a person's current category (a contact: its person's); `none` when unset
  (anonymous contacts too).
- **Worker filter**: a worker is matched against the contact's `workers` list (names as typed,
  compared case- and space-insensitively), not the audit actor (the device user who typed the
  record). With a worker, contact figures count only contacts the worker took part in, and person
  figures only the worker's persons: those they ever took part in a contact with, or whose ICM
  worker they are.
- Weeks are ISO weeks (Monday to Sunday); months and years are calendar ones; all days are the
  device's local days; periods include both ends.

Why one module of about 531 lines: every figure is computed from one `Facts` by the definitions above;
split, a definition and the code that applies it would sit in different files.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NamedTuple

from ..domain.vocab import ContactKind, HomelessCategory, RecordType, Status
from ..errors import InvalidInput, VaultLocked

if TYPE_CHECKING:
    from ..workspace import Workspace

__all__ = [
    "CATEGORY_NONE",
    "CATEGORIES",
    "DEFAULT_TARGET",
    "DEFAULT_BASELINE",
    "SeriesKind",
    "ContactFact",
    "Facts",
    "Goal",
    "PeriodFigures",
    "Overview",
    "MonthlySeries",
    "facts",
    "goal",
    "set_goal",
    "overview",
    "period_figures",
    "monthly_series",
    "iso_week_bounds",
    "month_bounds",
    "add_months",
    "to_date",
    "to_datetime",
    "norm_worker",
]

CATEGORY_NONE = "none"  # persons (or contacts) with no homeless category
CATEGORIES: tuple[str, ...] = (*(c.value for c in HomelessCategory), CATEGORY_NONE)
DEFAULT_TARGET = 100
DEFAULT_BASELINE = 169
_TARGET_KEY = "goal_target"
_BASELINE_KEY = "goal_baseline"
_MAX_GOAL = 1_000_000
_NOT_FOUND = ContactKind.NOT_FOUND.value
_NO_WORKERS: frozenset[str] = frozenset()


class SeriesKind(StrEnum):
    CONTACTS = "contacts"  # contacts per month
    PERSONS_MET = "persons_met"  # unique persons met per month
    HOUSED = "housed"  # persons housed per month
    HOMELESS = "homeless"  # homeless persons known at each month's end (the goal's curve)


# ================================================================================== the facts
def _require_unlocked(ws: Workspace) -> None:
    if not ws.unlocked:
        raise VaultLocked("The data is locked: unlock it with your PIN or passphrase first.")


def to_datetime(value: Any) -> datetime | None:
    """A stored time (ISO text, datetime, or epoch milliseconds) as a datetime, None if absent."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000)
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def to_date(value: Any) -> date | None:
    """A stored day or time as a date (a time's local day), None if absent."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and len(value) == 10:
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    at = to_datetime(value)
    return at.date() if at else None


def _status(person: dict[str, Any]) -> str:
    return str(person.get("status") or Status.ACTIVE.value)


def norm_worker(name: str) -> str:
    return " ".join(name.casefold().split())


class ContactFact(NamedTuple):
    """One contact as the figures see it (a tuple: 100,000 of them are made for every overview)."""

    id: str
    person_id: str | None
    at: datetime
    day: date
    kind: str
    workers: frozenset[str]  # normalised names
    living: str | None = None  # where the person sleeps tonight, as the contact recorded it

    @property
    def met(self) -> bool:
        return self.person_id is not None and self.kind != _NOT_FOUND


@dataclass(frozen=True)
class Facts:
    """A snapshot of what the figures need, taken once from an unlocked workspace."""

    persons: dict[str, dict[str, Any]]
    contacts: tuple[ContactFact, ...]  # oldest first
    first_seen: dict[str, date]
    last_contact: dict[str, date]  # any kind
    workers_of: dict[str, frozenset[str]]  # person id -> every worker of their contacts

    def category(self, person_id: str | None) -> str:
        person = self.persons.get(person_id or "")
        return str(person.get("category") or CATEGORY_NONE) if person else CATEGORY_NONE

    def contacts_of(self, worker: str | None) -> list[ContactFact]:
        if not worker:
            return list(self.contacts)
        w = norm_worker(worker)
        return [c for c in self.contacts if w in c.workers]

    def in_scope(self, person_id: str, worker: str | None) -> bool:
        """Whether a person is one of `worker`'s (always, without a worker)."""
        if not worker:
            return True
        w = norm_worker(worker)
        icm = self.persons.get(person_id, {}).get("icm_worker")
        return w in self.workers_of.get(person_id, frozenset()) or (bool(icm) and norm_worker(str(icm)) == w)

    def persons_of(self, worker: str | None) -> dict[str, dict[str, Any]]:
        return {pid: p for pid, p in self.persons.items() if self.in_scope(pid, worker)}

    def housed_on(self, person_id: str) -> date | None:
        p = self.persons[person_id]
        if p.get("status") != Status.HOUSED.value:
            return None
        return to_date(p.get("status_date"))

    def homeless_on(self, person_id: str, day: date) -> bool:
        """Homeless and known to the unit on `day`, as far as the record tells (see the module doc)."""
        p = self.persons[person_id]
        if not p.get("category"):
            return False
        seen = self.first_seen.get(person_id)
        if seen is None or seen > day:
            return False
        changed = to_date(p.get("status_date"))
        if _status(p) == Status.ACTIVE.value:
            return changed is None or changed <= day
        if changed is not None:
            return changed > day
        last = self.last_contact.get(person_id, seen)
        return last > day


def facts(ws: Workspace) -> Facts:
    """The snapshot of an unlocked workspace's persons and contacts that every figure reads."""
    _require_unlocked(ws)
    recs = ws.index.records
    persons = {pid: p for pid, p in recs[RecordType.PERSON].items()}
    crews: dict[tuple[str, ...], frozenset[str]] = {}  # a team has few crews: normalise each once
    street = ContactKind.STREET.value
    keyed: list[tuple[datetime, str, ContactFact]] = []
    for cid, values in recs[RecordType.CONTACT].items():
        at = to_datetime(values.get("at"))
        if at is None:
            continue
        pid = values.get("person_id") or None
        if pid is not None and pid not in persons:
            pid = None  # a person erased or merged away: the contact stays, as an anonymous one
        names = values.get("workers")
        if names:
            crew = tuple(str(w) for w in names)
            workers = crews.get(crew)
            if workers is None:
                workers = crews[crew] = frozenset(norm_worker(w) for w in crew if w.strip())
        else:
            workers = _NO_WORKERS
        fact = ContactFact(cid, pid, at, at.date(), str(values.get("kind") or street), workers,
                           values.get("living") or None)
        keyed.append((at.replace(tzinfo=None) if at.tzinfo else at, cid, fact))
    keyed.sort()  # by time, then id (ids are unique: the facts themselves are never compared)
    contacts = [k[2] for k in keyed]
    first: dict[str, date] = {}
    last: dict[str, date] = {}
    workers_of: dict[str, set[str]] = {}
    for c in contacts:
        if c.person_id is None:
            continue
        first.setdefault(c.person_id, c.day)
        first[c.person_id] = min(first[c.person_id], c.day)
        last[c.person_id] = max(last.get(c.person_id, c.day), c.day)
        workers_of.setdefault(c.person_id, set()).update(c.workers)
    for pid, p in persons.items():
        created = to_date(p.get("created_at"))
        if created is not None and (pid not in first or created < first[pid]):
            first[pid] = created
    return Facts(persons=persons, contacts=tuple(contacts), first_seen=first, last_contact=last,
                 workers_of={k: frozenset(v) for k, v in workers_of.items()})


# ================================================================================== calendar
def iso_week_bounds(year: int, week: int) -> tuple[date, date]:
    """Monday and Sunday of ISO week `week` of `year`."""
    try:
        monday = date.fromisocalendar(year, week, 1)
    except ValueError:
        raise InvalidInput("week", f"{year} has no ISO week {week}") from None
    return monday, monday + timedelta(days=6)


def month_bounds(day: date) -> tuple[date, date]:
    first = day.replace(day=1)
    return first, add_months(first, 1) - timedelta(days=1)


def add_months(day: date, months: int) -> date:
    """The same day `months` calendar months later (or earlier), clamped to the month's end."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    month += 1
    for d in (day.day, 30, 29, 28):
        try:
            return date(year, month, min(day.day, d))
        except ValueError:
            continue
    raise AssertionError("unreachable")


def _months(start: date, end: date) -> list[date]:
    out = []
    m = start.replace(day=1)
    while m <= end:
        out.append(m)
        m = add_months(m, 1)
    return out


def _period(start: date | None, end: date | None, today: date) -> tuple[date, date]:
    start = start or date(today.year, 1, 1)
    end = end or today
    if start > end:
        raise InvalidInput("start", "the period starts after it ends")
    return start, end


# ====================================================================================== goal
@dataclass(frozen=True)
class Goal:
    """Homeless persons known now against the coordinator's target, from the starting point."""

    target: int
    baseline: int
    current: int

    @property
    def remaining(self) -> int:
        """How many fewer are needed to reach the target (0 once reached)."""
        return max(0, self.current - self.target)

    @property
    def reached(self) -> bool:
        return self.current <= self.target

    @property
    def progress(self) -> float:
        """Share of the way from baseline to target (0 at the start, 1 at the target; may go
        below 0 or above 1)."""
        span = self.baseline - self.target
        return 1.0 if span == 0 else (self.baseline - self.current) / span


def _goal_setting(ws: Workspace, key: str, default: int) -> int:
    raw = ws.setting(key)
    try:
        return int(raw) if raw is not None else default
    except ValueError:
        return default


def goal(ws: Workspace, *, worker: str | None = None) -> Goal:
    """The goal now: target and baseline from the settings, current = homeless persons known now."""
    return _goal(ws, facts(ws), worker)


def _goal(ws: Workspace, f: Facts, worker: str | None = None) -> Goal:
    current = sum(1 for p in f.persons_of(worker).values() if _status(p) == Status.ACTIVE.value and p.get("category"))
    return Goal(target=_goal_setting(ws, _TARGET_KEY, DEFAULT_TARGET),
                baseline=_goal_setting(ws, _BASELINE_KEY, DEFAULT_BASELINE), current=current)


def set_goal(ws: Workspace, *, target: int, baseline: int | None = None) -> None:
    """Store the target (and optionally the starting point) as non-personal device settings."""
    for name, value in (("target", target), ("baseline", baseline)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_GOAL:
            raise InvalidInput(name, f"must be a whole number between 0 and {_MAX_GOAL}")
    values: dict[str, int] = {_TARGET_KEY: target}
    if baseline is not None:
        values[_BASELINE_KEY] = baseline
    ws.set_settings(**values)


# =================================================================================== figures
def _by_category(ids: Iterable[str], f: Facts) -> dict[str, int]:
    out = dict.fromkeys(CATEGORIES, 0)
    for pid in ids:
        out[f.category(pid)] += 1
    return out


def _median_days(pairs: Iterable[tuple[date, date]]) -> float | None:
    spans = [(housed - seen).days for seen, housed in pairs if housed >= seen]
    return float(statistics.median(spans)) if spans else None


@dataclass(frozen=True)
class PeriodFigures:
    """What happened in a period (both ends included)."""

    start: date
    end: date
    worker: str | None
    contacts: int
    persons_met: int
    new_persons: int
    housed: int
    median_days_to_housed: float | None
    met_by_category: dict[str, int] = field(default_factory=dict)
    new_by_category: dict[str, int] = field(default_factory=dict)
    housed_by_category: dict[str, int] = field(default_factory=dict)


def _period_figures(f: Facts, start: date, end: date, worker: str | None) -> PeriodFigures:
    contacts = [c for c in f.contacts_of(worker) if start <= c.day <= end]
    met = {c.person_id for c in contacts if c.met and c.person_id}
    scope = f.persons_of(worker)
    new = [pid for pid in scope if start <= f.first_seen.get(pid, date.max) <= end]
    housed = []
    for pid in scope:
        day = f.housed_on(pid)
        if day is not None and start <= day <= end:
            housed.append((pid, day))
    return PeriodFigures(
        start=start, end=end, worker=worker, contacts=len(contacts), persons_met=len(met),
        new_persons=len(new), housed=len(housed),
        median_days_to_housed=_median_days((f.first_seen[pid], day) for pid, day in housed if pid in f.first_seen),
        met_by_category=_by_category(met, f), new_by_category=_by_category(new, f),
        housed_by_category=_by_category((pid for pid, _ in housed), f),
    )


def period_figures(ws: Workspace, *, start: date, end: date, worker: str | None = None) -> PeriodFigures:
    """Contacts, persons met, new persons, housed and days to housed in [start, end]."""
    if start > end:
        raise InvalidInput("start", "the period starts after it ends")
    return _period_figures(facts(ws), start, end, worker)


@dataclass(frozen=True)
class Overview:
    """The desk's first screen: the situation now, this week/month/year, the goal, and a period."""

    today: date
    worker: str | None
    persons_known: int
    by_status: dict[str, int]  # every status, zeros included
    by_category: dict[str, int]  # active persons by category (CATEGORY_NONE: no category)
    met_this_week: int
    met_this_month: int
    met_this_year: int
    new_this_year: int
    housed_this_year: int
    median_days_to_housed_this_year: float | None
    goal: Goal
    period: PeriodFigures


def overview(ws: Workspace, *, today: date | None = None, start: date | None = None, end: date | None = None,
             worker: str | None = None, snapshot: Facts | None = None) -> Overview:
    """The overview; the period defaults to this year up to today. `snapshot`: facts already
    taken (one `facts(ws)` serves an overview and its series)."""
    today = today or date.today()
    start, end = _period(start, end, today)
    f = snapshot or facts(ws)
    scope = f.persons_of(worker)
    by_status = dict.fromkeys((s.value for s in Status), 0)
    for p in scope.values():
        by_status[_status(p)] += 1
    active = [pid for pid, p in scope.items() if _status(p) == Status.ACTIVE.value]
    contacts = f.contacts_of(worker)

    def met_between(a: date, b: date) -> int:
        return len({c.person_id for c in contacts if c.met and a <= c.day <= b})

    week = iso_week_bounds(*today.isocalendar()[:2])
    month = month_bounds(today)
    year = (date(today.year, 1, 1), date(today.year, 12, 31))
    this_year = _period_figures(f, *year, worker)
    return Overview(
        today=today, worker=worker, persons_known=len(scope), by_status=by_status,
        by_category=_by_category(active, f),
        met_this_week=met_between(*week), met_this_month=met_between(*month), met_this_year=met_between(*year),
        new_this_year=this_year.new_persons, housed_this_year=this_year.housed,
        median_days_to_housed_this_year=this_year.median_days_to_housed,
        goal=_goal(ws, f, worker), period=_period_figures(f, start, end, worker),
    )


# ==================================================================================== series
@dataclass(frozen=True)
class MonthlySeries:
    """One value per month (`months` are the months' first days); `by_category` has one list per
    category (CATEGORIES order) when asked for, else it is empty."""

    kind: SeriesKind
    months: tuple[date, ...]
    totals: tuple[int, ...]
    by_category: dict[str, tuple[int, ...]] = field(default_factory=dict)
    target: int | None = None  # the goal's target, on the HOMELESS series


def monthly_series(ws: Workspace, kind: SeriesKind | str, *, start: date | None = None, end: date | None = None,
                   worker: str | None = None, by_category: bool = False,
                   today: date | None = None, snapshot: Facts | None = None) -> MonthlySeries:
    """A monthly series from `start`'s month to `end`'s (default: the 12 months up to today)."""
    return _monthly_series(ws, snapshot or facts(ws), SeriesKind(kind), start=start, end=end, worker=worker,
                           by_category=by_category, today=today or date.today())


def _monthly_series(ws: Workspace, f: Facts, kind: SeriesKind, *, start: date | None, end: date | None,
                    worker: str | None, by_category: bool, today: date) -> MonthlySeries:
    end = end or today
    start = start or add_months(end.replace(day=1), -11)
    if start > end:
        raise InvalidInput("start", "the period starts after it ends")
    months = _months(start, end)
    index = {(m.year, m.month): i for i, m in enumerate(months)}
    totals = [0] * len(months)
    cats = {c: [0] * len(months) for c in CATEGORIES}

    def count(i: int, category: str) -> None:
        totals[i] += 1
        cats[category][i] += 1

    if kind is SeriesKind.CONTACTS:
        for c in f.contacts_of(worker):
            i = index.get((c.day.year, c.day.month))
            if i is not None and start <= c.day <= end:
                count(i, f.category(c.person_id))
    elif kind is SeriesKind.PERSONS_MET:
        seen: set[tuple[int, str]] = set()
        for c in f.contacts_of(worker):
            i = index.get((c.day.year, c.day.month))
            if i is None or not c.met or not start <= c.day <= end or c.person_id is None:
                continue
            if (i, c.person_id) not in seen:
                seen.add((i, c.person_id))
                count(i, f.category(c.person_id))
    elif kind is SeriesKind.HOUSED:
        for pid in f.persons_of(worker):
            day = f.housed_on(pid)
            i = index.get((day.year, day.month)) if day else None
            if day is not None and i is not None and start <= day <= end:
                count(i, f.category(pid))
    else:
        scope = f.persons_of(worker)
        for i, m in enumerate(months):
            day = min(month_bounds(m)[1], today)
            if day < m:
                continue  # a month still to come
            for pid in scope:
                if f.homeless_on(pid, day):
                    count(i, f.category(pid))
    target = _goal_setting(ws, _TARGET_KEY, DEFAULT_TARGET) if kind is SeriesKind.HOMELESS else None
    return MonthlySeries(kind=kind, months=tuple(months), totals=tuple(totals),
                         by_category={c: tuple(v) for c, v in cats.items()} if by_category else {},
                         target=target)
