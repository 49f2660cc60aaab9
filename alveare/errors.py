"""The SDK's exceptions: one class per kind of failure, each carrying what the error envelope said.

Every error response from an Alveare server is `{"error": {"message", "type", "param", "code",
"request_id"}}`; `error_from_response` picks the class by status (and by code where one status has
two meanings: 429 is a rate limit or a spent quota) so callers can catch what they can act on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import msgspec

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AlveareError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "NotFoundError",
    "OverloadedError",
    "PermissionDeniedError",
    "QuotaExceededError",
    "RateLimitError",
    "ServerError",
    "error_from_response",
]


class AlveareError(Exception):
    """Any failure the SDK reports. `status` is None when no HTTP answer came back."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        type: str | None = None,
        param: str | None = None,
        request_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.type = type
        self.param = param
        self.request_id = request_id
        self.headers: dict[str, str] = {k.lower(): v for k, v in (headers or {}).items()}

    def __str__(self) -> str:
        parts = [f"{self.status}" if self.status else "", self.code or ""]
        prefix = " ".join(p for p in parts if p)
        suffix = f" (request id {self.request_id})" if self.request_id else ""
        return f"{prefix}: {self.message}{suffix}" if prefix else f"{self.message}{suffix}"


class APIConnectionError(AlveareError):
    """The server could not be reached (refused, reset, DNS, TLS)."""


class APITimeoutError(AlveareError):
    """No answer within the client's timeout (status None), or the server's own generation timeout (504)."""


class APIStatusError(AlveareError):
    """The server answered with an error status."""


class BadRequestError(APIStatusError):
    """400 (and other 4xx without a class of their own): a bad parameter, named in `param`."""


class AuthenticationError(APIStatusError):
    """401: a missing, malformed, unknown or revoked API key."""


class PermissionDeniedError(APIStatusError):
    """403: the key's plan, account or role does not include this."""


class NotFoundError(APIStatusError):
    """404: an unknown specialist, model or URL."""


class ConflictError(APIStatusError):
    """409: the change conflicts with the current state."""


class RateLimitError(APIStatusError):
    """429 rate_limit_exceeded: the key's requests or tokens per minute are used up."""

    @property
    def retry_after(self) -> float | None:
        """Seconds the server asked to wait (retry-after-ms, else Retry-After), when it said."""
        return retry_after_seconds(self.headers)


class QuotaExceededError(APIStatusError):
    """429 insufficient_quota: the account's spending cap is reached for this period; retrying won't help."""


class ServerError(APIStatusError):
    """500 and other 5xx: a failure on the server's side."""


class OverloadedError(ServerError):
    """503: every slot is busy and the queue is full, or the model is still loading."""


_BY_STATUS: dict[int, type[AlveareError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    429: RateLimitError,
    503: OverloadedError,
    504: APITimeoutError,
}


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """retry-after-ms (OpenAI's precise form) or Retry-After in seconds; None when absent or not a number.
    (An HTTP-date Retry-After is not used by Alveare servers and is treated as absent.)"""
    lowered = {k.lower(): v for k, v in headers.items()}
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = lowered.get(name)
        if raw is None:
            continue
        try:
            value = float(raw) * scale
        except ValueError:
            continue
        if math.isfinite(value) and value >= 0:
            return value
    return None


def _class_for(status: int, code: str | None) -> type[AlveareError]:
    if status == 429 and code == "insufficient_quota":
        return QuotaExceededError
    cls = _BY_STATUS.get(status)
    if cls is not None:
        return cls
    return BadRequestError if 400 <= status < 500 else ServerError


def error_from_response(status: int, content: bytes, headers: Mapping[str, str]) -> AlveareError:
    """The exception for an error response: its class from status and code, its message, code, param
    and request id from the envelope (or the raw text when a proxy answered instead of the server)."""
    error: dict[str, Any] = {}
    try:
        body = msgspec.json.decode(content)
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            error = body["error"]
    except msgspec.DecodeError:
        pass

    def text(name: str) -> str | None:
        value = error.get(name)
        return value if isinstance(value, str) else None

    lowered = {k.lower(): v for k, v in headers.items()}
    code = text("code")
    message = text("message") or content.decode("utf-8", "replace").strip()[:200] or f"HTTP {status}"
    return _class_for(status, code)(
        message,
        status=status,
        code=code,
        type=text("type"),
        param=text("param"),
        request_id=text("request_id") or lowered.get("x-request-id"),
        headers=lowered,
    )
