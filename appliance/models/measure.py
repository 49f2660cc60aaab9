"""What `alveare model optimize` measures of one model file, on this machine: perplexity on a fixed
text, greedy answers to fixed chat prompts, and the speed of a prompt prefill and of decode steps.

The text (eval_text.txt, written for this purpose) ships with the package, so two measurements
of the same file on the same build agree and two files are compared on the same tokens.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from importlib import resources

import msgspec
import numpy as np

from appliance.engine.chat_render import chat_formatters, measuring_template, without_bos
from appliance.engine.native.llama import Batch, Context, Model
from appliance.models.report import Speed

# Perplexity windows: each scored token sees at least WINDOW - STRIDE tokens before it (or the text
# from its start), as llama.cpp's perplexity tool scores only the second half of each chunk.
WINDOW = 256
STRIDE = 128
# Chat prompts whose greedy answers the original and the copy must agree on.
PROMPTS: tuple[str, ...] = (
    "What is the capital of France?",
    "Write one sentence about the sea.",
    "Give me three tips for sleeping better.",
    "Explain in two sentences what a compiler does.",
    "Classify the sentiment of this review as positive or negative: The battery died after two days.",
    "Summarise in one sentence: The meeting moved from Tuesday to Thursday because the room was booked.",
)
ANSWER_TOKENS = 32
PREFILL_TOKENS = 256
DECODE_ROWS = 8


def eval_text() -> str:
    return resources.files("appliance.models").joinpath("eval_text.txt").read_text(encoding="utf-8")


class Measurement(msgspec.Struct, frozen=True, kw_only=True):
    description: str  # llama.cpp's words for the file: architecture, size, type
    perplexity: float
    scored_tokens: int
    ftype: int  # llama.cpp's file type (llama.QUANT_TYPES values)
    answers: list[list[int]]  # greedy token ids per prompt
    # With reference answers (the original's): how many of their tokens this model also picks greedily
    # when given the same prompt and answer so far, out of how many.
    forced_matches: int = 0
    forced_total: int = 0


def windows(n_tokens: int, first: int, window: int = WINDOW, stride: int = STRIDE) -> list[tuple[int, int, int]]:
    """(start, end, score_from) per window over tokens [0, n_tokens): every token from `first` on is
    scored once, with at least window - stride tokens of context once the text is that long."""
    out: list[tuple[int, int, int]] = []
    start, scored = 0, first
    while scored < n_tokens:
        end = min(start + window, n_tokens)
        out.append((start, end, scored))
        scored = end
        start = max(0, end - (window - stride))
    return out


def mean_nll(rows: np.ndarray, targets: Sequence[int]) -> float:
    """Mean negative log-likelihood of `targets`, row i predicting targets[i] (float64 log-softmax)."""
    x = rows.astype(np.float64)
    peak = x.max(axis=1, keepdims=True)
    log_total = peak[:, 0] + np.log(np.exp(x - peak).sum(axis=1))
    picked = x[np.arange(len(targets)), np.asarray(targets)]
    return float((log_total - picked).mean())


def shared_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class Runner:
    """One model file loaded on the CPU, with a context big enough for every measurement."""

    def __init__(self, path: str, *, threads: int, extra_bufts: bool) -> None:
        self.model = Model(path, gpu=False, extra_bufts=extra_bufts)
        try:
            self.ctx = Context(
                self.model, n_ctx=1024, n_seq=DECODE_ROWS + 1, n_batch=WINDOW + 1, threads=threads, flash="auto"
            )
        except Exception:
            self.model.close()
            raise
        self.batch = Batch(WINDOW + 1)
        self.template = chat_formatters(self.model, measuring_template(self.model, path))[True]

    def close(self) -> None:
        self.batch.close()
        self.ctx.close()
        self.model.close()

    def _decode(self, feed: Sequence[tuple[int, int, int, bool]]) -> None:
        """Decode (token, pos, seq, logits) rows as one batch."""
        self.batch.clear()
        for token, pos, seq, logits in feed:
            self.batch.add(token, pos, seq, logits)
        if self.ctx.decode(self.batch) != 0:
            raise RuntimeError("llama_decode failed while measuring the model")

    def chat_tokens(self, question: str) -> list[int]:
        """A question as a user message, through the model's chat template, tokenised as the engine does."""
        m, template = self.model, self.template
        prompt = without_bos(template(messages=[{"role": "user", "content": question}]).prompt, template, m)
        return m.tokenize(prompt, add_special=m.add_bos, parse_special=True)[:WINDOW]

    def text_tokens(self, text: str, limit: int | None) -> list[int]:
        tokens = self.model.tokenize(text, add_special=False, parse_special=False)
        return tokens[:limit] if limit else tokens

    def perplexity(self, tokens: list[int]) -> tuple[float, int]:
        """exp(mean NLL) over the text, and how many tokens were scored."""
        m = self.model
        prefix = [m.bos] if m.add_bos and m.bos >= 0 else []
        total, count = 0.0, 0
        for start, end, score_from in windows(len(tokens), 0 if prefix else 1):
            feed = prefix + tokens[start:end]
            self.ctx.clear()
            self._decode([(t, i, 0, True) for i, t in enumerate(feed)])
            rows = self.ctx.output_logits(len(feed), m.n_vocab)
            # Row j predicts feed[j + 1]; text position p sits at feed index p - start + len(prefix).
            first_row = score_from - start + len(prefix) - 1
            n = end - score_from
            total += mean_nll(rows[first_row : first_row + n], tokens[score_from:end]) * n
            count += n
        return math.exp(total / count), count

    def answers(self, prompts: Sequence[str], max_tokens: int) -> list[list[int]]:
        """Greedy answers to each prompt as a user message, rendered with the model's chat template."""
        m = self.model
        out = []
        for question in prompts:
            tokens = self.chat_tokens(question)
            self.ctx.clear()
            self._decode([(t, i, 0, i == len(tokens) - 1) for i, t in enumerate(tokens)])
            answer: list[int] = []
            for _ in range(max_tokens):
                token = int(np.argmax(self.ctx.output_logits(1, m.n_vocab)[0]))
                if m.is_eog(token):
                    break
                answer.append(token)
                self._decode([(token, len(tokens) + len(answer) - 1, 0, True)])
            out.append(answer)
        return out

    def forced_agreement(self, prompts: Sequence[str], reference: Sequence[list[int]]) -> tuple[int, int]:
        """Teacher-forced top-1 agreement: feed each prompt and the reference answer in one batch and
        count the answer tokens that are this model's greedy pick at their position. Unlike comparing
        free-running answers, one near-tie early on does not make every later token count as a miss."""
        m = self.model
        matches = total = 0
        for question, answer in zip(prompts, reference, strict=True):
            if not answer:
                continue
            tokens = self.chat_tokens(question)
            feed = (tokens + answer)[: WINDOW + 1]
            first = len(tokens) - 1  # this row predicts answer[0]
            self.ctx.clear()
            self._decode([(t, i, 0, i >= first) for i, t in enumerate(feed[:-1])])
            rows = self.ctx.output_logits(len(feed) - 1 - first, m.n_vocab)
            picks = rows.argmax(axis=1)
            expected = feed[first + 1 :]
            matches += int((picks == np.asarray(expected)).sum())
            total += len(expected)
        return matches, total

    def speed_sample(self, tokens: list[int]) -> tuple[float, list[float], list[float]]:
        """One timed prefill of PREFILL_TOKENS (tokens/s), and tokens/s of two steps of DECODE_ROWS
        rows and three of one row, over sequences of 16 prompt tokens."""
        prompt = (tokens * (PREFILL_TOKENS // max(1, len(tokens)) + 1))[:PREFILL_TOKENS]

        def timed(feed: list[tuple[int, int, int, bool]]) -> float:
            t0 = time.perf_counter()
            self._decode(feed)
            return time.perf_counter() - t0

        self.ctx.clear()
        prefill = len(prompt) / timed([(tok, p, 0, p == len(prompt) - 1) for p, tok in enumerate(prompt)])
        self.ctx.clear()
        n = 16
        self._decode([(tok, p, s, False) for s in range(DECODE_ROWS) for p, tok in enumerate(prompt[:n])])
        batch = [DECODE_ROWS / timed([(prompt[n + i], n + i, s, True) for s in range(DECODE_ROWS)]) for i in range(2)]
        one = [1 / timed([(prompt[n + 2 + i], n + 2 + i, 0, True)]) for i in range(3)]
        return prefill, batch, one


def compare_speed(runners: Sequence[Runner], tokens: list[int], repeats: int) -> list[Speed]:
    """Each runner's Speed, the runs alternating between the models so that a noisy machine (another
    process taking a core for a while) slows them all alike; medians of `repeats` rounds."""
    for r in runners:  # the first run sizes llama.cpp's buffers: not timed
        r.speed_sample(tokens)
    samples: list[tuple[list[float], list[float], list[float]]] = [([], [], []) for _ in runners]
    for _ in range(repeats):
        for r, (prefill, batch, one) in zip(runners, samples, strict=True):
            p, b, o = r.speed_sample(tokens)
            prefill.append(p)
            batch += b
            one += o
    return [
        Speed(
            prefill=round(statistics.median(p), 1),
            decode_batch=round(statistics.median(b), 1),
            decode_one=round(statistics.median(o), 1),
        )
        for p, b, o in samples
    ]


def measure(
    path: str,
    *,
    threads: int,
    extra_bufts: bool,
    text_limit: int | None = None,
    prompts: Sequence[str] = PROMPTS,
    answer_tokens: int = ANSWER_TOKENS,
    reference: Sequence[list[int]] | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> Measurement:
    """Perplexity and greedy answers of one model file (and, given the original's answers, how far the
    model agrees with them)."""
    runner = Runner(path, threads=threads, extra_bufts=extra_bufts)
    try:
        tokens = runner.text_tokens(eval_text(), text_limit)
        progress(f"  perplexity on {len(tokens)} tokens of the fixed text")
        ppl, scored = runner.perplexity(tokens)
        progress(f"  greedy answers to {len(prompts)} prompts ({answer_tokens} tokens each)")
        answers = runner.answers(prompts, answer_tokens)
        forced = runner.forced_agreement(prompts, reference) if reference is not None else (0, 0)
        return Measurement(
            description=runner.model.description,
            perplexity=round(ppl, 4),
            scored_tokens=scored,
            ftype=runner.model.ftype,
            answers=answers,
            forced_matches=forced[0],
            forced_total=forced[1],
        )
    finally:
        runner.close()


def measure_speed(models: Sequence[tuple[str, bool]], *, threads: int, repeats: int) -> list[Speed]:
    """Speed of each (path, extra_bufts) on this machine, all loaded at once and measured in turns."""
    runners: list[Runner] = []
    try:
        for path, extra_bufts in models:
            runners.append(Runner(path, threads=threads, extra_bufts=extra_bufts))
        tokens = runners[0].text_tokens(eval_text(), PREFILL_TOKENS)
        return compare_speed(runners, tokens, repeats)
    finally:
        for r in runners:
            r.close()
