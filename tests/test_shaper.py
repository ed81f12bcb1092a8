"""The shaping proxy of the 3G figures (bench/shaper.py, issue 17): bytes pass unchanged both ways,
and the link's physics hold. Every lower bound below is what the model itself forces (bandwidth,
latency, the set-up round trip, retransmission timeouts), so a broken shaper cannot pass it; the
upper bounds are loose, for a loaded two-core machine.

A tiny threaded TCP server stands behind the proxy: a first line ``ECHO`` makes it echo everything
until EOF; each line ``SEND n`` makes it answer n bytes in one sendall.
"""

from __future__ import annotations

import hashlib
import math
import os
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bench.shaper import MSS, Shaper, _Link

pytestmark = pytest.mark.timeout(120)

_BLOB = os.urandom(1 << 20)


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        while True:
            line = self.rfile.readline()
            if not line:
                return
            if line == b"ECHO\n":
                while chunk := self.rfile.read1(65536):
                    self.wfile.write(chunk)
                return
            n = int(line.split()[1])
            self.wfile.write((_BLOB * (n // len(_BLOB) + 1))[:n])


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


@pytest.fixture(scope="module")
def target() -> Iterator[tuple[str, int]]:
    server = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield ("127.0.0.1", server.server_address[1])
    server.shutdown()
    server.server_close()


def _connect(shaper: Shaper) -> socket.socket:
    sock = socket.create_connection(shaper.address, timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    parts = []
    while n:
        chunk = sock.recv(min(n, 1 << 16))
        assert chunk, "connection closed early"
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def _recv_all(sock: socket.socket) -> bytes:
    parts = []
    while chunk := sock.recv(1 << 16):
        parts.append(chunk)
    return b"".join(parts)


def _echo(shaper: Shaper, payload: bytes) -> bytes:
    """Send ECHO + payload (from a thread) and half-close; read the echo until EOF."""
    with _connect(shaper) as sock:
        def send() -> None:
            sock.sendall(b"ECHO\n")
            for i in range(0, len(payload), 50_000):
                sock.sendall(payload[i:i + 50_000])
            sock.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        got = _recv_all(sock)
        sender.join()
        return got


def _fetch(sock: socket.socket, n: int) -> float:
    """Ask for n bytes on an open connection; seconds until the last one arrived."""
    t0 = time.monotonic()
    sock.sendall(f"SEND {n}\n".encode())
    body = _recv_exact(sock, n)
    elapsed = time.monotonic() - t0
    assert body == _BLOB[:n]
    return elapsed


def _wait_idle(shaper: Shaper, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while shaper.counters.active and time.monotonic() < deadline:
        time.sleep(0.02)
    assert shaper.counters.active == 0


# -- the model's arithmetic, without sockets ------------------------------------------------------

def test_link_is_a_serial_link_or_a_token_bucket() -> None:
    link = _Link(rate=1000.0, burst=0)  # 1000 bytes/s, no burst: every byte takes 1 ms
    assert link.reserve(500, ready=10.0) == pytest.approx(10.5)
    assert link.reserve(500, ready=10.1) == pytest.approx(11.0)  # queued behind the first
    assert link.reserve(100, ready=20.0) == pytest.approx(20.1)  # idle in between: no credit kept
    bucket = _Link(rate=1000.0, burst=300)
    assert bucket.reserve(200, ready=0.0) == pytest.approx(0.0)  # within the bucket: at once
    assert bucket.reserve(200, ready=0.0) == pytest.approx(0.1)  # 100 left, 100 at the rate
    assert bucket.reserve(300, ready=5.0) == pytest.approx(5.0)  # refilled, to its depth only
    assert bucket.reserve(300, ready=5.0) == pytest.approx(5.3)
    free = _Link(rate=None, burst=0)
    assert free.reserve(10**9, ready=3.0) == 3.0


def test_url_for_points_at_the_proxy(target: tuple[str, int]) -> None:
    with Shaper(target=target) as shaper:
        assert shaper.port > 0
        assert shaper.url_for("http://127.0.0.1:8000/api/v1?x=1") == f"http://127.0.0.1:{shaper.port}/api/v1?x=1"
        assert shaper.url_for("https://u:p@localhost:8443") == f"https://u:p@127.0.0.1:{shaper.port}"
        assert "400 kbit/s" in repr(shaper) and "rto 500 ms" in repr(shaper)


# -- through the proxy ---------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [
    dict(rate_bps=8_000_000, rtt_ms=10, loss=0.05, rto_ms=30, seed=3),  # segments, losses, holds
    dict(rate_bps=None, rtt_ms=0, loss=0.0),  # unshaped: the large-read path
], ids=["shaped-lossy", "unshaped"])
def test_bytes_pass_unchanged_both_ways(target: tuple[str, int], shape: dict) -> None:
    payload = os.urandom(400_000 if shape["rate_bps"] else 4_000_000)
    with Shaper(target=target, **shape) as shaper:
        got = _echo(shaper, payload)
        assert len(got) == len(payload)
        assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
        _wait_idle(shaper)
        c = shaper.counters
        assert (c.connections, c.bytes_up, c.bytes_down) == (1, len(payload) + 5, len(payload))
        if shape["loss"]:
            assert c.lost_up > 0 and c.lost_down > 0
            assert c.segments_down >= math.ceil(len(payload) / MSS)


def test_100_kb_at_400_kbit_takes_its_time(target: tuple[str, int]) -> None:
    with Shaper(target=target, rate_bps=400_000, rtt_ms=300, loss=0.0) as shaper, _connect(shaper) as sock:
        elapsed = _fetch(sock, 100_000)
    # set-up round trip + request one way + 100,000 bytes at 50,000 B/s + one way back
    physics = 0.3 + 0.15 + 100_000 / 50_000 + 0.15
    assert physics * 0.995 <= elapsed < 6.0, elapsed
    assert shaper.counters.bytes_down == 100_000


def test_a_tiny_exchange_costs_the_round_trip(target: tuple[str, int]) -> None:
    with Shaper(target=target, rate_bps=400_000, rtt_ms=300, loss=0.0) as shaper, _connect(shaper) as sock:
        first = _fetch(sock, 10)  # a new connection: TCP's set-up round trip, then the exchange
        again = _fetch(sock, 10)  # the same connection: one round trip
    assert 0.6 <= first < 2.0, first
    assert 0.3 <= again < 1.5, again


def test_loss_slows_a_transfer_reproducibly(target: tuple[str, int]) -> None:
    n, rate, rto = 200_000, 500_000, 0.2  # 4 Mbit/s; the retransmission timeout costs 200 ms a loss

    def run(loss: float) -> tuple[float, int, int]:
        with Shaper(target=target, rate_bps=rate * 8, rtt_ms=20, loss=loss, rto_ms=rto * 1000,
                    seed=11) as shaper, _connect(shaper) as sock:
            elapsed = _fetch(sock, n)
        return elapsed, shaper.counters.lost_up, shaper.counters.lost_down

    clean, clean_up, clean_down = run(0.0)
    lossy, lost_up, lost_down = run(0.03)
    again, again_up, again_down = run(0.03)
    assert (clean_up, clean_down) == (0, 0)
    assert lost_down >= 2, "seed 11 loses segments of this transfer"
    assert (again_up, again_down) == (lost_up, lost_down), "the same seed loses the same segments"
    physics = 0.02 + 0.01 + n / rate + 0.01  # set-up, request, transfer, answer's way back
    assert physics * 0.995 <= clean < physics + 2.5, clean
    # every loss holds the connection a timeout and sends its segment again
    lossy_physics = physics + (lost_up + lost_down) * rto + lost_down * MSS / rate
    assert lossy >= lossy_physics * 0.995 and again >= lossy_physics * 0.995, (lossy, again, lossy_physics)
    assert lossy > clean and again > clean
    assert lossy < lossy_physics + 2.5


def test_many_concurrent_connections_share_the_link_and_close(target: tuple[str, int]) -> None:
    conns, size, rate = 40, 10_000, 250_000  # 2 Mbit/s shared by all: at least 1.6 s
    payloads = [os.urandom(size) for _ in range(conns)]
    with Shaper(target=target, rate_bps=rate * 8, rtt_ms=50, loss=0.02, seed=5) as shaper:
        t0 = time.monotonic()
        with ThreadPoolExecutor(conns) as pool:
            echoes = list(pool.map(lambda p: _echo(shaper, p), payloads))
        elapsed = time.monotonic() - t0
        assert echoes == payloads
        # one link each way for all of them: at least all the bytes at its rate
        assert conns * size / rate <= elapsed < 15.0, elapsed
        _wait_idle(shaper)
        c = shaper.counters
        assert (c.connections, c.failed_connects) == (conns, 0)
        assert (c.bytes_up, c.bytes_down) == (conns * (size + 5), conns * size)

        # connections still open when the shaper closes are closed with it, and so is the port
        open_socks = [_connect(shaper) for _ in range(5)]
        for sock in open_socks:
            sock.sendall(b"ECHO\nhello")
        assert all(_recv_exact(sock, 5) == b"hello" for sock in open_socks)
        port = shaper.port
    assert shaper.counters.active == 0
    for sock in open_socks:
        sock.settimeout(5)
        try:
            assert sock.recv(10) == b""
        except ConnectionResetError:
            pass
        sock.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_a_link_per_connection(target: tuple[str, int]) -> None:
    # 4 connections x 50 kB at 100 kB/s: 0.5 s each on links of their own, 2 s on one shared link
    with Shaper(target=target, rate_bps=800_000, rtt_ms=20, loss=0.0, shared_link=False) as shaper:
        def one(_: int) -> float:
            with _connect(shaper) as sock:
                return _fetch(sock, 50_000)

        t0 = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            each = list(pool.map(one, range(4)))
        elapsed = time.monotonic() - t0
    assert min(each) >= 0.5 + 0.04
    assert elapsed < 1.8, (elapsed, each)


def test_unreachable_target_closes_the_client() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]  # nobody listens there once closed
    with Shaper(target=("127.0.0.1", dead_port), rtt_ms=0) as shaper, _connect(shaper) as sock:
        sock.settimeout(5)
        try:
            assert sock.recv(10) == b""
        except ConnectionResetError:
            pass
        deadline = time.monotonic() + 5
        while shaper.counters.failed_connects == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert shaper.counters.failed_connects == 1


def test_runs_standalone(target: tuple[str, int]) -> None:
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.shaper", "--target", f"{target[0]}:{target[1]}", "--listen-port", "0",
         "--rtt-ms", "40", "--loss", "0"],
        cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            t0 = time.monotonic()
            sock.sendall(b"SEND 1000\n")
            assert _recv_exact(sock, 1000) == _BLOB[:1000]
            assert time.monotonic() - t0 >= 0.04 * 2  # set-up round trip + the exchange's
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "'connections': 1" in err
