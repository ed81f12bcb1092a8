"""The OpenAPI document the server serves, and the server fuzzed over it.

The document is the wire schema of `sync/protocol.py` as FastAPI states it: what it admits, the
server must read (never a 5xx), and every answer must follow it (status, content type, body).
The fuzz test sends schemathesis' generated requests, valid and invalid, to the real app in this
process with the tokens of a real team (a coordinator, a worker, a pending device and a stranger),
so that it reaches the handlers, not only the 401. Bounded and derandomized: the same requests on
every run, in well under a minute.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from test_server_api import Dev, FakeClock, Harness, op

from sync import protocol as p
from sync.server import Database, ServerSettings, create_app

# Requests per operation and mode (valid, invalid): 16 operations x 2 x this, about 1,000 in all.
EXAMPLES = 30
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
def served(tmp_path: Any) -> Iterator[tuple[TestClient, Harness]]:
    settings = ServerSettings(db_url=f"sqlite:///{tmp_path / 'server.db'}")
    database = Database.from_settings(settings)
    clock = FakeClock()
    try:
        with TestClient(create_app(settings, database=database, clock=clock)) as client:
            yield client, Harness(client, clock)
    finally:
        database.dispose()


def test_the_openapi_document_is_served_without_a_token_or_header(served: tuple[TestClient, Harness]) -> None:
    client, _h = served
    response = client.get("/v1/openapi.json")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    document = response.json()
    assert document["openapi"].startswith("3.") and document["info"]["version"] == p.PROTOCOL_VERSION
    documented = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert ("POST", "/v1/push") in documented and ("GET", "/v1/pull") in documented
    push = document["paths"]["/v1/push"]["post"]
    assert push["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/PushRequest"}
    assert {"401", "403", "409", "422"} <= set(push["responses"])
    assert "HTTPBearer" in document["components"]["securitySchemes"]


def test_openapi_can_be_turned_off(tmp_path: Any) -> None:
    settings = ServerSettings(db_url=f"sqlite:///{tmp_path / 'off.db'}", openapi=False)
    with TestClient(create_app(settings)) as client:
        response = client.get("/v1/openapi.json", headers={p.PROTOCOL_HEADER: "1.0"})
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def _schema_of(document: dict[str, Any], name: str) -> dict[str, Any]:
    schema: dict[str, Any] = document["components"]["schemas"][name]
    return schema


def test_every_integer_of_the_document_is_bounded(served: tuple[TestClient, Harness]) -> None:
    client, _h = served
    document = client.get("/v1/openapi.json").json()
    unbounded: list[str] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "integer" and not ("maximum" in node and "minimum" in node):
                unbounded.append(where)
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{where}/{index}")

    walk(document, "")
    assert unbounded == []
    seq = _schema_of(document, "OpIn")["properties"]["device_seq"]
    assert seq["maximum"] == p.MAX_INT == 2**63 - 1


def test_keys_for_devices_name_their_device_in_the_document(served: tuple[TestClient, Harness]) -> None:
    client, _h = served
    document = client.get("/v1/openapi.json").json()
    upload = _schema_of(document, "KeysUpload")["properties"]["keys"]
    assert upload["items"] == {"$ref": "#/components/schemas/DeviceKey"}
    assert "device_id" in _schema_of(document, "DeviceKey")["required"]


def test_keys_upload_takes_wrapped_keys_that_name_their_device() -> None:
    """The clients build `KeysUpload` from `WrappedKey`s (sync/engine/): still works, and one
    without its device fails where the server would refuse it. Recovery keys have no device."""
    device = "a" * 32
    upload = p.KeysUpload(epoch=1, keys=[p.WrappedKey(epoch=1, device_id=device, wrapped="AAAA")])
    assert upload.keys == [p.WrappedKey(epoch=1, device_id=device, wrapped="AAAA")]
    assert p.KeysUpload.model_validate_json(upload.model_dump_json()) == upload
    with pytest.raises(ValueError) as refused:
        p.KeysUpload(epoch=1, keys=[p.WrappedKey(epoch=1, device_id=device, wrapped="AAAA"),
                                    p.WrappedKey(epoch=1, wrapped="AAAA")])
    assert refused.value.errors()[0]["loc"] == ("keys", 1, "device_id")  # type: ignore[attr-defined]
    assert p.RecoveryUpload(recovery_lookup="AAAA", keys=[p.WrappedKey(epoch=1, wrapped="AAAA")])


_B64 = re.compile(p.B64_PATTERN)


@settings(max_examples=300, derandomize=True, database=None)
@given(st.text(alphabet="AZaz09-_+/=. \n", max_size=12) | st.binary(max_size=40).map(p.b64e))
def test_the_base64_pattern_admits_only_what_b64d_reads(text: str) -> None:
    if _B64.fullmatch(text):
        p.b64d(text)  # never raises: the schema admits nothing the server cannot decode


def test_the_base64_pattern_admits_every_b64e_output() -> None:
    for size in range(70):
        assert _B64.fullmatch(p.b64e(bytes(range(size))))
    for bad in ("A", "AAAAA", "AA=", "AA+B", "AA/B", "AA AA", "AA\n"):
        assert not _B64.fullmatch(bad), bad


def _clamp_long_poll(case: Any) -> None:
    """A pull that waits would hold the fuzzer for up to 30 s each; the wait itself is tested in
    test_server_api. Any `wait` the server would take becomes 0 (same validity, no sleep)."""
    if case.path != "/v1/pull" or not isinstance(case.query, dict) or "wait" not in case.query:
        return
    try:
        wait = float(case.query["wait"])
    except (TypeError, ValueError):
        return
    if 0 < wait <= p.MAX_WAIT_SECONDS:
        case.query["wait"] = 0


def test_the_server_follows_its_openapi_document(served: tuple[TestClient, Harness]) -> None:
    client, h = served
    coord = h.found()
    worker = h.worker(coord)
    h.push(worker, [op(1), op(2)])
    pending = h.invite_and_join(coord, name="Pending phone")
    tokens: dict[str, Dev | None] = {"coordinator": coord, "worker": worker, "pending": pending, "stranger": None}
    schema = schemathesis.openapi.from_asgi("/v1/openapi.json", client.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    routes = {(m, r.path) for r in client.app.routes if isinstance(r, APIRoute) for m in r.methods}
    assert {(o.method.upper(), o.path) for o in operations} == routes  # every route but the document
    answered: dict[int, int] = {}

    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=EXAMPLES,
                derandomize=True,
                database=None,
                deadline=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode), who=st.sampled_from(sorted(tokens)))
            def fuzz(case: Any, who: str) -> None:
                _clamp_long_poll(case)
                device = tokens[who]
                response = case.call(headers={"Authorization": f"Bearer {device.token if device else 'x'}"})
                answered[response.status_code] = answered.get(response.status_code, 0) + 1
                case.validate_response(response, checks=CHECKS)

            fuzz()

    # The fuzzer got past authentication and validation into the handlers, not only to 401/422.
    assert answered.get(200, 0) > 50 and answered.get(422, 0) > 50, answered
    assert not any(status >= 500 for status in answered), answered
