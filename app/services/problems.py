"""Errors as the screens show them: `explain` turns the roots of both exception trees (the store's
and the sync's) into a `Problem` (an i18n key, its parameters and the form field to show it at).
`FingerprintMismatch` is the desk's own refusal (a typed fingerprint that is not the listed one).
It builds no control and knows no screen; every part of the facade and the screens use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from models.errors import (
    InvalidInput,
    KeystoreUnavailable,
    NotFound,
    StoreError,
    TamperedRecord,
    VaultLocked,
    VaultWiped,
    WeakPassphrase,
    WrongPassphrase,
)
from models.errors import Throttled as UnlockThrottled
from models.workspace import MIN_PASSPHRASE
from sync.engine import WouldStrand
from sync.errors import (
    CodeInvalid,
    DevicePending,
    DeviceRetired,
    DeviceRevoked,
    InsecureURL,
    KeyRefused,
    NotJoined,
    Offline,
    ProofMismatch,
    Rejected,
    RevocationUnproven,
    ServerEmpty,
    ServerFault,
    ServerUnavailable,
    SyncError,
)
from sync.errors import Throttled as ServerThrottled

__all__ = ["Problem", "explain", "FingerprintMismatch"]


class FingerprintMismatch(ProofMismatch):
    """The fingerprint typed at the desk is not the one the server lists for that device: its key
    may have been swapped on the way. It was not let in (said at the field, not as a join error)."""


@dataclass(frozen=True)
class Problem:
    """An error as the UI shows it: words (i18n key + parameters) and where (a form field)."""

    key: str
    params: dict[str, Any] = field(default_factory=dict)
    field: str | None = None
    retry_after: float = 0.0


# fields whose bad input has words of its own (`errors.invalid_<field>`); others say "not valid"
_SPECIFIC_INVALID = frozenset({"folder", "device", "reason", "value", "months", "year", "week", "fingerprint",
                               "device_waiting"})


def explain(exc: BaseException) -> Problem:
    """The roots of both exception trees, in words a worker understands."""
    if isinstance(exc, WrongPassphrase):
        key = "errors.wrong_pin_wait" if exc.retry_after > 0 else "errors.wrong_pin"
        return Problem(key, {"left": exc.attempts_left, "seconds": round(exc.retry_after)}, "pin", exc.retry_after)
    if isinstance(exc, UnlockThrottled):
        return Problem("errors.throttled", {"seconds": round(exc.retry_after)}, "pin", exc.retry_after)
    if isinstance(exc, VaultWiped):
        return Problem("errors.wiped")
    if isinstance(exc, WeakPassphrase):
        return Problem("errors.pin_easy", {"n": MIN_PASSPHRASE}, "pin")
    if isinstance(exc, KeystoreUnavailable):
        return Problem("errors.keystore", {}, "pin")
    if isinstance(exc, VaultLocked):
        return Problem("errors.locked")
    if isinstance(exc, InvalidInput):
        key = f"errors.invalid_{exc.field}" if exc.field in _SPECIFIC_INVALID else "errors.invalid"
        return Problem(key, {"field": exc.field}, exc.field)
    if isinstance(exc, NotFound):
        return Problem("errors.not_found")
    if isinstance(exc, TamperedRecord):
        return Problem("errors.tampered")
    if isinstance(exc, StoreError):
        return Problem("errors.store")
    if isinstance(exc, ServerUnavailable):
        return Problem("errors.server_unavailable", {}, "server")
    if isinstance(exc, Offline):
        return Problem("errors.offline", {}, "server")
    if isinstance(exc, InsecureURL):
        return Problem("errors.insecure_url", {}, "server")
    if isinstance(exc, CodeInvalid):
        return Problem("errors.code_invalid", {}, "code")
    if isinstance(exc, ServerThrottled):
        return Problem("errors.code_throttled", {"seconds": round(exc.retry_after)}, "code", exc.retry_after)
    if isinstance(exc, DevicePending):
        return Problem("sync.device_pending")
    if isinstance(exc, DeviceRevoked):
        return Problem("errors.revoked")
    if isinstance(exc, DeviceRetired):
        return Problem("errors.retired")
    if isinstance(exc, WouldStrand):
        return Problem("errors.would_strand", {"n": len(exc.devices)})
    if isinstance(exc, FingerprintMismatch):  # the coordinator's comparison, not a join refused
        return Problem("errors.fingerprint_mismatch", {}, "fingerprint")
    if isinstance(exc, ProofMismatch):
        return Problem("errors.proof")
    if isinstance(exc, RevocationUnproven):
        return Problem("errors.revocation_unproven")
    if isinstance(exc, KeyRefused):  # nothing was adopted: the coordinator has to look, not the worker
        return Problem("errors.key_changed" if exc.changed else "errors.key_refused")
    if isinstance(exc, NotJoined):
        return Problem("sync.not_joined")
    if isinstance(exc, ServerEmpty):
        return Problem("errors.server_empty", {}, "server")
    if isinstance(exc, ServerFault):
        return Problem("errors.server_fault", {}, "server")
    if isinstance(exc, Rejected):
        return Problem("errors.rejected", {"code": exc.code})
    if isinstance(exc, SyncError):
        return Problem("errors.sync_failed")
    return Problem("errors.unexpected")
