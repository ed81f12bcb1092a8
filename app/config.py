"""Where this device keeps its data, decided once at start and passed on: `--data-dir`, else
`OUTREACH_DATA_DIR`, else `FLET_APP_STORAGE_DATA` (set by Flet in a built app), else the platform's
user data directory. Never a relative path: a relative flag is resolved against the working
directory at start, so the app does not change data dirs when something changes directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

__all__ = ["resolve_data_dir"]


def resolve_data_dir(flag: str | None = None, env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    for candidate in (flag, env.get("OUTREACH_DATA_DIR"), env.get("FLET_APP_STORAGE_DATA")):
        if candidate:
            return Path(candidate).expanduser().resolve()
    return Path(platformdirs.user_data_dir("outreach", "outreach")).resolve()
