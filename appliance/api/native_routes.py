"""Alveare's native endpoints: infer, model info, usage and the account's custom system prompts."""

from __future__ import annotations

from litestar import Request, Response, delete, get, post, put

from appliance import protocol as p
from appliance.api.auth import live_key_only
from appliance.api.errors import decode_body
from appliance.api.openai_routes import metered_call
from appliance.errors import InvalidRequest
from appliance.service import Service


def _json(value: object) -> Response[bytes]:
    return Response(content=p.encode(value), media_type="application/json")


@post("/v1/infer", status_code=200)
async def infer(request: Request) -> Response[bytes]:
    service: Service = request.app.state.service
    call = metered_call(request, "infer")
    req = decode_body(await request.body(), p.InferRequest)
    return _json(await service.infer(call, req))


@get("/v1/model/info")
async def model_info(request: Request) -> Response[bytes]:
    service: Service = request.app.state.service
    model = request.query_params.get("model")
    if not model:
        raise InvalidRequest("Name the specialist: /v1/model/info?model=alveare-chat.", param="model")
    return _json(service.model_info(request.user, model))


@get("/v1/usage")
async def usage(request: Request) -> Response[bytes]:
    service: Service = request.app.state.service
    return _json(await service.usage(request.user))


@get("/v1/specialists")
async def list_specialists(request: Request) -> Response[bytes]:
    service: Service = request.app.state.service
    return _json(service.specialist_list(request.user))


@put("/v1/specialists/{name:str}", status_code=200, guards=[live_key_only])
async def set_system_prompt(request: Request) -> Response[bytes]:
    service: Service = request.app.state.service
    update = decode_body(await request.body(), p.SystemPromptUpdate)
    return _json(await service.set_system_prompt(request.user, request.path_params["name"], update))


@delete("/v1/specialists/{name:str}", status_code=200, guards=[live_key_only])
async def reset_system_prompt(request: Request) -> Response[bytes]:
    service: Service = request.app.state.service
    return _json(await service.reset_system_prompt(request.user, request.path_params["name"]))


ROUTES = [infer, model_info, usage, list_specialists, set_system_prompt, reset_system_prompt]
