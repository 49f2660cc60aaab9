"""One metered request, from preparation to its usage record, answered whole or streamed.

Everything that can fail before the first token (validation, limits, a full queue) raises before
a stream starts, so it reaches the client as a real HTTP error. A stream's events are rendered by
the endpoint's StreamRenderer; the flow drives it and meters what was generated.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Protocol

import msgspec

from appliance.core import protocol as p
from appliance.core.errors import AlveareError
from appliance.engine.interface import Chunk, Finished, Generation, Share
from appliance.serving.metering import Meter, MeteredCall, Metering
from appliance.serving.prompting import GenerationPlan
from appliance.serving.runner import Outcome, Runner, merge
from appliance.store import Principal

log = logging.getLogger("alveare.service")
DONE = b"data: [DONE]\n\n"


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def sse(value: object) -> bytes:
    return b"data: " + p.encode(value) + b"\n\n"


def sse_error(exc: AlveareError, request_id: str | None) -> bytes:
    body = p.ErrorEnvelope(
        p.ErrorBody(message=exc.message, type=exc.type, param=exc.param, code=exc.code, request_id=request_id)
    )
    return sse(body)


# A test key's traffic is a flow of its own, at this fraction of its account's weight: sandbox
# traffic never slows the same account's live traffic much.
TEST_KEY_SHARE = 0.25
# The test keys' flow is the account's name with this after it (an account's name has no colon).
TEST_FLOW = ":test"


def share_of(principal: Principal) -> Share:
    """Where the fair scheduler puts a caller's requests: its account's flow (its test keys' own
    flow), weighted by the account's plan."""
    weight = float(principal.plan.share_weight)
    if principal.test:
        return Share(principal.account + TEST_FLOW, weight * TEST_KEY_SHARE)
    return Share(principal.account, weight)


def flow_owner(flow: str) -> tuple[str, bool]:
    """share_of the other way: a flow's account, and whether it is that account's test keys' flow."""
    if flow.endswith(TEST_FLOW):
        return flow.removesuffix(TEST_FLOW), True
    return flow, False


def usage(plan: GenerationPlan, finished: list[Finished]) -> p.Usage:
    """Prompt tokens once per prompt (its n choices share one prefill), as OpenAI counts them; the
    cached part is what the prefix cache served, as OpenAI and llama-server report it. No reasoning
    tokens: an endpoint that splits a thinking model's block out counts them (reasoning.with_tokens)."""
    completion = sum(f.completion_tokens for f in finished)
    cached = sum(f.cached_tokens for f in finished[:: plan.n])
    return p.Usage(
        prompt_tokens=plan.prompt_tokens,
        completion_tokens=completion,
        total_tokens=plan.prompt_tokens + completion,
        prompt_tokens_details=p.PromptTokensDetails(cached_tokens=cached),
        completion_tokens_details=p.CompletionTokensDetails(reasoning_tokens=0),
    )


class StreamRenderer(Protocol):
    """One API flavour's SSE events for a stream of one or more choices."""

    def start(self, index: int) -> bytes | None:
        """The event that opens a choice (the role, an echoed prompt), if the flavour sends one."""

    def content(self, index: int, chunk: Chunk) -> bytes | None:
        """A piece of a choice's text (with its tokens' log-probabilities when asked for), if any."""

    def finish(self, index: int, finished: Finished) -> bytes:
        """The event that closes a choice, with its finish reason."""

    def usage(self, usage: p.Usage) -> bytes | None:
        """The usage event after every choice has finished, if the client asked for one."""


class Flow:
    def __init__(self, metering: Metering, runner: Runner) -> None:
        self.metering = metering
        self.runner = runner

    async def _admit(self, meter: Meter, plan: GenerationPlan) -> GenerationPlan:
        """Past the caller's limits, the plan's requests in the caller's flow for the fair scheduler.
        A single box checks the limits on the event loop with no await inside (metering.py); a
        cluster's are one statement each in the shared database, in a worker thread."""
        if self.metering.shared is not None:
            admitting = asyncio.ensure_future(
                asyncio.to_thread(self.metering.admit, meter, plan.specialist.name, plan.token_estimate)
            )
            try:
                await asyncio.shield(admitting)
            except asyncio.CancelledError:
                # The caller left while the database decided: wait for the decision, so the hold and
                # tokens it took are on the meter when the request is metered (and given back).
                with contextlib.suppress(Exception):
                    await admitting
                raise
        else:
            self.metering.admit(meter, plan.specialist.name, plan.token_estimate)
        share = share_of(meter.call.principal)
        return dataclasses.replace(plan, requests=[msgspec.structs.replace(r, share=share) for r in plan.requests])

    async def _prepare(self, meter: Meter, prepare: Callable[[], GenerationPlan]) -> GenerationPlan:
        """Run `prepare` in a worker thread, with the account's quota ledger loaded there too: its store
        reads (the specialist's override, the account's prompt, the period's count) and the tokenising
        of a long prompt stay off the event loop. Admission stays on the loop, with no await inside."""
        trace = meter.call.trace

        def prepared() -> GenerationPlan:
            plan = prepare()
            if trace.wants_prompt:  # --trace-prompts: the text as the model reads it, one per prompt
                trace.set({"alveare.prompt": self.runner.prompt_texts(plan.requests)})
            return plan

        with trace.step("prepare"):
            self.metering.use_quota(meter, await asyncio.to_thread(self.metering.read_quota, meter))
            return await asyncio.to_thread(prepared)

    async def generate(
        self, call: MeteredCall, prepare: Callable[[], GenerationPlan]
    ) -> tuple[GenerationPlan, list[Outcome], p.Usage]:
        """Prepare, admit, run and meter one non-streaming request."""
        meter = Meter(call)
        with self.metering.metered(meter):
            plan = await self._prepare(meter, prepare)
            plan = await self._admit(meter, plan)
            generations = self.runner.start(plan.requests, plan.n)
            meter.timings = [g.timing for g in generations]
            try:
                outcomes = await self.runner.collect(generations)
            finally:
                _count(meter, plan, generations)  # a failure's trace still shows what was generated
            used = usage(plan, [o.finished for o in outcomes])
            meter.prompt_tokens, meter.completion_tokens = used.prompt_tokens, used.completion_tokens
        await self.metering.succeeded(meter)
        return plan, outcomes, used

    async def stream(
        self,
        call: MeteredCall,
        prepare: Callable[[], GenerationPlan],
        renderer: Callable[[GenerationPlan], StreamRenderer],
    ) -> AsyncIterator[bytes]:
        """Prepare, admit and start, then the events. The API pulls the first event before it answers,
        so a failure up to the start (validation, limits, a full queue) is still a real HTTP error."""
        meter = Meter(call)
        with self.metering.metered(meter):
            plan = await self._prepare(meter, prepare)
            plan = await self._admit(meter, plan)
            generations = self.runner.start(plan.requests, plan.n)
            meter.timings = [g.timing for g in generations]
        async for event in self._events(meter, plan, generations, renderer(plan)):
            yield event

    async def _events(
        self, meter: Meter, plan: GenerationPlan, generations: list[Generation], render: StreamRenderer
    ) -> AsyncIterator[bytes]:
        status = 200
        try:
            for i in range(len(generations)):
                head = render.start(i)
                if head:
                    yield head
            async for i, item in merge(generations):
                if isinstance(item, Finished):
                    if item.finish_reason in ("timeout", "error", "cancelled", "overloaded"):
                        try:
                            self.runner.raise_for(item)
                        except AlveareError as exc:
                            status = exc.status
                            rid = meter.call.request_id
                            log.warning(
                                "%s (stream, %s) -> %s %s: %s", meter.call.endpoint, rid, status, exc.code, exc.message
                            )
                            yield sse_error(exc, rid)
                            return
                    yield render.finish(i, item)
                elif event := render.content(i, item):
                    yield event
            tail = render.usage(usage(plan, [g.finished for g in generations if g.finished is not None]))
            if tail:
                yield tail
            # The usage record is committed before the client is told the stream is complete, so a
            # stream that ended with [DONE] survives a kill -9 as a non-streamed answer does.
            _count(meter, plan, generations)
            await self.metering.succeeded(meter)
            yield DONE
        finally:
            # Client gone or stream done: either way free the slots now, and meter what was generated.
            self.runner.release(generations)
            _count(meter, plan, generations)
            self.metering.finish(meter, status)


def _count(meter: Meter, plan: GenerationPlan, generations: list[Generation]) -> None:
    """What a request generated so far, for its usage record (a failure's is 0) and its trace."""
    meter.prompt_tokens = plan.prompt_tokens
    meter.completion_tokens = sum(g.finished.completion_tokens for g in generations if g.finished)
