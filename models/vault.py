"""The vault: every key and every cipher operation of the client. The only module on the client
that imports `cryptography`; it invents nothing and uses its primitives as DESIGN.md says.

Key hierarchy:
    passphrase (+ keystore pepper on mobile) --Argon2id | scrypt--> KEK
    KEK --AES-256-GCM--> master key (random, 256 bit)             (changing the passphrase re-wraps this only)
    master key --AES-256-GCM--> device X25519 private key, team keys by epoch, small secrets
    team key[epoch] --AES-256-GCM--> every sealed row and every op payload

Sealed blob: version byte 0x01, 12-byte random nonce, ciphertext+tag; the plaintext is
flag byte (0 raw, 1 zlib) + body, compressed before sealing, never after. Associated data binds
what the blob is (row or op), the record type for rows, the record id, the key epoch and, for ops,
device id, device sequence and op id, so that nobody can move a blob to another place unnoticed.

It must never touch SQL, files or the network: the store persists the wrapped blobs it returns.
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
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .errors import VaultLocked

__all__ = [
    "KdfParams",
    "Vault",
    "SealError",
    "argon2_available",
    "make_proof",
    "verify_proof",
    "RecoveryCode",
    "fingerprint",
]

_VERSION = b"\x01"
_NONCE = 12
_COMPRESS_MIN = 96  # below this, zlib's header costs more than it saves


class SealError(Exception):
    """A blob failed authentication or is malformed. Callers turn it into TamperedRecord."""


def argon2_available() -> bool:
    try:
        from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

        Argon2id(salt=b"\0" * 16, length=32, iterations=1, lanes=1, memory_cost=8).derive(b"x")
        return True
    except (ImportError, UnsupportedAlgorithm):
        return False


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
    pepper: bool = False  # a keystore secret is mixed in (mobile)

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
        return cls("scrypt", salt, n=2**15, r=8, p=1, pepper=pepper)

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


def op_ad(record_id: str, epoch: int, device_id: str, device_seq: int, op_id: str) -> bytes:
    return f"outreach/v1|op|{record_id}|{epoch}|{device_id}|{device_seq}|{op_id}".encode()


def make_proof(secret: bytes, public_key: bytes, device_id: str) -> bytes:
    h = hmac.HMAC(secret, hashes.SHA256())
    h.update(public_key + device_id.encode("ascii"))
    return h.finalize()


def verify_proof(secret: bytes, public_key: bytes, device_id: str, proof: bytes) -> bool:
    h = hmac.HMAC(secret, hashes.SHA256())
    h.update(public_key + device_id.encode("ascii"))
    try:
        h.verify(proof)
        return True
    except InvalidSignature:  # what HMAC.verify raises (not InvalidTag, which is AEAD's)
        return False


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

    def wrap(self, team_id: str, epoch: int, team_key: bytes) -> bytes:
        key = AESGCM(_hkdf(self.secret, b"outreach/v1/recovery-key"))
        return _aead_seal(key, team_key, f"outreach/v1|recovery|{team_id}|{epoch}".encode())

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
        """The team key of `epoch` for another device: ephemeral X25519 + HKDF + AES-GCM."""
        recipient = X25519PublicKey.from_public_bytes(public_key)
        eph = X25519PrivateKey.generate()
        eph_pub = eph.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        kek = _hkdf(eph.exchange(recipient), self._wrap_info(team_id, epoch, device_id, eph_pub, public_key))
        return eph_pub + _aead_seal(AESGCM(kek), self.team_key(epoch), f"{team_id}|{epoch}".encode())

    def unwrap_from_team(self, team_id: str, epoch: int, blob: bytes) -> bytes:
        if self._device_key is None:
            raise VaultLocked("The vault is locked.")
        eph_pub, rest = blob[:32], blob[32:]
        if len(eph_pub) != 32:
            raise SealError("malformed wrapped key")
        shared = self._device_key.exchange(X25519PublicKey.from_public_bytes(eph_pub))
        kek = _hkdf(shared, self._wrap_info(team_id, epoch, self.device_id, eph_pub, self.public_key))
        return _aead_open(AESGCM(kek), rest, f"{team_id}|{epoch}".encode())

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
