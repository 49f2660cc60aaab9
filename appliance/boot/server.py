"""`serve`'s run: check what can be checked before listening, set the data dir up, make the first
start's optimised copy, load the planned file and run the API server until a signal stops it.

The CLI parses and prints: what this run says goes through the `Announce` it is given."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from appliance import __version__
from appliance.boot import facts
from appliance.boot.first_start import optimize_embedded
from appliance.boot.init import Initialized, initialize
from appliance.boot.plan import plan_listen, plan_startup
from appliance.core.errors import ConfigError

if TYPE_CHECKING:
    from appliance.core.settings import Settings

log = logging.getLogger("appliance.serve")


class ForcedStopFilter(logging.Filter):
    """A second Ctrl+C while stopping makes uvicorn exit at once, cancelling what still runs, and its
    logger would print each cancellation's traceback: one line each instead (no traceback reaches
    the person who pressed it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        text = record.getMessage()
        if isinstance(error, asyncio.CancelledError) or (
            text.startswith("Traceback")
            and text.rstrip().splitlines()[-1].startswith("asyncio.exceptions.CancelledError")
        ):
            record.msg, record.args = "forced to stop: a request or the shutdown was cut off", ()
            record.exc_info = record.exc_text = None
        return True


# After the shutdown grace period, time for the stopped requests' error responses to go out.
STOPPED_RESPONSES_S = 3


@dataclass(frozen=True)
class Announce:
    """What the run says, and where: the CLI prints both."""

    initialized: Callable[[Initialized], None]  # the once-only admin key and the certificate
    line: Callable[[str], None]
    error: Callable[[str], None]


def keep_pydantic_out() -> None:
    """Litestar loads its pydantic plugin whenever pydantic is importable, which it is wherever the
    openai SDK shares the venv (the test extra, a developer's venv). The server declares no pydantic
    types, so its process makes the import fail as an absent package does (a None entry in
    sys.modules), and keeps the resident memory it would take (docs/decisions/007-host-memory-costs.md).
    Not for the in-process test apps, whose clients may be the openai SDK itself."""
    if "pydantic" not in sys.modules:
        sys.modules["pydantic"] = None  # type: ignore[assignment]


def run(settings: Settings, announce: Announce) -> int:
    keep_pydantic_out()
    import uvicorn

    from appliance.api import create_app
    from appliance.boot.connections import GuardedHttpToolsProtocol
    from appliance.core.preflight import bind, check_model
    from appliance.core.specialists import load_specialists
    from appliance.engine.chat_render import check_chat_template
    from appliance.engine.chat_template import TemplateError
    from appliance.engine.engine import HiveEngine
    from appliance.engine.interface import EngineConfig
    from appliance.serving.adapters import startup_adapters
    from appliance.store import Store

    specialists = load_specialists(settings.specialists_path and Path(settings.specialists_path).expanduser())
    found = facts.gather(settings)
    model_path = found.model_path
    # Everything that can be checked before listening is: a bad model file or a busy port is one
    # line and a non-zero exit, not a server that answers 503 forever or a traceback.
    check_model(model_path)
    try:
        check_chat_template(model_path, settings.chat_template)
    except TemplateError as exc:
        raise ConfigError(str(exc)) from None
    listen = plan_listen(settings, socket.gethostname())
    # Bound, not yet listening: while the first start optimises, connections are refused, not hung.
    sock = bind(settings.host, settings.port)
    # The first serve is `alveare init`: the data dir, the secret, the first admin key, the certificate.
    done = initialize(settings)
    announce.initialized(done)  # the admin key first: a first start's optimising below takes a minute
    sys.stdout.flush()
    plan = plan_startup(settings, found)
    if plan.optimize_first:
        optimize_embedded(settings, model_path)
        plan = plan_startup(settings, facts.gather(settings))
    for note in plan.notes:
        log.info("%s", note)
    if plan.solo_path is not None and plan.solo_path != model_path:
        check_model(plan.solo_path)  # a PATH given to --solo-model: one line if it is not a GGUF file
    store = Store(settings.data_path, database=settings.database)
    engine = HiveEngine(
        EngineConfig.from_settings(
            settings,
            model_path=plan.served_path,
            source_model_path=model_path if plan.served_path != model_path else None,
            served_because=plan.served_because,
            solo_model_path=plan.solo_path,
            adapters=startup_adapters(specialists, settings.data_path),
        )
    )
    load_failure: list[str] = []

    def load_failed(reason: str) -> None:
        # The file passed the checks but llama.cpp could not load it (a damaged GGUF, too little memory).
        load_failure.append(reason)
        server.should_exit = True

    app = create_app(
        settings,
        engine=engine,
        store=store,
        specialists=specialists,
        on_load_failure=load_failed,
        url=listen.base_url,
    )
    announce.line(f"Alveare {__version__} serving {len(specialists)} specialists on {model_path}")
    announce.line(f"Listening on {listen.base_url}  (OpenAI base URL: {listen.base_url}/v1)")
    if listen.cert is not None:
        announce.line(f"TLS certificate {listen.cert} (SHA-256 {done.fingerprint})")
    sys.stdout.flush()
    if listen.insecure:
        log.warning(
            "serving plain HTTP on %s (--insecure-http): API keys and prompts cross the network unencrypted",
            settings.host,
        )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        # Time limits and an idle cap for clients that connect and stall (see connections.py).
        http=GuardedHttpToolsProtocol,
        timeout_graceful_shutdown=settings.shutdown_grace_s + STOPPED_RESPONSES_S,
        # uvicorn wraps the pre-bound socket too: create_server(sock=..., ssl=config.ssl).
        ssl_certfile=listen.cert,
        ssl_keyfile=listen.key,
        # uvicorn would believe X-Forwarded-For from loopback peers, so any local client could name its
        # own address; the app honours it from --trusted-proxies alone (appliance.core.proxies).
        proxy_headers=False,
    )

    logging.getLogger("uvicorn.error").addFilter(ForcedStopFilter())

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            # SIGTERM or SIGINT: uvicorn stops accepting and waits for the requests in flight; the
            # app starts nothing new and stops what still runs after the grace period.
            app.state.serving.shut_down(settings.shutdown_grace_s)
            await super().shutdown(sockets)

    server = Server(config)
    server.run(sockets=[sock])
    store.close()
    if load_failure:
        announce.error(f"could not load the model {model_path}: {load_failure[0]}")
        return 1
    return 0 if server.started else 1
