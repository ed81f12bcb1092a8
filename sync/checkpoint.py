"""A checkpoint's parts as bytes: what a coordinator writes and a new device reads (issue 17).

A checkpoint holds the team's state up to a log position S: every sealed row as the coordinator
stores it (a row is sealed under a team key with its type, id and epoch as associated data, so a
device of the team stores it as it comes, without opening and re-sealing it), and what a device
keeps beside the rows (the ids of erased records, the highest sequence seen of each device, the
hybrid clock). Part 1 is that `meta`; the rows follow, places, persons and follow-ups first, then
contacts newest first. Each part is sealed on its own (`Vault.seal_checkpoint_part`: team,
checkpoint, S, part number and epoch bound) and the manifest, signed by the team's authority,
names each part's size and SHA-256: the server can withhold a checkpoint, never change one.

The first tier (meta, then what a worker needs in the street) carries those records' merge states,
compressed and cut into parts: a third of their sealed rows' bytes on a slow link; the new device
seals them itself. The rest follows as sealed rows.

Pure functions over bytes: no store, no network, no keys.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["PART_BYTES", "TYPES", "Manifest", "frame_meta", "frame_rows", "frame_states", "read_part", "split_rows",
           "manifest_body", "read_manifest", "CheckpointError", "Part"]

PART_BYTES = 1_000_000  # rows per part, in bytes of sealed rows: well under the protocol's part limit
TYPES = ("place", "person", "followup", "contact", "audit")  # the order rows go in, and their codes
_META, _ROWS, _STATES = b"M", b"R", b"S"
_HEAD = 1 + 16 + 4 + 4  # type code, record id, key epoch, length

Row = tuple[str, str, int, bytes]  # (record type, record id, key epoch, sealed row)


class CheckpointError(ValueError):
    """A checkpoint that is not what its manifest says, or not well formed."""


def frame_meta(meta: dict[str, Any]) -> bytes:
    return _META + zlib.compress(json.dumps(meta, separators=(",", ":")).encode("utf-8"), 6)


def frame_rows(rows: Iterable[Row]) -> bytes:
    out = [_ROWS]
    for rtype, rid, epoch, blob in rows:
        out.append(bytes((TYPES.index(rtype),)) + bytes.fromhex(rid) + epoch.to_bytes(4, "big")
                   + len(blob).to_bytes(4, "big") + blob)
    return b"".join(out)


def frame_states(states: bytes, part_bytes: int = PART_BYTES) -> list[bytes]:
    """The compressed states cut into parts (their bytes joined in order are the states again)."""
    return [_STATES + states[at:at + part_bytes] for at in range(0, len(states), part_bytes)] or [_STATES]


def split_rows(rows: Iterable[Row], part_bytes: int = PART_BYTES) -> Iterator[list[Row]]:
    """Rows in groups of about `part_bytes` of sealed rows (at least one row each)."""
    group: list[Row] = []
    size = 0
    for row in rows:
        if group and size + len(row[3]) + _HEAD > part_bytes:
            yield group
            group, size = [], 0
        group.append(row)
        size += len(row[3]) + _HEAD
    if group:
        yield group


@dataclass(frozen=True)
class Part:
    """One part read: its kind ("meta", "states" or "rows") and what it holds."""

    kind: str
    meta: dict[str, Any] | None = None
    states: bytes = b""  # a slice of the compressed states
    rows: tuple[Row, ...] = ()


def read_part(data: bytes) -> Part:
    """A part's contents; CheckpointError when it is malformed."""
    kind = data[:1]
    if kind == _META:
        try:
            meta = json.loads(zlib.decompress(data[1:]))
        except (zlib.error, ValueError) as exc:
            raise CheckpointError(f"a malformed checkpoint meta part: {exc}") from None
        if not isinstance(meta, dict):
            raise CheckpointError("a malformed checkpoint meta part")
        return Part("meta", meta=meta)
    if kind == _STATES:
        return Part("states", states=data[1:])
    if kind != _ROWS:
        raise CheckpointError("not a checkpoint part")
    rows: list[Row] = []
    at, end = 1, len(data)
    while at < end:
        if at + _HEAD > end or data[at] >= len(TYPES):
            raise CheckpointError("a malformed checkpoint row")
        size = int.from_bytes(data[at + 21:at + 25], "big")
        if at + _HEAD + size > end:
            raise CheckpointError("a malformed checkpoint row")
        rows.append((TYPES[data[at]], data[at + 1:at + 17].hex(), int.from_bytes(data[at + 17:at + 21], "big"),
                     data[at + _HEAD:at + _HEAD + size]))
        at += _HEAD + size
    return Part("rows", rows=tuple(rows))


@dataclass(frozen=True)
class Manifest:
    team_id: str
    checkpoint_id: str
    seq: int
    epoch: int
    parts: tuple[tuple[int, str], ...]  # (size, sha256 hex) of each sealed part, in order
    made_at: int  # ms
    tier: int  # the last part of the first tier (meta, its index, the rows a worker needs in the street)

    def check(self, n: int, blob: bytes) -> None:
        """CheckpointError unless `blob` is part `n` (from 1) as the manifest names it."""
        size, digest = self.parts[n - 1]
        if len(blob) != size or hashlib.sha256(blob).hexdigest() != digest:
            raise CheckpointError(f"part {n} is not the one its manifest names")


def manifest_body(team_id: str, checkpoint_id: str, seq: int, epoch: int, sealed_parts: list[bytes],
                  made_at: int, tier: int) -> dict[str, Any]:
    """What the team's authority signs for a checkpoint (`Vault.sign_statement("checkpoint", …)`)."""
    return {"team": team_id, "id": checkpoint_id, "seq": seq, "epoch": epoch, "made_at": made_at, "tier": tier,
            "parts": [[len(b), hashlib.sha256(b).hexdigest()] for b in sealed_parts]}


def read_manifest(body: dict[str, Any]) -> Manifest:
    try:
        parts = tuple((int(size), str(digest)) for size, digest in body["parts"])
        manifest = Manifest(str(body["team"]), str(body["id"]), int(body["seq"]), int(body["epoch"]), parts,
                            int(body["made_at"]), int(body["tier"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"a malformed checkpoint manifest: {exc}") from None
    if not parts or any(len(d) != 64 for _s, d in parts) or not 1 <= manifest.tier <= len(parts):
        raise CheckpointError("a malformed checkpoint manifest")
    return manifest
