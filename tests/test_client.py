"""The sync client's transport rules, through the injectable network seam (a mounted requests
adapter): loopback-only plain http, certifi, retries with backoff and jitter, error mapping, gzip;
and the engine setting aside one op the server refuses while the rest of the queue goes on."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import certifi
import pytest
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from models.workspace import Workspace
from sync import protocol as p
from sync.client import SyncClient, check_url
from sync.engine import SyncEngine
from sync.errors import DeviceRevoked, InsecureURL, Offline, Rejected, ServerFault, StaleEpoch

Handler = Callable[[requests.PreparedRequest], tuple[int, Any] | Exception]


class ScriptedAdapter(BaseAdapter):
    """Answers each request with the next scripted reply: (status, json body) or an exception."""

    def __init__(self, handler: Handler) -> None:
        super().__init__()
        self.handler = handler
        self.requests: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.requests.append(request)
        reply = self.handler(request)
        if isinstance(reply, Exception):
            raise reply
        status, body = reply
        resp = requests.Response()
        resp.status_code = status
        resp._content = json.dumps(body).encode()
        resp.headers = CaseInsensitiveDict({"Content-Type": "application/json"})
        resp.url = request.url or ""
        resp.request = request
        return resp

    def close(self) -> None:
        pass


def make_client(handler: Handler, **kw: Any) -> tuple[SyncClient, ScriptedAdapter, list[float]]:
    session = requests.Session()
    adapter = ScriptedAdapter(handler)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    sleeps: list[float] = []
    client = SyncClient("https://outreach.example", token="t0ken", session=session, sleep=sleeps.append, **kw)
    return client, adapter, sleeps


HEALTH = {"status": "ok", "protocol": "1.0", "supported_majors": [1], "database": "sqlite"}


@pytest.mark.parametrize("url", ["http://10.0.0.5:8700", "http://outreach.example", "ftp://x", "not a url"])
def test_plain_http_only_to_loopback(url: str) -> None:
    with pytest.raises(InsecureURL):
        check_url(url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8700", "http://localhost:8700/", "http://[::1]:8700",
                                 "https://outreach.example"])
def test_loopback_and_https_allowed(url: str) -> None:
    assert check_url(url) == url.rstrip("/")


def test_insecure_allowed_only_when_asked() -> None:
    assert check_url("http://10.0.0.5:8700", allow_insecure=True) == "http://10.0.0.5:8700"


def test_tls_verification_uses_certifi() -> None:
    client, _, _ = make_client(lambda r: (200, HEALTH))
    assert client.session.verify == certifi.where()


def test_every_request_carries_version_and_token() -> None:
    client, adapter, _ = make_client(lambda r: (200, HEALTH))
    client.health()
    sent = adapter.requests[0]
    assert sent.headers[p.PROTOCOL_HEADER] == p.PROTOCOL_VERSION
    assert sent.headers["Authorization"] == "Bearer t0ken"
    assert "gzip" in sent.headers["Accept-Encoding"]


def test_connection_errors_are_retried_with_growing_jittered_pauses() -> None:
    calls = iter([requests.ConnectionError("down"), requests.ConnectionError("down"), (200, HEALTH)])
    client, adapter, sleeps = make_client(lambda r: next(calls), retries=3, backoff=0.5)
    assert client.health().status == "ok"
    assert len(adapter.requests) == 3
    assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0  # equal jitter around 0.5 * 2**n


def test_offline_after_the_last_retry() -> None:
    client, adapter, sleeps = make_client(lambda r: requests.ConnectTimeout("slow"), retries=2)
    with pytest.raises(Offline) as info:
        client.health()
    assert len(adapter.requests) == 3 and len(sleeps) == 2
    assert "kept on this device" in str(info.value)


def test_server_faults_are_retried_then_reported() -> None:
    client, adapter, _ = make_client(lambda r: (503, {"error": {"code": "internal", "message": "x"}}), retries=1)
    with pytest.raises(ServerFault):
        client.health()
    assert len(adapter.requests) == 2


@pytest.mark.parametrize(("code", "cls"), [("device_revoked", DeviceRevoked), ("stale_epoch", StaleEpoch),
                                           ("forbidden", Rejected)])
def test_rejections_map_to_their_class_without_retry(code: str, cls: type[Exception]) -> None:
    body = {"error": {"code": code, "message": "m", "detail": {"current_epoch": 3}}}
    client, adapter, _ = make_client(lambda r: (403 if code != "stale_epoch" else 409, body))
    with pytest.raises(cls) as info:
        client.keys()
    assert len(adapter.requests) == 1
    assert isinstance(info.value, Rejected) and info.value.code == code
    if cls is StaleEpoch:
        assert info.value.current_epoch == 3  # type: ignore[attr-defined]


def test_big_bodies_are_sent_gzipped() -> None:
    reply = {"acked_through": 1, "accepted": 1, "duplicates": 0, "purged": 0, "last_seq": 1}
    client, adapter, _ = make_client(lambda r: (200, reply))
    op = p.OpIn(op_id="a" * 32, device_seq=1, record_id="b" * 32, key_epoch=1, payload=p.b64e(b"x" * 4000))
    client.push([op])
    sent = adapter.requests[0]
    assert sent.headers["Content-Encoding"] == "gzip"
    assert json.loads(gzip.decompress(sent.body))["ops"][0]["op_id"] == "a" * 32  # type: ignore[arg-type]


def test_a_refused_op_is_set_aside_and_the_queue_goes_on(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "dev", fast_kdf=True)
    ws.init("passphrase-1")
    ids = [ws.add_person({"alias": f"P{i}"}).id for i in range(3)]
    ws.set_settings(server_url="https://outreach.example", team_id="c" * 32, role="worker", device_status="active")
    ws.set_secret("authority_vk", bytes(32))  # a device of a team with signed authority
    ws.set_settings(signing_announced=1)
    ws.set_secret("token", b"t0ken")
    pushes: list[list[int]] = []

    def handler(req: requests.PreparedRequest) -> tuple[int, Any]:
        if req.path_url.startswith("/v1/push"):
            body = json.loads(gzip.decompress(req.body) if req.headers.get("Content-Encoding") else req.body)  # type: ignore[arg-type]
            seqs = [o["device_seq"] for o in body["ops"]]
            pushes.append(seqs)
            if 2 in seqs:
                return 422, {"error": {"code": "malformed", "message": "ops.1.payload: too large",
                                       "detail": {"field": f"ops.{seqs.index(2)}.payload"}}}
            return 200, {"acked_through": max(seqs), "accepted": len(seqs), "duplicates": 0, "purged": 0,
                         "last_seq": 9}
        if req.path_url.startswith("/v1/roster"):  # a worker looks whether it was asked to retire
            return 200, {"entries": []}
        if req.path_url.startswith("/v1/checkpoints"):  # a first sync looks for a checkpoint
            return 200, {"checkpoints": []}
        return 200, {"ops": [], "purges": [], "next": 0, "more": False, "current_epoch": 1}

    session = requests.Session()
    session.mount("https://", ScriptedAdapter(handler))
    engine = SyncEngine(ws, session=session)
    report = engine.sync()
    assert pushes == [[1, 2, 3], [1, 3]]
    assert report.pushed == 2
    assert ws.outbox_count() == 0
    aside = ws.set_aside_ops()
    assert [(a[1], "refused by the server" in a[2]) for a in aside] == [(ids[1], True)]
    assert ws.get_person(ids[1]).alias == "P1"  # still applied locally
    ws.close()


def test_encode_push_is_the_push_request_json() -> None:
    ops = [(7, "ab" * 16, "cd" * 16, 2, bytes(range(200))), (8, "ef" * 16, "01" * 16, 2, b"\xff")]
    model = p.PushRequest(ops=[p.OpIn(op_id=o, device_seq=s, record_id=r, key_epoch=e, payload=p.b64e(x))
                               for s, o, r, e, x in ops])
    assert p.encode_push(ops) == model.model_dump_json().encode()
    with pytest.raises(ValueError):
        p.encode_push([(1, 'a"' * 16, "cd" * 16, 1, b"x")])  # an id that would need escaping


def _op_json(**change: object) -> dict[str, object]:
    op: dict[str, object] = {"op_id": "ab" * 16, "device_seq": 1, "record_id": "cd" * 16, "key_epoch": 1,
                             "payload": p.b64e(b"sealed")}
    op.update(change)
    return {k: v for k, v in op.items() if v is not None}


@pytest.mark.parametrize("body", [
    {"ops": [_op_json()]},
    {"ops": [_op_json(), _op_json(device_seq=2, op_id="ef" * 16)]},
    {"ops": []},
    {"ops": [_op_json(op_id="AB" * 16)]},
    {"ops": [_op_json(device_seq=0)]},
    {"ops": [_op_json(key_epoch="1")]},
    {"ops": [_op_json(payload="not base64!")]},
    {"ops": [_op_json(payload="")]},
    {"ops": [_op_json(record_id=None)]},
    {"ops": [{**_op_json(), "extra": 1}]},
    {"ops": [_op_json()] * (p.MAX_PUSH_OPS + 1)},
    {"ops": "x"},
    {},
])
def test_the_servers_push_check_is_the_push_request_schema(body: dict[str, object]) -> None:
    from pydantic import ValidationError

    raw = json.dumps(body).encode()
    results = []
    for check in (p.PushRequest.model_validate_json, p.PUSH_REQUEST.validate_json):
        try:
            check(raw)
            results.append(None)
        except ValidationError as exc:
            results.append([(e["loc"], e["type"]) for e in exc.errors()])
    assert results[0] == results[1]


@pytest.mark.parametrize("more", [True, False])
def test_encode_pull_is_the_pull_response_json(more: bool) -> None:
    ops = [(3, "ab" * 16, "12" * 16, 9, "cd" * 16, 2, bytes(range(256))), (5, "ef" * 16, "34" * 16, 1, "01" * 16, 1, b"")]
    purges = [(4, "99" * 16)]
    model = p.PullResponse(
        ops=[p.OpOut(seq=s, op_id=o, device_id=d, device_seq=ds, record_id=r, key_epoch=e, payload=p.b64e(x))
             for s, o, d, ds, r, e, x in ops],
        purges=[p.PurgeOut(seq=s, record_id=r) for s, r in purges], next=5, more=more, current_epoch=2)
    assert p.encode_pull(ops, purges, 5, more, 2) == model.model_dump_json().encode()
    nonce = p.new_nonce()
    echoed = model.model_copy(update={"held_through": 7, "nonce": nonce})
    assert p.encode_pull(ops, purges, 5, more, 2, held_through=7, nonce=nonce) == echoed.model_dump_json().encode()
    assert p.PullResponse.model_validate_json(echoed.model_dump_json()) == echoed
    with pytest.raises(ValueError):
        p.encode_pull(ops, purges, 5, more, 2, nonce='x","held_through":0,"y":"')
    assert p.PullResponse.model_validate_json(p.encode_pull([], [], 0, False, 1)) == p.PullResponse(
        ops=[], next=0, more=False, current_epoch=1)


def test_the_server_gzips_a_pull_only_for_a_client_that_takes_it() -> None:
    from sync.server.routes.log import _accepts_gzip

    assert _accepts_gzip("gzip, deflate") and _accepts_gzip("br;q=1.0, GZIP;q=0.5") and _accepts_gzip("*")
    assert not _accepts_gzip("") and not _accepts_gzip("identity") and not _accepts_gzip("gzip;q=0")
    assert not _accepts_gzip("gzip;q=zero")


def _joined(tmp_path: Path, people: int) -> tuple[Workspace, list[str]]:
    ws = Workspace(tmp_path / "dev", fast_kdf=True)
    ws.init("passphrase-1")
    ids = [ws.add_person({"alias": f"P{i}"}).id for i in range(people)]
    ws.set_settings(server_url="https://outreach.example", team_id="c" * 32, role="worker", device_status="active")
    ws.set_secret("authority_vk", bytes(32))  # a device of a team with signed authority
    ws.set_settings(signing_announced=1)
    ws.set_secret("token", b"t0ken")
    return ws, ids


def test_push_sends_one_batch_at_a_time_in_order_and_acks_each(tmp_path: Path) -> None:
    ws, _ = _joined(tmp_path, 5)
    pushes: list[list[int]] = []

    def handler(req: requests.PreparedRequest) -> tuple[int, Any] | Exception:
        body = json.loads(gzip.decompress(req.body) if req.headers.get("Content-Encoding") else req.body)  # type: ignore[arg-type]
        seqs = [o["device_seq"] for o in body["ops"]]
        pushes.append(seqs)
        if 5 in seqs:
            return requests.ConnectionError("cut")
        return 200, {"acked_through": max(seqs), "accepted": len(seqs), "duplicates": 0, "purged": 0,
                     "last_seq": max(seqs)}

    session = requests.Session()
    session.mount("https://", ScriptedAdapter(handler))
    engine = SyncEngine(ws, session=session, push_ops=2)
    engine._client = SyncClient("https://outreach.example", token="t0ken", session=session, retries=0)
    with pytest.raises(Offline):
        engine.push()
    assert pushes == [[1, 2], [3, 4], [5]]
    assert [row[0] for row in ws.store.outbox_all()] == [5]  # answered batches acknowledged, the cut one kept
    ws.close()


def test_an_ack_is_not_durable_but_leaves_the_store_durable(tmp_path: Path) -> None:
    ws, _ = _joined(tmp_path, 2)
    ws.ack(1)
    assert [row[0] for row in ws.store.outbox_all()] == [2]
    assert ws.store.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL again
    ws.close()


def test_a_device_list_with_a_key_that_is_no_key_breaks_the_protocol() -> None:
    """A hostile server's list cannot crash the coordinator's screens: it fails as a ServerFault."""
    from sync.client import _parse

    device = {"device_id": "a" * 32, "name": "x", "role": "worker", "status": "active", "proof": "",
              "invite_lookup": None, "joined_at": 0.0, "last_seen": None, "key_epoch": 1}
    good = json.dumps({"devices": [{**device, "public_key": p.b64e(bytes(32))}], "current_epoch": 1,
                       "invites_pending": 0}).encode()
    assert _parse(p.DeviceList, good, "/v1/devices").devices[0].device_id == "a" * 32
    for bad in ("not base64!", p.b64e(bytes(31))):
        body = json.dumps({"devices": [{**device, "public_key": bad}], "current_epoch": 1,
                           "invites_pending": 0}).encode()
        with pytest.raises(ServerFault):
            _parse(p.DeviceList, body, "/v1/devices")
