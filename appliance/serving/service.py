"""Serving: the job objects wired together once, for the API to hold. It adds no behaviour of its own."""

from __future__ import annotations

import time

from appliance.hive.types import Engine
from appliance.limits import QuotaBook, RateLimiter
from appliance.serving.catalogue import Catalogue
from appliance.serving.chat import ChatCompletions
from appliance.serving.completions import Completions
from appliance.serving.flow import Flow
from appliance.serving.infer import Infer
from appliance.serving.metering import Metering
from appliance.serving.prompting import Prompter
from appliance.serving.runner import Runner
from appliance.serving.shapes import Shapes
from appliance.serving.status import Status
from appliance.serving.traffic import Traffic
from appliance.settings import Settings
from appliance.specialists import Specialists
from appliance.store import Store


class Serving:
    def __init__(self, settings: Settings, engine: Engine, specialists: Specialists, store: Store) -> None:
        timeout_s = settings.request_timeout_s
        traffic = Traffic()
        self.catalogue = Catalogue(specialists, store, engine, created=int(time.time()))
        self.metering = Metering(RateLimiter(), QuotaBook(), store, traffic, webhook_url=settings.webhook_url)
        self.status = Status(engine, specialists, traffic)
        prompter = Prompter(engine, timeout_s=timeout_s)
        flow = Flow(self.metering, Runner(engine, timeout_s=timeout_s))
        shapes = Shapes(engine)
        self.chat = ChatCompletions(self.catalogue, prompter, flow, shapes)
        self.completions = Completions(self.catalogue, prompter, flow, shapes)
        self.infer = Infer(self.catalogue, prompter, flow, shapes)
