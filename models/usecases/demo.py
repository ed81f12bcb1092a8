"""A deterministic generator of clearly fake, Danish-like outreach data for demos, tests and the
benchmark. Every alias starts with "Demo", every name ends with "(demo)" and notes say "Demo:",
so that nobody mistakes it for a real person. Same seed, same data (ids aside).
"""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta
from typing import Any

from ..domain.vocab import ContactKind, HomelessCategory, Living, Need, Referral, Service, Status

__all__ = ["DemoGenerator", "PLACES", "populate"]

PLACES = [
    ("Hovedbanegården", "City"), ("Nørreport St.", "City"), ("Enghave Parken", "Vesterbro"),
    ("Halmtorvet", "Vesterbro"), ("Kongens Have", "City"), ("Ørstedsparken", "City"),
    ("Nørrebroparken", "Nørrebro"), ("Sønder Boulevard", "Vesterbro"), ("Christianshavns Torv", "Christianshavn"),
    ("Amagerbro St.", "Amager"), ("Valby Station", "Valby"), ("Fælledparken", "Østerbro"),
    ("Kirkens Korshær varmestue", "Vesterbro"), ("Mændenes Hjem", "Vesterbro"), ("Sundholm", "Amager"),
    ("Trappeopgang Istedgade", "Vesterbro"), ("Rådhuspladsen", "City"), ("Israels Plads", "City"),
]
_FIRST = ["Søren", "Jens", "Åse", "Bjørn", "Mette", "Lars", "Ærø", "Pia", "Kasper", "Jørgen", "Hanne",
          "Mads", "Birgit", "Ole", "Tove", "Niels", "Grete", "Palle", "Dorthe", "Bent", "Maja", "Ib",
          "Karin", "Torben", "Lise", "Ahmed", "Marek", "Ion", "Fatima", "Agnieszka"]
_LAST = ["Hansen", "Jensen", "Nielsen", "Pedersen", "Andersen", "Christensen", "Larsen", "Sørensen",
         "Rasmussen", "Jørgensen", "Petersen", "Madsen", "Kristensen", "Olsen", "Thomsen", "Møller"]
_NICK = ["Store", "Lille", "Røde", "Gamle", "Unge", "Skæve", "Glade", "Stille", "Lange", "Bette"]
_LOOKS = ["grøn jakke", "rød hue", "stor rygsæk", "hund (schæfer)", "cykel med anhænger", "briller",
          "gråt skæg", "sovepose under armen", "blå sportstaske", "krykke"]
_NOTES = ["Demo: talte om bolig og næste møde.", "Demo: virkede træt, fik kaffe og mad.",
          "Demo: vil gerne have hjælp til jobcenter.", "Demo: sov i opgangen i nat, koldt.",
          "Demo: ny sovepose, aftalte at mødes fredag.", "Demo: spurgte efter lægen på varmestuen.",
          "Demo: ikke set i en uge, spurgt rundt.", "Demo: glad for ny hue og handsker.",
          "Demo: snak om kontanthjælp og adresse.", "Demo: henvist til herberg, plads fra mandag."]


class DemoGenerator:
    def __init__(self, seed: int = 169, today: date | None = None) -> None:
        self.rng = random.Random(seed)
        self.today = today or date(2026, 11, 25)

    def places(self) -> list[dict[str, Any]]:
        return [{"name": name, "zone": zone} for name, zone in PLACES]

    def person(self, n: int, place_ids: list[str]) -> dict[str, Any]:
        r = self.rng
        first = r.choice(_FIRST)
        status = r.choices(list(Status), weights=[80, 10, 4, 2, 4])[0]
        return {
            "alias": f"Demo {r.choice(_NICK)} {first} {n}",
            "full_name": f"{first} {r.choice(_LAST)} (demo)" if r.random() < 0.6 else None,
            "birth_year": r.randint(1950, 2004) if r.random() < 0.8 else None,
            "gender": r.choice(["female", "male", "male", "unknown"]),
            "description": f"Demo: {r.choice(_LOOKS)}",
            "category": r.choice(list(HomelessCategory)).value,
            "consent": r.choice(["none", "verbal", "written"]),
            "status": status.value,
            "needs": sorted({r.choice(list(Need)).value for _ in range(r.randint(0, 3))}),
            "usual_place": r.choice(place_ids) if place_ids and r.random() < 0.7 else None,
        }

    def contact(self, at: datetime, person_ids: list[str], place_ids: list[str]) -> dict[str, Any]:
        r = self.rng
        services = sorted({r.choice(list(Service)).value for _ in range(r.randint(0, 3))})
        return {
            "at": at.isoformat(timespec="minutes"),
            "person_id": r.choice(person_ids) if person_ids and r.random() < 0.92 else None,
            "place_id": r.choice(place_ids) if place_ids else None,
            "kind": r.choices(list(ContactKind), weights=[70, 15, 5, 5, 5])[0].value,
            "living": r.choice(list(Living)).value if r.random() < 0.5 else None,
            "services": services,
            "referrals": [r.choice(list(Referral)).value] if "referral" in services else [],
            "note": r.choice(_NOTES) if r.random() < 0.7 else None,
        }

    def contact_times(self, count: int, days: int = 730) -> list[datetime]:
        """`count` meeting times over the last `days` days, ascending, mostly evenings."""
        start = datetime.combine(self.today - timedelta(days=days), datetime.min.time())
        out = []
        for _ in range(count):
            day = self.rng.randrange(days + 1)
            minute = self.rng.choice([9, 10, 14, 19, 20, 21, 22, 23]) * 60 + self.rng.randrange(60)
            out.append(start + timedelta(days=day, minutes=minute))
        out.sort()
        return out


def populate(ws: Any, *, persons: int, contacts: int, seed: int = 169, chunk: int = 5000) -> dict[str, int]:
    """Fill an unlocked workspace with demo data through the service layer (every record sealed
    and queued for sync like a real one), `chunk` changes per transaction. Made-up records
    write no audit events."""
    with ws.unaudited():
        return _populate(ws, persons=persons, contacts=contacts, seed=seed, chunk=chunk)


def _populate(ws: Any, *, persons: int, contacts: int, seed: int, chunk: int) -> dict[str, int]:
    gen = DemoGenerator(seed)
    place_ids: list[str] = []
    person_ids: list[str] = []
    with ws.bulk():
        for place in gen.places():
            place_ids.append(ws.add_place(place).id)
    for start in range(0, persons, chunk):
        with ws.bulk():
            for n in range(start, min(persons, start + chunk)):
                person_ids.append(ws.add_person(gen.person(n + 1, place_ids)).id)
    times = gen.contact_times(contacts)
    for start in range(0, contacts, chunk):
        with ws.bulk():
            for at in times[start : start + chunk]:
                ws.add_contact(gen.contact(at, person_ids, place_ids))
    return {"places": len(place_ids), "persons": len(person_ids), "contacts": contacts}
