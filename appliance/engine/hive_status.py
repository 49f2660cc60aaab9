"""The engine's part of /v1/hive/status: the model, KV cache and CPU the load chose, the scheduler's
counters, and one line per machine-tuning piece (engine/tuning/), built from what HiveEngine holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeGuard

from appliance.engine.interface import (
    AdapterStatus,
    CpuStatus,
    EngineConfig,
    EngineStatus,
    KvStatus,
    ModelStatus,
    TuningLine,
)
from appliance.engine.tuning.host_pages import PagesChoice
from appliance.engine.tuning.idle_cpu import IdleCpu

if TYPE_CHECKING:
    from appliance.engine.adapters import Adapter
    from appliance.engine.native.kernels import KernelChoice
    from appliance.engine.native.llama import Context, Model
    from appliance.engine.scheduler import Scheduler
    from appliance.engine.tuning.attention import AttentionChoice
    from appliance.engine.tuning.solo_lane import SoloLane
    from appliance.engine.tuning.threads import ThreadPolicy


@dataclass
class TuningState:
    """The machine-tuning pieces' state for the status, set as the model loads."""

    idle: IdleCpu = field(default_factory=IdleCpu)
    policy: ThreadPolicy | None = None
    context_why: str = ""
    pages: PagesChoice | None = None
    # The flash-attention verdict where the load timed it (split streams on a CPU under --flash-attn auto).
    attention: AttentionChoice | None = None
    # Why the solo lane is off where it was asked for and is not there ("" where it is, or was never asked for).
    lane_why: str = ""


def adapter_status(adapter: Adapter) -> AdapterStatus:
    return AdapterStatus(specialist=adapter.name, file=adapter.path, scale=adapter.scale, size_bytes=adapter.nbytes)


def solo_lane_on(lane: SoloLane | None) -> TypeGuard[SoloLane]:
    """Whether the solo lane decodes lone requests: loaded beside the served model and not broken since."""
    return lane is not None and not lane.broken


def engine_status(
    cfg: EngineConfig,
    *,
    name: str,
    load_error: str | None,
    model: Model | None,
    ctx: Context | None,
    scheduler: Scheduler | None,
    lane: SoloLane | None,
    kernels: KernelChoice | None,
    device: str,
    template: str,
    kv_layout: str,
    context_length: int,
    tuning: TuningState,
) -> EngineStatus:
    """The status of an engine serving `name` with these parts (None where they are not loaded):
    `template` is the chat template's label, `kv_layout` the KV cache's, `device` where the layers run."""
    m, s = model, scheduler
    gen_rate, prompt_rate = s.stats.rates() if s else (0.0, 0.0)
    hits, lookups = (s.stats.hits, s.stats.lookups) if s else (0, 0)
    return EngineStatus(
        loaded=s is not None,
        load_error=load_error,
        model=ModelStatus(
            name=name,
            file=cfg.model_path,
            optimized_from=cfg.source_model_path or "",
            solo_file=lane.path if solo_lane_on(lane) else "",
            size_bytes=m.size_bytes if m else 0,
            n_params=m.n_params if m else 0,
            device=device,
            gpu_layers=m.gpu_layers if m else 0,
            chat_template=template,
        ),
        kv=KvStatus(layout=kv_layout, cells=ctx.n_ctx if ctx else cfg.n_ctx, context_length=context_length),
        cpu=CpuStatus(
            kernels=kernels.mode if kernels else "",
            kernels_source=kernels.source if kernels else "",
            kernels_reason=kernels.reason if kernels else "",
            threads=s.threads.current if s else 0,
        ),
        tuning=tuning_lines(cfg, tuning, lane, ctx.n_ctx if ctx else 0) if s else [],
        slots_total=cfg.slots,
        slots_busy=s.busy if s else 0,
        queue_depth=s.queued if s else 0,
        queue_limit=cfg.queue_size,
        tokens_per_second=round(gen_rate, 2),
        prompt_tokens_per_second=round(prompt_rate, 2),
        requests_served=s.stats.served if s else 0,
        prefix_cache_hits=hits,
        prefix_cache_lookups=lookups,
        prefix_cache_hit_rate=round(hits / lookups, 4) if lookups else 0.0,
        prefix_cache_tokens_reused=s.stats.reused_tokens if s else 0,
        draft_tokens=s.stats.drafted if s else 0,
        draft_tokens_accepted=s.stats.draft_accepted if s else 0,
        requests_paused=s.stats.paused if s else 0,
        adapters=[adapter_status(a) for a in s.adapters.loaded()] if s else [],
    )


def tuning_lines(cfg: EngineConfig, tuning: TuningState, lane: SoloLane | None, cells: int) -> list[TuningLine]:
    """One line per machine-tuning piece (engine/tuning/, and serve's choice of file), once loaded:
    whether it is on, the serve flag that switches it ("" where none does) and its state now."""
    policy, pages = tuning.policy, tuning.pages
    assert policy is not None and pages is not None
    adapts = policy.adapts
    if cfg.threads:
        threads_state = f"off: --threads {cfg.threads} fixes the count"
    elif not cfg.adaptive_threads:
        threads_state = f"off: --adaptive-threads off; every step uses {policy.most} threads"
    else:
        threads_state = policy.state()
    lane_state = lane.state() if lane is not None else tuning.lane_why or "off: no file to decode on (see --solo-model)"
    source = cfg.source_model_path
    served = Path(cfg.model_path).name
    copy_state = f"serving {served}, the copy of {Path(source).name}" if source else f"serving {served} itself"
    if cfg.served_because:
        copy_state += f": {cfg.served_because}"
    idle = tuning.idle
    if tuning.attention is not None:
        verdict = tuning.attention
        when = "timed at this load" if verdict.source == "measured" else "as timed before on this model, build and CPU"
        attention = f"{verdict.flash} for split streams, {when}: {verdict.reason}"
    elif cfg.flash_attn != "auto":
        attention = f"off: --flash-attn {cfg.flash_attn}"
    else:
        attention = "off (not timed): llama.cpp decides, as on a GPU, a unified cache or a model too big for the rule"
    return [
        TuningLine(name="threads", on=adapts, setting="--adaptive-threads", state=threads_state),
        TuningLine(
            name="idle_cpu",
            on=adapts and idle.readable,
            setting="--adaptive-threads",
            state=idle.state() if adapts else "off: the thread count does not adapt",
        ),
        TuningLine(
            name="context_size", on=not cfg.n_ctx, setting="--ctx", state=f"{cells} cells, {tuning.context_why}"
        ),
        TuningLine(name="flash_attention", on=tuning.attention is not None, setting="--flash-attn", state=attention),
        TuningLine(name="host_pages", on=pages.on, setting="--lazy-kv", state=pages.why),
        TuningLine(name="solo_lane", on=solo_lane_on(lane), setting="--solo-model", state=lane_state),
        TuningLine(name="optimized_copy", on=bool(source), setting="--optimized-model", state=copy_state),
    ]
