"""`alveare init`: make the data dir (mode 0700), the key-hashing secret, the first admin key and
the appliance's own TLS certificate. The first `serve` runs the same steps; each is done once and
skipped when already there, so running it again is harmless (and shows the fingerprint again)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.cli.base import Command, add_setting_flags, load_settings
from appliance.core.errors import ConfigError

if TYPE_CHECKING:
    from appliance.core.settings import Settings


@dataclass(frozen=True)
class Initialized:
    data_dir: Path
    created_dir: bool
    admin_key: str | None  # only when it was made now: it is shown once
    cert_path: Path
    fingerprint: str
    made_cert: bool


def own_cert_paths(settings: Settings) -> tuple[Path, Path]:
    """The certificate and key HTTPS uses: the admin's (--tls-cert/--tls-key), else the data dir's own."""
    from appliance.core import tls

    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise ConfigError(
            "--tls-cert and --tls-key (ALVEARE_TLS_CERT, ALVEARE_TLS_KEY) go together: give both or neither"
        )
    if settings.tls_cert and settings.tls_key:
        return Path(settings.tls_cert).expanduser(), Path(settings.tls_key).expanduser()
    return settings.data_path / tls.CERT_FILE, settings.data_path / tls.KEY_FILE


def initialize(settings: Settings) -> Initialized:
    from appliance.core import tls
    from appliance.store import Store

    cert, key = own_cert_paths(settings)
    if settings.tls_cert:  # before anything is made: a bad pair leaves no half-made data dir
        tls.check_pair(cert, key)
    created = not settings.data_path.exists()
    store = Store(settings.data_path)  # the dir (0700) and the secret (0600)
    try:
        admin = store.ensure_admin()
    finally:
        store.close()
    made = False
    if not settings.tls_cert and not (cert.exists() and key.exists()):
        tls.make_certificate_apart(cert, key)
        made = True
    return Initialized(settings.data_path, created, admin.key if admin else None, cert, tls.fingerprint(cert), made)


def report(done: Initialized) -> None:
    """What init (or the first serve) says: the once-only admin key and the certificate to trust."""
    if done.created_dir:
        print(f"Created the data dir {done.data_dir}")
    if done.admin_key is not None:
        print("Admin API key (shown once; store it safely):")
        print(f"  {done.admin_key}")
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
        add_setting_flags(parser, only=("data_dir", "host", "port", "tls_cert", "tls_key", "insecure_http"))
        parser.add_argument(
            "--openai-snippet",
            action="store_true",
            help="also print Python for the openai SDK with this appliance's base URL",
        )
        parser.set_defaults(run=init)


def init(args: argparse.Namespace) -> int:
    from appliance.cli.serve import listen_plan

    settings = load_settings(args)
    done = initialize(settings)
    report(done)
    if not (done.created_dir or done.admin_key or done.made_cert):
        print(f"{done.data_dir} is set up already. TLS certificate {done.cert_path}")
        print(f"  SHA-256 fingerprint {done.fingerprint}")
    if args.openai_snippet:
        plan = listen_plan(settings)
        print()
        print(openai_snippet(plan.base_url + "/v1", plan.cert if not settings.tls_cert else None), end="")
    sys.stdout.flush()
    return 0
