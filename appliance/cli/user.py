"""What the user commands share: the SDK client, built from --base-url, the environment and the config file."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import alveare


def add_server_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--base-url",
        help="the server (default: ALVEARE_BASE_URL, then the config file, then http://127.0.0.1:8080)",
    )
    parser.add_argument(
        "--ca-cert",
        metavar="PEM",
        help="the appliance's certificate to trust over HTTPS (default: ALVEARE_CA_CERT, then the config file)",
    )


def client(args: argparse.Namespace, api_key: str | None = None, *, max_retries: int = 2) -> alveare.Client:
    """An SDK client; the key from `api_key`, else ALVEARE_API_KEY, else the config file."""
    import alveare

    return alveare.Client(
        api_key=api_key,
        base_url=getattr(args, "base_url", None),
        max_retries=max_retries,
        ca_cert=getattr(args, "ca_cert", None),
    )


def read_text(value: str, what: str) -> str:
    """A text argument; '-' reads standard input."""
    if value != "-":
        return value
    if sys.stdin.isatty():
        print(f"Type the {what}, then Ctrl+D:", file=sys.stderr)
    return sys.stdin.read()


def key_prefix(key: str) -> str:
    """Enough of a key to recognise it (as `alveare admin keys list` shows it), never the key."""
    return key[:16] + "..."
