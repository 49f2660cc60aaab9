"""The real client behind trusted proxies: the request's client address (ASGI `scope["client"]`) is
rewritten from X-Forwarded-For before anything reads it, so the refused-key limit and the log lines
apply to each client rather than to the proxy they share. The rule is appliance.core.proxies'."""

from __future__ import annotations

from collections.abc import Callable

from litestar.types import ASGIApp, Receive, Scope, Send

from appliance.core.proxies import TrustedProxies


def real_client(proxies: TrustedProxies) -> Callable[[ASGIApp], ASGIApp]:
    """App middleware for the trusted proxies (mounted only when some are configured)."""

    def middleware(app: ASGIApp) -> ASGIApp:
        async def handle(scope: Scope, receive: Receive, send: Send) -> None:
            client = scope.get("client")
            if client and scope["type"] in ("http", "websocket"):
                forwarded = [v.decode("latin-1") for k, v in scope["headers"] if k == b"x-forwarded-for"]
                host = proxies.client(client[0], forwarded) if forwarded else client[0]
                if host != client[0]:
                    scope["client"] = (host, 0)  # the client's own port is not forwarded
            await app(scope, receive, send)

        return handle

    return middleware
