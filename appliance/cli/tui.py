"""`alveare tui`: the admin TUI on the running server, or on the data dir when none answers."""

from __future__ import annotations

import argparse
import logging
import os

from appliance.cli.admin import ADMIN_KEY_ENV, add_target_flags, server_ca_cert, server_url
from appliance.cli.base import Command, load_settings
from appliance.core.errors import AlveareError


class TuiCommand(Command):
    name = "tui"
    help = "the admin TUI: live status, accounts, plans, keys, specialists, prompts, usage, audit log"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        add_target_flags(parser)
        parser.set_defaults(run=tui)


def tui(args: argparse.Namespace) -> int:
    from textual.logging import TextualHandler

    from appliance.admin.reach import open_admin
    from appliance.admin.remote import server_answers
    from tui.app import AlveareApp

    # Log lines written to the terminal would tear the screen; Textual's handler keeps them in its log.
    logging.basicConfig(level=logging.WARNING, handlers=[TextualHandler()], force=True)
    settings = load_settings(args)
    url = server_url(settings, args.url)
    admin_key = args.admin_key or os.environ.get(ADMIN_KEY_ENV) or None
    data_dir = settings.data_path
    ca_cert = server_ca_cert(settings, args)

    def reopen():
        return open_admin(
            data_dir,
            url,
            admin_key,
            specialists_path=settings.specialists_path,
            ca_cert=ca_cert,
            database=settings.database,
        )

    backend = reopen()
    if backend.online:
        # An admin key the server refuses is one plain error now, not a screen full of failures.
        try:
            backend.plans()
        except AlveareError:
            close = getattr(backend, "close", None)
            if close is not None:
                close()
            raise
    app = AlveareApp(backend, reopen=reopen, probe=lambda: server_answers(url, ca_cert=ca_cert))
    try:
        app.run()
    finally:
        close = getattr(app.backend, "close", None)
        if close is not None:
            close()
    return 0
