"""Issue 14, item 6: the ids the CLI prints are unique (record ids share their device's prefix, so
`id[:8]` was the same for every record a device made), and what it accepts is any id it printed,
the whole id, a unique prefix, or an alias or name where only one person has it; an ambiguous one
is a clear error naming the candidates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clihelpers import Run, cli_runner, ok

from models.domain.ids import Ambiguous, resolve, short_ids


@pytest.fixture
def run(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    return cli_runner(tmp_path, capsys, monkeypatch)



def test_listed_ids_are_unique_and_open_their_record(run: Run) -> None:
    ok(run, "init", "--worker", "Bo")
    ids = {alias: ok(run, "person", "add", "--alias", alias).strip() for alias in ("Bo", "Ali", "Kim", "Mette")}
    for alias, pid in ids.items():
        ok(run, "contact", "add", "--person", pid, "--note", f"met {alias}")
    lines = ok(run, "person", "list").splitlines()
    shown = {line.split()[0]: line.split()[1] for line in lines}
    assert len(shown) == 4  # one short id each
    for short, alias in shown.items():
        assert len(short) <= 12
        person = json.loads(ok(run, "--json", "person", "show", short))
        assert person["alias"] == alias and person["id"] == ids[alias]
    contacts = [line.split()[0] for line in ok(run, "contact", "list").splitlines()]
    assert len(set(contacts)) == 4
    places = ok(run, "place", "add", "Halmtorvet").strip()
    assert ok(run, "place", "list").split()[0] != places[:8]


def test_a_prefix_an_alias_or_a_name(run: Run) -> None:
    ok(run, "init")
    bo = ok(run, "person", "add", "--alias", "Bo").strip()
    soren = ok(run, "person", "add", "--alias", "Sønnen", "--name", "Søren Jensen").strip()
    assert json.loads(ok(run, "--json", "person", "show", bo))["alias"] == "Bo"  # the whole id
    assert json.loads(ok(run, "--json", "person", "show", bo.upper()))["alias"] == "Bo"
    assert json.loads(ok(run, "--json", "person", "show", "bo"))["id"] == bo  # an alias, any case
    assert json.loads(ok(run, "--json", "person", "show", "søren jensen"))["id"] == soren  # a full name
    typed = f"{soren[:10]}-{int(soren[16:], 16):x}"  # the short id with more of its device part
    assert json.loads(ok(run, "--json", "person", "show", typed))["id"] == soren
    ok(run, "contact", "add", "--person", "Bo", "--note", "kaffe")
    assert len(json.loads(ok(run, "--json", "contact", "list", "--person", "Bo"))) == 1


def test_an_ambiguous_id_or_name_names_the_candidates(run: Run) -> None:
    ok(run, "init")
    first = ok(run, "person", "add", "--alias", "Kim").strip()
    ok(run, "person", "add", "--alias", "Kim")
    shorts = [line.split()[0] for line in ok(run, "person", "list").splitlines()]
    for typed in ("Kim", first[:8]):  # the name two persons have; what the old lists printed
        rc, _out, err = run("person", "show", typed)
        assert rc == 1 and err.count("\n") == 1, err
        assert "2 persons" in err and all(s in err for s in shorts), err
    rc, _out, err = run("person", "show", "Nobody")
    assert rc == 1 and "Nobody" in err and err.count("\n") == 1


def test_follow_ups_by_their_short_id(run: Run) -> None:
    ok(run, "init")
    pid = ok(run, "person", "add", "--alias", "Bo").strip()
    for day in ("2030-01-01", "2030-01-02"):
        ok(run, "contact", "add", "--person", pid, "--follow-up", day)
    listed = ok(run, "followup", "list").splitlines()
    shorts = [line.split()[0] for line in listed]
    assert len(set(shorts)) == 2
    ok(run, "followup", "done", shorts[1])
    assert len(ok(run, "followup", "list").splitlines()) == 1


def test_short_ids_are_unique_among_many_devices_and_old_ids() -> None:
    import uuid

    devices = [uuid.uuid4().hex[:16] for _ in range(50)] + ["28792150aaaaaaaa", "28792151aaaaaaaa"]
    ids = [d + f"{n:016x}" for d in devices for n in range(1, 40)] + [uuid.uuid4().hex for _ in range(200)]
    shorts = short_ids(ids)
    assert len(set(shorts.values())) == len(ids)
    for rid, short in shorts.items():
        assert resolve(short, ids, kind="person") == rid
        assert resolve(rid, ids, kind="person") == rid
        assert len(short) <= 32
    assert max(len(s) for r, s in shorts.items() if r[16] == "0") <= 12
    with pytest.raises(Ambiguous) as caught:
        resolve("2879215", ids, kind="person")
    assert len(caught.value.candidates) == 78
