"""Settings: one frozen Struct, built once from defaults, environment and flags, then passed down."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from appliance.errors import ConfigError

DEFAULT_DATA_DIR = "~/.local/share/alveare"

# Environment variables that map onto settings fields, documented in the README.
ENV_VARS: dict[str, str] = {
    "ALVEARE_DATA_DIR": "data_dir",
    "ALVEARE_MODEL": "model_path",
    "ALVEARE_HOST": "host",
    "ALVEARE_PORT": "port",
    "ALVEARE_SPECIALISTS": "specialists_path",
    "ALVEARE_CTX": "n_ctx",
    "ALVEARE_SLOTS": "slots",
    "ALVEARE_THREADS": "threads",
    "ALVEARE_GPU": "gpu",
    "ALVEARE_FLASH_ATTN": "flash_attn",
    "ALVEARE_CPU_KERNELS": "cpu_kernels",
    "ALVEARE_TIMEOUT": "request_timeout_s",
    "ALVEARE_QUEUE": "queue_size",
    "ALVEARE_PREFIX_CACHE_MB": "prefix_cache_mb",
    "ALVEARE_MAX_BODY": "max_body_bytes",
    "ALVEARE_WEBHOOK_URL": "webhook_url",
    "ALVEARE_CORS_ORIGINS": "cors_origins",
}


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    data_dir: str = DEFAULT_DATA_DIR
    host: str = "127.0.0.1"
    port: int = 8080
    # None serves the embedded SmolLM2-135M-Instruct model.
    model_path: str | None = None
    # None uses the specialists.toml shipped with the package.
    specialists_path: str | None = None
    # KV-cache cells shared by all slots; one request may use up to this many tokens.
    n_ctx: int = 8192
    # Sequences decoded together in one batch.
    slots: int = 8
    # 0 = let llama.cpp choose (all physical cores).
    threads: int = 0
    # "auto" offloads every layer when the llama.cpp build supports a GPU; "off" stays on the CPU.
    gpu: str = "auto"
    # Flash attention: "auto" lets llama.cpp decide per backend (on for CUDA and CPU), or "on"/"off".
    flash_attn: str = "auto"
    # llama.cpp's fast CPU kernels (weight repacking, AMX): "auto" checks once per model, build and CPU
    # in a child process and falls back to the safe ones if they crash; "fast" or "safe" forces it.
    cpu_kernels: str = "auto"
    request_timeout_s: float = 30.0
    # Requests waiting for a slot beyond this get 503.
    queue_size: int = 64
    # Host memory for saved shared prompt prefixes (specialist and system prompts); 0 turns it off.
    prefix_cache_mb: int = 128
    max_body_bytes: int = 1_048_576
    # Usage alerts (75%, 90%, 100% of an account's monthly requests) are POSTed here as JSON.
    webhook_url: str | None = None
    # Browser origins allowed to call the API (CORS), comma-separated, or "*"; none by default.
    cors_origins: str | None = None

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser()

    @property
    def kernel_cache_path(self) -> Path:
        """Where the CPU kernel check's verdicts are remembered."""
        return self.data_path / "cpu-kernels.json"

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip().rstrip("/") for o in (self.cors_origins or "").split(",") if o.strip()]

    def validate(self) -> Settings:
        problems = []
        if not 0 < self.port < 65536:
            problems.append(f"port {self.port} is not between 1 and 65535")
        if self.slots < 1 or self.slots > 256:
            problems.append(f"slots must be 1..256, not {self.slots}")
        if self.n_ctx < 256:
            problems.append(f"n_ctx must be at least 256, not {self.n_ctx}")
        if self.gpu not in ("auto", "off"):
            problems.append(f"gpu must be 'auto' or 'off', not {self.gpu!r}")
        if self.flash_attn not in ("auto", "on", "off"):
            problems.append(f"flash attention must be 'auto', 'on' or 'off', not {self.flash_attn!r}")
        if self.cpu_kernels not in ("auto", "fast", "safe"):
            problems.append(f"cpu kernels must be 'auto', 'fast' or 'safe', not {self.cpu_kernels!r}")
        if self.request_timeout_s <= 0:
            problems.append("request timeout must be positive")
        if self.prefix_cache_mb < 0:
            problems.append("prefix cache size must not be negative")
        if self.queue_size < 0:
            problems.append("queue size must not be negative")
        if self.webhook_url and not self.webhook_url.startswith(("http://", "https://")):
            problems.append(f"webhook URL must start with http:// or https://, not {self.webhook_url!r}")
        for origin in self.cors_origin_list:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                problems.append(f"a CORS origin must be '*' or start with http:// or https://, not {origin!r}")
        if problems:
            raise ConfigError("; ".join(problems))
        return self


def load_settings(overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Defaults, then environment variables, then explicit overrides (command-line flags)."""
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    for var, field in ENV_VARS.items():
        if environ.get(var):
            raw[field] = environ[var]
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        # strict=False lets "8080" from the environment become an int.
        return msgspec.convert(raw, Settings, strict=False).validate()
    except msgspec.ValidationError as exc:
        raise ConfigError(f"bad setting: {exc}") from None
