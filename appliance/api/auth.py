"""Bearer-key authentication as Litestar middleware; guards for admin-only routes.

A key is checked cheapest first: its shape and checksum (a mistyped key never reaches the database),
then its keyed hash in the store (compared in constant time), through the in-memory `KeyCache`, off
the event loop. A valid key is served whatever else its address sent: apps share hosts, NATs and
proxies, so one misconfigured client must not lock out the others or the admin. Refused keys are
limited per client address (`FailedKeyLimiter`, behind trusted proxies the forwarded client's):
past a burst, a wrong key of any kind (malformed, unknown or revoked) gets the same 429 with
Retry-After, which says nothing about the key, and is neither counted nor logged, so a client that
keeps failing is told to slow down and fills no log. Guessing stays useless: a key has 196 random
bits. Refusals are logged with the address, never the key.
"""

from __future__ import annotations

import logging

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

from appliance.api.errors import request_trace
from appliance.api.keycache import KeyCache
from appliance.core import security
from appliance.core.errors import AuthenticationFailed, PermissionDenied
from appliance.core.limits import FailedKeyLimiter
from appliance.store import Principal

log = logging.getLogger("alveare.auth")

MISSING = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header "
    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)


def _masked(key: str) -> str:
    return key[:12] + "*" * 4 + key[-4:] if len(key) > 20 else "*" * min(len(key), 8)


class BearerKeyAuth(AbstractAuthenticationMiddleware):
    async def authenticate_request(self, connection: ASGIConnection) -> AuthenticationResult:
        trace = request_trace(connection.scope)
        with trace.step("auth"):
            principal = await self._principal(connection)
        # Only a valid key names an account in the trace.
        trace.set({"alveare.account": principal.account, "alveare.test_key": principal.test})
        return AuthenticationResult(user=principal, auth=principal.key_prefix)

    async def _principal(self, connection: ASGIConnection) -> Principal:
        header = connection.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        key = key.strip()
        if not header or scheme.lower() != "bearer" or not key:
            raise AuthenticationFailed(MISSING)
        keys: KeyCache = connection.app.state.key_cache
        # Shape and checksum first: a mistyped key never reaches the database.
        well_formed = security.is_well_formed(key)
        principal = await keys.authenticate(key) if well_formed else None
        if principal is not None:
            return principal
        limiter: FailedKeyLimiter = connection.app.state.failed_keys
        address = connection.client.host if connection.client else "unknown"
        wait = limiter.retry_after(address)
        if wait > 0:
            raise limiter.blocked_error(wait)
        failures = limiter.failed(address)
        # The address and what was wrong, never the key: a near-miss of a real key is a secret too.
        log.warning(
            "refused an API key from %s (%s); %d of %d allowed failures in use%s",
            address,
            "unknown or revoked" if well_formed else "malformed",
            min(failures, limiter.burst),
            limiter.burst,
            ": further wrong keys get 429" if failures >= limiter.burst else "",
        )
        raise AuthenticationFailed(
            f"Incorrect API key provided: {_masked(key)}. Check the key, or ask your Alveare admin for one."
        )


def _preflight(connection: ASGIConnection) -> bool:
    """An OPTIONS request (a CORS preflight, or asking what a URL allows) is not authenticated: it
    says which methods the URL has, whoever asks. A controller's guards still run on it."""
    return connection.scope.get("method") == "OPTIONS"


def admin_only(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    if _preflight(connection):
        return
    principal: Principal = connection.user
    if not principal.admin:
        raise PermissionDenied("This endpoint needs an admin key.", code="admin_required")


def live_key_only(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """Sandbox keys may read the account's settings but not change what its live keys get."""
    if _preflight(connection):
        return
    principal: Principal = connection.user
    if principal.test:
        raise PermissionDenied(
            "Test keys (alv_test_) cannot change the account's system prompts; use a live key (alv_live_).",
        )
