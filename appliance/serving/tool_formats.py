"""Tool-call formats: how a model family writes its calls, found from its chat template, and reading
calls back out of the text, whole or as it streams.

One frame per family (as llama.cpp's common/chat.cpp and vLLM's tool parsers have one handler each):
a prefix once, then per call an opening, the name, a separator, the arguments (a JSON object, which
the grammar builds from the function's schema) and a closing, calls joined by `sep`, and a suffix
once. The grammar writes exactly this frame, so the calls always parse.

    hermes       <tool_call>\n{"name": "f", "arguments": {...}}\n</tool_call>   (Hermes, Qwen 2.5; the fallback)
    llama3-json  {"name": "f", "parameters": {...}}                             (Llama 3.1-3.3; one call)
    mistral      [TOOL_CALLS] [{"name": "f", "arguments": {...}}, ...]            (Mistral v0.3 and later)
    deepseek-r1  <|tool calls begin|><|tool call begin|>function<|tool sep|>f\\n```json\\n{...}\\n```<|tool call end|>
                 ...<|tool calls end|>   (DeepSeek R1 and its distills; written with fullwidth bars)
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass

# DeepSeek writes its markers with fullwidth bars (U+FF5C) and "▁" (U+2581) for spaces.
_BAR, _SP = "\uff5c", "\u2581"


def _ds(name: str) -> str:
    return f"<{_BAR}{name.replace(' ', _SP)}{_BAR}>"


@dataclass(frozen=True)
class CallFormat:
    name: str
    prefix: str
    open: str
    mid: str
    close: str
    sep: str
    suffix: str
    # Whether the family writes several calls in one answer.
    parallel: bool = True
    # Call ids of this length, letters and digits only (Mistral's templates refuse others); 0: call_...
    id_length: int = 0

    @property
    def start(self) -> str:
        """What a call answer starts with: free text under tool_choice "auto" may not start with it."""
        return (self.prefix or self.open)[0]

    def render(self, calls: list[tuple[str, str]]) -> str:
        """(name, arguments) pairs as the model writes them."""
        return self.prefix + self.sep.join(f"{self.open}{n}{self.mid}{a}{self.close}" for n, a in calls) + self.suffix

    def new_id(self) -> str:
        if self.id_length:
            alphabet = string.ascii_letters + string.digits
            return "".join(secrets.choice(alphabet) for _ in range(self.id_length))
        return f"call_{secrets.token_hex(12)}"


HERMES = CallFormat("hermes", "", '<tool_call>\n{"name": "', '", "arguments": ', "}\n</tool_call>", "\n", "")
FORMATS = {
    f.name: f
    for f in (
        HERMES,
        CallFormat("llama3-json", "", '{"name": "', '", "parameters": ', "}", "", "", parallel=False),
        CallFormat("mistral", "[TOOL_CALLS] [", '{"name": "', '", "arguments": ', "}", ", ", "]", id_length=9),
        CallFormat(
            "deepseek-r1",
            _ds("tool calls begin"),
            f"{_ds('tool call begin')}function{_ds('tool sep')}",
            "\n```json\n",
            f"\n```{_ds('tool call end')}",
            "",
            _ds("tool calls end"),
        ),
    )
}


def detect(template: str) -> CallFormat | None:
    """The family's own format where the chat template shows it (the markers it renders calls with),
    or None for a template with no tool format of its own."""
    if "[TOOL_CALLS]" in template:
        return FORMATS["mistral"]
    if _ds("tool calls begin") in template:
        return FORMATS["deepseek-r1"]
    if "<tool_call>" in template:
        return HERMES
    if "<|start_header_id|>" in template and "ipython" in template:
        return FORMATS["llama3-json"]
    return None


@dataclass
class ToolCall:
    name: str
    arguments: str
    done: bool


BLANK = " \t\n\r"


def json_end(text: str, start: int) -> int | None:
    """The index just past the JSON value that starts at `start` (after any white space), or None
    while it is incomplete. Grammar-made arguments are one object, so brackets are counted outside
    strings."""
    depth, in_string, escaped = 0, False, False
    i = start
    while i < len(text) and text[i] in BLANK:
        i += 1
    for j in range(i, len(text)):
        c = text[j]
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
            if depth == 0:
                return j + 1
    return None


def scan(fmt: CallFormat, text: str) -> list[ToolCall]:
    """The calls in generated text so far: a call appears once its name is whole, its arguments grow
    as they come (never counting what may be the closing frame), and it is done at its close."""
    calls: list[ToolCall] = []
    if not text.startswith(fmt.prefix):
        return calls
    pos = len(fmt.prefix)
    while True:
        if calls:
            if not text.startswith(fmt.sep, pos):
                return calls
            pos += len(fmt.sep)
        if not text.startswith(fmt.open, pos):
            return calls
        start = pos + len(fmt.open)
        at = text.find(fmt.mid, start)
        if at < 0:
            return calls
        name, args_at = text[start:at], at + len(fmt.mid)
        end = json_end(text, args_at)
        if end is None:
            calls.append(ToolCall(name, text[args_at:].rstrip(), False))
            return calls
        arguments = text[args_at:end]
        # The arguments' grammar may end in blank space ("}" space) before the closing frame.
        rest, close = text[end:].lstrip(BLANK), fmt.close.lstrip(BLANK)
        if not rest.startswith(close):
            calls.append(ToolCall(name, arguments, False))
            return calls
        calls.append(ToolCall(name, arguments, True))
        pos = len(text) - len(rest) + len(close)
