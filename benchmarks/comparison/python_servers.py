"""The Python servers of the comparison: llama-cpp-python's own server and the batching example
from its sdist (servers.py has the base class and the C++ and Alveare servers)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from machine import cpu_count

from comparison.servers import MODEL_NAME, Server, ServerFailed


class LlamaCppPython(Server):
    name = "llama-cpp-python"

    def check(self) -> None:
        missing = [
            m
            for m in ("llama_cpp", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings", "uvicorn")
            if importlib.util.find_spec(m) is None
        ]
        if missing:
            raise ServerFailed(
                "missing Python packages for llama_cpp.server: "
                + ", ".join(missing)
                + " (pip install 'llama-cpp-python[server]' deps)"
            )

    def build_command(self) -> list[str]:
        threads = (
            []
            if self.user_threads
            else ["--n_threads", str(self.args.threads), "--n_threads_batch", str(self.args.threads)]
        )
        return [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(self.model),
            "--model_alias",
            MODEL_NAME,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_ctx",
            "2048",
            *threads,
            # its default (True) aborts the running stream whenever a new request arrives;
            # queue requests instead so every client gets its full answer
            "--interrupt_requests",
            "False",
        ]

    def ready_url(self) -> str:
        return self.base_url + "/v1/models"


class SdistExample(Server):
    name = "sdist-batching-example"

    def check(self) -> None:
        if not Path(self.args.sdist_example).exists():
            raise ServerFailed(
                f"{self.args.sdist_example} not found: unpack the llama-cpp-python sdist into "
                "benchmarks/.work (the example is examples/server/server.py)"
            )
        missing = [
            m
            for m in ("llama_cpp", "fastapi", "uvicorn", "jinja2", "numpy", "openai", "pydantic")
            if importlib.util.find_spec(m) is None
        ]
        if missing:
            raise ServerFailed("missing Python packages for the sdist example: " + ", ".join(missing))

    def build_command(self) -> list[str]:
        assert self.tmp is not None
        threads = cpu_count() if self.user_threads else self.args.threads
        config = {
            "server": {"host": "127.0.0.1", "port": self.port},
            "model": {
                "path": str(self.model),
                "alias": MODEL_NAME,
                "n_ctx": 8192,
                "n_seq_max": 8,
                "kv_unified": True,
                "threads": threads,
                "threads_batch": threads,
                "store_logits": False,
                "use_mmap": True,
            },
        }
        cfg = self.tmp / "config.json"
        cfg.write_text(json.dumps(config, indent=2))
        return [sys.executable, str(self.args.sdist_example), "-C", str(cfg)]

    def ready_url(self) -> str:
        return self.base_url + "/healthz"
