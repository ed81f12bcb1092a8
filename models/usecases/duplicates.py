"""Duplicate persons: suggested (pairs that share a name's beginning, a CPR number or a usual
place, scored and explained with stable reason keys `duplicate.<reason>` for the UI to translate),
dismissed, and merged as ordinary synced changes (contacts and follow-ups re-pointed, missing
fields copied, the dropped person a tombstone, one audit event).

It never merges two persons with different CPR numbers, and never prints or logs personal data.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..domain.index import fold
from ..domain.tables import PersonUpdate
from ..domain.vocab import AuditAction, Consent, RecordType
from ..errors import InvalidInput
from .reports import _require_unlocked

if TYPE_CHECKING:
    from ..workspace import Workspace

__all__ = [
    "DuplicateSuggestion",
    "duplicate_suggestions",
    "dismiss_duplicate",
    "MergeResult",
    "merge_persons",
    "REASONS",
]

_DISMISSED_KEY = "duplicates_dismissed"
REASONS = ("same_cpr", "same_alias", "similar_alias", "same_full_name", "similar_full_name", "same_birth_year",
           "near_birth_year", "similar_description", "same_usual_place", "shared_places")


# ================================================================================ duplicates
@dataclass(frozen=True)
class DuplicateSuggestion:
    """Two persons that are probably one. `reasons` are stable keys (`duplicate.<key>` in the
    translations): same_cpr, same_alias, similar_alias, same_full_name, similar_full_name,
    same_birth_year, near_birth_year, similar_description, same_usual_place, shared_places."""

    person_a: str
    person_b: str
    score: float  # 0..1
    reasons: tuple[str, ...]


def _words(text: Any) -> list[str]:
    """Danish-aware folded words: 'Søren Åberg' -> ['soeren', 'aaberg']."""
    if not text:
        return []
    return re.findall(r"[a-z0-9]+", fold(str(text)).split("\x1e")[0])


@dataclass(frozen=True)
class _Name:
    """A name's folded forms, computed once per person."""

    text: str  # the words as written
    sorted_text: str  # the words in order: 'Peter Lange' and 'Lange Peter' are the same
    words: frozenset[str]
    bigrams: frozenset[str]  # of sorted_text: a cheap first look before the edit distance

    @classmethod
    def of(cls, text: Any) -> _Name | None:
        words = _words(text)
        if not words:
            return None
        ordered = " ".join(sorted(words))
        return cls(" ".join(words), ordered, frozenset(words),
                   frozenset(ordered[i:i + 2] for i in range(len(ordered) - 1)) or frozenset({ordered}))


def _edit_ratio(a: str, b: str) -> float:
    """1 - Levenshtein distance / longer length. The distance is computed with the bit-parallel
    algorithm of Myers and Hyyrö (one pass over the longer text, a few integer operations a letter),
    about ten times faster in Python than the textbook table."""
    if a == b:
        return 1.0
    if not a or not b:
        return 0.0
    if len(a) < len(b):
        a, b = b, a
    m = len(b)
    peq: dict[str, int] = {}
    for i, c in enumerate(b):
        peq[c] = peq.get(c, 0) | (1 << i)
    full, top = (1 << m) - 1, 1 << (m - 1)
    pv, mv, distance = full, 0, m
    for c in a:
        eq = peq.get(c, 0)
        xv = eq | mv
        xh = (((eq & pv) + pv) ^ pv) | eq
        ph = mv | (~(xh | pv) & full)
        mh = pv & xh
        if ph & top:
            distance += 1
        elif mh & top:
            distance -= 1
        ph = ((ph << 1) | 1) & full
        mh = (mh << 1) & full
        pv = mh | (~(xv | ph) & full)
        mv = ph & xv
    return 1.0 - distance / len(a)


def _name_similarity(a: _Name | None, b: _Name | None) -> float:
    """The best of: the normalised edit distance of the names (as written, and with their words
    sorted), and the share of the shorter name's words found in the other (a little less than a
    full match). The edit distance is only computed where it can matter: when the names share
    enough letter pairs and their lengths allow a better value."""
    if a is None or b is None:
        return 0.0
    if a.sorted_text == b.sorted_text:
        return 1.0
    best = len(a.words & b.words) / min(len(a.words), len(b.words)) * 0.85
    dice = 2 * len(a.bigrams & b.bigrams) / (len(a.bigrams) + len(b.bigrams))
    if dice < 0.4:
        return best
    for x, y in ((a.sorted_text, b.sorted_text), (a.text, b.text)):
        if min(len(x), len(y)) / max(len(x), len(y)) > best:  # the most the edit ratio can be
            best = max(best, _edit_ratio(x, y))
    return best


def _overlap(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


@dataclass
class _Profile:
    id: str
    alias: _Name | None
    full: _Name | None
    cpr: str | None
    birth_year: int | None
    gender: str | None
    description: set[str]
    usual_place: str | None
    places: set[str]
    keys: set[str] = field(default_factory=set)  # word beginnings (fuzzy blocks)
    exact: set[str] = field(default_factory=set)  # whole names, CPR (exact blocks)


_MAX_BLOCK = 300  # a word beginning shared by more persons than this does not make pairs by itself


def _profiles(ws: Workspace) -> list[_Profile]:
    recs = ws.index.records
    places_of: dict[str, set[str]] = {}
    for c in recs[RecordType.CONTACT].values():
        if c.get("person_id") and c.get("place_id"):
            places_of.setdefault(c["person_id"], set()).add(c["place_id"])
    out = []
    for pid, p in recs[RecordType.PERSON].items():
        prof = _Profile(
            id=pid, alias=_Name.of(p.get("alias")), full=_Name.of(p.get("full_name")),
            cpr=str(p["cpr"]).replace("-", "") if p.get("cpr") else None, birth_year=p.get("birth_year"),
            gender=p.get("gender") if p.get("gender") not in (None, "unknown") else None,
            description={w for w in _words(p.get("description")) if len(w) >= 3},
            usual_place=p.get("usual_place") or None, places=places_of.get(pid, set()),
        )
        for name in (prof.alias, prof.full):
            if name is not None:
                prof.keys.update(w[:2] for w in name.words if not w.isdigit())
                prof.exact.add("=" + name.sorted_text)
        if prof.cpr:
            prof.exact.add("cpr:" + prof.cpr)
        out.append(prof)
    return out


def _score(a: _Profile, b: _Profile) -> tuple[float, list[str]] | None:
    if a.cpr and b.cpr:
        return (1.0, ["same_cpr"]) if a.cpr == b.cpr else None
    if a.gender and b.gender and a.gender != b.gender:
        return None
    if a.birth_year and b.birth_year and abs(a.birth_year - b.birth_year) > 1:
        return None
    reasons: list[str] = []
    alias = _name_similarity(a.alias, b.alias)
    full = _name_similarity(a.full, b.full)
    name = max(alias, full)
    if name < 0.6:
        return None
    if alias >= 0.6:
        reasons.append("same_alias" if alias == 1.0 else "similar_alias")
    if full >= 0.6:
        reasons.append("same_full_name" if full == 1.0 else "similar_full_name")
    if a.birth_year and b.birth_year:
        born = 1.0 if a.birth_year == b.birth_year else 0.5
        reasons.append("same_birth_year" if born == 1.0 else "near_birth_year")
    else:
        born = 0.3  # unknown: neither for nor against
    desc = _overlap(a.description, b.description)
    if desc >= 0.2:
        reasons.append("similar_description")
    place = 0.0
    if a.usual_place and a.usual_place == b.usual_place:
        place = 1.0
        reasons.append("same_usual_place")
    elif (a.places | {a.usual_place}) & (b.places | {b.usual_place}) - {None}:
        place = 0.7
        reasons.append("shared_places")
    score = 0.55 * name + 0.2 * born + 0.1 * min(1.0, desc * 2) + 0.15 * place
    return round(min(score, 1.0), 3), reasons


def _dismissed(ws: Workspace) -> set[str]:
    raw = ws.setting(_DISMISSED_KEY)
    try:
        return set(json.loads(raw)) if raw else set()
    except ValueError:
        return set()


def _pair(a: str, b: str) -> str:
    return ":".join(sorted((a, b)))


def duplicate_suggestions(ws: Workspace, *, min_score: float = 0.6, limit: int = 50) -> list[DuplicateSuggestion]:
    """Pairs of persons probably created twice (e.g. offline on two devices), best first.

    Names are compared in their Danish folded form (Søren = Soeren, Åse = Aase), by normalised edit
    distance and by shared words; the score adds birth year, description words and places (usual
    place or places of their contacts). Two persons with different CPR numbers, genders or birth
    years more than a year apart are never suggested; the same CPR number always is. Only persons
    who share a whole name, a CPR number or the beginning of a word of their alias or name are
    compared (a beginning shared by more than 300 persons does not count on its own), which keeps
    this fast for thousands of persons. Pairs dismissed on this device are left out."""
    _require_unlocked(ws)
    profiles = _profiles(ws)
    blocks: dict[str, list[int]] = {}
    for i, prof in enumerate(profiles):
        for key in prof.keys:
            blocks.setdefault(key, []).append(i)
        for key in prof.exact:
            blocks.setdefault(key, []).append(i)
    dismissed = _dismissed(ws)
    seen: set[tuple[int, int]] = set()
    out = []
    for key, members in blocks.items():
        if len(members) > _MAX_BLOCK and not key.startswith(("=", "cpr:")):
            continue
        for x, i in enumerate(members):
            for j in members[x + 1:]:
                pair = (min(i, j), max(i, j))
                if pair in seen:
                    continue
                seen.add(pair)
                a, b = profiles[pair[0]], profiles[pair[1]]
                if _pair(a.id, b.id) in dismissed:
                    continue
                found = _score(a, b)
                if found and found[0] >= min_score:
                    first, second = sorted((a.id, b.id))
                    out.append(DuplicateSuggestion(first, second, found[0], tuple(found[1])))
    out.sort(key=lambda s: (-s.score, s.person_a, s.person_b))
    return out[:limit]


def dismiss_duplicate(ws: Workspace, person_a: str, person_b: str) -> None:
    """'Not the same person': the pair is not suggested again on this device (a non-personal
    device setting holding the two ids)."""
    dismissed = _dismissed(ws)
    dismissed.add(_pair(person_a, person_b))
    ws.set_settings(**{_DISMISSED_KEY: json.dumps(sorted(dismissed))})


@dataclass(frozen=True)
class MergeResult:
    keep_id: str
    drop_id: str
    contacts: int  # re-pointed to the kept person
    follow_ups: int
    fields: tuple[str, ...]  # copied from the dropped person (or, for lists, completed)


_NOT_COPIED = {"alias", "status", "status_date", "consent", "consent_date", "consent_scope", "cpr"}


def _copied_fields(keep: dict[str, Any], drop: dict[str, Any], places: Mapping[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name in PersonUpdate.model_fields:
        if name in _NOT_COPIED:
            continue
        mine, theirs = keep.get(name), drop.get(name)
        if isinstance(theirs, list):
            extra = [v for v in theirs if v not in (mine or [])]
            if extra:
                fields[name] = [*(mine or []), *extra]
        elif theirs not in (None, "") and mine in (None, ""):
            if name == "usual_place" and theirs not in places:
                continue
            fields[name] = theirs
    if drop.get("cpr") and not keep.get("cpr"):
        fields["cpr"] = drop["cpr"]
    if keep.get("consent", Consent.NONE.value) == Consent.NONE.value and drop.get("consent") not in (
            None, Consent.NONE.value):
        for name in ("consent", "consent_date", "consent_scope"):
            fields[name] = drop.get(name)
    return fields


def merge_persons(ws: Workspace, *, keep_id: str, drop_id: str) -> MergeResult:
    """Merge `drop_id` into `keep_id`: the dropped person's contacts and follow-ups are re-pointed
    to the kept one, fields the kept one lacks are copied over (lists are completed; consent is
    taken when the kept one has none), the dropped person is deleted (a tombstone), and an audit
    event (action merge) records it. All in one transaction, each change a normal synced write.
    Two persons with different CPR numbers are not merged."""
    if keep_id == drop_id:
        raise InvalidInput("drop_id", "a person cannot be merged with themselves")
    keep = ws.get_person(keep_id).model_dump(mode="json")
    drop = ws.get_person(drop_id).model_dump(mode="json")
    if keep.get("cpr") and drop.get("cpr") and keep["cpr"] != drop["cpr"]:
        raise InvalidInput("cpr", "the two persons have different CPR numbers: they are not the same person")
    recs = ws.index.records
    fields = _copied_fields(keep, drop, recs[RecordType.PLACE])
    contact_ids = sorted(ws.index.contacts_of.get(drop_id, ()))
    fu_ids = sorted(fid for fid, fu in recs[RecordType.FOLLOWUP].items() if fu.get("person_id") == drop_id)
    touched = ([(RecordType.PERSON, keep_id), (RecordType.PERSON, drop_id)]
               + [(RecordType.CONTACT, c) for c in contact_ids] + [(RecordType.FOLLOWUP, f) for f in fu_ids])
    before = {key: recs[key[0]].get(key[1]) for key in touched}
    try:
        with ws.store.atomic(), ws.unaudited():  # the merge's own event says it all
            if fields:
                ws.edit_person(keep_id, fields)
            for cid in contact_ids:
                ws.edit_contact(cid, {"person_id": keep_id})
            for fid in fu_ids:
                ws.edit_follow_up(fid, {"person_id": keep_id})
            ws.delete_record(RecordType.PERSON, drop_id)
            detail = f"merged {drop_id}: {len(contact_ids)} contacts, {len(fu_ids)} follow-ups"
            if fields:
                detail += "; fields: " + ", ".join(sorted(fields))
            ws.audit(AuditAction.MERGE, RecordType.PERSON, keep_id, detail=detail[:400])
    except BaseException:
        # the rollback undid the file; put the index back as it was (places first is not needed:
        # no place changed)
        for (rtype, rid), values in before.items():
            ws.index.put(rtype, rid, values)
        raise
    return MergeResult(keep_id=keep_id, drop_id=drop_id, contacts=len(contact_ids), follow_ups=len(fu_ids),
                       fields=tuple(sorted(fields)))


