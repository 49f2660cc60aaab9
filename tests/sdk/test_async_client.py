"""alveare.AsyncClient against a live server on the real model: the same methods as the sync client."""

from __future__ import annotations

import asyncio

import pytest
from live import LiveServer

import alveare
from alveare.types import ChatCompletion, HiveStatus, InferResponse, ModelList, SpecialistList, UsageReport

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def test_every_method(server: LiveServer, api_key: str) -> None:
    async with alveare.AsyncClient(api_key=api_key, base_url=server.base_url, timeout=120) as client:
        response = await client.infer(specialist="summarise", prompt="Summarise: the hive grew.", max_tokens=16)
        assert isinstance(response, InferResponse) and response.result and response.tokens_used > 0

        completion = await client.chat("classify", "I love it!", max_tokens=3, temperature=0)
        assert isinstance(completion, ChatCompletion) and completion.choices[0].message.content is not None

        pieces = [p async for p in client.chat_stream("chat", "Count to five.", max_tokens=10, temperature=0)]
        assert 2 <= len(pieces) <= 10 and all(pieces)

        models = await client.models()
        assert isinstance(models, ModelList) and "alveare-chat" in {m.id for m in models.data}
        usage = await client.usage()
        assert isinstance(usage, UsageReport) and usage.requests_used >= 3
        assert (await client.health()).model_loaded

        listed = await client.specialists.list()
        assert isinstance(listed, SpecialistList)
        updated = await client.specialists.update("qa", system_prompt="Answer in one word.")
        assert updated.custom and updated.system_prompt == "Answer in one word."
        assert not (await client.specialists.reset("qa")).custom

        with pytest.raises(alveare.NotFoundError) as info:
            await client.infer("astrology", "Will it rain?")
        assert info.value.code == "model_not_found" and info.value.request_id

    async with alveare.AsyncClient(api_key=server.admin_key, base_url=server.url) as admin:
        assert isinstance(await admin.hive_status(), HiveStatus)


async def test_concurrent_requests_share_one_client(server: LiveServer, api_key: str) -> None:
    async with alveare.AsyncClient(api_key=api_key, base_url=server.url, timeout=120) as client:
        answers = await asyncio.gather(*(client.infer("qa", f"What is {i}+{i}?", max_tokens=4) for i in range(6)))
    assert len({a.id for a in answers}) == 6


async def test_stream_errors_before_the_first_piece(server: LiveServer, api_key: str) -> None:
    async with alveare.AsyncClient(api_key=api_key, base_url=server.url) as client:
        with pytest.raises(alveare.BadRequestError) as info:
            async for _ in client.chat_stream("chat", "hi", max_tokens=5000):
                pass
    assert info.value.param == "max_tokens"
