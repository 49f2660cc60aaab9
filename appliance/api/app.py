"""create_app: the Litestar application, with its resources passed in so tests can inject them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.types import Message, Scope

from appliance import __version__
from appliance.admin.local import LocalAdmin
from appliance.api import openapi, tracing
from appliance.api.auth import BearerKeyAuth
from appliance.api.errors import EXCEPTION_HANDLERS, add_request_id
from appliance.api.forwarded import real_client
from appliance.api.keycache import KeyCache
from appliance.api.routes import admin as admin_routes
from appliance.api.routes import health, native, sdk, status
from appliance.api.routes import openai as openai_routes
from appliance.api.routes.openai import CALL
from appliance.api.schema_page import SchemaPage
from appliance.core.limits import FailedKeyLimiter
from appliance.core.proxies import TrustedProxies
from appliance.core.settings import Settings
from appliance.core.specialists import Specialists
from appliance.core.tls import is_loopback
from appliance.engine.interface import Engine
from appliance.serving import Serving
from appliance.serving.adapters import SpecialistAdapters
from appliance.store import Principal, Store

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger("alveare.api")


def create_app(
    settings: Settings,
    *,
    engine: Engine,
    store: Store,
    specialists: Specialists,
    on_load_failure: Callable[[str], None] | None = None,
    tracer_provider: TracerProvider | None = None,
    url: str | None = None,
) -> Litestar:
    """The app; `on_load_failure(reason)` is called (on the event loop) if the model fails to load,
    so `serve` can stop rather than answer 503 forever. Request spans go to `tracer_provider`, else
    to the one the settings ask for (tracing.py), which the app shuts down as it stops. `url`: where
    the server listens, as a client on the network writes it (what a cluster's node list shows)."""
    serving = Serving(settings, engine, specialists, store, url=url)
    own_provider = tracer_provider is None
    provider = tracing.tracer_provider(settings) if own_provider else tracer_provider

    async def add_rate_limit_headers(message: Message, scope: Scope) -> None:
        """before_send hook: every authenticated response, errors included, carries x-ratelimit-*.

        A metered request reports the state at its admission; anything else (a refusal, a
        request that failed before admission, a non-inference endpoint) the key's state now.
        """
        if message["type"] != "http.response.start":
            return
        principal = scope.get("user")
        if not isinstance(principal, Principal):
            return
        call = scope.get("state", {}).get(CALL)
        state = call.rate if call is not None and call.rate is not None else serving.metering.rate_state(principal)
        headers = list(message.get("headers", []))
        headers += [(k.encode(), v.encode()) for k, v in state.headers().items()]
        message["headers"] = headers

    @asynccontextmanager
    async def engine_lifespan(app: Litestar) -> AsyncIterator[None]:
        # The model loads in the background: /health answers at once and reports progress,
        # and requests get 503 model_loading until it is ready.
        async def load() -> None:
            await engine.start()
            reason = engine.status().load_error
            if reason is not None and on_load_failure is not None:
                on_load_failure(reason)  # says it once, as the process's last line
            elif reason is not None:
                log.error("could not load the model: %s", reason)

        loading = asyncio.create_task(load())
        heartbeat = asyncio.create_task(serving.cluster.run())  # a cluster's node: its heartbeat
        try:
            yield
        finally:
            if not loading.done():
                loading.cancel()
            heartbeat.cancel()
            try:
                await serving.cluster.stopped()
                await engine.stop()
                # Every request has been answered or stopped by now (uvicorn waits for them): commit their
                # usage before the process can end (uvicorn re-raises SIGTERM after this, which ends it at once).
                await asyncio.wrap_future(store.flush())
                if provider is not None and own_provider:
                    await tracing.shut_down(provider)
            except asyncio.CancelledError:
                # A second Ctrl+C while stopping (uvicorn's forced exit): one line, not a traceback.
                log.warning("forced to stop before the engine and the store had finished stopping")

    app = Litestar(
        route_handlers=[
            *health.ROUTES,
            *openai_routes.ROUTES,
            *native.ROUTES,
            *status.ROUTES,
            *admin_routes.ROUTES,
            *sdk.ROUTES,
        ],
        middleware=_middleware(settings, provider),
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        before_send=[add_request_id, add_rate_limit_headers, openapi.complete_allow],
        lifespan=[engine_lifespan],
        state=State(
            {
                "serving": serving,
                "store": store,
                "key_cache": KeyCache(store),
                "settings": settings,
                # Refused API keys per client address (auth middleware): 429 for wrong keys past a burst.
                "failed_keys": FailedKeyLimiter(),
                # The admin API's operations: the same code the TUI runs on the data dir when no server is up.
                "admin": LocalAdmin(store, specialists, url=f"http://{settings.host}:{settings.port}"),
                # Adapters set on specialists at run time, kept in the data dir.
                "adapters": SpecialistAdapters(engine, specialists, store, settings.data_path),
            }
        ),
        cors_config=_cors(settings),
        request_max_body_size=settings.max_body_bytes,
        # The page and the JSON only: Litestar's other pages load their scripts from public CDNs.
        openapi_config=OpenAPIConfig(
            title="Alveare", version=__version__, path="/schema", render_plugins=[SchemaPage(), JsonRenderPlugin()]
        ),
        debug=False,
        logging_config=None,
    )
    openapi.document(app)
    return app


def schema_needs_key(settings: Settings) -> bool:
    """--schema-auth: `auto` asks for a key where others can reach the server, beyond loopback."""
    if settings.schema_auth == "auto":
        return not is_loopback(settings.host)
    return settings.schema_auth == "on"


def _middleware(settings: Settings, provider: TracerProvider | None) -> list:
    """The real client behind trusted proxies first (auth limits, logs and traces by it), then the
    request's span (where tracing is on), then the key check inside it."""
    open_paths = ["^/health$", "^/sdk/"] + ([] if schema_needs_key(settings) else ["^/schema"])
    auth = DefineMiddleware(BearerKeyAuth, exclude=open_paths)
    proxies = TrustedProxies(settings.trusted_proxy_networks)
    stack: list = [real_client(proxies)] if proxies else []
    if provider is not None:
        stack.append(tracing.traced(provider, include_prompt=settings.trace_prompts))
    return [*stack, auth]


def _cors(settings: Settings) -> CORSConfig | None:
    """Browsers on the configured origins may call the API (the TypeScript SDK in a web page); off by default.
    The headers a client acts on (request id, rate limits, retry hints) are exposed to the page's script."""
    origins = settings.cors_origin_list
    if not origins:
        return None
    return CORSConfig(
        allow_origins=origins,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        # Any request header: the OpenAI SDKs send their own x-stainless-* headers from a browser too.
        allow_headers=["*"],
        expose_headers=[
            "x-request-id",
            "retry-after",
            "retry-after-ms",
            "x-should-retry",
            "x-ratelimit-limit-requests",
            "x-ratelimit-remaining-requests",
            "x-ratelimit-reset-requests",
            "x-ratelimit-limit-tokens",
            "x-ratelimit-remaining-tokens",
            "x-ratelimit-reset-tokens",
        ],
        max_age=600,
    )
