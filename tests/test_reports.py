"""The coordinator's overview figures (`models.usecases.reports`), each checked against hand-built data:
persons by status and category, persons met per ISO week / month / year (a person once, `not_found`
and anonymous contacts not met), new persons, housed and days to housed, the goal setting, the
monthly series (contacts, persons met, housed, homeless at month end, by category) and the worker
filter."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import pytest

from models.domain.vocab import RecordType
from models.errors import InvalidInput, VaultLocked
from models.usecases.reports import (
    CATEGORY_NONE,
    DEFAULT_BASELINE,
    DEFAULT_TARGET,
    SeriesKind,
    add_months,
    goal,
    iso_week_bounds,
    monthly_series,
    overview,
    period_figures,
    set_goal,
)
from models.workspace import Workspace

MakeWorkspace = Callable[..., Workspace]


@pytest.fixture
def ws(make_workspace: MakeWorkspace) -> Workspace:
    return make_workspace(worker_name="Mette")


def person(ws: Workspace, alias: str, **fields: Any) -> str:
    return ws.add_person({"alias": alias, **fields}).id


def contact(ws: Workspace, person_id: str | None, at: str, **fields: Any) -> str:
    return ws.add_contact({"at": at, "person_id": person_id, **fields}).id


# ============================================================================ known now
def test_persons_by_status_and_active_by_category(ws: Workspace) -> None:
    person(ws, "A", category="street")
    person(ws, "B", category="street")
    person(ws, "C", category="shelter")
    person(ws, "D")  # active, no category: known, not counted as homeless
    person(ws, "E", category="street", status="housed", status_date="2025-01-05")
    person(ws, "F", category="hotel", status="deceased", status_date="2025-02-01")
    o = overview(ws, today=date(2025, 3, 1))
    assert o.persons_known == 6
    assert o.by_status == {"active": 4, "housed": 1, "moved_away": 0, "deceased": 1, "closed": 0}
    assert o.by_category["street"] == 2 and o.by_category["shelter"] == 1 and o.by_category[CATEGORY_NONE] == 1
    assert sum(o.by_category.values()) == 4  # active persons only
    assert o.by_category["hotel"] == 0
    assert o.goal.current == 3  # active with a category


def test_deleted_persons_are_not_known(ws: Workspace) -> None:
    person(ws, "A", category="street")
    gone = person(ws, "B", category="street")
    ws.delete_record(RecordType.PERSON, gone)
    assert overview(ws, today=date(2025, 3, 1)).persons_known == 1


# ============================================================================ met
def test_persons_met_this_week_month_year_counted_once(ws: Workspace) -> None:
    today = date(2025, 3, 12)  # a Wednesday: ISO week 11 is 10-16 March
    a, b, c, d, e = (person(ws, x) for x in "ABCDE")
    contact(ws, a, "2025-03-10T08:00:00")
    contact(ws, a, "2025-03-11T22:00:00")
    contact(ws, a, "2025-03-16T23:59:00")  # Sunday: still this week
    contact(ws, b, "2025-03-09T10:00:00")  # the Sunday before: last ISO week, this month
    contact(ws, c, "2025-01-05T10:00:00")  # this year
    contact(ws, d, "2024-12-31T23:00:00")  # last year
    contact(ws, e, "2025-03-11T10:00:00", kind="not_found")  # looked for, not met
    contact(ws, None, "2025-03-11T10:00:00")  # anonymous
    o = overview(ws, today=today)
    assert (o.met_this_week, o.met_this_month, o.met_this_year) == (1, 2, 3)


def test_the_iso_week_crosses_the_new_year(ws: Workspace) -> None:
    a = person(ws, "A")
    contact(ws, a, "2024-12-30T10:00:00")  # Monday of ISO week 1 of 2025
    o = overview(ws, today=date(2025, 1, 1))
    assert (o.met_this_week, o.met_this_month, o.met_this_year) == (1, 0, 0)
    assert iso_week_bounds(2025, 1) == (date(2024, 12, 30), date(2025, 1, 5))
    assert iso_week_bounds(2026, 6) == (date(2026, 2, 2), date(2026, 2, 8))
    with pytest.raises(InvalidInput):
        iso_week_bounds(2025, 53)


# ============================================================================ new persons
def test_new_persons_by_first_contact_or_creation(ws: Workspace) -> None:
    old = person(ws, "Old", category="street")
    contact(ws, old, "2024-11-02T10:00:00")
    contact(ws, old, "2025-02-10T10:00:00")  # met in the period, but known since 2024
    new = person(ws, "New", category="shelter")
    contact(ws, new, "2025-02-11T10:00:00")
    contact(ws, new, "2025-02-12T10:00:00")
    later = person(ws, "Later")
    contact(ws, later, "2025-04-01T10:00:00")
    fig = period_figures(ws, start=date(2025, 2, 1), end=date(2025, 2, 28))
    assert (fig.contacts, fig.persons_met, fig.new_persons) == (3, 2, 1)
    assert fig.new_by_category["shelter"] == 1 and sum(fig.new_by_category.values()) == 1
    # a person with no contact is new on the day the record was created (today)
    person(ws, "Never met")
    today = date.today()
    assert period_figures(ws, start=today, end=today).new_persons == 1


# ============================================================================ housed
def test_housed_this_year_and_median_days_from_first_contact(ws: Workspace) -> None:
    spans = [("2025-01-01", "2025-01-11"), ("2025-02-01", "2025-03-03"), ("2025-01-01", "2025-01-20")]
    for i, (first, housed) in enumerate(spans):  # 10, 30 and 19 days
        pid = person(ws, f"H{i}", category="street", status="housed", status_date=housed)
        contact(ws, pid, f"{first}T12:00:00")
        contact(ws, pid, f"{housed}T09:00:00")
    last_year = person(ws, "Last year", category="street", status="housed", status_date="2024-12-31")
    contact(ws, last_year, "2024-06-01T10:00:00")
    person(ws, "No date", category="street", status="housed")  # when is unknown: not counted
    person(ws, "Active", category="street", status_date="2025-02-02")
    o = overview(ws, today=date(2025, 6, 1))
    assert o.housed_this_year == 3
    assert o.median_days_to_housed_this_year == 19.0
    fig = period_figures(ws, start=date(2025, 1, 1), end=date(2025, 1, 31))
    assert fig.housed == 2 and fig.median_days_to_housed == 14.5
    assert fig.housed_by_category["street"] == 2


# ============================================================================ goal
def test_goal_defaults_and_setting(ws: Workspace, passphrase: str) -> None:
    for i in range(3):
        person(ws, f"P{i}", category="street")
    g = goal(ws)
    assert (g.target, g.baseline, g.current) == (DEFAULT_TARGET, DEFAULT_BASELINE, 3) == (100, 169, 3)
    assert g.reached and g.remaining == 0
    set_goal(ws, target=2, baseline=10)
    g = goal(ws)
    assert (g.target, g.baseline, g.current, g.remaining) == (2, 10, 3, 1)
    assert g.progress == pytest.approx(7 / 8)
    ws.close()
    ws.unlock(passphrase)  # a stored setting, kept over a restart
    assert goal(ws).target == 2
    set_goal(ws, target=100)
    assert (goal(ws).target, goal(ws).baseline) == (100, 10)
    for bad in (-1, 2_000_000):
        with pytest.raises(InvalidInput):
            set_goal(ws, target=bad)


# ============================================================================ series
def test_homeless_at_month_end_is_reconstructed_from_contacts_and_status_dates(ws: Workspace) -> None:
    a = person(ws, "A", category="street")  # active all along
    contact(ws, a, "2025-01-10T10:00:00")
    b = person(ws, "B", category="street", status="housed", status_date="2025-02-20")
    contact(ws, b, "2024-12-01T10:00:00")
    c = person(ws, "C", category="shelter")  # first met in March
    contact(ws, c, "2025-03-05T10:00:00")
    d = person(ws, "D")  # no category: never counted
    contact(ws, d, "2025-01-03T10:00:00")
    e = person(ws, "E", category="hotel", status="moved_away")  # no date: taken as active until last seen
    contact(ws, e, "2025-01-05T10:00:00")
    contact(ws, e, "2025-02-10T10:00:00")
    f = person(ws, "F", category="street", status_date="2025-03-20")  # active again since 20 March
    contact(ws, f, "2025-01-02T10:00:00")
    today = date(2025, 4, 15)
    s = monthly_series(ws, SeriesKind.HOMELESS, start=date(2025, 1, 1), end=today, by_category=True, today=today)
    assert s.months == (date(2025, 1, 1), date(2025, 2, 1), date(2025, 3, 1), date(2025, 4, 1))
    assert s.totals == (3, 1, 3, 3)
    assert s.by_category["street"] == (2, 1, 2, 2)
    assert s.by_category["hotel"] == (1, 0, 0, 0)
    assert s.by_category["shelter"] == (0, 0, 1, 1)
    assert s.target == 100
    # the current month's point is today's count
    assert s.totals[-1] == overview(ws, today=today).goal.current


def test_monthly_contacts_persons_and_housed_by_category_and_worker(ws: Workspace) -> None:
    a = person(ws, "A", category="street")
    b = person(ws, "B", category="shelter")
    c = person(ws, "C", category="hotel", status="housed", status_date="2025-02-14")
    contact(ws, a, "2025-01-03T10:00:00", workers=["Mette"])
    contact(ws, a, "2025-01-20T10:00:00", workers=["Mette", "Ole"])
    contact(ws, None, "2025-01-21T10:00:00", workers=["Ole"])
    contact(ws, a, "2025-02-01T10:00:00", workers=["Ole"])
    contact(ws, b, "2025-02-02T10:00:00", workers=["Mette"])
    contact(ws, b, "2025-02-03T10:00:00", workers=["Mette"], kind="not_found")
    contact(ws, c, "2025-03-01T10:00:00", workers=["Ole"])  # outside the period
    kw: dict[str, Any] = {"start": date(2025, 1, 1), "end": date(2025, 2, 28), "today": date(2025, 3, 10)}
    contacts = monthly_series(ws, "contacts", by_category=True, **kw)
    assert contacts.totals == (3, 3)
    assert contacts.by_category["street"] == (2, 1) and contacts.by_category[CATEGORY_NONE] == (1, 0)
    assert contacts.by_category["shelter"] == (0, 2)
    met = monthly_series(ws, "persons_met", by_category=True, **kw)
    assert met.totals == (1, 2)
    assert met.by_category["street"] == (1, 1) and met.by_category["shelter"] == (0, 1)
    housed = monthly_series(ws, SeriesKind.HOUSED, **kw)
    assert housed.totals == (0, 1) and housed.by_category == {}
    # the worker filter: contacts the worker took part in (names compared without case or spaces)
    assert monthly_series(ws, "contacts", worker=" mette ", **kw).totals == (2, 2)
    assert monthly_series(ws, "persons_met", worker="Mette", **kw).totals == (1, 1)
    assert monthly_series(ws, "housed", worker="Mette", **kw).totals == (0, 0)  # C is Ole's
    assert monthly_series(ws, "housed", worker="Ole", **kw).totals == (0, 1)
    # default: the twelve months up to today
    assert len(monthly_series(ws, "contacts", today=date(2025, 3, 10)).months) == 12


def test_worker_filter_scopes_persons_by_contacts_or_icm_worker(ws: Workspace) -> None:
    a = person(ws, "A", category="street")
    b = person(ws, "B", category="street", icm_worker="Mette")
    person(ws, "C", category="street")
    contact(ws, a, "2025-01-03T10:00:00", workers=["Mette"])
    contact(ws, b, "2025-01-04T10:00:00", workers=["Ole"])
    o = overview(ws, today=date(2025, 1, 10), worker="Mette")
    assert (o.persons_known, o.goal.current, o.met_this_month, o.period.contacts) == (2, 2, 1, 1)
    o = overview(ws, today=date(2025, 1, 10))
    assert (o.persons_known, o.goal.current, o.met_this_month, o.period.contacts) == (3, 3, 2, 2)


def test_period_checks_and_calendar_helpers(ws: Workspace) -> None:
    with pytest.raises(InvalidInput):
        period_figures(ws, start=date(2025, 2, 1), end=date(2025, 1, 1))
    with pytest.raises(InvalidInput):
        overview(ws, today=date(2025, 1, 1), start=date(2025, 2, 1))
    assert add_months(date(2024, 2, 29), -12) == date(2023, 2, 28)
    assert add_months(date(2025, 1, 31), 1) == date(2025, 2, 28)
    assert add_months(date(2025, 6, 15), -24) == date(2023, 6, 15)


def test_figures_need_an_unlocked_workspace(ws: Workspace) -> None:
    ws.lock()
    with pytest.raises(VaultLocked):
        overview(ws)
    with pytest.raises(VaultLocked):
        monthly_series(ws, "contacts")
