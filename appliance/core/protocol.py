"""Wire types: OpenAI-compatible and native request Structs, admin bodies; the responses come from alveare.types.

Requests are decoded and validated with msgspec; unknown fields are ignored so that any
OpenAI client's extra fields pass through harmlessly.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

# The response types live in the SDK package, defined once for both sides; re-exported here.
from alveare.types import (  # noqa: F401
    AdapterStatus,
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChoiceLogprobs,
    ChunkChoice,
    Completion,
    CompletionChoice,
    CompletionTokensDetails,
    CpuStatus,
    Delta,
    EngineStatus,
    ErrorBody,
    ErrorEnvelope,
    FunctionCall,
    FunctionCallDelta,
    Health,
    HiveNode,
    HiveSample,
    HiveStatus,
    InferResponse,
    KvStatus,
    LegacyLogprobs,
    Model,
    ModelList,
    ModelStatus,
    PromptTokensDetails,
    SpecialistList,
    SpecialistView,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    TopLogprob,
    TuningLine,
    Usage,
    UsageReport,
)

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
    parallel_tool_calls: bool | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    logit_bias: dict[str, float] | None = None
    # Alveare's extension (extra_body with the OpenAI SDKs): the answer is exactly one of these.
    labels: list[str] | None = None
    # Extension, as vLLM and llama-server have it: never end on the model's end-of-generation
    # tokens, so the answer runs to max_tokens (or a stop string). Load tests use it for equal work.
    ignore_eos: bool | None = None


class CompletionRequest(Struct):
    model: Annotated[str, Meta(min_length=1)]
    # A string, or several: one choice (n choices) per prompt, indexed prompt by prompt.
    prompt: str | Annotated[list[str], Meta(min_length=1, max_length=16)]
    logit_bias: dict[str, float] | None = None
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
    ignore_eos: bool | None = None  # as on chat completions


class InferRequest(Struct):
    specialist: Annotated[str, Meta(min_length=1)]
    prompt: Annotated[str, Meta(min_length=1)]
    max_tokens: MaxTokens | None = None
    temperature: Temperature | None = None
    # The answer is exactly one of these (classify's are in its profile).
    labels: list[str] | None = None


class ResponsesRequest(Struct):
    """POST /v1/responses, stateless: what OpenAI's SDKs send (fields for stored state are refused)."""

    model: Annotated[str, Meta(min_length=1)]
    input: str | Annotated[list[dict[str, Any]], Meta(min_length=1)]
    instructions: str | None = None
    max_output_tokens: MaxTokens | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    stream: bool | None = False
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    # {"format": {"type": "text" | "json_object" | "json_schema", ...}}
    text: dict[str, Any] | None = None
    previous_response_id: str | None = None
    store: bool | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    # What to add to the response: checked against what this server makes (serving/responses_request.py).
    include: list[str] | None = None
    # Alternatives per token in the output text's logprobs, which include "message.output_text.logprobs"
    # asks for (without it, echoed and no logprobs sent, as OpenAI does).
    top_logprobs: Annotated[int, Meta(ge=0, le=20)] | None = None
    # "disabled" (a prompt over the context is a 400) or "auto" (the oldest input items are dropped).
    truncation: str | None = None
    # {"effort": ..., "summary": ...}: taken and ignored; a thinking model thinks as its template says.
    reasoning: dict[str, Any] | None = None


# ---------------------------------------------------------------- Responses API answers
# An output item's status, and the response's, as OpenAI's SDKs type them.
ItemStatus = Literal["in_progress", "completed", "incomplete"]
ResponseStatus = Literal["completed", "failed", "in_progress", "cancelled", "queued", "incomplete"]


class ResponseOutputText(Struct):
    text: str
    type: Literal["output_text"] = "output_text"
    annotations: list[Any] = []
    # The text's tokens, where include asks for "message.output_text.logprobs" (else empty, as OpenAI sends it).
    logprobs: list[TokenLogprob] = []


class ResponseTextTopLogprob(Struct):
    token: str
    logprob: float


class ResponseTextLogprob(Struct):
    """A token's entry in response.output_text.delta and .done events (OpenAI's shape there: no bytes)."""

    token: str
    logprob: float
    top_logprobs: list[ResponseTextTopLogprob]


class ResponseReasoningText(Struct):
    text: str
    type: Literal["reasoning_text"] = "reasoning_text"


class ResponseReasoningItem(Struct, tag="reasoning", tag_field="type"):
    """A thinking model's <think> block, as OpenAI's reasoning models send theirs: the text in
    `content`, no summary (none is written), nothing encrypted (nothing is kept)."""

    id: str
    content: list[ResponseReasoningText]
    summary: list[Any] = []
    # "incomplete" where max_output_tokens cut the block.
    status: ItemStatus = "completed"


class ResponseMessageItem(Struct, tag="message", tag_field="type"):
    id: str
    content: list[ResponseOutputText]
    # "incomplete" where max_output_tokens cut the text.
    status: ItemStatus = "completed"
    role: Literal["assistant"] = "assistant"


class ResponseFunctionCallItem(Struct, tag="function_call", tag_field="type"):
    id: str
    call_id: str
    name: str
    arguments: str
    status: ItemStatus = "completed"


class ResponseInputTokensDetails(Struct):
    cached_tokens: int = 0


class ResponseOutputTokensDetails(Struct):
    reasoning_tokens: int = 0


class ResponseUsage(Struct):
    input_tokens: int
    output_tokens: int
    total_tokens: int
    input_tokens_details: ResponseInputTokensDetails
    output_tokens_details: ResponseOutputTokensDetails


class ResponseIncompleteDetails(Struct):
    reason: Literal["max_output_tokens", "content_filter"]


class Response(Struct):
    id: str
    created_at: int
    model: str
    status: ResponseStatus
    output: list[ResponseReasoningItem | ResponseMessageItem | ResponseFunctionCallItem]
    parallel_tool_calls: bool
    tool_choice: str | dict[str, Any]
    tools: list[dict[str, Any]]
    object: Literal["response"] = "response"
    error: None = None
    incomplete_details: ResponseIncompleteDetails | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    text: dict[str, Any] | None = None
    metadata: dict[str, str] = {}
    store: bool = False
    truncation: Literal["auto", "disabled"] = "disabled"
    top_logprobs: int | None = None
    usage: ResponseUsage | None = None


# ---------------------------------------------------------------- responses
class SpecialistParameters(Struct):
    temperature: float
    top_p: float
    max_tokens: int
    stop: list[str]


class SpecialistExample(Struct):
    user: str
    assistant: str


class SpecialistAdapter(Struct):
    """The LoRA adapter a specialist decodes under: its file's name (the path stays on the server),
    the scale it is applied at, and its size."""

    file: str
    scale: float
    size_bytes: int


class ModelInfo(Struct):
    id: str
    specialist: str
    description: str
    system_prompt: str
    parameters: SpecialistParameters
    examples: list[SpecialistExample]
    base_model: str
    context_length: int
    object: Literal["model.info"] = "model.info"
    owned_by: str = "alveare"
    # Null for a specialist with no adapter.
    adapter: SpecialistAdapter | None = None


MAX_SYSTEM_PROMPT = 8000


class SystemPromptUpdate(Struct, forbid_unknown_fields=True):
    # Refused, not ignored: `{"system_prompt": ..., "temperature": 0}` would otherwise look accepted.
    system_prompt: str


# ---------------------------------------------------------------- admin API bodies
# Types only: the ranges are checked by appliance.admin.ops, with the same messages locally and over HTTP.
# Unknown fields are refused, so a mistyped limit is an error instead of a silent no-op.
class AdminAccountCreate(Struct, forbid_unknown_fields=True):
    name: str
    plan: str = "starter"


class AdminAccountUpdate(Struct, forbid_unknown_fields=True):
    plan: str | None = None
    # null clears the cap; leaving the field out keeps it.
    spending_cap: float | msgspec.UnsetType | None = msgspec.UNSET
    # The specialists the account may use; null goes back to the plan's default set.
    specialists: list[str] | msgspec.UnsetType | None = msgspec.UNSET


class AdminPlanUpdate(Struct, forbid_unknown_fields=True):
    requests_per_minute: int | None = None
    requests_per_month: int | None = None
    tokens_per_minute: int | None = None
    specialists_allowed: int | None = None
    custom_prompts: bool | None = None
    overage_per_1k_requests: float | None = None
    monthly_price: float | None = None
    # The plan's weight in the fair scheduler (1 to 100).
    share_weight: int | None = None


class AdminKeyCreate(Struct, forbid_unknown_fields=True):
    account: str
    test: bool = False
    # An admin key (on the admin account): admin API, hive status, every specialist.
    admin: bool = False


class AdminSpecialistUpdate(Struct, forbid_unknown_fields=True):
    system_prompt: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None


class AdminDeleted(Struct):
    deleted: bool


def encode(value: Any) -> bytes:
    return msgspec.json.encode(value)
