"""POST /v1/infer, Alveare's native endpoint: a specialist and a prompt to one plain answer. A thinking
model's <think> block goes to `reasoning`, apart from `result`, as chat completions split it."""

from __future__ import annotations

import time
from functools import cached_property

from appliance.core import protocol as p
from appliance.serving import reasoning
from appliance.serving.catalogue import Catalogue
from appliance.serving.flow import Flow, new_id
from appliance.serving.metering import MeteredCall
from appliance.serving.prompting import GenerationPlan, Prompter, checked_text
from appliance.serving.shapes import Shapes
from appliance.store import Principal


class Infer:
    def __init__(
        self, catalogue: Catalogue, prompter: Prompter, flow: Flow, shapes: Shapes, *, reasoning_format: str = "auto"
    ) -> None:
        self.catalogue = catalogue
        self.prompter = prompter
        self.flow = flow
        self.shapes = shapes
        self.reasoning_format = reasoning_format

    @cached_property
    def thinking(self) -> reasoning.Thinking | None:
        """How the model thinks (asked once it is loaded, the model being fixed); None: no block to split."""
        return reasoning.of_model(self.prompter.engine, self.reasoning_format)

    def prepare(self, principal: Principal, req: p.InferRequest) -> GenerationPlan:
        specialist = self.catalogue.resolve(principal, req.specialist, param="specialist")
        prompter = self.prompter
        prompter.check_loaded()
        # The specialist's answer shape (classify's labels, extract's JSON), or the request's labels.
        grammar, labels = self.shapes.grammar(specialist, None, req.labels)
        thinking = self.thinking
        if grammar and thinking is not None:  # the shape after the thinking block, not inside it
            grammar = reasoning.grammar(grammar, thinking)
            prompter.engine.check_grammar(grammar)
        system = prompter.with_labels(self.catalogue.system_prompt(principal, specialist), req.labels)
        preamble = prompter.preamble(specialist, system)
        prompt, shared = prompter.tokenize_chat(preamble, [("user", checked_text(req.prompt, "prompt"))])
        default = prompter.label_budget(labels, specialist.max_tokens) if labels else specialist.max_tokens
        max_tokens = prompter.fit(prompt, req.max_tokens, default, "prompt")
        sampling = prompter.sampling(specialist, req.temperature, None, grammar=grammar)
        stop = prompter.chat_stop_list(None, specialist.stop, shaped=bool(grammar))
        request = prompter.request(
            prompt,
            max_tokens,
            stop,
            sampling,
            specialist=specialist.name,
            cache_prefix=shared,
            lookup=specialist.prompt_lookup,
        )
        return GenerationPlan(specialist, specialist.name, [request], len(prompt))

    async def complete(self, call: MeteredCall, req: p.InferRequest) -> p.InferResponse:
        t0 = time.perf_counter()
        plan, (outcome,), usage = await self.flow.generate(call, lambda: self.prepare(call.principal, req))
        thought, text = None, outcome.text
        thinking = self.thinking
        if thinking is not None:
            thought, text = reasoning.split(thinking, text)
        return p.InferResponse(
            id=new_id("inf"),
            specialist=plan.specialist.name,
            result=text.strip(),
            tokens_used=usage.total_tokens,
            latency_ms=round((time.perf_counter() - t0) * 1000),
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            finish_reason=outcome.finished.finish_reason,
            reasoning=thought,
        )
