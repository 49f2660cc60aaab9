"""POST /v1/completions (legacy): the raw prompt to a plan, the answer as a text_completion, whole
or as events."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from appliance.core import protocol as p
from appliance.core.errors import InvalidRequest
from appliance.engine.interface import Chunk, Finished
from appliance.serving.catalogue import Catalogue
from appliance.serving.flow import Flow, new_id, sse
from appliance.serving.logprobs import legacy as legacy_logprobs_of
from appliance.serving.metering import MeteredCall
from appliance.serving.prompting import GenerationPlan, Prompter, checked_text
from appliance.serving.shapes import Shapes, legacy_logprobs
from appliance.store import Principal

# OpenAI's legacy endpoint: max_tokens defaults to 16 (the request type's default; this for an explicit null).
DEFAULT_MAX_TOKENS = 16


def _prompts(req: p.CompletionRequest) -> list[str]:
    return [req.prompt] if isinstance(req.prompt, str) else list(req.prompt)


class CompletionStream:
    """text_completion events: the echoed prompt first (if asked for), then text pieces (with legacy
    logprobs when asked for), a finish event per choice, and the usage event when asked for."""

    def __init__(self, model: str, *, echo: list[str] | None, n: int, include_usage: bool) -> None:
        self.id, self.created = new_id("cmpl"), int(time.time())
        self.model = model
        self.echo = echo
        self.n = n
        self.include_usage = include_usage
        self.offsets: dict[int, int] = {}

    def _chunk(self, choices: list[p.CompletionChoice], usage: p.Usage | None = None) -> bytes:
        return sse(p.Completion(id=self.id, created=self.created, model=self.model, choices=choices, usage=usage))

    def start(self, index: int) -> bytes | None:
        if not self.echo:
            return None
        text = self.echo[index // self.n]  # choice index = prompt index * n + choice
        self.offsets[index] = len(text)
        return self._chunk([p.CompletionChoice(index=index, text=text, finish_reason=None)])

    def content(self, index: int, chunk: Chunk) -> bytes | None:
        logprobs = None
        if chunk.tokens:
            logprobs = legacy_logprobs_of(chunk.tokens, offset=self.offsets.get(index, 0))
            self.offsets[index] = logprobs.text_offset[-1] + len(logprobs.tokens[-1])
        return self._chunk([p.CompletionChoice(index=index, text=chunk.text, finish_reason=None, logprobs=logprobs)])

    def finish(self, index: int, finished: Finished) -> bytes:
        return self._chunk([p.CompletionChoice(index=index, text="", finish_reason=finished.finish_reason)])

    def usage(self, usage: p.Usage) -> bytes | None:
        return self._chunk([], usage) if self.include_usage else None


class Completions:
    def __init__(self, catalogue: Catalogue, prompter: Prompter, flow: Flow, shapes: Shapes) -> None:
        self.catalogue = catalogue
        self.prompter = prompter
        self.flow = flow
        self.shapes = shapes

    def prepare(self, principal: Principal, req: p.CompletionRequest) -> GenerationPlan:
        """The prompt as raw text, no system prompt; the specialist supplies sampling defaults."""
        specialist = self.catalogue.resolve(principal, req.model)
        self.prompter.check_loaded()
        if req.suffix:
            raise InvalidRequest(
                "suffix (insertion) is not supported: the model has no fill-in-the-middle mode.", param="suffix"
            )
        if req.best_of not in (None, 1):
            raise InvalidRequest("best_of is not supported; use n.", param="best_of")
        if req.echo and req.logprobs is not None:
            raise InvalidRequest(
                "echo with logprobs is not supported: log-probabilities are computed for generated tokens only.",
                param="logprobs",
            )
        prompter = self.prompter
        sampling = prompter.sampling(
            specialist,
            req.temperature,
            req.top_p,
            req,
            logprobs=legacy_logprobs(req.logprobs),
            logit_bias=self.shapes.logit_bias(req.logit_bias),
        )
        stop = prompter.stop_list(req.stop, [])
        requests = []
        prompt_tokens = 0
        for i, text in enumerate(_prompts(req)):
            param = "prompt" if isinstance(req.prompt, str) else f"prompt[{i}]"
            prompt = prompter.tokenize(checked_text(text, param))
            if not prompt:
                raise InvalidRequest(f"{param} must not be empty.", param=param)
            max_tokens = prompter.fit(prompt, req.max_tokens, DEFAULT_MAX_TOKENS, param)
            requests.append(
                prompter.request(
                    prompt, max_tokens, stop, sampling, specialist=specialist.name, stream=bool(req.stream)
                )
            )
            prompt_tokens += len(prompt)
        return GenerationPlan(specialist, req.model, requests, prompt_tokens, n=req.n or 1)

    async def complete(self, call: MeteredCall, req: p.CompletionRequest) -> p.Completion:
        plan, outcomes, usage = await self.flow.generate(call, lambda: self.prepare(call.principal, req))
        prompts = _prompts(req)
        choices = []
        for i, o in enumerate(outcomes):
            prefix = prompts[i // plan.n] if req.echo else ""
            logprobs = legacy_logprobs_of(o.tokens, offset=len(prefix)) if req.logprobs is not None else None
            choices.append(
                p.CompletionChoice(
                    index=i, text=prefix + o.text, finish_reason=o.finished.finish_reason, logprobs=logprobs
                )
            )
        return p.Completion(id=new_id("cmpl"), created=int(time.time()), model=plan.model, choices=choices, usage=usage)

    def stream(self, call: MeteredCall, req: p.CompletionRequest) -> AsyncIterator[bytes]:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        echo = _prompts(req) if req.echo else None
        return self.flow.stream(
            call,
            lambda: self.prepare(call.principal, req),
            lambda plan: CompletionStream(plan.model, echo=echo, n=plan.n, include_usage=include_usage),
        )
