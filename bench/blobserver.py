"""The transfer limit's server: uvicorn (the same HTTP stack as `outreach-server`) with a bare ASGI
app that does no processing at all. ``GET /blob?n=BYTES`` answers that many bytes (from one random
buffer, sliced), ``POST /sink`` reads the body and answers ``{}``, ``GET /health`` answers ok.

    python -m bench.blobserver PORT
"""

from __future__ import annotations

import os
import sys
from typing import Any

_BLOB = os.urandom(8 * 1024 * 1024)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    body = b"ok"
    if path == "/blob":
        n = 0
        for part in scope.get("query_string", b"").decode().split("&"):
            key, _, value = part.partition("=")
            if key == "n":
                n = int(value)
        reps, rest = divmod(n, len(_BLOB))
        body = _BLOB * reps + _BLOB[:rest]
    elif path == "/sink":
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        body = b"{}"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/octet-stream"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
