"""Orchestration: caller + specialist + request -> engine generation -> wire response.

The only place that translates between wire types (protocol) and the engine's own types.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field

import httpx

from appliance import __version__
from appliance import protocol as p
from appliance.admin import apply_override, check_prompt
from appliance.errors import (
    AlveareError,
    ContextLengthExceeded,
    GenerationTimeout,
    InvalidRequest,
    ModelLoading,
    PermissionDenied,
    ServerError,
)
from appliance.hive.types import Engine, Finished, Generation, GenerationRequest, SamplingParams
from appliance.limits import Admission, QuotaBook, QuotaHold, RateLimiter, RateState, key_limits
from appliance.settings import Settings
from appliance.specialists import Specialist, Specialists
from appliance.store import Principal, Store, UsageRecord, current_period, now_iso

log = logging.getLogger("alveare.service")
WEBHOOK_TIMEOUT_S = 5.0

PREAMBLE_MEMO = 256
HISTORY_BUCKET_S = 10
HISTORY_BUCKETS = 60  # ten minutes


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


@dataclass(frozen=True)
class Prepared:
    """A request resolved against its specialist and tokenised, ready for the engine."""

    specialist: Specialist
    model: str
    requests: list[GenerationRequest]
    prompt_tokens: int


@dataclass
class Outcome:
    text: str
    finished: Finished


@dataclass
class Call:
    """One API call as the API layer sees it: who calls, and the rate-limit state to report."""

    principal: Principal
    endpoint: str
    rate: RateState | None = None
    # The request's id, for errors the service reports itself (an error event inside a stream).
    request_id: str | None = None


@dataclass
class Meter:
    """A metered request, from admission to its usage record."""

    call: Call
    t0: float = field(default_factory=time.perf_counter)
    created_at: str = field(default_factory=now_iso)
    period: str = field(default_factory=current_period)
    specialist: str | None = None
    admission: Admission | None = None
    hold: QuotaHold | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    done: bool = False


class Traffic:
    """Metered requests as they finish: a ring of 10-second buckets over the last ten minutes,
    the last minute's finish times, and errors by status since start. Thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        # [bucket start, tokens, requests, errors]; a slot whose start is stale is reused.
        self._ring = [[-1, 0, 0, 0] for _ in range(HISTORY_BUCKETS)]
        self._recent: deque[float] = deque()
        self._errors: dict[int, int] = {}
        self.requests_total = 0

    def record(self, status: int, tokens: int) -> None:
        now = self._clock()
        start = int(now // HISTORY_BUCKET_S) * HISTORY_BUCKET_S
        with self._lock:
            bucket = self._ring[(start // HISTORY_BUCKET_S) % HISTORY_BUCKETS]
            if bucket[0] != start:
                bucket[:] = [start, 0, 0, 0]
            bucket[1] += tokens
            bucket[2] += 1
            if status >= 400:
                bucket[3] += 1
                self._errors[status] = self._errors.get(status, 0) + 1
            self.requests_total += 1
            self._recent.append(now)
            self._prune(now)

    def _prune(self, now: float) -> None:
        while self._recent and self._recent[0] <= now - 60:
            self._recent.popleft()

    def requests_per_minute(self) -> int:
        with self._lock:
            self._prune(self._clock())
            return len(self._recent)

    def errors_by_status(self) -> dict[str, int]:
        with self._lock:
            return {str(k): v for k, v in sorted(self._errors.items())}

    def history(self) -> list[p.HiveSample]:
        """The last HISTORY_BUCKETS buckets, oldest first, ending with the current one (zeros where idle)."""
        current = int(self._clock() // HISTORY_BUCKET_S) * HISTORY_BUCKET_S
        out = []
        with self._lock:
            for i in range(HISTORY_BUCKETS - 1, -1, -1):
                start = current - i * HISTORY_BUCKET_S
                b = self._ring[(start // HISTORY_BUCKET_S) % HISTORY_BUCKETS]
                out.append(
                    p.HiveSample(t=start, tokens=b[1], requests=b[2], errors=b[3])
                    if b[0] == start
                    else p.HiveSample(t=start, tokens=0, requests=0, errors=0)
                )
        return out


def _status_of(exc: BaseException) -> int:
    if isinstance(exc, AlveareError):
        return exc.status
    if isinstance(exc, asyncio.CancelledError):
        return 499  # the client went away
    return 500


class Service:
    def __init__(self, settings: Settings, engine: Engine, specialists: Specialists, store: Store) -> None:
        self.settings = settings
        self.engine = engine
        self.specialists = specialists
        self.store = store
        self.limiter = RateLimiter()
        self.quota = QuotaBook()
        self.started_at = time.time()
        # Tokens of recently seen preambles, so the shared-prefix length costs no second tokenisation.
        self._preamble_tokens: dict[tuple[tuple[str, str], ...], list[int]] = {}
        self._started_mono = time.monotonic()
        self.traffic = Traffic()

    # ------------------------------------------------------------ accounts
    def enabled(self, principal: Principal) -> list[Specialist]:
        """The specialists the account may use: its chosen set, or the first ones of the catalogue,
        at most as many as its plan allows. Admin keys may use every specialist."""
        if principal.admin:
            return list(self.specialists)
        allowed = principal.plan.specialists_allowed
        if principal.specialists is None:
            return list(self.specialists)[:allowed]
        chosen = set(principal.specialists)
        return [s for s in self.specialists if s.name in chosen][:allowed]

    def _resolve(self, principal: Principal, model: str, param: str = "model") -> Specialist:
        specialist = self.specialists.resolve(model, param=param)
        if specialist not in self.enabled(principal):
            raise PermissionDenied(
                f"The specialist '{specialist.name}' is not enabled for your account (plan {principal.plan.name}, "
                f"{principal.plan.specialists_allowed} specialists). Enabled: "
                f"{', '.join(s.name for s in self.enabled(principal)) or 'none'}.",
                param=param,
                code="specialist_not_enabled",
            )
        return self.served(specialist)

    def served(self, specialist: Specialist) -> Specialist:
        """The specialist with the admin's override from the store, read per request (one primary-key
        read), so a change made through the admin API or directly on the data dir applies at once."""
        return apply_override(specialist, self.store.specialist_override(specialist.name))

    def system_prompt(self, principal: Principal, specialist: Specialist) -> str:
        """The account's own prompt for the specialist when its plan allows one, else the default."""
        if principal.plan.custom_prompts:
            custom = self.store.custom_prompt(principal.account_id, specialist.name)
            if custom is not None:
                return custom
        return specialist.system_prompt

    def rate_state(self, principal: Principal) -> RateState:
        rpm, tpm = key_limits(principal.plan.requests_per_minute, principal.plan.tokens_per_minute, principal.test)
        return self.limiter.peek(principal.key_id, rpm, tpm)

    # ------------------------------------------------------------ catalogue
    def models(self, principal: Principal) -> list[p.Model]:
        created = int(self.started_at)
        return [p.Model(id=s.model_id, created=created) for s in self.enabled(principal)]

    def model(self, principal: Principal, model_id: str) -> p.Model:
        return p.Model(id=self._resolve(principal, model_id).model_id, created=int(self.started_at))

    def model_info(self, principal: Principal, model_id: str) -> p.ModelInfo:
        s = self._resolve(principal, model_id)
        return p.ModelInfo(
            id=s.model_id,
            specialist=s.name,
            description=s.description,
            system_prompt=self.system_prompt(principal, s),
            parameters=p.SpecialistParameters(
                temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens, stop=list(s.stop)
            ),
            examples=[p.SpecialistExample(user=e.user, assistant=e.assistant) for e in s.examples],
            base_model=self.engine.model_name,
            context_length=self.engine.context_length,
        )

    def health(self) -> p.Health:
        status = self.engine.status()
        state = "ok" if status.loaded else ("error" if status.load_error else "loading")
        return p.Health(
            status=state,
            version=__version__,
            uptime_seconds=int(time.monotonic() - self._started_mono),
            model_loaded=status.loaded,
            model=status.model or None,
        )

    def hive_status(self) -> p.HiveStatus:
        s = self.engine.status()
        return p.HiveStatus(
            version=__version__,
            uptime_seconds=int(time.monotonic() - self._started_mono),
            model=s.model,
            model_size_bytes=s.model_size_bytes,
            n_params=s.n_params,
            device=s.device,
            gpu_layers=s.gpu_layers,
            context_length=s.context_length,
            kv_cells=s.n_ctx,
            slots_total=s.slots_total,
            slots_busy=s.slots_busy,
            queue_depth=s.queue_depth,
            queue_limit=s.queue_limit,
            tokens_per_second=s.tokens_per_second,
            prompt_tokens_per_second=s.prompt_tokens_per_second,
            requests_served=s.requests_served,
            prefix_cache_hits=s.prefix_cache_hits,
            prefix_cache_lookups=s.prefix_cache_lookups,
            prefix_cache_hit_rate=round(s.prefix_cache_hits / s.prefix_cache_lookups, 4)
            if s.prefix_cache_lookups
            else 0.0,
            prefix_cache_tokens_reused=s.prefix_cache_tokens,
            draft_tokens=s.draft_tokens,
            draft_tokens_accepted=s.draft_tokens_accepted,
            specialists=[sp.name for sp in self.specialists],
            loaded=s.loaded,
            load_error=s.load_error,
            cpu_kernels=s.cpu_kernels,
            cpu_kernels_source=s.cpu_kernels_source,
            cpu_kernels_reason=s.cpu_kernels_reason,
            requests_per_minute=self.traffic.requests_per_minute(),
            errors_by_status=self.traffic.errors_by_status(),
            history=self.traffic.history(),
        )

    def metrics_text(self) -> str:
        """Prometheus text exposition of the hive status."""
        s = self.hive_status()
        gauges = [
            ("alveare_up", "1 once the model is loaded", int(s.loaded)),
            ("alveare_uptime_seconds", "seconds since the server started", s.uptime_seconds),
            ("alveare_slots_total", "sequences decoded together", s.slots_total),
            ("alveare_slots_busy", "slots running a request", s.slots_busy),
            ("alveare_queue_depth", "requests waiting for a slot", s.queue_depth),
            ("alveare_tokens_per_second", "generated tokens per second, last minute", s.tokens_per_second),
            (
                "alveare_prompt_tokens_per_second",
                "prompt tokens decoded per second, last minute",
                s.prompt_tokens_per_second,
            ),
            ("alveare_model_size_bytes", "size of the model weights", s.model_size_bytes),
            ("alveare_requests_per_minute", "metered API requests finished in the last minute", s.requests_per_minute),
        ]
        counters = [
            ("alveare_requests_served_total", "generations finished", s.requests_served),
            ("alveare_prefix_cache_lookups_total", "requests placed in a slot", s.prefix_cache_lookups),
            ("alveare_prefix_cache_hits_total", "requests that reused cached prompt tokens", s.prefix_cache_hits),
            ("alveare_prefix_cache_tokens_total", "prompt tokens reused from the cache", s.prefix_cache_tokens_reused),
            ("alveare_draft_tokens_total", "tokens proposed by prompt lookup", s.draft_tokens),
            ("alveare_draft_tokens_accepted_total", "proposed tokens the model confirmed", s.draft_tokens_accepted),
            ("alveare_api_requests_total", "metered API requests finished, any status", self.traffic.requests_total),
        ]
        lines = []
        for kind, rows in (("gauge", gauges), ("counter", counters)):
            for name, help_text, value in rows:
                lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {value}"]
        name = "alveare_api_errors_total"
        lines += [f"# HELP {name} metered API requests that failed, by HTTP status", f"# TYPE {name} counter"]
        lines += [f'{name}{{status="{status}"}} {n}' for status, n in s.errors_by_status.items()]
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------ preparation
    def _check_loaded(self) -> None:
        if not self.engine.loaded:
            raise ModelLoading("The model is still loading. Retry in a few seconds.", headers={"Retry-After": "2"})

    @staticmethod
    def _stop_list(stop: str | list[str] | None, default: list[str]) -> list[str]:
        if stop is None:
            return list(default)
        stops = [stop] if isinstance(stop, str) else list(stop)
        return [s for s in stops if s]

    @staticmethod
    def _message_text(message: p.ChatMessage, index: int) -> str:
        content = message.content
        if content is None:
            # Only an assistant turn that calls tools may come without content.
            if message.role == "assistant" and message.tool_calls:
                return ""
            raise InvalidRequest(
                f"messages[{index}].content is required for a {message.role} message.",
                param=f"messages[{index}].content",
            )
        if isinstance(content, str):
            return content
        texts = []
        for j, part in enumerate(content):
            if part.type != "text" or part.text is None:
                raise InvalidRequest(
                    f"Only text content parts are supported; messages[{index}].content[{j}] has type '{part.type}'.",
                    param=f"messages[{index}].content[{j}].type",
                )
            texts.append(part.text)
        return "".join(texts)

    def _chat_messages(
        self, specialist: Specialist, prompt: str, messages: list[p.ChatMessage]
    ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """(preamble, conversation): the specialist's prompt (the account's own, if set) first and the
        client's system messages after it, in the same system turn; or, for a specialist whose prompt
        is only a default (`caller_system = "replace"`), the client's system messages when it sends any."""
        system: list[str] = []
        rest: list[tuple[str, str]] = []
        for i, m in enumerate(messages):
            text = self._message_text(m, i)
            if m.role in ("system", "developer"):
                if text.strip():
                    system.append(text)
            else:
                rest.append(("tool" if m.role == "function" else m.role, text))
        if not rest:
            raise InvalidRequest("messages must contain at least one user or assistant message.", param="messages")
        if not (system and specialist.caller_system == "replace"):
            system.insert(0, prompt)
        return self._preamble(specialist, "\n\n".join(system)), rest

    @staticmethod
    def _preamble(specialist: Specialist, system: str) -> list[tuple[str, str]]:
        """The system turn and the specialist's worked examples: the prefix every request shares."""
        turns = [("system", system)]
        for ex in specialist.examples:
            turns += [("user", ex.user), ("assistant", ex.assistant)]
        return turns

    def _tokenize_chat(
        self, preamble: list[tuple[str, str]], conversation: list[tuple[str, str]]
    ) -> tuple[list[int], int]:
        """The prompt's tokens, and how many of them are the shared preamble (for the prefix cache)."""
        prompt = self.engine.tokenize(self.engine.render_chat([*preamble, *conversation]))
        key = tuple(preamble)
        head = self._preamble_tokens.get(key)
        if head is None:
            head = self.engine.tokenize(self.engine.render_chat(preamble, add_generation_prompt=False))
            if len(self._preamble_tokens) >= PREAMBLE_MEMO:
                self._preamble_tokens.pop(next(iter(self._preamble_tokens)))
            self._preamble_tokens[key] = head
        shared = 0
        for a, b in zip(head, prompt, strict=False):
            if a != b:
                break
            shared += 1
        return prompt, shared

    def _fit(self, prompt: list[int], max_tokens: int | None, default: int, param: str) -> int:
        """The completion budget; an explicit max_tokens that cannot fit is an error, a default shrinks."""
        window = self.engine.context_length
        if len(prompt) >= window:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {window} tokens. However, your prompt is "
                f"{len(prompt)} tokens. Please shorten the prompt.",
                param=param,
            )
        if max_tokens is None:
            return min(default, window - len(prompt))
        if len(prompt) + max_tokens > window:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {window} tokens. However, you requested "
                f"{len(prompt) + max_tokens} tokens ({len(prompt)} in the prompt, {max_tokens} in the "
                "completion). Please reduce the length of the prompt or the completion.",
                param=param,
            )
        return max_tokens

    def _requests(
        self,
        prompt: list[int],
        max_tokens: int,
        stop: list[str],
        sampling: SamplingParams,
        n: int,
        *,
        cache_prefix: int = 0,
        lookup: bool = False,
        stream: bool = False,
    ) -> list[GenerationRequest]:
        deadline = time.monotonic() + self.settings.request_timeout_s
        out = []
        for i in range(n):
            s = sampling
            if n > 1 and sampling.seed is not None:
                s = SamplingParams(**{**_fields(sampling), "seed": sampling.seed + i})
            out.append(
                GenerationRequest(
                    prompt_tokens=prompt,
                    max_tokens=max_tokens,
                    sampling=s,
                    stop=stop,
                    deadline=deadline,
                    cache_prefix=cache_prefix,
                    lookup=lookup,
                    stream=stream,
                )
            )
        return out

    def prepare_chat(self, principal: Principal, req: p.ChatCompletionRequest) -> Prepared:
        specialist = self._resolve(principal, req.model)
        self._check_loaded()
        if req.tools and req.tool_choice != "none":
            raise InvalidRequest("Function calling (tools) is not available yet on this appliance.", param="tools")
        if req.response_format is not None and req.response_format.type != "text":
            raise InvalidRequest(
                f"response_format '{req.response_format.type}' is not available yet on this appliance.",
                param="response_format",
            )
        if req.logprobs:
            raise InvalidRequest("logprobs are not available yet on this appliance.", param="logprobs")
        prompt, shared = self._tokenize_chat(
            *self._chat_messages(specialist, self.system_prompt(principal, specialist), req.messages)
        )
        explicit = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
        param = "max_completion_tokens" if req.max_completion_tokens is not None else "messages"
        max_tokens = self._fit(prompt, explicit, specialist.max_tokens, param)
        sampling = self._sampling(specialist, req.temperature, req.top_p, req)
        stop = self._stop_list(req.stop, specialist.stop)
        requests = self._requests(
            prompt,
            max_tokens,
            stop,
            sampling,
            req.n or 1,
            cache_prefix=shared,
            lookup=specialist.prompt_lookup,
            stream=bool(req.stream),
        )
        return Prepared(specialist, req.model, requests, len(prompt))

    def prepare_completion(self, principal: Principal, req: p.CompletionRequest) -> Prepared:
        specialist = self._resolve(principal, req.model)
        self._check_loaded()
        if req.suffix:
            raise InvalidRequest("suffix is not supported.", param="suffix")
        if req.logprobs:
            raise InvalidRequest("logprobs are not available yet on this appliance.", param="logprobs")
        if req.best_of not in (None, 1):
            raise InvalidRequest("best_of is not supported; use n.", param="best_of")
        text = req.prompt if isinstance(req.prompt, str) else req.prompt[0]
        prompt = self.engine.tokenize(text)
        if not prompt:
            raise InvalidRequest("prompt must not be empty.", param="prompt")
        max_tokens = self._fit(prompt, req.max_tokens, 16, "prompt")
        sampling = self._sampling(specialist, req.temperature, req.top_p, req)
        stop = self._stop_list(req.stop, [])
        return Prepared(
            specialist,
            req.model,
            self._requests(prompt, max_tokens, stop, sampling, req.n or 1, stream=bool(req.stream)),
            len(prompt),
        )

    def prepare_infer(self, principal: Principal, req: p.InferRequest) -> Prepared:
        specialist = self._resolve(principal, req.specialist, param="specialist")
        self._check_loaded()
        preamble = self._preamble(specialist, self.system_prompt(principal, specialist))
        prompt, shared = self._tokenize_chat(preamble, [("user", req.prompt)])
        max_tokens = self._fit(prompt, req.max_tokens, specialist.max_tokens, "prompt")
        sampling = SamplingParams(
            temperature=specialist.temperature if req.temperature is None else req.temperature,
            top_p=specialist.top_p,
        )
        return Prepared(
            specialist,
            specialist.name,
            self._requests(
                prompt,
                max_tokens,
                list(specialist.stop),
                sampling,
                1,
                cache_prefix=shared,
                lookup=specialist.prompt_lookup,
            ),
            len(prompt),
        )

    @staticmethod
    def _sampling(
        specialist: Specialist,
        temperature: float | None,
        top_p: float | None,
        req: p.ChatCompletionRequest | p.CompletionRequest,
    ) -> SamplingParams:
        return SamplingParams(
            temperature=specialist.temperature if temperature is None else temperature,
            top_p=specialist.top_p if top_p is None else max(top_p, 1e-6),
            presence_penalty=req.presence_penalty or 0.0,
            frequency_penalty=req.frequency_penalty or 0.0,
            seed=req.seed,
        )

    # ------------------------------------------------------------ running
    def start(self, prepared: Prepared) -> list[Generation]:
        generations: list[Generation] = []
        try:
            for r in prepared.requests:
                generations.append(self.engine.submit(r))
        except BaseException:
            for g in generations:
                g.cancel()
            raise
        return generations

    async def run(self, prepared: Prepared) -> list[Outcome]:
        generations = self.start(prepared)
        try:
            texts = await asyncio.gather(*(_collect(g) for g in generations))
        finally:
            for g in generations:
                g.cancel()
        outcomes = []
        for g, text in zip(generations, texts, strict=True):
            assert g.finished is not None
            _raise_for(g.finished, self.settings.request_timeout_s)
            outcomes.append(Outcome(text, g.finished))
        return outcomes

    # ------------------------------------------------------------ metering
    @contextlib.contextmanager
    def _metered(self, meter: Meter) -> Iterator[Meter]:
        """Any failure inside is recorded with its status, then raised."""
        try:
            yield meter
        except BaseException as exc:
            self._finish(meter, _status_of(exc))
            raise

    def _admit(self, meter: Meter, prepared: Prepared) -> None:
        """Spending cap, then rate limits: check and take both at once, or take nothing (no await here)."""
        principal = meter.call.principal
        meter.specialist = prepared.specialist.name
        plan = principal.plan
        hold = None
        if not principal.test:
            account_id, period = principal.account_id, meter.period
            hold = self.quota.reserve(
                account_id,
                period,
                lambda: (
                    self.store.billable_requests(account_id, period),
                    self.store.alert_thresholds(account_id, period),
                ),
                monthly_limit=plan.requests_per_month,
                overage_per_1k=plan.overage_per_1k_requests,
                cap=principal.spending_cap,
            )
        rpm, tpm = key_limits(plan.requests_per_minute, plan.tokens_per_minute, principal.test)
        budget = sum(r.max_tokens for r in prepared.requests)
        try:
            meter.admission = self.limiter.admit(principal.key_id, rpm, tpm, prepared.prompt_tokens + budget)
        except BaseException:
            if hold is not None:
                self.quota.release(hold)
            raise
        meter.hold = hold
        meter.call.rate = meter.admission.state

    def _finish(self, meter: Meter, status: int) -> Future[None] | None:
        """Settle the token estimate, count the request (or not), record it. Once per request."""
        if meter.done:
            return None
        meter.done = True
        principal = meter.call.principal
        if status >= 400:
            meter.prompt_tokens = meter.completion_tokens = 0
        if meter.admission is not None:
            self.limiter.settle(meter.admission, meter.prompt_tokens + meter.completion_tokens)
        overage = False
        if meter.hold is not None:
            if status < 400:
                result = self.quota.commit(meter.hold, principal.plan.requests_per_month)
                overage = result.overage
                for threshold in result.new_alerts:
                    self._alert(principal, meter.period, threshold, result.requests_used)
            else:
                self.quota.release(meter.hold)
        record = UsageRecord(
            key_id=principal.key_id,
            account_id=principal.account_id,
            endpoint=meter.call.endpoint,
            specialist=meter.specialist,
            prompt_tokens=meter.prompt_tokens,
            completion_tokens=meter.completion_tokens,
            latency_ms=round((time.perf_counter() - meter.t0) * 1000),
            status=status,
            created_at=meter.created_at,
            period=meter.period,
            test=principal.test,
            overage=overage,
        )
        self.traffic.record(status, meter.prompt_tokens + meter.completion_tokens)
        future = self.store.record_usage(record)
        future.add_done_callback(_log_failed_write)
        return future

    async def _succeeded(self, meter: Meter) -> None:
        """Record a success and wait for its commit, so an answered request is a durable one."""
        future = self._finish(meter, 200)
        if future is not None:
            with contextlib.suppress(Exception):
                await asyncio.wrap_future(future)

    def _alert(self, principal: Principal, period: str, threshold: int, used: int) -> None:
        limit = principal.plan.requests_per_month
        log.warning(
            "usage alert: account %s reached %d%% of its monthly requests (%d of %d, period %s)",
            principal.account,
            threshold,
            used,
            limit,
            period,
        )
        self.store.record_alert(principal.account_id, period, threshold, used, limit).add_done_callback(
            _log_failed_write
        )
        if self.settings.webhook_url:
            payload = {
                "type": "usage_alert",
                "account": principal.account,
                "plan": principal.plan.name,
                "period": period,
                "threshold_percent": threshold,
                "requests_used": used,
                "requests_limit": limit,
                "created_at": now_iso(),
            }
            threading.Thread(
                target=_post_webhook, args=(self.settings.webhook_url, payload), name="alveare-webhook", daemon=True
            ).start()

    # ------------------------------------------------------------ endpoints
    async def _generate(self, call: Call, prepare: Callable[[], Prepared]) -> tuple[Prepared, list[Outcome], p.Usage]:
        """Prepare, admit, run and meter one non-streaming request."""
        meter = Meter(call)
        with self._metered(meter):
            prepared = prepare()
            self._admit(meter, prepared)
            outcomes = await self.run(prepared)
            usage = _usage(prepared, outcomes)
            meter.prompt_tokens, meter.completion_tokens = usage.prompt_tokens, usage.completion_tokens
        await self._succeeded(meter)
        return prepared, outcomes, usage

    async def chat_completion(self, call: Call, req: p.ChatCompletionRequest) -> p.ChatCompletion:
        prepared, outcomes, usage = await self._generate(call, lambda: self.prepare_chat(call.principal, req))
        return p.ChatCompletion(
            id=new_id("chatcmpl"),
            created=int(time.time()),
            model=prepared.model,
            choices=[
                p.ChatChoice(
                    index=i, message=p.AssistantMessage(content=o.text), finish_reason=o.finished.finish_reason
                )
                for i, o in enumerate(outcomes)
            ],
            usage=usage,
        )

    async def completion(self, call: Call, req: p.CompletionRequest) -> p.Completion:
        prepared, outcomes, usage = await self._generate(call, lambda: self.prepare_completion(call.principal, req))
        prefix = (req.prompt if isinstance(req.prompt, str) else req.prompt[0]) if req.echo else ""
        return p.Completion(
            id=new_id("cmpl"),
            created=int(time.time()),
            model=prepared.model,
            choices=[
                p.CompletionChoice(index=i, text=prefix + o.text, finish_reason=o.finished.finish_reason)
                for i, o in enumerate(outcomes)
            ],
            usage=usage,
        )

    async def infer(self, call: Call, req: p.InferRequest) -> p.InferResponse:
        t0 = time.perf_counter()
        prepared, (outcome,), usage = await self._generate(call, lambda: self.prepare_infer(call.principal, req))
        return p.InferResponse(
            id=new_id("inf"),
            specialist=prepared.specialist.name,
            result=outcome.text.strip(),
            tokens_used=usage.total_tokens,
            latency_ms=round((time.perf_counter() - t0) * 1000),
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            finish_reason=outcome.finished.finish_reason,
        )

    # ------------------------------------------------------------ streaming
    def stream_chat(self, call: Call, req: p.ChatCompletionRequest) -> AsyncIterator[bytes]:
        """SSE events exactly as OpenAI sends them. Everything that can fail before the first
        token (validation, limits, queue full) raises here, before the response starts."""
        meter = Meter(call)
        with self._metered(meter):
            prepared = self.prepare_chat(call.principal, req)
            self._admit(meter, prepared)
            generations = self.start(prepared)
        chunk_id, created = new_id("chatcmpl"), int(time.time())
        include_usage = bool(req.stream_options and req.stream_options.include_usage)

        def chunk(choices: list[p.ChunkChoice], usage: p.Usage | None = None) -> bytes:
            return _sse(
                p.ChatCompletionChunk(id=chunk_id, created=created, model=prepared.model, choices=choices, usage=usage)
            )

        def first(i: int) -> bytes:
            return chunk([p.ChunkChoice(index=i, delta=p.Delta(role="assistant", content=""))])

        def piece(i: int, text: str) -> bytes:
            return chunk([p.ChunkChoice(index=i, delta=p.Delta(content=text))])

        def last(i: int, finished: Finished) -> bytes:
            return chunk([p.ChunkChoice(index=i, delta=p.Delta(), finish_reason=finished.finish_reason)])

        return self._stream(meter, prepared, generations, include_usage, first, piece, last, chunk)

    def stream_completion(self, call: Call, req: p.CompletionRequest) -> AsyncIterator[bytes]:
        meter = Meter(call)
        with self._metered(meter):
            prepared = self.prepare_completion(call.principal, req)
            self._admit(meter, prepared)
            generations = self.start(prepared)
        cid, created = new_id("cmpl"), int(time.time())
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        echo = (req.prompt if isinstance(req.prompt, str) else req.prompt[0]) if req.echo else None

        def chunk(choices: list[p.CompletionChoice], usage: p.Usage | None = None) -> bytes:
            return _sse(p.Completion(id=cid, created=created, model=prepared.model, choices=choices, usage=usage))

        def first(i: int) -> bytes | None:
            return chunk([p.CompletionChoice(index=i, text=echo, finish_reason=None)]) if echo else None

        def piece(i: int, text: str) -> bytes:
            return chunk([p.CompletionChoice(index=i, text=text, finish_reason=None)])

        def last(i: int, finished: Finished) -> bytes:
            return chunk([p.CompletionChoice(index=i, text="", finish_reason=finished.finish_reason)])

        return self._stream(meter, prepared, generations, include_usage, first, piece, last, chunk)

    async def _stream(
        self,
        meter: Meter,
        prepared: Prepared,
        generations: list[Generation],
        include_usage: bool,
        first: Callable[[int], bytes | None],
        piece: Callable[[int, str], bytes],
        last: Callable[[int, Finished], bytes],
        chunk: Callable[..., bytes],
    ) -> AsyncIterator[bytes]:
        status = 200
        try:
            for i in range(len(generations)):
                head = first(i)
                if head:
                    yield head
            async for i, item in _merge(generations):
                if isinstance(item, Finished):
                    if item.finish_reason in ("timeout", "error"):
                        try:
                            _raise_for(item, self.settings.request_timeout_s)
                        except (GenerationTimeout, ServerError) as exc:
                            status = exc.status
                            rid = meter.call.request_id
                            log.warning(
                                "%s (stream, %s) -> %s %s: %s", meter.call.endpoint, rid, status, exc.code, exc.message
                            )
                            yield _sse_error(exc, rid)
                            return
                    yield last(i, item)
                else:
                    yield piece(i, item)
            if include_usage:
                outcomes = [Outcome("", g.finished) for g in generations if g.finished is not None]
                yield chunk([], _usage(prepared, outcomes))
            yield b"data: [DONE]\n\n"
        finally:
            # Client gone or stream done: either way free the slots now, and meter what was generated.
            for g in generations:
                g.cancel()
            meter.prompt_tokens = prepared.prompt_tokens
            meter.completion_tokens = sum(g.finished.completion_tokens for g in generations if g.finished)
            self._finish(meter, status)

    # ------------------------------------------------------------ usage and custom prompts
    async def usage(self, principal: Principal) -> p.UsageReport:
        await asyncio.wrap_future(self.store.flush())
        s = await asyncio.to_thread(self.store.usage_summary, principal.account)
        return p.UsageReport(
            period_start=s.period_start,
            period_end=s.period_end,
            requests_used=s.requests_used,
            requests_limit=s.requests_limit,
            tokens_used=s.tokens_used,
            by_specialist=s.by_specialist,
            plan=s.plan,
            overage_requests=s.overage_requests,
            spending=s.spending,
            spending_cap=s.spending_cap,
            test_requests=s.test_requests,
        )

    def _view(self, principal: Principal, specialist: Specialist, enabled: list[Specialist]) -> p.SpecialistView:
        specialist = self.served(specialist)
        prompt = self.system_prompt(principal, specialist)
        return p.SpecialistView(
            name=specialist.name,
            model=specialist.model_id,
            description=specialist.description,
            system_prompt=prompt,
            custom=prompt != specialist.system_prompt,
            enabled=specialist.name in {s.name for s in enabled},
        )

    def specialist_list(self, principal: Principal) -> p.SpecialistList:
        enabled = self.enabled(principal)
        return p.SpecialistList(
            data=[self._view(principal, s, enabled) for s in self.specialists],
            custom_prompts_allowed=principal.plan.custom_prompts,
        )

    async def set_system_prompt(
        self, principal: Principal, name: str, update: p.SystemPromptUpdate
    ) -> p.SpecialistView:
        specialist = self._resolve(principal, name, param="name")
        if not principal.plan.custom_prompts:
            raise PermissionDenied(
                f"Custom system prompts are not included in the {principal.plan.name} plan; "
                "they come with the professional and scale plans.",
                code="custom_prompts_not_in_plan",
            )
        prompt = check_prompt(update.system_prompt)
        await asyncio.wrap_future(self.store.set_custom_prompt(principal.account_id, specialist.name, prompt))
        return self._view(principal, specialist, self.enabled(principal))

    async def reset_system_prompt(self, principal: Principal, name: str) -> p.SpecialistView:
        specialist = self.specialists.resolve(name, param="name")
        await asyncio.wrap_future(self.store.delete_custom_prompt(principal.account_id, specialist.name))
        return self._view(principal, specialist, self.enabled(principal))


def _log_failed_write(future: Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("usage could not be written: %s", future.exception())


def _post_webhook(url: str, payload: dict) -> None:
    """Fire and forget, in its own thread: a failing webhook is logged, never raised."""
    try:
        r = httpx.post(url, json=payload, timeout=WEBHOOK_TIMEOUT_S)
        if r.status_code >= 400:
            log.warning("webhook %s answered %s", url, r.status_code)
    except httpx.HTTPError as exc:
        log.warning("webhook %s failed: %s", url, exc)


def _fields(s: SamplingParams) -> dict:
    return {f: getattr(s, f) for f in s.__struct_fields__}


async def _collect(g: Generation) -> str:
    return "".join([piece async for piece in g])


async def _merge(generations: list[Generation]) -> AsyncIterator[tuple[int, str | Finished]]:
    """Interleave several generations' events, tagging each with its choice index."""
    if len(generations) == 1:
        g = generations[0]
        async for text in g:
            yield 0, text
        assert g.finished is not None
        yield 0, g.finished
        return
    queue: asyncio.Queue[tuple[int, str | Finished]] = asyncio.Queue()

    async def pump(i: int, g: Generation) -> None:
        async for text in g:
            await queue.put((i, text))
        assert g.finished is not None
        await queue.put((i, g.finished))

    tasks = [asyncio.create_task(pump(i, g)) for i, g in enumerate(generations)]
    try:
        remaining = len(generations)
        while remaining:
            i, item = await queue.get()
            if isinstance(item, Finished):
                remaining -= 1
            yield i, item
    finally:
        for t in tasks:
            t.cancel()


def _raise_for(finished: Finished, timeout_s: float) -> None:
    if finished.finish_reason == "timeout":
        raise GenerationTimeout(
            f"The request did not finish within the server's {timeout_s:g} s limit. Lower max_tokens or retry later.",
        )
    if finished.finish_reason == "error":
        raise ServerError("The engine failed while generating. Retry the request.")


def _usage(prepared: Prepared, outcomes: list[Outcome]) -> p.Usage:
    completion = sum(o.finished.completion_tokens for o in outcomes)
    return p.Usage(
        prompt_tokens=prepared.prompt_tokens,
        completion_tokens=completion,
        total_tokens=prepared.prompt_tokens + completion,
    )


def _sse(value: object) -> bytes:
    return b"data: " + p.encode(value) + b"\n\n"


def _sse_error(exc: GenerationTimeout | ServerError, request_id: str | None) -> bytes:
    body = p.ErrorEnvelope(
        p.ErrorBody(message=exc.message, type=exc.type, param=exc.param, code=exc.code, request_id=request_id)
    )
    return b"data: " + p.encode(body) + b"\n\n"
