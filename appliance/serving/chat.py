"""POST /v1/chat/completions: the request to a plan, the answer as a chat.completion or as
chat.completion.chunk events."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from appliance import protocol as p
from appliance.errors import InvalidRequest
from appliance.hive.types import Chunk, Finished
from appliance.serving.catalogue import Catalogue
from appliance.serving.flow import Flow, new_id, sse
from appliance.serving.logprobs import chat as chat_logprob_content
from appliance.serving.metering import Call
from appliance.serving.prompting import Plan, Prompter
from appliance.serving.shapes import Shapes, chat_logprobs
from appliance.store import Principal


class ChatStream:
    """chat.completion.chunk events: the role first, then content deltas, a finish chunk per
    choice, and the usage chunk when the client asked for it."""

    def __init__(self, model: str, *, include_usage: bool) -> None:
        self.id, self.created = new_id("chatcmpl"), int(time.time())
        self.model = model
        self.include_usage = include_usage

    def _chunk(self, choices: list[p.ChunkChoice], usage: p.Usage | None = None) -> bytes:
        return sse(
            p.ChatCompletionChunk(id=self.id, created=self.created, model=self.model, choices=choices, usage=usage)
        )

    def start(self, index: int) -> bytes:
        return self._chunk([p.ChunkChoice(index=index, delta=p.Delta(role="assistant", content=""))])

    def content(self, index: int, chunk: Chunk) -> bytes | None:
        logprobs = chat_logprob_content(chunk.tokens) if chunk.tokens else None
        return self._chunk([p.ChunkChoice(index=index, delta=p.Delta(content=chunk.text), logprobs=logprobs)])

    def finish(self, index: int, finished: Finished) -> bytes:
        return self._chunk([p.ChunkChoice(index=index, delta=p.Delta(), finish_reason=finished.finish_reason)])

    def usage(self, usage: p.Usage) -> bytes | None:
        return self._chunk([], usage) if self.include_usage else None


class ChatCompletions:
    def __init__(self, catalogue: Catalogue, prompter: Prompter, flow: Flow, shapes: Shapes) -> None:
        self.catalogue = catalogue
        self.prompter = prompter
        self.flow = flow
        self.shapes = shapes

    def prepare(self, principal: Principal, req: p.ChatCompletionRequest) -> Plan:
        specialist = self.catalogue.resolve(principal, req.model)
        self.prompter.check_loaded()
        self.prompter.check_turns(len(req.messages), "messages")
        if req.tools and req.tool_choice != "none":
            raise InvalidRequest("Function calling (tools) is not available yet on this appliance.", param="tools")
        # Everything that can be refused is checked before the prompt is built or anything metered.
        grammar, labels = self.shapes.grammar(specialist, req.response_format, req.labels)
        sampling = self.prompter.sampling(
            specialist,
            req.temperature,
            req.top_p,
            req,
            grammar=grammar,
            logprobs=chat_logprobs(req.logprobs, req.top_logprobs),
            logit_bias=self.shapes.logit_bias(req.logit_bias),
        )
        prompter = self.prompter
        system = prompter.with_labels(self.catalogue.system_prompt(principal, specialist), req.labels)
        preamble, conversation = prompter.chat_turns(specialist, system, req.messages)
        prompt, shared = prompter.tokenize_chat(preamble, conversation)
        explicit = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
        param = "max_completion_tokens" if req.max_completion_tokens is not None else "messages"
        default = prompter.label_budget(labels, specialist.max_tokens) if labels else specialist.max_tokens
        max_tokens = prompter.fit(prompt, explicit, default, param)
        request = prompter.request(
            prompt,
            max_tokens,
            # A label or JSON ends where its grammar does; the profile's stop strings could cut it.
            prompter.stop_list(req.stop, [] if grammar else specialist.stop),
            sampling,
            cache_prefix=shared,
            lookup=specialist.prompt_lookup,
            stream=bool(req.stream),
        )
        return Plan(specialist, req.model, [request], len(prompt), n=req.n or 1)

    async def complete(self, call: Call, req: p.ChatCompletionRequest) -> p.ChatCompletion:
        plan, outcomes, usage = await self.flow.generate(call, lambda: self.prepare(call.principal, req))
        wants_logprobs = bool(req.logprobs)
        return p.ChatCompletion(
            id=new_id("chatcmpl"),
            created=int(time.time()),
            model=plan.model,
            choices=[
                p.ChatChoice(
                    index=i,
                    message=p.AssistantMessage(content=o.text),
                    finish_reason=o.finished.finish_reason,
                    logprobs=chat_logprob_content(o.tokens) if wants_logprobs else None,
                )
                for i, o in enumerate(outcomes)
            ],
            usage=usage,
        )

    def stream(self, call: Call, req: p.ChatCompletionRequest) -> AsyncIterator[bytes]:
        """SSE events exactly as OpenAI sends them; what fails before the first token raises here."""
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return self.flow.stream(
            call,
            lambda: self.prepare(call.principal, req),
            lambda plan: ChatStream(plan.model, include_usage=include_usage),
        )
