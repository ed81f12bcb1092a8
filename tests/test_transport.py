"""Every transport error is one plain line (issue 16, item 1): an answer cut off mid-body, a
connection reset, a proxy's HTML 502: the CLI says so in one line with an exit code of its own
(7: nothing is lost, try again), and the engine raises `Offline` or `ServerFault`, which the app's
chip shows as "not connected" or "the server has problems". Against a real socket that misbehaves."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from clihelpers import cli_runner, ok

from sync.client import SyncClient
from sync.errors import Offline, ServerEmpty, ServerFault, ServerUnavailable
from sync.protocol import EnrollmentCode


def _unavailable(detail: str) -> bytes:
    body = ('{"error":{"code":"unavailable","message":"The database cannot be reached for now.","detail":'
            + detail + "}}").encode()
    return (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


ANSWERS = {
    # headers promise 4,000 bytes, 12 come, then the connection closes
    "cut": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n{\"status\": \"",
    "reset": b"",  # closed at once without a word
    "proxy": (b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nContent-Length: 39\r\n\r\n"
              b"<html><h1>502 Bad Gateway</h1></html>\r\n"),
    # the server is there, its database is not (for now), or it is a new, empty one
    "unavailable": _unavailable('{"retry_after":1}'),
    "empty": _unavailable('{"reason":"no_teams"}'),
}


@pytest.fixture(params=sorted(ANSWERS))
def misbehaving(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    answer = ANSWERS[request.param]
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(65536)
                    if answer:
                        conn.sendall(answer)
                    else:
                        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield request.param, f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        done.set()
        thread.join(timeout=5)
        server.close()


def test_the_client_turns_every_transport_error_into_offline_or_server_fault(misbehaving: tuple[str, str]) -> None:
    kind, url = misbehaving
    client = SyncClient(url, retries=0)
    expected = {"proxy": ServerFault, "unavailable": ServerUnavailable, "empty": ServerEmpty}.get(kind, Offline)
    with pytest.raises(expected) as raised:
        client.health()
    assert type(raised.value) is expected


def test_a_server_without_its_database_is_asked_again_when_it_says_so() -> None:
    answers = iter([_unavailable('{"retry_after":1}')] * 2)
    waits: list[float] = []
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        for answer in answers:
            conn, _ = server.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client = SyncClient(f"http://127.0.0.1:{server.getsockname()[1]}", retries=1)
    client._sleep = waits.append  # type: ignore[method-assign]
    with pytest.raises(ServerUnavailable):
        client.health()
    thread.join(timeout=5)
    server.close()
    assert waits == [1.0]  # the server's Retry-After, not the client's own backoff


def test_the_cli_says_it_in_one_line_with_an_exit_code_of_its_own(
        misbehaving: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    _kind, url = misbehaving
    run = cli_runner(tmp_path, capsys, monkeypatch, lang="da")
    ok(run, "init", "--worker", "Anna")
    pid = ok(run, "person", "add", "--alias", "Søren").strip()
    rc, out, err = run("join", url, str(EnrollmentCode.generate()))
    assert rc == 7, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "intet" in err.lower() or "gemt" in err.lower()  # it says nothing is lost
    assert pid in ok(run, "--json", "person", "list")  # and nothing is
