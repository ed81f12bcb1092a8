"""The outreach vocabulary, defined once: homeless categories of the national count, ETHOS groups,
contact kinds, services, referrals, statuses, consent levels. Values are stable keys stored inside
sealed records; what a person reads comes from `assets/i18n/<lang>.json` under `<enum>.<value>`
(a test checks that every value has a Danish and an English text).
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "HomelessCategory",
    "Ethos",
    "ContactKind",
    "Service",
    "Referral",
    "Status",
    "Consent",
    "Gender",
    "Need",
    "Living",
    "RecordType",
    "AuditAction",
    "VOCABULARIES",
]


class HomelessCategory(StrEnum):
    """The nine situations of VIVE's national homeless count."""

    STREET = "street"  # gade, trappeopgang, skur el.lign.
    EMERGENCY_BED = "emergency_bed"  # natvarmestue / varmestue med nødovernatning
    SHELTER = "shelter"  # herberg, forsorgshjem (§110)
    HOTEL = "hotel"  # hotel, vandrehjem el.lign.
    SOFA_SURFER = "sofa_surfer"  # midlertidigt hos familie/venner uden kontrakt
    MOVE_ON = "move_on"  # udslusningsbolig uden permanent kontrakt
    PRISON = "prison"  # Kriminalforsorgen, løsladt inden for en måned, uden bolig
    HOSPITAL = "hospital"  # hospital/behandling, udskrives inden for en måned, uden bolig
    OTHER = "other"  # andet, fx kolonihavehus, campingvogn


class Ethos(StrEnum):
    ROOFLESS = "roofless"
    HOUSELESS = "houseless"
    INSECURE = "insecure"
    INADEQUATE = "inadequate"


class ContactKind(StrEnum):
    STREET = "street"
    DROP_IN = "drop_in"
    PHONE = "phone"
    HOME_VISIT = "home_visit"
    NOT_FOUND = "not_found"  # looked for the person but did not find them


class Service(StrEnum):
    FOOD = "food"
    DRINK = "drink"
    CLOTHING = "clothing"
    SLEEPING_BAG = "sleeping_bag"
    TRANSPORT = "transport"
    HARM_REDUCTION = "harm_reduction"
    HYGIENE = "hygiene"
    HEALTH = "health"
    CONVERSATION = "conversation"
    BENEFITS_HELP = "benefits_help"
    HOUSING_HELP = "housing_help"
    REFERRAL = "referral"


class Referral(StrEnum):
    SHELTER = "shelter"
    HOUSING = "housing"
    HEALTH = "health"
    ADDICTION = "addiction"
    MENTAL_HEALTH = "mental_health"
    JOBCENTER = "jobcenter"
    DROP_IN = "drop_in"
    OTHER = "other"


class Status(StrEnum):
    ACTIVE = "active"
    HOUSED = "housed"
    MOVED_AWAY = "moved_away"
    DECEASED = "deceased"
    CLOSED = "closed"


class Consent(StrEnum):
    NONE = "none"
    VERBAL = "verbal"
    WRITTEN = "written"


class Gender(StrEnum):
    FEMALE = "female"
    MALE = "male"
    OTHER = "other"
    UNKNOWN = "unknown"


class Need(StrEnum):
    ALCOHOL = "alcohol"
    DRUGS = "drugs"
    MENTAL_HEALTH = "mental_health"
    PHYSICAL_HEALTH = "physical_health"
    INCOME = "income"
    DEBT = "debt"
    LEGAL = "legal"
    LANGUAGE = "language"


class Living(StrEnum):
    """Where the person sleeps tonight: the count's categories plus a home and not known."""

    STREET = "street"
    EMERGENCY_BED = "emergency_bed"
    SHELTER = "shelter"
    HOTEL = "hotel"
    SOFA_SURFER = "sofa_surfer"
    MOVE_ON = "move_on"
    PRISON = "prison"
    HOSPITAL = "hospital"
    OTHER = "other"
    OWN_HOME = "own_home"
    UNKNOWN = "unknown"


class RecordType(StrEnum):
    PERSON = "person"
    CONTACT = "contact"
    PLACE = "place"
    FOLLOWUP = "followup"
    AUDIT = "audit"


class AuditAction(StrEnum):
    READ = "read"
    CREATE = "create"
    CHANGE = "change"
    DELETE = "delete"
    EXPORT = "export"
    ERASE = "erase"
    MERGE = "merge"


VOCABULARIES: dict[str, type[StrEnum]] = {
    "category": HomelessCategory,
    "ethos": Ethos,
    "kind": ContactKind,
    "service": Service,
    "referral": Referral,
    "status": Status,
    "consent": Consent,
    "gender": Gender,
    "need": Need,
    "living": Living,
    "record": RecordType,
    "action": AuditAction,
}
