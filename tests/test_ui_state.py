"""The app's rules that need no I/O and no browser: what a worker may type, what the sync chip
says, which screen a route is, which layout a width gets."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from app.state import (
    PERIOD_CHOICES,
    ContactDraft,
    PersonDraft,
    PlaceDraft,
    SyncView,
    chip_model,
    is_wide,
    parse_count,
    parse_date,
    parse_when,
    period_bounds,
)
from app.ui.router import match
from app.ui.views.lock import LockScreen
from app.ui.views.new_contact import NewContactScreen
from app.ui.views.people import PersonEditScreen
from app.ui.views.shell import destinations
from app.ui.views.today import TodayScreen

NOW = datetime(2026, 11, 25, 21, 14)


@pytest.mark.parametrize("text", ["24-12-2026", "24.12.2026", "24/12/2026", "2026-12-24", " 24-12-26 "])
def test_dates_as_workers_write_them(text: str) -> None:
    assert parse_date(text) == date(2026, 12, 24)


@pytest.mark.parametrize("text", ["31-02-2026", "tomorrow", "24-13-2026", "2026/12/24x"])
def test_impossible_dates_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_date(text)


def test_empty_date_is_none_and_when_parses_time() -> None:
    assert parse_date("  ") is None
    assert parse_when("25-11-2026 21.14") == NOW
    with pytest.raises(ValueError):
        parse_when("25-11-2026")


def test_a_contact_needs_someone() -> None:
    draft = ContactDraft()
    assert draft.check(NOW) == {"person": "errors.choose_person"}
    draft.choose_person(None, anonymous=True)
    assert draft.check(NOW) == {}
    assert draft.payload(NOW)["person_id"] is None
    draft.choose_person(None, new_alias="  Store Søren ")
    assert draft.new_person_alias == "Store Søren" and draft.has_person


def test_contact_problems_are_named_by_field() -> None:
    draft = ContactDraft(anonymous=True, follow_up_text="31-02-2027", when_text="25-11-2026 25:99")
    assert draft.check(NOW) == {"follow_up": "errors.date_format", "when": "errors.datetime_format"}
    draft.follow_up_text = "24-11-2026"
    draft.when_text = (NOW + timedelta(hours=2)).strftime("%d-%m-%Y %H:%M")
    assert draft.check(NOW) == {"follow_up": "errors.date_past", "when": "errors.in_future"}


def test_contact_payload() -> None:
    draft = ContactDraft(person_id="a" * 32, place_id="b" * 32, services={"food", "drink"}, note="  hej ",
                         follow_up_text="01-12-2026")
    body = draft.payload(NOW)
    assert body["at"] == "2026-11-25T21:14"
    assert body["services"] == ["drink", "food"]
    assert body["note"] == "hej" and body["follow_up"] == "2026-12-01"


def test_person_form_checks() -> None:
    draft = PersonDraft(alias=" ", birth_year="nineteen", cpr="123", consent_date="32-01-2026")
    assert draft.check(date(2026, 11, 25)) == {"alias": "errors.required", "birth_year": "errors.year_range",
                                               "cpr": "errors.cpr", "consent_date": "errors.date_format"}
    ok = PersonDraft(alias="Lange Peter", birth_year="1971", cpr="010171-1234", languages="dansk, polsk")
    assert ok.check(date(2026, 11, 25)) == {}
    assert ok.payload()["languages"] == ["dansk", "polsk"] and ok.payload()["birth_year"] == 1971


def test_place_form_checks() -> None:
    assert PlaceDraft("", "").check() == {"name": "errors.required"}
    assert PlaceDraft("Nørreport St.", "City").payload() == {"name": "Nørreport St.", "zone": "City"}


@pytest.mark.parametrize(("view", "key", "tone"), [
    (SyncView(joined=False), "sync.not_joined", "idle"),
    (SyncView(joined=True, running=True), "sync.running", "busy"),
    (SyncView(joined=True, device_status="pending"), "sync.device_pending", "waiting"),
    (SyncView(joined=True, online=False, pending_ops=3), "sync.offline_waiting", "offline"),
    (SyncView(joined=True, offline_error=True, error_key="errors.offline"), "sync.offline", "offline"),
    (SyncView(joined=True, error_key="errors.server_fault"), "errors.server_fault", "error"),
    (SyncView(joined=True, pending_ops=2), "sync.waiting", "waiting"),
    (SyncView(joined=True, last_success=NOW), "sync.synced_now", "ok"),
    (SyncView(joined=True, last_success=NOW - timedelta(minutes=2)), "sync.synced_ago", "ok"),
    (SyncView(joined=True, last_success=NOW - timedelta(hours=2)), "sync.synced_at", "ok"),
    (SyncView(joined=True), "sync.never", "idle"),
    # a first sync took a checkpoint's first tier: usable, and honest that older history is coming
    (SyncView(joined=True, running=True, history_pending=True), "sync.history_loading", "busy"),
    (SyncView(joined=True, history_pending=True, last_success=NOW), "sync.history_pending", "waiting"),
    (SyncView(joined=True, history_pending=True, online=False), "sync.offline", "offline"),
])
def test_the_chip_says_the_truth(view: SyncView, key: str, tone: str) -> None:
    model = chip_model(view, now=NOW)
    assert (model.key, model.tone) == (key, tone)


def test_synced_says_how_long_ago_the_last_exchange_went_well() -> None:
    assert chip_model(SyncView(joined=True, last_success=NOW - timedelta(minutes=2, seconds=5)), now=NOW).params == {
        "n": 2}
    assert chip_model(SyncView(joined=True, last_success=NOW - timedelta(hours=3)), now=NOW).params == {
        "time": (NOW - timedelta(hours=3)).strftime("%H:%M")}


def test_layout_breakpoint() -> None:
    assert not is_wide(412) and not is_wide(599) and is_wide(600) and is_wide(1280) and not is_wide(None)


def test_routes() -> None:
    pid = "0123456789abcdef0123456789abcdef"
    found = match(f"/people/{pid}/edit")
    assert found is not None and found[0].factory is PersonEditScreen and found[1] == {"id": pid}
    found = match(f"/contact/new?person={pid}")
    assert found is not None and found[0].factory is NewContactScreen and found[1] == {"person": pid}
    assert match("/today")[0].factory is TodayScreen  # type: ignore[index]
    assert match("/lock")[0].factory is LockScreen  # type: ignore[index]
    assert match("/people/not-an-id") is None
    assert match("/nowhere") is None


def test_desk_routes_are_the_coordinators() -> None:
    for route in ("/desk", "/desk/devices", "/desk/review", "/desk/privacy", "/desk/reports"):
        found = match(route)
        assert found is not None and found[0].coordinator_only, route
    found = match("/desk/privacy?person=0123456789abcdef0123456789abcdef")
    assert found is not None and found[1] == {"person": "0123456789abcdef0123456789abcdef"}
    assert not match("/today")[0].coordinator_only  # type: ignore[index]
    assert [d[0] for d in destinations(coordinator=True)] == ["today", "people", "places", "desk", "settings"]
    assert "desk" not in [d[0] for d in destinations(coordinator=False)]


@pytest.mark.parametrize(("period", "start", "end"), [
    ("12m", date(2026, 1, 1), date(2026, 12, 1)),
    ("24m", date(2025, 1, 1), date(2026, 12, 1)),
    ("this_year", date(2026, 1, 1), date(2026, 12, 1)),
    ("last_year", date(2025, 1, 1), date(2025, 12, 31)),
])
def test_desk_periods(period: str, start: date, end: date) -> None:
    assert period_bounds(period, date(2026, 12, 1)) == (start, end)
    assert set(PERIOD_CHOICES) == {"12m", "24m", "this_year", "last_year"}


def test_desk_periods_cross_the_new_year() -> None:
    assert period_bounds("12m", date(2027, 3, 15)) == (date(2026, 4, 1), date(2027, 3, 15))
    with pytest.raises(ValueError):
        period_bounds("forever", date(2027, 3, 15))


@pytest.mark.parametrize("text", ["", "abc", "-1", "1.5", "1000001"])
def test_counts_typed_by_a_coordinator_are_checked(text: str) -> None:
    with pytest.raises(ValueError):
        parse_count(text, low=0, high=1_000_000)


def test_counts_typed_by_a_coordinator() -> None:
    assert parse_count(" 99 ", low=0, high=1_000_000) == 99
