"""The engine's interface: the Engine protocol the service talks to, and what goes in and out of it
(its configuration, requests, generations and status). No wire types and no llama_cpp here."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Literal, Protocol

import msgspec

# The engine's status is reported in the hive status's own types, defined once in the SDK's module
# (which the SDK decodes and the server sends): the engine fills them and serving sends them as they are.
from alveare.types import AdapterStatus, CpuStatus, EngineStatus, KvStatus, ModelStatus, TuningLine

__all__ = [
    "AdapterFile",
    "AdapterStatus",
    "Chunk",
    "CpuStatus",
    "Engine",
    "EngineConfig",
    "EngineStatus",
    "Finished",
    "Generation",
    "GenerationRequest",
    "KvStatus",
    "ModelStatus",
    "SamplingParams",
    "StopRule",
    "Timing",
    "TokenInfo",
    "TuningLine",
    "Turn",
    "deliver",
]

if TYPE_CHECKING:
    from appliance.core.settings import Settings


class AdapterFile(msgspec.Struct, frozen=True):
    """A GGUF LoRA adapter to load on the model, and the scale it is applied at."""

    path: str
    scale: float = 1.0


class EngineConfig(msgspec.Struct, frozen=True, kw_only=True):
    model_path: str
    # 0: chosen at load (context_size.py).
    n_ctx: int = 0
    slots: int = 8
    threads: int = 0
    gpu: bool = True
    queue_size: int = 64
    # Shared prompt prefixes saved in host memory: at most this many, in at most cache_bytes
    # (least recently used dropped first).
    cache_entries: int = 32
    cache_bytes: int = 128 * 1024 * 1024
    n_batch: int = 512
    # Most batch rows a step gives prompt tokens; 0: n_batch (step_plan.prompt_budget says why).
    prefill_chunk: int = 0
    # "unified": one pool of n_ctx cells for all slots (one request may use all of it); "split": each
    # slot its own stream of n_ctx / slots cells (attention reads only its own cells); "auto": split
    # when a slot's share holds the model's whole training context, so it limits no request.
    kv_cache: Literal["auto", "unified", "split"] = "auto"
    # "auto" (llama.cpp decides per backend), "on" or "off".
    flash_attn: Literal["auto", "on", "off"] = "auto"
    # Pass llama.cpp's own log lines through (model loading details and so on).
    verbose: bool = False
    # llama.cpp's fast CPU kernels (extra buffer types: repacking, AMX): "auto" checks them once in a
    # child process (kernels.py), "fast" or "safe" skips the check.
    cpu_kernels: Literal["auto", "fast", "safe"] = "auto"
    # Where the check's verdict is remembered (Settings.kernel_cache_path); None checks on every start.
    kernel_cache_path: str | None = None
    # The model file asked for, when model_path is the optimised copy of it (hive/optimize.py).
    source_model_path: str | None = None
    # Why model_path is the file served (serve's rule in cli/model_file.py: the copy's verdict, or why
    # the original is), for the status's optimized_copy line; "" where nobody said.
    served_because: str = ""
    # A file with the served model's layers whose one-row step is faster on this CPU (the original of
    # an optimised copy): a request running alone decodes on it (hive/solo_lane.py). None: never.
    solo_model_path: str | None = None
    # "auto" (the GGUF's own, else a known family's where unambiguous: chat_template.py), a family's
    # name or a Jinja file.
    chat_template: str = "auto"
    # Each decode step's thread count follows measured costs (tuning/threads.py); False: all threads.
    adaptive_threads: bool = True
    # A CPU context's KV cache committed as cells fill (tuning/host_pages.py); False: llama.cpp's own.
    lazy_kv: bool = True
    # LoRA adapters loaded with the model, by the name requests give (GenerationRequest.adapter): a
    # specialist's. One that does not fit the model fails the load.
    adapters: dict[str, AdapterFile] = {}

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        model_path: str,
        source_model_path: str | None = None,
        served_because: str = "",
        solo_model_path: str | None = None,
        adapters: dict[str, AdapterFile] | None = None,
    ) -> EngineConfig:
        """The engine as the settings describe it, loading `model_path` (the start plan's file)."""
        return cls(
            model_path=model_path,
            source_model_path=source_model_path,
            served_because=served_because,
            solo_model_path=solo_model_path,
            n_ctx=settings.n_ctx,
            slots=settings.slots,
            threads=settings.threads,
            gpu=settings.gpu == "auto",
            flash_attn=settings.flash_attn,
            kv_cache=settings.kv_cache,
            prefill_chunk=settings.prefill_chunk,
            cpu_kernels=settings.cpu_kernels,
            kernel_cache_path=str(settings.kernel_cache_path),
            queue_size=settings.queue_size,
            cache_bytes=settings.prefix_cache_mb * 1024 * 1024,
            verbose=settings.verbose,
            chat_template=settings.chat_template,
            adaptive_threads=settings.adaptive_threads == "on",
            lazy_kv=settings.lazy_kv == "on",
            adapters=adapters or {},
        )


class SamplingParams(msgspec.Struct, frozen=True, kw_only=True):
    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repeat_penalty: float = 1.0
    seed: int | None = None
    # A GBNF grammar the output must follow (JSON mode, tools); None for free text.
    grammar: str | None = None
    # Token id -> bias added to its logit; -100 bans the token outright (OpenAI's logit_bias).
    logit_bias: dict[int, float] = {}
    # None: no log-probabilities. 0..20: each generated token's log-probability and that many
    # most likely alternatives, from the model's own distribution (before sampling settings).
    logprobs: int | None = None
    # Never end on an end-of-generation token (they are banned): the answer runs to max_tokens.
    ignore_eos: bool = False


class StopRule(Protocol):
    """A caller's own end for a generation, beyond stop strings and end-of-generation tokens."""

    def stop(self, text: str) -> bool:
        """Whether the generation ends now, given all the text it has produced so far."""


class Share(msgspec.Struct, frozen=True):
    """Whose request this is, for the fair scheduler (fairness.py): a flow (one account's live or
    test traffic) and its weight (its plan's share weight)."""

    flow: str = ""
    weight: float = 1.0


class GenerationRequest(msgspec.Struct, frozen=True, kw_only=True):
    prompt_tokens: list[int]
    max_tokens: int
    sampling: SamplingParams = SamplingParams()
    stop: list[str] = []
    # Checked after each piece of text (finish_reason "stop" when it says so); None: none.
    stop_rule: StopRule | None = None
    # time.monotonic() by which the request must have a slot; still waiting then: finish_reason "timeout".
    deadline: float | None = None
    # Seconds the generation may run after its first token (then "timeout"). The prompt's prefill is
    # not counted: a long prompt that fits the context always gets its answer started.
    timeout_s: float | None = None
    # How many leading prompt tokens are a shared preamble (system prompt, examples) worth keeping
    # in the prefix cache for other requests; 0 for none.
    cache_prefix: int = 0
    # Draft tokens by prompt lookup and verify them in one batch; used only with greedy sampling,
    # where it changes nothing but speed.
    lookup: bool = False
    # False when the caller wants only the whole text: the engine then sends it once, at the end.
    stream: bool = True
    # Special tokens (other than end-of-generation) as their text, for formats that are written with
    # them (Mistral's [TOOL_CALLS]); otherwise they are left out of the text, as llama-server does.
    special_text: bool = False
    # The flow it is scheduled in, fairly against the others.
    share: Share = Share()
    # The name the LoRA adapter it decodes under is loaded as (the specialist's); none loaded so: the base model.
    adapter: str = ""


class TokenInfo(msgspec.Struct, frozen=True, array_like=True):
    """One generated token with its log-probability and the most likely alternatives."""

    id: int
    piece: bytes
    logprob: float
    # (token id, piece, logprob), most likely first; empty unless alternatives were asked for.
    top: list[tuple[int, bytes, float]] = []


class Chunk(msgspec.Struct, frozen=True):
    """A piece of generated text; with logprobs asked for, also the tokens that produced it (text
    is held back at UTF-8 and stop-string boundaries, so one chunk may carry several tokens, or
    tokens whose text comes in a later chunk)."""

    text: str
    tokens: list[TokenInfo] = []


class Turn(msgspec.Struct, frozen=True, kw_only=True):
    """One chat message as the model's chat template sees it, tool calls and results included."""

    role: str
    content: str | None = None
    # OpenAI-shaped: [{"id", "type": "function", "function": {"name", "arguments"}}]
    tool_calls: list[dict] | None = None
    tool_call_id: str | None = None
    name: str | None = None

    def as_template_message(self) -> dict:
        message: dict = {"role": self.role, "content": self.content if self.content is not None else ""}
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        if self.tool_call_id is not None:
            message["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            message["name"] = self.name
        return message


class Finished(msgspec.Struct, frozen=True):
    """The last event of a generation."""

    # "stop", "length", "timeout", "cancelled", "error", or "overloaded" (refused while queued: the
    # estimated wait for a slot passed its deadline; retry_after_s says when to try again)
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    # Prompt tokens served from the prefix cache rather than decoded again.
    cached_tokens: int = 0
    error: str | None = None
    # The generated token ids, for tests and tools that compare generations token by token.
    tokens: list[int] = []
    retry_after_s: float = 0.0


class Timing(msgspec.Struct):
    """When a generation passed each stage, by time.monotonic(), for the metrics and traces. The engine's
    thread writes them as it goes; read them once the generation has finished (its Finished event is
    delivered after the writes). None: the stage was never reached."""

    submitted: float
    started: float | None = None  # got a slot
    first_token: float | None = None  # its first token sampled (the end of the prompt's prefill)
    finished: float | None = None
    # Time spent paused, its slot lent to another flow (fairness.py).
    paused_s: float = 0.0


class Generation:
    """One running generation: an async iterator of text pieces, then `finished`.

    The engine's thread hands events over with `deliver` (or `push` for one); the event loop consumes them. `cancel`
    may be called from either side; the engine frees the slot at its next step.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[Chunk | Finished] = asyncio.Queue()
        self._cancel = threading.Event()
        self.finished: Finished | None = None
        self.timing = Timing(time.monotonic())

    # engine side -------------------------------------------------------------
    def push(self, item: str | Chunk | Finished) -> None:
        deliver([(self, Chunk(item) if isinstance(item, str) else item)])

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    # consumer side -----------------------------------------------------------
    def cancel(self) -> None:
        self._cancel.set()

    def __aiter__(self) -> AsyncIterator[str]:
        """The text as it comes."""
        return self._texts()

    async def _texts(self) -> AsyncIterator[str]:
        async for chunk in self.chunks():
            yield chunk.text

    async def chunks(self) -> AsyncIterator[Chunk]:
        """Text with the tokens behind it (their log-probabilities when asked for)."""
        while self.finished is None:
            item = await self._queue.get()
            if isinstance(item, Finished):
                self.finished = item
                return
            yield item


def deliver(items: list[tuple[Generation, Chunk | Finished]]) -> None:
    """Hand events from the engine's thread to their event loops, with one wake-up per loop.

    Waking the loop once per step rather than once per token matters on small machines: every
    wake-up is a thread that competes with llama.cpp's compute threads for the cores.
    """
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Generation, Chunk | Finished]]] = {}
    for gen, item in items:
        by_loop.setdefault(gen.loop, []).append((gen, item))
    for loop, batch in by_loop.items():
        try:
            loop.call_soon_threadsafe(_put_all, batch)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            for gen, _ in batch:
                gen.cancel()


def _put_all(batch: list[tuple[Generation, Chunk | Finished]]) -> None:
    for gen, item in batch:
        gen._queue.put_nowait(item)


class Engine(Protocol):
    """What the service needs from an engine; the real one and test fakes both fit."""

    @property
    def loaded(self) -> bool: ...

    @property
    def model_name(self) -> str: ...

    @property
    def context_length(self) -> int: ...

    @property
    def vocab_size(self) -> int: ...

    @property
    def chat_template(self) -> str:
        """The Jinja text of the chat template in use (tool formats are read from it)."""
        ...

    @property
    def chat_stops(self) -> list[str]:
        """Stop strings every chat answer needs: the template's end-of-turn marker where the model's
        vocabulary has no end-of-generation token for it."""
        ...

    def tokenize(self, text: str, *, special: bool = True) -> list[int]: ...

    def detokenize(self, tokens: list[int]) -> str:
        """The text of these tokens, special ones written out (a trace's prompt, when asked for)."""
        ...

    def render_chat(
        self,
        messages: list[tuple[str, str]] | list[Turn],
        *,
        add_generation_prompt: bool = True,
        tools: list[dict] | None = None,
    ) -> str: ...

    def submit(self, request: GenerationRequest) -> Generation: ...

    def submit_many(self, request: GenerationRequest, n: int) -> list[Generation]:
        """`n` independent generations that share one prefill of the prompt (OpenAI's `n`)."""
        ...

    def check_grammar(self, grammar: str) -> None:
        """Raise InvalidRequest if llama.cpp cannot compile this GBNF grammar."""
        ...

    def json_schema_grammar(self, schema: dict, *, param: str) -> str:
        """A GBNF grammar for JSON that validates against `schema`; InvalidRequest naming `param` if not expressible."""
        ...

    def status(self) -> EngineStatus: ...

    def adapters(self) -> list[AdapterStatus]:
        """The LoRA adapters loaded now, by the name they are loaded as."""
        ...

    async def set_adapter(self, name: str, adapter: AdapterFile) -> AdapterStatus:
        """Load an adapter as `name` (replacing the one it had: requests in flight finish under the old
        one); InvalidRequest when the file cannot serve this model."""
        ...

    async def remove_adapter(self, name: str) -> bool:
        """Requests for `name` decode on the base model from now on; False if it had no adapter."""
        ...

    def fair_share_deficits(self) -> dict[str, float]:
        """Each busy flow's slots short of its weighted share now (negative: over it), by flow name."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...
