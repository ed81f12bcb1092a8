"""The roster: the coordinator's signed word on each device of the team (its signing key, its
role, since when its ops must be signed, and once revoked the last sequence of it that counts).

It owns `RosterEntry`, the copy of the roster kept on this device (each entry checked against the
team's authority key when it came), and, on a coordinator's device, signing and publishing entries.
It must never take an entry the authority did not sign for this team (a forged one becomes a
notice), never let an older entry replace a newer one, and never call another part of the engine.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.storage.vault import GrantError, SealError, open_statement
from sync import protocol as p
from sync.engine.context import EngineContext

__all__ = ["RosterEntry", "Roster"]


@dataclass(frozen=True)
class RosterEntry:
    """The coordinator's signed word on one device: its signing key (None: a device of the
    previous version that does not sign yet, whose ops are taken as that version took them), the
    device sequence up to which its ops may come unsigned, and, once revoked, the last sequence
    of it that counts."""

    device_id: str
    sign_vk: bytes | None
    role: str
    unsigned_through: int
    cutoff: int | None
    n: int  # when the coordinator issued it (ms): an older entry never replaces a newer one
    retire: bool = False  # asked to hand everything over and leave (`SyncEngine.retire`)
    # its X25519 key (b64) as the admitting coordinator verified it: every coordinator, a second or
    # a recovered one too, wraps new key epochs for the devices the roster vouches for
    pub: str | None = None
    # once revoked: (statements, SHA-256 chain) of its history as the revoking coordinator saw the
    # whole log (`gaps.Gaps.history`): a device that saw the whole log too can tell a rewritten one
    history: tuple[int, str] | None = None

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"sign_vk": p.b64e(self.sign_vk) if self.sign_vk else None, "role": self.role,
                                  "unsigned_through": self.unsigned_through, "cutoff": self.cutoff, "n": self.n}
        if self.retire:
            out["retire"] = True
        if self.pub:
            out["pub"] = self.pub
        if self.history is not None:
            out["history"] = [self.history[0], self.history[1]]
        return out

    @classmethod
    def from_json(cls, device_id: str, d: dict[str, object]) -> RosterEntry:
        vk, cutoff = d.get("sign_vk"), d.get("cutoff")
        return cls(device_id, p.b64d(vk) if isinstance(vk, str) else None, str(d.get("role") or "worker"),
                   int(d.get("unsigned_through") or 0),  # type: ignore[call-overload]
                   cutoff if isinstance(cutoff, int) else None, int(d.get("n") or 0),  # type: ignore[call-overload]
                   d.get("retire") is True, _key32(d.get("pub")), _history(d.get("history")))


def _history(value: object) -> tuple[int, str] | None:
    if (isinstance(value, list) and len(value) == 2 and isinstance(value[0], int) and not isinstance(value[0], bool)
            and value[0] >= 0 and isinstance(value[1], str) and len(value[1]) in (0, 64)):
        return value[0], value[1]
    return None


def _key32(value: object) -> str | None:
    """A b64 32-byte key from a roster entry, or None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        return value if len(p.b64d(value)) == 32 else None
    except ValueError:
        return None


class Roster:
    """The roster as kept here, refreshed from the server, and (coordinator) signed and published."""

    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx

    def roster(self) -> dict[str, RosterEntry]:
        """The devices as the coordinator signed them, as kept here (verified when they came)."""
        return {d: RosterEntry.from_json(d, e) for d, e in self.ctx.json_secret("roster").items()}

    def keep(self, entries: dict[str, RosterEntry]) -> None:
        self.ctx.set_json_secret("roster", {d: e.to_json() for d, e in entries.items()})

    def refresh(self) -> dict[str, RosterEntry]:
        """Read the server's roster and keep each entry the team's authority signed for this team
        that is newer than the one kept; a forged entry becomes a notice."""
        ctx = self.ctx
        vk = ctx.authority_vk()
        kept = self.roster()
        if vk is None:
            return kept
        team = ctx.team_id()
        changed = False
        for e in ctx.client().roster().entries:
            try:
                body = open_statement(vk, "roster", p.b64d(e.entry))
                if body.get("team") != team or body.get("device") != e.device_id:
                    raise GrantError("an entry of another device or team")
                entry = RosterEntry.from_json(e.device_id, body)
            except (SealError, ValueError, TypeError):
                ctx.ws.add_notice("roster_refused", None, e.device_id, "a device entry the coordinator did not sign")
                continue
            old = kept.get(e.device_id)
            if old is None or entry.n > old.n:
                kept[e.device_id] = entry
                changed = True
        if changed:
            self.keep(kept)
        return kept

    def _out(self, entry: RosterEntry) -> p.RosterEntryOut:
        vault = self.ctx.ws.vault
        assert vault is not None
        body = {"v": 2, "team": self.ctx.team_id(), "device": entry.device_id, **entry.to_json()}
        return p.RosterEntryOut(device_id=entry.device_id, entry=p.b64e(vault.sign_statement("roster", body)))

    def publish(self, entries: list[RosterEntry]) -> None:
        """Sign and upload roster entries (before the keys that let those devices write)."""
        if not entries:
            return
        self.ctx.client().upload_roster(p.RosterUpload(entries=[self._out(e) for e in entries]))
        kept = self.roster()
        kept.update({e.device_id: e for e in entries})
        self.keep(kept)

    def entry(self, device_id: str, sign_vk: bytes | None, role: str, unsigned_through: int = 0,
              cutoff: int | None = None, *, retire: bool = False,
              history: tuple[int, str] | None = None) -> RosterEntry:
        """A new entry, issued now, naming the device's X25519 key as a coordinator verified it."""
        return RosterEntry(device_id, sign_vk, role, unsigned_through, cutoff, int(self.ctx.ws.now() * 1000), retire,
                           self.verified_pub(device_id), history)

    def verified_pub(self, device_id: str) -> str | None:
        """A device's X25519 key as a coordinator verified it: its own, one this coordinator
        pinned at admission, else one the roster signed."""
        ws = self.ctx.ws
        vault = ws.vault
        if device_id == ws.device_id and vault is not None:
            return p.b64e(vault.public_key)
        pinned = self.ctx.pinned().get(device_id)
        if pinned:
            return pinned
        old = self.roster().get(device_id)
        return old.pub if old else None

    def complete(self) -> None:
        """Coordinator: roster entries of the previous version name no X25519 key; sign them
        again with the keys pinned here, so that every coordinator can key those devices."""
        ctx = self.ctx
        if ctx.authority_vk() is None or ctx.ws.vault is None or not ctx.ws.vault.can_sign:
            return
        pinned = ctx.pinned()
        stale = [e for e in self.roster().values() if e.pub is None and e.cutoff is None
                 and (e.device_id in pinned or e.device_id == ctx.ws.device_id)]
        if stale:
            self.publish([self.entry(e.device_id, e.sign_vk, e.role, e.unsigned_through, retire=e.retire)
                          for e in stale])
