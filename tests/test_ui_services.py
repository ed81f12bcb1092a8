"""The app's facade over the service layer, without a browser: forms to records, records to the
rows the screens show, errors to words at fields, and the sync scheduler's bookkeeping."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from conftest import damage_on_disk

from app.i18n import Translator
from app.services import AppConfig, Problem, Services, explain
from app.state import ContactDraft, PersonDraft, PlaceDraft, SyncView
from models.errors import InvalidInput, StoreError, Throttled, WrongPassphrase
from sync.errors import CodeInvalid, KeyRefused, Offline, RevocationUnproven

PIN = "246810"


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    s = Services(AppConfig(data_dir=tmp_path / "device", fast_kdf=True))
    yield s
    run(s.close())


def run(coro):  # type: ignore[no-untyped-def]
    """asyncio.run in a thread of its own: Playwright's sync API may hold this thread's loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def test_a_new_device_then_unlock(services: Services) -> None:
    assert not run(services.has_workspace())
    run(services.create_workspace(PIN, "Kim"))
    assert services.unlocked and run(services.has_workspace())
    run(services.lock())
    assert not services.unlocked
    with pytest.raises(WrongPassphrase):
        run(services.unlock("000000"))
    run(services.unlock(PIN))
    assert services.unlocked


def test_saving_a_contact_with_a_new_person_and_place_in_one_go(services: Services) -> None:
    run(services.create_workspace(PIN))
    # today and before the second contact below, also just after midnight
    now = datetime.now()
    earlier = max(now - timedelta(minutes=5), now.replace(hour=0, minute=0, second=0, microsecond=0))
    draft = ContactDraft(services={"food"}, note="Talte om bolig", follow_up_text=date.today().strftime("%d-%m-%Y"),
                         when_text=earlier.strftime("%d-%m-%Y %H:%M"))
    draft.choose_person(None, new_alias="Lange Peter")
    draft.choose_place(None, new_name="Nørreport St.")
    run(services.save_contact(draft))

    today = run(services.today())
    assert [c.person_alias for c in today.contacts] == ["Lange Peter"]
    assert today.contacts[0].place_name == "Nørreport St." and today.contacts[0].services == ("food",)
    assert [f.person_alias for f in today.follow_ups] == ["Lange Peter"]
    assert not today.joined

    # the same place typed again is the same place
    again = ContactDraft(anonymous=True)
    again.choose_place(None, new_name="nørreport st.")
    run(services.save_contact(again))
    places = run(services.places())
    assert [p.name for p in places] == ["Nørreport St."]
    assert places[0].last_alias is None  # the latest contact there was anonymous

    persons, total = run(services.persons(text="peter"))
    assert total == 1 and persons[0].alias == "Lange Peter" and persons[0].last_contact is not None
    detail = run(services.person_detail(persons[0].id))
    assert len(detail.contacts) == 1 and detail.contacts[0].note == "Talte om bolig"
    assert run(services.place_hint(persons[0].id)) == places[0].id
    choices = run(services.contact_choices())
    assert choices.suggested_place_id == places[0].id  # the worker is probably still there


def test_bad_input_saves_nothing(services: Services) -> None:
    run(services.create_workspace(PIN))
    before = run(services.device_info()).pending_ops
    draft = ContactDraft(anonymous=True)
    draft.choose_place("f" * 32, "gone")  # a place that does not exist
    with pytest.raises(InvalidInput):
        run(services.save_contact(draft))
    assert run(services.device_info()).pending_ops == before
    assert run(services.today()).contacts == []


def test_person_and_place_forms(services: Services) -> None:
    run(services.create_workspace(PIN))
    pid = run(services.add_person(PersonDraft(alias="Store Søren", birth_year="1970", category="street")))
    run(services.edit_person(pid, PersonDraft(alias="Store Søren", status="housed")))
    detail = run(services.person_detail(pid))
    assert detail.person.status.value == "housed" and detail.person.status_date == date.today()
    place = run(services.add_place(PlaceDraft("Halmtorvet", "Vesterbro")))
    assert run(services.place_detail(place)).place.zone == "Vesterbro"
    found, total = run(services.persons(text="soeren"))
    assert total == 1 and found[0].id == pid
    _none, total = run(services.persons(status="active"))
    assert total == 0


def test_preferences_before_and_after_the_device_exists(services: Services) -> None:
    run(services.set_preferences(language="en"))
    run(services.create_workspace(PIN))
    run(services.set_preferences(autolock_minutes=2))
    fresh = Services(services.config)
    prefs = run(fresh.preferences())
    assert (prefs.language, prefs.autolock_minutes) == ("en", 2)
    run(fresh.close())


def test_checks_of_what_was_typed(services: Services, tmp_path: Path) -> None:
    assert services.check_pin("12", "12") == {"pin": "errors.pin_short"}
    assert services.check_pin("111111", "111111") == {"pin": "errors.pin_easy"}
    assert services.check_pin("246810", "246811") == {"pin_again": "errors.pin_mismatch"}
    # no keystore here and a real KDF: a copy meets the passphrase alone, so a PIN is not enough
    laptop = Services(AppConfig(data_dir=tmp_path / "laptop"))
    assert laptop.protection == "passphrase"
    assert laptop.check_pin("246810", "246810") == {"pin": "errors.pin_offline"}
    words = laptop.suggest_passphrase()
    assert len(words.split()) == 4 and laptop.check_pin(words, words) == {}
    keystore = Services(AppConfig(data_dir=tmp_path / "phone"), pepper=b"k" * 32)
    assert keystore.protection == "keystore" and keystore.check_pin("246810", "246810") == {}
    assert Services.check_join("ftp://x", "nope") == {"server": "errors.url_format", "code": "errors.code_format"}
    assert Services.check_join("http://10.0.0.5:8700", "x")["server"] == "errors.insecure_url"
    assert "server" not in Services.check_join("http://127.0.0.1:8700", "x")


@pytest.mark.parametrize(("exc", "key", "field"), [
    (WrongPassphrase(7, 4.0), "errors.wrong_pin_wait", "pin"),
    (WrongPassphrase(9), "errors.wrong_pin", "pin"),
    (Throttled(12.0), "errors.throttled", "pin"),
    (InvalidInput("person_id", "no person"), "errors.invalid", "person_id"),
    (Offline(), "errors.offline", "server"),
    (CodeInvalid("code_invalid", "bad", 404), "errors.code_invalid", "code"),
    (StoreError("x"), "errors.store", None),
    (KeyRefused(KeyRefused.UNSIGNED), "errors.key_refused", None),
    (KeyRefused(KeyRefused.CHANGED, changed=True), "errors.key_changed", None),
    (RevocationUnproven(), "errors.revocation_unproven", None),
])
def test_errors_become_words_at_fields(exc: Exception, key: str, field: str | None) -> None:
    problem = explain(exc)
    assert (problem.key, problem.field) == (key, field)
    for lang in ("da", "en"):
        assert Translator(lang).has(problem.key)


def test_a_refused_team_key_is_said_plainly_in_both_languages() -> None:
    for lang, words in (("da", ("koordinator", "stoppet", "Intet er ændret")),
                        ("en", ("coordinator", "stopped", "Nothing was changed"))):
        t = Translator(lang)
        unsigned, changed = t("errors.key_refused"), t("errors.key_changed")
        assert unsigned != changed
        for text in (unsigned, changed):
            assert all(w in text for w in words), text


def test_wrong_pin_wait_is_carried() -> None:
    assert explain(WrongPassphrase(7, 4.0)) == Problem("errors.wrong_pin_wait", {"left": 7, "seconds": 4}, "pin", 4.0)


def test_a_save_tells_the_scheduler_and_it_counts_the_outbox(services: Services) -> None:
    seen: list[SyncView] = []

    async def scenario() -> None:
        await services.create_workspace(PIN)
        services.sync.listeners.append(lambda v: seen.append(SyncView(**v.__dict__)))
        services.sync.start()
        draft = ContactDraft(anonymous=True)
        await services.save_contact(draft)
        await asyncio.sleep(0.05)  # the hook arrives through the loop
        await services.sync.refresh()
        services.sync.stop()

    run(scenario())
    assert seen and seen[-1].pending_ops == 1 and not seen[-1].joined


def test_today_lists_only_today(services: Services) -> None:
    run(services.create_workspace(PIN))
    old = ContactDraft(anonymous=True, when_text=(datetime.now() - timedelta(days=1)).strftime("%d-%m-%Y %H:%M"))
    run(services.save_contact(old))
    assert run(services.today()).contacts == []


def test_a_conflict_is_shown_plainly_and_settled(tmp_path: Path, make_team, remote_ops, passphrase) -> None:  # type: ignore[no-untyped-def]
    a, b = make_team(2)
    person = a.add_person({"alias": "Lange Peter"})
    b.apply_remote(remote_ops(a))
    a.edit_person(person.id, {"status": "housed"})
    b.edit_person(person.id, {"status": "deceased"})  # neither saw the other's change
    a.apply_remote(remote_ops(b))
    a.close()

    s = Services(AppConfig(data_dir=tmp_path / "device0", fast_kdf=True))
    try:
        run(s.unlock(passphrase))
        detail = run(s.person_detail(person.id))
        assert [(c.field, {c.value_a, c.value_b}) for c in detail.conflicts] == [("status", {"housed", "deceased"})]
        run(s.resolve_conflict(person.id, "status", "housed"))
        detail = run(s.person_detail(person.id))
        assert detail.conflicts == [] and detail.person.status.value == "housed"
    finally:
        run(s.close())


def test_a_row_damaged_on_disk_is_taken_off_the_screens_after_unlock(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Unlock trusts the sealed snapshot for speed; the rows themselves are opened in the
    background a moment later, and one that fails its check leaves the lists."""
    import app.services.session as services_module

    monkeypatch.setattr(services_module, "VERIFY_AFTER", 0.0)
    s = Services(AppConfig(data_dir=tmp_path / "device", fast_kdf=True))
    try:
        run(s.create_workspace(PIN))
        s.ws.add_person({"alias": "Hel"})
        damaged = s.ws.add_person({"alias": "Skadet"}).id
        run(s.lock())  # writes the snapshot
        damage_on_disk(tmp_path / "device" / "outreach.db", "person", damaged)

        async def unlock_and_check() -> tuple[list[str], list[str]]:
            await s.unlock(PIN)
            before = sorted(r.alias for r in (await s.persons())[0])
            assert s._verify_task is not None
            await s._verify_task
            after = sorted(r.alias for r in (await s.persons())[0])
            return before, after

        before, after = run(unlock_and_check())
        assert before == ["Hel", "Skadet"]  # from the snapshot, at once
        assert after == ["Hel"]
        assert [d.record_id for d in s.ws.damaged] == [damaged]
    finally:
        run(s.close())


def test_the_idle_watch_publishes_the_chip_only_when_its_words_change(tmp_path: Path) -> None:
    """The health check every `watch` s redrew the chip each time though it said the same; it must
    still move "synced N min ago" on with the clock."""
    from app.state import chip_model

    s = Services(AppConfig(data_dir=tmp_path / "device", fast_kdf=True, sync_interval=3600, sync_watch=0.05))
    said: list[str] = []

    async def scenario() -> None:
        await s.create_workspace(PIN, "Kim")
        s.engine.ping = lambda: None  # type: ignore[method-assign]  # the server answers
        s.sync.view.joined, s.sync.view.last_success = True, datetime.now()
        s.sync.listeners.append(lambda view: said.append(chip_model(view).key))
        s.sync.start()
        await asyncio.sleep(0.6)  # about a dozen health checks, all well, the chip unchanged
        assert said == ["sync.synced_now"]  # the first check publishes what it had not yet shown
        s.sync.view.last_success = datetime.now() - timedelta(minutes=2)  # time went by
        await asyncio.sleep(0.3)
        assert said == ["sync.synced_now", "sync.synced_ago"]
        s.sync.stop()
        await s.close()

    run(scenario())
