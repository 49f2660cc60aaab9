"""A Responses request as the chat completion it asks for (serving/responses.py runs it): its input
items as messages, its tools, text.format, the `include` values it may send (logprobs among them), and
the rule by which truncation "auto" drops input items. Every problem is a 400 naming the Responses parameter."""

from __future__ import annotations

import json
from typing import Any

import msgspec

from appliance.core import protocol as p
from appliance.core.errors import InvalidRequest

# A chat completion's parameter names as a Responses request calls them, for the 400s.
PARAMS = (
    ("messages", "input"),
    ("max_completion_tokens", "max_output_tokens"),
    ("response_format", "text.format"),
    (".function.", "."),
)


# `include` values. reasoning.encrypted_content is taken and ignored: clients that keep no state on the
# server (store: false; the openai-agents SDK where a user asks for it, coding agents) send it so that
# they can hand reasoning items back next turn, and refusing it would fail every request they make.
# Nothing is kept or encrypted here: a reasoning item carries its text in `content`, and reasoning items
# sent back in `input` are skipped (templates leave earlier reasoning out of the prompt), so their
# round trip needs nothing more.
INCLUDE_IGNORED = ("reasoning.encrypted_content",)
# The message text's tokens with their log-probabilities (top_logprobs alternatives each), made as chat
# completions' logprobs are.
INCLUDE_LOGPROBS = "message.output_text.logprobs"
# OpenAI's other values, each about something this server does not make: a 400 says which.
_BUILT_IN = "built-in tools are not run here (function tools only)"
INCLUDE_REFUSED = {
    "file_search_call.results": _BUILT_IN,
    "web_search_call.results": _BUILT_IN,
    "web_search_call.action.sources": _BUILT_IN,
    "code_interpreter_call.outputs": _BUILT_IN,
    "computer_call_output.output.image_url": _BUILT_IN,
    "message.input_image.image_url": "input images are not supported (text parts only)",
}
TRUNCATION = ("disabled", "auto")


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
    include = req.include or []
    _check_include(include)
    if req.truncation is not None and req.truncation not in TRUNCATION:
        raise InvalidRequest(f"truncation must be 'disabled' or 'auto', not '{req.truncation}'.", param="truncation")
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
    if INCLUDE_LOGPROBS in include:
        body |= {"logprobs": True, "top_logprobs": req.top_logprobs}
    if req.tools:  # the Responses API takes an empty list for none (chat completions refuse it)
        body["tools"] = [_tool(t, i) for i, t in enumerate(req.tools)]
    if req.tool_choice is not None:
        body["tool_choice"] = _tool_choice(req.tool_choice)
    try:
        return msgspec.convert({k: v for k, v in body.items() if v is not None}, p.ChatCompletionRequest)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"Invalid request: {exc}", param="input") from None


def _check_include(include: list[str]) -> None:
    for value in include:
        if value in INCLUDE_IGNORED or value == INCLUDE_LOGPROBS:
            continue
        why = INCLUDE_REFUSED.get(value)
        if why is not None:
            raise InvalidRequest(f"include '{value}' is not supported: {why}.", param="include")
        raise InvalidRequest(
            f"include '{value}' is not a value this server knows; it takes '{INCLUDE_LOGPROBS}' and "
            f"{', '.join(repr(v) for v in INCLUDE_IGNORED)} (ignored: nothing is stored or encrypted).",
            param="include",
        )


def droppable(messages: list[p.ChatMessage]) -> list[list[int]]:
    """What truncation "auto" may drop, oldest first, as groups of message indices dropped together:
    every message before the last user message, but the system ones (instructions, system and
    developer items). An assistant's tool calls go with the tool results that follow them, since a
    result without its call is no conversation a template renders."""
    users = [i for i, m in enumerate(messages) if m.role == "user"]
    keep_from = users[-1] if users else len(messages) - 1
    groups: list[list[int]] = []
    for i, m in enumerate(messages[:keep_from]):
        if m.role in ("system", "developer"):
            continue
        last = groups[-1] if groups else None
        if m.role == "tool" and last is not None and last[-1] == i - 1 and messages[last[0]].tool_calls:
            last.append(i)
        else:
            groups.append([i])
    return groups


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
