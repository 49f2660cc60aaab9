"""Reasoning: a thinking model's `<think>...</think>` block apart from its answer, as
`message.reasoning_content` (streamed: `delta.reasoning_content`), as llama-server's
`--reasoning-format deepseek` and vLLM's reasoning parsers give it.

A template may open the block itself (DeepSeek R1's generation prompt ends with "<think>\\n"), and
then the answer starts inside it; otherwise the model may open it as its first words. Tool calls and
shaped answers are read from what follows the block only: their grammar lets the model think first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from appliance.core import protocol as p
from appliance.engine.interface import Engine
from appliance.serving.gbnf import namespace

OPEN, CLOSE = "<think>", "</think>"
BLANK = " \t\n\r"


@dataclass(frozen=True)
class Thinking:
    """How this model thinks, found once from its template."""

    # The generation prompt ends inside an open block: every answer starts as reasoning.
    forced_open: bool


def detect(template: str, generation_prompt: str, asked: str) -> Thinking | None:
    """`asked`: the reasoning_format setting ("auto" and "deepseek" split the block out, "none" leaves
    it in the content). None where the template does not think."""
    if asked == "none" or OPEN not in template:
        return None
    return Thinking(forced_open=generation_prompt.rstrip(BLANK).endswith(OPEN))


def of_model(engine: Engine, asked: str) -> Thinking | None:
    """How the loaded model thinks: its template, and whether the generation prompt it renders opens
    the block (`asked`: the reasoning_format setting)."""
    return detect(engine.chat_template, engine.render_chat([("user", "x")]), asked)


@dataclass
class ReasoningSplit:
    """One choice's text, piece by piece, as (reasoning, content): the block's inside goes to
    reasoning, what follows it to content; text that may be the start of a marker is held."""

    thinking: Thinking
    state: str = field(init=False)
    held: str = ""
    # Whether a block was opened (by the template or the model): then reasoning_content is sent.
    opened: bool = field(init=False)

    def __post_init__(self) -> None:
        self.opened = self.thinking.forced_open
        self.state = "reasoning" if self.opened else "start"

    def feed(self, text: str) -> tuple[str, str]:
        text = self.held + text
        self.held = ""
        reasoning = ""
        if self.state == "start":
            lead = text.lstrip(BLANK)
            if lead.startswith(OPEN):
                self.state, self.opened, text = "reasoning", True, lead[len(OPEN) :]
            elif OPEN.startswith(lead):  # empty, or part of the opening marker: wait for more
                self.held = text
                return "", ""
            else:
                self.state = "content"
        if self.state == "reasoning":
            at = text.find(CLOSE)
            if at < 0:
                keep = _partial_suffix(text, CLOSE)
                self.held = text[len(text) - keep :] if keep else ""
                return text[: len(text) - keep], ""
            reasoning, text = text[:at], text[at + len(CLOSE) :]
            self.state = "after"
        if self.state == "after":  # the blank space that follows the block is not the answer's
            text = text.lstrip(BLANK)
            if not text:
                return reasoning, ""
            self.state = "content"
        return reasoning, text

    def flush(self) -> tuple[str, str]:
        """What is held when the generation ends: an unfinished block is all reasoning."""
        held, self.held = self.held, ""
        return (held, "") if self.state == "reasoning" else ("", held)


def split(thinking: Thinking, text: str) -> tuple[str | None, str]:
    """A whole answer as (reasoning, or None where no block was opened; content)."""
    s = ReasoningSplit(thinking)
    r1, c1 = s.feed(text)
    r2, c2 = s.flush()
    return (r1 + r2 if s.opened else None), c1 + c2


def written(thinking: Thinking, text: str) -> str:
    """The block as the model wrote it at the start of a whole answer, markers included (but the
    opening one a template wrote); "" where it wrote none. Its reasoning tokens are counted from it."""
    start = 0
    if not thinking.forced_open:
        lead = text.lstrip(BLANK)
        if not lead.startswith(OPEN):
            return ""
        start = len(text) - len(lead)
    end = text.find(CLOSE, start)
    return text[start:] if end < 0 else text[start : end + len(CLOSE)]


def closed(thinking: Thinking, text: str) -> bool:
    """Whether a whole answer's block was closed (False too where the model wrote none)."""
    return written(thinking, text).endswith(CLOSE)


def tokens(thinking: Thinking | None, text: str, completion_tokens: int, tokenize: Callable[[str], list[int]]) -> int:
    """The output tokens one answer spent on its <think> block (markers included): the engine counts
    an answer's tokens as one number, so the block's text is tokenized again, which gives the count
    it was generated in unless the model spelled some of it in other tokens than the tokenizer would
    (hence at most the answer's `completion_tokens`)."""
    block = written(thinking, text) if thinking is not None else ""
    return min(len(tokenize(block)), completion_tokens) if block else 0


def with_tokens(used: p.Usage, spent: int) -> p.Usage:
    """`used` with `spent` reasoning tokens in completion_tokens_details, as OpenAI reports them."""
    return msgspec.structs.replace(used, completion_tokens_details=p.CompletionTokensDetails(reasoning_tokens=spent))


def _partial_suffix(text: str, marker: str) -> int:
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:n]):
            return n
    return 0


# Anything up to and including "</think>": every character but "<", or a "<" that does not go on
# to spell the closing marker.
_BODY = (
    'think-body ::= ( [^<] | "<" [^/] | "</" [^t] | "</t" [^h] | "</th" [^i] | "</thi" [^n] | "</thin" [^k] '
    '| "</think" [^>] )* "</think>" [ \\t\\n]*'
)


def grammar(inner: str, thinking: Thinking) -> str:
    """`inner` (a grammar whose root is the answer: a call, a shape) after the thinking block: the
    block first where the template opens it, an optional one where the model may."""
    head = "root ::= think-body a-root" if thinking.forced_open else 'root ::= ("<think>" think-body)? a-root'
    return "\n".join([head, _BODY, namespace(inner, "a-")]) + "\n"
