"""The facts plan.py decides from, read from this machine: the embedded model's file, whether the
llama.cpp build offloads to a GPU, and what the data dir's model reports say of the file."""

from __future__ import annotations

from typing import TYPE_CHECKING

from appliance.boot.plan import ModelFacts, model_path, plan_startup

if TYPE_CHECKING:
    from appliance.core.settings import Settings


def embedded_model() -> tuple[str | None, str]:
    """The embedded model's GGUF (None where its package is absent) and, then, the line saying so."""
    from appliance.engine.engine import embedded_model_path

    try:
        return embedded_model_path(), ""
    except FileNotFoundError as exc:
        return None, str(exc)


def gpu_offload(settings: Settings) -> bool:
    """Whether this llama.cpp build offloads to a GPU; not asked (no library loaded) with --gpu off."""
    if settings.gpu != "auto":
        return False
    from appliance.engine.native.llama import supports_gpu_offload

    return supports_gpu_offload()


def gather(settings: Settings) -> ModelFacts:
    from appliance.models.select import measured_here, optimized_copy

    embedded, missing = embedded_model()
    path = model_path(settings, embedded, missing)
    return ModelFacts(
        model_path=path,
        embedded_path=embedded,
        gpu_offload=gpu_offload(settings),
        measured_here=measured_here(path, settings.models_path),
        copy=None if settings.optimized_model == "off" else optimized_copy(path, settings.models_path),
    )


def served_file(settings: Settings) -> str:
    """The file serve, with these settings, would load now."""
    return plan_startup(settings, gather(settings)).served_path
