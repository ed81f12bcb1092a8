"""Translations: every word the app shows comes from `assets/i18n/<lang>.json`, Danish first,
English second. Keys are flat (`today.new_contact`); the vocabulary of `models.domain.vocab` lives under
`<vocabulary name>.<value>` (`service.sleeping_bag`). A missing key falls back to English, then to
the key itself, so a gap shows up as a visible key instead of a crash.

It reads files only when a `Translator` is made (no import-time state) and formats with
`str.format` placeholders (`{n}`); it never decides what is shown, only how it is said.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["Translator", "LANGUAGES", "DEFAULT_LANGUAGE", "I18N_DIR", "load_catalog"]

LANGUAGES: tuple[str, ...] = ("da", "en")
DEFAULT_LANGUAGE = "da"
I18N_DIR = Path(__file__).resolve().parent.parent / "assets" / "i18n"


@lru_cache(maxsize=8)
def load_catalog(lang: str, directory: Path = I18N_DIR) -> dict[str, str]:
    """The flat key -> text map of one language (cached: the files do not change while running)."""
    with open(directory / f"{lang}.json", encoding="utf-8") as fh:
        data = json.load(fh)
    if not isinstance(data, dict):
        raise ValueError(f"{lang}.json must hold one JSON object")
    return {str(k): str(v) for k, v in data.items()}


class Translator:
    """`t("key", n=3)` in one language; `vocab("service", "food")` for enum values."""

    def __init__(self, lang: str = DEFAULT_LANGUAGE) -> None:
        self.lang = lang if lang in LANGUAGES else DEFAULT_LANGUAGE
        self._texts = load_catalog(self.lang)
        self._fallback = load_catalog("en") if self.lang != "en" else {}

    def __call__(self, key: str, **params: Any) -> str:
        n = params.get("n")
        if isinstance(n, int) and not isinstance(n, bool) and self.plural(n) == "one":
            # the singular where the language has one (`key.one`); the key itself is the plural
            key = f"{key}.one" if f"{key}.one" in self._texts else key
        text = self._texts.get(key) or self._fallback.get(key) or key
        if params:
            try:
                return text.format(**params)
            except (KeyError, IndexError, ValueError):
                return text
        return text

    def plural(self, n: int) -> str:
        """The plural category of a count (CLDR): Danish and English say "one" of 1 only (Danish
        also of 0,1-type decimals, which counts here never are)."""
        return "one" if abs(n) == 1 else "other"

    def has(self, key: str) -> bool:
        return key in self._texts

    def vocab(self, name: str, value: Any) -> str:
        """The words for one value of a vocabulary (`Status.ACTIVE` or "active")."""
        if value is None:
            return ""
        raw = getattr(value, "value", value)
        return self(f"{name}.{raw}")

    # Dates are shown the Danish way in both languages (dd-mm-yyyy), as the team writes them.
    def date(self, value: date | datetime | None) -> str:
        if value is None:
            return ""
        return value.strftime("%d-%m-%Y")

    def time(self, value: datetime | None) -> str:
        return value.strftime("%H:%M") if value else ""

    def datetime(self, value: datetime | None) -> str:
        return value.strftime("%d-%m-%Y %H:%M") if value else ""
