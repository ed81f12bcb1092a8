"""The translations: Danish and English have the same keys with the same placeholders, every value
of every vocabulary has words in both, and every key the app's code names exists."""

from __future__ import annotations

import json
import re
import string
from pathlib import Path

import pytest

from app.i18n import I18N_DIR, LANGUAGES, Translator
from app.services.problems import _SPECIFIC_INVALID
from app.state import NOTICE_KINDS
from models.domain.vocab import VOCABULARIES

ROOT = Path(__file__).resolve().parent.parent


def _catalog(lang: str) -> dict[str, str]:
    return json.loads((I18N_DIR / f"{lang}.json").read_text(encoding="utf-8"))


def _placeholders(text: str) -> set[str]:
    return {name for _lit, name, _spec, _conv in string.Formatter().parse(text) if name}


def test_danish_is_the_default_and_english_the_second() -> None:
    assert LANGUAGES == ("da", "en")
    assert Translator().lang == "da"


def test_both_languages_have_the_same_keys() -> None:
    da, en = _catalog("da"), _catalog("en")
    assert sorted(set(da) - set(en)) == []
    assert sorted(set(en) - set(da)) == []


def test_no_text_is_empty() -> None:
    for lang in LANGUAGES:
        empty = [k for k, v in _catalog(lang).items() if not str(v).strip()]
        assert empty == [], f"{lang}: {empty}"


def test_placeholders_match() -> None:
    da, en = _catalog("da"), _catalog("en")
    differ = [k for k in da if _placeholders(da[k]) != _placeholders(en[k])]
    assert differ == []


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_vocabulary_value_has_words(lang: str) -> None:
    catalog = _catalog(lang)
    missing = [f"{name}.{member.value}" for name, enum in VOCABULARIES.items() for member in enum
               if f"{name}.{member.value}" not in catalog]
    assert missing == []


def test_vocab_lookup_uses_the_names_of_vocabularies() -> None:
    t = Translator("en")
    assert t.vocab("service", "sleeping_bag") == "Sleeping bag"
    assert Translator("da").vocab("status", "housed") == "Har fået bolig"


_KEY = re.compile(r"""["']((?:[a-z_]+)\.(?:[a-z_0-9]+))["']""")
_NOT_KEYS = {"app.log", "outreach.app", "outreach.cli", "outreach.log", "outreach.pepper", "server.json",
             "server.log", "server.out", "sync.server", "app.ui.main", "app.run", "outreach.db"}


def test_every_key_named_in_the_app_exists() -> None:
    catalog = _catalog("da")
    prefixes = {k.split(".")[0] for k in catalog}
    missing = set()
    for path in sorted((ROOT / "app").rglob("*.py")):
        if path.name in ("cli.py", "cli_team.py"):
            continue
        for key in _KEY.findall(path.read_text(encoding="utf-8")):
            if key in _NOT_KEYS or key.split(".")[0] not in prefixes:
                continue
            if key not in catalog:
                missing.add(f"{path.name}: {key}")
    assert sorted(missing) == []


def test_dynamic_keys_exist() -> None:
    catalog = _catalog("en")
    dynamic = [*(f"weekday.{i}" for i in range(7)), *(f"language.{lang}" for lang in LANGUAGES),
               "role.coordinator", "role.worker", *(f"notice.{kind}" for kind in NOTICE_KINDS), "notice.other",
               *(f"person.{f}" for f in ("alias", "full_name", "cpr", "birth_year", "status", "consent",
                                          "category", "ethos")),
               *(f"errors.invalid_{f}" for f in _SPECIFIC_INVALID)]  # bad input with words of its own
    assert [k for k in dynamic if k not in catalog] == []


def test_missing_key_falls_back_visibly() -> None:
    assert Translator("da")("no.such_key") == "no.such_key"
    assert Translator("en")("sync.waiting", n=3) == "3 changes waiting"


def test_counts_take_the_singular_from_the_translation_files() -> None:
    """Plural rules, not string tricks (issue 16): `key.one` is said of one, the key itself of
    every other count; both languages."""
    from app.i18n import Translator

    da, en = Translator("da"), Translator("en")
    assert da("sync.waiting", n=1) == "1 ændring venter" and da("sync.waiting", n=2) == "2 ændringer venter"
    assert da("sync.waiting", n=0) == "0 ændringer venter"
    assert en("sync.waiting", n=1) == "1 change waiting" and en("sync.waiting", n=3) == "3 changes waiting"
    assert da("time.days_ago", n=1) == "for 1 dag siden"


def test_every_singular_has_its_plural_and_the_same_placeholders() -> None:
    import re

    from app.i18n import load_catalog

    for lang in ("da", "en"):
        texts = load_catalog(lang)
        for key, text in texts.items():
            if key.endswith(".one"):
                base = key[: -len(".one")]
                assert base in texts, (lang, key)
                assert set(re.findall(r"{(\w+)}", text)) == set(re.findall(r"{(\w+)}", texts[base])), (lang, key)
        assert not [k for k, v in texts.items() if "(s)" in v or "(er)" in v or "(e)" in v], lang
