"""Exports (`models.usecases.exports`): CSV for Danish Excel read back with the csv module in the same
dialect (`;`, UTF-8 with BOM, dd-mm-yyyy, decimal comma, translated values) cell by cell; every
personal export audited with counts only; the warning facts; the aggregate report holds no personal
string (canary); the national count of one ISO week counts each person once."""

from __future__ import annotations

import csv
import io
import os
import stat
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from models.domain.vocab import AuditAction, RecordType
from models.errors import InvalidInput, NotFound
from models.usecases.exports import (
    COUNT_UNKNOWN,
    CSV_ENCODING,
    DanishExcel,
    ExportKind,
    ExportRequest,
    aggregate_csv,
    aggregate_html,
    aggregate_report,
    count_csv,
    export_csv,
    export_warning,
    fmt_decimal,
    national_count,
    stable_names,
    write_export,
)
from models.workspace import Workspace

MakeWorkspace = Callable[..., Workspace]

DA = {
    "status.housed": "Boligplaceret", "status.active": "Aktiv", "category.sofa_surfer": "Sofasurfer",
    "category.street": "Gade", "need.alcohol": "Alkohol", "need.mental_health": "Psykisk sygdom",
    "gender.male": "Mand", "consent.written": "Skriftligt", "ethos.houseless": "Uden bolig",
    "kind.street": "Gade", "living.shelter": "Herberg", "service.food": "Mad", "service.sleeping_bag": "Sovepose",
    "referral.housing": "Bolig", "export.yes": "Ja", "export.no": "Nej", "export.alias": "Alias",
}


def da(key: str) -> str:
    return DA.get(key, stable_names(key))


@pytest.fixture
def ws(make_workspace: MakeWorkspace) -> Workspace:
    return make_workspace(worker_name="Mette")


def read_back(data: bytes) -> list[list[str]]:
    assert data.startswith(b"\xef\xbb\xbf")  # the BOM that makes Excel read UTF-8
    return list(csv.reader(io.StringIO(data.decode(CSV_ENCODING), newline=""), delimiter=";"))


def exports_audited(ws: Workspace) -> list[Any]:
    """Export events, newest first (by the write's clock, the HLC: several happen within one
    second, and two may fall in one millisecond)."""
    stamp = {rid: v["created_hlc"] for rid, v in ws.index.records[RecordType.AUDIT].items()}
    return sorted((e for e in ws.audit_events() if e.action is AuditAction.EXPORT), key=lambda e: stamp[e.id],
                  reverse=True)


# ============================================================================ CSV formats
def test_persons_csv_reads_back_in_the_danish_excel_dialect(ws: Workspace, tmp_path: Path) -> None:
    place = ws.add_place({"name": "Hovedbanegården"}).id
    pid = ws.add_person({
        "alias": "Søren Æblerød", "full_name": "Søren Østergaard", "cpr": "0101801234", "birth_year": 1980,
        "gender": "male", "nationality": "Dansk", "languages": ["da", "en"],
        "description": 'Rød hue; "stor" hund\nhalter', "category": "sofa_surfer", "ethos": "houseless",
        "consent": "written", "consent_date": "2025-01-02", "consent_scope": "Bolig", "status": "housed",
        "status_date": "2025-03-04", "icm_worker": "Mette", "needs": ["alcohol", "mental_health"],
        "safety_note": "=1+1", "usual_place": place,
    }).id
    contact_id = ws.add_contact({"at": "2025-02-03T21:05:00", "person_id": pid}).id
    assert contact_id
    created = ws.get_person(pid).created_at
    assert created is not None
    out = export_csv(ws, ExportRequest(ExportKind.PERSONS), translate=da)
    assert out.rows == 1 and out.filename.startswith("outreach-persons-") and "ren" not in out.filename
    rows = read_back(out.data)
    assert rows[0][:3] == ["id", "Alias", "full_name"]
    assert len(rows) == 2
    assert rows[1] == [
        pid, "Søren Æblerød", "Søren Østergaard", "010180-1234", "1980", "Mand", "Dansk", "da, en",
        'Rød hue; "stor" hund\nhalter', "Sofasurfer", "Uden bolig", "Skriftligt", "02-01-2025", "Bolig",
        "Boligplaceret", "04-03-2025", "Mette", "Alkohol, Psykisk sygdom", "'=1+1", "Hovedbanegården", "",
        "03-02-2025", "03-02-2025 21:05", created.astimezone().strftime("%d-%m-%Y %H:%M"),
    ]
    text = out.data.decode(CSV_ENCODING)
    assert "\r\n" in text and text.count(";") >= 23
    # the file on disk reads back the same with the csv module and the same dialect
    path = tmp_path / "persons.csv"
    written = write_export(ws, ExportRequest(ExportKind.PERSONS), path, translate=da)
    assert written.rows == 1
    with open(path, encoding="utf-8-sig", newline="") as fh:
        assert list(csv.reader(fh, dialect=DanishExcel)) == rows
    with open(path, encoding="utf-8-sig", newline="") as fh:
        assert list(csv.reader(fh, delimiter=";")) == rows


def test_contacts_csv_dates_decimal_comma_lists_and_period(ws: Workspace) -> None:
    place = ws.add_place({"name": "Enghave Park", "zone": "Vesterbro"}).id
    pid = ws.add_person({"alias": "Lange Peter"}).id
    cid = ws.add_contact({
        "at": "2025-01-15T21:30:00", "person_id": pid, "place_id": place, "lat": 55.67612, "lon": 12.5681,
        "workers": ["Mette", "Ole"], "kind": "street", "living": "shelter", "services": ["food", "sleeping_bag"],
        "referrals": ["housing"], "note": "Fik kaffe; glad", "follow_up": "2025-01-20",
    }).id
    ws.add_contact({"at": "2025-03-01T10:00:00"})  # anonymous, outside the period
    rows = read_back(export_csv(ws, ExportRequest(ExportKind.CONTACTS, start=date(2025, 1, 1),
                                                  end=date(2025, 1, 31)), translate=da).data)
    assert rows == [
        ["id", "at", "person_id", "Alias", "place", "zone", "lat", "lon", "workers", "kind", "living", "services",
         "referrals", "note", "follow_up"],
        [cid, "15-01-2025 21:30", pid, "Lange Peter", "Enghave Park", "Vesterbro", "55,676", "12,568", "Mette, Ole",
         "Gade", "Herberg", "Mad, Sovepose", "Bolig", "Fik kaffe; glad", "20-01-2025"],
    ]
    everything = read_back(export_csv(ws, ExportRequest(ExportKind.CONTACTS)).data)
    assert len(everything) == 3
    assert everything[2][1:4] == ["01-03-2025 10:00", "", ""]
    assert everything[1][9:12] == ["street", "shelter", "food, sleeping_bag"]  # default: the stable keys


def test_follow_ups_csv_and_one_persons_rows(ws: Workspace) -> None:
    a = ws.add_person({"alias": "A"}).id
    b = ws.add_person({"alias": "B"}).id
    fa = ws.add_follow_up({"due": "2025-02-01", "person_id": a, "assignee": "Ole", "note": "+ring"}).id
    fb = ws.add_follow_up({"due": "2025-01-01", "person_id": b}).id
    ws.edit_follow_up(fb, {"done": True})
    rows = read_back(export_csv(ws, ExportRequest(ExportKind.FOLLOW_UPS), translate=da).data)
    assert rows == [
        ["id", "due", "done", "person_id", "Alias", "contact_id", "assignee", "note"],
        [fb, "01-01-2025", "Ja", b, "B", "", "", ""],
        [fa, "01-02-2025", "Nej", a, "A", "", "Ole", "'+ring"],
    ]
    only_a = read_back(export_csv(ws, ExportRequest(ExportKind.FOLLOW_UPS, person_id=a)).data)
    assert [r[0] for r in only_a[1:]] == [fa]
    with pytest.raises(NotFound):
        export_csv(ws, ExportRequest(ExportKind.PERSONS, person_id="0" * 32))


def test_decimal_comma() -> None:
    assert [fmt_decimal(x) for x in (12.5, 3.0, 0.0, -0.25, 55.676, None)] == ["12,5", "3", "0", "-0,25", "55,676", ""]
    assert fmt_decimal(14.56, 1) == "14,6"


# ============================================================================ audit
def test_every_personal_export_writes_one_audit_event_without_values(ws: Workspace, tmp_path: Path) -> None:
    canary = "KANARIEFUGL"
    pid = ws.add_person({"alias": canary, "full_name": canary}).id
    ws.add_contact({"at": "2025-01-15T21:30:00", "person_id": pid, "note": canary})
    assert exports_audited(ws) == []
    export_csv(ws, ExportRequest(ExportKind.PERSONS))
    [event] = exports_audited(ws)
    assert event.target_type is RecordType.PERSON and event.target_id is None
    assert event.detail == "csv persons: 1 rows" and event.actor == "Mette" and event.device_id == ws.device_id
    export_csv(ws, ExportRequest(ExportKind.CONTACTS, person_id=pid, start=date(2025, 1, 1)))
    assert exports_audited(ws)[0].detail == "csv contacts 2025-01-01..: 1 rows"
    assert exports_audited(ws)[0].target_id == pid
    export_warning(ws, ExportRequest(ExportKind.PERSONS), tmp_path / "x.csv")  # a warning is not an export
    assert len(exports_audited(ws)) == 2
    write_export(ws, ExportRequest(ExportKind.FOLLOW_UPS), tmp_path / "f.csv")
    assert len(exports_audited(ws)) == 3
    export_csv(ws, ExportRequest(ExportKind.COUNT_FORMS, year=2025, week=3))
    assert exports_audited(ws)[0].detail == "csv count_forms week 2025-W03: 1 rows"
    assert all(canary not in (e.detail or "") for e in ws.audit_events())


def test_export_warning_facts_and_the_written_file(ws: Workspace, tmp_path: Path) -> None:
    ws.add_person({"alias": "A"})
    ws.add_person({"alias": "B"})
    req = ExportRequest(ExportKind.PERSONS)
    inside = export_warning(ws, req, ws.data_dir / "persons.csv", env={})
    assert inside.inside_data_dir and inside.rows == 2 and not inside.exists and inside.synced_folder is None
    (tmp_path / "Dropbox" / "unit").mkdir(parents=True)
    boxed = export_warning(ws, req, tmp_path / "Dropbox" / "unit" / "p.csv", env={})
    assert boxed.synced_folder == "Dropbox" and not boxed.inside_data_dir
    assert boxed.path == (tmp_path / "Dropbox" / "unit" / "p.csv").resolve()
    (tmp_path / "work").mkdir()
    onedrive = export_warning(ws, req, tmp_path / "work" / "p.csv", env={"OneDrive": str(tmp_path / "work")})
    assert onedrive.synced_folder == "OneDrive"
    plain = tmp_path / "plain.csv"
    assert export_warning(ws, req, plain, env={}).synced_folder is None
    write_export(ws, req, plain)
    assert export_warning(ws, req, plain, env={}).exists
    if os.name == "posix":
        assert stat.S_IMODE(plain.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".outreach-export-")] == []
    with pytest.raises(InvalidInput):
        write_export(ws, req, tmp_path / "missing" / "p.csv")
    with pytest.raises(InvalidInput):
        write_export(ws, req, tmp_path)


# ============================================================================ aggregate
def test_aggregate_report_has_no_personal_strings(ws: Workspace) -> None:
    canaries = ["CANARYALIAS", "Canary Fullname", "010180-1234", "CANARYNOTE", "CANARYPLACE", "CANARYDESC",
                "CANARYSAFETY", "CANARYFOLLOW"]
    place = ws.add_place({"name": "CANARYPLACE", "zone": "CANARYPLACE"}).id
    pid = ws.add_person({"alias": "CANARYALIAS", "full_name": "Canary Fullname", "cpr": "0101801234",
                         "description": "CANARYDESC", "safety_note": "CANARYSAFETY", "category": "street",
                         "usual_place": place}).id
    other = ws.add_person({"alias": "ZZOTHERPERSON", "category": "shelter", "status": "housed",
                           "status_date": "2025-02-10"}).id
    ws.add_contact({"at": "2025-01-15T21:30:00", "person_id": pid, "place_id": place, "note": "CANARYNOTE"})
    ws.add_contact({"at": "2025-02-01T10:00:00", "person_id": other})
    ws.add_follow_up({"due": "2025-02-01", "person_id": pid, "note": "CANARYFOLLOW"})
    report = aggregate_report(ws, start=date(2025, 1, 1), end=date(2025, 3, 31), today=date(2025, 3, 31))
    data = aggregate_csv(report)
    page = aggregate_html(report)
    for text in (data.decode(CSV_ENCODING), page, repr(report)):
        for canary in canaries + [pid, other, "ZZOTHERPERSON"]:
            assert canary.casefold() not in text.casefold()
    rows = read_back(data)
    figures = {r[0]: r[1] for r in rows if len(r) == 2}
    assert figures["contacts"] == "2" and figures["persons_met"] == "2" and figures["housed"] == "1"
    assert figures["homeless_now"] == "1" and figures["target"] == "100" and figures["baseline"] == "169"
    assert figures["period_start"] == "01-01-2025" and figures["median_days_to_housed"] == "9"
    assert ["01-2025", "1", "1", "0", "1"] in rows and ["02-2025", "1", "1", "1", "1"] in rows
    assert ["03-2025", "0", "0", "0", "1"] in rows
    assert ["street", "1", "1", "1", "0"] in rows and ["shelter", "0", "1", "1", "1"] in rows
    assert exports_audited(ws) == []  # no personal data: not an export of personal data


def test_aggregate_html_is_self_contained_and_printable(ws: Workspace) -> None:
    ws.add_person({"alias": "A", "category": "street"})
    page = aggregate_html(aggregate_report(ws, today=date(2025, 3, 31)), translate=lambda k: f"<{k}>")
    assert page.startswith("<!DOCTYPE html>") and "@media print" in page and "@page" in page
    for outside in ("<script", "src=", "href=", "http://", "https://", "@import"):
        assert outside not in page
    assert "&lt;report.title&gt;" in page and "<report.title>" not in page  # escaped
    assert "<svg" in page and "<polyline" in page


# ============================================================================ national count
def test_count_week_counts_one_person_once_however_many_contacts(ws: Workspace) -> None:
    pid = ws.add_person({"alias": "Lange Peter", "category": "street", "birth_year": 1971}).id
    for day in range(2, 9):  # every day of ISO week 6 of 2026 (2-8 February), twice
        ws.add_contact({"at": f"2026-02-0{day}T10:00:00", "person_id": pid})
        ws.add_contact({"at": f"2026-02-0{day}T22:00:00", "person_id": pid})
    ws.add_contact({"at": "2026-02-09T10:00:00", "person_id": pid})  # week 7
    looked = ws.add_person({"alias": "Not found", "category": "street"}).id
    ws.add_contact({"at": "2026-02-04T10:00:00", "person_id": looked, "kind": "not_found"})
    ws.add_contact({"at": "2026-02-04T10:00:00"})  # anonymous
    count = national_count(ws, year=2026)
    assert (count.week, count.start, count.end) == (6, date(2026, 2, 2), date(2026, 2, 8))
    assert count.total == 1 and count.counts["street"] == 1
    [form] = count.persons
    assert form.person_ids == (pid,) and form.contacts_in_week == 14 and form.key_kind == "id"
    assert national_count(ws, year=2026, week=7).total == 1
    assert national_count(ws, year=2026, week=5).total == 0


def test_count_week_deduplicates_by_cpr_then_initials_and_birth_year(ws: Workspace) -> None:
    def met(pid: str) -> None:
        ws.add_contact({"at": "2025-02-05T10:00:00", "person_id": pid})

    same_cpr = [ws.add_person({"alias": "Jens", "cpr": "0101801234", "category": "street"}).id,
                ws.add_person({"alias": "Store Jens", "cpr": "010180-1234", "category": "shelter",
                               "needs": ["alcohol"]}).id]
    same_initials = [ws.add_person({"alias": "Ole", "full_name": "Ole Bent Hansen", "birth_year": 1970}).id,
                     ws.add_person({"alias": "OB", "full_name": "Ole-Bent Hald", "birth_year": 1970}).id]
    other_year = ws.add_person({"alias": "Ole 2", "full_name": "Ole Bent Hansen", "birth_year": 1971}).id
    no_name = [ws.add_person({"alias": "Mads", "birth_year": 1980}).id, ws.add_person({"alias": "Mads"}).id]
    for pid in same_cpr + same_initials + [other_year] + no_name:
        met(pid)
    count = national_count(ws, year=2025, week=6)
    assert count.total == 5
    kinds = sorted(f.key_kind for f in count.persons)
    assert kinds == ["cpr", "id", "id", "initials", "initials"]
    [cpr_form] = [f for f in count.persons if f.key_kind == "cpr"]
    assert cpr_form.person_ids == tuple(sorted(same_cpr))
    assert cpr_form.birth_date == date(1980, 1, 1) and cpr_form.cpr == "010180-1234"
    assert cpr_form.needs == ("alcohol",)
    [joint] = [f for f in count.persons if f.person_ids == tuple(sorted(same_initials))]
    assert joint.initials in ("OBH",) and joint.birth_year == 1970
    assert count.counts[COUNT_UNKNOWN] == 4  # four forms have no category at all


def test_count_category_from_the_weeks_last_living_situation(ws: Workspace) -> None:
    a = ws.add_person({"alias": "A", "category": "street"}).id
    ws.add_contact({"at": "2025-02-03T10:00:00", "person_id": a, "living": "street"})
    ws.add_contact({"at": "2025-02-06T10:00:00", "person_id": a, "living": "sofa_surfer"})
    b = ws.add_person({"alias": "B", "category": "hospital"}).id
    ws.add_contact({"at": "2025-02-04T10:00:00", "person_id": b, "living": "unknown"})
    c = ws.add_person({"alias": "C"}).id
    ws.add_contact({"at": "2025-02-04T10:00:00", "person_id": c})
    count = national_count(ws, year=2025, week=6)
    assert {k: v for k, v in count.counts.items() if v} == {"sofa_surfer": 1, "hospital": 1, COUNT_UNKNOWN: 1}
    rows = read_back(count_csv(count, translate=da))
    assert rows[0] == ["count_title", "2025-W06"]
    assert rows[1:3] == [["period_start", "03-02-2025"], ["period_end", "09-02-2025"]]
    assert ["Gade", "0"] in rows and ["Sofasurfer", "1"] in rows and ["unknown", "1"] in rows
    assert rows[-1] == ["total", "3"]
    forms = read_back(export_csv(ws, ExportRequest(ExportKind.COUNT_FORMS, year=2025, week=6), translate=da).data)
    assert len(forms) == 4
    by_alias = {r[2]: r for r in forms[1:]}
    assert by_alias["A"][10:13] == ["Sofasurfer", "Gade", "sofa_surfer"]
    assert by_alias["A"][16:] == ["2", "06-02-2025 10:00"]
    with pytest.raises(InvalidInput):
        export_csv(ws, ExportRequest(ExportKind.COUNT_FORMS))  # no year


def test_every_text_key_asked_for_is_listed_for_the_translations(ws: Workspace) -> None:
    from models.domain.vocab import VOCABULARIES
    from models.usecases.exports import TEXT_KEYS

    asked: set[str] = set()

    def t(key: str) -> str:
        asked.add(key)
        return key

    place = ws.add_place({"name": "P"}).id
    pid = ws.add_person({"alias": "A", "category": "street", "needs": ["alcohol"], "gender": "male",
                         "usual_place": place, "cpr": "0101801234"}).id
    ws.add_contact({"at": "2025-02-04T10:00:00", "person_id": pid, "services": ["food"], "referrals": ["housing"],
                    "living": "street", "follow_up": "2025-02-10"})
    for kind in ExportKind:
        export_csv(ws, ExportRequest(kind, year=2025, week=6), translate=t)
    report = aggregate_report(ws, worker="Mette", today=date(2025, 3, 1))
    aggregate_csv(report, translate=t)
    aggregate_html(report, translate=t)
    count_csv(national_count(ws, year=2025, week=6), translate=t)
    vocab = {f"{name}.{member.value}" for name, enum in VOCABULARIES.items() for member in enum}
    assert sorted(asked - vocab - set(TEXT_KEYS)) == []
    assert {"report.title", "export.alias", "category.none", "export.dedup_cpr"} <= asked
