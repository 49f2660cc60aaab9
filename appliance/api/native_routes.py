"""Alveare's native endpoints: infer and model info."""

from __future__ import annotations

from litestar import Request, Response, get, post

from appliance import protocol as p
from appliance.api.errors import decode_body
from appliance.errors import InvalidRequest
from appliance.service import Service


@post("/v1/infer", status_code=200)
async def infer(request: Request) -> Response[bytes]:
    service: Service = request.app.state.service
    req = decode_body(await request.body(), p.InferRequest)
    return Response(content=p.encode(await service.infer(request.user, req)), media_type="application/json")


@get("/v1/model/info")
async def model_info(request: Request) -> Response[bytes]:
    service: Service = request.app.state.service
    model = request.query_params.get("model")
    if not model:
        raise InvalidRequest("Name the specialist: /v1/model/info?model=alveare-chat.", param="model")
    return Response(content=p.encode(service.model_info(model)), media_type="application/json")


ROUTES = [infer, model_info]
