"""The one small object the parts of the sync engine share: the workspace, the client to the
server, the knobs of a run, and the few facts every part reads (team, role, the pinned authority,
what was seen of each device, the devices pinned here, the signed cut-offs).

It owns the cached `SyncClient` (made from the settings the device joined with) and the small JSON
objects kept as secrets. It must never call a part of the engine: the parts call it, and it calls
only the workspace and the client.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import requests

from models.workspace import Workspace
from sync import protocol as p
from sync.client import SyncClient
from sync.errors import NotJoined

__all__ = ["EngineContext"]


class EngineContext:
    """What every part of one `SyncEngine` reads and writes in common."""

    ROSTER_EVERY = 60.0  # seconds between two looks at this device's own roster entry (`revocation`)
    CHECKPOINT_EVERY = 5000  # log entries since the last checkpoint that make a coordinator write one

    def __init__(
        self,
        ws: Workspace,
        *,
        session: requests.Session | None,
        allow_insecure: bool,
        client_factory: Callable[..., SyncClient],
        push_ops: int,
        push_bytes: int,
        pull_limit: int,
        checkpoint_part_bytes: int,
    ) -> None:
        self.ws = ws
        self.session = session
        self.allow_insecure = allow_insecure
        self.factory = client_factory
        self.push_ops = push_ops
        self.push_bytes = push_bytes
        self.pull_limit = pull_limit
        self.roster_every = self.ROSTER_EVERY
        self.checkpoint_every = self.CHECKPOINT_EVERY
        self.checkpoint_part_bytes = checkpoint_part_bytes
        self.cached: SyncClient | None = None

    # ------------------------------------------------------------------ the client
    def client(self, url: str | None = None, token: str | None = None) -> SyncClient:
        """A client to `url` (joining, recovering), else the cached one to the team's server."""
        if url is not None:
            return self.factory(url, token=token, session=self.session, allow_insecure=self.allow_insecure)
        if self.cached is None:
            server = self.ws.setting("server_url")
            secret = self.ws.secret("token")
            if not server or not secret:
                raise NotJoined()
            allow = self.allow_insecure or self.ws.setting("allow_insecure") == "1"
            self.cached = self.factory(server, token=secret.decode(), session=self.session, allow_insecure=allow)
        return self.cached

    def close(self) -> None:
        if self.cached is not None:
            self.cached.close()
            self.cached = None

    # ------------------------------------------------------------------ the team
    @property
    def joined(self) -> bool:
        return self.ws.setting("team_id") is not None

    @property
    def is_coordinator(self) -> bool:
        return self.ws.setting("role") == p.Role.COORDINATOR.value

    def team_id(self) -> str:
        team = self.ws.setting("team_id")
        if team is None:
            raise NotJoined()
        return team

    def json_secret(self, name: str) -> dict[str, Any]:
        """A small JSON object kept as a secret (wrapped by the master key); {} when there is none."""
        raw = self.ws.secret(name)
        return json.loads(raw) if raw else {}

    def set_json_secret(self, name: str, value: dict[str, Any]) -> None:
        self.ws.set_secret(name, json.dumps(value).encode())

    def seen(self, device_id: str) -> int:
        """The highest device sequence of `device_id` this device has stored (`Workspace.receive`)."""
        return int(self.ws.sync_value(f"seen:{device_id}", "0") or 0)

    def pinned(self) -> dict[str, str]:
        """Devices this coordinator admitted after checking their proof: id -> public key (b64)."""
        return self.json_secret("pinned")

    def pin(self, device_id: str, public_key_b64: str, role: str = p.Role.WORKER.value) -> None:
        pinned = self.pinned()
        pinned[device_id] = public_key_b64
        self.set_json_secret("pinned", pinned)
        roles = self.pinned_roles()
        roles[device_id] = role
        self.set_json_secret("pinned_roles", roles)

    def pinned_roles(self) -> dict[str, str]:
        """The role each pinned device was invited for (a device missing here: a worker)."""
        return self.json_secret("pinned_roles")

    def cutoffs(self) -> dict[str, int]:
        """Revoked devices and the last device sequence of each that counts, from signed grants."""
        return self.json_secret("cutoffs")

    # ------------------------------------------------------------------ the authority
    def authority_vk(self) -> bytes | None:
        """The team's verification key as pinned here (None: a team of the previous version that
        has not moved to signed authority yet)."""
        return self.ws.secret("authority_vk")

    def can_sign(self) -> bool:
        """Whether this device holds the team's signing key (a coordinator's device)."""
        return self.ws.vault is not None and self.ws.vault.can_sign

    def pin_authority(self, vk: bytes, purges_unsigned_through: int) -> None:
        self.ws.set_secret("authority_vk", vk)
        self.ws.set_secret("purges_unsigned_through", str(purges_unsigned_through).encode())

    def purges_unsigned_through(self) -> int:
        raw = self.ws.secret("purges_unsigned_through")
        return int(raw) if raw else 0
