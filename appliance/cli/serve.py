"""`alveare serve`: check, then load the model and run the API server."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from appliance import __version__
from appliance.cli.base import Command, add_setting_flags, load_settings
from appliance.errors import ConfigError


class ServeCommand(Command):
    name = "serve"
    help = "run the API server on the model"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        add_setting_flags(parser)
        parser.set_defaults(run=serve)


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from appliance.api import create_app
    from appliance.hive.engine import HiveEngine, embedded_model_path
    from appliance.hive.types import EngineConfig
    from appliance.preflight import bind, check_model
    from appliance.specialists import load_specialists
    from appliance.store import Store

    settings = load_settings(args)
    specialists = load_specialists(settings.specialists_path and Path(settings.specialists_path).expanduser())
    try:
        model_path = settings.model_path or embedded_model_path()
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from None
    # Everything that can be checked before listening is: a bad model file or a busy port is one
    # line and a non-zero exit, not a server that answers 503 forever or a traceback.
    check_model(model_path)
    sock = bind(settings.host, settings.port)
    first_run = not settings.data_path.exists()
    store = Store(settings.data_path)
    admin = store.ensure_admin()
    engine = HiveEngine(
        EngineConfig(
            model_path=model_path,
            n_ctx=settings.n_ctx,
            slots=settings.slots,
            threads=settings.threads,
            gpu=settings.gpu == "auto",
            flash_attn=settings.flash_attn,
            cpu_kernels=settings.cpu_kernels,
            kernel_cache_path=str(settings.kernel_cache_path),
            queue_size=settings.queue_size,
            cache_bytes=settings.prefix_cache_mb * 1024 * 1024,
            verbose=settings.verbose,
        )
    )
    load_failure: list[str] = []

    def load_failed(reason: str) -> None:
        # The file passed the checks but llama.cpp could not load it (a damaged GGUF, too little memory).
        load_failure.append(reason)
        server.should_exit = True

    app = create_app(settings, engine=engine, store=store, specialists=specialists, on_load_failure=load_failed)
    if first_run:
        print(f"Created the data dir {settings.data_path}")
    if admin is not None:
        print("Admin API key (shown once; store it safely):")
        print(f"  {admin.key}")
    print(f"Alveare {__version__} serving {len(specialists)} specialists on {model_path}")
    print(
        f"Listening on http://{settings.host}:{settings.port}  (OpenAI base URL: http://{settings.host}:{settings.port}/v1)"
    )
    sys.stdout.flush()
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    store.close()
    if load_failure:
        print(f"alveare: error: could not load the model {model_path}: {load_failure[0]}", file=sys.stderr)
        return 1
    return 0 if server.started else 1
