"""The response wire types, shared by the SDK (which decodes them) and the server (appliance.core.protocol
re-exports them and encodes them), so the two can never drift apart.

Unknown fields are ignored when decoding, so an SDK keeps working against a newer server.
"""

from __future__ import annotations

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
    "Delta",
    "ErrorBody",
    "ErrorEnvelope",
    "FunctionCall",
    "FunctionCallDelta",
    "Health",
    "HiveSample",
    "HiveStatus",
    "InferResponse",
    "LegacyLogprobs",
    "Model",
    "ModelList",
    "PromptTokensDetails",
    "SpecialistList",
    "SpecialistView",
    "TokenLogprob",
    "ToolCall",
    "ToolCallDelta",
    "TopLogprob",
    "Usage",
    "UsageReport",
]


class PromptTokensDetails(Struct):
    # Prompt tokens served from the prefix cache instead of being decoded again.
    cached_tokens: int = 0


class Usage(Struct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None


class FunctionCall(Struct):
    name: str
    # A JSON string, as OpenAI sends it (generated under a grammar, so it always parses).
    arguments: str


class ToolCall(Struct):
    id: str
    function: FunctionCall
    type: str = "function"


class AssistantMessage(Struct):
    content: str | None
    role: str = "assistant"
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
    finish_reason: str
    logprobs: ChoiceLogprobs | None = None


class ChatCompletion(Struct):
    id: str
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    object: str = "chat.completion"
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
    finish_reason: str | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(Struct):
    id: str
    created: int
    model: str
    choices: list[ChunkChoice]
    object: str = "chat.completion.chunk"
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
    finish_reason: str | None
    logprobs: LegacyLogprobs | None = None


class Completion(Struct):
    id: str
    created: int
    model: str
    choices: list[CompletionChoice]
    object: str = "text_completion"
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


class Model(Struct):
    id: str
    created: int
    object: str = "model"
    owned_by: str = "alveare"


class ModelList(Struct):
    data: list[Model]
    object: str = "list"


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


class HiveStatus(Struct):
    version: str
    uptime_seconds: int
    model: str
    model_size_bytes: int
    n_params: int
    device: str
    gpu_layers: int
    context_length: int
    kv_cells: int
    slots_total: int
    slots_busy: int
    queue_depth: int
    queue_limit: int
    tokens_per_second: float
    prompt_tokens_per_second: float
    requests_served: int
    prefix_cache_hits: int
    prefix_cache_lookups: int
    prefix_cache_hit_rate: float
    prefix_cache_tokens_reused: int
    draft_tokens: int
    draft_tokens_accepted: int
    specialists: list[str]
    loaded: bool
    load_error: str | None
    # Metered API requests (every status) finished in the last 60 seconds.
    requests_per_minute: int = 0
    # Metered requests that failed since the server started, by HTTP status ("429": 3).
    errors_by_status: dict[str, int] = {}
    # The last 10 minutes in 10-second buckets, oldest first; the last one is the current bucket.
    history: list[HiveSample] = []
    # llama.cpp's CPU kernels in use: "fast" (repacked weights, AMX where the CPU has it) or "safe";
    # how that was decided ("check", "cache", "setting" or "gpu") and why. Empty while loading.
    cpu_kernels: str = ""
    cpu_kernels_source: str = ""
    cpu_kernels_reason: str = ""
    # CPU threads decode steps use now: fewer than the cores while another process takes one
    # (unless --threads fixes the count).
    threads: int = 0
    # "unified" (all slots share kv_cells; one request may use them all) or "split" (each slot has
    # kv_cells / slots_total of its own).
    kv_cache: str = ""
    # The GGUF file loaded, and when it is the copy `alveare model optimize` kept, the file asked for.
    model_file: str = ""
    optimized_from: str = ""
    # Loaded beside the copy: the file a request running alone decodes on (the solo lane); "" if none.
    solo_model_file: str = ""
    # The chat template and why: "gguf (the model file's own)", "gemma (asked for)", ...
    chat_template: str = ""


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
    object: str = "specialist"


class SpecialistList(Struct):
    data: list[SpecialistView]
    custom_prompts_allowed: bool
    object: str = "list"


class ErrorBody(Struct):
    message: str
    type: str
    param: str | None
    code: str | None
    request_id: str | None


class ErrorEnvelope(Struct):
    error: ErrorBody
