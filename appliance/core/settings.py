"""Settings: one table declares them (settings_table.py); the Settings Struct, the environment
reader, the `serve` flags and the configuration table in docs/configuration.md (checked by a test)
all come from it.

A new setting is one `Setting(...)` row in SETTINGS and nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from appliance.core.errors import ConfigError
from appliance.core.proxies import Network, parse_networks
from appliance.core.setting import Setting
from appliance.core.settings_table import DEFAULT_DATA_DIR, SETTINGS, default_kernel_cache, split_origins

# The log line of serve and of the child processes its start runs.
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Re-exported: callers read the table and its defaults from here.
__all__ = ["DEFAULT_DATA_DIR", "LOG_FORMAT", "SETTINGS", "Settings", "default_kernel_cache", "load_settings"]


BY_FIELD: dict[str, Setting] = {s.field: s for s in SETTINGS}
# Environment variables that map onto settings fields.
ENV_VARS: dict[str, str] = {s.env: s.field for s in SETTINGS if s.env}


class _SettingsBase(msgspec.Struct, frozen=True, kw_only=True):
    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser()  # type: ignore[attr-defined]

    @property
    def kernel_cache_path(self) -> Path:
        """Where the CPU kernel check's verdicts are remembered: the setting, else the user's cache dir."""
        if self.kernel_cache:  # type: ignore[attr-defined]
            return Path(self.kernel_cache).expanduser()  # type: ignore[attr-defined]
        return default_kernel_cache()

    @property
    def models_path(self) -> Path:
        """Where `alveare model optimize` keeps its copies and reports."""
        return self.data_path / "models"

    @property
    def cors_origin_list(self) -> list[str]:
        return split_origins(self.cors_origins)  # type: ignore[attr-defined]

    @property
    def trusted_proxy_networks(self) -> tuple[Network, ...]:
        return parse_networks(self.trusted_proxies)  # type: ignore[attr-defined]

    def validate(self) -> Settings:
        problems = [p for s in SETTINGS if (p := s.problem(getattr(self, s.field)))]
        if problems:
            raise ConfigError("; ".join(problems))
        return self  # type: ignore[return-value]


# The frozen Struct passed down from the CLI; its fields are the table's rows.
Settings = msgspec.defstruct(
    "Settings",
    [(s.field, s.type, s.default) for s in SETTINGS],
    bases=(_SettingsBase,),
    module=__name__,
    frozen=True,
    kw_only=True,
)


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
        field = str(exc).rsplit("$.", 1)[-1].rstrip("`") if "$." in str(exc) else ""
        setting = BY_FIELD.get(field)
        where = f" ({setting.env or setting.flag})" if setting else ""
        raise ConfigError(f"bad setting{where}: {exc}") from None


def readme_rows() -> list[str]:
    """docs/configuration.md's settings table, row by row (tests/unit/test_settings.py checks the page has it)."""
    rows = ["| flag | environment | default | meaning |", "|---|---|---|---|"]
    for s in SETTINGS:
        flag = f"`{s.flag}`" if s.flag else ""
        env = f"`{s.env}`" if s.env else ""
        default = s.shown_default
        if not default.startswith(("the ", "none", "all ", "embedded")):
            default = f"`{default}`"
        meaning = s.help + (("" if s.more.startswith((":", ";", ".", ",")) else " ") + s.more if s.more else "")
        rows.append(f"| {flag} | {env} | {default} | {meaning} |")
    return rows


if __name__ == "__main__":
    # `python -m appliance.core.settings` prints the configuration table of docs/configuration.md.
    print("\n".join(readme_rows()))
