"""The in-memory index of an unlocked workspace: the opened records, the lists the screens need
(recent contacts, persons by last contact, follow-ups due) and text search that ignores case and
accents and knows Danish spelling (`å`/`aa`, `æ`/`ae`, `ø`/`oe`). It lives only while the vault is
unlocked and is dropped on lock; it never writes anything anywhere.

Search keeps one long string of normalised texts per kind and scans it with `str.find` (C speed),
plus a small set of records changed since that string was built, scanned one by one; the string is
rebuilt when that set grows. `Index.dump_derived` hands out those strings and the time order for the
workspace's sealed snapshot, so that an unlock joins them instead of folding every text again.
"""

from __future__ import annotations

import bisect
import heapq
import re
import unicodedata
from collections.abc import Iterable, Iterator
from itertools import accumulate
from typing import Any

from .vocab import RecordType

__all__ = ["fold", "query_forms", "TextIndex", "Index", "merged_away"]

_DANISH = str.maketrans({"æ": "ae", "ø": "oe", "å": "aa", "ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"})
_PLAIN = str.maketrans({"æ": "ae", "ø": "o", "ß": "ss", "đ": "d", "ł": "l"})
_SEP = "\x1e"
_MERGED = re.compile(r"^merged ([0-9a-f]{32})")


def merged_away(audit: dict[str, Any]) -> tuple[str, str] | None:
    """(merged-away person id, kept person id) when an audit event's values record a merge of two
    persons, else None. A merge is written once, with the re-pointing of what its device knew;
    records that arrive later still name the merged-away person and are redirected by it."""
    if audit.get("action") != "merge" or audit.get("target_type") not in (None, RecordType.PERSON.value):
        return None
    m = _MERGED.match(str(audit.get("detail") or ""))
    keep = audit.get("target_id")
    if m is None or not keep or m.group(1) == keep:
        return None
    return m.group(1), str(keep)


def _mark_free_table() -> dict[int, str]:
    """Latin letters with diacritics (U+00C0..U+024F) -> their base letters, for str.translate."""
    table: dict[int, str] = {}
    for code in range(0xC0, 0x250):
        base = "".join(c for c in unicodedata.normalize("NFKD", chr(code)) if not unicodedata.combining(c))
        if base != chr(code):
            table[code] = base
    return table


_MARKS = _mark_free_table()


def _strip_marks(text: str) -> str:
    if text.isascii():
        return text
    text = text.translate(_MARKS)
    if text.isascii():
        return text
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def fold(text: str) -> str:
    """Both searchable forms of a text: Danish transcription (Søren -> soeren, Åse -> aase) and
    accents dropped (Søren -> soren, Åse -> ase), separated so that no match spans the two."""
    low = " ".join(text.casefold().split())
    return _strip_marks(low.translate(_DANISH)) + _SEP + _strip_marks(low.translate(_PLAIN))


def query_forms(query: str) -> list[str]:
    """The forms of one query word to look for in `fold`ed texts."""
    low = query.casefold().strip()
    forms = {_strip_marks(low.translate(_DANISH)), _strip_marks(low.translate(_PLAIN))}
    return sorted(f for f in forms if f)


class TextIndex:
    """Ids with folded texts; `search` returns ids whose text contains every query word."""

    REBUILD_AT = 2000

    def __init__(self) -> None:
        self._texts: dict[str, str] = {}
        self._blob = ""
        self._blob_ids: list[str] = []
        self._offsets: list[int] = []
        self._dirty: set[str] = set()

    def __len__(self) -> int:
        return len(self._texts)

    def load(self, items: Iterable[tuple[str, str]]) -> None:
        self._texts = {rid: fold(text) for rid, text in items}
        self._rebuild()

    def dump(self) -> tuple[list[str], str]:
        """The ids and the joined folded texts (one line each), for `load_folded`."""
        if self._dirty:
            self._rebuild()
        return list(self._blob_ids), self._blob

    def load_folded(self, ids: list[str], blob: str) -> None:
        """Load what `dump` gave, without folding again. ValueError when the two do not agree."""
        texts = blob.split("\n") if ids else []
        if len(texts) != len(ids) or (not ids and blob):
            raise ValueError("folded texts and ids do not match")
        self._texts = dict(zip(ids, texts, strict=True))
        if len(self._texts) != len(ids):
            raise ValueError("duplicate ids in folded texts")
        self._blob = blob
        self._blob_ids = list(ids)
        self._offsets = list(accumulate((len(t) + 1 for t in texts), initial=0))[:-1] if texts else []
        self._dirty = set()

    def set(self, rid: str, text: str) -> None:
        self._texts[rid] = fold(text)
        self._touch(rid)

    def remove(self, rid: str) -> None:
        if self._texts.pop(rid, None) is not None:
            self._touch(rid)

    def _touch(self, rid: str) -> None:
        self._dirty.add(rid)
        # rebuilding costs the whole index: let the changed set grow with it (a big pull would
        # otherwise rebuild 100,000 texts every 2,000 changes)
        if len(self._dirty) > max(self.REBUILD_AT, len(self._texts) // 8):
            self._rebuild()

    def _rebuild(self) -> None:
        ids = list(self._texts)
        offsets: list[int] = []
        pos = 0
        for rid in ids:
            offsets.append(pos)
            pos += len(self._texts[rid]) + 1
        self._blob = "\n".join(self._texts[r] for r in ids)
        self._blob_ids = ids
        self._offsets = offsets
        self._dirty = set()

    def search(self, words: list[str], limit: int) -> list[str]:
        """Ids whose text contains every word (each in one of its forms), at most `limit`, in the
        order of the index. The rarest word is looked for first, and each candidate is checked
        against the other words as soon as it is found, so a search stops at `limit`."""
        forms = [f for f in (query_forms(w) for w in words) if f]
        if not forms:
            return []
        blob = self._blob
        sample = blob[: 1 << 18]
        forms.sort(key=lambda alts: sum(sample.count(f) for f in alts))  # rarest first
        first, rest = forms[0], forms[1:]
        found: list[str] = []
        seen: set[str] = set()

        def accept(rid: str) -> bool:
            text = self._texts.get(rid)
            if text is not None and rid not in seen and all(any(f in text for f in alts) for alts in rest):
                seen.add(rid)
                found.append(rid)
            return len(found) >= limit

        for rid in self._dirty:  # changed since the rebuild: checked on their new text
            if any(f in self._texts.get(rid, "") for f in first) and accept(rid):
                return found
        offsets, ids, dirty = self._offsets, self._blob_ids, self._dirty

        def hits(form: str) -> Iterator[int]:
            start = 0
            while (pos := blob.find(form, start)) >= 0:
                i = bisect.bisect_right(offsets, pos) - 1
                yield i
                start = offsets[i + 1] if i + 1 < len(offsets) else len(blob)

        last = -1
        for i in heapq.merge(*(hits(f) for f in first)):
            if i == last:
                continue
            last = i
            rid = ids[i]
            if rid not in dirty and accept(rid):
                break
        return found


class Index:
    """Opened records by type, and the derived lists.

    Merges redirect: a contact or follow-up that names a person merged into another (it was
    written, or arrived, after the merge) is shown, counted and exported as the kept person's.
    The redirect is read from the merge's audit event, which every device holds, so every device
    shows the same whatever the order its records arrived in; the sealed row keeps what was
    written."""

    _PERSON_REF = (RecordType.CONTACT, RecordType.FOLLOWUP)

    def __init__(self) -> None:
        self.records: dict[RecordType, dict[str, dict[str, Any]]] = {t: {} for t in RecordType}
        self.merged: dict[str, str] = {}  # merged-away person id -> the person it was merged into
        self.text: dict[RecordType, TextIndex] = {
            RecordType.PERSON: TextIndex(), RecordType.CONTACT: TextIndex(), RecordType.PLACE: TextIndex(),
        }
        self._by_time: list[tuple[str, str]] = []  # (at iso, contact id), ascending
        self.contacts_of: dict[str, set[str]] = {}
        self.last_contact: dict[str, str] = {}  # person id -> latest contact `at`

    # ----------------------------------------------------------------------- texts
    def _person_text(self, p: dict[str, Any]) -> str:
        place = self.records[RecordType.PLACE].get(p.get("usual_place") or "", {})
        return " ".join(str(p.get(k) or "") for k in ("alias", "full_name", "description")) + " " + str(
            place.get("name") or ""
        )

    def _contact_text(self, c: dict[str, Any]) -> str:
        return str(c.get("note") or "")

    @staticmethod
    def _place_text(pl: dict[str, Any]) -> str:
        return f"{pl.get('name') or ''} {pl.get('zone') or ''}"

    # ---------------------------------------------------------------------- merges
    def person_of(self, person_id: str | None) -> str | None:
        """The person a reference means today: itself, or the person it was merged into (through
        every later merge; a circle of merges stops where it closes)."""
        seen: set[str] = set()
        while person_id in self.merged and person_id not in seen:
            seen.add(person_id)
            person_id = self.merged[person_id]
        return person_id

    def _redirect(self, values: dict[str, Any]) -> dict[str, Any]:
        pid = values.get("person_id")
        if pid and pid in self.merged:
            values = {**values, "person_id": self.person_of(pid)}
        return values

    def _load_merges(self) -> None:
        self.merged = {}
        for values in sorted(self.records[RecordType.AUDIT].values(), key=lambda v: str(v.get("at") or "")):
            pair = merged_away(values)
            if pair is not None:
                self.merged.setdefault(*pair)

    def _add_merge(self, drop: str, keep: str) -> None:
        if drop in self.merged:
            return
        self.merged[drop] = keep
        for rtype in self._PERSON_REF:
            table = self.records[rtype]
            for rid in [r for r, v in table.items() if v.get("person_id") == drop]:
                self.put(rtype, rid, table[rid])

    # ---------------------------------------------------------------------- loading
    def load(self, rows: dict[RecordType, dict[str, dict[str, Any]]],
             derived: dict[str, Any] | None = None) -> None:
        """Load opened records. `derived` (`dump_derived` of an index of the same records) spares
        folding every text and sorting by time; ValueError when it does not fit the records."""
        self.records = {t: dict(rows.get(t, {})) for t in RecordType}
        self._load_merges()
        if self.merged:
            for rtype in self._PERSON_REF:
                table = self.records[rtype]
                for rid, values in table.items():
                    table[rid] = self._redirect(values)
        if derived is not None:
            self._load_derived(derived)
            return
        persons = self.records[RecordType.PERSON]
        contacts = self.records[RecordType.CONTACT]
        places = self.records[RecordType.PLACE]
        self.text[RecordType.PLACE].load((i, self._place_text(r)) for i, r in places.items())
        self.text[RecordType.PERSON].load((i, self._person_text(r)) for i, r in persons.items())
        self.text[RecordType.CONTACT].load((i, self._contact_text(r)) for i, r in contacts.items() if r.get("note"))
        self._by_time = sorted((str(c.get("at") or ""), i) for i, c in contacts.items())
        self.contacts_of = {}
        self.last_contact = {}
        for at, cid in self._by_time:
            pid = contacts[cid].get("person_id")
            if pid:
                self.contacts_of.setdefault(pid, set()).add(cid)
                self.last_contact[pid] = at

    def _load_derived(self, derived: dict[str, Any]) -> None:
        for rtype, text in self.text.items():
            ids, blob = derived["texts"][rtype.value]
            table = self.records[rtype]
            if not all(i in table for i in ids):
                raise ValueError("folded texts of records not loaded")
            text.load_folded(ids, blob)
        ats, order = derived["by_time"]
        if len(order) != len(self.records[RecordType.CONTACT]) or len(ats) != len(order):
            raise ValueError("time order does not cover the contacts")
        self._by_time = list(zip(ats, order, strict=True))
        self.contacts_of = {pid: set(cids) for pid, cids in derived["contacts_of"].items()}
        self.last_contact = dict(derived["last_contact"])

    def dump_derived(self) -> dict[str, Any]:
        """What `load` would otherwise compute from the records: the folded texts and the time
        order (JSON-ready). It holds personal data: only ever stored sealed."""
        return {"texts": {t.value: list(self.text[t].dump()) for t in self.text},
                "by_time": [[at for at, _ in self._by_time], [cid for _, cid in self._by_time]],
                "contacts_of": {pid: sorted(cids) for pid, cids in self.contacts_of.items()},
                "last_contact": self.last_contact}

    # ---------------------------------------------------------------------- updates
    def put(self, rtype: RecordType, rid: str, values: dict[str, Any] | None) -> None:
        """Replace one record's values (None: it is gone: deleted, erased)."""
        table = self.records[rtype]
        if values is not None and rtype in self._PERSON_REF:
            values = self._redirect(values)
        old = table.pop(rid, None)
        if rtype is RecordType.CONTACT and old is not None:
            self._unlink_contact(rid, old)
        if values is None:
            if rtype in self.text:
                self.text[rtype].remove(rid)
            if rtype is RecordType.PLACE:
                self._refresh_persons_at(rid)
            return
        table[rid] = values
        if rtype is RecordType.AUDIT and (pair := merged_away(values)) is not None:
            self._add_merge(*pair)
        elif rtype is RecordType.PERSON:
            self.text[rtype].set(rid, self._person_text(values))
        elif rtype is RecordType.PLACE:
            self.text[rtype].set(rid, self._place_text(values))
            self._refresh_persons_at(rid)
        elif rtype is RecordType.CONTACT:
            if values.get("note"):
                self.text[rtype].set(rid, self._contact_text(values))
            else:
                self.text[rtype].remove(rid)
            self._link_contact(rid, values)

    def _refresh_persons_at(self, place_id: str) -> None:
        """Persons' texts include their usual place's name: renew them when that place changes."""
        for pid, person in self.records[RecordType.PERSON].items():
            if person.get("usual_place") == place_id:
                self.text[RecordType.PERSON].set(pid, self._person_text(person))

    def _link_contact(self, cid: str, c: dict[str, Any]) -> None:
        at = str(c.get("at") or "")
        bisect.insort(self._by_time, (at, cid))
        pid = c.get("person_id")
        if pid:
            self.contacts_of.setdefault(pid, set()).add(cid)
            if at > self.last_contact.get(pid, ""):
                self.last_contact[pid] = at

    def _unlink_contact(self, cid: str, c: dict[str, Any]) -> None:
        key = (str(c.get("at") or ""), cid)
        i = bisect.bisect_left(self._by_time, key)
        if i < len(self._by_time) and self._by_time[i] == key:
            del self._by_time[i]
        pid = c.get("person_id")
        if pid and pid in self.contacts_of:
            self.contacts_of[pid].discard(cid)
            contacts = self.records[RecordType.CONTACT]
            ats = [str(contacts[x].get("at") or "") for x in self.contacts_of[pid] if x in contacts]
            if ats:
                self.last_contact[pid] = max(ats)
            else:
                self.last_contact.pop(pid, None)

    # ------------------------------------------------------------------------ lists
    def recent_contacts(self, limit: int, person_id: str | None = None) -> list[str]:
        if person_id is not None:
            contacts = self.records[RecordType.CONTACT]
            ids = sorted(self.contacts_of.get(person_id, ()), key=lambda c: (str(contacts[c].get("at")), c),
                         reverse=True)
            return ids[:limit]
        return [cid for _, cid in reversed(self._by_time[-limit:])] if limit else []

    def contacts_since(self, at_iso: str) -> list[str]:
        i = bisect.bisect_left(self._by_time, (at_iso, ""))
        return [cid for _, cid in reversed(self._by_time[i:])]
