"""The facade's calls about this device in its team: checking a server address and a code as
typed, joining, inviting, the server's address and the worker's name, what the settings screen
shows of this device (`DeviceInfo`) and its security notices. The coordinator's own calls about
the team's devices are the desk's (`desk`). It builds no control.
"""

from __future__ import annotations

from datetime import datetime
from importlib import metadata

from sync import protocol as proto
from sync.client import check_url
from sync.errors import InsecureURL

from ..state import DeviceInfo, JoinOutcome, NoticeRow
from .session import Session

__all__ = ["TeamCalls"]


def _app_version() -> str:
    try:
        return metadata.version("outreach")
    except metadata.PackageNotFoundError:
        return "dev"



class TeamCalls(Session):
    """This device's place in its team (a part of `Services`)."""

    @staticmethod
    def check_join(url: str, code: str) -> dict[str, str]:
        """What is wrong with a server address and a code as typed (no network)."""
        errors: dict[str, str] = {}
        try:
            check_url(url)
        except InsecureURL:
            errors["server"] = "errors.insecure_url" if url.strip().startswith("http://") else "errors.url_format"
        try:
            proto.EnrollmentCode.parse(code)
        except ValueError:
            errors["code"] = "errors.code_format"
        return errors
    async def join(self, url: str, code: str) -> JoinOutcome:
        res = await self.network(self.engine.join, url.strip(), code.strip())
        self.sync.start()
        await self.sync.refresh()
        return JoinOutcome(res.team_name, res.role, res.status, res.fingerprint, res.recovery_code)

    async def invite(self) -> str:
        return await self.network(self.engine.invite, proto.Role.WORKER)

    async def set_server_url(self, url: str) -> None:
        clean = check_url(url)

        def apply() -> None:
            self.ws.set_settings(server_url=clean)
            self.engine.close()  # the next run connects to the new address

        await self.call(apply)
        await self.sync.refresh()

    async def set_worker_name(self, name: str) -> None:
        await self.call(self.ws.set_worker_name, name)

    async def device_info(self) -> DeviceInfo:
        return await self.call(self._device_info)

    def _device_info(self) -> DeviceInfo:
        ws = self.ws
        st = self.engine.status()
        return DeviceInfo(
            device_id=ws.device_id, fingerprint=ws.fingerprint() if ws.unlocked else "", worker_name=ws.worker_name(),
            joined=st.joined, team_name=ws.setting("team_name"), role=st.role, device_status=st.device_status,
            server_url=st.server_url, pending_ops=st.pending_ops,
            last_sync=datetime.fromtimestamp(st.last_success) if st.last_success else None,
            data_dir=str(ws.data_dir), app_version=_app_version(),
        )

    async def notices(self) -> list[NoticeRow]:
        """What this device refused or set aside for a security reason, newest first: kinds,
        ids and times only (the notices hold no personal data, and the screens show no detail)."""
        return await self.call(self._notices)

    def _notices(self) -> list[NoticeRow]:
        rows = [NoticeRow(at=n.at, kind=n.kind, record_id=n.record_id, device_id=n.device_id)
                for n in self.ws.notices()]
        return rows[::-1]  # stored in the order they were noted

    async def is_coordinator(self) -> bool:
        return await self.call(lambda: self.engine.is_coordinator)
