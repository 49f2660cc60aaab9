"""Serving: the job objects wired together for the API, and (until they get modules of their own)
the three endpoints: prepare a request, run it metered, render its answer or its stream."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Callable

from appliance import protocol as p
from appliance.errors import GenerationTimeout, InvalidRequest, ServerError
from appliance.hive.types import Engine, Finished, Generation, SamplingParams
from appliance.limits import QuotaBook, RateLimiter
from appliance.serving.catalogue import Catalogue
from appliance.serving.metering import Call, Meter, Metering
from appliance.serving.prompting import Plan, Prompter
from appliance.serving.runner import Outcome, Runner, cancel, merge
from appliance.serving.status import Status
from appliance.serving.traffic import Traffic
from appliance.settings import Settings
from appliance.specialists import Specialists
from appliance.store import Principal, Store


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


class Serving:
    def __init__(self, settings: Settings, engine: Engine, specialists: Specialists, store: Store) -> None:
        timeout_s = settings.request_timeout_s
        traffic = Traffic()
        self.catalogue = Catalogue(specialists, store, engine, created=int(time.time()))
        self.metering = Metering(RateLimiter(), QuotaBook(), store, traffic, webhook_url=settings.webhook_url)
        self.status = Status(engine, specialists, traffic)
        self.prompter = Prompter(engine, timeout_s=timeout_s)
        self.runner = Runner(engine, timeout_s=timeout_s)

    # ------------------------------------------------------------ preparation
    def prepare_chat(self, principal: Principal, req: p.ChatCompletionRequest) -> Plan:
        specialist = self.catalogue.resolve(principal, req.model)
        self.prompter.check_loaded()
        if req.tools and req.tool_choice != "none":
            raise InvalidRequest("Function calling (tools) is not available yet on this appliance.", param="tools")
        if req.response_format is not None and req.response_format.type != "text":
            raise InvalidRequest(
                f"response_format '{req.response_format.type}' is not available yet on this appliance.",
                param="response_format",
            )
        if req.logprobs:
            raise InvalidRequest("logprobs are not available yet on this appliance.", param="logprobs")
        prompter = self.prompter
        preamble, conversation = prompter.chat_turns(
            specialist, self.catalogue.system_prompt(principal, specialist), req.messages
        )
        prompt, shared = prompter.tokenize_chat(preamble, conversation)
        explicit = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
        param = "max_completion_tokens" if req.max_completion_tokens is not None else "messages"
        max_tokens = prompter.fit(prompt, explicit, specialist.max_tokens, param)
        requests = prompter.requests(
            prompt,
            max_tokens,
            prompter.stop_list(req.stop, specialist.stop),
            prompter.sampling(specialist, req.temperature, req.top_p, req),
            req.n or 1,
            cache_prefix=shared,
            lookup=specialist.prompt_lookup,
            stream=bool(req.stream),
        )
        return Plan(specialist, req.model, requests, len(prompt))

    def prepare_completion(self, principal: Principal, req: p.CompletionRequest) -> Plan:
        specialist = self.catalogue.resolve(principal, req.model)
        self.prompter.check_loaded()
        if req.suffix:
            raise InvalidRequest("suffix is not supported.", param="suffix")
        if req.logprobs:
            raise InvalidRequest("logprobs are not available yet on this appliance.", param="logprobs")
        if req.best_of not in (None, 1):
            raise InvalidRequest("best_of is not supported; use n.", param="best_of")
        prompter = self.prompter
        prompt = prompter.tokenize(req.prompt if isinstance(req.prompt, str) else req.prompt[0])
        if not prompt:
            raise InvalidRequest("prompt must not be empty.", param="prompt")
        max_tokens = prompter.fit(prompt, req.max_tokens, 16, "prompt")
        requests = prompter.requests(
            prompt,
            max_tokens,
            prompter.stop_list(req.stop, []),
            prompter.sampling(specialist, req.temperature, req.top_p, req),
            req.n or 1,
            stream=bool(req.stream),
        )
        return Plan(specialist, req.model, requests, len(prompt))

    def prepare_infer(self, principal: Principal, req: p.InferRequest) -> Plan:
        specialist = self.catalogue.resolve(principal, req.specialist, param="specialist")
        prompter = self.prompter
        prompter.check_loaded()
        preamble = prompter.preamble(specialist, self.catalogue.system_prompt(principal, specialist))
        prompt, shared = prompter.tokenize_chat(preamble, [("user", req.prompt)])
        max_tokens = prompter.fit(prompt, req.max_tokens, specialist.max_tokens, "prompt")
        sampling = SamplingParams(
            temperature=specialist.temperature if req.temperature is None else req.temperature,
            top_p=specialist.top_p,
        )
        requests = prompter.requests(
            prompt, max_tokens, list(specialist.stop), sampling, 1, cache_prefix=shared, lookup=specialist.prompt_lookup
        )
        return Plan(specialist, specialist.name, requests, len(prompt))

    # ------------------------------------------------------------ endpoints
    async def _generate(self, call: Call, prepare: Callable[[], Plan]) -> tuple[Plan, list[Outcome], p.Usage]:
        """Prepare, admit, run and meter one non-streaming request."""
        meter = Meter(call)
        with self.metering.metered(meter):
            plan = prepare()
            self.metering.admit(meter, plan.specialist.name, plan.token_estimate)
            outcomes = await self.runner.run(plan.requests)
            usage = _usage(plan, outcomes)
            meter.prompt_tokens, meter.completion_tokens = usage.prompt_tokens, usage.completion_tokens
        await self.metering.succeeded(meter)
        return plan, outcomes, usage

    async def chat_completion(self, call: Call, req: p.ChatCompletionRequest) -> p.ChatCompletion:
        plan, outcomes, usage = await self._generate(call, lambda: self.prepare_chat(call.principal, req))
        return p.ChatCompletion(
            id=new_id("chatcmpl"),
            created=int(time.time()),
            model=plan.model,
            choices=[
                p.ChatChoice(
                    index=i, message=p.AssistantMessage(content=o.text), finish_reason=o.finished.finish_reason
                )
                for i, o in enumerate(outcomes)
            ],
            usage=usage,
        )

    async def completion(self, call: Call, req: p.CompletionRequest) -> p.Completion:
        plan, outcomes, usage = await self._generate(call, lambda: self.prepare_completion(call.principal, req))
        prefix = (req.prompt if isinstance(req.prompt, str) else req.prompt[0]) if req.echo else ""
        return p.Completion(
            id=new_id("cmpl"),
            created=int(time.time()),
            model=plan.model,
            choices=[
                p.CompletionChoice(index=i, text=prefix + o.text, finish_reason=o.finished.finish_reason)
                for i, o in enumerate(outcomes)
            ],
            usage=usage,
        )

    async def infer(self, call: Call, req: p.InferRequest) -> p.InferResponse:
        t0 = time.perf_counter()
        plan, (outcome,), usage = await self._generate(call, lambda: self.prepare_infer(call.principal, req))
        return p.InferResponse(
            id=new_id("inf"),
            specialist=plan.specialist.name,
            result=outcome.text.strip(),
            tokens_used=usage.total_tokens,
            latency_ms=round((time.perf_counter() - t0) * 1000),
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            finish_reason=outcome.finished.finish_reason,
        )

    # ------------------------------------------------------------ streaming
    def _start(self, call: Call, prepare: Callable[[], Plan]) -> tuple[Meter, Plan, list[Generation]]:
        """Everything that can fail before the first token raises here, before the response starts."""
        meter = Meter(call)
        with self.metering.metered(meter):
            plan = prepare()
            self.metering.admit(meter, plan.specialist.name, plan.token_estimate)
            generations = self.runner.start(plan.requests)
        return meter, plan, generations

    def stream_chat(self, call: Call, req: p.ChatCompletionRequest) -> AsyncIterator[bytes]:
        """SSE events exactly as OpenAI sends them."""
        meter, plan, generations = self._start(call, lambda: self.prepare_chat(call.principal, req))
        chunk_id, created = new_id("chatcmpl"), int(time.time())
        include_usage = bool(req.stream_options and req.stream_options.include_usage)

        def chunk(choices: list[p.ChunkChoice], usage: p.Usage | None = None) -> bytes:
            return _sse(
                p.ChatCompletionChunk(id=chunk_id, created=created, model=plan.model, choices=choices, usage=usage)
            )

        def first(i: int) -> bytes:
            return chunk([p.ChunkChoice(index=i, delta=p.Delta(role="assistant", content=""))])

        def piece(i: int, text: str) -> bytes:
            return chunk([p.ChunkChoice(index=i, delta=p.Delta(content=text))])

        def last(i: int, finished: Finished) -> bytes:
            return chunk([p.ChunkChoice(index=i, delta=p.Delta(), finish_reason=finished.finish_reason)])

        return self._stream(meter, plan, generations, include_usage, first, piece, last, chunk)

    def stream_completion(self, call: Call, req: p.CompletionRequest) -> AsyncIterator[bytes]:
        meter, plan, generations = self._start(call, lambda: self.prepare_completion(call.principal, req))
        cid, created = new_id("cmpl"), int(time.time())
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        echo = (req.prompt if isinstance(req.prompt, str) else req.prompt[0]) if req.echo else None

        def chunk(choices: list[p.CompletionChoice], usage: p.Usage | None = None) -> bytes:
            return _sse(p.Completion(id=cid, created=created, model=plan.model, choices=choices, usage=usage))

        def first(i: int) -> bytes | None:
            return chunk([p.CompletionChoice(index=i, text=echo, finish_reason=None)]) if echo else None

        def piece(i: int, text: str) -> bytes:
            return chunk([p.CompletionChoice(index=i, text=text, finish_reason=None)])

        def last(i: int, finished: Finished) -> bytes:
            return chunk([p.CompletionChoice(index=i, text="", finish_reason=finished.finish_reason)])

        return self._stream(meter, plan, generations, include_usage, first, piece, last, chunk)

    async def _stream(
        self,
        meter: Meter,
        plan: Plan,
        generations: list[Generation],
        include_usage: bool,
        first: Callable[[int], bytes | None],
        piece: Callable[[int, str], bytes],
        last: Callable[[int, Finished], bytes],
        chunk: Callable[..., bytes],
    ) -> AsyncIterator[bytes]:
        status = 200
        try:
            for i in range(len(generations)):
                head = first(i)
                if head:
                    yield head
            async for i, item in merge(generations):
                if isinstance(item, Finished):
                    if item.finish_reason in ("timeout", "error"):
                        try:
                            self.runner.raise_for(item)
                        except (GenerationTimeout, ServerError) as exc:
                            status = exc.status
                            yield _sse_error(exc)
                            return
                    yield last(i, item)
                else:
                    yield piece(i, item)
            if include_usage:
                outcomes = [Outcome("", g.finished) for g in generations if g.finished is not None]
                yield chunk([], _usage(plan, outcomes))
            yield b"data: [DONE]\n\n"
        finally:
            # Client gone or stream done: either way free the slots now, and meter what was generated.
            cancel(generations)
            meter.prompt_tokens = plan.prompt_tokens
            meter.completion_tokens = sum(g.finished.completion_tokens for g in generations if g.finished)
            self.metering.finish(meter, status)


def _usage(plan: Plan, outcomes: list[Outcome]) -> p.Usage:
    completion = sum(o.finished.completion_tokens for o in outcomes)
    return p.Usage(
        prompt_tokens=plan.prompt_tokens,
        completion_tokens=completion,
        total_tokens=plan.prompt_tokens + completion,
    )


def _sse(value: object) -> bytes:
    return b"data: " + p.encode(value) + b"\n\n"


def _sse_error(exc: GenerationTimeout | ServerError) -> bytes:
    body = p.ErrorEnvelope(
        p.ErrorBody(message=exc.message, type=exc.type, param=exc.param, code=exc.code, request_id=None)
    )
    return b"data: " + p.encode(body) + b"\n\n"
