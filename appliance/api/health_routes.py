"""Unauthenticated liveness: always 200 while the process serves, with the model's state."""

from __future__ import annotations

from litestar import Request, Response, get, head

from appliance import protocol as p
from appliance.service import Service


@get("/health", exclude_from_auth=True)
async def health(request: Request) -> Response[bytes]:
    service: Service = request.app.state.service
    return Response(content=p.encode(service.health()), media_type="application/json")


@head("/health", exclude_from_auth=True)
async def health_head() -> None:
    """HEAD /health: the same 200 without a body, for load balancers and `curl -I`."""


ROUTES = [health, health_head]
