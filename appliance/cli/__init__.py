"""The `alveare` command: each command is a small class in its own module, registered in COMMANDS;
main() parses and dispatches, and turns every failure into one line on stderr."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from appliance import __version__
from appliance.cli.admin import AdminCommand
from appliance.cli.auth import AuthCommand
from appliance.cli.base import Command, add_setting_flags
from appliance.cli.chat import ChatCommand
from appliance.cli.hives import HivesCommand
from appliance.cli.infer import InferCommand
from appliance.cli.init import InitCommand
from appliance.cli.model import ModelCommand
from appliance.cli.output import error_line, fail
from appliance.cli.serve import ServeCommand
from appliance.cli.specialists import SpecialistsCommand
from appliance.cli.tui import TuiCommand
from appliance.cli.usage import UsageCommand
from appliance.core.errors import AlveareError, ConfigError
from appliance.core.settings import LOG_FORMAT

# The order of `alveare --help`: the user's commands over HTTP, then the operator's.
COMMANDS: tuple[Command, ...] = (
    AuthCommand(),
    InferCommand(),
    ChatCommand(),
    SpecialistsCommand(),
    UsageCommand(),
    HivesCommand(),
    InitCommand(),
    ServeCommand(),
    ModelCommand(),
    AdminCommand(),
    TuiCommand(),
)

# What the [server] and [tui] extras bring; a command that needs one names the extra, not a traceback.
SERVER_AND_TUI_MODULES = frozenset({"litestar", "uvicorn", "llama_cpp", "textual", "sqlite_utils", "numpy", "jinja2"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alveare", description="On-prem LLM inference appliance.")
    parser.add_argument("--version", action="version", version=f"alveare {__version__}")
    add_setting_flags(parser, only=("data_dir",))
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The server logs its life; a command's output is its answer (httpx would log every request at INFO).
    level = logging.INFO if args.command == "serve" else logging.WARNING
    logging.basicConfig(level=level, format=LOG_FORMAT)
    try:
        return args.run(args)
    except ConfigError as exc:
        return fail(str(exc), 2)
    except AlveareError as exc:
        return fail(error_line(exc))
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except ModuleNotFoundError as exc:
        # `pip install alveare` is the SDK and user CLI only; the server and TUI are extras.
        root = (exc.name or "").split(".")[0]
        if root not in SERVER_AND_TUI_MODULES:
            raise
        return fail(f"this command needs pip install 'alveare[all]' ({root} is missing)", 2)
    except Exception as exc:
        from alveare import AlveareError as SDKError

        if isinstance(exc, SDKError):
            hint = " Or run `alveare auth login`." if exc.status is None and "No API key" in exc.message else ""
            return fail(error_line(exc) + hint)
        raise
