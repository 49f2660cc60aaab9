"""`alveare serve`: check, then load the model and run the API server."""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from appliance import __version__
from appliance.cli.base import Command, add_setting_flags, load_settings
from appliance.cli.init import initialize, own_cert_paths, report
from appliance.cli.model_file import file_to_load, optimize_embedded, optimize_first, served_copy, solo_model
from appliance.core.errors import ConfigError

if TYPE_CHECKING:
    from appliance.core.settings import Settings

log = logging.getLogger("appliance.serve")


@dataclass(frozen=True)
class ListenPlan:
    """How `serve` listens: HTTPS with this certificate and key, or plain HTTP (cert None)."""

    cert: Path | None
    key: Path | None
    base_url: str  # the server's root URL as a client on the network would write it
    insecure: bool  # plain HTTP beyond loopback, asked for with --insecure-http


def listen_plan(settings: Settings) -> ListenPlan:
    """HTTPS whenever the server listens beyond loopback (or the admin supplied a certificate);
    plain HTTP on loopback, or anywhere with --insecure-http."""
    from appliance.core.tls import is_loopback

    loopback = is_loopback(settings.host)
    https = settings.tls_cert is not None or not (loopback or settings.insecure_http)
    cert, key = own_cert_paths(settings) if https else (None, None)
    # A wildcard address is no URL: name the machine, which the certificate covers.
    host = socket.gethostname() if settings.host in ("0.0.0.0", "::", "") else settings.host
    host = f"[{host}]" if ":" in host else host
    url = f"{'https' if https else 'http'}://{host}:{settings.port}"
    return ListenPlan(cert, key, url, insecure=not https and not loopback)


# After the shutdown grace period, time for the stopped requests' error responses to go out.
STOPPED_RESPONSES_S = 3


class ServeCommand(Command):
    name = "serve"
    help = "run the API server on the model"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        add_setting_flags(parser)
        parser.set_defaults(run=serve)


def keep_pydantic_out() -> None:
    """Litestar loads its pydantic plugin whenever pydantic is importable, which it is wherever the
    openai SDK shares the venv (the test extra, a developer's venv). The server declares no pydantic
    types, so its process makes the import fail as an absent package does (a None entry in
    sys.modules): about 8 MB of resident memory less. Not for the in-process test apps, whose
    clients may be the openai SDK itself."""
    if "pydantic" not in sys.modules:
        sys.modules["pydantic"] = None  # type: ignore[assignment]


def serve(args: argparse.Namespace) -> int:
    keep_pydantic_out()
    import uvicorn

    from appliance.api import create_app
    from appliance.cli.connections import GuardedHttpToolsProtocol
    from appliance.core.preflight import bind, check_model
    from appliance.core.specialists import load_specialists
    from appliance.engine.chat_render import check_chat_template
    from appliance.engine.chat_template import TemplateError
    from appliance.engine.engine import HiveEngine, embedded_model_path
    from appliance.engine.types import EngineConfig
    from appliance.store import Store

    settings = load_settings(args)
    specialists = load_specialists(settings.specialists_path and Path(settings.specialists_path).expanduser())
    embedded: str | None = None
    try:
        embedded = embedded_model_path()
    except FileNotFoundError as exc:
        if not settings.model_path:
            raise ConfigError(str(exc)) from None
    model_path = settings.model_path or embedded or ""
    # Everything that can be checked before listening is: a bad model file or a busy port is one
    # line and a non-zero exit, not a server that answers 503 forever or a traceback.
    check_model(model_path)
    try:
        check_chat_template(model_path, settings.chat_template)
    except TemplateError as exc:
        raise ConfigError(str(exc)) from None
    plan = listen_plan(settings)
    # Bound, not yet listening: while the first start optimises, connections are refused, not hung.
    sock = bind(settings.host, settings.port)
    # The first serve is `alveare init`: the data dir, the secret, the first admin key, the certificate.
    done = initialize(settings)
    report(done)  # the admin key first: a first start's optimising below takes a minute
    sys.stdout.flush()
    if optimize_first(settings, model_path, embedded):
        optimize_embedded(settings, model_path)
    copy = served_copy(settings, model_path)
    served_path = file_to_load(model_path, copy)
    solo_path = solo_model(settings, model_path, copy)
    if solo_path is not None and solo_path != model_path:
        check_model(solo_path)  # a PATH given to --solo-model: one line if it is not a GGUF file
    store = Store(settings.data_path)
    engine = HiveEngine(
        EngineConfig(
            model_path=served_path,
            source_model_path=model_path if served_path != model_path else None,
            solo_model_path=solo_path,
            n_ctx=settings.n_ctx,
            slots=settings.slots,
            threads=settings.threads,
            gpu=settings.gpu == "auto",
            flash_attn=settings.flash_attn,
            kv_cache=settings.kv_cache,
            prefill_chunk=settings.prefill_chunk,
            cpu_kernels=settings.cpu_kernels,
            kernel_cache_path=str(settings.kernel_cache_path),
            queue_size=settings.queue_size,
            cache_bytes=settings.prefix_cache_mb * 1024 * 1024,
            verbose=settings.verbose,
            chat_template=settings.chat_template,
        )
    )
    load_failure: list[str] = []

    def load_failed(reason: str) -> None:
        # The file passed the checks but llama.cpp could not load it (a damaged GGUF, too little memory).
        load_failure.append(reason)
        server.should_exit = True

    app = create_app(settings, engine=engine, store=store, specialists=specialists, on_load_failure=load_failed)
    print(f"Alveare {__version__} serving {len(specialists)} specialists on {model_path}")
    print(f"Listening on {plan.base_url}  (OpenAI base URL: {plan.base_url}/v1)")
    if plan.cert is not None:
        print(f"TLS certificate {plan.cert} (SHA-256 {done.fingerprint})")
    sys.stdout.flush()
    if plan.insecure:
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
        ssl_certfile=plan.cert,
        ssl_keyfile=plan.key,
    )

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
        print(f"alveare: error: could not load the model {model_path}: {load_failure[0]}", file=sys.stderr)
        return 1
    return 0 if server.started else 1
