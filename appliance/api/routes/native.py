"""Alveare's native endpoints: infer, model info, usage and the account's custom system prompts."""

from __future__ import annotations

import asyncio

from litestar import Request, Response, delete, get, post, put

from appliance.api.auth import live_key_only
from appliance.api.errors import decode_body
from appliance.api.routes.openai import metered_call
from appliance.core import protocol as p
from appliance.core.errors import InvalidRequest
from appliance.serving import Serving


def _serving(request: Request) -> Serving:
    return request.app.state.serving


def _json(value: object) -> Response[bytes]:
    return Response(content=p.encode(value), media_type="application/json")


@post("/v1/infer", status_code=200)
async def infer(request: Request) -> Response[bytes]:
    call = metered_call(request, "infer")
    req = decode_body(await request.body(), p.InferRequest)
    return _json(await _serving(request).infer.complete(call, req))


@get("/v1/model/info")
async def model_info(request: Request) -> Response[bytes]:
    model = request.query_params.get("model")
    if not model:
        raise InvalidRequest("Name the specialist: /v1/model/info?model=alveare-chat.", param="model")
    # The store reads (the override, the account's prompt) run in a worker thread, off the event loop.
    return _json(await asyncio.to_thread(_serving(request).catalogue.model_info, request.user, model))


@get("/v1/usage")
async def usage(request: Request) -> Response[bytes]:
    return _json(await _serving(request).metering.usage_report(request.user))


@get("/v1/specialists")
async def list_specialists(request: Request) -> Response[bytes]:
    return _json(await asyncio.to_thread(_serving(request).catalogue.specialist_list, request.user))


@put("/v1/specialists/{name:str}", status_code=200, guards=[live_key_only])
async def set_system_prompt(request: Request) -> Response[bytes]:
    update = decode_body(await request.body(), p.SystemPromptUpdate)
    catalogue = _serving(request).catalogue
    return _json(await catalogue.set_system_prompt(request.user, request.path_params["name"], update))


@delete("/v1/specialists/{name:str}", status_code=200, guards=[live_key_only])
async def reset_system_prompt(request: Request) -> Response[bytes]:
    return _json(await _serving(request).catalogue.reset_system_prompt(request.user, request.path_params["name"]))


ROUTES = [infer, model_info, usage, list_specialists, set_system_prompt, reset_system_prompt]
