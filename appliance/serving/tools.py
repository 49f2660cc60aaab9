"""Function calling (OpenAI `tools`): checking tools and tool_choice, the grammar a call is generated
under, the prompt and history for templates with or without a tool format, and reading the calls
back out of the text, whole or as it streams.

Every call is written in one fixed form (Hermes/Qwen style, which templates with native tools use
as well):

    <tool_call>
    {"name": "NAME", "arguments": {...}}
    </tool_call>

one after another (separated by a newline) when parallel calls are allowed. The grammar fixes that
frame and the name, and builds the arguments from the function's JSON schema, so they always parse
and validate. With tool_choice "auto" the grammar's other branch is free text that does not start
with "<", so the first character tells an answer from a call.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from appliance import protocol as p
from appliance.errors import InvalidRequest
from appliance.hive.types import Engine, Turn

OPEN = '<tool_call>\n{"name": "'
MID = '", "arguments": '
CLOSE = "}\n</tool_call>"
SEP = "\n"
# Calls in one answer when parallel calls are allowed: a bound, so a small model that repeats
# itself stops with whole calls rather than running into max_tokens mid-call.
MAX_CALLS = 8
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Free text for tool_choice "auto": anything that does not start with "<" (or blank space).
TEXT_RULE = r"text ::= [^<\x00-\x20] [^\x00]*"
PROBE = [{"type": "function", "function": {"name": "probe", "description": "", "parameters": {"type": "object"}}}]


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
    native: bool = False

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
        return (
            "# Tools\n\nYou may call functions to help with the user's request. They are described here "
            f"as JSON Schema:\n<tools>\n{tools}\n</tools>\n\nTo call a function, answer with exactly this "
            'and nothing else:\n<tool_call>\n{"name": "<function name>", "arguments": <the arguments as a '
            f"JSON object>}}\n</tool_call>\n{rule}{many}"
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
    engine: Engine, req: p.ChatCompletionRequest, *, native: bool, text_grammar: str | None = None
) -> ToolPlan | None:
    """The request's tool plan, None when it offers no tools or tool_choice is "none"; every
    problem is a 400 naming its parameter. `text_grammar` constrains the free-text branch of
    "auto" (response_format's grammar, when a caller combines them)."""
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
    # A named function is called once (as OpenAI does); otherwise parallel calls unless turned off.
    parallel = req.parallel_tool_calls is not False and not isinstance(choice, dict)
    tool_plan = ToolPlan(offered, mode, callable_, parallel, native=native)
    grammar = call_grammar(engine, tool_plan, text_grammar)
    engine.check_grammar(grammar)
    return ToolPlan(offered, mode, callable_, parallel, grammar, native)


def call_grammar(engine: Engine, tool_plan: ToolPlan, text_grammar: str | None = None) -> str:
    rules: list[str] = []
    branches: list[str] = []
    index = {f.name: i for i, f in enumerate(tool_plan.offered)}
    for f in tool_plan.callable:
        i = index[f.name]
        args = engine.json_schema_grammar(f.parameters, param=f"tools[{i}].function.parameters")
        rules.append(namespace(args, f"f{i}-"))
        branches.append(f"{gbnf_literal(f.name + MID)} f{i}-root")
    calls = f'call ("\\n" call){{0,{MAX_CALLS - 1}}}' if tool_plan.parallel else "call"
    head = [
        f"calls ::= {calls}",
        f"call ::= {gbnf_literal(OPEN)} ({' | '.join(branches)}) {gbnf_literal(CLOSE)}",
    ]
    if tool_plan.mode == "auto":
        head.insert(0, "root ::= calls | text")
        if text_grammar:
            rules.append(namespace(text_grammar, "t-"))
            head.append("text ::= t-root")
        else:
            head.append(TEXT_RULE)
    else:
        head.insert(0, "root ::= calls")
    return "\n".join(head + rules) + "\n"


def gbnf_literal(text: str) -> str:
    # A JSON string is a valid GBNF literal for these characters (quotes, backslashes, newlines).
    return json.dumps(text)


def namespace(grammar: str, prefix: str) -> str:
    """The grammar with every rule name prefixed, so several can live in one grammar; literals,
    character classes, repetition counts and comments stay as they are."""
    out: list[str] = []
    i, n = 0, len(grammar)
    while i < n:
        c = grammar[i]
        if c in '"[':
            end = '"' if c == '"' else "]"
            j = i + 1
            while j < n and grammar[j] != end:
                j += 2 if grammar[j] == "\\" else 1
            out.append(grammar[i : j + 1])
            i = j + 1
        elif c in "{#":
            j = grammar.find("}" if c == "{" else "\n", i)
            j = n - 1 if j < 0 else j
            out.append(grammar[i : j + 1] if c == "{" else "\n")
            i = j + 1
        elif c.isascii() and (c.isalnum() or c in "-_"):
            j = i
            while j < n and grammar[j].isascii() and (grammar[j].isalnum() or grammar[j] in "-_"):
                j += 1
            out.append(prefix + grammar[i:j])
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


# ---------------------------------------------------------------- history
def native_template(engine: Engine) -> bool:
    """Whether the model's chat template renders tool definitions itself."""
    probe = [("user", "x")]
    return engine.render_chat(probe, tools=PROBE) != engine.render_chat(probe)


def history_turn(message: p.ChatMessage, text: str, index: int, *, native: bool) -> Turn | tuple[str, str]:
    """One earlier message for the template: assistant tool calls and tool results natively, or in
    the fallback's own form (calls as <tool_call> blocks, results as <tool_response> user turns)."""
    if message.role == "assistant" and message.tool_calls:
        calls = [_history_call(c, index, j) for j, c in enumerate(message.tool_calls)]
        if native:
            for c in calls:
                c["function"]["arguments"] = _arguments_value(c["function"]["arguments"])
            return Turn(role="assistant", content=text, tool_calls=calls)
        blocks = [render_call(c["function"]["name"], c["function"]["arguments"]) for c in calls]
        return ("assistant", SEP.join(([text] if text else []) + blocks))
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


def render_call(name: str, arguments: str) -> str:
    return f"{OPEN}{name}{MID}{arguments}{CLOSE}"


# ---------------------------------------------------------------- the answer
@dataclass
class Call:
    name: str
    arguments: str
    done: bool


def scan(text: str) -> list[Call]:
    """The calls in generated text so far: a call appears once its name is whole, its arguments
    grow as they come (never counting what may be the closing frame), and it is done at its close."""
    calls: list[Call] = []
    pos = 0
    while True:
        if calls:
            if not text.startswith(SEP, pos):
                return calls
            pos += len(SEP)
        if not text.startswith(OPEN, pos):
            return calls
        start = pos + len(OPEN)
        quote = text.find('"', start)
        if quote < 0 or not text.startswith(MID, quote):
            return calls
        name, args_at = text[start:quote], quote + len(MID)
        end = text.find(CLOSE, args_at)
        if end >= 0:
            calls.append(Call(name, text[args_at:end].rstrip(), True))
            pos = end + len(CLOSE)
            continue
        rest = text[args_at:]
        for k in range(len(CLOSE), 0, -1):
            if rest.endswith(CLOSE[:k]):
                rest = rest[:-k]
                break
        calls.append(Call(name, rest.rstrip(), False))
        return calls


def new_call_id() -> str:
    return f"call_{secrets.token_hex(12)}"


def call_key(name: str, arguments: str) -> tuple[str, str]:
    """What makes two calls the same: the name and the arguments as a value (key order and spacing
    aside), so a model that repeats a call with other whitespace still repeats it."""
    try:
        return name, json.dumps(json.loads(arguments), sort_keys=True, separators=(",", ":"))
    except ValueError:
        return name, arguments.strip()


def _bare(text: str) -> str:
    return "".join(text.split())


def distinct(calls: list[Call]) -> tuple[list[Call], bool]:
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

    def stop(self, text: str) -> bool:
        return text.endswith(CLOSE) and distinct(scan(text))[1]


def finish_reason(calls: list[Call], reason: str) -> str:
    """ "tool_calls" once the answer holds whole calls, unless max_tokens really cut a new one off
    ("length" then, as OpenAI reports a cut call)."""
    cut = reason == "length" and bool(calls) and not calls[-1].done
    if any(c.done for c in calls) and reason in ("stop", "length") and not cut:
        return "tool_calls"
    return reason


def answer(tool_plan: ToolPlan, text: str, finish_reason_: str) -> tuple[p.AssistantMessage, str]:
    """A whole generation as the assistant's message: text, or its complete calls up to the first
    repeat (a call cut off by max_tokens is left out, so every returned call's arguments parse)."""
    if tool_plan.mode == "auto" and not text.startswith("<"):
        return p.AssistantMessage(content=text), finish_reason_
    calls, _ = distinct(scan(text))
    whole = [
        p.ToolCall(id=new_call_id(), function=p.FunctionCall(name=c.name, arguments=c.arguments))
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
    buffer: str = ""
    calling: bool | None = None
    # Characters of arguments sent, per call index.
    sent: list[int] = field(default_factory=list)
    # The calls so far, up to a repeat; and whether a whole repeat ended the answer.
    calls: list[Call] = field(default_factory=list)
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
            self.calling = self.buffer.startswith("<")
            if not self.calling:
                return self.buffer, []
            text = ""
        if not self.calling:
            return text or None, []
        if self.repeated:
            return None, []
        self.buffer += text
        self.calls, self.repeated = distinct(scan(self.buffer))
        deltas: list[p.ToolCallDelta] = []
        for i, call in enumerate(self.calls):
            if i < len(self.sent):
                if len(call.arguments) > self.sent[i]:
                    piece = call.arguments[self.sent[i] :]
                    deltas.append(p.ToolCallDelta(index=i, function=p.FunctionCallDelta(arguments=piece)))
                    self.sent[i] = len(call.arguments)
            elif call.arguments or call.done:  # the first delta carries the first part of the arguments
                head = p.FunctionCallDelta(name=call.name, arguments=call.arguments)
                deltas.append(p.ToolCallDelta(index=i, id=new_call_id(), type="function", function=head))
                self.sent.append(len(call.arguments))
        return None, deltas

    def finish_reason(self, reason: str) -> str:
        return finish_reason(self.calls, reason) if self.calling else reason
