"""POST /v1/responses, OpenAI's Responses API as its SDKs use it, stateless: the request becomes a chat
completion (the same keys, limits, metering, specialists, tools and shapes), and the answer a response
object, or its stream of response.* events.

Stateless: nothing is stored, so `previous_response_id` and `store: true` are refused with a 400 that
says to send the whole conversation in `input`. A thinking model's <think> block is a reasoning output
item before the answer's (its text in `content`), as OpenAI's reasoning models send theirs. Where
max_output_tokens cuts the answer, the item it cut (the reasoning, or the message) is "incomplete", as
the response is. The message's text carries its tokens' logprobs where `include` asks for them.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec

from appliance.core import protocol as p
from appliance.core.errors import ContextLengthExceeded, InvalidRequest
from appliance.engine.interface import Chunk, Finished, TokenInfo
from appliance.serving import logprobs, reasoning
from appliance.serving.chat import ChatCompletions, ChatPlan, ChoiceDeltas
from appliance.serving.flow import Flow
from appliance.serving.metering import MeteredCall
from appliance.serving.prompting import GenerationPlan
from appliance.serving.responses_request import PARAMS, chat_request, droppable
from appliance.store import Principal

OutputItem = p.ResponseReasoningItem | p.ResponseMessageItem | p.ResponseFunctionCallItem


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


# ---------------------------------------------------------------- the answer
def skeleton(req: p.ResponsesRequest, model: str, status: p.ResponseStatus) -> p.Response:
    """The response object as it starts: the request's settings echoed, no output yet."""
    return p.Response(
        id=new_id("resp"),
        created_at=int(time.time()),
        model=model,
        status=status,
        output=[],
        parallel_tool_calls=req.parallel_tool_calls is not False,
        tool_choice=req.tool_choice or "auto",
        tools=req.tools or [],
        instructions=req.instructions,
        max_output_tokens=req.max_output_tokens,
        temperature=req.temperature,
        top_p=req.top_p,
        text=req.text or {"format": {"type": "text"}},
        metadata=req.metadata or {},
        truncation=req.truncation or "disabled",
        top_logprobs=req.top_logprobs,
    )


def usage(used: p.Usage, reasoning_tokens: int = 0) -> p.ResponseUsage:
    cached = used.prompt_tokens_details.cached_tokens if used.prompt_tokens_details else 0
    return p.ResponseUsage(
        input_tokens=used.prompt_tokens,
        output_tokens=used.completion_tokens,
        total_tokens=used.total_tokens,
        input_tokens_details=p.ResponseInputTokensDetails(cached_tokens=cached),
        output_tokens_details=p.ResponseOutputTokensDetails(reasoning_tokens=reasoning_tokens),
    )


def thinking_of(plan: GenerationPlan) -> reasoning.Thinking | None:
    return plan.thinking if isinstance(plan, ChatPlan) else None


def status(cut: bool) -> p.ItemStatus:
    return "incomplete" if cut else "completed"


def finished(response: p.Response, finish_reason: str, used: p.Usage, reasoning_tokens: int = 0) -> p.Response:
    """`response` as it ends: completed, or incomplete where max_output_tokens cut it."""
    cut = finish_reason == "length"
    return msgspec.structs.replace(
        response,
        status="incomplete" if cut else "completed",
        incomplete_details=p.ResponseIncompleteDetails(reason="max_output_tokens") if cut else None,
        usage=usage(used, reasoning_tokens),
    )


def output_items(
    message: p.AssistantMessage, *, cut: bool, thought_cut: bool, tokens: list[TokenInfo]
) -> list[OutputItem]:
    """The reasoning (where the model thought), then the text (with its `tokens`' logprobs) and the
    calls. `cut`: max_output_tokens ended the answer; `thought_cut`: inside the reasoning block."""
    items: list[OutputItem] = []
    if message.reasoning_content:
        text = p.ResponseReasoningText(text=message.reasoning_content)
        items.append(p.ResponseReasoningItem(id=new_id("rs"), content=[text], status=status(thought_cut)))
    if message.content:
        part = p.ResponseOutputText(text=message.content, logprobs=logprobs.content(tokens))
        items.append(p.ResponseMessageItem(id=new_id("msg"), content=[part], status=status(cut)))
    for call in message.tool_calls or []:
        items.append(
            p.ResponseFunctionCallItem(
                id=new_id("fc"), call_id=call.id, name=call.function.name, arguments=call.function.arguments
            )
        )
    return items


class ResponsesStream:
    """response.* events: created and in_progress, then per output item its added event, deltas and done
    events (the reasoning's text, done as the answer starts; a message's text, a function call's
    arguments), and completed (or incomplete) with usage. The text's deltas carry their tokens'
    logprobs where they were asked for (the block's tokens are not the text's)."""

    def __init__(self, response: p.Response, plan: GenerationPlan, tokenize: Callable[[str], list[int]]) -> None:
        self.response = response
        self.thinking = thinking_of(plan)
        self.tokenize = tokenize
        self.deltas = ChoiceDeltas(plan.tools if isinstance(plan, ChatPlan) else None, self.thinking)
        self.seq = 0
        self.items: list[OutputItem] = []
        self.generated = ""  # the answer as the model wrote it, for its reasoning tokens
        self.thought = ""  # the reasoning item's text
        self.reasoning_at: int | None = None  # its output index while it is open
        self.text = ""  # the message item's text
        self.message_at: int | None = None  # its output index, once it is open
        self.tokens = logprobs.TextTokens()  # the generated tokens, with logprobs asked for
        self.written = 0  # bytes of text generated so far
        self.text_from: int | None = None  # where the message's text starts in them, once it does
        self.text_tokens: list[TokenInfo] = []  # the message's tokens so far
        self.calls: dict[int, int] = {}  # tool-call index -> output index
        self.reason = "stop"

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + p.encode(data) + b"\n\n"

    def start(self, index: int) -> bytes:
        return self._event("response.created", response=self.response) + self._event(
            "response.in_progress", response=self.response
        )

    def content(self, index: int, chunk: Chunk) -> bytes | None:
        self.generated += chunk.text
        self.written += len(chunk.text.encode())
        self.tokens.feed(chunk.tokens)
        found = self.deltas.feed(index, chunk)
        return self._delta(found[0]) or None if found else None

    def _delta(self, delta: p.Delta) -> bytes:
        out = b""
        if delta.reasoning_content:
            out += self._reasoning(delta.reasoning_content)
        if delta.content or delta.tool_calls:  # the answer starts: the reasoning is done
            out += self._reasoning_done()
        if delta.content:
            if self.message_at is None:
                item = p.ResponseMessageItem(id=new_id("msg"), content=[], status="in_progress")
                self.items.append(item)
                self.message_at = at = len(self.items) - 1
                out += self._event("response.output_item.added", output_index=at, item=item)
                part = p.ResponseOutputText(text="")
                out += self._event(
                    "response.content_part.added", item_id=item.id, output_index=at, content_index=0, part=part
                )
            self.text += delta.content
            # Nothing is held once the text flows, so the text so far ends where the generation does.
            if self.text_from is None:
                self.text_from = self.written - len(delta.content.encode())
            tokens = self.tokens.take(self.text_from, self.written)
            self.text_tokens += tokens
            at = self.message_at
            item_id = self.items[at].id
            out += self._event(
                "response.output_text.delta",
                item_id=item_id,
                output_index=at,
                content_index=0,
                delta=delta.content,
                logprobs=logprobs.text_events(tokens),
            )
        for d in delta.tool_calls or []:
            fn = d.function
            if d.id is not None and fn is not None and fn.name is not None:
                item = p.ResponseFunctionCallItem(
                    id=new_id("fc"), call_id=d.id, name=fn.name, arguments="", status="in_progress"
                )
                self.items.append(item)
                self.calls[d.index] = len(self.items) - 1
                out += self._event("response.output_item.added", output_index=len(self.items) - 1, item=item)
            at = self.calls[d.index]
            piece = fn.arguments if fn is not None else None
            if piece:
                call = self.items[at]
                assert isinstance(call, p.ResponseFunctionCallItem)
                self.items[at] = msgspec.structs.replace(call, arguments=call.arguments + piece)
                out += self._event(
                    "response.function_call_arguments.delta", item_id=call.id, output_index=at, delta=piece
                )
        return out

    def _reasoning(self, piece: str) -> bytes:
        out = b""
        if self.reasoning_at is None:
            item = p.ResponseReasoningItem(id=new_id("rs"), content=[], status="in_progress")
            self.items.append(item)
            self.reasoning_at = at = len(self.items) - 1
            out += self._event("response.output_item.added", output_index=at, item=item)
            part = p.ResponseReasoningText(text="")
            out += self._event(
                "response.content_part.added", item_id=item.id, output_index=at, content_index=0, part=part
            )
        self.thought += piece
        at = self.reasoning_at
        return out + self._event(
            "response.reasoning_text.delta", item_id=self.items[at].id, output_index=at, content_index=0, delta=piece
        )

    def _reasoning_done(self, cut: bool = False) -> bytes:
        at, self.reasoning_at = self.reasoning_at, None
        if at is None:
            return b""
        item = self.items[at]
        part = p.ResponseReasoningText(text=self.thought)
        out = self._event(
            "response.reasoning_text.done", item_id=item.id, output_index=at, content_index=0, text=part.text
        )
        out += self._event("response.content_part.done", item_id=item.id, output_index=at, content_index=0, part=part)
        self.items[at] = item = msgspec.structs.replace(item, content=[part], status=status(cut))
        return out + self._event("response.output_item.done", output_index=at, item=item)

    def finish(self, index: int, done: Finished) -> bytes:
        delta, self.reason = self.deltas.finish(index, done.finish_reason)
        cut = self.reason == "length"
        # A block still open here ends now; max_output_tokens cut it unless it was closed (and no text followed).
        thought_cut = cut and self.thinking is not None and not reasoning.closed(self.thinking, self.generated)
        out = self._delta(delta) + self._reasoning_done(thought_cut)
        for at, item in enumerate(self.items):
            if isinstance(item, p.ResponseMessageItem):
                part = p.ResponseOutputText(text=self.text, logprobs=logprobs.content(self.text_tokens))
                out += self._event(
                    "response.output_text.done",
                    item_id=item.id,
                    output_index=at,
                    content_index=0,
                    text=part.text,
                    logprobs=logprobs.text_events(self.text_tokens),
                )
                out += self._event(
                    "response.content_part.done", item_id=item.id, output_index=at, content_index=0, part=part
                )
                self.items[at] = msgspec.structs.replace(item, content=[part], status=status(cut))
            elif isinstance(item, p.ResponseFunctionCallItem):
                out += self._event(
                    "response.function_call_arguments.done",
                    item_id=item.id,
                    output_index=at,
                    name=item.name,
                    arguments=item.arguments,
                )
                self.items[at] = msgspec.structs.replace(item, status="completed")
            else:  # the reasoning, done already
                continue
            out += self._event("response.output_item.done", output_index=at, item=self.items[at])
        return out

    def usage(self, used: p.Usage) -> bytes:
        spent = reasoning.tokens(self.thinking, self.generated, used.completion_tokens, self.tokenize)
        final = finished(msgspec.structs.replace(self.response, output=self.items), self.reason, used, spent)
        kind = "response.incomplete" if final.status == "incomplete" else "response.completed"
        return self._event(kind, response=final)


class Responses:
    def __init__(self, chat: ChatCompletions, flow: Flow) -> None:
        self.chat = chat
        self.flow = flow

    def _prepare(
        self, principal: Principal, req: p.ChatCompletionRequest, truncation: str | None
    ) -> Callable[[], GenerationPlan]:
        def prepare() -> GenerationPlan:
            try:
                if truncation == "auto":
                    return self._truncated(principal, req)
                return self.chat.prepare(principal, req)
            except InvalidRequest as exc:  # named as the Responses request names it
                for chat_name, name in PARAMS:
                    exc.param = exc.param.replace(chat_name, name) if exc.param else exc.param
                    exc.message = exc.message.replace(chat_name, name)
                raise

        return prepare

    def _truncated(self, principal: Principal, req: p.ChatCompletionRequest) -> GenerationPlan:
        """truncation "auto": the request as it is where it fits the context, else with the fewest of
        its oldest droppable items left out that makes it fit (a binary search: fewer messages never
        make a longer prompt); where even dropping them all is not enough, the context-length 400."""
        try:
            return self.chat.prepare(principal, req)
        except ContextLengthExceeded as exc:
            refused = exc
        groups = droppable(req.messages)
        found: GenerationPlan | None = None
        low, high = 1, len(groups)
        while low <= high:
            mid = (low + high) // 2
            gone = {i for group in groups[:mid] for i in group}
            shorter = msgspec.structs.replace(req, messages=[m for i, m in enumerate(req.messages) if i not in gone])
            try:
                found, high = self.chat.prepare(principal, shorter), mid - 1
            except ContextLengthExceeded as exc:
                refused, low = exc, mid + 1
        if found is None:
            refused.message += (
                " truncation 'auto' left out every input item it may drop (all but the instructions, system "
                "items and the last user message with what follows it), and it still does not fit."
            )
            raise refused
        return found

    async def create(self, call: MeteredCall, req: p.ResponsesRequest) -> p.Response:
        chat_req = chat_request(req)
        plan, outcomes, used = await self.flow.generate(call, self._prepare(call.principal, chat_req, req.truncation))
        outcome = outcomes[0]
        choice = ChatCompletions.choice(plan, 0, outcome.text, outcome.finished.finish_reason, None)
        message, reason, thinking = choice.message, choice.finish_reason or "stop", thinking_of(plan)
        cut = reason == "length"
        items = output_items(
            message,
            cut=cut,
            thought_cut=cut and thinking is not None and not reasoning.closed(thinking, outcome.text),
            # The message is the answer's end (what follows a block), and its tokens the ones that wrote it.
            tokens=logprobs.tail_tokens(outcome.tokens, outcome.text, message.content or ""),
        )
        response = msgspec.structs.replace(skeleton(req, plan.model, "completed"), output=items)
        spent = reasoning.tokens(thinking, outcome.text, used.completion_tokens, self.chat.prompter.engine.tokenize)
        return finished(response, reason, used, spent)

    def stream(self, call: MeteredCall, req: p.ResponsesRequest) -> AsyncIterator[bytes]:
        chat_req = chat_request(req)
        tokenize = self.chat.prompter.engine.tokenize
        return self.flow.stream(
            call,
            self._prepare(call.principal, chat_req, req.truncation),
            lambda plan: ResponsesStream(skeleton(req, plan.model, "in_progress"), plan, tokenize),
        )
