"""The rules a PIN or passphrase must meet, and the unlock throttle's policy. Pure: it reads no
file and holds no key; it must never log or return the passphrase itself."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import WeakPassphrase

__all__ = ["ThrottlePolicy", "MIN_PASSPHRASE", "OFFLINE_GUESSES", "strong_offline", "check_passphrase"]

MIN_PASSPHRASE = 6
OFFLINE_GUESSES = 1e10  # zxcvbn's estimate a passphrase must reach when a copy is guessed offline
ZXCVBN_MAX = 72  # zxcvbn refuses longer input; a passphrase is judged by its first 72 characters


@dataclass(frozen=True)
class ThrottlePolicy:
    """Wrong passphrases: no wait for the first `free` failures, then `base` seconds doubling
    with each failure (capped), and the data is wiped at `max_failures`."""

    max_failures: int = 10
    free: int = 2
    base: float = 1.0
    cap: float = 300.0

    def delay(self, failures: int) -> float:
        if failures <= self.free:
            return 0.0
        return min(self.cap, self.base * 2 ** (failures - self.free - 1))


def strong_offline(passphrase: str) -> bool:
    """Whether an offline attacker needs about `OFFLINE_GUESSES` tries (four random words do)."""
    from zxcvbn import zxcvbn

    return float(zxcvbn(passphrase[:ZXCVBN_MAX])["guesses"]) >= OFFLINE_GUESSES


def check_passphrase(passphrase: str, *, offline: bool = False) -> None:
    if offline and not strong_offline(passphrase):
        raise WeakPassphrase("Without a keystore on this device, a copy of the data file is guarded by the passphrase "
                             "alone: use four random words or more (about 10^10 guesses at least).")
    if len(passphrase) < MIN_PASSPHRASE:
        raise WeakPassphrase(f"A PIN or passphrase needs at least {MIN_PASSPHRASE} characters.")
    if len(set(passphrase)) < 3:
        raise WeakPassphrase("That PIN or passphrase is too easy to guess (too few different characters).")
