"""Wire types: OpenAI-compatible and native request/response Structs and the error envelope.

Requests are decoded and validated with msgspec; unknown fields are ignored so that any
OpenAI client's extra fields pass through harmlessly.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

MAX_TOKENS_LIMIT = 4096

MaxTokens = Annotated[int, Meta(ge=1, le=MAX_TOKENS_LIMIT)]
Temperature = Annotated[float, Meta(ge=0, le=2)]
TopP = Annotated[float, Meta(ge=0, le=1)]
Penalty = Annotated[float, Meta(ge=-2, le=2)]
Stop = str | Annotated[list[str], Meta(max_length=4)]


# ---------------------------------------------------------------- requests
class ContentPart(Struct, forbid_unknown_fields=False):
    type: str
    text: str | None = None


class ChatMessage(Struct):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class StreamOptions(Struct):
    include_usage: bool = False


class ResponseFormat(Struct):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


class ChatCompletionRequest(Struct):
    model: Annotated[str, Meta(min_length=1)]
    messages: Annotated[list[ChatMessage], Meta(min_length=1)]
    max_tokens: MaxTokens | None = None
    max_completion_tokens: MaxTokens | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    stop: Stop | None = None
    n: Annotated[int, Meta(ge=1, le=8)] | None = 1
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    seed: int | None = None
    user: str | None = None
    response_format: ResponseFormat | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    logit_bias: dict[str, float] | None = None


class CompletionRequest(Struct):
    model: Annotated[str, Meta(min_length=1)]
    prompt: str | Annotated[list[str], Meta(min_length=1, max_length=1)]
    # OpenAI's legacy endpoint defaults to 16 tokens.
    max_tokens: MaxTokens | None = 16
    temperature: Temperature | None = None
    top_p: TopP | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    stop: Stop | None = None
    n: Annotated[int, Meta(ge=1, le=8)] | None = 1
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    seed: int | None = None
    user: str | None = None
    echo: bool | None = False
    suffix: str | None = None
    logprobs: int | None = None
    best_of: int | None = None


class InferRequest(Struct):
    specialist: Annotated[str, Meta(min_length=1)]
    prompt: Annotated[str, Meta(min_length=1)]
    max_tokens: MaxTokens | None = None
    temperature: Temperature | None = None


# ---------------------------------------------------------------- responses
class Usage(Struct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(Struct):
    content: str | None
    role: str = "assistant"
    refusal: str | None = None


class ChatChoice(Struct):
    index: int
    message: AssistantMessage
    finish_reason: str
    logprobs: None = None


class ChatCompletion(Struct):
    id: str
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage
    object: str = "chat.completion"
    system_fingerprint: str | None = None


class Delta(Struct, omit_defaults=True):
    role: str | None = None
    content: str | None = None


class ChunkChoice(Struct):
    index: int
    delta: Delta
    finish_reason: str | None = None
    logprobs: None = None


class ChatCompletionChunk(Struct):
    id: str
    created: int
    model: str
    choices: list[ChunkChoice]
    object: str = "chat.completion.chunk"
    system_fingerprint: str | None = None
    usage: Usage | None = None


class CompletionChoice(Struct):
    index: int
    text: str
    finish_reason: str | None
    logprobs: None = None


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


class SpecialistParameters(Struct):
    temperature: float
    top_p: float
    max_tokens: int
    stop: list[str]


class SpecialistExample(Struct):
    user: str
    assistant: str


class ModelInfo(Struct):
    id: str
    specialist: str
    description: str
    system_prompt: str
    parameters: SpecialistParameters
    examples: list[SpecialistExample]
    base_model: str
    context_length: int
    object: str = "model.info"
    owned_by: str = "alveare"


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


MAX_SYSTEM_PROMPT = 8000


class SystemPromptUpdate(Struct, forbid_unknown_fields=True):
    # Refused, not ignored: `{"system_prompt": ..., "temperature": 0}` would otherwise look accepted.
    system_prompt: str


# ---------------------------------------------------------------- admin API bodies
# Types only: the ranges are checked by appliance.admin, with the same messages locally and over HTTP.
# Unknown fields are refused, so a mistyped limit is an error instead of a silent no-op.
class AdminAccountCreate(Struct, forbid_unknown_fields=True):
    name: str
    plan: str = "starter"


class AdminAccountUpdate(Struct, forbid_unknown_fields=True):
    plan: str | None = None
    # null clears the cap; leaving the field out keeps it.
    spending_cap: float | msgspec.UnsetType | None = msgspec.UNSET


class AdminPlanUpdate(Struct, forbid_unknown_fields=True):
    requests_per_minute: int | None = None
    requests_per_month: int | None = None
    tokens_per_minute: int | None = None
    specialists_allowed: int | None = None
    custom_prompts: bool | None = None
    overage_per_1k_requests: float | None = None
    monthly_price: float | None = None


class AdminKeyCreate(Struct, forbid_unknown_fields=True):
    account: str
    test: bool = False


class AdminSpecialistUpdate(Struct, forbid_unknown_fields=True):
    system_prompt: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None


class AdminDeleted(Struct):
    deleted: bool


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


def encode(value: Any) -> bytes:
    return msgspec.json.encode(value)
