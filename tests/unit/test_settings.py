"""The settings table is the one place a setting is declared: the Struct, the environment, the flags
and the configuration table in docs/configuration.md all follow it."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from appliance.cli import build_parser
from appliance.cli.base import load_settings as from_args
from appliance.core.errors import ConfigError
from appliance.core.settings import ENV_VARS, SETTINGS, Settings, load_settings, readme_rows

CONFIGURATION_PAGE = Path(__file__).parents[2] / "docs" / "configuration.md"

# A value other than the default for each setting, as text (environment) and as parsed.
SAMPLES = {
    "data_dir": ("/srv/alveare", "/srv/alveare"),
    "database": ("postgresql://alveare@db/alveare", "postgresql://alveare@db/alveare"),
    "host": ("0.0.0.0", "0.0.0.0"),
    "port": ("9001", 9001),
    "model_path": ("/models/m.gguf", "/models/m.gguf"),
    "specialists_path": ("/etc/alveare/specialists.toml", "/etc/alveare/specialists.toml"),
    "slots": ("4", 4),
    "n_ctx": ("4096", 4096),
    "threads": ("2", 2),
    "gpu": ("off", "off"),
    "flash_attn": ("on", "on"),
    "kv_cache": ("split", "split"),
    "prefill_chunk": ("64", 64),
    "cpu_kernels": ("safe", "safe"),
    "kernel_cache": ("/var/cache/alveare/kernels.json", "/var/cache/alveare/kernels.json"),
    "optimized_model": ("off", "off"),
    "solo_model": ("/models/original.gguf", "/models/original.gguf"),
    "adaptive_threads": ("off", "off"),
    "lazy_kv": ("off", "off"),
    "chat_template": ("gemma", "gemma"),
    "reasoning_format": ("none", "none"),
    "request_timeout_s": ("12.5", 12.5),
    "queue_size": ("3", 3),
    "shutdown_grace_s": ("2.5", 2.5),
    "prefix_cache_mb": ("0", 0),
    "max_body_bytes": ("4096", 4096),
    "webhook_url": ("http://hooks.local/a", "http://hooks.local/a"),
    "cors_origins": ("https://app.example", "https://app.example"),
    "trusted_proxies": ("10.0.0.0/8", "10.0.0.0/8"),
    "otlp_endpoint": ("http://collector.local:4318", "http://collector.local:4318"),
    "otel_service_name": ("alveare-box-2", "alveare-box-2"),
    "trace_prompts": ("true", True),
    "schema_auth": ("on", "on"),
    "verbose": ("true", True),
    "tls_cert": ("/etc/alveare/cert.pem", "/etc/alveare/cert.pem"),
    "tls_key": ("/etc/alveare/key.pem", "/etc/alveare/key.pem"),
    "insecure_http": ("1", True),
}


def test_the_configuration_page_has_the_tables_rows() -> None:
    text = CONFIGURATION_PAGE.read_text(encoding="utf-8")
    missing = [row for row in readme_rows() if row not in text.splitlines()]
    assert not missing, "docs/configuration.md's table is out of date; `python -m appliance.core.settings` prints it"
    # and no row for a setting that is gone
    start = text.index(readme_rows()[0])
    table = text[start:].split("\n\n", 1)[0].splitlines()
    assert table == readme_rows()


def test_the_struct_is_the_table() -> None:
    fields = msgspec.structs.fields(Settings)
    assert [f.name for f in fields] == [s.field for s in SETTINGS]
    assert [f.default for f in fields] == [s.default for s in SETTINGS]
    assert set(SAMPLES) == {s.field for s in SETTINGS}, "give the new setting a sample here"


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.field)
def test_each_setting_from_the_environment_and_its_flag(setting) -> None:
    text, value = SAMPLES[setting.field]
    if setting.env:
        assert ENV_VARS[setting.env] == setting.field
        assert getattr(load_settings(environ={setting.env: text}), setting.field) == value
    if setting.flag:
        argv = ["serve", setting.flag] if setting.type is bool else ["serve", setting.flag, text]
        assert getattr(from_args(build_parser().parse_args(argv)), setting.field) == value
        assert setting.flag in build_parser()._subparsers._group_actions[0].choices["serve"].format_help()


def test_flags_win_over_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("ALVEARE_PORT", "7000")
    assert from_args(build_parser().parse_args(["serve"])).port == 7000
    assert from_args(build_parser().parse_args(["serve", "--port", "7001"])).port == 7001
    # --data-dir before the command, or after serve
    assert from_args(build_parser().parse_args(["--data-dir", "/a", "serve"])).data_dir == "/a"
    assert from_args(build_parser().parse_args(["serve", "--data-dir", "/b"])).data_dir == "/b"


def test_other_commands_flags_are_not_settings() -> None:
    args = build_parser().parse_args(["admin", "plans", "set", "tiny", "--specialists", "3"])
    assert from_args(args).specialists_path is None and args.plan_specialists == 3


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"ALVEARE_PORT": "70000"}, "port must be at most 65535, not 70000"),
        ({"ALVEARE_PORT": "eighty"}, "ALVEARE_PORT"),
        ({"ALVEARE_SLOTS": "0"}, "slots"),
        ({"ALVEARE_GPU": "cuda"}, "gpu must be 'auto' or 'off', not 'cuda'"),
        ({"ALVEARE_TIMEOUT": "0"}, "request timeout must be positive"),
        ({"ALVEARE_WEBHOOK_URL": "ftp://x"}, "webhook URL must start with http://"),
        ({"ALVEARE_CORS_ORIGINS": "app.example"}, "CORS origin"),
    ],
)
def test_bad_values_are_named(env, words) -> None:
    with pytest.raises(ConfigError, match=words.replace("(", r"\(")):
        load_settings(environ=env)


def test_the_readme_front_page_says_how_to_change_port_and_data_dir() -> None:
    # README.md keeps a short table of these three (the full one is docs/configuration.md); its rows
    # must name the real flag, variable and default.
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    for s in SETTINGS:
        if s.field in ("port", "host", "data_dir"):
            assert f"| `{s.flag}` | `{s.env}` | `{s.shown_default}` |" in readme, s.field
