"""`alveare auth ...`: log in (store the key and server in the user's config file), status, logout, revoke."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from appliance.cli.base import Command, action, actions
from appliance.cli.output import fail, progress
from appliance.cli.user import add_server_flag, client, key_prefix


class AuthCommand(Command):
    name = "auth"
    help = "log in with an API key, show the login, log out, revoke a key"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        group = actions(parser)
        p = action(group, "login", "check an API key against the server and store it in the config file", login)
        add_server_flag(p)
        p.add_argument("--api-key-stdin", action="store_true", help="read the key from standard input (for scripts)")
        p = action(group, "status", "the server and key in use, and whether the server accepts the key", status)
        add_server_flag(p)
        action(group, "logout", "remove the stored key from the config file", logout)
        p = action(group, "revoke", "revoke the key with this prefix (needs an admin key)", revoke)
        add_server_flag(p)
        p.add_argument("prefix", help="the key's prefix, at least 12 characters (alv_live_abc...)")


def _config_path():
    from alveare.config import config_path

    return config_path()


def login(args: argparse.Namespace) -> int:
    from alveare.config import read_config_file, resolve, write_config_file

    if args.api_key_stdin:
        key = sys.stdin.readline().strip()
    else:
        try:
            key = getpass.getpass("Alveare API key: ").strip()
        except EOFError:
            key = ""
    if not key:
        return fail("no API key given.")
    base_url = resolve(key, args.base_url).base_url
    # The certificate is stored as an absolute path: the config file is read from any directory.
    ca_cert = str(Path(args.ca_cert).expanduser().resolve()) if args.ca_cert else None
    with client(args, key, max_retries=0) as c, progress(f"Checking the key with {c.base_url}"):
        models = c.models()
    path = _config_path()
    stored = read_config_file(path)
    write_config_file(
        path, {**stored, "api_key": key, "base_url": base_url, **({"ca_cert": ca_cert} if ca_cert else {})}
    )
    names = ", ".join(m.id.removeprefix("alveare-") for m in models.data)
    print(f"Logged in to {base_url} with {key_prefix(key)} (specialists: {names or 'none'}).")
    print(f"Stored in {path} (mode 0600).")
    return 0


def status(args: argparse.Namespace) -> int:
    from alveare.config import API_KEY_ENV, read_config_file

    path = _config_path()
    stored = read_config_file(path)
    with client(args, max_retries=0) as c:
        print(f"Server:      {c.base_url}")
        print(f"Config file: {path}{'' if path.exists() else ' (none)'}")
        if c.ca_cert:
            print(f"Trusts:      {c.ca_cert}")
        if not c.api_key:
            return fail("not logged in: run `alveare auth login` (or set ALVEARE_API_KEY).")
        source = API_KEY_ENV if os.environ.get(API_KEY_ENV) else "the config file"
        print(f"Key:         {key_prefix(c.api_key)} (from {source})")
        health = c.health()
        print(f"Health:      {health.status}, version {health.version}, model {health.model or '-'}")
        c.models()  # an authenticated request: a refused key is the one-line error
        print("The server accepts the key.")
    if stored.get("api_key") and os.environ.get(API_KEY_ENV):
        print(f"Note: {API_KEY_ENV} overrides the key stored in the config file.")
    return 0


def logout(args: argparse.Namespace) -> int:
    from alveare.config import API_KEY_ENV, read_config_file, write_config_file

    path = _config_path()
    stored = read_config_file(path)
    if "api_key" not in stored:
        print(f"No key is stored in {path}; nothing to do.")
    else:
        rest = {k: v for k, v in stored.items() if k != "api_key"}
        if rest:
            write_config_file(path, rest)  # keep the server for the next login
        else:
            path.unlink()
        print(f"Logged out: removed the key from {path}.")
    if os.environ.get(API_KEY_ENV):
        print(f"{API_KEY_ENV} is still set in this shell; unset it too.")
    return 0


def revoke(args: argparse.Namespace) -> int:
    from urllib.parse import quote

    with client(args, max_retries=0) as c:
        # The SDK has no admin methods; this is the admin API's DELETE /v1/admin/keys/{prefix}.
        key = c._request("DELETE", f"/v1/admin/keys/{quote(args.prefix, safe='')}", dict)
    print(f"Revoked key {key.get('prefix')} of {key.get('account')}.")
    return 0
