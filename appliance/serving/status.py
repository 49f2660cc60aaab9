"""Health, the hive status and its Prometheus text: the engine's state plus the metered traffic, and
the per-tenant series (metrics.py) beside them in the app's registry."""

from __future__ import annotations

import time
from collections.abc import Iterator

import msgspec
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from appliance import __version__
from appliance.core import protocol as p
from appliance.core.specialists import Specialists
from appliance.engine.interface import Engine
from appliance.serving.flow import flow_owner
from appliance.serving.traffic import Traffic


class Status:
    def __init__(self, engine: Engine, specialists: Specialists, traffic: Traffic, registry: CollectorRegistry) -> None:
        self.engine = engine
        self.specialists = specialists
        self.traffic = traffic
        self._started_mono = time.monotonic()
        # Read at each scrape: `collect` below is this registry's collector for the hive's own series.
        self.registry = registry
        registry.register(self)

    def _uptime(self) -> int:
        return int(time.monotonic() - self._started_mono)

    def health(self) -> p.Health:
        status = self.engine.status()
        state = "ok" if status.loaded else ("error" if status.load_error else "loading")
        return p.Health(
            status=state,
            version=__version__,
            uptime_seconds=self._uptime(),
            model_loaded=status.loaded,
            model=status.model.name or None,
        )

    def hive_status(self) -> p.HiveStatus:
        # The engine reports in the wire's own types (alveare.types.EngineStatus): its fields go out
        # as they are, beside the server's own.
        return p.HiveStatus(
            **msgspec.structs.asdict(self.engine.status()),
            version=__version__,
            uptime_seconds=self._uptime(),
            specialists=[sp.name for sp in self.specialists],
            requests_per_minute=self.traffic.requests_per_minute(),
            errors_by_status=self.traffic.errors_by_status(),
            history=self.traffic.history(),
        )

    def metrics_text(self) -> str:
        """Prometheus text exposition: the hive status, then the per-tenant series."""
        return generate_latest(self.registry).decode()

    def collect(self) -> Iterator[Metric]:
        """The hive status as Prometheus families (prometheus_client's collector protocol)."""
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
            ("alveare_model_size_bytes", "size of the model weights", s.model.size_bytes),
            ("alveare_kv_cells", "cells of the KV cache", s.kv.cells),
            ("alveare_cpu_threads", "CPU threads decode steps use now", s.cpu.threads),
            ("alveare_requests_per_minute", "metered API requests finished in the last minute", s.requests_per_minute),
        ]
        counters = [
            ("alveare_requests_served_total", "generations finished", s.requests_served),
            ("alveare_prefix_cache_lookups_total", "requests placed in a slot", s.prefix_cache_lookups),
            ("alveare_prefix_cache_hits_total", "requests that reused cached prompt tokens", s.prefix_cache_hits),
            ("alveare_prefix_cache_tokens_total", "prompt tokens reused from the cache", s.prefix_cache_tokens_reused),
            ("alveare_draft_tokens_total", "tokens proposed by prompt lookup", s.draft_tokens),
            ("alveare_draft_tokens_accepted_total", "proposed tokens the model confirmed", s.draft_tokens_accepted),
            ("alveare_requests_paused_total", "generations that lent their slot to another account", s.requests_paused),
            ("alveare_api_requests_total", "metered API requests finished, any status", self.traffic.requests_total),
        ]
        for name, help_text, value in gauges:
            yield GaugeMetricFamily(name, help_text, value=value)
        for name, help_text, value in counters:
            yield CounterMetricFamily(name, help_text, value=value)
        errors = CounterMetricFamily(
            "alveare_api_errors_total", "metered API requests that failed, by HTTP status", labels=["status"]
        )
        for status, n in s.errors_by_status.items():
            errors.add_metric([status], n)
        yield errors
        tuning = GaugeMetricFamily("alveare_tuning_on", "1 where the machine-tuning piece is on", labels=["piece"])
        for line in s.tuning:
            tuning.add_metric([line.name], int(line.on))
        yield tuning
        yield self._deficits()

    def _deficits(self) -> GaugeMetricFamily:
        """Each busy flow's slots short of its plan-weighted share (negative: over it), by its account and
        whether it is the account's live or test keys' traffic."""
        family = GaugeMetricFamily(
            "alveare_fair_share_deficit_slots",
            "slots a busy account is short of its plan-weighted share (negative: over it), live or test keys",
            labels=["account", "keys"],
        )
        for flow, deficit in sorted(self.engine.fair_share_deficits().items()):
            account, test = flow_owner(flow)
            family.add_metric([account, "test" if test else "live"], deficit)
        return family
