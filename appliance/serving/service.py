"""Serving: the job objects wired together once, for the API to hold. It adds no behaviour of its own
but the timing of a shutdown."""

from __future__ import annotations

import asyncio
import logging
import time

from prometheus_client import CollectorRegistry

from appliance.core.limits import QuotaBook, RateLimiter
from appliance.core.settings import Settings
from appliance.core.specialists import Specialists
from appliance.engine.interface import Engine
from appliance.serving.catalogue import Catalogue
from appliance.serving.chat import ChatCompletions
from appliance.serving.cluster import Cluster
from appliance.serving.completions import Completions
from appliance.serving.flow import Flow
from appliance.serving.infer import Infer
from appliance.serving.metering import Metering
from appliance.serving.metrics import TenantMetrics
from appliance.serving.prompting import Prompter
from appliance.serving.responses import Responses
from appliance.serving.runner import Runner
from appliance.serving.shapes import Shapes
from appliance.serving.status import Status
from appliance.serving.traffic import Traffic
from appliance.store import Store
from appliance.store.shared_limits import SharedLimits

log = logging.getLogger("alveare.service")


class Serving:
    def __init__(
        self, settings: Settings, engine: Engine, specialists: Specialists, store: Store, *, url: str | None = None
    ) -> None:
        timeout_s = settings.request_timeout_s
        traffic = Traffic()
        # This app's own Prometheus series (never prometheus_client's global registry).
        registry = CollectorRegistry()
        self.catalogue = Catalogue(specialists, store, engine, created=int(time.time()))
        self.status = Status(engine, specialists, traffic, registry)
        # This node among a cluster's; `url`: where it serves, as a client on the network writes it.
        self.cluster = Cluster(
            store, self.status, data_dir=settings.data_path, url=url or f"http://{settings.host}:{settings.port}"
        )
        # A cluster's nodes share one PostgreSQL store: its limits are counted there, exact across them.
        shared = None
        if store.dialect == "postgresql":
            shared = SharedLimits(store, node=self.cluster.id)
            shared.reclaim()  # holds this node left when it was killed, if it was
            self.cluster.shared_limits = shared
        self.metering = Metering(
            RateLimiter(),
            QuotaBook(),
            store,
            traffic,
            TenantMetrics(registry),
            webhook_url=settings.webhook_url,
            shared=shared,
        )
        prompter = Prompter(engine, timeout_s=timeout_s)
        self.runner = Runner(engine, timeout_s=timeout_s)
        flow = Flow(self.metering, self.runner)
        shapes = Shapes(engine)
        self.chat = ChatCompletions(self.catalogue, prompter, flow, shapes, reasoning_format=settings.reasoning_format)
        self.completions = Completions(self.catalogue, prompter, flow, shapes)
        self.responses = Responses(self.chat, flow)
        self.infer = Infer(self.catalogue, prompter, flow, shapes, reasoning_format=settings.reasoning_format)

    def shut_down(self, grace_s: float) -> None:
        """The server is stopping (SIGTERM): start no new generation (503 server_shutting_down), let those
        running finish for `grace_s` seconds, then stop the rest. Their clients get the same error (an
        error event for a stream) and their usage is recorded as for any failed request."""
        self.runner.drain()

        def abort() -> None:
            stopped = self.runner.abort()
            if stopped:
                log.warning("shutdown: stopped %d generation(s) still running after %g s", stopped, grace_s)

        asyncio.get_running_loop().call_later(grace_s, abort)
