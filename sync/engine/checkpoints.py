"""Checkpoints (issue 17): a new device starts from the team's state, not from the whole log.

A coordinator's device writes the team's state up to a log position S as sealed parts (the format
is `sync.checkpoint`: its sealed rows as they are, and the ids and counters beside them), signs a
manifest of their hashes with the team's authority, and the server keeps them blind. A device with
nothing pulled yet takes the newest one it can check (the first tier, what a worker needs in the
street, then the rest), then pulls the log from S on. It must never take a part that is not what
the signed manifest says, a manifest the authority did not sign, or a checkpoint older than one it
saw: the device replays the log instead, never a half-taken checkpoint.
"""

from __future__ import annotations

import json
import logging
import shutil
import uuid
import zlib
from pathlib import Path
from typing import Any

from models.storage.vault import GrantError, SealError, open_statement
from sync import protocol as p
from sync.checkpoint import (
    CheckpointError,
    Manifest,
    frame_meta,
    frame_rows,
    frame_states,
    manifest_body,
    read_manifest,
    read_part,
    split_rows,
)
from sync.client import SyncClient
from sync.engine.context import EngineContext
from sync.engine.reports import CheckpointReport, Progress
from sync.errors import Rejected, SyncError

__all__ = ["Checkpoints"]

log = logging.getLogger("outreach.sync.engine")


class Checkpoints:
    """Write a checkpoint (coordinator); start from one (a new device)."""

    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx

    def make(self, *, force: bool = False) -> CheckpointReport | None:
        """Coordinator: write a checkpoint of the team's state up to this device's cursor, when the
        log moved `CHECKPOINT_EVERY` entries since the last one, or an erasure dropped the last one
        or a revocation made a new key epoch (`checkpoint_due`), or `force`; and only when the rows
        are exactly the fold of the log up to the cursor (`Workspace.checkpoint_ready`). Else None."""
        ctx = self.ctx
        if not ctx.can_sign():
            raise SyncError("Only a coordinator's device writes checkpoints.")
        ws, vault = ctx.ws, ctx.ws.vault
        assert vault is not None
        cursor = int(ws.sync_value("cursor", "0") or 0)
        last = int(ws.sync_value("checkpoint_made", "0") or 0)
        due = last > 0 and ws.sync_value("checkpoint_due") == "1"  # keep a team's checkpoint fresh
        if cursor == 0 or (cursor == last and not due) or (not force and not due
                                                            and cursor - last < ctx.checkpoint_every):
            return None
        if not ws.checkpoint_ready():
            return None
        team, epoch = ctx.team_id(), max(vault.epochs)
        checkpoint_id = uuid.uuid4().hex
        size = ctx.checkpoint_part_bytes
        street, rest = ws.checkpoint_rows()
        # the first tier: what makes a new device usable in the street; then the rest
        datas = [frame_meta(ws.checkpoint_meta()), *frame_states(street, size)]
        tier = len(datas)
        datas += [frame_rows(group) for group in split_rows(rest, size)]
        sealed = [vault.seal_checkpoint_part(team, checkpoint_id, cursor, n, epoch, data)
                  for n, data in enumerate(datas, 1)]
        manifest = vault.sign_statement("checkpoint", manifest_body(team, checkpoint_id, cursor, epoch, sealed,
                                                                    int(ws.now() * 1000), tier))
        client = ctx.client()
        client.put_checkpoint(p.CheckpointIn(id=checkpoint_id, seq=cursor, epoch=epoch, parts=len(sealed),
                                             manifest=p.b64e(manifest)))
        for n, blob in enumerate(sealed, 1):
            client.put_checkpoint_part(checkpoint_id, n, blob)
        ws.set_sync_values(checkpoint_made=cursor, checkpoint_due=0)
        log.info("checkpoint %s written: log position %d, %d parts, %d bytes", checkpoint_id, cursor, len(sealed),
                 sum(map(len, sealed)))
        return CheckpointReport(checkpoint_id, cursor, len(sealed), sum(map(len, sealed)))

    def _staging(self, checkpoint_id: str | None = None) -> Path:
        root = self.ctx.ws.data_dir / "checkpoint"
        return root / checkpoint_id if checkpoint_id else root

    def bootstrap(self, progress: Progress | None = None) -> int:
        """A device that has pulled nothing yet takes the newest checkpoint it can check and
        continues from its log position: the rows taken (0: none, the log is replayed)."""
        ctx = self.ctx
        ws = ctx.ws
        vk = ctx.authority_vk()
        if vk is None or int(ws.sync_value("cursor", "0") or 0) != 0 or ws.vault is None:
            return 0
        team, floor = ctx.team_id(), int(ws.sync_value("checkpoint_floor", "0") or 0)
        pending = ws.sync_value("checkpoint_pending")  # its first tier taken, the rest on its way
        client = ctx.client()
        listing = client.checkpoints().checkpoints
        if pending and pending not in {c.id for c in listing}:
            # gone meanwhile (a purge, a newer one): the log, merged onto the rows of that first tier
            ws.set_sync_values(checkpoint_pending="")
            shutil.rmtree(self._staging(), ignore_errors=True)
            return 0
        for listed in listing:
            if listed.epoch not in ws.vault.epochs or (pending and listed.id != pending):
                continue
            try:
                manifest = read_manifest(open_statement(vk, "checkpoint", p.b64d(listed.manifest)))
                if (manifest.team_id, manifest.checkpoint_id, manifest.seq, manifest.epoch, len(manifest.parts)) != (
                        team, listed.id, listed.seq, listed.epoch, listed.parts):
                    raise CheckpointError("a checkpoint listed as another than its manifest says")
                if manifest.seq < floor:
                    raise CheckpointError("a checkpoint older than one this device took")
                return self._take(client, manifest, progress, first_taken=bool(pending))
            except (GrantError, CheckpointError, ValueError) as exc:
                ws.add_notice("checkpoint_refused", None, None, f"checkpoint {listed.id} refused: {exc}")
                shutil.rmtree(self._staging(listed.id), ignore_errors=True)
                if pending:  # the rest of one whose first tier was taken: the log, merged onto it
                    ws.set_sync_values(checkpoint_pending="")
                    return 0
            except Rejected as exc:
                if exc.code != p.ErrorCode.NOT_FOUND:
                    raise
                shutil.rmtree(self._staging(listed.id), ignore_errors=True)  # dropped meanwhile: the next one
        return 0

    def _fetch_parts(self, client: SyncClient, manifest: Manifest, first: int, last: int,
                     progress: Progress | None) -> None:
        """Parts `first`..`last` on disk, each checked against the manifest (a cut transfer
        resumes from the parts it has)."""
        staging = self._staging(manifest.checkpoint_id)
        for n in range(first, last + 1):
            path = staging / f"{n}.part"
            if path.exists():
                try:
                    manifest.check(n, path.read_bytes())
                    continue
                except CheckpointError:
                    path.unlink()
            blob = client.checkpoint_part(manifest.checkpoint_id, n)
            manifest.check(n, blob)
            path.write_bytes(blob)
            if progress:
                progress("checkpoint", n, len(manifest.parts))

    def _open_parts(self, manifest: Manifest, first: int, last: int) -> tuple[dict[str, Any] | None, bytes,
                                                                              list[tuple[str, str, int, bytes]]]:
        """(meta, states, rows) of parts `first`..`last`, every one checked and opened."""
        ctx = self.ctx
        vault = ctx.ws.vault
        assert vault is not None
        staging = self._staging(manifest.checkpoint_id)
        meta: dict[str, Any] | None = None
        rows: list[tuple[str, str, int, bytes]] = []
        states: list[bytes] = []
        for n in range(first, last + 1):
            blob = (staging / f"{n}.part").read_bytes()
            manifest.check(n, blob)
            try:
                data = vault.open_checkpoint_part(manifest.team_id, manifest.checkpoint_id, manifest.seq, n,
                                                  manifest.epoch, blob)
            except SealError:
                raise CheckpointError(f"part {n} does not open under the team key") from None
            part = read_part(data)
            if (n == 1) != (part.kind == "meta"):
                raise CheckpointError("part 1 is the checkpoint's meta, and only part 1")
            if (part.kind == "states") != (1 < n <= manifest.tier):
                raise CheckpointError("the first tier holds the meta and the street's states, and only it")
            meta = part.meta if part.meta is not None else meta
            states.append(part.states)
            rows.extend(part.rows)
        return meta, b"".join(states), rows

    def _take(self, client: SyncClient, manifest: Manifest, progress: Progress | None, *,
                         first_taken: bool = False) -> int:
        """Fetch, check and take the first tier (what a worker needs in the street: the device is
        usable from then on), then the rest, each tier in one transaction. The cursor moves to the
        checkpoint's position only once both are in: until then the device pulls no log."""
        ctx = self.ctx
        ws = ctx.ws
        staging = self._staging(manifest.checkpoint_id)
        staging.mkdir(parents=True, exist_ok=True)
        for other in self._staging().iterdir():
            if other != staging:
                shutil.rmtree(other, ignore_errors=True)
        total, tier = len(manifest.parts), manifest.tier
        taken = 0
        if not first_taken:
            self._fetch_parts(client, manifest, 1, tier, progress)
            meta, states, rows = self._open_parts(manifest, 1, tier)
            if meta is None:
                raise CheckpointError("a checkpoint without its meta part")
            done = tier == total
            values: dict[str, str | int] = (
                {"cursor": manifest.seq, "checkpoint_floor": manifest.seq} if done
                else {"checkpoint_pending": manifest.checkpoint_id, "checkpoint_meta": json.dumps(meta)})
            try:
                taken = ws.adopt_checkpoint(rows, meta, values, states=states or None)
            except (zlib.error, ValueError, TypeError) as exc:  # signed, yet not well formed: a bug, never taken
                raise CheckpointError(f"the first tier is not well formed: {exc}") from None
            log.info("checkpoint %s: first tier taken, %d rows", manifest.checkpoint_id, taken)
            if progress:
                progress("usable", taken, total)  # the device can be used from here on
            if done:
                shutil.rmtree(staging, ignore_errors=True)
                return taken
        self._fetch_parts(client, manifest, tier + 1, total, progress)
        _meta, _states, rows = self._open_parts(manifest, tier + 1, total)
        meta = json.loads(ws.sync_value("checkpoint_meta") or "{}")
        taken += ws.adopt_checkpoint(rows, meta, {"cursor": manifest.seq, "checkpoint_floor": manifest.seq,
                                                  "checkpoint_pending": "", "checkpoint_meta": ""})
        shutil.rmtree(staging, ignore_errors=True)
        log.info("checkpoint %s taken: log position %d", manifest.checkpoint_id, manifest.seq)
        return taken
