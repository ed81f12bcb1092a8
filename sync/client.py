"""The HTTP client of the sync protocol (`requests`): one method per endpoint, speaking only the
schemas of `sync.protocol`. It owns transport concerns: a keep-alive session (injectable, so tests
can mount an adapter), timeouts, retries with exponential backoff and jitter, gzip, TLS
verification against `certifi`'s bundle (phones have no trust store for Python), and the rule that
plain http:// goes only to loopback unless explicitly allowed. It never opens a sealed payload and
never touches the local store: `sync.engine` does the rest.
"""

from __future__ import annotations

import gzip
import ipaddress
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import certifi
import requests
from pydantic import BaseModel, ValidationError

from . import protocol as p
from .errors import (
    CodeInvalid,
    DevicePending,
    DeviceRevoked,
    InsecureURL,
    Offline,
    Rejected,
    ServerEmpty,
    ServerFault,
    ServerUnavailable,
    StaleEpoch,
    Throttled,
)

__all__ = ["SyncClient", "EncodedBody", "check_url"]

log = logging.getLogger("outreach.sync.client")
T = TypeVar("T", bound=BaseModel)

_REJECTIONS: dict[str, type[Rejected]] = {
    p.ErrorCode.DEVICE_REVOKED: DeviceRevoked,
    p.ErrorCode.DEVICE_PENDING: DevicePending,
    p.ErrorCode.STALE_EPOCH: StaleEpoch,
    p.ErrorCode.CODE_INVALID: CodeInvalid,
    p.ErrorCode.THROTTLED: Throttled,
}

_WORDS: dict[str, str] = {
    p.ErrorCode.DEVICE_REVOKED: "This device was removed from the team. Its local data is being erased.",
    p.ErrorCode.DEVICE_PENDING: "Waiting for the coordinator to let this device into the team.",
    p.ErrorCode.CODE_INVALID: "That code is not valid: it may be mistyped, used already or expired.",
    p.ErrorCode.THROTTLED: "Too many wrong codes. Wait a little and try again.",
    p.ErrorCode.UNAUTHENTICATED: "The server does not know this device. Join the team again.",
    p.ErrorCode.FORBIDDEN: "Only the coordinator can do that.",
    p.ErrorCode.UNSUPPORTED_PROTOCOL: "The server runs a version of Outreach this app cannot talk to. Update the app.",
}


def check_url(url: str, *, allow_insecure: bool = False) -> str:
    """Normalise a server URL; refuse http:// to anything but loopback unless allowed."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InsecureURL(f"Not a server address: {url!r} (expected https://host[:port]).")
    if parts.scheme == "http" and not allow_insecure:
        host = parts.hostname
        loopback = host == "localhost"
        try:
            loopback = loopback or ipaddress.ip_address(host).is_loopback
        except ValueError:
            pass  # a name, not an address: only "localhost" counts as loopback
        if not loopback:
            raise InsecureURL(
                f"Refusing plain http:// to {host}: records would cross the network unprotected by TLS. "
                "Use https://, or allow insecure connections explicitly for a test set-up."
            )
    return url


class SyncClient:
    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        session: requests.Session | None = None,
        allow_insecure: bool = False,
        timeout: tuple[float, float] = (5.0, 30.0),
        retries: int = 3,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = check_url(base_url, allow_insecure=allow_insecure)
        self.token = token
        self.session = session or requests.Session()
        self.session.verify = certifi.where() if self.session.verify is True else self.session.verify
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._sleep = sleep
        self.bytes_sent = 0
        self.bytes_received = 0

    def close(self) -> None:
        self.session.close()

    # ------------------------------------------------------------------ transport
    def _request(self, method: str, path: str, *, body: BaseModel | EncodedBody | None = None,
                 params: dict[str, Any] | None = None, model: type[T] | None, timeout: float | None = None,
                 retry: bool = True) -> T:
        headers = {p.PROTOCOL_HEADER: p.PROTOCOL_VERSION, "Accept-Encoding": "gzip"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data: bytes | None = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            encoded = body if isinstance(body, EncodedBody) else self.encode(body)
            data = encoded.data
            if encoded.gzip:
                headers["Content-Encoding"] = "gzip"
        url = self.base_url + path
        read_timeout = self.timeout[1] if timeout is None else timeout
        attempts = self.retries + 1 if retry else 1
        for attempt in range(attempts):
            try:
                resp = self.session.request(method, url, data=data, params=params, headers=headers,
                                            timeout=(self.timeout[0], read_timeout))
            except requests.exceptions.SSLError as exc:
                raise Offline(f"The server's certificate could not be verified ({type(exc).__name__}). "
                              "Check the address; your changes are kept on this device.") from None
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                    requests.exceptions.ContentDecodingError) as exc:
                # refused, reset, timed out, DNS, or an answer cut off mid-body: all "no connection"
                log.info("%s %s: %s (attempt %d)", method, path, type(exc).__name__, attempt + 1)
                if attempt + 1 < attempts:
                    self._pause(attempt)
                    continue
                raise Offline() from None
            content = resp.content
            self.bytes_sent += len(data or b"")
            wire = resp.raw.tell() if hasattr(resp.raw, "tell") else 0
            self.bytes_received += wire or len(content)
            if resp.status_code >= 500:
                log.info("%s %s: HTTP %d (attempt %d)", method, path, resp.status_code, attempt + 1)
                unavailable = self._unavailable(resp)
                if unavailable is not None and unavailable.get("reason") == "no_teams":
                    raise ServerEmpty()  # the operator's to mend: asking again changes nothing
                if attempt + 1 < attempts:
                    self._pause(attempt, _retry_after(resp) if unavailable is not None else None)
                    continue
                if unavailable is not None:
                    raise ServerUnavailable()
                raise ServerFault(f"The server had a problem (HTTP {resp.status_code}). Try again later; "
                                  "your changes are kept on this device.")
            if resp.status_code >= 400:
                raise self._rejection(resp)
            if model is None:
                return resp.content  # type: ignore[return-value]
            return _parse(model, resp.content, path)
        raise AssertionError("unreachable")

    @staticmethod
    def encode(body: BaseModel | bytes) -> EncodedBody:
        """A request body as it goes on the wire (JSON, gzip from 1 KB). Made apart from sending
        so that a caller can prepare the next request while one is in flight."""
        raw = body if isinstance(body, bytes) else body.model_dump_json(exclude_none=False).encode()
        if len(raw) > 1024:
            # level 1: the bodies are mostly base64 of ciphertext, which only Huffman coding
            # shrinks; higher levels search for repeats that are not there (same size within
            # 0.1 %). Huffman-only coding would be 3x faster but 10 % bigger on the wire.
            return EncodedBody(gzip.compress(raw, 1), True)
        return EncodedBody(raw, False)

    RETRY_AFTER_MAX = 10.0  # seconds: a server's Retry-After is followed up to this, within one request

    def _pause(self, attempt: int, retry_after: float | None = None) -> None:
        if retry_after is not None:  # the server said when: no sooner (and not for ever)
            self._sleep(min(retry_after, self.RETRY_AFTER_MAX))
            return
        delay = self.backoff * (2 ** attempt)
        self._sleep(delay / 2 + random.uniform(0, delay / 2))  # "equal jitter"

    @staticmethod
    def _unavailable(resp: requests.Response) -> dict[str, object] | None:
        """The detail of a `503 unavailable` answer (the server cannot reach its database), else None."""
        try:
            err = p.ErrorResponse.model_validate(json.loads(resp.content)).error
        except (ValueError, ValidationError):
            return None
        return dict(err.detail) if err.code == p.ErrorCode.UNAVAILABLE else None

    @staticmethod
    def _rejection(resp: requests.Response) -> Rejected:
        try:
            err = p.ErrorResponse.model_validate(json.loads(resp.content)).error
            code, message, detail = err.code.value, err.message, err.detail
        except (ValueError, ValidationError):
            code, message, detail = "http_" + str(resp.status_code), f"HTTP {resp.status_code}", {}
        cls = _REJECTIONS.get(code, Rejected)
        words = _WORDS.get(code, message)
        if code == p.ErrorCode.THROTTLED:
            words += f" (about {int(float(detail.get('retry_after', 60)))} s)"  # type: ignore[arg-type]
        return cls(code, words, resp.status_code, detail)

    # ------------------------------------------------------------------ endpoints
    def health(self) -> p.HealthResponse:
        return self._request("GET", "/v1/health", model=p.HealthResponse)

    def join(self, req: p.JoinRequest) -> p.JoinResponse:
        return self._request("POST", "/v1/join", body=req, model=p.JoinResponse, retry=False)

    def recover(self, req: p.RecoverRequest) -> p.RecoverResponse:
        return self._request("POST", "/v1/recover", body=req, model=p.RecoverResponse, retry=False)

    def me(self) -> p.MeResponse:
        return self._request("GET", "/v1/me", model=p.MeResponse)

    def invite(self, req: p.InviteRequest) -> p.InviteResponse:
        return self._request("POST", "/v1/invites", body=req, model=p.InviteResponse)

    def devices(self) -> p.DeviceList:
        return self._request("GET", "/v1/devices", model=p.DeviceList)

    def revoke(self, device_id: str) -> p.RevokeResponse:
        return self._request("POST", f"/v1/devices/{device_id}/revoke", model=p.RevokeResponse)

    def keys(self) -> p.KeysResponse:
        return self._request("GET", "/v1/keys", model=p.KeysResponse)

    def upload_keys(self, req: p.KeysUpload) -> p.KeysResponse:
        return self._request("POST", "/v1/keys", body=req, model=p.KeysResponse)

    def upload_recovery(self, req: p.RecoveryUpload) -> None:
        self._request("POST", "/v1/recovery", body=req, model=_Empty)

    def roster(self) -> p.RosterResponse:
        return self._request("GET", "/v1/roster", model=p.RosterResponse)

    def upload_roster(self, req: p.RosterUpload) -> None:
        self._request("POST", "/v1/roster", body=req, model=_Empty)

    def announce_signing_key(self, req: p.SigningKeyAnnounce) -> None:
        self._request("POST", "/v1/signing-key", body=req, model=_Empty)

    def push(self, ops: list[p.OpIn] | p.PushRequest | EncodedBody, sig: bytes | None = None) -> p.PushResponse:
        """A push of `ops` (signed with `sig`), of a request, or of a body made with
        `encode(p.encode_push(...))`."""
        body = ops if isinstance(ops, (EncodedBody, p.PushRequest)) else p.PushRequest(
            ops=ops, sig=p.b64e(sig) if sig is not None else None)
        return self._request("POST", "/v1/push", body=body, model=p.PushResponse)

    def pull(self, since: int, limit: int = 1000, wait: float = 0.0, nonce: str | None = None) -> p.PullResponse:
        return self.parse_pull(self.pull_body(since, limit, wait, nonce))

    def pull_body(self, since: int, limit: int = 1000, wait: float = 0.0, nonce: str | None = None) -> bytes:
        """A pull page's JSON as the server sent it (unzipped), not yet checked: `parse_pull`
        checks it. Apart, so that a thread fetching the next page meanwhile does I/O only. A
        1.3 server echoes `nonce` (`p.new_nonce()`) in the page."""
        params: dict[str, Any] = {"since": since, "limit": limit}
        if wait > 0:
            params["wait"] = wait
        if nonce is not None:
            params["nonce"] = nonce
        return self._request("GET", "/v1/pull", params=params, model=None, timeout=self.timeout[1] + wait)

    @staticmethod
    def parse_pull(body: bytes) -> p.PullResponse:
        return _parse(p.PullResponse, body, "/v1/pull")

    def put_checkpoint(self, req: p.CheckpointIn) -> None:
        self._request("POST", "/v1/checkpoints", body=req, model=_Empty)

    def put_checkpoint_part(self, checkpoint_id: str, n: int, blob: bytes) -> bool:
        """Store part `n` (from 1); whether the checkpoint is complete now."""
        return self._request("PUT", f"/v1/checkpoints/{checkpoint_id}/parts/{n:d}",
                             body=p.CheckpointPartIn(blob=p.b64e(blob)), model=p.CheckpointPartResponse).complete

    def checkpoints(self) -> p.CheckpointList:
        return self._request("GET", "/v1/checkpoints", model=p.CheckpointList)

    def checkpoint_part(self, checkpoint_id: str, n: int) -> bytes:
        """Part `n` as the server stored it (raw bytes: sealed, so neither base64 nor gzip)."""
        return self._request("GET", f"/v1/checkpoints/{checkpoint_id}/parts/{n:d}", model=None)

    def purge(self, record_ids: list[str], signatures: list[bytes] | None = None) -> p.PurgeResponse:
        body = p.PurgeRequest(record_ids=record_ids,
                              signatures=[p.b64e(s) for s in signatures] if signatures is not None else None)
        return self._request("POST", "/v1/purge", body=body, model=p.PurgeResponse)


def _retry_after(resp: requests.Response) -> float | None:
    try:
        return max(0.0, float(resp.headers.get("Retry-After", "")))
    except ValueError:
        return None


def _parse(model: type[T], content: bytes, path: str) -> T:
    try:
        return model.model_validate_json(content)
    except ValidationError as exc:
        raise ServerFault(f"The server's answer to {path} did not follow the protocol: "
                          f"{exc.errors()[0]['loc']}") from None


@dataclass(frozen=True)
class EncodedBody:
    """Request bytes ready to send; `gzip` when they are gzip-compressed JSON."""

    data: bytes
    gzip: bool


class _Empty(BaseModel):
    pass

