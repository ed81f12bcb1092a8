"""A copied data file resists offline guessing everywhere (issue 15): on a laptop with a keystore
its secret is mixed into the KDF (as on a phone); without one the passphrase itself must resist
offline guessing (zxcvbn, at least 10^10 guesses); an old store with a short PIN is asked for a
stronger one, never locked out; a missing or changed keystore is never counted as a wrong
passphrase (which would wipe the device)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from keyring.backends import fail

from app.keystore import desktop_pepper
from models.errors import KeystoreUnavailable, WeakPassphrase, WrongPassphrase
from models.storage.vault import KdfParams
from models.workspace import Workspace, strong_offline

PIN = "246810"
WORDS = "hest bord cykel regn"


class MemoryKeyring:
    """A keystore for tests: what it is given, it keeps (for this process). Not a subclass of
    keyring's KeyringBackend on purpose: keyring picks the platform's backend among every
    subclass it knows, and this one would become every later test's keystore."""

    priority = 1

    def __init__(self) -> None:
        self.kept: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.kept.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.kept[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.kept.pop((service, username), None)


def test_without_a_keystore_the_passphrase_must_resist_offline_guessing(tmp_path: Path) -> None:
    assert desktop_pepper(tmp_path, backend=fail.Keyring()) == b""
    ws = Workspace(tmp_path / "laptop", fast_kdf=True, guard_offline=True)
    assert strong_offline("hest bord cykel regn " * 10)  # longer than zxcvbn reads: judged by its start
    for weak in (PIN, "passphrase-1", "Outreach2026!"):
        with pytest.raises(WeakPassphrase):
            ws.init(weak)
    assert not ws.exists()
    ws.init(WORDS)
    assert ws.protection == "passphrase"
    with pytest.raises(WeakPassphrase):
        ws.change_passphrase(WORDS, "123456789")
    ws.close()


def test_an_old_store_with_a_short_pin_is_asked_for_more_never_locked_out(tmp_path: Path) -> None:
    old = Workspace(tmp_path / "laptop", fast_kdf=True)
    old.init(PIN)
    old.close()
    ws = Workspace(tmp_path / "laptop", fast_kdf=True, guard_offline=True)
    ws.unlock(PIN)
    assert ws.unlocked and ws.needs_stronger_passphrase
    ws.change_passphrase(PIN, WORDS)
    assert not ws.needs_stronger_passphrase
    ws.close()
    again = Workspace(tmp_path / "laptop", fast_kdf=True, guard_offline=True)
    again.unlock(WORDS)
    assert not again.needs_stronger_passphrase
    again.close()


def test_a_keystore_guards_a_short_pin_and_a_copy_without_it_opens_nothing(tmp_path: Path) -> None:
    ring = MemoryKeyring()
    pepper = desktop_pepper(tmp_path / "laptop", backend=ring)
    assert len(pepper) == 32 and desktop_pepper(tmp_path / "laptop", backend=ring) == pepper
    assert desktop_pepper(tmp_path / "other", backend=ring) != pepper  # one secret per data folder
    ws = Workspace(tmp_path / "laptop", fast_kdf=True, guard_offline=True, pepper=pepper)
    ws.init(PIN)  # the keystore protects the copy: the short PIN is fine
    assert ws.protection == "keystore"
    ws.close()
    shutil.copytree(tmp_path / "laptop", tmp_path / "copy")
    copy = Workspace(tmp_path / "copy", fast_kdf=True)
    for _ in range(15):  # more than the wipe's 10: none of them counts
        with pytest.raises(KeystoreUnavailable):
            copy.unlock(PIN)
    assert copy.exists() and copy.failures() == 0
    changed = Workspace(tmp_path / "copy", fast_kdf=True, pepper=b"\x01" * 32)  # a keystore reset: another secret
    with pytest.raises(KeystoreUnavailable):
        changed.unlock(PIN)
    assert changed.failures() == 0
    back = Workspace(tmp_path / "laptop", fast_kdf=True, pepper=pepper)
    with pytest.raises(WrongPassphrase):
        back.unlock("135799")  # with the keystore, a wrong PIN is a wrong PIN
    back.unlock(PIN)
    back.close()


def test_a_store_made_without_a_keystore_gains_it_when_one_is_there(tmp_path: Path,
                                                                   make_workspace: Callable[..., Workspace]) -> None:
    ws = Workspace(tmp_path / "laptop", fast_kdf=True)
    ws.init(PIN)
    ws.close()
    pepper = desktop_pepper(tmp_path / "laptop", backend=MemoryKeyring())
    ws = Workspace(tmp_path / "laptop", fast_kdf=True, pepper=pepper)
    ws.unlock(PIN)
    assert KdfParams.from_json(ws.store.kdf_params() or "").pepper
    ws.close()
    with pytest.raises(KeystoreUnavailable):
        Workspace(tmp_path / "laptop", fast_kdf=True).unlock(PIN)


def test_the_scrypt_fallback_costs_at_least_2_to_the_17() -> None:
    import models.storage.vault as vault

    real = vault.argon2_available
    vault.argon2_available = lambda: False  # type: ignore[assignment]
    try:
        assert KdfParams.default().n >= 2**17
    finally:
        vault.argon2_available = real  # type: ignore[assignment]


def test_the_lock_screen_asks_an_old_short_pin_for_more(tmp_path: Path) -> None:
    """The app on a laptop without a keystore, opened with the short PIN of an earlier version:
    it opens (never locked out) and asks for a stronger passphrase, with a suggestion."""
    from types import SimpleNamespace
    from typing import Any

    from test_ui_services import run

    from app.services import AppConfig, Services
    from app.ui.views.base import Ctx
    from app.ui.views.lock import LockScreen

    old = Workspace(tmp_path / "laptop")  # the real KDF: what an earlier version made
    old.init(PIN)
    old.close()
    services = Services(AppConfig(data_dir=tmp_path / "laptop"))
    shown: list[Any] = []
    page = SimpleNamespace(overlay=[], width=400, run_task=lambda *a: None, update=lambda: None,
                           show_dialog=shown.append, pop_dialog=lambda: shown.pop() if shown else None)
    ctx = Ctx(page, services, services.config)  # type: ignore[arg-type]
    ctx.set_language("da")
    run(services.unlock(PIN))
    assert services.needs_stronger_passphrase and services.protection == "passphrase"
    LockScreen(ctx, {})._ask_stronger(PIN)
    dialog = shown[0]
    field = next(c for c in _walk(dialog.content) if getattr(c, "password", None) is not None
                 and getattr(c, "value", None))
    suggested = field.value
    assert len(suggested.split()) == 4
    confirm = dialog.actions[1].content
    said: list[str] = []
    ctx.toast = lambda words, **kw: said.append(words)  # type: ignore[method-assign]  (no real page here)
    run(confirm.on_click(None))
    assert said == ["Adgangssætningen er skiftet. Skriv den ned et sikkert sted."] and not shown
    assert not services.needs_stronger_passphrase
    run(services.close())
    again = Workspace(tmp_path / "laptop", guard_offline=True)
    again.unlock(suggested)
    assert not again.needs_stronger_passphrase
    again.close()


def _walk(control: object):  # type: ignore[no-untyped-def]
    yield control
    for name in ("content", "controls"):
        value = getattr(control, name, None)
        for child in value if isinstance(value, list) else [value]:
            if child is not None and hasattr(child, "__dict__"):
                yield from _walk(child)
