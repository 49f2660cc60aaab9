"""Admin-only endpoints: live hive status as JSON and as Prometheus text."""

from __future__ import annotations

from litestar import Request, Response, get

from appliance import protocol as p
from appliance.api.auth import admin_only
from appliance.service import Service


@get("/v1/hive/status", guards=[admin_only])
async def hive_status(request: Request) -> Response[bytes]:
    service: Service = request.app.state.service
    return Response(content=p.encode(service.hive_status()), media_type="application/json")


@get("/metrics", guards=[admin_only])
async def metrics(request: Request) -> Response[str]:
    service: Service = request.app.state.service
    return Response(content=service.metrics_text(), media_type="text/plain; version=0.0.4")


ROUTES = [hive_status, metrics]
