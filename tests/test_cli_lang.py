"""Issue 14, item 9: the CLI speaks the language of the files and the app, Danish first: one
setting (`--lang`, else OUTREACH_LANG, else Danish) for its lines, its errors, its help and the
files it writes; no English is left in what it prints in Danish, the access text included."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from clihelpers import Run, cli_runner, ok

# English words that no Danish line of the CLI holds (the data below is Danish or names)
ENGLISH = re.compile(r"\b(the|and|not|no|none|never|persons|contacts|seen|last|wrote|merged|synced|sent|received|"
                     r"goal|reached|week|month|year|found|done|deleted|records?|rows|conflicts?|shown|keep|"
                     r"retention|access request|usage|options|choose|invalid|error|waiting|team key|show|help)\b",
                     re.IGNORECASE)


@pytest.fixture
def run(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    return cli_runner(tmp_path, capsys, monkeypatch, lang=None)



COMMANDS = ("init passwd person contact place followup search conflicts demo join recover invite devices admit "
            "revoke sync status notices erase overview export report count duplicates merge retention access audit "
            "list show add edit delete done resolve").split()


def english_in(text: str) -> list[str]:
    # ids, dates, commands, flags and choices quoted for the user are not words
    text = re.sub(r"'outreach [^']*'|--[\w-]+|\{[^}]*\}|\b[0-9a-f]{4,}(-[0-9a-f]+)?\b|https?://\S+", " ", text)
    text = re.sub(r"^\s+(" + "|".join(COMMANDS) + r")\b", " ", text, flags=re.MULTILINE)
    return ENGLISH.findall(text)


def test_danish_by_default_one_setting_for_everything(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    ok(run, "init", "--worker", "Bo")
    assert ok(run, "person", "list").strip() == "Ingen personer."
    assert ok(run, "--lang", "en", "person", "list").strip() == "No persons."
    monkeypatch.setenv("OUTREACH_LANG", "en")
    assert ok(run, "person", "list").strip() == "No persons."
    assert ok(run, "--lang", "da", "person", "list").strip() == "Ingen personer."  # the flag wins
    monkeypatch.setenv("OUTREACH_LANG", "da")
    help_text = ok(run, "--help")
    assert "Afslutningskoder" in help_text and "brug:" in help_text
    assert english_in(help_text) == [], english_in(help_text)
    rc, _out, err = run("person", "add", "--alias", "X", "--gender", "robot")
    assert rc == 2 and "ugyldigt valg" in err and english_in(err) == [], err


def test_no_english_in_danish_output(run: Run, tmp_path: Path) -> None:
    ok(run, "init", "--worker", "Bo")
    ok(run, "person", "add", "--alias", "Søren", "--category", "street", "--birth-year", "1970", "--need", "drugs")
    ok(run, "person", "add", "--alias", "Soeren", "--birth-year", "1970")
    ok(run, "contact", "add", "--person", "Søren", "--note", "kaffe", "--place", "Halmtorvet",
       "--follow-up", "2030-01-01", "--service", "food")
    ok(run, "contact", "add", "--person", "Søren", "--at", "2020-01-01T10:00")
    out = tmp_path / "ud"
    out.mkdir()
    texts = {}
    for args in (("person", "list"), ("person", "show", "Søren"), ("contact", "list"), ("followup", "list"),
                 ("place", "list"), ("search", "Sør"), ("duplicates",), ("overview",), ("count",),
                 ("retention", "--months", "1"), ("conflicts",), ("status",), ("notices",),
                 ("export", "contacts", "--out", str(out / "k.csv"), "--yes"),
                 ("retention", "--keep", "Søren", "--reason", "bolig på vej"), ("merge", "Søren", "Soeren"),
                 ("audit",), ("access", "Søren"), ("report",)):
        texts[args] = ok(run, *args)
    for args, text in texts.items():
        assert english_in(text) == [], (args, english_in(text), text)
    for args in (("person", "show", "Ingen"), ("contact", "add", "--anonymous", "--at", "2026-13-01T10:00"),
                 ("export", "contacts", "--out", str(out / "k.csv"), "--yes"), ("invite", "--hours", "-1"),
                 ("person", "add", "--alias", "X", "--birth-year", "1850")):
        rc, _out, err = run(*args)
        assert rc != 0 and err.count("\n") == 1, err
        assert english_in(err) == [], (args, err)
    csv = (out / "k.csv").read_text(encoding="utf-8-sig")
    assert "Tidspunkt" in csv  # the file in the same language


def test_wrong_passphrase_in_danish(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    ok(run, "init")
    monkeypatch.setenv("OUTREACH_PASSPHRASE", "not the passphrase")
    rc, _out, err = run("person", "list")
    assert rc == 1 and "Forkert adgangskode" in err and english_in(err) == [], err


def test_json_keys_stay_stable_in_any_language(run: Run) -> None:
    ok(run, "init")
    ok(run, "person", "add", "--alias", "Bo", "--category", "street")
    (person,) = json.loads(ok(run, "--json", "person", "list"))
    assert person["category"] == "street" and person["status"] == "active"
