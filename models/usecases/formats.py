"""The shared formats of every document this package writes: Danish Excel's CSV dialect and
encoding, dates, times and decimals as a Danish reader expects them, vocabulary values through the
caller's `translate`, and cells that cannot start a formula.

Pure functions: it reads no record and writes no file.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .reports import to_date, to_datetime

__all__ = [
    "Translate",
    "stable_names",
    "DanishExcel",
    "CSV_ENCODING",
    "fmt_date",
    "fmt_datetime",
    "fmt_decimal",
    "text_cell",
    "vocab_cell",
    "vocab_list",
    "yes_no",
    "csv_bytes",
]

Translate = Callable[[str], str]
CSV_ENCODING = "utf-8-sig"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def stable_names(key: str) -> str:
    """The default `translate`: the stable key after the first dot (`status.housed` -> `housed`)."""
    return key.partition(".")[2] or key


class DanishExcel(csv.Dialect):
    """What Danish Excel reads without an import wizard (with `CSV_ENCODING`)."""

    delimiter = ";"
    quotechar = '"'
    doublequote = True
    skipinitialspace = False
    lineterminator = "\r\n"
    quoting = csv.QUOTE_MINIMAL


# ================================================================================ formatting
def fmt_date(value: Any) -> str:
    day = to_date(value)
    return day.strftime("%d-%m-%Y") if day else ""


def fmt_datetime(value: Any) -> str:
    at = to_datetime(value)
    return at.strftime("%d-%m-%Y %H:%M") if at else ""


def fmt_decimal(value: float | None, places: int = 6) -> str:
    """A number with a decimal comma and no needless zeros (12.50 -> 12,5; 3.0 -> 3)."""
    if value is None:
        return ""
    text = f"{value:.{places}f}".rstrip("0").rstrip(".")
    return ("0" if text in ("", "-0") else text).replace(".", ",")


def text_cell(value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def vocab_cell(translate: Translate, name: str, value: Any) -> str:
    if value is None or value == "":
        return ""
    return translate(f"{name}.{getattr(value, 'value', value)}")


def vocab_list(translate: Translate, name: str, values: Iterable[Any] | None) -> str:
    return ", ".join(vocab_cell(translate, name, v) for v in values or ())


def yes_no(translate: Translate, value: Any) -> str:
    return translate("export.yes") if value else translate("export.no")


def csv_bytes(rows: Iterable[Sequence[str]]) -> bytes:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, dialect=DanishExcel)
    writer.writerows(rows)
    return buf.getvalue().encode(CSV_ENCODING)
