"""The engine's per-token log-probabilities in OpenAI's wire shapes: chat's logprobs.content[] (which
a Responses output_text part carries as its `logprobs`), the Responses text events' lighter entries,
and the legacy completions' parallel lists. TextTokens says which tokens wrote a part of the text."""

from __future__ import annotations

from appliance.core import protocol as p
from appliance.engine.interface import TokenInfo


def _text(piece: bytes) -> str:
    return piece.decode("utf-8", "replace")


def _top(piece: bytes, logprob: float) -> p.TopLogprob:
    return p.TopLogprob(token=_text(piece), logprob=logprob, bytes=list(piece))


def content(tokens: list[TokenInfo]) -> list[p.TokenLogprob]:
    return [
        p.TokenLogprob(
            token=_text(t.piece),
            logprob=t.logprob,
            bytes=list(t.piece),
            top_logprobs=[_top(piece, lp) for _, piece, lp in t.top],
        )
        for t in tokens
    ]


def chat(tokens: list[TokenInfo]) -> p.ChoiceLogprobs:
    return p.ChoiceLogprobs(content=content(tokens))


def text_events(tokens: list[TokenInfo]) -> list[p.ResponseTextLogprob]:
    """The `logprobs` of response.output_text.delta and .done events: OpenAI's shape there has no bytes."""
    return [
        p.ResponseTextLogprob(
            token=_text(t.piece),
            logprob=t.logprob,
            top_logprobs=[p.ResponseTextTopLogprob(token=_text(piece), logprob=lp) for _, piece, lp in t.top],
        )
        for t in tokens
    ]


class TextTokens:
    """A generation's tokens, fed as they come, and taken by the part of its text they wrote: a
    Responses message is the answer after a thinking block, so the block's tokens (and the blank that
    follows it) are not the message's. Positions are bytes of the generated text from its start; a
    token belongs to a part where some of its bytes do. Tokens whose text is not out yet (held at a
    UTF-8 or stop-string boundary) wait for a later part; those of a stop string never come out."""

    def __init__(self) -> None:
        self.end = 0  # where the next token fed starts
        self.waiting: list[tuple[int, TokenInfo]] = []  # (start, token), not taken yet

    def feed(self, tokens: list[TokenInfo]) -> None:
        for t in tokens:
            self.waiting.append((self.end, t))
            self.end += len(t.piece)

    def take(self, start: int, end: int) -> list[TokenInfo]:
        """The waiting tokens that wrote some of bytes [start, end); those wholly before `start` are
        dropped, those from `end` on wait."""
        taken, later = [], []
        for at, t in self.waiting:
            if at >= end:
                later.append((at, t))
            elif at + len(t.piece) > start:
                taken.append(t)
        self.waiting = later
        return taken


def tail_tokens(tokens: list[TokenInfo], text: str, tail: str) -> list[TokenInfo]:
    """The tokens of a whole answer `text` that wrote `tail`, its end (the answer after a block)."""
    whole = len(text.encode())
    found = TextTokens()
    found.feed(tokens)
    return found.take(whole - len(tail.encode()), whole)


def legacy(tokens: list[TokenInfo], *, offset: int = 0, with_top: bool = True) -> p.LegacyLogprobs:
    """`offset`: where the generated text starts in the choice's text (after an echoed prompt)."""
    offsets = []
    for t in tokens:
        offsets.append(offset)
        offset += len(_text(t.piece))
    return p.LegacyLogprobs(
        tokens=[_text(t.piece) for t in tokens],
        token_logprobs=[t.logprob for t in tokens],
        top_logprobs=[{_text(piece): lp for _, piece, lp in t.top} for t in tokens] if with_top else None,
        text_offset=offsets,
    )
