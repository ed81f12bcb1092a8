"""The server's one exception: `ApiError`, an answer in the protocol's error shape.

Data functions and route handlers raise it; `app.py` turns it into
``{"error": {"code", "message", "detail"}}`` with its HTTP status. It must never carry request
bodies, payloads or device names in its message or detail: ids, counts and field names only.

    ApiError            status + protocol.ErrorCode + message + detail (+ headers, e.g. Allow)
    └── EmptyDatabase   a device calls a server whose database has no teams (started on the wrong one)
"""

from __future__ import annotations

from sync.protocol import ErrorBody, ErrorCode, ErrorResponse

__all__ = ["ApiError", "EmptyDatabase", "STATUS"]

STATUS: dict[ErrorCode, int] = {
    ErrorCode.UNSUPPORTED_PROTOCOL: 400,
    ErrorCode.MALFORMED: 422,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.DEVICE_REVOKED: 403,
    ErrorCode.DEVICE_PENDING: 403,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.CODE_INVALID: 400,
    ErrorCode.THROTTLED: 429,
    ErrorCode.STALE_EPOCH: 409,
    ErrorCode.UNKNOWN_EPOCH: 409,
    ErrorCode.CONFLICT: 409,
    ErrorCode.INTERNAL: 500,
    ErrorCode.UNAVAILABLE: 503,
}


class ApiError(Exception):
    """An error answer. `status` defaults to the code's usual HTTP status."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        detail: dict[str, object] | None = None,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail or {}
        self.status = status if status is not None else STATUS[code]
        self.headers = headers  # e.g. `Allow` with a 405

    def body(self) -> dict[str, object]:
        return ErrorResponse(
            error=ErrorBody(code=self.code, message=self.message, detail=self.detail)
        ).model_dump(mode="json")


class EmptyDatabase(ApiError):
    """A device of a team calls, but the database has no teams at all: the server was started on a
    new, empty database instead of its team's. 503 `unavailable`, so that the device keeps its data
    and its token and tries again; the operator reads a warning in the log."""

    RETRY_AFTER = 60

    def __init__(self) -> None:
        super().__init__(
            ErrorCode.UNAVAILABLE,
            "This server runs on a new, empty database, not your team's: tell its operator. "
            "Your data is kept on your device.",
            {"reason": "no_teams", "retry_after": self.RETRY_AFTER},
            headers={"Retry-After": str(self.RETRY_AFTER)},
        )
