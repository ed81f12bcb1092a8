"""Where this device keeps its data, decided once at start and passed on: `--data-dir`, else
`OUTREACH_DATA_DIR`, else `FLET_APP_STORAGE_DATA` (set by Flet in a built app), else the platform's
user data directory. Never a relative path: a relative flag is resolved against the working
directory at start, so the app does not change data dirs when something changes directory.
And what one app process was started with (`AppConfig`), built once by its launcher and passed in.
Here, beside the app's other shared parts (`i18n`, `files`, `keystore`), because the launcher
(`app.run`), the UI (`app.ui`), its facade (`app.services`) and the CLI all need one or both, and
none of them should import another for it. Nothing here is read at import time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

__all__ = ["resolve_data_dir", "AppConfig"]


def resolve_data_dir(flag: str | None = None, env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    for candidate in (flag, env.get("OUTREACH_DATA_DIR"), env.get("FLET_APP_STORAGE_DATA")):
        if candidate:
            return Path(candidate).expanduser().resolve()
    return Path(platformdirs.user_data_dir("outreach", "outreach")).resolve()


@dataclass(frozen=True)
class AppConfig:
    """What one app process was started with. Built by `app.run` (or a test launcher), passed in."""

    data_dir: Path  # this device's workspace directory (wiped as a whole on too many wrong PINs)
    server_url: str | None = None  # prefilled on the first-run screen
    join_code: str | None = None  # prefilled on the first-run screen (`make run` creates a team)
    fast_kdf: bool = False  # tests only: a weak KDF so that a test unlocks in milliseconds
    sync_debounce: float = 3.0
    sync_interval: float = 60.0
    sync_retry: float = 5.0  # the first retry after a failed exchange; doubling up to 60 s
    sync_watch: float = 10.0  # how often an idle app checks that the server is there (0: never)
    lock_on_background: bool = True
    web: bool = False
