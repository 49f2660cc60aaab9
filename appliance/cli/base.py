"""A command: a name, its parser set-up and what it runs (after vLLM's CLI subcommands)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

# What a leaf command runs: the parsed arguments in, the exit code out.
Runner = Callable[[argparse.Namespace], int]


class Command:
    """One top-level command. `configure` adds its arguments (or its actions) and sets `run`."""

    name: str = ""
    help: str = ""

    def register(self, commands: Any) -> argparse.ArgumentParser:
        parser = commands.add_parser(self.name, help=self.help, description=self.help)
        self.configure(parser)
        return parser

    def configure(self, parser: argparse.ArgumentParser) -> None:
        raise NotImplementedError


def actions(parser: argparse.ArgumentParser, dest: str = "action", metavar: str = "ACTION") -> Any:
    """The sub-actions of a command group (`alveare auth login`, ...)."""
    return parser.add_subparsers(dest=dest, required=True, metavar=metavar)


def action(group: Any, name: str, help: str, run: Runner, json: bool = False) -> argparse.ArgumentParser:
    parser = group.add_parser(name, help=help, description=help)
    parser.set_defaults(run=run)
    if json:
        parser.add_argument("--json", action="store_true", help="print the raw JSON instead of a table")
    return parser


SETTING_DEST = "setting__"
# Every log line the CLI writes, serve's and its first start's child's alike.


def add_setting_flags(
    parser: argparse.ArgumentParser, *, only: tuple[str, ...] | None = None, helps: dict[str, str] | None = None
) -> None:
    """The settings table's flags (all of them, or those fields in `only`; `helps` replaces a field's help
    where a command uses the setting differently). Unset flags stay out of the namespace (SUPPRESS), so
    a flag given before the command is not overwritten by this parser's default."""
    from appliance.core.settings import SETTINGS

    for s in SETTINGS:
        if s.flag is None or (only is not None and s.field not in only):
            continue
        env = f"; env {s.env}" if s.env else ""
        text = (helps or {}).get(s.field, s.help).replace("`", "")
        kwargs: dict[str, Any] = {
            "dest": SETTING_DEST + s.field,
            "default": argparse.SUPPRESS,
            "help": f"{text} (default {s.shown_default.replace('`', '')}{env})".replace("%", "%%"),
        }
        if s.type is bool:
            kwargs["action"] = "store_true"
        else:
            kwargs["metavar"] = s.metavar or ("|".join(s.choices) if s.choices else s.field.split("_")[0].upper())
            if s.choices:
                kwargs["choices"] = s.choices
        parser.add_argument(s.flag, **kwargs)


def load_settings(args: argparse.Namespace):
    """Settings from the defaults, the environment and the flags given (in that order)."""
    from appliance.core.settings import load_settings as load

    overrides = {k.removeprefix(SETTING_DEST): v for k, v in vars(args).items() if k.startswith(SETTING_DEST)}
    return load(overrides)
