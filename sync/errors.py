"""The exception tree of the sync side. The UI and the CLI catch only the root, `SyncError`, and
show `str(exc)`: a sentence a worker understands ("No connection to the server; your changes are
kept on this device and will be sent later."), never personal data.

    SyncError
    ├── Offline              no connection, DNS, TLS handshake or timeout, after retries
    ├── InsecureURL          plain http:// to a host that is not loopback, not allowed
    ├── ServerFault          5xx after retries, or an answer that breaks the protocol
    ├── NotJoined            this device is not in a team yet
    ├── ProofMismatch        a joining device's key does not match its code (server tampering?)
    ├── RevocationUnproven   "revoked" on the server's word alone: nothing erased, syncing stops
    ├── DeviceRetired        the coordinator retired this device: it handed everything over and
    │                        cleared itself
    ├── WouldStrand          a revoke would leave active devices without the new key; nothing done
    ├── KeyRefused           a team key the coordinator did not sign, or a second key for a held
    │                        epoch: nothing adopted, syncing stops (docs/SECURITY.md)
    └── Rejected             a 4xx with a protocol error code; `.code` is the ErrorCode
        ├── DeviceRevoked    the team revoked this device: local data must be wiped
        ├── DevicePending    waiting for the coordinator to let this device in
        ├── StaleEpoch       the team key changed; `.current_epoch`
        ├── CodeInvalid      unknown, used or expired enrollment or recovery code
        └── Throttled        too many attempts; `.retry_after`
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "SyncError", "Offline", "ServerUnavailable", "InsecureURL", "ServerFault", "ServerEmpty", "NotJoined", "ProofMismatch", "KeyRefused",
    "RevocationUnproven", "DeviceRetired", "WouldStrand", "Rejected",
    "DeviceRevoked", "DevicePending", "StaleEpoch", "CodeInvalid", "Throttled",
]


class SyncError(Exception):
    """Root of every error raised by `sync.client` and `sync.engine`."""


class Offline(SyncError):
    def __init__(self, message: str = "") -> None:
        super().__init__(message or "No connection to the server. Your changes are kept on this device "
                                    "and will be sent when the connection is back.")


class ServerUnavailable(Offline):
    """The server answers, but cannot reach its database for now (503 `unavailable`)."""

    def __init__(self, message: str = "") -> None:
        super().__init__(message or "The server cannot reach its database for now. Your changes are kept on "
                                    "this device and will be sent when it is back.")


class InsecureURL(SyncError):
    pass


class ServerFault(SyncError):
    pass


class ServerEmpty(ServerFault):
    """The server's database holds no team: it was started on a new, empty one (503 `unavailable`,
    `detail.reason = no_teams`). Its operator has to look; nothing here is lost."""

    def __init__(self) -> None:
        super().__init__("The server's database has no teams: it may have been started on a new, empty database. "
                         "Tell whoever runs the server; your changes are kept on this device.")


class NotJoined(SyncError):
    def __init__(self) -> None:
        super().__init__("This device is not in a team yet: join one with a code from your coordinator.")


class ProofMismatch(SyncError):
    pass


class DeviceRetired(SyncError):
    """The coordinator retired this device: everything it held is on the server, and it cleared
    itself."""

    def __init__(self) -> None:
        super().__init__("The coordinator retired this device: everything it held was sent to the team, and it "
                         "has been cleared.")


class WouldStrand(SyncError):
    """A revoke would leave active devices without the new key: no coordinator verified their
    keys (`devices`: their ids). Nothing was changed."""

    def __init__(self, devices: list[str]) -> None:
        super().__init__(f"Nothing was revoked: no coordinator verified the key of {len(devices)} active "
                         "device(s), so they would lose access. Revoke from the coordinator's device that let "
                         "them in.")
        self.devices = devices


class RevocationUnproven(SyncError):
    """The server says this device was revoked, without the coordinator's signed word: nothing
    is erased, and syncing stops."""

    def __init__(self) -> None:
        super().__init__("The server says this device was removed from the team, but the coordinator's signed "
                         "word is missing: nothing was erased. Syncing is stopped; tell your coordinator.")


class KeyRefused(SyncError):
    """The server sent a team key this device must not adopt; it kept its own and stopped."""

    UNSIGNED = ("The server sent a team key that the coordinator did not sign. Nothing was changed and "
                "nothing was sent under it; syncing is stopped. Tell your coordinator.")
    CHANGED = ("A different team key was sent for a key period this device already has. Nothing was "
               "changed; syncing is stopped until your coordinator has looked into it.")

    def __init__(self, message: str, *, changed: bool = False) -> None:
        self.changed = changed
        super().__init__(message)


class Rejected(SyncError):
    def __init__(self, code: str, message: str, status: int, detail: dict[str, Any] | None = None) -> None:
        self.code = code
        self.status = status
        self.detail = detail or {}
        super().__init__(message)


class DeviceRevoked(Rejected):
    pass


class DevicePending(Rejected):
    pass


class StaleEpoch(Rejected):
    @property
    def current_epoch(self) -> int:
        return int(self.detail.get("current_epoch", 0))  # type: ignore[call-overload]


class CodeInvalid(Rejected):
    pass


class Throttled(Rejected):
    @property
    def retry_after(self) -> float:
        return float(self.detail.get("retry_after", 60))  # type: ignore[arg-type]
