"""`scripts/test-services.sh`, the part of `make test` that starts PostgreSQL: the URL comes back at
once even when the script starts the database server, whose process lives on. (It once kept the
pipe of `make test`'s `$(...)` open, and CI waited 90 minutes for a URL that had been written.)
The system's commands are stand-ins on PATH here; the real ones run in every `make test`."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "test-services.sh"

STUBS = {
    "id": "#!/bin/sh\necho 0\n",  # as root
    "chromium": "#!/bin/sh\nexit 0\n",
    "pg_lsclusters": "#!/bin/sh\necho '15 main 5439 online postgres /var/lib/postgresql/15/main /dev/null'\n",
    # a server that starts and lives on, with whatever descriptors it was given
    "pg_ctlcluster": "#!/bin/sh\nsleep 30 >/dev/null 2>&1 &\nexit 0\n",
    "runuser": "#!/bin/sh\necho 1\n",  # every query finds what it looks for
}


def test_the_url_comes_back_while_the_started_server_lives_on(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in STUBS.items():
        path = bin_dir / name
        path.write_text(body)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env.pop("OUTREACH_TEST_PG_URL", None)
    started = time.monotonic()
    done = subprocess.run(["bash", "-c", f'url=$("{SCRIPT}"); echo "$url"'], env=env, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "postgresql+psycopg://outreach:outreach@127.0.0.1:5439/outreach_test"
    assert took < 20, f"the URL took {took:.0f} s: something the script started holds its pipe"


def test_a_given_url_is_passed_through(tmp_path: Path) -> None:
    env = {**os.environ, "OUTREACH_TEST_PG_URL": "postgresql+psycopg://u:p@127.0.0.1:1/db"}
    done = subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL)
    assert done.stdout.strip() == "postgresql+psycopg://u:p@127.0.0.1:1/db"
