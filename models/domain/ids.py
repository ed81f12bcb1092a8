"""Short ids a person can read and type, and the record a typed id, prefix or name means.

A record id is 32 hex digits: a random per-device prefix of 16 and a per-device counter of 16
(`workspace.writes.Writer.new_id`), so the first eight digits are the same for every record a device made and
a prefix unique among them is nearly the whole id. The short id is therefore the device part cut
to the shortest prefix that tells this device's records from other devices' (at least four
digits), a dash, and the counter without its leading zeros: `2879-8b`. Ids of older versions
(random uuid4 hex, whose 17th digit is never 0) are cut git-style to their shortest unique
prefix, at least eight digits.

Pure functions over ids and names: no store, no keys, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from ..errors import NotFound, StoreError

__all__ = ["short_ids", "resolve", "Ambiguous", "MIN_DEVICE_DIGITS", "MIN_PREFIX", "MIN_TYPED"]

MIN_DEVICE_DIGITS = 4  # of the device part of a short id
MIN_PREFIX = 8  # of a short id of an older version's random id
MIN_TYPED = 4  # a typed prefix shorter than this is too short to mean one record
_HEX = re.compile(r"^[0-9a-f]+$")
_COMPACT = re.compile(r"^([0-9a-f]{1,16})-([0-9a-f]{1,16})$")


class Ambiguous(StoreError):
    """A typed id, prefix or name that fits more than one record: the candidates are named."""

    def __init__(self, kind: str, typed: str, candidates: list[str]) -> None:
        self.kind = kind
        self.typed = typed
        self.candidates = candidates
        super().__init__(f"{typed!r} fits {len(candidates)} {kind} records: type more of the id")


def _counted(rid: str) -> bool:
    """A device prefix + counter id (the counter's first digit is 0 for the first 2**60 records;
    a uuid4's 17th digit is its variant, 8 to b)."""
    return len(rid) == 32 and rid[16] == "0" and _HEX.match(rid) is not None


def _common(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _shortest_prefixes(values: Iterable[str], minimum: int) -> dict[str, str]:
    ordered = sorted(set(values))
    out: dict[str, str] = {}
    for i, value in enumerate(ordered):
        need = minimum
        if i > 0:
            need = max(need, _common(ordered[i - 1], value) + 1)
        if i + 1 < len(ordered):
            need = max(need, _common(value, ordered[i + 1]) + 1)
        out[value] = value[:need]
    return out


def short_ids(ids: Iterable[str]) -> dict[str, str]:
    """id -> its short id, unique among `ids` (pass every id of the kind, not only those shown)."""
    ids = list(ids)
    counted = [rid for rid in ids if _counted(rid)]
    devices = _shortest_prefixes((rid[:16] for rid in counted), MIN_DEVICE_DIGITS)
    out = {rid: f"{devices[rid[:16]]}-{int(rid[16:], 16):x}" for rid in counted}
    others = [rid for rid in ids if rid not in out]
    out.update(_shortest_prefixes(others, MIN_PREFIX))
    return out


def resolve(typed: str, ids: Iterable[str], *, kind: str, names: Mapping[str, Iterable[str | None]] | None = None,
            ) -> str:
    """The one id that `typed` means among `ids`: the whole id, its short id (or the short id's
    device part cut shorter), a prefix of at least `MIN_TYPED` digits, or a name in `names`
    (id -> its alias, full name, ...; compared without case). NotFound when none fits;
    Ambiguous, naming the candidates, when more than one does."""
    text = typed.strip()
    key = text.lower()
    ids = ids if isinstance(ids, (set, frozenset, dict)) else set(ids)
    if key in ids:
        return key
    found: set[str] = set()
    compact = _COMPACT.match(key)
    if compact:
        device, counter = compact.group(1), int(compact.group(2), 16)
        found.update(rid for rid in ids if _counted(rid) and rid.startswith(device) and int(rid[16:], 16) == counter)
    elif len(key) >= MIN_TYPED and _HEX.match(key):
        found.update(rid for rid in ids if rid.startswith(key))
    if names and text:
        folded = text.casefold()
        found.update(rid for rid, those in names.items()
                     if any(n is not None and n.strip().casefold() == folded for n in those))
    if len(found) == 1:
        return found.pop()
    if not found:
        raise NotFound(kind, text)
    raise Ambiguous(kind, text, sorted(found))
