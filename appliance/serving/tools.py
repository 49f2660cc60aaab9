"""Function calling (OpenAI `tools`): checking tools and tool_choice, the grammar a call is generated
under, the prompt and history for templates with or without a tool format, and the calls read back
out of the text (tool_formats.py), whole or as they stream.

Calls are written in the model family's own format where its chat template shows one (Hermes/Qwen,
Llama 3 JSON, Mistral, DeepSeek R1: tool_formats.py), else in the Hermes form, described in the
system turn. The grammar fixes the format's frame and the name, and builds the arguments from the
function's JSON schema, so they always parse and validate. With tool_choice "auto" the grammar's
other branch is free text that does not start as a call does, so the first character tells an
answer from a call.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from appliance.core import protocol as p
from appliance.core.errors import InvalidRequest
from appliance.engine.interface import Engine, Turn
from appliance.serving.gbnf import gbnf_literal, namespace
from appliance.serving.tool_formats import BLANK, HERMES, CallFormat, ToolCall, scan

# Calls in one answer when parallel calls are allowed: a bound, so a small model that repeats
# itself stops with whole calls rather than running into max_tokens mid-call.
MAX_CALLS = 8
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
PROBE = [{"type": "function", "function": {"name": "probe", "description": "", "parameters": {"type": "object"}}}]


def text_rule(fmt: CallFormat) -> str:
    """Free text for tool_choice "auto": anything that does not start as a call does (nor with blank space)."""
    c = fmt.start
    escaped = "\\" + c if c in "[]^-\\" else c  # the characters a GBNF class must escape
    return rf"text ::= [^{escaped}\x00-\x20] [^\x00]*"


@dataclass(frozen=True)
class Function:
    name: str
    description: str
    parameters: dict

    def definition(self) -> dict:
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


@dataclass(frozen=True)
class ToolPlan:
    """What a request's tools mean for its prompt, its sampling and its answer."""

    offered: list[Function]
    # "auto" (text or calls) or "required" (calls; a named function is "required" with one callable).
    mode: str
    callable: list[Function]
    parallel: bool
    grammar: str = ""
    # The template renders the tool definitions itself (else system_text describes them).
    native: bool = False
    # How calls are written: the family's own format, or the Hermes form.
    format: CallFormat = HERMES
    # What a forced call's answer must start with (the frame up to the name; the name too, where one
    # function is callable): put at the end of the prompt rather than generated token by token, so
    # the model starts at what it chooses. "" with tool_choice "auto", or where a thinking block
    # must come first.
    lead: str = ""

    @property
    def template_tools(self) -> list[dict] | None:
        """The definitions for a chat template that renders tools itself."""
        return [f.definition() for f in self.offered] if self.native else None

    def system_text(self) -> str:
        """The fallback's description of the tools, appended to the system turn."""
        if self.native:
            return ""
        tools = "\n".join(json.dumps(f.definition(), ensure_ascii=False) for f in self.offered)
        if self.mode == "auto":
            rule = "Call a function only when it helps; otherwise answer the user directly in plain text."
        elif len(self.callable) == 1 and len(self.offered) > 1:
            rule = f"You must call the function {self.callable[0].name}."
        else:
            rule = "You must call a function."
        many = " You may make several calls, one block after another." if self.parallel else ""
        example = self.format.render([("<function name>", "<the arguments as a JSON object>")])
        return (
            "# Tools\n\nYou may call functions to help with the user's request. They are described here "
            f"as JSON Schema:\n<tools>\n{tools}\n</tools>\n\nTo call a function, answer with exactly this "
            f"and nothing else:\n{example}\n{rule}{many}"
        )


# ---------------------------------------------------------------- the request
def functions(tools: list[dict[str, Any]]) -> list[Function]:
    if not tools:
        raise InvalidRequest("tools must contain at least one tool.", param="tools")
    found: list[Function] = []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if tool.get("type", "function") != "function":
            raise InvalidRequest(f"{where}.type must be 'function'.", param=f"{where}.type")
        fn = tool.get("function")
        if not isinstance(fn, dict):
            raise InvalidRequest(f"{where}.function must be an object.", param=f"{where}.function")
        name = fn.get("name")
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise InvalidRequest(
                f"{where}.function.name must be 1-64 letters, digits, underscores or dashes.",
                param=f"{where}.function.name",
            )
        if any(f.name == name for f in found):
            raise InvalidRequest(f"Duplicate function name '{name}' in tools.", param=f"{where}.function.name")
        description = fn.get("description") or ""
        if not isinstance(description, str):
            raise InvalidRequest(
                f"{where}.function.description must be a string.", param=f"{where}.function.description"
            )
        params = fn.get("parameters")
        if params is None:
            params = {"type": "object", "properties": {}}
        if not isinstance(params, dict) or params.get("type", "object") != "object":
            raise InvalidRequest(
                f"{where}.function.parameters must be a JSON Schema for an object.",
                param=f"{where}.function.parameters",
            )
        found.append(Function(name, description, {"type": "object", **params}))
    return found


def plan(
    engine: Engine,
    req: p.ChatCompletionRequest,
    *,
    native: bool,
    text_grammar: str | None = None,
    fmt: CallFormat = HERMES,
    lead: bool = True,
) -> ToolPlan | None:
    """The request's tool plan, None when it offers no tools or tool_choice is "none"; every
    problem is a 400 naming its parameter. `native`: the template renders the definitions; `fmt`:
    how calls are written. `text_grammar` constrains the free-text branch of "auto"
    (response_format's grammar, when a caller combines them). `lead`: a forced call's fixed start may
    go in the prompt (ToolPlan.lead)."""
    choice = req.tool_choice
    if not req.tools:
        if choice not in (None, "none", "auto"):
            raise InvalidRequest("tool_choice is only allowed when tools are specified.", param="tool_choice")
        if req.tools is not None:
            functions(req.tools)  # an empty list: its own error
        return None
    offered = functions(req.tools)
    if choice == "none":
        return None
    if choice is None or choice == "auto":
        mode, callable_ = "auto", offered
    elif choice == "required":
        mode, callable_ = "required", offered
    elif isinstance(choice, dict):
        fn = choice.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        if choice.get("type", "function") != "function" or not isinstance(name, str):
            raise InvalidRequest(
                'tool_choice must be "none", "auto", "required" or {"type": "function", "function": {"name": ...}}.',
                param="tool_choice",
            )
        named = [f for f in offered if f.name == name]
        if not named:
            raise InvalidRequest(
                f"tool_choice names the function '{name}', which is not in tools.", param="tool_choice"
            )
        mode, callable_ = "required", named
    else:
        raise InvalidRequest(
            f"tool_choice must be none, auto, required or a named function, not '{choice}'.", param="tool_choice"
        )
    # A named function is called once (as OpenAI does); otherwise parallel calls unless turned off, or
    # the family writes one call at a time.
    parallel = req.parallel_tool_calls is not False and not isinstance(choice, dict) and fmt.parallel
    # Not ending in blank space: models write the space with the next token (' {'), and a prompt that
    # ends in it puts them off (the grammar writes it instead).
    start = forced_start(fmt, callable_).rstrip(BLANK) if lead and mode == "required" else ""
    tool_plan = ToolPlan(offered, mode, callable_, parallel, native=native, format=fmt, lead=start)
    grammar = call_grammar(engine, tool_plan, text_grammar)
    engine.check_grammar(grammar)
    return ToolPlan(offered, mode, callable_, parallel, grammar, native, fmt, start)


def forced_start(fmt: CallFormat, callable_: list[Function]) -> str:
    """What a forced call's answer must start with: the frame up to the name, and the name and what
    follows it too where one function is callable."""
    return fmt.prefix + fmt.open + (callable_[0].name + fmt.mid if len(callable_) == 1 else "")


def call_grammar(engine: Engine, tool_plan: ToolPlan, text_grammar: str | None = None) -> str:
    fmt = tool_plan.format
    rules: list[str] = []
    branches: list[str] = []
    index = {f.name: i for i, f in enumerate(tool_plan.offered)}
    for f in tool_plan.callable:
        i = index[f.name]
        args = engine.json_schema_grammar(f.parameters, param=f"tools[{i}].function.parameters")
        rules.append(namespace(args, f"f{i}-"))
        branches.append(f"{gbnf_literal(f.name + fmt.mid)} f{i}-root")
    calls = f"call ({gbnf_literal(fmt.sep)} call){{0,{MAX_CALLS - 1}}}" if tool_plan.parallel else "call"
    prefix = [gbnf_literal(fmt.prefix)] if fmt.prefix else []
    suffix = [gbnf_literal(fmt.suffix)] if fmt.suffix else []
    head = [
        f"calls ::= {' '.join([*prefix, calls, *suffix])}",
        f"call ::= {gbnf_literal(fmt.open)} ({' | '.join(branches)}) {gbnf_literal(fmt.close)}",
    ]
    if tool_plan.lead:  # the answer starts after the lead: the first call's rest, then as ever
        blank = forced_start(fmt, tool_plan.callable)[len(tool_plan.lead) :]  # what the lead left out
        if len(tool_plan.callable) == 1:
            first = f"f{index[tool_plan.callable[0].name]}-root"
        else:
            first = f"({' | '.join(branches)})"
        more = [f"({gbnf_literal(fmt.sep)} call){{0,{MAX_CALLS - 2}}}"] if tool_plan.parallel else []
        after = [*([gbnf_literal(blank)] if blank else []), first, gbnf_literal(fmt.close), *more, *suffix]
        return "\n".join([f"root ::= {' '.join(after)}", head[1], *rules]) + "\n"
    if tool_plan.mode == "auto":
        head.insert(0, "root ::= calls | text")
        if text_grammar:
            rules.append(namespace(text_grammar, "t-"))
            head.append("text ::= t-root")
        else:
            head.append(text_rule(fmt))
    else:
        head.insert(0, "root ::= calls")
    return "\n".join(head + rules) + "\n"


# ---------------------------------------------------------------- history
def native_template(engine: Engine) -> bool:
    """Whether the model's chat template renders tool definitions itself."""
    probe = [("user", "x")]
    return engine.render_chat(probe, tools=PROBE) != engine.render_chat(probe)


def history_turn(message: p.ChatMessage, text: str, index: int, *, native: bool) -> Turn | tuple[str, str]:
    """One earlier message for the template: assistant tool calls and tool results natively (for a
    template with a tool format), or in the fallback's own form (calls as Hermes <tool_call> blocks,
    results as <tool_response> user turns)."""
    if message.role == "assistant" and message.tool_calls:
        calls = [_history_call(c, index, j) for j, c in enumerate(message.tool_calls)]
        if native:
            for c in calls:
                c["function"]["arguments"] = _arguments_value(c["function"]["arguments"])
            return Turn(role="assistant", content=text, tool_calls=calls)
        block = HERMES.render([(c["function"]["name"], c["function"]["arguments"]) for c in calls])
        return ("assistant", HERMES.sep.join([*([text] if text else []), block]))
    if message.role in ("tool", "function"):
        if native:
            return Turn(role="tool", content=text, tool_call_id=message.tool_call_id, name=message.name)
        return ("user", f"<tool_response>\n{text}\n</tool_response>")
    return (message.role, text)


def _history_call(call: dict[str, Any], index: int, j: int) -> dict:
    where = f"messages[{index}].tool_calls[{j}]"
    fn = call.get("function") if isinstance(call, dict) else None
    name = fn.get("name") if isinstance(fn, dict) else None
    arguments = fn.get("arguments", "{}") if isinstance(fn, dict) else None
    if not isinstance(name, str) or not isinstance(arguments, str):
        raise InvalidRequest(
            f"{where} must have function.name and function.arguments (a JSON string).", param=f"{where}.function"
        )
    return {"id": str(call.get("id") or ""), "type": "function", "function": {"name": name, "arguments": arguments}}


def _arguments_value(arguments: str) -> Any:
    # Templates with native tools expect the arguments as a mapping (Hugging Face convention).
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


# ---------------------------------------------------------------- the answer
def call_key(name: str, arguments: str) -> tuple[str, str]:
    """What makes two calls the same: the name and the arguments as a value (key order and spacing
    aside), so a model that repeats a call with other whitespace still repeats it."""
    try:
        return name, json.dumps(json.loads(arguments), sort_keys=True, separators=(",", ":"))
    except ValueError:
        return name, arguments.strip()


def _bare(text: str) -> str:
    return "".join(text.split())


def distinct(calls: list[ToolCall]) -> tuple[list[ToolCall], bool]:
    """(the calls before the first one that repeats an earlier call, whether a whole one did). An
    answer ends at a repeat (a small model otherwise repeats a forced call until max_tokens). An
    unfinished last call that so far matches an earlier one is left out too: it may be a repeat,
    and if max_tokens cuts it there, no new call was lost."""
    seen: set[tuple[str, str]] = set()
    for i, c in enumerate(calls):
        if not c.done:
            bare = _bare(c.arguments)
            if any(e.name == c.name and _bare(e.arguments).startswith(bare) for e in calls[:i]):
                return calls[:i], False
            return calls, False
        key = call_key(c.name, c.arguments)
        if key in seen:
            return calls[:i], True
        seen.add(key)
    return calls, False


@dataclass(frozen=True)
class RepeatStop:
    """The engine's stop rule for parallel calls: generation ends once a call is complete that
    repeats an earlier one (checked only when the text ends a call, so the scan stays rare)."""

    format: CallFormat = HERMES
    # The forced call's start that was put in the prompt (ToolPlan.lead): the text begins after it.
    lead: str = ""

    def stop(self, text: str) -> bool:
        return text.endswith(self.format.close) and distinct(scan(self.format, self.lead + text))[1]


def finish_reason(calls: list[ToolCall], reason: str) -> str:
    """ "tool_calls" once the answer holds whole calls, unless max_tokens really cut a new one off
    ("length" then, as OpenAI reports a cut call)."""
    cut = reason == "length" and bool(calls) and not calls[-1].done
    if any(c.done for c in calls) and reason in ("stop", "length") and not cut:
        return "tool_calls"
    return reason


def answer(tool_plan: ToolPlan, text: str, finish_reason_: str) -> tuple[p.AssistantMessage, str]:
    """A whole generation as the assistant's message: text, or its complete calls up to the first
    repeat (a call cut off by max_tokens is left out, so every returned call's arguments parse)."""
    fmt = tool_plan.format
    if tool_plan.mode == "auto" and not text.startswith(fmt.start):
        return p.AssistantMessage(content=text), finish_reason_
    text = tool_plan.lead + text
    calls, _ = distinct(scan(fmt, text))
    whole = [
        p.ToolCall(id=fmt.new_id(), function=p.FunctionCall(name=c.name, arguments=c.arguments))
        for c in calls
        if c.done
    ]
    return p.AssistantMessage(content=None, tool_calls=whole or None), finish_reason(calls, finish_reason_)


@dataclass
class CallStream:
    """One streamed choice: text passes through, calls become tool_call deltas as OpenAI sends them:
    at most one delta per call index in a chunk, the first with id, type, name and the first part of
    the arguments, then argument fragments. A call that so far matches an earlier one is held back
    until it differs (`distinct`); if it completes the same, the answer ends before it."""

    mode: str
    format: CallFormat = HERMES
    # The text so far; a forced call's lead (ToolPlan.lead) from the start.
    buffer: str = ""
    calling: bool | None = None
    # Characters of arguments sent, per call index.
    sent: list[int] = field(default_factory=list)
    # The calls so far, up to a repeat; and whether a whole repeat ended the answer.
    calls: list[ToolCall] = field(default_factory=list)
    repeated: bool = False

    def __post_init__(self) -> None:
        if self.mode != "auto":
            self.calling = True

    def feed(self, text: str) -> tuple[str | None, list[p.ToolCallDelta]]:
        """(content to send, tool-call deltas to send) for the next piece of generated text."""
        if self.calling is None:
            self.buffer += text
            if not self.buffer:
                return None, []
            self.calling = self.buffer.startswith(self.format.start)
            if not self.calling:
                return self.buffer, []
            text = ""
        if not self.calling:
            return text or None, []
        if self.repeated:
            return None, []
        self.buffer += text
        self.calls, self.repeated = distinct(scan(self.format, self.buffer))
        deltas: list[p.ToolCallDelta] = []
        for i, call in enumerate(self.calls):
            if i < len(self.sent):
                if len(call.arguments) > self.sent[i]:
                    piece = call.arguments[self.sent[i] :]
                    deltas.append(p.ToolCallDelta(index=i, function=p.FunctionCallDelta(arguments=piece)))
                    self.sent[i] = len(call.arguments)
            elif call.arguments or call.done:  # the first delta carries the first part of the arguments
                head = p.FunctionCallDelta(name=call.name, arguments=call.arguments)
                deltas.append(p.ToolCallDelta(index=i, id=self.format.new_id(), type="function", function=head))
                self.sent.append(len(call.arguments))
        return None, deltas

    def finish_reason(self, reason: str) -> str:
        return finish_reason(self.calls, reason) if self.calling else reason
