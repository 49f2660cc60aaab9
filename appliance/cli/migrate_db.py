"""`alveare admin migrate-db --to postgresql://...`: copy this box's SQLite store into a fresh
PostgreSQL database (appliance/store/migrate.py), verified table by table, so the install can grow
into a cluster. The box's server must be stopped: what it wrote after the copy would stay behind."""

from __future__ import annotations

import argparse
from typing import Any

from appliance.cli.base import action, load_settings
from appliance.cli.output import print_json, table


def register(areas: Any) -> None:
    p = action(
        areas,
        "migrate-db",
        "copy this box's SQLite store into a fresh PostgreSQL database, verified (stop the server first)",
        run,
        json=True,
    )
    p.add_argument("--to", required=True, metavar="URL", help="the target database, postgresql://user@host/db")


def run(args: argparse.Namespace) -> int:
    from appliance.admin.remote import server_answers
    from appliance.cli.admin import server_ca_cert, server_url
    from appliance.core.errors import Conflict
    from appliance.core.settings import BY_FIELD
    from appliance.store.migrate import migrate

    settings = load_settings(args)
    problem = BY_FIELD["database"].problem(args.to)
    if problem:
        raise Conflict(f"--to {problem}.")
    url = server_url(settings, getattr(args, "url", None))
    if server_answers(url, ca_cert=server_ca_cert(settings, args)):
        raise Conflict(
            f"A server answers at {url}: stop it first, or what it writes after the copy stays behind in SQLite. "
            "Then start every node with --database."
        )
    done = migrate(settings.data_path, args.to)
    if args.json:
        print_json(done)
        return 0
    table(["TABLE", "ROWS", "SHA-256"], [[t.table, t.rows, t.sha256[:16]] for t in done.tables], right=["ROWS"])
    print(f"Copied {done.source} into {done.target}; every table read back matches.")
    print(f"Start the appliance (and every other node) with --database {done.target} (or ALVEARE_DATABASE_URL).")
    return 0
