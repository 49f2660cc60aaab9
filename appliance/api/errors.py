"""Request ids, the request's trace, and the one error envelope for every failure, with no stack trace
ever sent."""

from __future__ import annotations

import logging
import re
import secrets
from typing import Any, TypeVar

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.types import Message, Scope

from appliance.core import protocol as p
from appliance.core.errors import AlveareError, InvalidRequest
from appliance.serving.tracing import NO_TRACE, Trace

log = logging.getLogger("alveare.api")
T = TypeVar("T")

_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

# Litestar's own HTTP errors, by status, as OpenAI-style (type, code).
_HTTP_KINDS = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", "permission_denied"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "request_too_large"),
    415: ("invalid_request_error", "unsupported_media_type"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    503: ("server_error", "service_unavailable"),
}


def request_id(scope: Scope) -> str:
    """The request's id: the client's X-Request-Id when it is sane, else a new one."""
    state = scope.setdefault("state", {})
    rid = state.get("request_id")
    if rid is None:
        given = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"x-request-id"), "")
        rid = given if _CLIENT_ID.match(given) else "req_" + secrets.token_hex(12)
        state["request_id"] = rid
    return rid


# The scope's state key of the request's trace (tracing.py puts it there when tracing is on).
TRACE = "alveare_trace"


def request_trace(scope: Scope) -> Trace:
    """The request's trace: one that records nothing unless tracing is on."""
    return scope.get("state", {}).get(TRACE, NO_TRACE)


async def add_request_id(message: Message, scope: Scope) -> None:
    """before_send hook: every response, errors and 404s included, carries x-request-id."""
    if message["type"] == "http.response.start":
        headers = list(message.get("headers", []))
        headers.append((b"x-request-id", request_id(scope).encode()))
        message["headers"] = headers


def envelope(
    scope: Scope,
    status: int,
    message: str,
    type_: str,
    code: str | None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response[Any]:
    body = p.ErrorEnvelope(
        p.ErrorBody(message=message, type=type_, param=param, code=code, request_id=request_id(scope))
    )
    if code:
        request_trace(scope).set({"alveare.error_code": code})
    return Response(content=p.encode(body), status_code=status, media_type="application/json", headers=headers)


def handle_alveare_error(request: Request, exc: AlveareError) -> Response[Any]:
    if exc.status >= 500:
        log.warning("%s %s -> %s %s: %s", request.method, request.url.path, exc.status, exc.code, exc.message)
    return envelope(request.scope, exc.status, exc.message, exc.type, exc.code, exc.param, exc.headers)


def handle_http_exception(request: Request, exc: HTTPException) -> Response[Any]:
    type_, code = _HTTP_KINDS.get(exc.status_code, ("server_error", "internal_error"))
    message = exc.detail or "Request failed."
    if exc.status_code == 404:
        message = f"Unknown request URL: {request.method} {request.url.path}."
    elif exc.status_code == 405:
        message = f"Method {request.method} is not allowed for {request.url.path}."
    elif exc.status_code == 413:
        message = "The request body is too large."
    elif exc.status_code >= 500:
        log.error("HTTP %s on %s: %s", exc.status_code, request.url.path, exc.detail)
        message = "The server had an error while processing your request."
    return envelope(request.scope, exc.status_code, message, type_, code, None, dict(exc.headers or {}))


def handle_unexpected(request: Request, exc: Exception) -> Response[Any]:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return envelope(
        request.scope,
        500,
        "The server had an error while processing your request. Retry, and quote the request id if it keeps happening.",
        "server_error",
        "internal_error",
    )


EXCEPTION_HANDLERS = {
    AlveareError: handle_alveare_error,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}

_PATH = re.compile(r"at `\$(?P<path>[^`]*)`")
_FIELD = re.compile(r"field `(?P<field>[^`]+)`")


NOT_JSON = "We could not parse the JSON body of your request. Send a valid JSON object in UTF-8."
TOO_DEEP = "The JSON body is nested too deeply."


def decode_body(raw: bytes, type_: type[T]) -> T:
    """Decode and validate a JSON body, naming the offending parameter on failure."""
    if not raw.strip():
        raise InvalidRequest("The request body is empty; send a JSON object.", code="invalid_json")
    try:
        return msgspec.json.decode(raw, type=type_)
    except msgspec.ValidationError as exc:
        # msgspec checks the top-level type before it reads on: bytes that open like a number or an
        # array ("5\xff...") fail as "Expected `object`" though they are no JSON at all.
        _require_json(raw)
        text = str(exc)
        path = _PATH.search(text)
        param = path.group("path").lstrip(".") if path else ""
        field = _FIELD.search(text)
        if field and ("missing required field" in text or "unknown field" in text):
            param = f"{param}.{field.group('field')}" if param else field.group("field")
        message = text.split(" - at `")[0]
        raise InvalidRequest(f"Invalid value for '{param or 'body'}': {message}.", param=param or None) from None
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise InvalidRequest(NOT_JSON, code="invalid_json") from None
    except RecursionError:
        # msgspec recurses per nesting level while decoding (or skipping) an object.
        raise InvalidRequest(TOO_DEEP, code="invalid_json") from None


def _require_json(raw: bytes) -> None:
    """Raise the parse error `raw` would give as JSON of any shape (only on a failed body's path)."""
    try:
        msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise InvalidRequest(NOT_JSON, code="invalid_json") from None
    except RecursionError:
        raise InvalidRequest(TOO_DEEP, code="invalid_json") from None
