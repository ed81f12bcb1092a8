"""The app's facade over the service layer: one `Services` per UI session, made of its parts
(`session`: plumbing and lifecycle; `records`: the worker's screens; `team`: this device in its
team) and holding the coordinator's `desk` and the background `sync`. It only assembles them:
the work is in the parts. It turns domain objects into the plain rows of `app.state` and errors
into `Problem`s, never builds or changes a control, holds no SQL and no cipher code, and nothing
here exists before a session asks for it.
"""

from __future__ import annotations

from ..config import AppConfig
from .desk import Desk
from .records import RecordCalls
from .team import TeamCalls

__all__ = ["Services"]


class Services(RecordCalls, TeamCalls):
    """One UI session's access to its device's data. Every public coroutine runs off the loop."""

    def __init__(self, config: AppConfig, *, pepper: bytes = b"") -> None:
        super().__init__(config, pepper=pepper)
        self.desk = Desk(self)  # the coordinator's desk: devices, overview, review, data protection
        self.sync.on_coordinator_sync = self._coordinator_synced

    async def _coordinator_synced(self, admitted: bool) -> None:
        await self.desk.refresh_device_names(force=admitted)
