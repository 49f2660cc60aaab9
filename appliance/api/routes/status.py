"""Admin-only endpoints: live hive status as JSON and as Prometheus text."""

from __future__ import annotations

from litestar import Request, Response, get

from appliance.api.auth import admin_only
from appliance.core import protocol as p
from appliance.serving import Serving


@get("/v1/hive/status", guards=[admin_only])
async def hive_status(request: Request) -> Response[bytes]:
    serving: Serving = request.app.state.serving
    return Response(content=p.encode(serving.status.hive_status()), media_type="application/json")


@get("/metrics", guards=[admin_only])
async def metrics(request: Request) -> Response[str]:
    serving: Serving = request.app.state.serving
    return Response(content=serving.status.metrics_text(), media_type="text/plain; version=0.0.4; charset=utf-8")


ROUTES = [hive_status, metrics]
