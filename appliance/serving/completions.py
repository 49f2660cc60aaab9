"""POST /v1/completions (legacy): the raw prompt to a plan, the answer as a text_completion, whole
or as events."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from appliance import protocol as p
from appliance.errors import InvalidRequest
from appliance.hive.types import Chunk, Finished
from appliance.serving.catalogue import Catalogue
from appliance.serving.flow import Flow, new_id, sse
from appliance.serving.metering import Call
from appliance.serving.prompting import Plan, Prompter
from appliance.store import Principal

# OpenAI's legacy endpoint: max_tokens defaults to 16 (the request type's default; this for an explicit null).
DEFAULT_MAX_TOKENS = 16


def _prompt_text(req: p.CompletionRequest) -> str:
    return req.prompt if isinstance(req.prompt, str) else req.prompt[0]


class CompletionStream:
    """text_completion events: the echoed prompt first (if asked for), then text pieces, a finish
    event per choice, and the usage event when the client asked for it."""

    def __init__(self, model: str, *, echo: str | None, include_usage: bool) -> None:
        self.id, self.created = new_id("cmpl"), int(time.time())
        self.model = model
        self.echo = echo
        self.include_usage = include_usage

    def _chunk(self, choices: list[p.CompletionChoice], usage: p.Usage | None = None) -> bytes:
        return sse(p.Completion(id=self.id, created=self.created, model=self.model, choices=choices, usage=usage))

    def start(self, index: int) -> bytes | None:
        return self._chunk([p.CompletionChoice(index=index, text=self.echo, finish_reason=None)]) if self.echo else None

    def content(self, index: int, chunk: Chunk) -> bytes | None:
        return self._chunk([p.CompletionChoice(index=index, text=chunk.text, finish_reason=None)])

    def finish(self, index: int, finished: Finished) -> bytes:
        return self._chunk([p.CompletionChoice(index=index, text="", finish_reason=finished.finish_reason)])

    def usage(self, usage: p.Usage) -> bytes | None:
        return self._chunk([], usage) if self.include_usage else None


class Completions:
    def __init__(self, catalogue: Catalogue, prompter: Prompter, flow: Flow) -> None:
        self.catalogue = catalogue
        self.prompter = prompter
        self.flow = flow

    def prepare(self, principal: Principal, req: p.CompletionRequest) -> Plan:
        """The prompt as raw text, no system prompt; the specialist supplies sampling defaults."""
        specialist = self.catalogue.resolve(principal, req.model)
        self.prompter.check_loaded()
        if req.suffix:
            raise InvalidRequest("suffix is not supported.", param="suffix")
        if req.logprobs:
            raise InvalidRequest("logprobs are not available yet on this appliance.", param="logprobs")
        if req.best_of not in (None, 1):
            raise InvalidRequest("best_of is not supported; use n.", param="best_of")
        prompter = self.prompter
        prompt = prompter.tokenize(_prompt_text(req))
        if not prompt:
            raise InvalidRequest("prompt must not be empty.", param="prompt")
        max_tokens = prompter.fit(prompt, req.max_tokens, DEFAULT_MAX_TOKENS, "prompt")
        request = prompter.request(
            prompt,
            max_tokens,
            prompter.stop_list(req.stop, []),
            prompter.sampling(specialist, req.temperature, req.top_p, req),
            stream=bool(req.stream),
        )
        return Plan(specialist, req.model, [request], len(prompt), n=req.n or 1)

    async def complete(self, call: Call, req: p.CompletionRequest) -> p.Completion:
        plan, outcomes, usage = await self.flow.generate(call, lambda: self.prepare(call.principal, req))
        prefix = _prompt_text(req) if req.echo else ""
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

    def stream(self, call: Call, req: p.CompletionRequest) -> AsyncIterator[bytes]:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        echo = _prompt_text(req) if req.echo else None
        return self.flow.stream(
            call,
            lambda: self.prepare(call.principal, req),
            lambda plan: CompletionStream(plan.model, echo=echo, include_usage=include_usage),
        )
