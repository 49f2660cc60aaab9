"""POST /v1/responses, OpenAI's Responses API as its SDKs use it, stateless: the request becomes a chat
completion (the same keys, limits, metering, specialists, tools and shapes), and the answer a response
object, or its stream of response.* events.

Stateless: nothing is stored, so `previous_response_id` and `store: true` are refused with a 400 that
says to send the whole conversation in `input`. A thinking model's reasoning is left out of the output.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec

from appliance.core import protocol as p
from appliance.core.errors import InvalidRequest
from appliance.engine.interface import Chunk, Finished
from appliance.serving.chat import ChatCompletions, ChatPlan, ChoiceDeltas
from appliance.serving.flow import Flow
from appliance.serving.metering import MeteredCall
from appliance.serving.prompting import GenerationPlan
from appliance.store import Principal

# A chat completion's parameter names as a Responses request calls them, for the 400s.
PARAMS = (
    ("messages", "input"),
    ("max_completion_tokens", "max_output_tokens"),
    ("response_format", "text.format"),
    (".function.", "."),
)


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


# ---------------------------------------------------------------- the request
def chat_request(req: p.ResponsesRequest) -> p.ChatCompletionRequest:
    """The chat completion a Responses request asks for; every problem a 400 naming its parameter."""
    if req.previous_response_id is not None:
        raise InvalidRequest(
            "previous_response_id is not supported: this server is stateless and keeps no responses. "
            "Send the whole conversation in input.",
            param="previous_response_id",
        )
    if req.store:
        raise InvalidRequest(
            "store is not supported: this server is stateless and keeps no responses. Leave store out or false.",
            param="store",
        )
    messages: list[dict[str, Any]] = []
    if req.instructions:
        messages.append({"role": "system", "content": req.instructions})
    if isinstance(req.input, str):
        messages.append({"role": "user", "content": req.input})
    else:
        for i, item in enumerate(req.input):
            _input_item(item, i, messages)
    body: dict[str, Any] = {
        "model": req.model,
        "messages": messages,
        "max_completion_tokens": req.max_output_tokens,
        "temperature": req.temperature,
        "top_p": req.top_p,
        "stream": bool(req.stream),
        "parallel_tool_calls": req.parallel_tool_calls,
        "user": req.user,
        "response_format": _response_format(req.text),
    }
    if req.tools:  # the Responses API takes an empty list for none (chat completions refuse it)
        body["tools"] = [_tool(t, i) for i, t in enumerate(req.tools)]
    if req.tool_choice is not None:
        body["tool_choice"] = _tool_choice(req.tool_choice)
    try:
        return msgspec.convert({k: v for k, v in body.items() if v is not None}, p.ChatCompletionRequest)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"Invalid request: {exc}", param="input") from None


def _input_item(item: dict[str, Any], i: int, messages: list[dict[str, Any]]) -> None:
    kind = item.get("type", "message")
    where = f"input[{i}]"
    if kind == "message":
        role = item.get("role")
        if role not in ("user", "system", "developer", "assistant"):
            raise InvalidRequest(f"{where}.role must be user, system, developer or assistant.", param=f"{where}.role")
        messages.append({"role": role, "content": _text(item.get("content"), f"{where}.content")})
    elif kind == "function_call":
        call = {
            "id": _string(item, "call_id", where),
            "type": "function",
            "function": {"name": _string(item, "name", where), "arguments": _string(item, "arguments", where)},
        }
        last = messages[-1] if messages else None
        if last is not None and last["role"] == "assistant" and last.get("tool_calls"):
            last["tool_calls"].append(call)
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "function_call_output":
        output = item.get("output")
        text = output if isinstance(output, str) else json.dumps(output)
        messages.append({"role": "tool", "tool_call_id": _string(item, "call_id", where), "content": text})
    elif kind == "reasoning":
        pass  # a thinking model's earlier reasoning: templates leave it out of the prompt anyway
    else:
        raise InvalidRequest(
            f"{where}.type '{kind}' is not supported: input items may be messages, function_call and "
            "function_call_output.",
            param=f"{where}.type",
        )


def _text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequest(f"{where} must be a string or a list of text parts.", param=where)
    texts = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") not in ("input_text", "output_text", "text"):
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise InvalidRequest(
                f"Only text content parts are supported; {where}[{j}] has type '{kind}'.", param=f"{where}[{j}].type"
            )
        texts.append(str(part.get("text", "")))
    return "".join(texts)


def _string(item: dict[str, Any], name: str, where: str) -> str:
    value = item.get(name)
    if not isinstance(value, str):
        raise InvalidRequest(f"{where}.{name} must be a string.", param=f"{where}.{name}")
    return value


def _tool(tool: Any, i: int) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type", "function") != "function":
        kind = tool.get("type") if isinstance(tool, dict) else tool
        raise InvalidRequest(
            f"tools[{i}].type '{kind}' is not supported: this server runs function tools only.",
            param=f"tools[{i}].type",
        )
    fn = {k: tool[k] for k in ("name", "description", "parameters", "strict") if k in tool}
    return {"type": "function", "function": fn}


def _tool_choice(choice: str | dict[str, Any]) -> str | dict[str, Any]:
    if isinstance(choice, dict) and choice.get("type") == "function" and "name" in choice:
        return {"type": "function", "function": {"name": choice["name"]}}
    return choice


def _response_format(text: dict[str, Any] | None) -> dict[str, Any] | None:
    fmt = (text or {}).get("format")
    if fmt is None or not isinstance(fmt, dict):
        return None
    kind = fmt.get("type")
    if kind == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"type": "json_schema", "json_schema": schema}
    if kind in ("text", "json_object"):
        return {"type": kind}
    raise InvalidRequest(
        f"text.format.type must be text, json_object or json_schema, not '{kind}'.", param="text.format"
    )


# ---------------------------------------------------------------- the answer
def skeleton(req: p.ResponsesRequest, model: str, status: str) -> p.Response:
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
    )


def usage(used: p.Usage) -> p.ResponseUsage:
    cached = used.prompt_tokens_details.cached_tokens if used.prompt_tokens_details else 0
    return p.ResponseUsage(
        input_tokens=used.prompt_tokens,
        output_tokens=used.completion_tokens,
        total_tokens=used.total_tokens,
        input_tokens_details=p.ResponseInputTokensDetails(cached_tokens=cached),
        output_tokens_details=p.ResponseOutputTokensDetails(),
    )


def finished(response: p.Response, finish_reason: str, used: p.Usage) -> p.Response:
    """`response` as it ends: completed, or incomplete where max_output_tokens cut it."""
    cut = finish_reason == "length"
    return msgspec.structs.replace(
        response,
        status="incomplete" if cut else "completed",
        incomplete_details=p.ResponseIncompleteDetails(reason="max_output_tokens") if cut else None,
        usage=usage(used),
    )


def output_items(message: p.AssistantMessage) -> list[p.ResponseMessageItem | p.ResponseFunctionCallItem]:
    items: list[p.ResponseMessageItem | p.ResponseFunctionCallItem] = []
    if message.content:
        items.append(p.ResponseMessageItem(id=new_id("msg"), content=[p.ResponseOutputText(text=message.content)]))
    for call in message.tool_calls or []:
        items.append(
            p.ResponseFunctionCallItem(
                id=new_id("fc"), call_id=call.id, name=call.function.name, arguments=call.function.arguments
            )
        )
    return items


class ResponsesStream:
    """response.* events: created and in_progress, then per output item its added event, deltas and done
    events (a message's text, a function call's arguments), and completed (or incomplete) with usage."""

    def __init__(self, response: p.Response, plan: GenerationPlan) -> None:
        self.response = response
        chat = plan if isinstance(plan, ChatPlan) else None
        self.deltas = ChoiceDeltas(chat.tools if chat else None, chat.thinking if chat else None)
        self.seq = 0
        self.items: list[p.ResponseMessageItem | p.ResponseFunctionCallItem] = []
        self.text = ""  # the message item's text
        self.message_at: int | None = None  # its output index, once it is open
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
        found = self.deltas.feed(index, chunk)
        return self._delta(found[0]) or None if found else None

    def _delta(self, delta: p.Delta) -> bytes:
        out = b""
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
            at = self.message_at
            item_id = self.items[at].id
            out += self._event(
                "response.output_text.delta",
                item_id=item_id,
                output_index=at,
                content_index=0,
                delta=delta.content,
                logprobs=[],
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

    def finish(self, index: int, done: Finished) -> bytes:
        delta, self.reason = self.deltas.finish(index, done.finish_reason)
        out = self._delta(delta)
        for at, item in enumerate(self.items):
            if isinstance(item, p.ResponseMessageItem):
                part = p.ResponseOutputText(text=self.text)
                out += self._event(
                    "response.output_text.done",
                    item_id=item.id,
                    output_index=at,
                    content_index=0,
                    text=part.text,
                    logprobs=[],
                )
                out += self._event(
                    "response.content_part.done", item_id=item.id, output_index=at, content_index=0, part=part
                )
                self.items[at] = msgspec.structs.replace(item, content=[part], status="completed")
            else:
                out += self._event(
                    "response.function_call_arguments.done",
                    item_id=item.id,
                    output_index=at,
                    name=item.name,
                    arguments=item.arguments,
                )
                self.items[at] = msgspec.structs.replace(item, status="completed")
            out += self._event("response.output_item.done", output_index=at, item=self.items[at])
        return out

    def usage(self, used: p.Usage) -> bytes:
        final = finished(msgspec.structs.replace(self.response, output=self.items), self.reason, used)
        kind = "response.incomplete" if final.status == "incomplete" else "response.completed"
        return self._event(kind, response=final)


class Responses:
    def __init__(self, chat: ChatCompletions, flow: Flow) -> None:
        self.chat = chat
        self.flow = flow

    def _prepare(self, principal: Principal, req: p.ChatCompletionRequest) -> Callable[[], GenerationPlan]:
        def prepare() -> GenerationPlan:
            try:
                return self.chat.prepare(principal, req)
            except InvalidRequest as exc:  # named as the Responses request names it
                for chat_name, name in PARAMS:
                    exc.param = exc.param.replace(chat_name, name) if exc.param else exc.param
                    exc.message = exc.message.replace(chat_name, name)
                raise

        return prepare

    async def create(self, call: MeteredCall, req: p.ResponsesRequest) -> p.Response:
        chat_req = chat_request(req)
        plan, outcomes, used = await self.flow.generate(call, self._prepare(call.principal, chat_req))
        outcome = outcomes[0]
        choice = ChatCompletions.choice(plan, 0, outcome.text, outcome.finished.finish_reason, None)
        response = skeleton(req, plan.model, "completed")
        response = msgspec.structs.replace(response, output=output_items(choice.message))
        return finished(response, choice.finish_reason or "stop", used)

    def stream(self, call: MeteredCall, req: p.ResponsesRequest) -> AsyncIterator[bytes]:
        chat_req = chat_request(req)
        return self.flow.stream(
            call,
            self._prepare(call.principal, chat_req),
            lambda plan: ResponsesStream(skeleton(req, plan.model, "in_progress"), plan),
        )
