"""The Alveare Python SDK: typed clients of an Alveare server's API.

    import alveare

    client = alveare.Client(api_key="alv_live_...", base_url="http://127.0.0.1:8080")
    response = client.infer(specialist="summarise", prompt="...", max_tokens=256)
    print(response.result, response.tokens_used)

This package needs only httpx and msgspec; it never imports the server, the TUI or llama.cpp.
"""

__version__ = "0.1.0"

from alveare.async_client import AsyncClient
from alveare.client import Client
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
