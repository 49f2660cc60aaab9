"""A thinking model's <think> block apart from its answer: whole, streamed in any pieces, opened by
the template or by the model, and the grammar that lets it think before a call or a shape."""

from __future__ import annotations

import pytest

from appliance.serving.reasoning import ReasoningSplit, Thinking, detect, grammar, split

OPEN_BY_TEMPLATE = Thinking(forced_open=True)
OPEN_BY_MODEL = Thinking(forced_open=False)


def test_detect() -> None:
    assert detect("{{ x }}", "<|im_start|>assistant\n", "auto") is None
    assert detect("... </think> ...<think>", "<Assistant><think>\n", "auto") == OPEN_BY_TEMPLATE
    assert detect("... <think> ...", "<|im_start|>assistant\n", "deepseek") == OPEN_BY_MODEL
    assert detect("... <think> ...", "<think>\n", "none") is None


@pytest.mark.parametrize(
    ("thinking", "text", "expected"),
    [
        (OPEN_BY_TEMPLATE, "Let me see.\n</think>\n\nParis.", ("Let me see.\n", "Paris.")),
        (OPEN_BY_TEMPLATE, "Still thinking", ("Still thinking", "")),
        (OPEN_BY_MODEL, "<think>Hmm</think>Rome.", ("Hmm", "Rome.")),
        (OPEN_BY_MODEL, "\n<think>\nHmm</think>\nRome.", ("\nHmm", "Rome.")),
        (OPEN_BY_MODEL, "Rome, not <think>.", (None, "Rome, not <think>.")),
        (OPEN_BY_MODEL, "<thi", (None, "<thi")),
    ],
)
def test_split_whole_and_in_every_piece_size(thinking: Thinking, text: str, expected: tuple) -> None:
    assert split(thinking, text) == expected
    for size in (1, 2, 3, 5):
        s = ReasoningSplit(thinking)
        thought, answer = "", ""
        for at in range(0, len(text), size):
            r, c = s.feed(text[at : at + size])
            thought, answer = thought + r, answer + c
        r, c = s.flush()
        assert (thought + r if s.opened else None, answer + c) == expected, size


def test_the_grammar_puts_the_block_before_the_answer() -> None:
    inner = 'root ::= "{" x "}"\nx ::= "1"'
    forced = grammar(inner, OPEN_BY_TEMPLATE)
    assert forced.startswith("root ::= think-body a-root\n") and 'a-root ::= "{" a-x "}"' in forced
    optional = grammar(inner, OPEN_BY_MODEL)
    assert optional.startswith('root ::= ("<think>" think-body)? a-root\n')
