"""The exception tree of the local side (vault, store, merge, workspace). The UI and the CLI catch
only the root, `StoreError`, and show its message: every message is a sentence a worker
understands and never contains personal data (ids and field names only).

    StoreError
    ├── VaultError
    │   ├── VaultMissing        no vault in this data directory yet
    │   ├── VaultExists         `init` on a directory that already has one
    │   ├── VaultLocked         an operation that needs the keys while locked
    │   ├── WrongPassphrase     carries attempts_left
    │   ├── Throttled           carries retry_after (seconds)
    │   ├── VaultWiped          too many wrong passphrases: local data erased
    │   ├── WeakPassphrase
    │   └── KeystoreUnavailable the vault needs this device's keystore secret, which is not there:
    │                           not a wrong passphrase (nothing counted, nothing wiped)
    ├── TamperedRecord          a sealed blob failed authentication; names the record
    ├── InvalidInput            a value a form or flag gave is not acceptable; names the field
    ├── NotFound                no such person, contact, ...
    └── MigrationError          the data file is from a newer version or damaged
"""

from __future__ import annotations

__all__ = [
    "StoreError",
    "VaultError",
    "VaultMissing",
    "VaultExists",
    "VaultLocked",
    "WrongPassphrase",
    "Throttled",
    "VaultWiped",
    "KeystoreUnavailable",
    "WeakPassphrase",
    "TamperedRecord",
    "InvalidInput",
    "NotFound",
    "MigrationError",
]


class StoreError(Exception):
    """Root of every error raised by `models`."""


class VaultError(StoreError):
    pass


class VaultMissing(VaultError):
    pass


class VaultExists(VaultError):
    pass


class VaultLocked(VaultError):
    pass


class WrongPassphrase(VaultError):
    def __init__(self, attempts_left: int, retry_after: float = 0.0) -> None:
        self.attempts_left = attempts_left
        self.retry_after = retry_after
        msg = f"Wrong passphrase. {attempts_left} attempts left before this device's data is erased."
        if retry_after > 0:
            msg += f" Wait {retry_after:.0f} s before the next try."
        super().__init__(msg)


class Throttled(VaultError):
    def __init__(self, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(f"Too many wrong passphrases. Wait {retry_after:.0f} s before trying again.")


class VaultWiped(VaultError):
    def __init__(self) -> None:
        super().__init__("Too many wrong passphrases: the data on this device has been erased.")


class WeakPassphrase(VaultError):
    pass


class KeystoreUnavailable(VaultError):
    def __init__(self) -> None:
        super().__init__("This device's keystore did not give its secret, which the data needs besides the "
                         "passphrase. Nothing was counted as a wrong try; unlock the system keystore and try again.")


class TamperedRecord(StoreError):
    def __init__(self, kind: str, record_id: str) -> None:
        self.kind = kind
        self.record_id = record_id
        super().__init__(
            f"The stored {kind} {record_id} failed its integrity check (damaged or tampered with); "
            "it was not used."
        )


class InvalidInput(StoreError):
    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.reason = message
        super().__init__(f"{field}: {message}")


class NotFound(StoreError):
    def __init__(self, kind: str, record_id: str) -> None:
        self.kind = kind
        self.record_id = record_id
        super().__init__(f"No {kind} with id {record_id}.")


class MigrationError(StoreError):
    pass
