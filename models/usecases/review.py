"""The coordinator's review and data-protection tools, over an unlocked workspace: open conflicts
and their resolution, duplicate persons (suggested, scored and explained; merged as ordinary
synced changes), the retention review (persons not met for a long time: erase, or keep with a
reason), the access request of GDPR art. 15 (everything stored about one person, as a readable
document and as JSON) and the audit log with its filters.

Every change it makes goes through the workspace's writes, so it is sealed, queued and synced like
any other, and each is audited. It never erases anything itself (erasure is a purge on the server:
the UI calls the sync engine's `erase_person`), never prints or logs personal data, and keeps the
texts the UI shows as stable keys (`duplicate.<reason>`) for the UI to translate.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Literal

from ..domain.index import fold
from ..domain.tables import FAMILIES, AuditEventPublic, PersonUpdate
from ..domain.vocab import VOCABULARIES, AuditAction, Consent, RecordType
from ..errors import InvalidInput
from .exports import Translate, fmt_date, fmt_datetime, stable_names
from .reports import _require_unlocked, add_months, facts, to_date, to_datetime

if TYPE_CHECKING:
    from ..workspace import Workspace

__all__ = [
    "ConflictItem",
    "conflicts",
    "resolve_conflict",
    "DuplicateSuggestion",
    "duplicate_suggestions",
    "dismiss_duplicate",
    "MergeResult",
    "merge_persons",
    "RetentionItem",
    "DEFAULT_RETENTION_MONTHS",
    "RETENTION_KEEP",
    "retention_review",
    "keep_person",
    "ErasurePreview",
    "erasure_preview",
    "AccessReport",
    "access_request",
    "access_json",
    "access_text",
    "access_html",
    "audit_log",
    "audit_actors",
    "TEXT_KEYS",
]

DEFAULT_RETENTION_MONTHS = 24
RETENTION_KEEP = "retention: keep"  # the audit detail of a keep decision
_DISMISSED_KEY = "duplicates_dismissed"
_UNSET: Any = object()


# ================================================================================= conflicts
@dataclass(frozen=True)
class ConflictItem:
    """One field two devices changed without seeing each other: `value_b` is shown meanwhile.
    `label` says which record it is (a person's alias, a contact's time): for the screen only."""

    record_type: RecordType
    record_id: str
    field: str
    label: str
    value_a: Any
    device_a: str
    device_a_name: str | None
    at_a: datetime
    value_b: Any
    device_b: str
    device_b_name: str | None
    at_b: datetime


def conflicts(ws: Workspace, *, device_names: Mapping[str, str] | None = None,
              record_ids: Iterable[str] | None = None) -> list[ConflictItem]:
    """Open conflicts, newest first; `device_names` (device id -> name, from the sync engine's
    device list) names the devices; `record_ids` keeps those of some records."""
    names = device_names or {}
    keep = set(record_ids) if record_ids is not None else None
    recs = ws.index.records
    out = []
    for c in ws.conflicts():
        if keep is not None and c.record_id not in keep:
            continue
        values = recs[c.record_type].get(c.record_id, {})
        if c.record_type is RecordType.PERSON:
            label = str(values.get("alias") or "")
        elif c.record_type is RecordType.CONTACT:
            label = fmt_datetime(values.get("at"))
        else:
            label = str(values.get("name") or values.get("due") or "")
        out.append(ConflictItem(
            record_type=c.record_type, record_id=c.record_id, field=c.field, label=label,
            value_a=c.value_a, device_a=c.device_a, device_a_name=names.get(c.device_a), at_a=c.at_a,
            value_b=c.value_b, device_b=c.device_b, device_b_name=names.get(c.device_b), at_b=c.at_b,
        ))
    out.sort(key=lambda i: max(i.at_a, i.at_b), reverse=True)
    return out


def resolve_conflict(ws: Workspace, item: ConflictItem, *, keep: Literal["a", "b"] | None = None,
                     value: Any = _UNSET) -> None:
    """Settle a conflict by keeping one side (`keep="a"` or `"b"`) or writing a new `value`:
    a normal, synced change whose base covers both writes. Audited (action change)."""
    if (keep is None) == (value is _UNSET):
        raise InvalidInput("resolution", "choose one of the two values or write a new one")
    if keep is not None and keep not in ("a", "b"):
        raise InvalidInput("resolution", "keep is 'a' or 'b'")
    chosen = value if keep is None else (item.value_a if keep == "a" else item.value_b)
    with ws.store.atomic(), ws.unaudited():
        ws.resolve_conflict(item.record_type, item.record_id, item.field, chosen)
        ws.audit(AuditAction.CHANGE, item.record_type, item.record_id, detail=f"conflict resolved: {item.field}")


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


# ================================================================================= retention
@dataclass(frozen=True)
class RetentionItem:
    person_id: str
    alias: str
    last_contact: date | None  # last meeting (kind not `not_found`); None: never met
    since: date  # the last meeting, else the day the person was first registered
    kept_on: date | None  # the last 'keep' decision
    reason: str | None  # its reason (the person's retention note)


def _keep_decisions(ws: Workspace) -> dict[str, date]:
    out: dict[str, date] = {}
    for values in ws.index.records[RecordType.AUDIT].values():
        if (values.get("detail") == RETENTION_KEEP and values.get("action") == AuditAction.CHANGE.value
                and values.get("target_id")):
            day = to_date(values.get("at"))
            if day and day > out.get(values["target_id"], date.min):
                out[values["target_id"]] = day
    return out


def retention_review(ws: Workspace, *, months: int = DEFAULT_RETENTION_MONTHS, today: date | None = None,
                     include_kept: bool = False) -> list[RetentionItem]:
    """Persons not met for `months` months or more (never met: counted from when they were
    registered), oldest first. A person kept with a reason less than `months` months ago is left
    out unless `include_kept`; after that the decision is due again."""
    if not 1 <= months <= 600:
        raise InvalidInput("months", "between 1 and 600")
    today = today or date.today()
    cutoff = add_months(today, -months)
    f = facts(ws)
    met: dict[str, date] = {}
    for c in f.contacts:
        if c.met and c.person_id:
            met[c.person_id] = max(met.get(c.person_id, c.day), c.day)
    kept = _keep_decisions(ws)
    out = []
    for pid, p in f.persons.items():
        since = met.get(pid) or f.first_seen.get(pid)
        if since is None or since > cutoff:
            continue
        kept_on = kept.get(pid)
        if kept_on is not None and kept_on > cutoff and not include_kept:
            continue
        out.append(RetentionItem(person_id=pid, alias=str(p.get("alias") or ""), last_contact=met.get(pid),
                                 since=since, kept_on=kept_on, reason=p.get("retention_note")))
    out.sort(key=lambda i: (i.since, i.alias.casefold(), i.person_id))
    return out


def keep_person(ws: Workspace, person_id: str, *, reason: str) -> None:
    """Keep a person past the retention time: the reason goes into the person's sealed
    `retention_note` (synced), and an audit event (action change, detail 'retention: keep',
    no reason in it) dates the decision."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("reason", "say why the person's data is kept")
    with ws.store.atomic():
        ws.edit_person(person_id, {"retention_note": reason})
        ws.audit(AuditAction.CHANGE, RecordType.PERSON, person_id, detail=RETENTION_KEEP)


@dataclass(frozen=True)
class ErasurePreview:
    """What an erasure (art. 17) takes away, for the confirmation: counts only. An erasure record
    without personal data stays; audit events stay (they hold no personal data)."""

    person_id: str
    alias: str
    contacts: int
    follow_ups: int
    records: int  # all of them, the person included


def erasure_preview(ws: Workspace, person_id: str) -> ErasurePreview:
    alias = ws.get_person(person_id).alias
    ids = ws.person_record_ids(person_id)
    fus = sum(1 for i in ids if i in ws.index.records[RecordType.FOLLOWUP])
    contacts = sum(1 for i in ids if i in ws.index.records[RecordType.CONTACT])
    return ErasurePreview(person_id=person_id, alias=alias, contacts=contacts, follow_ups=fus, records=len(ids))


# ============================================================================ access request
@dataclass(frozen=True)
class AccessReport:
    """Everything stored about one person on this device (GDPR art. 15), JSON-ready."""

    person_id: str
    made_at: datetime
    person: dict[str, Any]
    contacts: tuple[dict[str, Any], ...]
    follow_ups: tuple[dict[str, Any], ...]
    audit_events: tuple[dict[str, Any], ...]
    conflicts: tuple[dict[str, Any], ...]
    places: dict[str, dict[str, Any]]  # the places the records name

    @property
    def records(self) -> int:
        return 1 + len(self.contacts) + len(self.follow_ups) + len(self.audit_events)


def _jsonable(values: dict[str, Any], rtype: RecordType | None = None) -> dict[str, Any]:
    """A record's stored values in a stable order (id, the model's fields, anything else kept),
    times as ISO text."""
    order = ["id", *(FAMILIES[rtype][2].model_fields if rtype else ())]
    out = {k: values[k] for k in order if k in values}
    out.update((k, v) for k, v in values.items() if k not in out and k != "created_hlc")  # clock internals
    for key in ("created_at", "updated_at"):
        if key in out:
            at = to_datetime(out[key])
            out[key] = at.isoformat(timespec="seconds") if at else None
    return out


def _merged_into(ws: Workspace, person_id: str) -> set[str]:
    """Ids of persons merged into this one, directly or through later merges."""
    index = ws.index
    return {drop for drop in index.merged if index.person_of(drop) == person_id}


def _is_about(event: Mapping[str, Any], about: set[str]) -> bool:
    """Whether an audit event's values name one of these ids (its target, or one of the persons
    a look-up showed)."""
    return event.get("target_id") in about or not about.isdisjoint(event.get("target_ids") or ())


def _about(ws: Workspace, person_id: str) -> set[str]:
    """The ids whose audit events are about this person: theirs, their contacts' and follow-ups',
    and those of persons merged into them."""
    return {*ws.person_record_ids(person_id), *_merged_into(ws, person_id)}


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def access_request(ws: Workspace, person_id: str) -> AccessReport:
    """Gather everything about one person: profile, contacts, follow-ups, audit events about
    them and open conflicts on their records. Audited as an export (counts only)."""
    person = ws.get_person(person_id)
    recs = ws.index.records
    ids = ws.person_record_ids(person_id)
    contacts = sorted((recs[RecordType.CONTACT][i] for i in ids if i in recs[RecordType.CONTACT]),
                      key=lambda c: (str(c.get("at")), c["id"]))
    fus = sorted((recs[RecordType.FOLLOWUP][i] for i in ids if i in recs[RecordType.FOLLOWUP]),
                 key=lambda f: (str(f.get("due")), f["id"]))
    about = _about(ws, person_id)
    events = sorted((e for e in recs[RecordType.AUDIT].values() if _is_about(e, about)),
                    key=lambda e: (str(e.get("at")), e["id"]))
    place_ids = {c.get("place_id") for c in contacts} | {recs[RecordType.PERSON][person_id].get("usual_place")}
    places = {pid: dict(recs[RecordType.PLACE][pid]) for pid in sorted(p for p in place_ids if p)
              if pid in recs[RecordType.PLACE]}
    open_conflicts = tuple(
        {k: _json_value(v) for k, v in asdict(c).items()} for c in conflicts(ws, record_ids=set(ids)))
    report = AccessReport(
        person_id=person_id, made_at=datetime.now().replace(microsecond=0),
        person=_jsonable({**person.model_dump(mode="json"), **recs[RecordType.PERSON][person_id]}, RecordType.PERSON),
        contacts=tuple(_jsonable(c, RecordType.CONTACT) for c in contacts),
        follow_ups=tuple(_jsonable(f, RecordType.FOLLOWUP) for f in fus),
        audit_events=tuple(_jsonable(e, RecordType.AUDIT) for e in events),
        conflicts=open_conflicts, places={k: _jsonable(v, RecordType.PLACE) for k, v in places.items()},
    )
    ws.audit(AuditAction.EXPORT, RecordType.PERSON, person_id,
             detail=f"access request: {report.records} records, {len(report.conflicts)} conflicts")
    return report


def access_json(report: AccessReport) -> str:
    """The access request as JSON (UTF-8 text, stable keys, indented)."""
    body = {
        "format": "outreach.access_request.v1",
        "person_id": report.person_id,
        "made_at": report.made_at.isoformat(),
        "person": report.person,
        "contacts": list(report.contacts),
        "follow_ups": list(report.follow_ups),
        "audit_events": list(report.audit_events),
        "conflicts": list(report.conflicts),
        "places": report.places,
    }
    return json.dumps(body, ensure_ascii=False, indent=2, sort_keys=False, default=str)


_DATES = {"consent_date", "status_date", "due", "follow_up"}
_TIMES = {"at", "created_at", "updated_at", "at_a", "at_b"}
_VOCAB_OF = {"gender": "gender", "category": "category", "ethos": "ethos", "consent": "consent", "status": "status",
             "needs": "need", "kind": "kind", "living": "living", "services": "service", "referrals": "referral",
             "action": "action", "target_type": "record", "record_type": "record"}


def _readable(name: str, value: Any, t: Translate, places: Mapping[str, dict[str, Any]]) -> str:
    if value is None or value == [] or value == "":
        return ""
    if name in _DATES:
        return fmt_date(value)
    if name in _TIMES:
        return fmt_datetime(value)
    if name in ("place_id", "usual_place") and value in places:
        return str(places[value].get("name") or value)
    vocab = _VOCAB_OF.get(name)
    if vocab and vocab in VOCABULARIES:
        items = value if isinstance(value, list) else [value]
        return ", ".join(t(f"{vocab}.{v}") for v in items)
    if isinstance(value, bool):
        return t("export.yes") if value else t("export.no")
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}".replace(".", ",")
    return str(value)


def _sections(report: AccessReport, t: Translate) -> list[tuple[str, list[list[tuple[str, str]]]]]:
    """(heading, records), each record a list of (label, text) with empty values left out."""

    def lines(values: Mapping[str, Any]) -> list[tuple[str, str]]:
        out = []
        for name, value in values.items():
            text = _readable(name, value, t, report.places)
            if text:
                out.append((t(f"export.{name}"), text))
        return out

    return [
        (t("access.person"), [lines(report.person)]),
        (t("access.contacts"), [lines(c) for c in report.contacts]),
        (t("access.follow_ups"), [lines(f) for f in report.follow_ups]),
        (t("access.audit_events"), [lines(e) for e in report.audit_events]),
        (t("access.conflicts"), [lines(c) for c in report.conflicts]),
        (t("access.places"), [lines(p) for p in report.places.values()]),
    ]


def access_text(report: AccessReport, *, translate: Translate | None = None) -> str:
    """The access request as a plain-text document a person can read."""
    t = translate or stable_names
    out = [t("access.title"), f"{t('access.made_at')}: {fmt_datetime(report.made_at)}", ""]
    for heading, records in _sections(report, t):
        out += [heading, "=" * len(heading)]
        if not records:
            out.append(f"({t('access.none')})")
        for rec in records:
            out += [f"{label}: {text}" for label, text in rec]
            out.append("")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def access_html(report: AccessReport, *, translate: Translate | None = None) -> str:
    """The access request as one self-contained, printable HTML page."""
    t = translate or stable_names
    esc = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="da"><head><meta charset="utf-8">',
             f"<title>{esc(t('access.title'))}</title><style>"
             "body{font-family:system-ui,Arial,sans-serif;max-width:50rem;margin:2rem auto;padding:0 1rem}"
             "dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;border-top:1px solid #ccc;"
             "padding-top:.4rem}dt{font-weight:600}dd{margin:0;white-space:pre-wrap}"
             "@page{size:A4;margin:18mm}@media print{body{margin:0}dl{break-inside:avoid}}</style></head><body>",
             f"<h1>{esc(t('access.title'))}</h1>",
             f"<p>{esc(t('access.made_at'))}: {esc(fmt_datetime(report.made_at))}</p>"]
    for heading, records in _sections(report, t):
        parts.append(f"<h2>{esc(heading)}</h2>")
        if not records:
            parts.append(f"<p>({esc(t('access.none'))})</p>")
        for rec in records:
            parts.append("<dl>" + "".join(f"<dt>{esc(label)}</dt><dd>{esc(text)}</dd>" for label, text in rec)
                         + "</dl>")
    parts.append("</body></html>")
    return "\n".join(parts)


# ================================================================================= audit log
def audit_log(ws: Workspace, *, person_id: str | None = None, actor: str | None = None,
              action: AuditAction | str | None = None, device_id: str | None = None,
              start: date | None = None, end: date | None = None,
              limit: int | None = None) -> list[AuditEventPublic]:
    """Audit events, newest first, filtered by person (events about them, their contacts and
    follow-ups, and persons merged into them), worker (the actor: the name on the acting device,
    case-insensitive), action, device and day range."""
    # newest first; events within one second in the order they were written (their clock)
    written = {rid: v.get("created_hlc") or 0 for rid, v in ws.index.records[RecordType.AUDIT].items()}
    events = sorted(ws.audit_events(), key=lambda e: (e.at, written.get(e.id, 0)), reverse=True)
    about = _about(ws, person_id) if person_id else None
    want_actor = " ".join(actor.casefold().split()) if actor else None
    want_action = AuditAction(action) if action else None
    out = []
    for e in events:
        if about is not None and e.target_id not in about and not about.intersection(e.target_ids):
            continue
        if want_actor is not None and " ".join(e.actor.casefold().split()) != want_actor:
            continue
        if want_action is not None and e.action != want_action:
            continue
        if device_id and e.device_id != device_id:
            continue
        day = e.at.date()
        if (start and day < start) or (end and day > end):
            continue
        out.append(e)
        if limit and len(out) >= limit:
            break
    return out


def audit_actors(ws: Workspace) -> list[str]:
    """The workers named in the audit log, for the filter's choices."""
    return sorted({str(e.get("actor") or "") for e in ws.index.records[RecordType.AUDIT].values()} - {""},
                  key=str.casefold)


_REASONS = ("same_cpr", "same_alias", "similar_alias", "same_full_name", "similar_full_name", "same_birth_year",
            "near_birth_year", "similar_description", "same_usual_place", "shared_places")

# Every key this module asks `translate` for besides the vocabularies' `<name>.<value>` (the
# access document's field labels reuse `export.<field>`), and the duplicate reasons' keys.
TEXT_KEYS: tuple[str, ...] = tuple(sorted({
    *(f"access.{k}" for k in ("title", "made_at", "none", "person", "contacts", "follow_ups", "audit_events",
                              "conflicts", "places")),
    "export.yes", "export.no",
    *(f"export.{name}" for family in FAMILIES.values() for name in family[2].model_fields),
    "export.created_at", "export.updated_at",
    *(f"export.{name}" for name in ConflictItem.__dataclass_fields__),
    *(f"duplicate.{r}" for r in _REASONS),
}))
