"""POST /v1/chat/completions: the request to a plan, the answer as a chat.completion or as
chat.completion.chunk events."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import msgspec

from appliance.core import protocol as p
from appliance.engine.interface import Chunk, Finished, TokenInfo
from appliance.serving import reasoning, tool_formats, tools
from appliance.serving.catalogue import Catalogue
from appliance.serving.flow import Flow, new_id, sse
from appliance.serving.logprobs import chat as chat_logprob_content
from appliance.serving.metering import MeteredCall
from appliance.serving.prompting import GenerationPlan, Prompter
from appliance.serving.shapes import Shapes, chat_logprobs
from appliance.store import Principal


@dataclass(frozen=True)
class Tooling:
    """How the model's chat template takes tools, and whether it thinks."""

    # It renders the tool definitions itself (else they go in the system turn).
    definitions: bool
    # It renders earlier calls and tool results itself (else the Hermes fallback's form).
    history: bool
    # How calls are written: the family's own format where the template shows one, else Hermes.
    format: tool_formats.CallFormat
    # How the model thinks, where its <think> block goes to reasoning_content (None: no block to split).
    thinking: reasoning.Thinking | None


@dataclass(frozen=True)
class ChatPlan(GenerationPlan):
    # The request's tools when it may call them (None: plain text).
    tools: tools.ToolPlan | None = None
    # How the model thinks, where its <think> block goes to reasoning_content (None: it stays in content).
    thinking: reasoning.Thinking | None = None


class ChoiceDeltas:
    """What each streamed choice adds, as OpenAI's chat deltas: the reasoning block apart (when the
    model thinks), text, and tool-call deltas (calls read from what follows the reasoning only). Text
    held back (a call's start, a possible repeat, a marker) is sent later, with its tokens."""

    def __init__(self, tool_plan: tools.ToolPlan | None, thinking: reasoning.Thinking | None) -> None:
        self.tool_plan = tool_plan
        self.thinking = thinking
        self.calls: dict[int, tools.CallStream] = {}
        self.splits: dict[int, reasoning.ReasoningSplit] = {}
        self.held: dict[int, list[TokenInfo]] = {}

    def feed(self, index: int, chunk: Chunk) -> tuple[p.Delta, list[TokenInfo]] | None:
        """The delta and its tokens for this piece of choice `index`, or None while it is all held."""
        if self.tool_plan is None and self.thinking is None:
            return p.Delta(content=chunk.text), chunk.tokens
        thought, text = "", chunk.text
        if self.thinking is not None:
            split = self.splits.setdefault(index, reasoning.ReasoningSplit(self.thinking))
            thought, text = split.feed(text)
        content: str | None = text or None
        deltas: list[p.ToolCallDelta] = []
        if self.tool_plan is not None:
            plan = self.tool_plan
            calls = self.calls.setdefault(index, tools.CallStream(plan.mode, plan.format, buffer=plan.lead))
            content, deltas = calls.feed(text) if text else (None, [])
        tokens = self.held.setdefault(index, [])
        tokens += chunk.tokens
        if not thought and content is None and not deltas:
            return None
        self.held[index] = []
        return p.Delta(content=content, tool_calls=deltas or None, reasoning_content=thought or None), tokens

    def finish(self, index: int, reason: str) -> tuple[p.Delta, str]:
        """The last delta of choice `index` (what the reasoning split still held) and its finish reason."""
        if index in self.calls:
            reason = self.calls[index].finish_reason(reason)
        if index not in self.splits:
            return p.Delta(), reason
        thought, text = self.splits[index].flush()
        content = text if text and self.tool_plan is None else None
        return p.Delta(content=content, reasoning_content=thought or None), reason


class ChatStream:
    """chat.completion.chunk events: the role first, then content deltas, a finish chunk per
    choice, and the usage chunk when the client asked for it (with a thinking model's reasoning
    tokens, counted from each choice's text)."""

    def __init__(
        self,
        model: str,
        *,
        include_usage: bool,
        tokenize: Callable[[str], list[int]],
        tool_plan: tools.ToolPlan | None = None,
        thinking: reasoning.Thinking | None = None,
    ) -> None:
        self.id, self.created = new_id("chatcmpl"), int(time.time())
        self.model = model
        self.include_usage = include_usage
        self.deltas = ChoiceDeltas(tool_plan, thinking)
        self.thinking = thinking
        self.tokenize = tokenize
        # Each choice's text as generated, while its reasoning tokens are to be counted; then the count.
        self.texts: dict[int, str] = {}
        self.spent: dict[int, int] = {}

    def _chunk(self, choices: list[p.ChunkChoice], usage: p.Usage | None = None) -> bytes:
        return sse(
            p.ChatCompletionChunk(id=self.id, created=self.created, model=self.model, choices=choices, usage=usage)
        )

    def start(self, index: int) -> bytes:
        return self._chunk([p.ChunkChoice(index=index, delta=p.Delta(role="assistant", content=""))])

    def content(self, index: int, chunk: Chunk) -> bytes | None:
        if self.include_usage and self.thinking is not None:
            self.texts[index] = self.texts.get(index, "") + chunk.text
        found = self.deltas.feed(index, chunk)
        if found is None:
            return None
        delta, tokens = found
        logprobs = chat_logprob_content(tokens) if tokens else None
        return self._chunk([p.ChunkChoice(index=index, delta=delta, logprobs=logprobs)])

    def finish(self, index: int, finished: Finished) -> bytes:
        if index in self.texts:
            text = self.texts.pop(index)
            self.spent[index] = reasoning.tokens(self.thinking, text, finished.completion_tokens, self.tokenize)
        delta, reason = self.deltas.finish(index, finished.finish_reason)
        return self._chunk([p.ChunkChoice(index=index, delta=delta, finish_reason=reason)])

    def usage(self, usage: p.Usage) -> bytes | None:
        return self._chunk([], reasoning.with_tokens(usage, sum(self.spent.values()))) if self.include_usage else None


class ChatCompletions:
    def __init__(
        self, catalogue: Catalogue, prompter: Prompter, flow: Flow, shapes: Shapes, *, reasoning_format: str = "auto"
    ) -> None:
        self.catalogue = catalogue
        self.prompter = prompter
        self.flow = flow
        self.shapes = shapes
        self.reasoning_format = reasoning_format
        self._tooling: Tooling | None = None

    def tooling(self) -> Tooling:
        """How this model's template takes tools and thinks (asked once, the model being fixed)."""
        if self._tooling is None:
            engine = self.prompter.engine
            definitions = tools.native_template(engine)
            found = tool_formats.detect(engine.chat_template)
            thinking = reasoning.of_model(engine, self.reasoning_format)
            self._tooling = Tooling(
                definitions, definitions or found is not None, found or tool_formats.HERMES, thinking
            )
        return self._tooling

    def prepare(self, principal: Principal, req: p.ChatCompletionRequest) -> ChatPlan:
        specialist = self.catalogue.resolve(principal, req.model)
        self.prompter.check_loaded()
        self.prompter.check_turns(len(req.messages), "messages")
        # Everything that can be refused is checked before the prompt is built or anything metered.
        grammar, labels = self.shapes.grammar(specialist, req.response_format, req.labels)
        tooling = self.tooling()
        thinking = tooling.thinking
        # Tools over the answer's shape: a forced call replaces it, with "auto" it shapes the text branch.
        # A forced call's fixed start goes in the prompt, unless a thinking block must come first.
        tool_plan = tools.plan(
            self.prompter.engine,
            req,
            native=tooling.definitions,
            text_grammar=grammar,
            fmt=tooling.format,
            lead=thinking is None,
        )
        if tool_plan is not None:
            grammar = tool_plan.grammar
        if grammar and thinking is not None:  # a call or a shape after the thinking block, not inside it
            grammar = reasoning.grammar(grammar, thinking)
            self.prompter.engine.check_grammar(grammar)
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
        preamble, conversation = prompter.chat_turns(
            specialist, system, req.messages, lambda m, text, i: tools.history_turn(m, text, i, native=tooling.history)
        )
        if tool_plan is not None and not tooling.definitions:
            preamble[0] = ("system", f"{preamble[0][1]}\n\n{tool_plan.system_text()}")
        template_tools = tool_plan.template_tools if tool_plan else None
        lead = tool_plan.lead if tool_plan else ""
        prompt, shared = prompter.tokenize_chat(preamble, conversation, template_tools, lead=lead)
        explicit = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
        param = "max_completion_tokens" if req.max_completion_tokens is not None else "messages"
        default = prompter.label_budget(labels, specialist.max_tokens) if labels else specialist.max_tokens
        max_tokens = prompter.fit(prompt, explicit, default, param)
        request = prompter.request(
            prompt,
            max_tokens,
            # A label, JSON or a tool call ends where its grammar does; the profile's stop strings could cut it.
            prompter.chat_stop_list(req.stop, specialist.stop, shaped=bool(grammar)),
            sampling,
            specialist=specialist.name,
            cache_prefix=shared,
            lookup=specialist.prompt_lookup,
            stream=bool(req.stream),
            # Parallel calls end at the first repeat, not at max_tokens.
            stop_rule=tools.RepeatStop(tool_plan.format, lead)
            if tool_plan is not None and tool_plan.parallel
            else None,
            # A format written with special tokens (Mistral's [TOOL_CALLS]) is read from their text.
            special_text=tool_plan is not None,
        )
        return ChatPlan(specialist, req.model, [request], len(prompt), n=req.n or 1, tools=tool_plan, thinking=thinking)

    async def complete(self, call: MeteredCall, req: p.ChatCompletionRequest) -> p.ChatCompletion:
        plan, outcomes, usage = await self.flow.generate(call, lambda: self.prepare(call.principal, req))
        wants_logprobs = bool(req.logprobs)
        thinking = plan.thinking if isinstance(plan, ChatPlan) else None
        tokenize = self.prompter.engine.tokenize
        spent = sum(reasoning.tokens(thinking, o.text, o.finished.completion_tokens, tokenize) for o in outcomes)
        return p.ChatCompletion(
            id=new_id("chatcmpl"),
            created=int(time.time()),
            model=plan.model,
            choices=[
                self.choice(plan, i, o.text, o.finished.finish_reason, o.tokens if wants_logprobs else None)
                for i, o in enumerate(outcomes)
            ],
            usage=reasoning.with_tokens(usage, spent),
        )

    @staticmethod
    def choice(
        plan: GenerationPlan, index: int, text: str, finish_reason: str, tokens: list[TokenInfo] | None
    ) -> p.ChatChoice:
        tool_plan = plan.tools if isinstance(plan, ChatPlan) else None
        thinking = plan.thinking if isinstance(plan, ChatPlan) else None
        thought = None
        if thinking is not None:
            thought, text = reasoning.split(thinking, text)
        message, reason = p.AssistantMessage(content=text), finish_reason
        if tool_plan is not None:  # calls are read from what follows the reasoning only
            message, reason = tools.answer(tool_plan, text, finish_reason)
        if thought is not None:
            message = msgspec.structs.replace(message, reasoning_content=thought)
        # Log-probabilities of every generated token, a call's included (under its grammar).
        logprobs = chat_logprob_content(tokens) if tokens is not None else None
        return p.ChatChoice(index=index, message=message, finish_reason=reason, logprobs=logprobs)

    def stream(self, call: MeteredCall, req: p.ChatCompletionRequest) -> AsyncIterator[bytes]:
        """SSE events exactly as OpenAI sends them; what fails before the first token raises here."""
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return self.flow.stream(
            call,
            lambda: self.prepare(call.principal, req),
            lambda plan: ChatStream(
                plan.model,
                include_usage=include_usage,
                tokenize=self.prompter.engine.tokenize,
                tool_plan=plan.tools if isinstance(plan, ChatPlan) else None,
                thinking=plan.thinking if isinstance(plan, ChatPlan) else None,
            ),
        )
