"""The vault (`models.storage.vault`): sealing rows and ops with associated data that pins each blob to
its place, compression before sealing, wrapping team keys for devices, enrollment proofs, recovery
codes and the passphrase KDF parameters."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import models.storage.vault as vault_mod
from models.errors import VaultLocked
from models.storage.vault import (
    KdfParams,
    RecoveryCode,
    SealError,
    Vault,
    argon2_available,
    fingerprint,
    make_proof,
    verify_proof,
)

MakeVault = Callable[..., tuple[Vault, dict[str, bytes], KdfParams]]

RECORD = {"v": {"alias": ["Lange Peter", 1, "dev-a"], "note": ["sover ved Nørreport", 2, "dev-a"]}, "d": None}
ROW = ("person", "a1" * 16, 1)
OP = ("c3" * 16, 1, "dev-a", 7, "0b" * 16)  # record id, epoch, device id, device seq, op id

# Blobs are version byte + 12-byte nonce + ciphertext + 16-byte tag; the plaintext is a flag byte
# (0 raw, 1 zlib) and the JSON body.
OVERHEAD = 1 + 12 + 16 + 1


def _flip(blob: bytes, at: int) -> bytes:
    return blob[:at] + bytes([blob[at] ^ 0x01]) + blob[at + 1 :]


@pytest.fixture
def vault(make_vault: MakeVault) -> Vault:
    v, _, _ = make_vault()
    v.add_team_key(2, v.team_key(1))  # the same key under epoch 2: only the bound epoch differs
    return v


# ------------------------------------------------------------------------------ rows and ops
def test_row_round_trip(vault: Vault) -> None:
    blob = vault.seal_row(*ROW, RECORD)
    assert vault.open_row(*ROW, blob) == RECORD
    assert b"Lange" not in blob and "Nørreport".encode() not in blob
    assert vault.seal_row(*ROW, RECORD) != blob  # a fresh nonce every time


@given(obj=st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
))
@settings(max_examples=60, deadline=None)
def test_any_json_value_round_trips(obj: Any) -> None:
    v = Vault("dev-a")
    v.create("correct horse battery", KdfParams.default(fast=True))
    assert v.open_row(*ROW, v.seal_row(*ROW, obj)) == obj
    assert v.open_op(*OP, v.seal_op(*OP, obj)) == obj


def test_op_round_trip(vault: Vault) -> None:
    body = {"t": "person", "f": {"alias": "Lange Peter"}, "c": 123 << 16}
    blob = vault.seal_op(*OP, body)
    assert vault.open_op(*OP, blob) == body


@pytest.mark.parametrize("position, other", [(0, "contact"), (1, "b2" * 16), (2, 2)],
                         ids=["record type", "record id", "epoch"])
def test_row_is_bound_to_type_id_and_epoch(vault: Vault, position: int, other: Any) -> None:
    blob = vault.seal_row(*ROW, RECORD)
    moved = list(ROW)
    moved[position] = other
    with pytest.raises(SealError):
        vault.open_row(*moved, blob)
    assert vault.open_row(*ROW, blob) == RECORD


@pytest.mark.parametrize("position, other", [(0, "d4" * 16), (1, 2), (2, "dev-b"), (3, 8), (4, "0c" * 16)],
                         ids=["record id", "epoch", "device id", "device seq", "op id"])
def test_op_is_bound_to_record_epoch_device_seq_and_op_id(vault: Vault, position: int, other: Any) -> None:
    blob = vault.seal_op(*OP, {"t": "person", "f": {}, "c": 1})
    moved = list(OP)
    moved[position] = other
    with pytest.raises(SealError):
        vault.open_op(*moved, blob)
    assert vault.open_op(*OP, blob)["c"] == 1


def test_a_row_blob_is_not_an_op_blob(vault: Vault) -> None:
    blob = vault.seal_row("person", OP[0], 1, RECORD)
    with pytest.raises(SealError):
        vault.open_op(*OP, blob)


def test_any_flipped_byte_is_refused(vault: Vault) -> None:
    blob = vault.seal_row(*ROW, RECORD)
    for at in range(len(blob)):
        with pytest.raises(SealError):
            vault.open_row(*ROW, _flip(blob, at))
    for cut in (0, 1, 13, 28, len(blob) - 1):
        with pytest.raises(SealError):
            vault.open_row(*ROW, blob[:cut])


def test_parts_round_trip_in_order_and_are_bound_like_a_row(vault: Vault) -> None:
    parts = [{"v": 3}, RECORD, [["a" * 32, {"note": "kaffe " * 500}]], [], "ø"]
    blob = vault.seal_parts(*ROW, parts)
    assert vault.open_parts(*ROW, blob) == parts
    assert vault.open_parts(*ROW, vault.seal_parts(*ROW, [])) == []
    for at in (0, 5, 20, len(blob) // 2, len(blob) - 1):
        with pytest.raises(SealError):
            vault.open_parts(*ROW, _flip(blob, at))
    with pytest.raises(SealError):
        vault.open_parts("contact", ROW[1], ROW[2], blob)  # another record type
    with pytest.raises(SealError):
        vault.open_row(*ROW, blob)  # a list of parts is not a row
    with pytest.raises(SealError):
        vault.open_parts(*ROW, vault.seal_row(*ROW, parts))  # nor a row a list of parts


def test_another_team_key_cannot_open(vault: Vault, make_vault: MakeVault) -> None:
    other, _, _ = make_vault("dev-b")
    blob = vault.seal_row(*ROW, RECORD)
    with pytest.raises(SealError):
        other.open_row(*ROW, blob)
    with pytest.raises(SealError):
        vault.open_row("person", ROW[1], 3, blob)  # no key for epoch 3 at all


def test_large_payloads_are_compressed_before_sealing(vault: Vault) -> None:
    note = "Sov i opgangen i nat, koldt. Fik kaffe, sovepose og en snak om bolig. " * 60
    body = json.dumps({"note": note}, separators=(",", ":"), ensure_ascii=False).encode()
    blob = vault.seal_row(*ROW, {"note": note})
    assert len(blob) < len(body) / 5
    assert vault.open_row(*ROW, blob) == {"note": note}
    op_blob = vault.seal_op(*OP, {"note": note})
    assert len(op_blob) < len(body) / 5
    assert vault.open_op(*OP, op_blob) == {"note": note}


def test_small_or_incompressible_payloads_are_stored_raw(vault: Vault) -> None:
    small = {"a": 1}
    body = json.dumps(small, separators=(",", ":")).encode()
    assert len(vault.seal_row(*ROW, small)) == OVERHEAD + len(body)
    noise = os.urandom(300).hex()  # hex of random bytes: zlib cannot shrink it much, but it tries
    body = json.dumps({"n": noise}, separators=(",", ":")).encode()
    sealed = vault.seal_row(*ROW, {"n": noise})
    assert len(sealed) <= OVERHEAD + len(body)
    assert vault.open_row(*ROW, sealed) == {"n": noise}


def test_locked_vault_refuses_to_seal_or_open(vault: Vault) -> None:
    blob = vault.seal_row(*ROW, RECORD)
    vault.lock()
    assert not vault.unlocked
    with pytest.raises(VaultLocked):
        vault.seal_row(*ROW, RECORD)
    with pytest.raises(VaultLocked):
        vault.open_row(*ROW, blob)
    with pytest.raises(VaultLocked):
        _ = vault.public_key


# ---------------------------------------------------------------------------- unlock, keyring
def test_unlock_with_the_keyring_restores_the_same_keys(make_vault: MakeVault, passphrase: str) -> None:
    v, keyring, params = make_vault()
    blob = v.seal_row(*ROW, RECORD)
    again = Vault("dev-a")
    again.unlock(passphrase, params, keyring)
    assert again.open_row(*ROW, blob) == RECORD
    assert again.public_key == v.public_key
    with pytest.raises(SealError):
        Vault("dev-a").unlock(passphrase + "!", params, keyring)
    with pytest.raises(SealError):  # the master key is bound to its device id
        Vault("dev-b").unlock(passphrase, params, keyring)


def test_pepper_is_needed_when_the_params_say_so(make_vault: MakeVault, passphrase: str) -> None:
    v, keyring, params = make_vault(pepper=b"keystore secret")
    assert params.pepper
    with pytest.raises(SealError):
        Vault("dev-a").unlock(passphrase, params, keyring)  # no pepper
    with pytest.raises(SealError):
        Vault("dev-a").unlock(passphrase, params, keyring, b"another secret")
    Vault("dev-a").unlock(passphrase, params, keyring, b"keystore secret")


def test_rewrap_master_changes_the_passphrase_only(make_vault: MakeVault, passphrase: str) -> None:
    v, keyring, params = make_vault()
    new_params = KdfParams.default(fast=True)
    keyring = {**keyring, "master": v.rewrap_master(passphrase, "a new passphrase", params, new_params,
                                                    keyring["master"])}
    blob = v.seal_row(*ROW, RECORD)
    with pytest.raises(SealError):
        Vault("dev-a").unlock(passphrase, new_params, keyring)
    again = Vault("dev-a")
    again.unlock("a new passphrase", new_params, keyring)
    assert again.open_row(*ROW, blob) == RECORD


def test_secrets_under_the_master_are_bound_to_their_name(vault: Vault) -> None:
    blob = vault.wrap_secret("secret:worker_name", b"Mette")
    assert vault.unwrap_secret("secret:worker_name", blob) == b"Mette"
    with pytest.raises(SealError):
        vault.unwrap_secret("team:1", blob)


# ------------------------------------------------------------------------ wrapping, proofs
def test_team_key_wrapped_for_a_device_unwraps_there_only(make_vault: MakeVault) -> None:
    coordinator, _, _ = make_vault("coordinator")
    worker, _, _ = make_vault("worker")
    stranger, _, _ = make_vault("stranger")
    blob = coordinator.wrap_for_device("team-1", 1, worker.device_id, worker.public_key)
    assert worker.unwrap_from_team("team-1", 1, blob) == coordinator.team_key(1)
    assert coordinator.team_key(1) not in blob
    with pytest.raises(SealError):
        stranger.unwrap_from_team("team-1", 1, blob)
    with pytest.raises(SealError):
        worker.unwrap_from_team("team-2", 1, blob)
    with pytest.raises(SealError):
        worker.unwrap_from_team("team-1", 2, blob)
    with pytest.raises(SealError):
        worker.unwrap_from_team("team-1", 1, _flip(blob, 40))
    # the key it got opens what the coordinator sealed
    worker.add_team_key(1, worker.unwrap_from_team("team-1", 1, blob))
    assert worker.open_row(*ROW, coordinator.seal_row(*ROW, RECORD)) == RECORD


def test_wrapping_is_bound_to_the_recipient_device_id(make_vault: MakeVault) -> None:
    coordinator, _, _ = make_vault("coordinator")
    worker, _, _ = make_vault("worker")
    blob = coordinator.wrap_for_device("team-1", 1, "some-other-device", worker.public_key)
    with pytest.raises(SealError):
        worker.unwrap_from_team("team-1", 1, blob)


def test_enrollment_proof(make_vault: MakeVault) -> None:
    worker, _, _ = make_vault("worker")
    intruder, _, _ = make_vault("intruder")
    secret = os.urandom(20)
    proof = make_proof(secret, worker.public_key, worker.device_id)
    assert verify_proof(secret, worker.public_key, worker.device_id, proof)
    assert not verify_proof(secret, intruder.public_key, worker.device_id, proof)  # swapped key
    assert not verify_proof(secret, worker.public_key, intruder.device_id, proof)
    assert not verify_proof(os.urandom(20), worker.public_key, worker.device_id, proof)
    assert not verify_proof(secret, worker.public_key, worker.device_id, _flip(proof, 0))


def test_fingerprint_is_stable_and_distinguishes_keys(make_vault: MakeVault) -> None:
    a, _, _ = make_vault("a")
    b, _, _ = make_vault("b")
    assert fingerprint(a.public_key) == fingerprint(a.public_key)
    assert fingerprint(a.public_key) != fingerprint(b.public_key)
    groups = fingerprint(a.public_key).split(" ")
    assert len(groups) == 5 and all(len(g) == 4 for g in groups)


# ------------------------------------------------------------------------------ recovery
@given(secret=st.binary(min_size=20, max_size=20))
@settings(max_examples=200)
def test_recovery_code_str_parse_round_trip(secret: bytes) -> None:
    code = RecoveryCode(secret)
    text = str(code)
    groups = text.split("-")
    assert len(groups) == RecoveryCode.GROUPS and all(len(g) == 4 for g in groups)
    assert not set(text) & set("ILOU")
    assert RecoveryCode.parse(text).secret == secret
    assert RecoveryCode.parse(text.lower().replace("-", " ")).secret == secret
    assert RecoveryCode.parse(text.replace("-", "")).secret == secret


@pytest.mark.parametrize("text", [
    "",
    "ABCD-EFGH",  # too short
    "ABCD-EFGH-JKMN-PQRS-TVWX-YZ01-2345-6789-ABCD",  # too long
    "ABCD-EFGH-JKMN-PQRS-TVWX-YZ01-2345-678I",  # I is not in the alphabet
    "ABCD-EFGH-JKMN-PQRS-TVWX-YZ01-2345-678O",
    "ABCD-EFGH-JKMN-PQRS-TVWX-YZ01-2345-678U",
    "ABCD-EFGH-JKMN-PQRS-TVWX-YZ01-2345-678!",
])
def test_bad_recovery_codes_are_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        RecoveryCode.parse(text)


def test_recovery_secret_must_be_20_bytes() -> None:
    with pytest.raises(ValueError):
        RecoveryCode(b"\0" * 19)


def test_recovery_wrap_and_unwrap(make_vault: MakeVault) -> None:
    v, _, _ = make_vault()
    code = RecoveryCode.generate()
    blob = code.wrap("team-1", 1, v.team_key(1))
    restored = RecoveryCode.parse(str(code))
    assert restored.unwrap("team-1", 1, blob) == v.team_key(1)
    assert restored.lookup == code.lookup and len(code.lookup) == 32
    assert RecoveryCode.generate().lookup != code.lookup
    with pytest.raises(SealError):
        RecoveryCode.generate().unwrap("team-1", 1, blob)
    with pytest.raises(SealError):
        code.unwrap("team-2", 1, blob)
    with pytest.raises(SealError):
        code.unwrap("team-1", 2, blob)


# ----------------------------------------------------------------------------------- KDF
@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("pepper", [False, True])
def test_kdf_params_json_round_trip(fast: bool, pepper: bool) -> None:
    params = KdfParams.default(fast=fast, pepper=pepper)
    text = params.to_json()
    assert KdfParams.from_json(text) == params
    assert json.loads(text)["algorithm"] == params.algorithm
    assert params.pepper is pepper


def test_default_params_use_argon2id_when_available() -> None:
    params = KdfParams.default()
    if argon2_available():
        assert params.algorithm == "argon2id"
        assert params.memory_kib >= 64 * 1024 and params.iterations >= 3 and params.lanes >= 1
    else:
        assert params.algorithm == "scrypt" and params.n >= 2**15
    assert len(params.salt) == 16
    assert KdfParams.default().salt != params.salt


def test_default_params_fall_back_to_scrypt_without_argon2id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vault_mod, "argon2_available", lambda: False)
    params = KdfParams.default()
    assert params.algorithm == "scrypt"
    assert params.n >= 2**15 and params.r == 8 and params.p >= 1
    fast = KdfParams.default(fast=True)
    assert fast.algorithm == "scrypt"
    key = fast.derive("correct horse")
    assert len(key) == 32 and key == KdfParams.from_json(fast.to_json()).derive("correct horse")


def test_derive_depends_on_passphrase_salt_and_pepper() -> None:
    params = KdfParams.default(fast=True)
    key = params.derive("correct horse")
    assert key == params.derive("correct horse")
    assert key != params.derive("correct horsf")
    assert key != KdfParams.default(fast=True).derive("correct horse")  # another salt
    peppered = KdfParams(**{**params.__dict__, "pepper": True})
    assert peppered.derive("correct horse", b"k1") != peppered.derive("correct horse", b"k2")
    with pytest.raises(SealError):
        peppered.derive("correct horse")


def test_unknown_kdf_is_refused() -> None:
    with pytest.raises(ValueError):
        KdfParams("md5", b"\0" * 16).derive("correct horse")


# ------------------------------------------------------------------ signed authority (grants)
TEAM = "7e" * 16


def _coordinator_and_device(make_vault: MakeVault) -> tuple[Vault, Vault]:
    coord, _, _ = make_vault("coord")
    coord.new_authority()
    device, _, _ = make_vault("dev-b")
    return coord, device


def test_a_grant_opens_only_for_its_device_with_the_bound_verification_key(make_vault: MakeVault) -> None:
    coord, device = _coordinator_and_device(make_vault)
    secret = b"invite secret half"
    blob = coord.make_grant(TEAM, 1, "dev-b", device.public_key, role="worker", invite_secret=secret,
                            cutoffs={"gone" * 8: 41})
    grant = device.open_grant(TEAM, 1, blob, pinned_vk=None, invite_secret=secret)
    assert grant.key == coord.team_key(1) and grant.vk == coord.authority_vk and grant.role == "worker"
    assert grant.authority_seed is None and grant.cutoffs == {"gone" * 8: 41}
    refusals = [
        lambda: device.open_grant(TEAM, 1, blob, pinned_vk=None, invite_secret=b"another secret"),
        lambda: device.open_grant(TEAM, 1, blob, pinned_vk=None),  # bound to nothing it can check
        lambda: device.open_grant(TEAM, 1, blob, pinned_vk=bytes(32)),  # another signing key pinned
        lambda: device.open_grant("00" * 16, 1, blob, pinned_vk=coord.authority_vk),  # another team
        lambda: device.open_grant(TEAM, 2, blob, pinned_vk=coord.authority_vk),  # another epoch
        lambda: device.open_grant(TEAM, 1, blob[:70] + bytes([blob[70] ^ 1]) + blob[71:],
                                  pinned_vk=coord.authority_vk),  # a changed body
        lambda: device.open_grant(TEAM, 1, device.wrap_for_device(TEAM, 1, "dev-b", device.public_key),
                                  pinned_vk=coord.authority_vk),  # unsigned (version 1)
    ]
    for refuse in refusals:
        with pytest.raises(vault_mod.GrantError):
            refuse()
    other, _, _ = make_vault("dev-c")
    with pytest.raises(vault_mod.GrantError):  # meant for dev-b
        other.open_grant(TEAM, 1, blob, pinned_vk=coord.authority_vk)


def test_a_coordinators_grant_carries_the_signing_key(make_vault: MakeVault) -> None:
    coord, device = _coordinator_and_device(make_vault)
    blob = coord.make_grant(TEAM, 1, "dev-b", device.public_key, role="coordinator")
    grant = device.open_grant(TEAM, 1, blob, pinned_vk=coord.authority_vk)
    assert grant.authority_seed is not None and grant.role == "coordinator"
    device.set_authority(grant.authority_seed)
    assert device.authority_vk == coord.authority_vk
    assert vault_mod.verify_purge(coord.authority_vk, TEAM, "ab" * 16, device.sign_purge(TEAM, "ab" * 16))
    assert not vault_mod.verify_purge(coord.authority_vk, TEAM, "ab" * 16, device.sign_purge(TEAM, "cd" * 16))


def test_the_team_bind_holds_only_under_the_newest_key_the_device_holds(make_vault: MakeVault) -> None:
    coord, device = _coordinator_and_device(make_vault)
    coord.add_team_key(2, os.urandom(32))
    device.replace_team_keys({1: coord.team_key(1), 2: coord.team_key(2)})
    blob = coord.make_grant(TEAM, 1, "dev-b", device.public_key, role="worker", team_bind=True)
    assert device.open_grant(TEAM, 1, blob, pinned_vk=None, team_bind=True).vk == coord.authority_vk
    forger = Vault("x")  # a device revoked before epoch 2: it holds epoch 1 only
    forger.create("p", KdfParams.default(fast=True))
    forger.new_authority()
    forger.replace_team_keys({1: coord.team_key(1)})  # binds its own key under epoch 1 only
    forged = forger.make_grant(TEAM, 1, "dev-b", device.public_key, role="worker", team_bind=True)
    with pytest.raises(vault_mod.GrantError):
        device.open_grant(TEAM, 1, forged, pinned_vk=None, team_bind=True)


def test_statements_and_device_signatures(make_vault: MakeVault) -> None:
    coord, device = _coordinator_and_device(make_vault)
    blob = coord.sign_statement("roster", {"device": "dev-b", "n": 1})
    assert vault_mod.open_statement(coord.authority_vk, "roster", blob) == {"device": "dev-b", "n": 1}
    with pytest.raises(vault_mod.GrantError):
        vault_mod.open_statement(coord.authority_vk, "grant", blob)  # signed as another kind
    with pytest.raises(vault_mod.GrantError):
        vault_mod.open_statement(device.signing_vk, "roster", blob)
    sig = device.sign_as_device(b"batch")
    assert vault_mod.verify_signature(device.signing_vk, b"batch", sig)
    assert not vault_mod.verify_signature(coord.signing_vk, b"batch", sig)
    tag = device.announce_mac(TEAM, 1, "dev-b", device.signing_vk, 9)
    assert not coord.check_announce(TEAM, 1, "dev-b", device.signing_vk, 9, tag)  # another team key
    device.replace_team_keys({1: coord.team_key(1)})
    tag = device.announce_mac(TEAM, 1, "dev-b", device.signing_vk, 9)
    assert coord.check_announce(TEAM, 1, "dev-b", device.signing_vk, 9, tag)
    assert not coord.check_announce(TEAM, 1, "dev-b", device.signing_vk, 10, tag)
