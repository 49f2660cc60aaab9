"""Overload fails fast: on the defaults (8 slots, a queue of 64, 30 s timeout), 100 concurrent
128-token requests get either their whole answer or, within a second, a 503 with a Retry-After;
never a 504 after waiting out the timeout (issue 34 §2)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import httpx
from live import start_server

CONCURRENT = 100
TOKENS = 128


async def flood(url: str, key: str) -> list[tuple[int, float, httpx.Response]]:
    async def one(client: httpx.AsyncClient, i: int) -> tuple[int, float, httpx.Response]:
        body = {
            "model": "chat",
            "messages": [{"role": "user", "content": f"Tell me about bees, part {i}."}],
            "max_tokens": TOKENS,
            "temperature": 0,
            "ignore_eos": True,
        }
        t0 = time.perf_counter()
        r = await client.post(url, json=body, headers={"Authorization": f"Bearer {key}"})
        return r.status_code, time.perf_counter() - t0, r

    limits = httpx.Limits(max_connections=CONCURRENT, max_keepalive_connections=CONCURRENT)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        return await asyncio.gather(*(one(client, i) for i in range(CONCURRENT)))


def test_overload_is_refused_at_once_and_what_is_admitted_finishes(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data")  # the defaults
    try:
        key = server.new_key("flood", plan="scale")
        results = asyncio.run(flood(server.url + "/v1/chat/completions", key))
    finally:
        server.stop()
    statuses = Counter(status for status, _, _ in results)
    assert set(statuses) <= {200, 503}, statuses  # no 504: nobody waited out the timeout
    assert statuses[200] >= 8, statuses  # at least every slot's worth
    for status, elapsed, r in results:
        if status == 503:
            assert r.json()["error"]["code"] == "server_overloaded"
            assert int(r.headers["retry-after"]) >= 1
            assert elapsed < 1.0, f"a refusal took {elapsed:.1f} s"
        else:
            assert r.json()["usage"]["completion_tokens"] == TOKENS
