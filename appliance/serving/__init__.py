"""Serving: the jobs between the HTTP routes and the engine, one module each.

catalogue (which specialists a caller may use, overrides, custom prompts), prompting (messages and
specialist to a generation plan), metering (limits, quota, alerts, the webhook, usage records and
the usage report), runner (submit, merge, cancel), flow (one metered request, plain or streamed),
chat / completions / infer (each endpoint's request preparation, response and stream renderer),
status (health, hive status, metrics), metrics (the per-tenant series), stages (a request's waits
from the engine's stamps), tracing / otel (a request's trace). `Serving` composes them for the API.

The only place that translates between wire types (protocol) and the engine's own types.
"""

from appliance.serving.metering import MeteredCall
from appliance.serving.service import Serving

__all__ = ["MeteredCall", "Serving"]
