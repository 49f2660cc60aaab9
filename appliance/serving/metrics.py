"""Per-tenant Prometheus series, by account and specialist: requests by HTTP status, prompt and
completion tokens, the wait for a slot, time to first token and decode speed.

They live in the app's own CollectorRegistry (passed in), never in prometheus_client's global
default: two apps in one process (the tests) keep their counts apart. Label values are names the
admin chose (accounts, specialists) or HTTP statuses, so the series stay few: a request whose key
was refused never reaches metering, and one refused before its specialist was resolved has an
empty specialist.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from appliance.serving.stages import Stages

# Seconds, from a free slot's few milliseconds to past the default 30 s timeout.
WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Tokens per second of one request's decode, from a large model on a CPU to a small one on a GPU.
RATE_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0)
BY = ("account", "specialist")


class TenantMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "alveare_account_requests",
            "metered API requests finished, by account, specialist and HTTP status",
            [*BY, "status"],
            registry=registry,
        )
        self.prompt_tokens = Counter(
            "alveare_account_prompt_tokens", "prompt tokens of successful requests", BY, registry=registry
        )
        self.completion_tokens = Counter(
            "alveare_account_completion_tokens",
            "generated tokens of successful requests (rate() of it: an account's tokens per second)",
            BY,
            registry=registry,
        )
        self.queue_wait = Histogram(
            "alveare_account_queue_wait_seconds",
            "a request's wait in the engine's queue for a slot",
            BY,
            buckets=WAIT_BUCKETS,
            registry=registry,
        )
        self.ttft = Histogram(
            "alveare_account_time_to_first_token_seconds",
            "from a request's arrival to its first generated token",
            BY,
            buckets=WAIT_BUCKETS,
            registry=registry,
        )
        self.decode_rate = Histogram(
            "alveare_account_decode_tokens_per_second",
            "a successful request's generated tokens per second after its first token",
            BY,
            buckets=RATE_BUCKETS,
            registry=registry,
        )

    def finished(
        self,
        account: str,
        specialist: str,
        status: int,
        prompt_tokens: int,
        completion_tokens: int,
        stages: Stages,
    ) -> None:
        """One metered request, once, as it is recorded (tokens are 0 for a failure)."""
        self.requests.labels(account, specialist, str(status)).inc()
        if status < 400:
            self.prompt_tokens.labels(account, specialist).inc(prompt_tokens)
            self.completion_tokens.labels(account, specialist).inc(completion_tokens)
            rate = stages.decode_rate(completion_tokens)
            if rate is not None:
                self.decode_rate.labels(account, specialist).observe(rate)
        # The waits of any request that got that far, failed or not: a stream cut by its client had
        # its first token all the same.
        if (queued := stages.queue_s) is not None:
            self.queue_wait.labels(account, specialist).observe(queued)
        if (ttft := stages.ttft_s) is not None:
            self.ttft.labels(account, specialist).observe(ttft)
