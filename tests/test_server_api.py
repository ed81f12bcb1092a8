"""The sync server's protocol, endpoint by endpoint, through FastAPI's TestClient.

Every test runs on a fresh SQLite file and, when OUTREACH_TEST_PG_URL is set, again on a fresh
PostgreSQL schema. The clock is a fake one so codes and throttles expire on demand.
"""

from __future__ import annotations

import gzip
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from serverproc import pg_schema
from sqlalchemy import event, text
from sqlmodel import select

from models.storage.vault import make_proof
from sync.protocol import PROTOCOL_HEADER, EnrollmentCode, b64e, new_nonce
from sync.server import ServerSettings, create_app, crud
from sync.server.db import Database, migrate
from sync.server.keys import ServerKey
from sync.server.tables import Device, Invite

PG_URL = os.environ.get("OUTREACH_TEST_PG_URL")
SERVER_KEY = os.urandom(32).hex()  # PostgreSQL has no file beside it to keep a key in: it is given


def settings_for(db_url: str, **overrides: Any) -> ServerSettings:
    """The settings of a test server: on PostgreSQL with a given key (required there), on SQLite
    with the key file the server makes beside the database."""
    if db_url.startswith("postgresql"):
        overrides.setdefault("server_key", SERVER_KEY)
    return ServerSettings(db_url=db_url, **overrides)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'server.db'}"
        return
    if not PG_URL:
        pytest.skip("OUTREACH_TEST_PG_URL is not set")
    with pg_schema(PG_URL) as url:
        yield url


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_750_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Dev:
    id: str
    token: str
    team_id: str


def _hex() -> str:
    return uuid.uuid4().hex


def _key() -> str:
    return b64e(os.urandom(32))


def op(
    device_seq: int, *, record_id: str | None = None, epoch: int = 1, op_id: str | None = None, size: int = 40
) -> dict[str, Any]:
    return {
        "op_id": op_id or _hex(),
        "device_seq": device_seq,
        "record_id": record_id or _hex(),
        "key_epoch": epoch,
        "payload": b64e(os.urandom(size)),
    }


def join_body(lookup: str, name: str = "Phone", *, secret: str | None = None, signing: bool = False) -> dict[str, Any]:
    """A `JoinRequest`; its proof is `HMAC(secret, public key [‖ signing key] ‖ device id)` as the
    client's vault makes it (`models.storage.vault.make_proof`), or random bytes without a secret."""
    public_key, signing_key, device_id = os.urandom(32), os.urandom(32), _hex()
    signed = public_key + signing_key if signing else public_key
    proof = make_proof(secret.encode("ascii"), signed, device_id) if secret is not None else os.urandom(32)
    body = {"lookup": lookup, "device_id": device_id, "device_name": name,
            "public_key": b64e(public_key), "proof": b64e(proof)}
    if signing:
        body["signing_key"] = b64e(signing_key)
    return body


class Harness:
    """A TestClient on a fresh app plus the few protocol steps most tests need."""

    def __init__(self, client: TestClient, clock: FakeClock) -> None:
        self.client = client
        self.clock = clock
        self.db = client.app.state.ctx.db  # type: ignore[attr-defined]

    def call(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> Any:
        headers = {PROTOCOL_HEADER: "1.0", **kwargs.pop("headers", {})}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.client.request(method, path, headers=headers, **kwargs)

    def call_from(self, address: str, method: str, path: str, **kwargs: Any) -> Any:
        """A request from another client address (the app's own, as uvicorn gives it)."""
        client = TestClient(self.client.app, client=(address, 40000))
        return client.request(method, path, headers={PROTOCOL_HEADER: "1.0"}, **kwargs)

    @property
    def server_key(self) -> ServerKey:
        return self.client.app.state.ctx.server_key  # type: ignore[attr-defined,no-any-return]

    def new_team(self, name: str = "Unit") -> tuple[str, EnrollmentCode]:
        code = EnrollmentCode.generate()
        with self.db.transaction(write=True) as session:
            team = crud.create_team(
                session, name=name, lookup=code.lookup, secret=code.secret, key=self.server_key,
                ttl_seconds=24 * 3600, now=self.clock(),
            )
        return team.id, code

    def join(self, lookup: str, name: str = "Phone", expect: int = 200, *, secret: str | None = None) -> Any:
        """Join with `lookup`; with the code's `secret` the proof is the real one (a founding join
        needs it), else random bytes (the server cannot check an invite's proof)."""
        body = join_body(lookup, name, secret=secret)
        response = self.call("POST", "/v1/join", json=body)
        assert response.status_code == expect, response.text
        return response.json()

    def found(self, name: str = "Unit") -> Dev:
        """A team with its founding coordinator, who has uploaded the epoch-1 key for itself."""
        _team_id, code = self.new_team(name)
        answer = self.join(code.lookup, "Coordinator laptop", secret=code.secret)
        assert answer["founding"] is True and answer["status"] == "active" and answer["role"] == "coordinator"
        coord = Dev(answer["device_id"], answer["token"], answer["team_id"])
        self.upload_keys(coord, 1, [coord.id])
        return coord

    def upload_keys(
        self,
        coord: Dev,
        epoch: int,
        device_ids: list[str],
        reject: list[str] | None = None,
        expect: int = 200,
    ) -> Any:
        body = {
            "epoch": epoch,
            "keys": [{"epoch": epoch, "device_id": d, "wrapped": _key()} for d in device_ids],
        }
        if reject:
            body["reject"] = reject
        response = self.call("POST", "/v1/keys", coord.token, json=body)
        assert response.status_code == expect, response.text
        return response.json()

    def invite_and_join(self, coord: Dev, role: str = "worker", name: str = "Worker phone") -> Dev:
        lookup = EnrollmentCode.generate().lookup
        response = self.call("POST", "/v1/invites", coord.token, json={"lookup": lookup, "role": role})
        assert response.status_code == 200, response.text
        answer = self.join(lookup, name)
        assert answer["status"] == "pending" and answer["founding"] is False
        return Dev(answer["device_id"], answer["token"], answer["team_id"])

    def worker(self, coord: Dev) -> Dev:
        device = self.invite_and_join(coord)
        me = self.call("GET", "/v1/me", coord.token).json()
        self.upload_keys(coord, me["current_epoch"], [device.id])
        return device

    def push(self, device: Dev, ops: list[dict[str, Any]], expect: int = 200) -> Any:
        response = self.call("POST", "/v1/push", device.token, json={"ops": ops})
        assert response.status_code == expect, response.text
        return response.json()

    def pull(self, device: Dev, since: int = 0, limit: int = 1000, wait: float = 0, nonce: str | None = None) -> Any:
        params: dict[str, Any] = {"since": since, "limit": limit, "wait": wait}
        if nonce is not None:
            params["nonce"] = nonce
        response = self.call("GET", "/v1/pull", device.token, params=params)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def make_harness(db_url: str) -> Iterator[Any]:
    clients: list[TestClient] = []

    def make(**overrides: Any) -> Harness:
        clock = FakeClock()
        settings = settings_for(db_url, **overrides)
        client = TestClient(create_app(settings, clock=clock))
        client.__enter__()
        clients.append(client)
        return Harness(client, clock)

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def h(make_harness: Any) -> Harness:
    return make_harness()


def error_of(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "detail"}, body
    return body["error"]


# --- health, protocol header, errors -----------------------------------------------------------


def test_health_without_header_and_with(h: Harness) -> None:
    bare = h.client.get("/v1/health")
    assert bare.status_code == 200
    assert bare.json()["status"] == "ok" and bare.json()["supported_majors"] == [1]
    assert bare.json()["database"] in ("sqlite", "postgresql")
    assert h.call("GET", "/v1/health").status_code == 200


@pytest.mark.parametrize("header", ["2.0", "0.9", "banana", None])
def test_unsupported_protocol(h: Harness, header: str | None) -> None:
    headers = {PROTOCOL_HEADER: header} if header else {}
    response = h.client.get("/v1/me", headers=headers)
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "unsupported_protocol" and error["detail"]["supported_majors"] == [1]
    if header == "2.0":
        assert h.client.get("/v1/health", headers=headers).status_code == 400


def test_minor_versions_are_accepted(h: Harness) -> None:
    assert h.client.get("/v1/health", headers={PROTOCOL_HEADER: "1.7"}).status_code == 200


def test_unknown_path_and_missing_token(h: Harness) -> None:
    assert error_of(h.call("GET", "/v1/nothing"))["code"] == "not_found"
    for token in (None, "not-a-token"):
        response = h.call("GET", "/v1/me", token)
        assert response.status_code == 401 and error_of(response)["code"] == "unauthenticated"


# --- enrollment --------------------------------------------------------------------------------


def test_founding_join_and_code_works_once(h: Harness) -> None:
    team_id, code = h.new_team("Aarhus outreach")
    answer = h.join(str(code).split("-")[0].lower(), "Laptop", secret=code.secret)  # lookup: any case
    assert answer["team_id"] == team_id and answer["team_name"] == "Aarhus outreach"
    assert answer["founding"] is True and answer["status"] == "active" and answer["role"] == "coordinator"
    assert len(answer["token"]) >= 43  # 256 bits, url-safe base64
    again = h.join(code.lookup, "Other", expect=400, secret=code.secret)
    assert again["error"]["code"] == "code_invalid"
    me = h.call("GET", "/v1/me", answer["token"]).json()
    assert me == {
        "device_id": answer["device_id"],
        "team_id": team_id,
        "team_name": "Aarhus outreach",
        "role": "coordinator",
        "status": "active",
        "current_epoch": 1,
    }


def test_tokens_are_stored_hashed_only(h: Harness) -> None:
    coord = h.found()
    with h.db.transaction() as session:
        row = session.get(Device, coord.id)
    assert row.token_hash == crud.sha256_hex(coord.token) and coord.token not in row.token_hash


def test_pending_join_stores_proof_and_is_limited(h: Harness) -> None:
    coord = h.found()
    lookup = EnrollmentCode.generate().lookup
    invited = h.call("POST", "/v1/invites", coord.token, json={"lookup": lookup})
    assert invited.status_code == 200 and invited.json()["role"] == "worker"
    public_key, proof, device_id = _key(), _key(), _hex()
    body = {
        "lookup": lookup,
        "device_id": device_id,
        "device_name": "Worker phone",
        "public_key": public_key,
        "proof": proof,
    }
    answer = h.call("POST", "/v1/join", json=body).json()
    assert answer["status"] == "pending" and answer["role"] == "worker" and answer["founding"] is False
    listed = h.call("GET", "/v1/devices", coord.token).json()
    assert listed["current_epoch"] == 1 and listed["invites_pending"] == 0
    mine = {d["device_id"]: d for d in listed["devices"]}
    assert mine[device_id]["proof"] == proof and mine[device_id]["public_key"] == public_key
    assert mine[device_id]["invite_lookup"] == lookup and mine[device_id]["status"] == "pending"
    assert mine[device_id]["key_epoch"] is None and mine[coord.id]["key_epoch"] == 1
    token = answer["token"]
    assert h.call("GET", "/v1/me", token).json()["status"] == "pending"
    assert h.call("GET", "/v1/keys", token).json() == {"current_epoch": 1, "keys": []}
    for method, path, kwargs in [
        ("POST", "/v1/push", {"json": {"ops": [op(1)]}}),
        ("GET", "/v1/pull", {}),
        ("GET", "/v1/devices", {}),
    ]:
        response = h.call(method, path, token, **kwargs)
        assert response.status_code == 403 and error_of(response)["code"] == "device_pending"


def test_keys_upload_activates_pending_device(h: Harness) -> None:
    coord = h.found()
    worker = h.invite_and_join(coord)
    answer = h.upload_keys(coord, 1, [worker.id])
    assert answer["current_epoch"] == 1 and [k["epoch"] for k in answer["keys"]] == [1]  # the caller's own
    assert h.call("GET", "/v1/me", worker.token).json()["status"] == "active"
    keys = h.call("GET", "/v1/keys", worker.token).json()["keys"]
    assert [(k["epoch"], k["device_id"]) for k in keys] == [(1, worker.id)]
    h.push(worker, [op(1)])


def test_reject_and_role_checks(h: Harness) -> None:
    coord = h.found()
    worker = h.worker(coord)
    suspect = h.invite_and_join(coord, name="Unknown")
    h.upload_keys(coord, 1, [], reject=[suspect.id])
    assert h.call("GET", "/v1/me", suspect.token).json()["status"] == "rejected"
    refused = h.call("POST", "/v1/push", suspect.token, json={"ops": [op(1)]})
    assert refused.status_code == 403 and error_of(refused)["code"] == "forbidden"
    late = h.upload_keys(coord, 1, [suspect.id], expect=409)
    assert late["error"]["code"] == "conflict"
    for method, path, body in [
        ("POST", "/v1/invites", {"lookup": "ABCDEFGH"}),
        ("GET", "/v1/devices", None),
        ("POST", "/v1/keys", {"epoch": 1, "keys": []}),
        ("POST", f"/v1/devices/{coord.id}/revoke", None),
        ("POST", "/v1/purge", {"record_ids": [_hex()]}),
        ("POST", "/v1/recovery", {"recovery_lookup": _key(), "keys": []}),
    ]:
        response = h.call(method, path, worker.token, json=body)
        assert response.status_code == 403 and error_of(response)["code"] == "forbidden", path


def test_coordinator_invite_joins_as_coordinator(h: Harness) -> None:
    coord = h.found()
    second = h.invite_and_join(coord, role="coordinator", name="Second laptop")
    h.upload_keys(coord, 1, [second.id])
    assert h.call("GET", "/v1/devices", second.token).status_code == 200


def test_revoke_refuses_token_at_once_with_wipe(h: Harness) -> None:
    coord = h.found()
    worker = h.worker(coord)
    h.push(worker, [op(1)])
    response = h.call("POST", f"/v1/devices/{worker.id}/revoke", coord.token)
    assert response.json() == {"device_id": worker.id, "status": "revoked", "current_epoch": 1}
    for method, path in [("GET", "/v1/me"), ("GET", "/v1/keys"), ("GET", "/v1/pull"), ("POST", "/v1/push")]:
        refused = h.call(method, path, worker.token, json={"ops": [op(2)]} if method == "POST" else None)
        assert refused.status_code == 403
        assert (
            error_of(refused)["code"] == "device_revoked"
            and refused.json()["error"]["detail"]["wipe"] is True
        )
    assert error_of(h.call("POST", f"/v1/devices/{coord.id}/revoke", coord.token))["code"] == "conflict"
    assert error_of(h.call("POST", f"/v1/devices/{_hex()}/revoke", coord.token))["code"] == "not_found"
    # The coordinator starts a new epoch for the remaining devices; a revoked device gets none.
    assert h.upload_keys(coord, 2, [coord.id])["current_epoch"] == 2
    assert (
        error_of(
            h.call(
                "POST",
                "/v1/keys",
                coord.token,
                json={"epoch": 2, "keys": [{"epoch": 2, "device_id": worker.id, "wrapped": _key()}]},
            )
        )["code"]
        == "conflict"
    )


def test_key_epochs_go_up_one_at_a_time(h: Harness) -> None:
    coord = h.found()
    assert h.upload_keys(coord, 3, [coord.id], expect=409)["error"]["code"] == "unknown_epoch"
    h.upload_keys(coord, 2, [coord.id])
    again = h.upload_keys(coord, 1, [coord.id])  # an older epoch may be re-wrapped
    assert again["current_epoch"] == 2 and [k["epoch"] for k in again["keys"]] == [1, 2]
    worker = h.invite_and_join(coord)
    both = [{"epoch": e, "device_id": worker.id, "wrapped": _key()} for e in (1, 2)]
    assert h.call("POST", "/v1/keys", coord.token, json={"epoch": 2, "keys": both}).status_code == 200
    assert [k["epoch"] for k in h.call("GET", "/v1/keys", worker.token).json()["keys"]] == [1, 2]
    ahead = [{"epoch": 3, "device_id": worker.id, "wrapped": _key()}]
    refused = h.call("POST", "/v1/keys", coord.token, json={"epoch": 2, "keys": ahead})
    assert (
        error_of(refused)["code"] == "unknown_epoch"
        and error_of(refused)["detail"]["field"] == "keys.0.epoch"
    )
    recovery_key = {"epoch": 2, "device_id": None, "wrapped": _key()}
    refused = h.call("POST", "/v1/keys", coord.token, json={"epoch": 2, "keys": [recovery_key]})
    assert refused.status_code == 422 and error_of(refused)["detail"]["field"] == "keys.0.device_id"


def test_recovery_enrolls_a_new_coordinator(h: Harness) -> None:
    coord = h.found()
    lookup, wrapped = b64e(os.urandom(32)), _key()
    stored = h.call(
        "POST",
        "/v1/recovery",
        coord.token,
        json={"recovery_lookup": lookup, "keys": [{"epoch": 1, "wrapped": wrapped}]},
    )
    assert stored.status_code == 200 and stored.json() == {}
    body = {
        "recovery_lookup": b64e(os.urandom(32)),
        "device_id": _hex(),
        "device_name": "New laptop",
        "public_key": _key(),
    }
    wrong = h.call("POST", "/v1/recover", json=body)
    assert wrong.status_code == 400 and error_of(wrong)["code"] == "code_invalid"
    body["recovery_lookup"] = lookup
    answer = h.call("POST", "/v1/recover", json=body).json()
    assert answer["team_id"] == coord.team_id and answer["role"] == "coordinator"
    assert answer["recovery_keys"] == [{"epoch": 1, "device_id": None, "wrapped": wrapped}]
    assert h.call("GET", "/v1/me", answer["token"]).json()["status"] == "active"
    assert h.call("GET", "/v1/devices", answer["token"]).status_code == 200
    unknown = h.call(
        "POST",
        "/v1/recovery",
        coord.token,
        json={"recovery_lookup": lookup, "keys": [{"epoch": 5, "wrapped": wrapped}]},
    )
    assert error_of(unknown)["code"] == "unknown_epoch"


# --- codes: expiry, reuse, throttling ----------------------------------------------------------


def test_expired_codes(h: Harness) -> None:
    _team_id, code = h.new_team()
    h.clock.advance(24 * 3600 + 1)
    assert h.join(code.lookup, expect=400)["error"]["code"] == "code_invalid"
    coord = h.found()
    lookup = EnrollmentCode.generate().lookup
    h.call("POST", "/v1/invites", coord.token, json={"lookup": lookup, "expires_in_seconds": 60})
    taken = h.call("POST", "/v1/invites", coord.token, json={"lookup": lookup})
    assert error_of(taken)["code"] == "conflict"
    assert h.call("GET", "/v1/devices", coord.token).json()["invites_pending"] == 1
    h.clock.advance(61)
    assert h.join(lookup, expect=400)["error"]["code"] == "code_invalid"


def test_failed_lookups_are_throttled_per_address(make_harness: Any) -> None:
    h = make_harness(throttle_failures=3, throttle_window_seconds=600)
    _team_id, code = h.new_team()
    for _ in range(3):
        assert h.join("WRONGONE", expect=400)["error"]["code"] == "code_invalid"
        h.clock.advance(10)
    throttled = h.join(code.lookup, expect=429)["error"]  # even the right code, for now
    assert throttled["code"] == "throttled" and 0 < throttled["detail"]["retry_after"] <= 600
    recover = {"recovery_lookup": _key(), "device_id": _hex(), "device_name": "x", "public_key": _key()}
    assert error_of(h.call("POST", "/v1/recover", json=recover))["code"] == "throttled"
    h.clock.advance(throttled["detail"]["retry_after"])
    assert h.join(code.lookup, secret=code.secret)["founding"] is True


# --- the founding code is checked whole; lookups under the server's key (issue 15, item 3) --------


def _devices_of(h: Harness, team_id: str) -> list[Device]:
    with h.db.transaction() as session:
        return list(session.exec(select(Device).where(Device.team_id == team_id)).all())


@pytest.mark.parametrize("signing", [False, True], ids=["1.0", "1.1"])
def test_founding_join_with_a_wrong_secret_is_refused(h: Harness, signing: bool) -> None:
    team_id, code = h.new_team()
    wrong = EnrollmentCode.generate().secret
    for body in (
        join_body(code.lookup, "Intruder", secret=wrong, signing=signing),  # the lookup alone
        {**join_body(code.lookup, "Intruder", secret=code.secret, signing=signing), "proof": b64e(os.urandom(32))},
    ):
        refused = h.call("POST", "/v1/join", json=body)
        assert refused.status_code == 400 and error_of(refused)["code"] == "code_invalid"
    if signing:  # the proof covers the signing key: another key under the same proof is refused
        body = join_body(code.lookup, "Intruder", secret=code.secret, signing=True)
        body["signing_key"] = _key()
        assert error_of(h.call("POST", "/v1/join", json=body))["code"] == "code_invalid"
    assert _devices_of(h, team_id) == []  # the team stays unfounded
    founded = h.call("POST", "/v1/join", json=join_body(code.lookup, "Laptop", secret=code.secret, signing=signing))
    assert founded.status_code == 200, founded.text
    assert founded.json()["founding"] is True and founded.json()["status"] == "active"
    assert [d.status for d in _devices_of(h, team_id)] == ["active"]


def test_lookups_are_stored_under_the_servers_key(h: Harness) -> None:
    team_id, code = h.new_team()
    with h.db.transaction() as session:
        (founding,) = session.exec(select(Invite).where(Invite.team_id == team_id)).all()
    assert founding.lookup_hash != crud.sha256_hex(code.lookup)
    assert founding.lookup_hash == h.server_key.lookup_hash(code.lookup) and founding.lookup_scheme == "hmac"
    assert founding.founding_seal is not None and code.secret.encode() not in founding.founding_seal
    assert ServerKey.generate().lookup_hash(code.lookup) != founding.lookup_hash  # keyed: another key, another hash
    coord = h.join(code.lookup, "Laptop", secret=code.secret)
    lookup = EnrollmentCode.generate().lookup
    assert h.call("POST", "/v1/invites", coord["token"], json={"lookup": lookup}).status_code == 200
    with h.db.transaction() as session:
        rows = {row.founding: row for row in session.exec(select(Invite).where(Invite.team_id == team_id))}
    assert rows[False].lookup_hash == h.server_key.lookup_hash(lookup) != crud.sha256_hex(lookup)
    assert rows[True].founding_seal is None  # used: the server keeps nothing of the secret
    assert h.join(lookup)["status"] == "pending"  # a coordinator's invite works as before


def test_a_founding_code_of_an_older_server_no_longer_founds(h: Harness) -> None:
    """A founding invite stored before the secret was kept (no seal) is refused: its lookup alone
    would found the team. The operator makes a new team (`outreach-server team create`)."""
    team_id, code = h.new_team()
    with h.db.transaction(write=True) as session:
        invite = session.exec(select(Invite).where(Invite.team_id == team_id)).one()
        invite.founding_seal = None
        session.add(invite)
    assert h.join(code.lookup, secret=code.secret, expect=400)["error"]["code"] == "code_invalid"


def test_a_sha256_lookup_of_an_older_server_still_works(db_url: str, make_harness: Any) -> None:
    """Rows of a database from before the lookups were keyed: a coordinator's open invite still
    joins after the migration (its lookup cannot be rehashed from its SHA-256: it keeps its scheme)."""
    old = Database.from_settings(settings_for(db_url))
    migrate(old.engine, upto="0004_device_signatures")
    team_id, lookup, expires = uuid.uuid4().hex, EnrollmentCode.generate().lookup, 1_750_000_000.0 + 3600
    with old.engine.begin() as conn:
        conn.execute(text("INSERT INTO team (id, name, created_at, next_seq, current_epoch) "
                          "VALUES (:id, 'Old unit', 1.0, 1, 1)"), {"id": team_id})
        conn.execute(text("INSERT INTO invite (lookup_hash, team_id, role, founding, created_at, expires_at) "
                          "VALUES (:hash, :team, 'worker', :founding, 1.0, :expires)"),
                     {"hash": crud.sha256_hex(lookup), "team": team_id, "founding": False, "expires": expires})
    old.dispose()
    h = make_harness()
    with h.db.transaction() as session:
        assert session.exec(select(Invite)).one().lookup_scheme == "sha256"
    assert h.join(lookup.lower(), "Old phone")["status"] == "pending"
    assert h.join(lookup, "Again", expect=400)["error"]["code"] == "code_invalid"  # once, as ever


def test_ipv6_addresses_of_one_64_share_the_throttle(make_harness: Any) -> None:
    h = make_harness(throttle_failures=3, throttle_window_seconds=600)
    _team_id, code = h.new_team()
    for address in ("2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff:1:2:3"):  # all in one /64
        refused = h.call_from(address, "POST", "/v1/join", json=join_body("WRONGONE"))
        assert error_of(refused)["code"] == "code_invalid"
    body = join_body(code.lookup, secret=code.secret)
    throttled = h.call_from("2001:db8:1:2:aaaa::9", "POST", "/v1/join", json=body)
    assert throttled.status_code == 429 and error_of(throttled)["code"] == "throttled"
    assert int(throttled.headers["Retry-After"]) == error_of(throttled)["detail"]["retry_after"]
    other = h.call_from("2001:db8:1:3::1", "POST", "/v1/join", json=body)  # the next /64: its own count
    assert other.status_code == 200 and other.json()["founding"] is True


def test_ipv4_addresses_are_counted_one_by_one(make_harness: Any) -> None:
    h = make_harness(throttle_failures=2, throttle_window_seconds=600)
    for _ in range(2):
        h.call_from("198.51.100.7", "POST", "/v1/join", json=join_body("WRONGONE"))
    assert h.call_from("198.51.100.7", "POST", "/v1/join", json=join_body("WRONGONE")).status_code == 429
    assert h.call_from("198.51.100.8", "POST", "/v1/join", json=join_body("WRONGONE")).status_code == 400
    mapped = h.call_from("::ffff:198.51.100.7", "POST", "/v1/join", json=join_body("WRONGONE"))
    assert mapped.status_code == 429  # the same IPv4 address, written as IPv6


def test_failed_lookups_are_limited_server_wide(make_harness: Any) -> None:
    h = make_harness(throttle_failures=100, throttle_server_failures_per_minute=5)
    _team_id, code = h.new_team()
    for index in range(5):  # five addresses, one failure each
        h.clock.advance(5)
        assert h.call_from(f"203.0.113.{index}", "POST", "/v1/join", json=join_body("WRONGONE")).status_code == 400
    body = join_body(code.lookup, secret=code.secret)
    throttled = h.call_from("192.0.2.200", "POST", "/v1/join", json=body)  # an address never seen
    error = error_of(throttled)
    assert throttled.status_code == 429 and error["code"] == "throttled" and error["detail"]["scope"] == "server"
    assert error["detail"]["retry_after"] == int(throttled.headers["Retry-After"]) == 40  # the first one's minute
    recover = {"recovery_lookup": _key(), "device_id": _hex(), "device_name": "x", "public_key": _key()}
    assert error_of(h.call_from("192.0.2.201", "POST", "/v1/recover", json=recover))["code"] == "throttled"
    h.clock.advance(error["detail"]["retry_after"])
    answer = h.call_from("192.0.2.200", "POST", "/v1/join", json=body)
    assert answer.status_code == 200 and answer.json()["founding"] is True


# --- push ---------------------------------------------------------------------------------------


def test_push_is_idempotent(h: Harness) -> None:
    coord = h.found()
    batch = [op(1), op(2), op(3)]
    first = h.push(coord, batch)
    assert first == {"acked_through": 3, "accepted": 3, "duplicates": 0, "purged": 0, "last_seq": 3,
                     "purged_records": []}
    replay = h.push(coord, batch)
    assert replay == {"acked_through": 3, "accepted": 0, "duplicates": 3, "purged": 0, "last_seq": 3,
                      "purged_records": []}
    dup_ids = h.push(coord, [batch[0], op(4), {**op(5), "op_id": batch[1]["op_id"]}])
    assert (dup_ids["accepted"], dup_ids["duplicates"], dup_ids["last_seq"]) == (1, 2, 4)
    same_seq = h.push(coord, [op(2)])  # a different op at a used device seq is acknowledged, not stored
    assert (same_seq["accepted"], same_seq["duplicates"]) == (0, 1)
    in_batch = h.push(coord, [op(6, op_id=batch[2]["op_id"]), (twin := op(7)), twin])
    assert (in_batch["accepted"], in_batch["duplicates"], in_batch["acked_through"]) == (1, 2, 7)
    page = h.pull(coord)
    assert [o["device_seq"] for o in page["ops"]] == [1, 2, 3, 4, 7]
    assert [o["seq"] for o in page["ops"]] == [1, 2, 3, 4, 5]
    assert page["ops"][0]["payload"] == batch[0]["payload"] and page["ops"][0]["device_id"] == coord.id


def test_stale_epoch_refuses_the_whole_batch(h: Harness) -> None:
    coord = h.found()
    worker = h.worker(coord)
    h.push(worker, [op(1)])
    h.call("POST", f"/v1/devices/{worker.id}/revoke", coord.token)
    h.upload_keys(coord, 2, [coord.id])
    refused = h.push(coord, [op(1, epoch=2), op(2, epoch=1), op(3, epoch=2)], expect=409)["error"]
    assert refused["code"] == "stale_epoch"
    assert refused["detail"] == {"current_epoch": 2, "field": "ops.1.key_epoch"}
    assert len(h.pull(coord)["ops"]) == 1  # only the worker's op from before: nothing applied
    assert h.push(coord, [op(1, epoch=3)], expect=409)["error"]["code"] == "unknown_epoch"
    resealed = h.push(coord, [op(1, epoch=2), op(2, epoch=2), op(3, epoch=2)])
    assert resealed["accepted"] == 3 and h.pull(coord)["current_epoch"] == 2


def test_push_limits(h: Harness) -> None:
    coord = h.found()
    big = [op(i + 1, size=60 * 1024) for i in range(5)]  # 300 KB of sealed payload
    too_much = h.call("POST", "/v1/push", coord.token, json={"ops": big})
    assert too_much.status_code == 413 and error_of(too_much)["code"] == "too_large"
    one = h.call("POST", "/v1/push", coord.token, json={"ops": [op(1, size=65 * 1024)]})
    assert one.status_code == 413 and error_of(one)["detail"]["field"] == "ops.0.payload"
    bad = op(1)
    bad["payload"] = "A"  # one base64 character is not a byte string
    response = h.call("POST", "/v1/push", coord.token, json={"ops": [bad]})
    assert response.status_code == 422 and error_of(response)["detail"]["field"] == "ops.0.payload"
    assert h.pull(coord)["ops"] == []


# --- isolation ----------------------------------------------------------------------------------


def test_teams_are_isolated(h: Harness) -> None:
    coord_a, coord_b = h.found("A"), h.found("B")
    worker_b = h.worker(coord_b)
    h.push(coord_a, [op(1)])
    h.push(worker_b, [op(1), op(2)])
    assert len(h.pull(coord_a)["ops"]) == 1
    assert {o["device_id"] for o in h.pull(coord_b)["ops"]} == {worker_b.id}
    assert h.pull(coord_b)["ops"][0]["seq"] == 1  # each team has its own sequence
    assert error_of(h.call("POST", f"/v1/devices/{worker_b.id}/revoke", coord_a.token))["code"] == "not_found"
    assert h.upload_keys(coord_a, 1, [worker_b.id], expect=404)["error"]["code"] == "not_found"
    assert worker_b.id not in {
        d["device_id"] for d in h.call("GET", "/v1/devices", coord_a.token).json()["devices"]
    }
    stolen = h.pull(coord_b)["ops"][0]
    clash = h.push(coord_a, [{**op(2), "op_id": stolen["op_id"]}], expect=409)
    assert clash["error"]["code"] == "conflict"
    purge = h.call("POST", "/v1/purge", coord_a.token, json={"record_ids": [stolen["record_id"]]})
    assert purge.json()["purged_ops"] == 0 and len(h.pull(coord_b)["ops"]) == 2


# --- purge --------------------------------------------------------------------------------------


def test_purge_drops_ops_and_later_pushes(h: Harness) -> None:
    coord = h.found()
    worker = h.worker(coord)
    erased, kept = _hex(), _hex()
    h.push(worker, [op(1, record_id=erased), op(2, record_id=kept), op(3, record_id=erased)])
    answer = h.call("POST", "/v1/purge", coord.token, json={"record_ids": [erased, erased]}).json()
    assert answer == {"purged_ops": 2, "last_seq": 4}
    page = h.pull(worker)
    assert [o["record_id"] for o in page["ops"]] == [kept]
    assert page["purges"] == [{"seq": 4, "record_id": erased, "sig": None}] and page["next"] == 4
    late = h.push(worker, [op(4, record_id=erased), op(5, record_id=kept)])
    assert (late["accepted"], late["purged"], late["acked_through"]) == (1, 1, 5)
    assert late["purged_records"] == [erased]  # the device tells its user which change was not kept
    assert h.call("POST", "/v1/purge", coord.token, json={"record_ids": [erased]}).json() == {
        "purged_ops": 0,
        "last_seq": 5,
    }
    after = h.pull(worker, since=4)
    assert [o["device_seq"] for o in after["ops"]] == [5] and after["purges"] == []


def test_a_purge_keeps_the_coordinators_signature_blind(h: Harness) -> None:
    coord = h.found()
    worker = h.worker(coord)
    a, b = _hex(), _hex()
    sig_a, sig_b = b64e(bytes(range(64))), b64e(bytes(64 * [7]))
    bad = h.call("POST", "/v1/purge", coord.token, json={"record_ids": [a, b], "signatures": [sig_a]})
    assert bad.status_code == 422 and error_of(bad)["code"] == "malformed"
    short = h.call("POST", "/v1/purge", coord.token, json={"record_ids": [a], "signatures": [b64e(b"x" * 63)]})
    assert short.status_code == 422 and error_of(short)["detail"]["field"] == "signatures.0"
    ok = h.call("POST", "/v1/purge", coord.token, json={"record_ids": [a, b], "signatures": [sig_a, sig_b]})
    assert ok.status_code == 200
    assert h.pull(worker)["purges"] == [{"seq": 1, "record_id": a, "sig": sig_a}, {"seq": 2, "record_id": b, "sig": sig_b}]


# --- pull ---------------------------------------------------------------------------------------


def test_a_pull_page_is_gzipped_only_for_a_client_that_takes_gzip(h: Harness) -> None:
    coord = h.found()
    worker = h.worker(coord)
    sent = [op(i + 1, size=300) for i in range(30)]
    h.push(worker, sent)
    pages = {}
    for accept in ("gzip, deflate", "identity"):
        response = h.call("GET", "/v1/pull", coord.token, params={"since": 0}, headers={"Accept-Encoding": accept})
        assert response.status_code == 200, response.text
        pages[accept] = (response.headers.get("content-encoding"), response.json())
    assert pages["gzip, deflate"][0] == "gzip" and pages["identity"][0] is None
    assert pages["gzip, deflate"][1] == pages["identity"][1]
    got = pages["identity"][1]
    assert [(o["op_id"], o["payload"]) for o in got["ops"]] == [(o["op_id"], o["payload"]) for o in sent]
    assert (got["next"], got["more"], got["purges"]) == (30, False, [])


def test_pull_pages_by_cursor(h: Harness) -> None:
    coord = h.found()
    h.push(coord, [op(i) for i in range(1, 26)])
    h.call("POST", "/v1/purge", coord.token, json={"record_ids": [_hex()]})  # seq 26
    h.push(coord, [op(26)])  # seq 27
    seen: list[int] = []
    since, pages = 0, 0
    while True:
        page = h.pull(coord, since=since, limit=10)
        entries = [o["seq"] for o in page["ops"]] + [p["seq"] for p in page["purges"]]
        assert len(entries) <= 10 and all(s > since for s in entries)
        seen += sorted(entries)
        since, pages = page["next"], pages + 1
        if not page["more"]:
            break
    assert seen == list(range(1, 28)) and pages == 3 and since == 27
    empty = h.pull(coord, since=27)
    assert empty["ops"] == [] and empty["next"] == 27 and empty["more"] is False


def test_pull_is_gzipped(h: Harness) -> None:
    coord = h.found()
    h.push(coord, [op(i, size=200) for i in range(1, 30)])
    response = h.call("GET", "/v1/pull", coord.token, headers={"Accept-Encoding": "gzip"})
    assert response.headers.get("content-encoding") == "gzip" and len(response.json()["ops"]) == 29


def test_long_poll_returns_when_an_op_arrives(h: Harness) -> None:
    coord = h.found()
    worker = h.worker(coord)
    started = time.monotonic()
    assert h.pull(coord, wait=0.3)["ops"] == []
    assert time.monotonic() - started >= 0.3
    result: dict[str, Any] = {}

    def wait_for_op() -> None:
        result["page"] = h.pull(coord, wait=10)
        result["at"] = time.monotonic()

    waiter = threading.Thread(target=wait_for_op)
    waiter.start()
    time.sleep(0.4)
    pushed_at = time.monotonic()
    h.push(worker, [op(1)])
    waiter.join(timeout=10)
    assert [o["device_id"] for o in result["page"]["ops"]] == [worker.id]
    assert result["at"] - pushed_at < 2


class QueryCounter:
    """Counts the statements the app sends to its database (from any thread)."""

    def __init__(self, engine: Any) -> None:
        self.engine, self.count = engine, 0
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *_args: Any) -> None:
        self.count += 1

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._seen)


def test_long_poll_wakes_in_process_without_polling_the_database(make_harness: Any) -> None:
    h = make_harness(longpoll_recheck_seconds=5)
    coord = h.found()
    worker = h.worker(coord)
    result: dict[str, Any] = {}

    def wait_for_op() -> None:
        result["page"] = h.pull(coord, wait=20)
        result["at"] = time.monotonic()

    counter = QueryCounter(h.db.engine)
    try:
        waiters = [threading.Thread(target=wait_for_op)]
        waiters[0].start()
        time.sleep(0.5)  # the long-poll has read the (empty) log once and waits
        before = counter.count
        time.sleep(1.5)
        assert counter.count == before, "an idle long-poll queried the database"
    finally:
        counter.close()
    pushed_at = time.monotonic()
    h.push(worker, [op(1)])
    waiters[0].join(timeout=20)
    assert [o["device_id"] for o in result["page"]["ops"]] == [worker.id]
    assert result["at"] - pushed_at < 1.0  # woken by the push, not by the 5 s re-check


def test_long_poll_rechecks_for_other_processes(make_harness: Any) -> None:
    # A push through another server process never reaches this one's waiters: the slow re-check finds it.
    h = make_harness(longpoll_recheck_seconds=0.3)
    coord = h.found()
    worker = h.worker(coord)
    result: dict[str, Any] = {}
    waiter = threading.Thread(target=lambda: result.update(h.pull(coord, wait=20)))
    waiter.start()
    time.sleep(0.5)
    written_at = time.monotonic()
    with h.db.transaction(write=True) as session:  # as another process would: no in-process wake-up
        crud.push_ops(
            session,
            team_id=coord.team_id,
            device_id=worker.id,
            ops=[crud.PushOp(_hex(), 1, _hex(), 1, os.urandom(40))],
            now=h.clock(),
        )
    waiter.join(timeout=20)
    assert [o["device_id"] for o in result["ops"]] == [worker.id]
    assert time.monotonic() - written_at < 3


def test_long_poll_of_a_revoked_device_ends_at_once(make_harness: Any) -> None:
    h = make_harness(longpoll_recheck_seconds=5)
    coord = h.found()
    worker = h.worker(coord)
    result: dict[str, Any] = {}

    def wait() -> None:
        result["response"] = h.call("GET", "/v1/pull", worker.token, params={"since": 0, "wait": 20})
        result["at"] = time.monotonic()

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.5)
    revoked_at = time.monotonic()
    assert h.call("POST", f"/v1/devices/{worker.id}/revoke", coord.token).status_code == 200
    waiter.join(timeout=20)
    assert error_of(result["response"])["detail"] == {"wipe": True, "revocation": None}  # no signed entry here
    assert result["at"] - revoked_at < 1.0


# --- request limits and validation --------------------------------------------------------------


def test_too_large_bodies(make_harness: Any) -> None:
    h = make_harness(max_body_bytes=4096)
    coord = h.found()
    body = json.dumps({"ops": [op(1, size=4000)]}).encode()
    declared = h.call(
        "POST", "/v1/push", coord.token, content=body, headers={"Content-Type": "application/json"}
    )
    assert declared.status_code == 413 and error_of(declared)["code"] == "too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the server counts what arrives
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    streamed = h.call(
        "POST", "/v1/push", coord.token, content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert streamed.status_code == 413 and error_of(streamed)["code"] == "too_large"
    bomb = gzip.compress(json.dumps({"ops": [op(1)], "pad": " " * 100_000}).encode())
    assert len(bomb) < 4096
    inflated = h.call(
        "POST",
        "/v1/push",
        coord.token,
        content=bomb,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert inflated.status_code == 413 and error_of(inflated)["code"] == "too_large"


def test_gzip_request_bodies(h: Harness) -> None:
    coord = h.found()
    body = gzip.compress(json.dumps({"ops": [op(1), op(2)]}).encode())
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    response = h.call("POST", "/v1/push", coord.token, content=body, headers=headers)
    assert response.status_code == 200 and response.json()["accepted"] == 2
    broken = h.call("POST", "/v1/push", coord.token, content=body[:-8], headers=headers)
    assert broken.status_code == 422 and error_of(broken)["code"] == "malformed"


def test_malformed_requests_name_the_field(h: Harness) -> None:
    coord = h.found()
    ops = [op(1), op(2)]
    ops[1]["record_id"] = "not-a-hex-id"
    response = h.call("POST", "/v1/push", coord.token, json={"ops": ops})
    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "malformed" and error["detail"]["field"] == "ops.1.record_id"
    assert error["detail"]["errors"][0]["field"] == "ops.1.record_id"
    assert "not-a-hex-id" not in response.text  # inputs are never echoed
    cases: list[tuple[str, str, dict[str, Any], str]] = [
        ("POST", "/v1/push", {"json": {"ops": [op(1)], "extra": 1}}, "extra"),
        (
            "POST",
            "/v1/push",
            {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
            "body",
        ),
        ("POST", "/v1/push", {"json": {"ops": []}}, "ops"),
        ("GET", "/v1/pull", {"params": {"limit": 0}}, "limit"),
        ("GET", "/v1/pull", {"params": {"wait": 31}}, "wait"),
        ("GET", "/v1/pull", {"params": {"since": -1}}, "since"),
    ]
    for method, path, kwargs, field in cases:
        response = h.call(method, path, coord.token, **kwargs)
        assert response.status_code == 422, (field, response.text)
        assert error_of(response)["detail"]["field"] == field
    short_key = {
        "lookup": "ABCDEFGH",
        "device_id": _hex(),
        "device_name": "x",
        "public_key": b64e(b"k" * 16),
        "proof": _key(),
    }
    assert error_of(h.call("POST", "/v1/join", json=short_key))["detail"]["field"] == "public_key"


# --- the bounds of the wire schema (issue 14, item 12) ------------------------------------------

BIG = 2**63  # one past the largest integer both databases store (BIGINT)


def test_integers_past_64_bits_are_malformed_not_a_fault(h: Harness) -> None:
    coord = h.found()
    cases: list[tuple[str, str, dict[str, Any], str]] = [
        ("POST", "/v1/push", {"json": {"ops": [op(BIG)]}}, "ops.0.device_seq"),
        ("POST", "/v1/push", {"json": {"ops": [op(1), op(10**30)]}}, "ops.1.device_seq"),
        ("POST", "/v1/push", {"json": {"ops": [op(1, epoch=BIG)]}}, "ops.0.key_epoch"),
        ("GET", "/v1/pull", {"params": {"since": BIG}}, "since"),
        ("GET", "/v1/pull", {"params": {"since": 10**40}}, "since"),
        ("GET", "/v1/pull", {"params": {"limit": BIG}}, "limit"),
        ("POST", "/v1/keys", {"json": {"epoch": BIG, "keys": []}}, "epoch"),
        (
            "POST",
            "/v1/keys",
            {"json": {"epoch": 1, "keys": [{"epoch": BIG, "device_id": coord.id, "wrapped": _key()}]}},
            "keys.0.epoch",
        ),
        (
            "POST",
            "/v1/recovery",
            {"json": {"recovery_lookup": _key(), "keys": [{"epoch": BIG, "wrapped": _key()}]}},
            "keys.0.epoch",
        ),
        ("POST", "/v1/invites", {"json": {"lookup": "ABCDEFGH", "expires_in_seconds": BIG}}, "expires_in_seconds"),
    ]
    for method, path, kwargs, field in cases:
        response = h.call(method, path, coord.token, **kwargs)
        assert response.status_code == 422, (field, response.text)
        error = error_of(response)
        assert error["code"] == "malformed" and error["detail"]["field"] == field, (field, error)


def test_the_largest_64_bit_integer_is_stored_and_read_back(h: Harness) -> None:
    coord = h.found()
    top = BIG - 1
    assert h.push(coord, [op(top)])["acked_through"] == top
    assert h.pull(coord)["ops"][0]["device_seq"] == top
    assert h.pull(coord, since=top) == {
        "ops": [], "purges": [], "next": top, "more": False, "current_epoch": 1, "batches": [],
        "held_through": top,  # the puller's own sequence, as far as the server holds it
        "nonce": None,  # none asked for: none echoed
    }


def test_a_pull_page_echoes_its_requests_nonce(h: Harness) -> None:
    """1.3: the page answers the request that sent `nonce`, so that the puller takes its
    `held_through` from no other page (a replayed one, or another device's)."""
    coord = h.found()
    h.push(coord, [op(1), op(2)])
    nonce = new_nonce()
    page = h.pull(coord, nonce=nonce)
    assert page["nonce"] == nonce and page["held_through"] == 2 and len(page["ops"]) == 2
    assert h.pull(coord, since=2, nonce=nonce)["nonce"] == nonce  # also on an empty page
    for bad in ("short", nonce + "A", nonce[:-1] + "=", nonce[:-1] + '"'):
        response = h.call("GET", "/v1/pull", coord.token, params={"nonce": bad})
        assert response.status_code == 422, (bad, response.text)
        assert error_of(response)["detail"]["field"] == "nonce"


@pytest.mark.parametrize("path", ["/v1/push", "/v1/keys", "/v1/join", "/v1/invites", "/v1/purge"])
def test_deeply_nested_json_is_malformed_naming_the_body(h: Harness, path: str) -> None:
    coord = h.found()
    for depth in (300, 100_000):
        deep = ("[" * depth + "]" * depth).encode()
        response = h.call("POST", path, coord.token, content=deep, headers={"Content-Type": "application/json"})
        assert response.status_code == 422, (depth, response.text[:200])
        error = error_of(response)
        assert error["code"] == "malformed" and error["detail"]["field"] == "body"
        assert error["detail"]["errors"][0]["field"] == "body"


def test_a_body_that_is_not_utf8_is_malformed(h: Harness) -> None:
    coord = h.found()
    response = h.call("POST", "/v1/keys", coord.token, content=b'{"epoch": "\xff"}',
                      headers={"Content-Type": "application/json"})
    assert response.status_code == 422 and error_of(response)["detail"]["field"] == "body"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/v1/push", {"POST"}),
        ("GET", "/v1/push", {"POST"}),
        ("PUT", "/v1/keys", {"GET", "POST"}),  # two routes on one path: both methods
        ("DELETE", "/v1/roster", {"GET", "POST"}),
        ("POST", "/v1/health", {"GET"}),
        ("GET", f"/v1/devices/{'a' * 32}/revoke", {"POST"}),
    ],
)
def test_a_wrong_method_is_405_with_allow(h: Harness, method: str, path: str, allowed: set[str]) -> None:
    coord = h.found()
    response = h.call(method, path, coord.token)
    assert response.status_code == 405
    assert set(response.headers["Allow"].split(", ")) == allowed
    error = error_of(response)
    assert error["code"] == "method_not_allowed" and set(error["detail"]["allow"]) == allowed
    unknown = h.call(method, "/v1/nothing", coord.token)
    assert unknown.status_code == 404 and error_of(unknown)["code"] == "not_found"
    assert "Allow" not in unknown.headers


def test_base64_that_is_not_base64_is_refused_by_the_schema(h: Harness) -> None:
    """A string the server's base64 decoder refuses fails the schema's own check: the error is
    pydantic's (`string_pattern_mismatch` or a length), listed in `detail.errors` like any other."""
    coord = h.found()
    for bad in ("A", "AAAAA", "AAAA=", "AA AA", "AA+/"):
        response = h.call("POST", "/v1/roster", coord.token,
                          json={"entries": [{"device_id": coord.id, "entry": bad}]})
        assert response.status_code == 422, (bad, response.text)
        error = error_of(response)
        assert error["detail"]["field"] == "entries.0.entry", bad
        assert error["detail"]["errors"][0]["type"].startswith("string_"), (bad, error)


def test_keys_without_a_device_are_refused_by_the_schema(h: Harness) -> None:
    coord = h.found()
    response = h.call("POST", "/v1/keys", coord.token,
                      json={"epoch": 1, "keys": [{"epoch": 1, "device_id": coord.id, "wrapped": _key()},
                                                 {"epoch": 1, "wrapped": _key()}]})
    assert response.status_code == 422
    error = error_of(response)
    assert error["detail"]["field"] == "keys.1.device_id"
    assert error["detail"]["errors"][0]["type"] == "missing"  # the schema's word, not a handler's


def test_a_version_1_header_without_its_minor_is_malformed(h: Harness) -> None:
    """The OpenAPI document states the header as `1.<minor>`: the server takes exactly that."""
    coord = h.found()
    for header in ("1", "1.-1", "1.01"):
        response = h.call("GET", "/v1/me", coord.token, headers={PROTOCOL_HEADER: header})
        assert response.status_code == 422, (header, response.text)
        assert error_of(response)["detail"]["field"] == PROTOCOL_HEADER
    assert h.client.get("/v1/health", headers={PROTOCOL_HEADER: "1"}).status_code == 422
