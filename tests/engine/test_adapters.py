"""LoRA adapters on the one model (issue 36): a request under an adapter gets what the model with
that adapter merged into its weights gives, alone and batched beside requests without it; cells
computed under one adapter are never reused for another; a file that cannot serve the model is
refused with one line.

The base is an all-F32 copy of the embedded model: llama.cpp quantises activations on the way into
quantised weights, so on the quantised model an adapter applied and one merged differ by rounding;
in F32 they differ by float summation order (benchmarks/adapter_mix.py measured KL 5e-7 on one
prompt's logits) and the KV cache's f16 rounding.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import gguf
import numpy as np
import pytest
from engine_loop import on_loop, start_engine, stop_engine

from appliance.core.errors import InvalidRequest
from appliance.engine.engine import HiveEngine, embedded_model_path
from appliance.engine.interface import (
    AdapterFile,
    EngineConfig,
    Finished,
    Generation,
    GenerationRequest,
    SamplingParams,
    Share,
)
from appliance.engine.prefix_cache import common_prefix
from appliance.models.lora_file import architecture, random_pairs, write_adapter, write_f32

ALPHA, RANK = 16.0, 8
GREEDY = SamplingParams(temperature=0.0, logprobs=0)
TOKENS = 12
# Logprobs of the same token from the applied and the merged adapter: float summation order apart,
# and the KV cache's f16 rounding of K and V that differ that much (up to 3e-3 seen).
LOGPROB_TOLERANCE = 1e-2
SYSTEM = "You are a careful assistant who answers every question in one short sentence, plainly. " * 3


class Files:
    def __init__(self, root: Path) -> None:
        reader = gguf.GGUFReader(embedded_model_path())
        pairs = random_pairs(reader, RANK)
        self.adapter, self.f32, self.merged = root / "adapter.gguf", root / "f32.gguf", root / "merged.gguf"
        write_adapter(pairs, architecture(reader), ALPHA, self.adapter)
        write_f32(reader, self.f32)
        write_f32(reader, self.merged, pairs, ALPHA)
        # Two adapters that cannot serve the model: another family's, and one whose shapes are not its.
        self.other_arch = root / "gemma-adapter.gguf"
        write_adapter(pairs, "gemma3", ALPHA, self.other_arch)
        self.wrong_shape = root / "wrong-shape.gguf"
        write_adapter({k: (a[:, :-8], b) for k, (a, b) in pairs.items()}, architecture(reader), ALPHA, self.wrong_shape)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    return Files(tmp_path_factory.mktemp("adapters"))


@pytest.fixture(scope="module")
def tuned(files: Files) -> Iterator[HiveEngine]:
    """The F32 copy with the adapter loaded as specialist `tuned`'s."""
    eng = start_engine(
        EngineConfig(
            model_path=str(files.f32), slots=6, n_ctx=6 * 1024, adapters={"tuned": AdapterFile(str(files.adapter))}
        )
    )
    yield eng
    stop_engine(eng)


@pytest.fixture(scope="module")
def merged(files: Files) -> Iterator[HiveEngine]:
    eng = start_engine(EngineConfig(model_path=str(files.merged), slots=2, n_ctx=2048))
    yield eng
    stop_engine(eng)


def prompt(engine: HiveEngine, user: str, system: str = SYSTEM) -> list[int]:
    return engine.tokenize(engine.render_chat([("system", system), ("user", user)]))


async def generate(engine: HiveEngine, tokens: list[int], adapter: str = "") -> tuple[list[float], Finished]:
    g = engine.submit(
        GenerationRequest(
            prompt_tokens=tokens, max_tokens=TOKENS, sampling=GREEDY, adapter=adapter, cache_prefix=len(tokens) // 2
        )
    )
    logprobs = [t.logprob async for chunk in g.chunks() for t in chunk.tokens]
    assert g.finished is not None and g.finished.finish_reason in ("stop", "length"), g.finished
    return logprobs, g.finished


def assert_same(a: tuple[list[float], Finished], b: tuple[list[float], Finished]) -> None:
    assert a[1].tokens == b[1].tokens
    np.testing.assert_allclose(a[0], b[0], atol=LOGPROB_TOLERANCE)


def test_an_adapter_gives_the_merged_models_answer_alone_and_batched(tuned: HiveEngine, merged: HiveEngine) -> None:
    question = prompt(tuned, "Tell me one fact about rivers.")
    reference = on_loop(merged, generate(merged, question))
    alone = on_loop(tuned, generate(tuned, question, "tuned"))
    base = on_loop(tuned, generate(tuned, question))
    assert_same(alone, reference)
    assert base[1].tokens != alone[1].tokens  # the adapter changes the answer: the check means something

    others = [prompt(tuned, f"Tell me one fact about {topic}.") for topic in ("bees", "owls", "tea")]

    async def together() -> list[tuple[list[float], Finished]]:
        return await asyncio.gather(
            generate(tuned, question, "tuned"), generate(tuned, question), *(generate(tuned, p) for p in others)
        )

    batched = on_loop(tuned, together())
    assert_same(batched[0], reference)
    assert_same(batched[1], base)
    assert tuned.status().adapters[0].specialist == "tuned"


def test_cells_computed_under_one_adapter_are_never_reused_for_another(tuned: HiveEngine) -> None:
    # A system prompt no request sent before: what the base model computed for the others' is not here.
    question = prompt(tuned, "Tell me one fact about glaciers.", "You answer questions about ice. " * 6)
    first = on_loop(tuned, generate(tuned, question, "tuned"))
    # The same prompt on the base model: nothing of the adapter's cells is taken, only the template's
    # opening the base prompts before it share.
    opening = common_prefix(question, prompt(tuned, "Tell me one fact about rivers."))
    base = on_loop(tuned, generate(tuned, question))
    assert base[1].cached_tokens <= opening < len(question) // 4
    again = on_loop(tuned, generate(tuned, question, "tuned"))
    assert again[1].cached_tokens >= len(question) // 2  # under the same adapter they are reused
    assert_same(again, first)


def test_an_adapter_that_cannot_serve_the_model_is_refused_with_one_line(tuned: HiveEngine, files: Files) -> None:
    cases = {
        files.other_arch: "arch",
        files.wrong_shape: "shape",
        files.f32: "adapter",  # a model, not an adapter
        files.f32.parent / "missing.gguf": "not found",
    }
    for path, reason in cases.items():
        with pytest.raises(InvalidRequest) as refused:
            on_loop(tuned, tuned.set_adapter("other", AdapterFile(str(path))))
        message = str(refused.value)
        assert reason in message.lower() and "\n" not in message, message
    assert [a.specialist for a in tuned.adapters()] == ["tuned"]


def test_an_adapter_set_and_removed_at_run_time(tuned: HiveEngine, merged: HiveEngine, files: Files) -> None:
    question = prompt(tuned, "Tell me one fact about lighthouses.")
    reference = on_loop(merged, generate(merged, question))
    base = on_loop(tuned, generate(tuned, question))
    status = on_loop(tuned, tuned.set_adapter("late", AdapterFile(str(files.adapter))))
    assert (status.specialist, status.size_bytes) == ("late", files.adapter.stat().st_size)
    assert_same(on_loop(tuned, generate(tuned, question, "late")), reference)
    assert on_loop(tuned, tuned.remove_adapter("late"))
    assert_same(on_loop(tuned, generate(tuned, question, "late")), base)  # the base model again
    assert not on_loop(tuned, tuned.remove_adapter("late"))
    assert [a.specialist for a in tuned.adapters()] == ["tuned"]


def test_one_adapters_busy_traffic_does_not_starve_another_specialists(tuned: HiveEngine) -> None:
    """Five requests of one account under the adapter beside one of another account's on the base
    model, equal lengths: the steps go to the adapter whose account has had the least service, so
    the lone request is not held to one token for each of the busy side's steps (plain turns would
    have the busy side about done when it is): it finishes while the busy side is short of half way."""
    busy = [prompt(tuned, f"Tell me everything about {t}.") for t in ("rivers", "bees", "owls", "tea", "chess")]
    lone = prompt(tuned, "Tell me everything about trains.")
    sampling = SamplingParams(temperature=0.0, logprobs=0, logit_bias={tuned._require().eos: -100.0})
    tokens = 40

    def request(p: list[int], adapter: str, flow: str) -> GenerationRequest:
        return GenerationRequest(
            prompt_tokens=p, max_tokens=tokens, sampling=sampling, adapter=adapter, share=Share(flow)
        )

    async def arrivals(g: Generation) -> list[float]:
        """When each token arrived."""
        times: list[float] = []
        async for chunk in g.chunks():
            times += [time.monotonic()] * len(chunk.tokens)
        return times

    async def together() -> tuple[list[list[float]], list[float]]:
        gens = [tuned.submit(request(p, "tuned", "busy-account")) for p in busy]
        other = tuned.submit(request(lone, "", "other-account"))
        *busy_times, other_times = await asyncio.gather(*(arrivals(g) for g in [*gens, other]))
        return busy_times, other_times

    busy_times, other_times = on_loop(tuned, together())
    assert len(other_times) == tokens and all(len(t) == tokens for t in busy_times)
    done = other_times[-1]
    busy_by_then = sum(1 for times in busy_times for t in times if t <= done)
    assert busy_by_then < len(busy) * tokens / 2, busy_by_then  # plain turns: 195 of 200; this: 5
