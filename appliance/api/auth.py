"""Bearer-key authentication as Litestar middleware; guards for admin-only routes."""

from __future__ import annotations

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

from appliance import security
from appliance.errors import AuthenticationFailed, PermissionDenied
from appliance.store import Principal, Store

MISSING = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header "
    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)


def _masked(key: str) -> str:
    return key[:12] + "*" * 4 + key[-4:] if len(key) > 20 else "*" * min(len(key), 8)


class BearerKeyAuth(AbstractAuthenticationMiddleware):
    async def authenticate_request(self, connection: ASGIConnection) -> AuthenticationResult:
        header = connection.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        key = key.strip()
        if not header or scheme.lower() != "bearer" or not key:
            raise AuthenticationFailed(MISSING)
        store: Store = connection.app.state.store
        # Shape and checksum first: a mistyped key never reaches the database.
        principal = store.authenticate(key) if security.is_well_formed(key) else None
        if principal is None:
            raise AuthenticationFailed(
                f"Incorrect API key provided: {_masked(key)}. Check the key, or ask your Alveare admin for one."
            )
        return AuthenticationResult(user=principal, auth=principal.key_prefix)


def admin_only(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    principal: Principal = connection.user
    if not principal.admin:
        raise PermissionDenied("This endpoint needs an admin key.", code="admin_required")


def live_key_only(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """Sandbox keys may read the account's settings but not change what its live keys get."""
    principal: Principal = connection.user
    if principal.test:
        raise PermissionDenied(
            "Test keys (alv_test_) cannot change the account's system prompts; use a live key (alv_live_).",
        )
