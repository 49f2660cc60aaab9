"""The settings table: every setting the appliance takes, as one `Setting(...)` row each (with the
small checks and defaults they use). appliance/core/settings.py makes the rest from it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from appliance.core.proxies import networks_problem
from appliance.core.setting import Setting

DEFAULT_DATA_DIR = "~/.local/share/alveare"


def default_kernel_cache(environ: Mapping[str, str] | None = None) -> Path:
    """The CPU kernel check's verdicts, in the user's cache dir (XDG_CACHE_HOME, else ~/.cache): they
    depend on the machine, the llama.cpp build and the model file, not on the data dir."""
    environ = os.environ if environ is None else environ
    base = Path(environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser()
    return base / "alveare" / "cpu-kernels.json"


def _http_url(value: str) -> str | None:
    if value.startswith(("http://", "https://")):
        return None
    return f"must start with http:// or https://, not {value!r}"


def is_postgres_url(url: str | None) -> bool:
    """Whether a --database value names PostgreSQL (the only database it takes)."""
    return bool(url) and str(url).startswith(("postgresql://", "postgres://"))


def _database_url(value: str) -> str | None:
    if is_postgres_url(value):
        return None
    return "must be a postgresql:// URL (without it the store is SQLite in the data dir)"  # never echoed: a password


def _origins(value: str) -> str | None:
    for origin in split_origins(value):
        if origin != "*" and not origin.startswith(("http://", "https://")):
            return f"a CORS origin must be '*' or start with http:// or https://, not {origin!r}"
    return None


def split_origins(value: str | None) -> list[str]:
    return [o.strip().rstrip("/") for o in (value or "").split(",") if o.strip()]


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "data_dir",
        str,
        DEFAULT_DATA_DIR,
        "data directory: the SQLite database, the key-hashing secret and the TLS certificate",
        flag="--data-dir",
        env="ALVEARE_DATA_DIR",
        metavar="DIR",
        more="(every command uses it; `alveare init` or the first `serve` creates it; mode 0700, its files 0600)",
    ),
    Setting(
        "database",
        str,
        None,
        "where accounts, keys, plans, usage and prompts live: a postgresql:// URL, shared by every node of a cluster",
        flag="--database",
        env="ALVEARE_DATABASE_URL",
        metavar="URL",
        default_text="the data dir's SQLite file",
        more="(docs/scaling.md; the admin commands and the TUI take it too, for when no server answers; "
        "give the password in the URL or in PostgreSQL's own ~/.pgpass or PGPASSWORD)",
        check=_database_url,
    ),
    Setting("host", str, "127.0.0.1", "address to listen on", flag="--host", env="ALVEARE_HOST"),
    Setting("port", int, 8080, "port", flag="--port", env="ALVEARE_PORT", minimum=1, maximum=65535),
    Setting(
        "tls_cert",
        str | None,
        None,
        "the admin's own TLS certificate (PEM, full chain) to serve HTTPS with; needs `--tls-key`",
        flag="--tls-cert",
        env="ALVEARE_TLS_CERT",
        metavar="PEM",
        default_text="none: the data dir's `tls-cert.pem`, made by `alveare init`",
        label="TLS certificate",
        more="(checked against the key before the server listens)",
    ),
    Setting(
        "tls_key",
        str | None,
        None,
        "the private key of `--tls-cert` (PEM, unencrypted)",
        flag="--tls-key",
        env="ALVEARE_TLS_KEY",
        metavar="PEM",
        default_text="none: the data dir's `tls-key.pem`",
        label="TLS key",
    ),
    Setting(
        "insecure_http",
        bool,
        False,
        "serve plain HTTP on an address beyond loopback (logs a warning)",
        flag="--insecure-http",
        env="ALVEARE_INSECURE_HTTP",
        default_text="off",
        more="; without it `serve` speaks HTTPS whenever `--host` is not 127.0.0.0/8, `::1` or `localhost`, and "
        "plain HTTP on loopback unless `--tls-cert` is given",
    ),
    Setting(
        "model_path",
        str | None,
        None,
        "any GGUF model file (checked before the server listens)",
        flag="--model",
        env="ALVEARE_MODEL",
        metavar="PATH",
        default_text="embedded SmolLM2-135M",
        label="model",
    ),
    Setting(
        "specialists_path",
        str | None,
        None,
        "specialist profiles (a specialists.toml)",
        flag="--specialists",
        env="ALVEARE_SPECIALISTS",
        metavar="FILE",
        default_text="the built-in `specialists.toml`",
        label="specialists file",
    ),
    Setting(
        "slots",
        int,
        8,
        "requests decoded together in one batch",
        flag="--slots",
        env="ALVEARE_SLOTS",
        minimum=1,
        maximum=256,
    ),
    Setting(
        "n_ctx",
        int,
        0,
        "KV-cache cells: shared by all slots (one request may use them all) or split among them, per `--kv-cache`. "
        "0: on a CPU, slots x the model's training context up to 8192 per slot, when that cache, full, would take "
        "at most a quarter of the free memory (its pages are committed only as requests fill cells), else 8192; "
        "8192 on a GPU",
        flag="--ctx",
        env="ALVEARE_CTX",
        default_text="0 (auto)",
        minimum=0,
        label="context size",
        more="(a request's share is capped at the model's training context)",
        check=lambda v: None if v == 0 or v >= 256 else "must be 0 (auto) or at least 256",
    ),
    Setting(
        "kv_cache",
        str,
        "auto",
        "`unified`: all slots share the context's cells, and one request may use all of them; `split`: each "
        "slot gets its own ctx / slots cells, which attention alone reads (faster with many slots busy, "
        "but a request must fit its slot's share); `auto`: split when a slot's share holds the model's whole "
        "training context, or under `--ctx` 0 on a CPU what that gives a slot; else unified",
        flag="--kv-cache",
        env="ALVEARE_KV_CACHE",
        choices=("auto", "unified", "split"),
        label="KV cache layout",
    ),
    Setting(
        "prefill_chunk",
        int,
        0,
        "most batch rows a step gives prompts, which are prefilled in arrival order. 0: the whole batch "
        "(512), so requests arriving together get their first tokens together; a smaller chunk gives the "
        "first of a burst its first token sooner and the last later",
        flag="--prefill-chunk",
        env="ALVEARE_PREFILL_CHUNK",
        minimum=0,
        maximum=512,
        default_text="512",
        label="prefill chunk",
        more=", at some cost to tokens/s and p95 latency: see docs/decisions/006-step-shape.md",
    ),
    Setting(
        "threads",
        int,
        0,
        "CPU threads for llama.cpp. 0: all available cores, and fewer while another process keeps a core "
        "busy (measured step by step; /v1/hive/status shows the count in use); a number fixes the count",
        flag="--threads",
        env="ALVEARE_THREADS",
        minimum=0,
        default_text="all available cores",
    ),
    Setting(
        "gpu",
        str,
        "auto",
        "`auto` offloads all layers when the build supports a GPU; `off` stays on the CPU",
        flag="--gpu",
        env="ALVEARE_GPU",
        choices=("auto", "off"),
    ),
    Setting(
        "flash_attn",
        str,
        "auto",
        "flash attention: `auto` times a turn both ways on split KV streams on the CPU (where off commits at "
        "most 256 MB more up front) and keeps the faster, once per model, build and CPU; llama.cpp's choice "
        "otherwise (on, for CUDA and for CPUs); or `on`/`off`",
        flag="--flash-attn",
        env="ALVEARE_FLASH_ATTN",
        choices=("auto", "on", "off"),
        label="flash attention",
        more="; which is faster on split streams depends on the CPU, while a unified cache is faster with it on: "
        "see docs/decisions/006-step-shape.md",
    ),
    Setting(
        "cpu_kernels",
        str,
        "auto",
        "llama.cpp's fast CPU kernels (weight repacking, AMX on Xeons)",
        flag="--cpu-kernels",
        env="ALVEARE_CPU_KERNELS",
        choices=("auto", "fast", "safe"),
        label="cpu kernels",
        more=": `auto` checks them once per model, llama.cpp build and CPU in a child process and falls back to "
        "`safe` if they crash or disagree (remembered in the kernel cache, `ALVEARE_KERNEL_CACHE`); `fast` or "
        "`safe` skips the check",
    ),
    Setting(
        "kernel_cache",
        str | None,
        None,
        "the file where the CPU kernel check's verdicts are remembered, one per CPU, llama.cpp build and model "
        "file, for every data dir on the machine",
        env="ALVEARE_KERNEL_CACHE",
        default_text="the user's cache dir: `$XDG_CACHE_HOME/alveare/cpu-kernels.json`, else "
        "`~/.cache/alveare/cpu-kernels.json`",
        label="kernel cache",
    ),
    Setting(
        "optimized_model",
        str,
        "auto",
        "`auto` serves the copy `alveare model optimize` kept for the model (see The hive engine), and on a "
        "CPU makes that copy of the embedded model once, at the first start; `off` serves the original",
        flag="--optimized-model",
        env="ALVEARE_OPTIMIZED_MODEL",
        choices=("auto", "off"),
        label="optimized model",
        more="; a copy is used only while the original's path, size and mtime are those it was made from, "
        "on the CPU it was measured on; see docs/decisions/005-optimised-copy-gate.md",
    ),
    Setting(
        "solo_model",
        str,
        "auto",
        "a file with the served model's layers that a request running alone decodes on: `auto` the original, "
        "where its optimised copy is served and the copy's report measured the original's one-row step "
        "faster on this CPU; `off` none; or a GGUF PATH, beside whichever file is served",
        flag="--solo-model",
        env="ALVEARE_SOLO_MODEL",
        default_text="auto",
        metavar="auto|off|PATH",
        label="solo model",
        more=". The file is loaded beside the copy (its size in memory once a lone request has used it); "
        "see The hive engine, The solo lane",
    ),
    Setting(
        "adaptive_threads",
        str,
        "on",
        "`on`: where --threads is not given, each decode step's thread count follows measured step costs and "
        "idle cores, so a busy neighbour on the CPU does not stall every step; `off`: every step uses all the "
        "threads",
        flag="--adaptive-threads",
        env="ALVEARE_ADAPTIVE_THREADS",
        choices=("on", "off"),
        label="adaptive threads",
        more="; see docs/decisions/004-adaptive-threads.md",
    ),
    Setting(
        "lazy_kv",
        str,
        "on",
        "`on`: on a CPU, the KV cache's memory is committed as requests fill it, not all at load; `off`: "
        "llama.cpp's own allocation, resident as configured (set a smaller --ctx to match)",
        flag="--lazy-kv",
        env="ALVEARE_LAZY_KV",
        choices=("on", "off"),
        label="lazy KV memory",
        more="; see docs/decisions/002-lazy-kv-memory.md",
    ),
    Setting(
        "chat_template",
        str,
        "auto",
        "the chat template: `auto` the model file's own, else a known family's where its vocabulary and "
        "metadata leave no doubt (a base model or an unknown vocabulary is refused with this flag's name); a "
        "family's NAME (chatml, gemma, llama3, mistral, phi3, deepseek-r1); or a Jinja FILE",
        flag="--chat-template",
        env="ALVEARE_CHAT_TEMPLATE",
        default_text="auto",
        metavar="auto|NAME|FILE",
        label="chat template",
        more=". `GET /v1/hive/status` and `alveare model show` name the one in use; see Bringing your own model",
    ),
    Setting(
        "reasoning_format",
        str,
        "auto",
        "a thinking model's <think> block: `auto` or `deepseek` send it apart from the answer, as "
        "`message.reasoning_content` (streamed `delta.reasoning_content`), a Responses `reasoning` item and "
        "infer's `reasoning`, where the chat template thinks; `none` leaves it in the answer's text",
        flag="--reasoning-format",
        env="ALVEARE_REASONING_FORMAT",
        choices=("auto", "deepseek", "none"),
        label="reasoning format",
    ),
    Setting(
        "request_timeout_s",
        float,
        30.0,
        "seconds a request may wait for a slot, and then generate after its first token (504 after it); "
        "a long prompt's prefill is not counted",
        flag="--timeout",
        env="ALVEARE_TIMEOUT",
        label="request timeout",
        check=lambda v: None if v > 0 else "must be positive",
        default_text="30",
        metavar="S",
    ),
    Setting(
        "queue_size",
        int,
        64,
        "requests that may wait for a free slot (503 beyond it)",
        flag="--queue",
        env="ALVEARE_QUEUE",
        minimum=0,
        label="queue size",
    ),
    Setting(
        "shutdown_grace_s",
        float,
        5.0,
        "on SIGTERM, seconds that requests in flight may still run",
        flag="--shutdown-grace",
        env="ALVEARE_SHUTDOWN_GRACE",
        minimum=0,
        label="shutdown grace period",
        default_text="5",
        metavar="S",
        more="; the server stops accepting at once and starts no new generation, then stops the rest (a 503 "
        "`server_shutting_down`, an error event in a stream) and records their usage before it exits",
    ),
    Setting(
        "prefix_cache_mb",
        int,
        128,
        "host memory for saved prompt prefixes: shared ones (specialist and system prompts) and the chats "
        "idle slots held",
        flag="--prefix-cache-mb",
        env="ALVEARE_PREFIX_CACHE_MB",
        minimum=0,
        label="prefix cache size",
        metavar="MB",
        more=", restored instead of prefilled again (chats are dropped first); `0` turns it off",
    ),
    Setting(
        "max_body_bytes",
        int,
        1_048_576,
        "largest request body in bytes (413 beyond it)",
        env="ALVEARE_MAX_BODY",
        minimum=1024,
        label="largest body size",
    ),
    Setting(
        "webhook_url",
        str | None,
        None,
        "usage alerts are POSTed here as JSON (see Plans, limits and usage)",
        flag="--webhook-url",
        env="ALVEARE_WEBHOOK_URL",
        metavar="URL",
        label="webhook URL",
        check=_http_url,
    ),
    Setting(
        "cors_origins",
        str | None,
        None,
        "browser origins allowed to call the API, comma-separated (`https://app.example.com,http://localhost:5173`)"
        " or `*`",
        flag="--cors-origins",
        env="ALVEARE_CORS_ORIGINS",
        metavar="ORIGINS",
        default_text="none (CORS off)",
        label="CORS origins",
        check=_origins,
        more="; preflights are answered and `x-request-id`, `retry-after`, `retry-after-ms`, `x-should-retry` and "
        "`x-ratelimit-*` are exposed to the page",
    ),
    Setting(
        "schema_auth",
        str,
        "auto",
        "whether `/schema` (the API's page and `/schema/openapi.json`) needs an API key: `auto` one when "
        "`--host` is beyond loopback, none on loopback; `on` always; `off` never",
        flag="--schema-auth",
        env="ALVEARE_SCHEMA_AUTH",
        choices=("auto", "on", "off"),
        label="schema auth",
        more="; any valid key will do. The page is plain HTML made on the server: it loads nothing from anywhere",
    ),
    Setting(
        "trusted_proxies",
        str | None,
        None,
        "reverse proxies whose `X-Forwarded-For` is believed, comma-separated addresses or CIDR networks "
        "(`10.0.0.0/8,192.168.1.5`)",
        flag="--trusted-proxies",
        env="ALVEARE_TRUSTED_PROXIES",
        metavar="CIDRS",
        default_text="none (the header is ignored)",
        label="trusted proxies",
        check=networks_problem,
        more=": from a peer in the list, the client is the right-most address in the header that is not in it, "
        "and the refused-key limit and the log lines apply to that client; from any other peer the header is "
        "ignored",
    ),
    Setting(
        "otlp_endpoint",
        str | None,
        None,
        "where request traces go, by OTLP over HTTP: an OpenTelemetry Collector's `http://HOST:4318` (`/v1/traces` "
        "is added to a URL without a path); needs the `otel` extra",
        flag="--otlp-endpoint",
        env="ALVEARE_OTLP_ENDPOINT",
        metavar="URL",
        default_text="none: no traces, unless OpenTelemetry's own `OTEL_EXPORTER_OTLP_ENDPOINT` or "
        "`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set",
        label="OTLP endpoint",
        check=_http_url,
        more="; see Operations, Traces",
    ),
    Setting(
        "otel_service_name",
        str | None,
        None,
        "the `service.name` the traces carry (one per box, say, where several serve)",
        flag="--otel-service-name",
        env="ALVEARE_OTEL_SERVICE_NAME",
        metavar="NAME",
        default_text="the `OTEL_SERVICE_NAME` variable, else `alveare`",
        label="OTel service name",
    ),
    Setting(
        "trace_prompts",
        bool,
        False,
        "put each request's prompt, as the model reads it, in its trace (`alveare.prompt`)",
        flag="--trace-prompts",
        env="ALVEARE_TRACE_PROMPTS",
        default_text="off",
        more=": off, a trace carries no text of a tenant's, only counts, names and times",
    ),
    Setting(
        "verbose",
        bool,
        False,
        "show llama.cpp's own log lines",
        flag="--verbose",
        env="ALVEARE_VERBOSE",
        default_text="off",
    ),
)
