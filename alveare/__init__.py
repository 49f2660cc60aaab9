"""The Alveare Python SDK: typed clients of an Alveare server's API.

    import alveare

    client = alveare.Client(api_key="alv_live_...", base_url="http://127.0.0.1:8080")
    response = client.infer(specialist="summarise", prompt="...", max_tokens=256)
    print(response.result, response.tokens_used)

This package needs only httpx and msgspec; it never imports the server, the TUI or llama.cpp.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from alveare.errors import (
    AlveareError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
)

if TYPE_CHECKING:
    from alveare.async_client import AsyncClient
    from alveare.client import Client

# The clients load on first use (PEP 562): the server imports alveare.types for its wire types, and
# the clients would bring httpx, whose import loads its command line's rich, click and pygments where
# installed (about 9 MB of the server's memory, for nothing).
_CLIENTS = {"AsyncClient": "alveare.async_client", "Client": "alveare.client"}


def __getattr__(name: str) -> Any:
    if name not in _CLIENTS:
        raise AttributeError(f"module 'alveare' has no attribute {name!r}")
    value = getattr(importlib.import_module(_CLIENTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_CLIENTS))


__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AlveareError",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "Client",
    "ConflictError",
    "NotFoundError",
    "OverloadedError",
    "PermissionDeniedError",
    "QuotaExceededError",
    "RateLimitError",
    "ServerError",
    "__version__",
]
