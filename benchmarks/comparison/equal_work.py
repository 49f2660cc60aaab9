"""Run loadbench with `ignore_eos: true` added to every request body, so every server generates
exactly max_tokens tokens per request.

    python equal_work.py LOADBENCH [loadbench's own arguments...]

At temperature 0 two servers still answer the same prompt differently: their kernels see the
batch in different shapes, float sums round differently, and a 135M model's greedy pick flips
within a few tokens. One answer then ends at 13 tokens, the other runs to 48, and tokens/s
compares unequal work (measured: 735 against 832 tokens for the same 24 prompts). With
`ignore_eos`, which llama-server, vLLM and Alveare accept, every answer runs to max_tokens and the
ratios compare the same work. loadbench itself is left as it is: this wraps its HTTP client.
"""

from __future__ import annotations

import importlib.util
import sys

import httpx

EXTRA = {"ignore_eos": True}


class EqualWorkClient(httpx.AsyncClient):
    """loadbench's client, adding EXTRA to each JSON body it sends."""

    def stream(self, method, url, *, json=None, **kw):
        return super().stream(method, url, json=with_extra(json), **kw)

    async def post(self, url, *, json=None, **kw):
        return await super().post(url, json=with_extra(json), **kw)


def with_extra(body):
    return {**body, **EXTRA} if isinstance(body, dict) else body


def main() -> None:
    path = sys.argv[1]
    spec = importlib.util.spec_from_file_location("loadbench", path)
    assert spec is not None and spec.loader is not None
    loadbench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loadbench)
    loadbench.httpx.AsyncClient = EqualWorkClient  # this process only: loadbench builds its client from it
    sys.argv = [path, *sys.argv[2:]]
    loadbench.main()


if __name__ == "__main__":
    main()
