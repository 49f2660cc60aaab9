"""The engine's per-token log-probabilities in OpenAI's two wire shapes: chat's logprobs.content[]
and the legacy completions' parallel lists."""

from __future__ import annotations

from appliance.core import protocol as p
from appliance.engine.interface import TokenInfo


def _text(piece: bytes) -> str:
    return piece.decode("utf-8", "replace")


def _top(piece: bytes, logprob: float) -> p.TopLogprob:
    return p.TopLogprob(token=_text(piece), logprob=logprob, bytes=list(piece))


def chat(tokens: list[TokenInfo]) -> p.ChoiceLogprobs:
    return p.ChoiceLogprobs(
        content=[
            p.TokenLogprob(
                token=_text(t.piece),
                logprob=t.logprob,
                bytes=list(t.piece),
                top_logprobs=[
                    p.TopLogprob(token=_text(piece), logprob=lp, bytes=list(piece)) for _, piece, lp in t.top
                ],
            )
            for t in tokens
        ]
    )


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
