"""Admin-only endpoints: live hive status as JSON and as Prometheus text."""

from __future__ import annotations

import asyncio
from typing import Annotated

import msgspec
from litestar import Request, Response, get
from litestar.params import QueryParameter

from appliance.api.auth import admin_only
from appliance.core import protocol as p
from appliance.serving import Serving


@get("/v1/hive/status", guards=[admin_only])
async def hive_status(
    request: Request,
    all_nodes: Annotated[
        bool, QueryParameter(name="all", description="also list every node of the cluster (`nodes`)")
    ] = False,
) -> Response[bytes]:
    """This node's hive; with ?all=1, every node of the cluster too (`nodes`)."""
    serving: Serving = request.app.state.serving
    status = serving.status.hive_status()
    if all_nodes:
        status = msgspec.structs.replace(status, nodes=await asyncio.to_thread(serving.cluster.nodes))
    return Response(content=p.encode(status), media_type="application/json")


@get("/metrics", guards=[admin_only])
async def metrics(request: Request) -> Response[str]:
    serving: Serving = request.app.state.serving
    return Response(content=serving.status.metrics_text(), media_type="text/plain; version=0.0.4; charset=utf-8")


ROUTES = [hive_status, metrics]
