"""Running generations on the engine: submit a plan's requests, collect or merge their events,
cancel them, and turn an engine failure into the error the client gets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from appliance.core.errors import GenerationTimeout, Overloaded, ServerError, ShuttingDown
from appliance.engine.interface import Chunk, Engine, Finished, Generation, GenerationRequest, TokenInfo


@dataclass
class Outcome:
    text: str
    finished: Finished
    # The generated tokens with their log-probabilities, when the request asked for them.
    tokens: list[TokenInfo] = field(default_factory=list)


class Runner:
    def __init__(self, engine: Engine, *, timeout_s: float) -> None:
        self.engine = engine
        self.timeout_s = timeout_s
        # The generations started and not yet released, for a shutdown to stop.
        self._live: set[Generation] = set()
        self._draining = False
        self._aborted = False

    def start(self, requests: list[GenerationRequest], n: int = 1) -> list[Generation]:
        """Submit every request (n choices each, from one prefill), or none: a refusal (queue full)
        cancels those already submitted. Choice j of request i is generation i * n + j."""
        if self._draining:
            raise ShuttingDown()
        generations: list[Generation] = []
        try:
            for r in requests:
                generations.extend(self.engine.submit_many(r, n))
        except BaseException:
            cancel(generations)
            raise
        self._live.update(generations)
        return generations

    def prompt_texts(self, requests: list[GenerationRequest]) -> list[str]:
        """Each request's prompt as the model reads it, special tokens written out."""
        return [self.engine.detokenize(r.prompt_tokens) for r in requests]

    def release(self, generations: list[Generation]) -> None:
        """Done with these (finished, failed or the client gone): free their slots."""
        cancel(generations)
        self._live.difference_update(generations)

    def drain(self) -> None:
        """Shutdown, first step: start nothing new; what runs may finish."""
        self._draining = True

    def abort(self) -> int:
        """Shutdown, at the end of the grace period: stop every generation still running. Each ends with
        finish reason "cancelled", which `raise_for` turns into ShuttingDown for its client. Returns how many."""
        self._draining = self._aborted = True
        live = list(self._live)
        cancel(live)
        return len(live)

    async def run(self, requests: list[GenerationRequest], n: int = 1) -> list[Outcome]:
        """Run to the end and collect each generation's whole text and tokens."""
        return await self.collect(self.start(requests, n))

    async def collect(self, generations: list[Generation]) -> list[Outcome]:
        """Each started generation's whole text and tokens, then their slots freed."""
        try:
            collected = await asyncio.gather(*(_collect(g) for g in generations))
        finally:
            self.release(generations)
        outcomes = []
        for g, (text, tokens) in zip(generations, collected, strict=True):
            assert g.finished is not None
            self.raise_for(g.finished)
            outcomes.append(Outcome(text, g.finished, tokens))
        return outcomes

    def raise_for(self, finished: Finished) -> None:
        """The client's error for a generation the engine stopped (timeout), lost (error) or that a
        shutdown stopped (cancelled after `abort`)."""
        if finished.finish_reason == "overloaded":  # refused while queued: it would not start in time
            retry = str(max(1, round(finished.retry_after_s)))
            raise Overloaded(finished.error or "The appliance is busy. Retry shortly.", headers={"Retry-After": retry})
        # No token yet means it never got a slot: the engine's timeout runs from the first token.
        if finished.finish_reason == "timeout" and finished.completion_tokens == 0:
            raise GenerationTimeout(
                f"The request waited more than the server's {self.timeout_s:g} s limit for a free slot. "
                "The appliance is busy: retry later.",
            )
        if finished.finish_reason == "timeout":
            raise GenerationTimeout(
                f"The answer did not finish within the server's {self.timeout_s:g} s limit after its first "
                "token. Lower max_tokens, or raise the server's --timeout.",
            )
        if finished.finish_reason == "error":
            raise ServerError("The engine failed while generating. Retry the request.")
        if finished.finish_reason == "cancelled" and self._aborted:
            raise ShuttingDown("The server shut down before the request finished; retry it shortly.")


def cancel(generations: list[Generation]) -> None:
    """Free the slots at the engine's next step (a no-op for finished generations)."""
    for g in generations:
        g.cancel()


async def _collect(g: Generation) -> tuple[str, list[TokenInfo]]:
    texts: list[str] = []
    tokens: list[TokenInfo] = []
    async for chunk in g.chunks():
        texts.append(chunk.text)
        tokens.extend(chunk.tokens)
    return "".join(texts), tokens


async def merge(generations: list[Generation]) -> AsyncIterator[tuple[int, Chunk | Finished]]:
    """Interleave several generations' events, tagging each with its choice index."""
    if len(generations) == 1:
        g = generations[0]
        async for chunk in g.chunks():
            yield 0, chunk
        assert g.finished is not None
        yield 0, g.finished
        return
    queue: asyncio.Queue[tuple[int, Chunk | Finished]] = asyncio.Queue()

    async def pump(i: int, g: Generation) -> None:
        async for chunk in g.chunks():
            await queue.put((i, chunk))
        assert g.finished is not None
        await queue.put((i, g.finished))

    tasks = [asyncio.create_task(pump(i, g)) for i, g in enumerate(generations)]
    try:
        remaining = len(generations)
        while remaining:
            i, item = await queue.get()
            if isinstance(item, Finished):
                remaining -= 1
            yield i, item
    finally:
        for t in tasks:
            t.cancel()
