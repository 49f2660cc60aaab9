"""What the sync and async clients share: request bodies, decoding, the retry policy and SSE parsing.

Only the I/O differs between the two clients; everything that decides anything lives here.
"""

from __future__ import annotations

import os
import random
import ssl
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from alveare import __version__
from alveare.errors import (
    AlveareError,
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    QuotaExceededError,
    ServerError,
    retry_after_seconds,
)

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_RETRIES = 2
INITIAL_BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0
# A server asking for a longer wait than this gets an error back instead of a stalled caller.
MAX_RETRY_AFTER_S = 60.0
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
NEVER_RETRY_STATUSES = frozenset({400, 401, 403, 404})
USER_AGENT = f"alveare-python/{__version__}"

Message = Mapping[str, Any]


def seg(value: str) -> str:
    """A path segment, escaped."""
    return quote(value, safe="")


def default_headers(api_key: str | None) -> dict[str, str]:
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def trust(ca_cert: str | None) -> ssl.SSLContext | bool:
    """httpx's `verify`: the appliance's own certificate when given (a PEM path), else the system's
    certificate authorities."""
    if not ca_cert:
        return True
    path = os.path.expanduser(ca_cert)
    try:
        return ssl.create_default_context(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        raise AlveareError(f"Cannot use {path} as the Alveare server's certificate: {exc}") from None


def missing_key() -> AuthenticationError:
    return AuthenticationError(
        "No API key: pass api_key=..., set ALVEARE_API_KEY, or put api_key in the Alveare config file "
        "(~/.config/alveare/config.toml)."
    )


def decode(content: bytes, type_: type[T], what: str) -> T:
    try:
        return msgspec.json.decode(content, type=type_)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ServerError(f"The server's answer to {what} was not understood: {exc}") from None


# ---------------------------------------------------------------- request bodies
def drop_none(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v is not None}


def infer_body(specialist: str, prompt: str, max_tokens: int | None, temperature: float | None) -> dict[str, Any]:
    return drop_none({"specialist": specialist, "prompt": prompt, "max_tokens": max_tokens, "temperature": temperature})


def chat_body(
    specialist: str,
    messages: str | Sequence[Message],
    *,
    max_tokens: int | None,
    temperature: float | None,
    top_p: float | None,
    stop: str | list[str] | None,
    stream: bool,
) -> dict[str, Any]:
    """An OpenAI chat body; a plain string is one user message."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    body = drop_none(
        {
            "model": specialist,
            "messages": [dict(m) for m in messages],
            "max_tokens": max_tokens,
            "temperature": temperature,
            "top_p": top_p,
            "stop": stop,
        }
    )
    if stream:
        body["stream"] = True
    return body


# ---------------------------------------------------------------- retries
def retry_wait(
    error: AlveareError, attempt: int, max_retries: int, rand: Callable[[], float] = random.random
) -> float | None:
    """Seconds to wait before retrying after `error` on try number `attempt` (0-based), or None: give up.

    Retried: 429, 500, 502, 503, 504 and connection failures, with exponential backoff and jitter;
    a Retry-After (or retry-after-ms) is the least wait. Never: 400, 401, 403, 404, a spent quota,
    a response that says x-should-retry: false, or a timeout waiting for an answer (the server may
    still be generating; asking again would only queue the same work twice).
    """
    if attempt >= max_retries:
        return None
    headers = error.headers
    if headers.get("x-should-retry") == "false" or isinstance(error, QuotaExceededError):
        return None
    if error.status is None:
        if not isinstance(error, APIConnectionError):
            return None
    elif error.status in NEVER_RETRY_STATUSES or (
        error.status not in RETRY_STATUSES and headers.get("x-should-retry") != "true"
    ):
        return None
    backoff = min(INITIAL_BACKOFF_S * 2**attempt, MAX_BACKOFF_S) * (1 - 0.25 * rand())
    asked = retry_after_seconds(headers)
    if asked is None:
        return backoff
    if asked > MAX_RETRY_AFTER_S:
        return None
    # Clients told the same Retry-After spread out a little instead of returning all at once.
    return asked + min(asked, 1.0) * 0.25 * rand()


def transport_error(exc: httpx.TransportError, url: str, timeout: float | httpx.Timeout) -> AlveareError:
    """The SDK error for a request that got no HTTP answer. Only connection failures are retried."""
    if isinstance(exc, httpx.ConnectTimeout):
        return APIConnectionError(f"Could not connect to the Alveare server at {url} (timed out).")
    if isinstance(exc, httpx.TimeoutException):
        seconds = timeout.read if isinstance(timeout, httpx.Timeout) else timeout
        return APITimeoutError(f"The Alveare server at {url} did not answer within {seconds or 0:g} s.")
    if "CERTIFICATE_VERIFY_FAILED" in str(exc):  # not retried: it fails the same way every time
        return AlveareError(
            f"The Alveare server at {url} offered a certificate this client does not trust; pass the "
            "appliance's certificate as ca_cert=... (ALVEARE_CA_CERT, or ca_cert in the config file)."
        )
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError):
        return AlveareError(f"Bad request URL for the Alveare server at {url}: {exc}")
    return APIConnectionError(f"Could not reach the Alveare server at {url} ({type(exc).__name__}: {exc}).")


# ---------------------------------------------------------------- streaming
class _Done:
    pass


DONE = _Done()


def sse_text(line: str) -> str | _Done | None:
    """The text a chat-completion SSE line adds (None: nothing), DONE at the end; an error event raises."""
    if not line.startswith("data:"):
        return None
    data = line[5:].strip()
    if data == "[DONE]":
        return DONE
    try:
        event = msgspec.json.decode(data)
    except msgspec.DecodeError:
        raise ServerError(f"The server's stream was not understood: {data[:120]!r}") from None
    if not isinstance(event, dict):
        return None
    if isinstance(event.get("error"), dict):
        raise stream_error(event["error"])
    pieces = []
    for choice in event.get("choices") or []:
        text = (choice.get("delta") or {}).get("content") if isinstance(choice, dict) else None
        if isinstance(text, str) and text:
            pieces.append(text)
    return "".join(pieces) or None


def stream_error(error: dict[str, Any]) -> AlveareError:
    """An error event inside a stream (the server's own failure after the answer began)."""
    code = error.get("code") if isinstance(error.get("code"), str) else None
    cls, status = (APITimeoutError, 504) if code == "timeout" else (ServerError, 500)
    return cls(
        str(error.get("message") or "The stream ended with an error."),
        status=status,
        code=code,
        type=error.get("type"),
        request_id=error.get("request_id"),
    )
