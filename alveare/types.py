"""The response wire types, shared by the SDK (which decodes them) and the server (appliance.core.protocol
re-exports them and encodes them), so the two can never drift apart.

Unknown fields are ignored when decoding, so an SDK keeps working against a newer server.
"""

from __future__ import annotations

from typing import Literal

from msgspec import Struct

__all__ = [
    "AssistantMessage",
    "ChatChoice",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChoiceLogprobs",
    "ChunkChoice",
    "Completion",
    "CompletionChoice",
    "CompletionTokensDetails",
    "CpuStatus",
    "Delta",
    "EngineStatus",
    "ErrorBody",
    "ErrorEnvelope",
    "FunctionCall",
    "FunctionCallDelta",
    "Health",
    "HiveNode",
    "HiveSample",
    "HiveStatus",
    "InferResponse",
    "KvStatus",
    "LegacyLogprobs",
    "Model",
    "ModelList",
    "ModelStatus",
    "PromptTokensDetails",
    "SpecialistList",
    "SpecialistView",
    "TokenLogprob",
    "ToolCall",
    "ToolCallDelta",
    "TopLogprob",
    "TuningLine",
    "Usage",
    "UsageReport",
]


class PromptTokensDetails(Struct):
    # Prompt tokens served from the prefix cache instead of being decoded again.
    cached_tokens: int = 0


class CompletionTokensDetails(Struct):
    # Of the completion tokens, those a thinking model spent on its <think> block (0 without one).
    reasoning_tokens: int = 0


class Usage(Struct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None


# Why a choice ended, as OpenAI's SDKs type it (Alveare sends the first three; its own ends, such as
# a timeout, are errors in the API's envelope instead).
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "function_call"]


class FunctionCall(Struct):
    name: str
    # A JSON string, as OpenAI sends it (generated under a grammar, so it always parses).
    arguments: str


class ToolCall(Struct):
    id: str
    function: FunctionCall
    type: Literal["function"] = "function"


class AssistantMessage(Struct):
    content: str | None
    role: Literal["assistant"] = "assistant"
    refusal: str | None = None
    tool_calls: list[ToolCall] | None = None
    # A thinking model's <think> block, apart from the answer (as llama-server and vLLM send it).
    reasoning_content: str | None = None


class TopLogprob(Struct):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprob(Struct):
    token: str
    logprob: float
    bytes: list[int] | None
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(Struct):
    content: list[TokenLogprob] | None
    refusal: list[TokenLogprob] | None = None


class ChatChoice(Struct):
    index: int
    message: AssistantMessage
    finish_reason: FinishReason
    logprobs: ChoiceLogprobs | None = None


class ChatCompletion(Struct):
    id: str
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    object: Literal["chat.completion"] = "chat.completion"
    system_fingerprint: str | None = None


class FunctionCallDelta(Struct, omit_defaults=True):
    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(Struct, omit_defaults=True):
    """A streamed tool call: id, type and name once per index, then arguments in fragments."""

    index: int
    id: str | None = None
    type: str | None = None
    function: FunctionCallDelta | None = None


class Delta(Struct, omit_defaults=True):
    role: str | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None
    reasoning_content: str | None = None


class ChunkChoice(Struct):
    index: int
    delta: Delta
    finish_reason: FinishReason | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(Struct):
    id: str
    created: int
    model: str
    choices: list[ChunkChoice]
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    system_fingerprint: str | None = None
    usage: Usage | None = None


class LegacyLogprobs(Struct):
    """The legacy completions endpoint's logprobs shape."""

    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float]] | None
    text_offset: list[int]


class CompletionChoice(Struct):
    index: int
    text: str
    finish_reason: Literal["stop", "length", "content_filter"] | None
    logprobs: LegacyLogprobs | None = None


class Completion(Struct):
    id: str
    created: int
    model: str
    choices: list[CompletionChoice]
    object: Literal["text_completion"] = "text_completion"
    usage: Usage | None = None
    system_fingerprint: str | None = None


class InferResponse(Struct):
    id: str
    specialist: str
    result: str
    tokens_used: int
    latency_ms: int
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    # A thinking model's <think> block, apart from `result` (the server's --reasoning-format); null
    # where the model wrote none, or the server leaves it in `result`.
    reasoning: str | None = None


class Model(Struct):
    id: str
    created: int
    object: Literal["model"] = "model"
    owned_by: str = "alveare"
    # The file name of the LoRA adapter the specialist decodes under (a fine-tune on the base model);
    # null for a specialist that is a prompt and parameters only.
    adapter: str | None = None


class ModelList(Struct):
    data: list[Model]
    object: Literal["list"] = "list"


class Health(Struct):
    status: str
    version: str
    uptime_seconds: int
    model_loaded: bool
    model: str | None


class HiveSample(Struct):
    """One 10-second bucket of metered requests: t is the bucket's start in unix seconds."""

    t: int
    tokens: int
    requests: int
    errors: int


class ModelStatus(Struct, kw_only=True):
    """The model served: its name, the files loaded, its size and where its layers run."""

    # The name it is served under (an optimised copy serves under its original's name).
    name: str
    # The GGUF file loaded, and when it is the copy `alveare model optimize` kept, the file asked for.
    file: str
    optimized_from: str
    # Loaded beside the copy: the file a request running alone decodes on (the solo lane); "" if none.
    solo_file: str
    size_bytes: int
    n_params: int
    # "cpu", or "gpu (N/M layers offloaded)"
    device: str
    gpu_layers: int
    # The chat template and why: "gguf (the model file's own)", "gemma (asked for)", ...
    chat_template: str


class KvStatus(Struct, kw_only=True):
    """The KV cache: its layout, its cells and what a request may use of them."""

    # "unified" (all slots share the cells; one request may use them all) or "split" (each slot has
    # cells / slots_total of its own); "" while loading.
    layout: str
    cells: int
    # The most tokens one request may hold (prompt and answer).
    context_length: int


class CpuStatus(Struct, kw_only=True):
    """llama.cpp's CPU side: which kernels, and how many threads decode steps use now."""

    # "fast" (repacked weights, AMX where the CPU has it) or "safe"; how that was decided ("check",
    # "cache", "setting" or "gpu") and why. Empty while loading.
    kernels: str
    kernels_source: str
    kernels_reason: str
    # Threads decode steps use now: fewer than the cores while another process takes one (unless
    # --threads fixes the count).
    threads: int


# The machine-tuning pieces the status lists, in its order: the one table the engine, the docs
# (docs/api.md) and the tests read.
TUNING_PIECES = ("threads", "idle_cpu", "context_size", "flash_attention", "host_pages", "solo_lane", "optimized_copy")


class TuningLine(Struct, kw_only=True):
    """One piece of the engine's machine tuning: its name, whether it is on, the setting that governs
    it and its state now, in a few words. One shape for every piece, so a tool lists them all alike."""

    # One of TUNING_PIECES.
    name: str
    on: bool
    # The serve flag that switches it ("--adaptive-threads"); "" where none does.
    setting: str
    # What it is doing now, or why it is off.
    state: str


class AdapterStatus(Struct, kw_only=True):
    """A LoRA adapter loaded on the model, named for the specialist it serves."""

    specialist: str
    file: str
    scale: float
    size_bytes: int


class EngineStatus(Struct, kw_only=True):
    """The engine's part of the hive status: the engine reports it in these very types, so the server
    sends it as the engine made it, under the same names."""

    loaded: bool
    load_error: str | None
    model: ModelStatus
    kv: KvStatus
    cpu: CpuStatus
    # One line per machine-tuning piece (TuningLine), in a fixed order.
    tuning: list[TuningLine]
    slots_total: int
    slots_busy: int
    queue_depth: int
    queue_limit: int
    # Over the last minute.
    tokens_per_second: float
    prompt_tokens_per_second: float
    requests_served: int
    prefix_cache_hits: int
    prefix_cache_lookups: int
    prefix_cache_hit_rate: float
    prefix_cache_tokens_reused: int
    draft_tokens: int
    draft_tokens_accepted: int
    # Generations that gave their slot up for a while to another account's request (fair scheduling).
    requests_paused: int = 0
    # The LoRA adapters loaded beside the model, by specialist.
    adapters: list[AdapterStatus] = []


class HiveNode(Struct, kw_only=True):
    """One appliance of a cluster (GET /v1/hive/status?all=1): what its last heartbeat said."""

    id: str
    # Where it serves, as it advertises itself (--advertise-url).
    url: str
    # "up": a heartbeat within the last 10 s; "down": none since; "stopped": it said it stopped.
    state: str
    # Seconds since its last heartbeat (the database's clock).
    heartbeat_age_seconds: float
    version: str
    model: str
    slots_total: int
    slots_busy: int
    queue_depth: int
    tokens_per_second: float
    # When it started, ISO 8601 UTC.
    started_at: str
    # The node that answered this request.
    this_node: bool = False


class HiveStatus(EngineStatus, kw_only=True):
    """GET /v1/hive/status: the engine's status (EngineStatus) and the server's own facts."""

    version: str
    # Seconds since the server started.
    uptime_seconds: int
    specialists: list[str]
    # Metered API requests (every status) finished in the last 60 seconds.
    requests_per_minute: int = 0
    # Metered requests that failed since the server started, by HTTP status ("429": 3).
    errors_by_status: dict[str, int] = {}
    # The last 10 minutes in 10-second buckets, oldest first; the last one is the current bucket.
    history: list[HiveSample] = []
    # With ?all=1: every node of the cluster (this one alone on a single box), up or down.
    nodes: list[HiveNode] | None = None


class UsageReport(Struct):
    """GET /v1/usage: the spec's fields first, then Alveare's extras."""

    period_start: str
    period_end: str
    requests_used: int
    requests_limit: int
    tokens_used: int
    by_specialist: dict[str, int]
    plan: str
    overage_requests: int
    spending: float
    spending_cap: float | None
    # alv_test_ requests: recorded, never counted in requests_used, tokens_used or overage
    test_requests: int


class SpecialistView(Struct):
    name: str
    model: str
    description: str
    # the prompt in force for the caller's account: its own when set (and its plan allows it), else the default
    system_prompt: str
    custom: bool
    enabled: bool
    object: Literal["specialist"] = "specialist"


class SpecialistList(Struct):
    data: list[SpecialistView]
    custom_prompts_allowed: bool
    object: Literal["list"] = "list"


class ErrorBody(Struct):
    message: str
    type: str
    param: str | None
    code: str | None
    request_id: str | None


class ErrorEnvelope(Struct):
    error: ErrorBody
