"""OpenAI-compatible endpoints: chat completions, legacy completions, responses, models."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from litestar import Request, Response, get, post
from litestar.response import Stream

from appliance.api.errors import decode_body, request_id, request_trace
from appliance.core import protocol as p
from appliance.serving import MeteredCall, Serving

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
CALL = "alveare_call"


def metered_call(request: Request, endpoint: str) -> MeteredCall:
    """The request's Call, kept in the scope so the before_send hook can report its rate-limit state."""
    call = MeteredCall(request.user, endpoint, request_id=request_id(request.scope), trace=request_trace(request.scope))
    request.scope.setdefault("state", {})[CALL] = call
    return call


def _serving(request: Request) -> Serving:
    return request.app.state.serving


def _json(value: Any) -> Response[bytes]:
    return Response(content=p.encode(value), media_type="application/json")


async def _streamed(events: AsyncIterator[bytes]) -> Stream:
    """Pull the first event before answering, so a failure at the start is a real HTTP error."""
    try:
        first = await anext(events)
    except BaseException:
        await events.aclose()  # type: ignore[attr-defined]
        raise

    async def body() -> AsyncIterator[bytes]:
        try:
            yield first
            async for event in events:
                yield event
        finally:
            await events.aclose()  # type: ignore[attr-defined]

    return Stream(body(), media_type="text/event-stream", headers=SSE_HEADERS)


@post("/v1/chat/completions", status_code=200)
async def chat_completions(request: Request) -> Response[bytes] | Stream:
    chat = _serving(request).chat
    call = metered_call(request, "chat.completions")
    req = decode_body(await request.body(), p.ChatCompletionRequest)
    if req.stream:
        return await _streamed(chat.stream(call, req))
    return _json(await chat.complete(call, req))


@post("/v1/completions", status_code=200)
async def completions(request: Request) -> Response[bytes] | Stream:
    completions = _serving(request).completions
    call = metered_call(request, "completions")
    req = decode_body(await request.body(), p.CompletionRequest)
    if req.stream:
        return await _streamed(completions.stream(call, req))
    return _json(await completions.complete(call, req))


@post("/v1/responses", status_code=200)
async def responses(request: Request) -> Response[bytes] | Stream:
    """OpenAI's Responses API, stateless (serving/responses.py)."""
    responses = _serving(request).responses
    call = metered_call(request, "responses")
    req = decode_body(await request.body(), p.ResponsesRequest)
    if req.stream:
        return await _streamed(responses.stream(call, req))
    return _json(await responses.create(call, req))


@get("/v1/models")
async def list_models(request: Request) -> Response[bytes]:
    return _json(_serving(request).catalogue.models(request.user))


@get("/v1/models/{model_id:str}")
async def get_model(request: Request) -> Response[bytes]:
    return _json(
        await asyncio.to_thread(_serving(request).catalogue.model, request.user, request.path_params["model_id"])
    )


ROUTES = [chat_completions, completions, responses, list_models, get_model]
