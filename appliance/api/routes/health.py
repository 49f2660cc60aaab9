"""Unauthenticated liveness: always 200 while the process serves, with the model's state."""

from __future__ import annotations

from litestar import Request, Response, get, head

from appliance.core import protocol as p
from appliance.serving import Serving


@get("/health", exclude_from_auth=True)
async def health(request: Request) -> Response[bytes]:
    serving: Serving = request.app.state.serving
    return Response(content=p.encode(serving.status.health()), media_type="application/json")


@head("/health", exclude_from_auth=True)
async def health_head() -> None:
    """HEAD /health: the same 200 without a body, for load balancers and `curl -I`."""


ROUTES = [health, health_head]
