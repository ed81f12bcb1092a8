"""sync/PROTOCOL.md and sync/protocol.py say the same thing: every error code and endpoint in
one is in the other, and the version in the spec's title is the code's."""

from __future__ import annotations

import re
from pathlib import Path

from sync import protocol as p

DOC = (Path(__file__).resolve().parent.parent / "sync" / "PROTOCOL.md").read_text(encoding="utf-8")


def test_version_in_title() -> None:
    assert DOC.splitlines()[0].endswith(p.PROTOCOL_VERSION)


def test_every_error_code_is_documented_and_only_those() -> None:
    table = set(re.findall(r"^\| `([a-z_]+)` \| \d{3} \|", DOC, flags=re.M))
    assert table == {c.value for c in p.ErrorCode}


def test_every_documented_endpoint_exists_on_the_server() -> None:
    from sync.server.app import create_app
    from sync.server.config import ServerSettings

    documented = set(re.findall(r"^\| `(GET|POST|PUT) (/v1/[^`]+)`", DOC, flags=re.M))
    app = create_app(ServerSettings(db_url="sqlite://"))
    routes = {
        (m, r.path)
        for r in app.routes
        for m in getattr(r, "methods", set()) - {"HEAD"}  # Starlette adds HEAD to the document's GET
        if r.path.startswith("/v1/")
    }
    assert documented == routes
    assert ("GET", "/v1/openapi.json") in routes  # served by default (`ServerSettings.openapi`)


def test_documented_limits_match_the_code() -> None:
    assert "at most 500 ops and 256 KB" in DOC and p.MAX_PUSH_OPS == 500 and p.MAX_PUSH_BYTES == 256 * 1024
    assert "over 2 MiB" in DOC and p.MAX_BODY_BYTES == 2 * 1024 * 1024
    assert "(1..5000" in DOC and p.MAX_PULL_LIMIT == 5000
    assert "2^63 - 1" in DOC and p.MAX_INT == 2**63 - 1
