"""The vault: every key and every cipher operation of the client. The only module on the client
that imports `cryptography`; it invents nothing and uses its primitives as DESIGN.md says.

Key hierarchy:
    passphrase (+ keystore pepper on mobile) --Argon2id | scrypt--> KEK
    KEK --AES-256-GCM--> master key (random, 256 bit)             (changing the passphrase re-wraps this only)
    master key --AES-256-GCM--> device X25519 private key, team keys by epoch, small secrets
    team key[epoch] --AES-256-GCM--> every sealed row and every op payload

Authority (docs/SECURITY.md): the team's coordinators share an Ed25519 signing key; every team-key
grant and every purge is a statement signed by it, and a device adopts a key only from a grant
signed by the verification key it pinned (bound to its invite's secret, or to the newest team key it
holds when an existing team moves to signed authority).

Sealed blob: version byte 0x01, 12-byte random nonce, ciphertext+tag; the plaintext is
flag byte (0 raw, 1 zlib) + body, compressed before sealing, never after. Associated data binds
what the blob is (row or op), the record type for rows, the record id, the key epoch and, for ops,
device id, device sequence and op id, so that nobody can move a blob to another place unnoticed.

It must never touch SQL, files or the network: the store persists the wrapped blobs it returns.

Why one module of about 770 lines: it is the client's whole crypto surface, the one file a security review
reads (and `tests/test_boundaries.py` keeps `cryptography` here alone); split, its key hierarchy and
associated-data rules would spread over files that each look harmless.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ..errors import VaultLocked

__all__ = [
    "KdfParams",
    "Vault",
    "SealError",
    "argon2_available",
    "make_proof",
    "verify_proof",
    "RecoveryCode",
    "fingerprint",
    "Grant",
    "GrantError",
    "verify_purge",
    "verify_signature",
    "open_statement",
]

_VERSION = b"\x01"
_NONCE = 12
_COMPRESS_MIN = 96  # below this, zlib's header costs more than it saves


class SealError(Exception):
    """A blob failed authentication or is malformed. Callers turn it into TamperedRecord."""


class GrantError(SealError):
    """A team-key grant this device must not adopt: unsigned, signed by another key, bound to
    nothing it can check, or not for this device. The message says which, in plain words."""


@dataclass(frozen=True)
class Grant:
    """A verified team-key grant: what a device may adopt."""

    epoch: int
    key: bytes
    vk: bytes  # the authority's verification key that signed it
    role: str  # the role the coordinator gave the device
    authority_seed: bytes | None  # coordinators only: the authority's signing key
    purges_unsigned_through: int  # unsigned purges at or below this log position are the old version's
    cutoffs: dict[str, int]  # revoked devices: the last device sequence of each that counts


_GRANT_V2 = b"\x02"
_SIG = 64


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise GrantError("a malformed grant")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise GrantError("a malformed grant") from None


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _statement(kind: str, body: bytes) -> bytes:
    return b"outreach/v2/" + kind.encode("ascii") + b"\n" + body


def _verify(vk: bytes, message: bytes, signature: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(vk).verify(signature, message)
        return True
    except (InvalidSignature, ValueError):
        return False


def _bind_message(team_id: str, device_id: str, public_key: bytes, vk: bytes, role: str) -> bytes:
    return f"outreach/v2/vk-bind|{team_id}|{device_id}|{role}|".encode() + public_key + vk


def _mac(key: bytes, message: bytes) -> bytes:
    h = hmac.HMAC(key, hashes.SHA256())
    h.update(message)
    return h.finalize()


def _mac_ok(key: bytes, message: bytes, tag: bytes) -> bool:
    h = hmac.HMAC(key, hashes.SHA256())
    h.update(message)
    try:
        h.verify(tag)
        return True
    except InvalidSignature:  # what HMAC.verify raises (not InvalidTag, which is AEAD's)
        return False


def _split_signed(blob: bytes) -> tuple[bytes, bytes]:
    """(signature, body) of a signed statement `0x02 ‖ signature ‖ body` (`Vault.sign_statement`)."""
    if blob[:1] != _GRANT_V2 or len(blob) < 1 + _SIG + 2 or len(blob) > 64 * 1024:
        raise GrantError("the coordinator did not sign this")
    return blob[1:1 + _SIG], blob[1 + _SIG:]


def _announce_message(team_id: str, device_id: str, signing_vk: bytes, unsigned_through: int) -> bytes:
    return f"outreach/v2/announce|{team_id}|{device_id}|{unsigned_through:d}|".encode() + signing_vk


def _purge_message(team_id: str, record_id: str) -> bytes:
    return _statement("purge", f"{team_id}|{record_id}".encode())


def verify_signature(vk: bytes, message: bytes, signature: bytes) -> bool:
    """Whether `signature` is the Ed25519 signature of `message` under the verification key `vk`."""
    return len(signature) == _SIG and len(vk) == 32 and _verify(vk, message, signature)


def open_statement(vk: bytes, kind: str, blob: bytes) -> dict[str, Any]:
    """The body of a statement the authority `vk` signed (`Vault.sign_statement`); GrantError
    when it is not one."""
    signature, raw = _split_signed(blob)
    if not _verify(vk, _statement(kind, raw), signature):
        raise GrantError("the coordinator did not sign this statement")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise GrantError("a malformed statement") from None
    if not isinstance(body, dict):
        raise GrantError("a malformed statement")
    return body


def verify_purge(vk: bytes, team_id: str, record_id: str, signature: bytes) -> bool:
    """Whether the authority `vk` signed the erasure of `record_id` in this team."""
    return verify_signature(vk, _purge_message(team_id, record_id), signature)


def argon2_available() -> bool:
    try:
        from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

        Argon2id(salt=b"\0" * 16, length=32, iterations=1, lanes=1, memory_cost=8).derive(b"x")
        return True
    except (ImportError, UnsupportedAlgorithm):
        return False


def pepper_check(pepper: bytes) -> str:
    """The check value of a keystore secret kept beside the KDF parameters (`KdfParams.fits`)."""
    return hashlib.sha256(b"outreach/v1/pepper-check|" + pepper).hexdigest()[:16]


@dataclass(frozen=True)
class KdfParams:
    """Parameters of the passphrase KDF, stored beside the wrapped master key."""

    algorithm: str  # "argon2id" | "scrypt"
    salt: bytes
    memory_kib: int = 0  # argon2id
    iterations: int = 0  # argon2id
    lanes: int = 0  # argon2id
    n: int = 0  # scrypt
    r: int = 0
    p: int = 0
    pepper: bool = False  # a keystore secret is mixed in (mobile, a laptop's keystore)
    # 8 bytes of a hash of that secret: a missing or changed keystore is told apart from a wrong
    # passphrase (which counts towards the wipe); it says nothing of the secret itself
    pepper_check: str = ""

    def with_pepper(self, pepper: bytes) -> KdfParams:
        """These parameters for a vault with this keystore secret (none: b"")."""
        return replace(self, pepper=bool(pepper), pepper_check=pepper_check(pepper) if pepper else "")

    def fits(self, pepper: bytes) -> bool:
        """Whether `pepper` can be the secret this vault was made with (False: it is missing or
        another one; a vault of the previous version keeps no check and is trusted)."""
        if not self.pepper:
            return True
        return bool(pepper) and (not self.pepper_check or secrets.compare_digest(self.pepper_check,
                                                                                 pepper_check(pepper)))

    @classmethod
    def default(cls, *, fast: bool = False, pepper: bool = False) -> KdfParams:
        """Strong defaults (about 0.2 s on a 2-core laptop); `fast` is for tests and benchmarks of
        other parts only, never for a real vault."""
        salt = os.urandom(16)
        if argon2_available():
            if fast:
                return cls("argon2id", salt, memory_kib=256, iterations=1, lanes=1, pepper=pepper)
            return cls("argon2id", salt, memory_kib=64 * 1024, iterations=3, lanes=4, pepper=pepper)
        if fast:
            return cls("scrypt", salt, n=2**4, r=8, p=1, pepper=pepper)
        return cls("scrypt", salt, n=2**17, r=8, p=1, pepper=pepper)  # 128 MiB

    def to_json(self) -> str:
        d: dict[str, Any] = dict(self.__dict__)
        d["salt"] = base64.b64encode(self.salt).decode()
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> KdfParams:
        d = json.loads(text)
        d["salt"] = base64.b64decode(d["salt"])
        return cls(**d)

    def derive(self, passphrase: str, pepper: bytes = b"") -> bytes:
        secret = passphrase.encode("utf-8")
        if self.pepper:
            if not pepper:
                raise SealError("this vault needs the keystore secret of its device")
            secret = hashlib.sha256(b"outreach/v1/pepper|" + pepper).digest() + secret
        if self.algorithm == "argon2id":
            from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

            return Argon2id(
                salt=self.salt, length=32, iterations=self.iterations, lanes=self.lanes,
                memory_cost=self.memory_kib,
            ).derive(secret)
        if self.algorithm == "scrypt":
            return Scrypt(salt=self.salt, length=32, n=self.n, r=self.r, p=self.p).derive(secret)
        raise ValueError(f"unknown KDF {self.algorithm!r}")


def _hkdf(key: bytes, info: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(key)


def _aead_seal(aead: AESGCM, plaintext: bytes, ad: bytes) -> bytes:
    nonce = os.urandom(_NONCE)
    return _VERSION + nonce + aead.encrypt(nonce, plaintext, ad)


def _aead_open(aead: AESGCM, blob: bytes, ad: bytes) -> bytes:
    if len(blob) < 1 + _NONCE + 16 or blob[:1] != _VERSION:
        raise SealError("malformed sealed blob")
    try:
        return aead.decrypt(blob[1 : 1 + _NONCE], blob[1 + _NONCE :], ad)
    except InvalidTag as exc:
        raise SealError("authentication failed") from exc


def _compress(body: bytes) -> bytes:
    # A 4 KiB window and a small hash table: records are a few hundred bytes, and setting up
    # zlib's default 256 KiB state cost five times more than compressing (measured). The zlib
    # header records the window, so plain zlib.decompress reads it.
    c = zlib.compressobj(6, zlib.DEFLATED, 12, 4)
    return c.compress(body) + c.flush()


def _pack(obj: Any) -> bytes:
    body = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(body) >= _COMPRESS_MIN:
        packed = _compress(body)
        if len(packed) < len(body):
            return b"\x01" + packed
    return b"\x00" + body


_PARTS = b"\x02"  # the encoding flag of `seal_parts` (0: JSON, 1: zlib JSON)


def _unpack(data: bytes) -> Any:
    flag, body = data[:1], data[1:]
    if flag == b"\x01":
        body = zlib.decompress(body)
    elif flag != b"\x00":
        raise SealError("unknown encoding")
    return json.loads(body)


def row_ad(record_type: str, record_id: str, epoch: int) -> bytes:
    return f"outreach/v1|row|{record_type}|{record_id}|{epoch}".encode()


def checkpoint_ad(team_id: str, checkpoint_id: str, seq: int, n: int, epoch: int) -> bytes:
    """A checkpoint part's place: its team, its checkpoint, the log position that checkpoint holds
    the state up to, its number and its key epoch (a part moved anywhere else does not open)."""
    return f"outreach/v1|checkpoint|{team_id}|{checkpoint_id}|{seq}|{n}|{epoch}".encode()


def op_ad(record_id: str, epoch: int, device_id: str, device_seq: int, op_id: str) -> bytes:
    return f"outreach/v1|op|{record_id}|{epoch}|{device_id}|{device_seq}|{op_id}".encode()


def make_proof(secret: bytes, public_key: bytes, device_id: str) -> bytes:
    return _mac(secret, public_key + device_id.encode("ascii"))


def verify_proof(secret: bytes, public_key: bytes, device_id: str, proof: bytes) -> bool:
    return _mac_ok(secret, public_key + device_id.encode("ascii"), proof)


def fingerprint(public_key: bytes) -> str:
    """What a person compares by eye: 20 hex digits of SHA-256 of the public key, in groups."""
    digest = hashlib.sha256(b"outreach/v1/fingerprint|" + public_key).hexdigest()[:20].upper()
    return " ".join(digest[i : i + 4] for i in range(0, 20, 4))


_B32 = "ABCDEFGHJKMNPQRSTVWXYZ0123456789"[:32]  # 32 symbols, no I/L/O/U look-alikes


class RecoveryCode:
    """A printable 160-bit secret that restores a team's keys on a new coordinator device.

    From it: the recovery key (wraps team keys for the server to keep) and the recovery lookup
    (the server stores its hash to find the team). The code itself never leaves the device."""

    GROUPS = 8

    def __init__(self, secret: bytes) -> None:
        if len(secret) != 20:
            raise ValueError("a recovery secret is 20 bytes")
        self.secret = secret

    @classmethod
    def generate(cls) -> RecoveryCode:
        return cls(secrets.token_bytes(20))

    def __str__(self) -> str:
        n = int.from_bytes(self.secret, "big")
        chars = "".join(_B32[(n >> (5 * i)) & 31] for i in reversed(range(32)))
        return "-".join(chars[i : i + 4] for i in range(0, 32, 4))

    @classmethod
    def parse(cls, text: str) -> RecoveryCode:
        cleaned = "".join(c for c in text.upper() if c not in " -\n\t")
        if len(cleaned) != 32 or any(c not in _B32 for c in cleaned):
            raise ValueError("not a recovery code (8 groups of 4 characters)")
        n = 0
        for c in cleaned:
            n = (n << 5) | _B32.index(c)
        return cls(n.to_bytes(20, "big"))

    @property
    def lookup(self) -> bytes:
        return _hkdf(self.secret, b"outreach/v1/recovery-lookup")

    def wrap(self, team_id: str, epoch: int, team_key: bytes, authority_seed: bytes = b"") -> bytes:
        """The team key of `epoch` (and the authority's signing key, when the team has one)."""
        key = AESGCM(_hkdf(self.secret, b"outreach/v1/recovery-key"))
        return _aead_seal(key, team_key + authority_seed, f"outreach/v1|recovery|{team_id}|{epoch}".encode())

    def unwrap(self, team_id: str, epoch: int, blob: bytes) -> bytes:
        key = AESGCM(_hkdf(self.secret, b"outreach/v1/recovery-key"))
        return _aead_open(key, blob, f"outreach/v1|recovery|{team_id}|{epoch}".encode())


class Vault:
    """Unlocked keys in memory, and the operations on them. Created locked; `lock()` drops keys."""

    def __init__(self, device_id: str) -> None:
        self.device_id = device_id
        self._master: AESGCM | None = None
        self._device_key: X25519PrivateKey | None = None
        self._team: dict[int, AESGCM] = {}
        self._team_raw: dict[int, bytes] = {}
        self._authority: Ed25519PrivateKey | None = None
        self._signing: Ed25519PrivateKey | None = None  # this device's own signing key

    # -------------------------------------------------------------------------- lifecycle
    @property
    def unlocked(self) -> bool:
        return self._master is not None

    def _master_ad(self) -> bytes:
        return f"outreach/v1|master|{self.device_id}".encode()

    def create(self, passphrase: str, params: KdfParams, pepper: bytes = b"") -> dict[str, bytes]:
        """New keys. Returns the keyring entries to store: `master`, `device`, `team:1`."""
        master = AESGCM.generate_key(bit_length=256)
        kek = AESGCM(params.derive(passphrase, pepper))
        self._master = AESGCM(master)
        self._device_key = X25519PrivateKey.generate()
        team_key = AESGCM.generate_key(bit_length=256)
        self._set_team_key(1, team_key)
        return {
            "master": _aead_seal(kek, master, self._master_ad()),
            "device": self.wrap_secret("device", self._device_key.private_bytes_raw()),
            "team:1": self.wrap_secret("team:1", team_key),
            "signing": self.new_signing_key(),
        }

    def unlock(self, passphrase: str, params: KdfParams, keyring: dict[str, bytes], pepper: bytes = b"") -> None:
        """Raises SealError when the passphrase is wrong (the caller counts the failure)."""
        kek = AESGCM(params.derive(passphrase, pepper))
        master = _aead_open(kek, keyring["master"], self._master_ad())
        self._master = AESGCM(master)
        self._device_key = X25519PrivateKey.from_private_bytes(self.unwrap_secret("device", keyring["device"]))
        for name, blob in keyring.items():
            if name.startswith("team:"):
                self._set_team_key(int(name[5:]), self.unwrap_secret(name, blob))
            elif name == "authority":
                self._authority = Ed25519PrivateKey.from_private_bytes(self.unwrap_secret(name, blob))
            elif name == "signing":
                self._signing = Ed25519PrivateKey.from_private_bytes(self.unwrap_secret(name, blob))

    def rewrap_master(self, old: str, new: str, old_params: KdfParams, new_params: KdfParams,
                      wrapped_master: bytes, pepper: bytes = b"") -> bytes:
        """Change the passphrase: only the master key is re-wrapped; no data is re-encrypted."""
        master = _aead_open(AESGCM(old_params.derive(old, pepper)), wrapped_master, self._master_ad())
        return _aead_seal(AESGCM(new_params.derive(new, pepper)), master, self._master_ad())

    def lock(self) -> None:
        self._master = None
        self._device_key = None
        self._team.clear()
        self._team_raw.clear()
        self._authority = None
        self._signing = None

    def _need(self) -> AESGCM:
        if self._master is None:
            raise VaultLocked("The vault is locked.")
        return self._master

    # -------------------------------------------------------------- secrets under the master
    def wrap_secret(self, name: str, secret: bytes) -> bytes:
        return _aead_seal(self._need(), secret, f"outreach/v1|key|{self.device_id}|{name}".encode())

    def unwrap_secret(self, name: str, blob: bytes) -> bytes:
        return _aead_open(self._need(), blob, f"outreach/v1|key|{self.device_id}|{name}".encode())

    # ---------------------------------------------------------------------------- team keys
    def _set_team_key(self, epoch: int, key: bytes) -> None:
        self._team[epoch] = AESGCM(key)
        self._team_raw[epoch] = key

    def add_team_key(self, epoch: int, key: bytes) -> bytes:
        """Adopt a team key; returns its keyring entry (`team:<epoch>`) to store."""
        self._set_team_key(epoch, key)
        return self.wrap_secret(f"team:{epoch}", key)

    def new_team_key(self, epoch: int) -> tuple[bytes, bytes]:
        """A fresh random team key for `epoch`: (raw key, keyring entry)."""
        key = AESGCM.generate_key(bit_length=256)
        return key, self.add_team_key(epoch, key)

    def replace_team_keys(self, keys: dict[int, bytes]) -> dict[int, bytes]:
        """Swap every team key at once (joining a team); returns the old ones."""
        old = dict(self._team_raw)
        self._team.clear()
        self._team_raw.clear()
        for epoch, key in keys.items():
            self._set_team_key(epoch, key)
        return old

    def team_key(self, epoch: int) -> bytes:
        self._need()
        return self._team_raw[epoch]

    @property
    def epochs(self) -> list[int]:
        return sorted(self._team)

    def _team_aead(self, epoch: int) -> AESGCM:
        self._need()
        try:
            return self._team[epoch]
        except KeyError:
            raise SealError(f"no team key for epoch {epoch}") from None

    # ------------------------------------------------------------------------ device keys
    @property
    def public_key(self) -> bytes:
        if self._device_key is None:
            raise VaultLocked("The vault is locked.")
        return self._device_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @staticmethod
    def _wrap_info(team_id: str, epoch: int, device_id: str, eph: bytes, recipient: bytes) -> bytes:
        return f"outreach/v1/wrap|{team_id}|{epoch}|{device_id}|".encode() + eph + recipient

    def wrap_for_device(self, team_id: str, epoch: int, device_id: str, public_key: bytes) -> bytes:
        """The team key of `epoch` for another device, unsigned (version 1: what a device of the
        previous version sent; devices now send `make_grant`)."""
        return self._wrap(team_id, epoch, device_id, public_key, self.team_key(epoch))

    def _wrap(self, team_id: str, epoch: int, device_id: str, public_key: bytes, secret: bytes) -> bytes:
        """Ephemeral X25519 + HKDF + AES-GCM, for the device's key `public_key`."""
        recipient = X25519PublicKey.from_public_bytes(public_key)
        eph = X25519PrivateKey.generate()
        eph_pub = eph.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        kek = _hkdf(eph.exchange(recipient), self._wrap_info(team_id, epoch, device_id, eph_pub, public_key))
        return eph_pub + _aead_seal(AESGCM(kek), secret, f"{team_id}|{epoch}".encode())

    def unwrap_from_team(self, team_id: str, epoch: int, blob: bytes) -> bytes:
        """An unsigned (version 1) wrap: its key, checked against nothing but this device's key."""
        return self._unwrap(team_id, epoch, blob)

    def _unwrap(self, team_id: str, epoch: int, blob: bytes) -> bytes:
        if self._device_key is None:
            raise VaultLocked("The vault is locked.")
        eph_pub, rest = blob[:32], blob[32:]
        if len(eph_pub) != 32:
            raise SealError("malformed wrapped key")
        shared = self._device_key.exchange(X25519PublicKey.from_public_bytes(eph_pub))
        kek = _hkdf(shared, self._wrap_info(team_id, epoch, self.device_id, eph_pub, self.public_key))
        return _aead_open(AESGCM(kek), rest, f"{team_id}|{epoch}".encode())

    # ------------------------------------------------------------------ this device's signatures
    def new_signing_key(self) -> bytes:
        """This device's Ed25519 key, which signs its pushes; returns its keyring entry (`signing`)."""
        self._signing = Ed25519PrivateKey.generate()
        return self.wrap_secret("signing", self._signing.private_bytes_raw())

    @property
    def has_signing_key(self) -> bool:
        return self._signing is not None

    @property
    def signing_vk(self) -> bytes:
        if self._signing is None:
            raise VaultLocked("The vault is locked.")
        return self._signing.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def sign_as_device(self, message: bytes) -> bytes:
        if self._signing is None:
            raise VaultLocked("The vault is locked.")
        return self._signing.sign(message)

    def announce_mac(self, team_id: str, epoch: int, device_id: str, signing_vk: bytes, unsigned_through: int) -> bytes:
        """How a device admitted by the previous version vouches for its new signing key to its
        coordinator: a MAC under the team key of `epoch`, which the server does not hold."""
        return _mac(_hkdf(self.team_key(epoch), b"outreach/v2/announce"),
                    _announce_message(team_id, device_id, signing_vk, unsigned_through))

    def check_announce(self, team_id: str, epoch: int, device_id: str, signing_vk: bytes, unsigned_through: int,
                       tag: bytes) -> bool:
        if epoch not in self._team_raw:
            return False
        return _mac_ok(_hkdf(self._team_raw[epoch], b"outreach/v2/announce"),
                       _announce_message(team_id, device_id, signing_vk, unsigned_through), tag)

    # --------------------------------------------------------------------------- authority
    def sign_statement(self, kind: str, body: dict[str, Any]) -> bytes:
        """A statement of the team's authority (`open_statement` reads it): version, signature, body."""
        raw = _canonical(body)
        return _GRANT_V2 + self._signer().sign(_statement(kind, raw)) + raw

    def set_authority(self, seed: bytes) -> bytes:
        """Hold the team's signing key (32-byte Ed25519 seed); returns its keyring entry."""
        self._authority = Ed25519PrivateKey.from_private_bytes(seed)
        return self.wrap_secret("authority", seed)

    def new_authority(self) -> bytes:
        """A new signing key for a team that has none (its founding, or its move to signed
        authority). Returns its keyring entry."""
        return self.set_authority(Ed25519PrivateKey.generate().private_bytes_raw())

    @property
    def can_sign(self) -> bool:
        return self._authority is not None

    def _signer(self) -> Ed25519PrivateKey:
        self._need()
        if self._authority is None:
            raise GrantError("this device does not hold the team's signing key")
        return self._authority

    @property
    def authority_vk(self) -> bytes:
        return self._signer().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def authority_seed(self) -> bytes:
        return self._signer().private_bytes_raw()

    def sign_purge(self, team_id: str, record_id: str) -> bytes:
        return self._signer().sign(_purge_message(team_id, record_id))

    def make_grant(self, team_id: str, epoch: int, device_id: str, public_key: bytes, *, role: str,
                   invite_secret: bytes | None = None, team_bind: bool = False,
                   purges_unsigned_through: int = 0, cutoffs: dict[str, int] | None = None) -> bytes:
        """The team key of `epoch` for a device, wrapped for its X25519 key and signed by the
        authority. A coordinator's grant also carries the signing key. `invite_secret` binds the
        verification key for a device that joined with that invite; `team_bind` binds it under
        every team key held here (an existing team's devices, once: they check it under the
        newest key they hold)."""
        vk = self.authority_vk
        secret = self.team_key(epoch) + (self.authority_seed if role == "coordinator" else b"")
        wrap = self._wrap(team_id, epoch, device_id, public_key, secret)
        message = _bind_message(team_id, device_id, public_key, vk, role)
        bind: dict[str, Any] | None = None
        if invite_secret is not None:
            bind = {"by": "invite", "mac": _b64(_mac(invite_secret, message))}
        elif team_bind:
            bind = {"by": "team", "macs": {str(e): _b64(_mac(_hkdf(k, b"outreach/v2/vk-bind"), message))
                                           for e, k in self._team_raw.items()}}
        return self.sign_statement("grant", {
            "v": 2, "team": team_id, "epoch": epoch, "device": device_id, "pub": _b64(public_key), "wrap": _b64(wrap),
            "vk": _b64(vk), "role": role, "bind": bind, "pu": purges_unsigned_through, "cutoffs": cutoffs or {}})

    def open_grant(self, team_id: str, epoch: int, blob: bytes, *, pinned_vk: bytes | None,
                   invite_secret: bytes | None = None, team_bind: bool = False) -> Grant:
        """Verify a grant sent to this device and unwrap its key. Raises GrantError unless it is
        signed by `pinned_vk` or, with none pinned, by a verification key bound to
        `invite_secret` or (with `team_bind`) to the newest team key held here. With a key
        pinned, the signature is checked before anything of the body is read; whatever the
        body holds, the answer is a grant or GrantError."""
        try:
            signature, raw = _split_signed(blob)
        except GrantError:
            raise GrantError("the coordinator did not sign this key") from None
        if pinned_vk is not None and not _verify(pinned_vk, _statement("grant", raw), signature):
            raise GrantError("the coordinator did not sign this key (another signing key, or a bad signature)")
        try:
            return self._open_grant(team_id, epoch, signature, raw, pinned_vk=pinned_vk, invite_secret=invite_secret,
                                    team_bind=team_bind)
        except SealError:
            raise
        except (ValueError, TypeError, AttributeError, KeyError, RecursionError):
            raise GrantError("a malformed grant") from None

    def _open_grant(self, team_id: str, epoch: int, signature: bytes, raw: bytes, *, pinned_vk: bytes | None,
                    invite_secret: bytes | None, team_bind: bool) -> Grant:
        try:
            body = json.loads(raw)
            ok_shape = isinstance(body, dict) and body.get("v") == 2
        except ValueError:
            ok_shape = False
        if not ok_shape:
            raise GrantError("a malformed grant")
        me = self.public_key
        if (body.get("team"), body.get("epoch"), body.get("device")) != (team_id, epoch, self.device_id) \
                or _unb64(body.get("pub")) != me:
            raise GrantError("a grant meant for another device or epoch")
        vk, role = _unb64(body.get("vk")), body.get("role")
        if role not in ("worker", "coordinator"):
            raise GrantError("a malformed grant")
        if pinned_vk is not None:
            if vk != pinned_vk:
                raise GrantError("the coordinator did not sign this key (another signing key)")
        else:
            message = _bind_message(team_id, self.device_id, me, vk, role)
            bind = body.get("bind") or {}
            if invite_secret is not None and bind.get("by") == "invite":
                bound = _mac_ok(invite_secret, message, _unb64(bind.get("mac")))
            elif team_bind and bind.get("by") == "team" and self._team_raw:
                newest = max(self._team_raw)
                tag = (bind.get("macs") or {}).get(str(newest))
                bound = tag is not None and _mac_ok(_hkdf(self._team_raw[newest], b"outreach/v2/vk-bind"),
                                                    message, _unb64(tag))
            else:
                bound = False
            if not bound:
                raise GrantError("the coordinator did not sign this key (its signing key is bound to nothing "
                                 "this device can check)")
            if not _verify(vk, _statement("grant", raw), signature):  # with a key pinned: checked above
                raise GrantError("the coordinator did not sign this key (a bad signature)")
        secret = self._unwrap(team_id, epoch, _unb64(body.get("wrap")))
        seed = secret[32:] or None
        if len(secret) not in (32, 64) or (seed is not None and (
                role != "coordinator"
                or Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
                    Encoding.Raw, PublicFormat.Raw) != vk)):
            raise GrantError("a malformed grant")
        pu, cutoffs = body.get("pu", 0), body.get("cutoffs") or {}
        if not isinstance(pu, int) or not isinstance(cutoffs, dict) or \
                not all(isinstance(k, str) and isinstance(v, int) for k, v in cutoffs.items()):
            raise GrantError("a malformed grant")
        return Grant(epoch, secret[:32], vk, role, seed, pu, cutoffs)

    # ------------------------------------------------------------------------ seal / open
    def seal_row(self, record_type: str, record_id: str, epoch: int, obj: Any) -> bytes:
        return _aead_seal(self._team_aead(epoch), _pack(obj), row_ad(record_type, record_id, epoch))

    def seal_parts(self, record_type: str, record_id: str, epoch: int, parts: Sequence[Any]) -> bytes:
        """Several JSON values sealed as one row, each compressed on its own (zlib level 1:
        megabytes, speed over the last few percent) while the next is encoded in this thread
        (zlib lets go of the GIL). `open_parts` inflates the next part while parsing this one."""
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="outreach-seal") as pool:
            packed = []
            for part in parts:
                body = json.dumps(part, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
                packed.append((len(body), pool.submit(zlib.compress, body, 1)))
            framed = b"".join(len(c).to_bytes(4, "big") + size.to_bytes(4, "big") + c
                              for size, c in ((size, f.result()) for size, f in packed))
        return _aead_seal(self._team_aead(epoch), _PARTS + framed, row_ad(record_type, record_id, epoch))

    def open_parts(self, record_type: str, record_id: str, epoch: int, blob: bytes) -> list[Any]:
        """The values sealed by `seal_parts`, in order. A helper thread inflates the parts one
        after the other while this one parses each as soon as it is inflated."""
        plain = memoryview(_aead_open(self._team_aead(epoch), blob, row_ad(record_type, record_id, epoch)))
        if plain[:1] != _PARTS:
            raise SealError("not a sealed list of parts")
        chunks, at = [], 1
        while at < len(plain):
            size, plain_size = int.from_bytes(plain[at:at + 4], "big"), int.from_bytes(plain[at + 4:at + 8], "big")
            if size <= 0 or at + 8 + size > len(plain):
                raise SealError("malformed sealed parts")
            chunks.append((plain[at + 8:at + 8 + size], plain_size))
            at += 8 + size
        try:
            # The output buffer sized to fit: zlib then inflates a part in one call without the
            # GIL; growing the buffer would take the GIL back for every block, and json.loads
            # (C, one call per part) holds it for a tenth of a second at a time.
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="outreach-open") as pool:
                inflated = [pool.submit(zlib.decompress, chunk, zlib.MAX_WBITS, max(plain_size, 1))
                            for chunk, plain_size in chunks]
                return [json.loads(f.result()) for f in inflated]
        except (ValueError, zlib.error) as exc:  # damage under a valid tag: impossible unless a bug
            raise SealError(str(exc)) from exc

    def seal_checkpoint_part(self, team_id: str, checkpoint_id: str, seq: int, n: int, epoch: int,
                             data: bytes) -> bytes:
        return _aead_seal(self._team_aead(epoch), data, checkpoint_ad(team_id, checkpoint_id, seq, n, epoch))

    def open_checkpoint_part(self, team_id: str, checkpoint_id: str, seq: int, n: int, epoch: int,
                             blob: bytes) -> bytes:
        """A part's bytes; SealError when it is not the part of that place, sealed under that key."""
        return _aead_open(self._team_aead(epoch), blob, checkpoint_ad(team_id, checkpoint_id, seq, n, epoch))

    def open_row(self, record_type: str, record_id: str, epoch: int, blob: bytes) -> Any:
        return _unpack(_aead_open(self._team_aead(epoch), blob, row_ad(record_type, record_id, epoch)))

    def seal_op(self, record_id: str, epoch: int, device_id: str, device_seq: int, op_id: str, obj: Any) -> bytes:
        ad = op_ad(record_id, epoch, device_id, device_seq, op_id)
        return _aead_seal(self._team_aead(epoch), _pack(obj), ad)

    def open_op(self, record_id: str, epoch: int, device_id: str, device_seq: int, op_id: str, blob: bytes) -> Any:
        ad = op_ad(record_id, epoch, device_id, device_seq, op_id)
        try:
            return _unpack(_aead_open(self._team_aead(epoch), blob, ad))
        except (ValueError, zlib.error) as exc:  # json or zlib damage under a valid tag: impossible unless a bug
            raise SealError(str(exc)) from exc
