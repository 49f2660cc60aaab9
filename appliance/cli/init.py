"""`alveare init`: make the data dir (mode 0700), the key-hashing secret, the first admin key and
the appliance's own TLS certificate (appliance/boot/init.py does), and print what was made. The first
`serve` runs the same steps; running it again is harmless (and shows the fingerprint again)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from appliance.boot.init import Initialized, initialize, keep_first_admin_key
from appliance.cli.base import Command, add_setting_flags, load_settings


def report(done: Initialized) -> None:
    """What init (or the first serve) says: the once-only admin key and the certificate to trust. The
    key is printed only to a terminal; output that is kept (a journal, `podman logs`, a redirected
    file) gets the path of the 0600 file that holds it instead."""
    if done.created_dir:
        print(f"Created the data dir {done.data_dir}")
    if done.admin_key is not None and sys.stdout.isatty():
        print("Admin API key (shown once; store it safely):")
        print(f"  {done.admin_key}")
    elif done.admin_key is not None:
        path = keep_first_admin_key(done.data_dir, done.admin_key)
        print(f"Admin API key written to {path} (mode 0600), not printed: this output is not a terminal.")
        print("  Store it safely, then delete the file.")
    if done.made_cert:
        print(f"Made the TLS certificate {done.cert_path}")
        print(f"  SHA-256 fingerprint {done.fingerprint}")
        print("  Clients trust it with --ca-cert / ALVEARE_CA_CERT (copy the .pem, never the key).")


def openai_snippet(base_url: str, cert_path: Path | None) -> str:
    """Python for the openai SDK against this appliance (the key left for the reader to fill in), and how
    to install the appliance's own SDK from it (the public index's `alveare` is another project's)."""
    from appliance.core.sdk_packages import wheel_name

    root = base_url.removesuffix("/v1")
    cert = f"--cert {cert_path} " if cert_path is not None else ""
    install = (
        f"# Alveare's own SDK and CLI come from the appliance (the public index's `alveare` is unrelated):\n"
        f'#   pip install {cert}"{root}/sdk/python/{wheel_name()}"\n\n'
    )
    return install + _openai_client(base_url, cert_path)


def _openai_client(base_url: str, cert_path: Path | None) -> str:
    if cert_path is None:
        return f'from openai import OpenAI\n\nclient = OpenAI(base_url="{base_url}", api_key="alv_live_...")\n'
    return (
        "import ssl\n\n"
        "import httpx\n"
        "from openai import OpenAI\n\n"
        f'trust = ssl.create_default_context(cafile="{cert_path}")  # the appliance\'s own certificate\n'
        "client = OpenAI(\n"
        f'    base_url="{base_url}",\n'
        '    api_key="alv_live_...",\n'
        "    http_client=httpx.Client(verify=trust),\n"
        ")\n"
    )


class InitCommand(Command):
    name = "init"
    help = "create the data dir, the key-hashing secret, the first admin key and the TLS certificate"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        add_setting_flags(parser, only=("data_dir", "database", "host", "port", "tls_cert", "tls_key", "insecure_http"))
        parser.add_argument(
            "--openai-snippet",
            action="store_true",
            help="also print Python for the openai SDK with this appliance's base URL",
        )
        parser.set_defaults(run=init)


def init(args: argparse.Namespace) -> int:
    import socket

    from appliance.boot.plan import plan_listen

    settings = load_settings(args)
    done = initialize(settings)
    report(done)
    if not (done.created_dir or done.admin_key or done.made_cert):
        print(f"{done.data_dir} is set up already. TLS certificate {done.cert_path}")
        print(f"  SHA-256 fingerprint {done.fingerprint}")
    if args.openai_snippet:
        plan = plan_listen(settings, socket.gethostname())
        print()
        print(openai_snippet(plan.base_url + "/v1", plan.cert if not settings.tls_cert else None), end="")
    sys.stdout.flush()
    return 0
