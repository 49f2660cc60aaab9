"""One setting's declaration: its field, flag, environment variable, default, checks and help (the
settings table in settings.py is a tuple of these)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Setting:
    """One setting: its field on Settings, flag, environment variable, default, checks and help."""

    field: str
    type: Any
    default: Any
    help: str
    # `serve`'s flag; None for a setting only the environment sets. --data-dir is global (see the CLI).
    flag: str | None = None
    env: str | None = None
    # The default as docs/configuration.md and --help show it, when the value itself says too little.
    default_text: str | None = None
    # The configuration page's longer explanation, after `help`.
    more: str = ""
    metavar: str | None = None
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    # The name errors use ("flash attention", not "flash_attn").
    label: str | None = None
    # A further check on a set value: None, or the problem after the label.
    check: Callable[[Any], str | None] | None = None

    @property
    def shown_default(self) -> str:
        if self.default_text is not None:
            return self.default_text
        return "none" if self.default is None else str(self.default)

    @property
    def name(self) -> str:
        return self.label or self.field.replace("_", " ")

    def problem(self, value: Any) -> str | None:
        """What is wrong with a converted value, or None."""
        if value is None:
            return None
        if self.choices and value not in self.choices:
            options = ", ".join(repr(c) for c in self.choices[:-1]) + f" or {self.choices[-1]!r}"
            return f"{self.name} must be {options}, not {value!r}"
        if self.minimum is not None and value < self.minimum:
            bound = f" and {self.maximum:g}" if self.maximum is not None else ""
            at_least = f"between {self.minimum:g}{bound}" if bound else f"at least {self.minimum:g}"
            return f"{self.name} must be {at_least}, not {value!r}"
        if self.maximum is not None and value > self.maximum:
            return f"{self.name} must be at most {self.maximum:g}, not {value!r}"
        if self.check is not None:
            found = self.check(value)
            if found:
                return f"{self.name} {found}" if not found.startswith("a ") else found
        return None
