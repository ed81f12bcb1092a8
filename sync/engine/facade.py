"""`SyncEngine`: one workspace + one client -> team membership and sync runs; the one object the
app talks to.

It owns the order of a sync run (fold what a cut run left, move a team of the previous version to
signed authority, admit pending devices, push, start from a checkpoint, pull, resend what a
restored server lost, purge late records, finish retirements, write a checkpoint), the lock that
keeps runs and a coordinator's key-changing actions apart, the sync status the UI's chip shows, and
what a revocation means on this device (a wipe, only on the coordinator's signed word). Every
other call it hands to the part that owns it (`sync.engine` lists them); it must hold no rule of
its own beyond that order. Keys never leave the vault except wrapped for a device whose proof a
coordinator checked itself (docs/SECURITY.md).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar, overload

import requests

from models.storage.vault import SealError, open_statement
from models.workspace import Workspace
from sync import protocol as p
from sync.checkpoint import PART_BYTES
from sync.client import SyncClient
from sync.engine.authority import Authority
from sync.engine.checkpoints import Checkpoints
from sync.engine.context import EngineContext
from sync.engine.enrol import Enrolment
from sync.engine.erasure import Erasure
from sync.engine.keys import Keys
from sync.engine.pull import Pull
from sync.engine.push import Push
from sync.engine.reports import CheckpointReport, JoinResult, Progress, RevokeReport, SyncReport, SyncStatus
from sync.engine.revocation import Revocation
from sync.engine.roster import Roster, RosterEntry
from sync.errors import DeviceRevoked, NotJoined, RevocationUnproven, SyncError

__all__ = ["SyncEngine"]

log = logging.getLogger("outreach.sync.engine")

T = TypeVar("T")


class _OnContext(Generic[T]):
    """An engine attribute kept on the shared context, so that setting it on the engine (a test,
    the CLI: `engine.pull_limit = 7`, `engine.ROSTER_EVERY = 0`) reaches the part that reads it."""

    def __init__(self, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, engine: None, owner: type) -> _OnContext[T]: ...
    @overload
    def __get__(self, engine: SyncEngine, owner: type | None = None) -> T: ...
    def __get__(self, engine: SyncEngine | None, owner: type | None = None) -> T | _OnContext[T]:
        if engine is None:  # on the class: the descriptor itself, as a property is
            return self
        return getattr(engine.ctx, self.name)  # type: ignore[no-any-return]

    def __set__(self, engine: SyncEngine, value: T) -> None:
        setattr(engine.ctx, self.name, value)


class SyncEngine:
    """The facade over the engine's parts, built over one `EngineContext`."""

    ROSTER_EVERY = _OnContext[float]("roster_every")  # seconds between two looks at this device's roster entry
    CHECKPOINT_EVERY = _OnContext[int]("checkpoint_every")  # log entries that make a coordinator write one
    CHECKPOINT_PART_BYTES = _OnContext[int]("checkpoint_part_bytes")  # sealed rows per checkpoint part
    push_ops = _OnContext[int]("push_ops")
    push_bytes = _OnContext[int]("push_bytes")
    pull_limit = _OnContext[int]("pull_limit")
    _client = _OnContext["SyncClient | None"]("cached")
    HANDED_OVER = Revocation.HANDED_OVER
    PURGE_CHUNK = Erasure.PURGE_CHUNK
    ACK_EVERY = Push.ACK_EVERY

    def __init__(
        self,
        ws: Workspace,
        *,
        session: requests.Session | None = None,
        allow_insecure: bool = False,
        client_factory: Callable[..., SyncClient] = SyncClient,
        push_ops: int = p.MAX_PUSH_OPS,
        push_bytes: int = p.MAX_PUSH_BYTES,
        pull_limit: int = 1000,
    ) -> None:
        self.ws = ws
        self.ctx = ctx = EngineContext(ws, session=session, allow_insecure=allow_insecure,
                                       client_factory=client_factory, push_ops=push_ops, push_bytes=push_bytes,
                                       pull_limit=pull_limit, checkpoint_part_bytes=PART_BYTES)
        self._run_lock = threading.Lock()  # one sync run at a time per device
        self._roster = Roster(ctx)
        self._keys = Keys(ctx)
        self._authority = Authority(ctx, self._roster, self._keys)
        self._enrol = Enrolment(ctx, self._roster, self._keys, self._authority)
        self._push = Push(ctx, self._keys)
        self._pull = Pull(ctx, self._roster, self._keys)
        self._leave = Revocation(ctx, self._roster, self._keys, self._authority, self._pull, self._push)
        self._erasure = Erasure(ctx, self._authority)
        self._checkpoints = Checkpoints(ctx)

    # ------------------------------------------------------------------ plumbing
    def client(self, url: str | None = None, token: str | None = None) -> SyncClient:
        return self.ctx.client(url, token)

    def close(self) -> None:
        self.ctx.close()

    @property
    def joined(self) -> bool:
        return self.ctx.joined

    @property
    def is_coordinator(self) -> bool:
        return self.ctx.is_coordinator

    def ping(self) -> None:
        """Is the server there? One small request (SyncError when it is not reachable)."""
        self.client().health()

    def status(self) -> SyncStatus:
        ws = self.ws
        last = ws.sync_value("last_success")
        return SyncStatus(
            joined=self.joined, role=ws.setting("role"), device_status=ws.setting("device_status"),
            pending_ops=ws.pending_changes(), last_success=float(last) if last else None,
            last_error=ws.sync_value("last_error") or None, server_url=ws.setting("server_url"),
            history_pending=ws.history_pending(),
        )

    def _pinned(self) -> dict[str, str]:
        return self.ctx.pinned()

    # --------------------------------------------------------------- authority and roster
    def authority_vk(self) -> bytes | None:
        return self.ctx.authority_vk()

    def can_sign(self) -> bool:
        return self.ctx.can_sign()

    def roster(self) -> dict[str, RosterEntry]:
        return self._roster.roster()

    def _keep_roster(self, entries: dict[str, RosterEntry]) -> None:
        self._roster.keep(entries)

    def cutoffs(self) -> dict[str, int]:
        return self.ctx.cutoffs()

    def refresh_roster(self) -> dict[str, RosterEntry]:
        return self._roster.refresh()

    # --------------------------------------------------------------- enrolment
    def join(self, url: str, code_text: str, *, device_name: str | None = None, allow_insecure: bool = False) -> JoinResult:
        return self._enrol.join(url, code_text, device_name=device_name, allow_insecure=allow_insecure)

    def recover(self, url: str, code_text: str, *, device_name: str | None = None,
                allow_insecure: bool = False) -> JoinResult:
        return self._enrol.recover(url, code_text, device_name=device_name, allow_insecure=allow_insecure)

    def invite(self, role: p.Role = p.Role.WORKER, expires_in: int = 24 * 3600) -> str:
        return self._enrol.invite(role, expires_in)

    def forget_expired_invites(self) -> int:
        return self._enrol.forget_expired_invites()

    def open_invites(self) -> int:
        return self._enrol.open_invites()

    def devices(self) -> p.DeviceList:
        return self.client().devices()

    def admit_pending(self) -> tuple[int, int]:
        return self._enrol.admit_pending()

    @property
    def confirms_devices(self) -> bool:
        return self._enrol.confirms_devices

    def set_confirms_devices(self, on: bool) -> None:
        self._enrol.set_confirms_devices(on)

    def confirm_device(self, device_id: str, fingerprint_seen: str) -> None:
        self._enrol.confirm_device(device_id, fingerprint_seen)

    def awaiting_confirmation(self, listing: p.DeviceList) -> list[str]:
        return self._enrol.awaiting_confirmation(listing)

    def fingerprints(self, listing: p.DeviceList) -> dict[str, str]:
        return self._enrol.fingerprints(listing)

    # --------------------------------------------------------------- keys and the recovery code
    def refresh_keys(self) -> bool:
        return self._keys.refresh()

    def new_recovery_code(self) -> str:
        return self._keys.new_recovery_code()

    def recovery_status(self) -> dict[str, object]:
        return self._keys.recovery_status()

    # --------------------------------------------------------------- devices leaving
    def revoke(self, device_id: str) -> int:
        return self._leave.revoke(device_id)

    def revoke_with_report(self, device_id: str, *, strand: bool = False) -> RevokeReport:
        return self._leave.revoke_with_report(device_id, strand=strand)

    def retire(self, device_id: str) -> None:
        self._leave.retire(device_id)

    def retiring(self) -> list[str]:
        return self._leave.retiring()

    def loss_preview(self, device_id: str) -> tuple[float | None, int]:
        return self._leave.loss_preview(device_id)

    def finish_retirements(self) -> int:
        return self._leave.finish_retirements()

    # --------------------------------------------------------------- erasure
    def erase_person(self, person_id: str) -> int:
        return self._erasure.erase_person(person_id)

    def purge_late(self) -> int:
        return self._erasure.purge_late()

    # --------------------------------------------------------------- checkpoints
    def make_checkpoint(self, *, force: bool = False) -> CheckpointReport | None:
        return self._checkpoints.make(force=force)

    def _bootstrap(self, progress: Progress | None = None) -> int:
        return self._checkpoints.bootstrap(progress)

    # --------------------------------------------------------------- push and pull
    def push(self, progress: Progress | None = None) -> int:
        return self._push.push(progress)

    def pull(self, progress: Progress | None = None, *, wait: float = 0.0,
             fold: bool = True) -> tuple[int, int, int, int]:
        return self._pull.pull(progress, wait=wait, fold=fold)

    def fold(self, progress: Progress | None = None) -> tuple[int, int]:
        return self._pull.fold(progress)

    def _check_purges(self, purges: list[p.PurgeOut], since: int, upto: int) -> tuple[list[str], list[str]]:
        return self._pull.check_purges(purges, since, upto)

    # ------------------------------------------------------------------ sync run
    def exclusive(self) -> threading.Lock:
        """The lock a sync run holds: a coordinator's action that changes keys or the device list
        (admit, revoke, erase) takes it too, so that it never interleaves with a background run.
        Take it before any lock of the caller's own (a run takes the UI's lock inside it)."""
        return self._run_lock

    def sync(self, progress: Progress | None = None, *, wait: float = 0.0) -> SyncReport:
        """One sync run: admit pending devices (coordinator), push everything, pull everything.
        Wipes the local data when the server says this device was revoked."""
        with self._run_lock:
            try:
                report = self._sync(progress, wait)
            except DeviceRevoked as exc:
                if not self._revocation_signed(exc):
                    self.ws.add_notice("revocation_unproven", None, self.ws.device_id,
                                       "the server said this device was revoked, without the coordinator's word")
                    unproven = RevocationUnproven()
                    self.ws.set_sync_values(last_error=str(unproven), last_error_at=time.time())
                    raise unproven from None
                log.warning("this device was revoked: wiping local data")
                self.close()
                self.ws.wipe()
                raise
            except SyncError as exc:
                if self.ws.unlocked:
                    self.ws.set_sync_values(last_error=str(exc), last_error_at=time.time())
                raise
            self.ws.set_sync_values(last_success=time.time(), last_error="")
            return report

    def _revocation_signed(self, exc: DeviceRevoked) -> bool:
        """Whether the coordinator signed this device's revocation (its roster entry with a
        cut-off, sent along by the server). A team without signed authority takes the server's
        word, as the previous version did."""
        vk = self.authority_vk()
        if vk is None:
            return True
        blob = exc.detail.get("revocation")
        if not isinstance(blob, str):
            return False
        try:
            body = open_statement(vk, "roster", p.b64d(blob))
        except (SealError, ValueError):
            return False
        return (body.get("team") == self.ctx.team_id() and body.get("device") == self.ws.device_id
                and isinstance(body.get("cutoff"), int))

    def _sync(self, progress: Progress | None, wait: float) -> SyncReport:
        report = SyncReport()
        ws = self.ws
        if not self.joined:
            raise NotJoined()
        if ws.setting("device_status") != p.DeviceStatus.ACTIVE.value and not self.refresh_keys():
            report.pending = True
            return report
        self.fold(progress)  # what a run cut short left behind: local work, also offline
        if self.authority_vk() is None:
            if self.is_coordinator:  # a team of the previous version: the log's end first, then sign
                self.pull(progress)
                self._authority.ensure()
            else:
                self.refresh_keys()  # the coordinator may have moved the team to signed authority
        if self.authority_vk() is not None and not self.ws.setting("signing_announced"):
            self._authority.announce()  # a device of the previous version: from now on it signs its pushes
        if self.is_coordinator:
            report.admitted, report.rejected = self.admit_pending()
            self._roster.complete()
        report.pushed = self.push(progress)
        report.from_checkpoint = self._bootstrap(progress)
        pulled = self.pull(progress, wait=wait)
        report.pulled, report.applied, report.set_aside, report.purged = pulled
        held = self._pull.held_through  # from a fresh answer to this device's own pull only (1.3: its nonce)
        if held is not None and held < ws.pushed_through():
            # the server lost ops it had acknowledged (restored from an older backup): send them again
            report.resent, lost = ws.resend_lost(held)
            ws.add_notice("lost_on_server", None, ws.device_id,
                          f"the server had lost {report.resent + lost} changes of this device: {report.resent} sent "
                          f"again" + (f", {lost} could not be (too old)" if lost else ""))
            report.pushed += self.push(progress)
        report.erased_late = self.purge_late()
        if self.is_coordinator:
            report.retired = self.finish_retirements()
        elif self._leave.asked_to_retire():
            self._leave.hand_over()
        if self.can_sign():
            try:
                report.checkpoint = self.make_checkpoint()
            except SyncError as exc:  # a checkpoint is a courtesy to new devices: the sync itself went well
                log.warning("no checkpoint written: %s", exc)
        return report
