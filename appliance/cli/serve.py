"""`alveare serve`: parse the settings and run the server (appliance/boot/server.py does)."""

from __future__ import annotations

import argparse
import sys

from appliance.cli.base import Command, add_setting_flags, load_settings
from appliance.cli.init import report


class ServeCommand(Command):
    name = "serve"
    help = "run the API server on the model"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        add_setting_flags(parser)
        parser.set_defaults(run=serve)


def serve(args: argparse.Namespace) -> int:
    from appliance.boot.server import Announce, run

    settings = load_settings(args)
    return run(
        settings,
        Announce(
            initialized=report,
            line=print,
            error=lambda line: print(f"alveare: error: {line}", file=sys.stderr),
        ),
    )
