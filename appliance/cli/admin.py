"""`alveare admin ...`: accounts, keys, plans, usage and the audit log through AdminOps, the TUI's interface.

`appliance.admin.remote.open_admin` picks the admin API when a server answers (the change is seen at once)
and the data dir otherwise, so these commands work with the server up or down and get the same
validation either way.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from appliance.cli import migrate_db
from appliance.cli.base import Command, action, actions, add_setting_flags, load_settings
from appliance.cli.output import cut, print_json, table

if TYPE_CHECKING:
    from appliance.admin.ops import AdminOps
    from appliance.core.settings import Settings

ADMIN_KEY_ENV = "ALVEARE_ADMIN_KEY"
CA_CERT_ENV = "ALVEARE_CA_CERT"


def server_url(settings: Settings, url: str | None) -> str:
    """The server to manage: --url, else the local one on the configured port, over HTTPS when the
    settings make `serve` speak it."""
    from appliance.boot.plan import plan_listen

    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    scheme = "https" if plan_listen(settings, host).cert is not None else "http"
    return url or f"{scheme}://{host}:{settings.port}"


def server_ca_cert(settings: Settings, args: argparse.Namespace) -> str | None:
    """The certificate to trust: --ca-cert or ALVEARE_CA_CERT, else the data dir's own one when the
    server uses it (an admin-supplied certificate is trusted through the system's authorities)."""
    from appliance.core.tls import CERT_FILE

    given = getattr(args, "ca_cert", None) or os.environ.get(CA_CERT_ENV) or None
    if given or settings.tls_cert:
        return given
    own = settings.data_path / CERT_FILE
    return str(own) if own.exists() else None


def add_target_flags(parser: argparse.ArgumentParser) -> None:
    add_setting_flags(parser, only=("data_dir", "database"))
    parser.add_argument("--url", help="the server to manage (default http(s)://127.0.0.1:PORT, from the settings)")
    parser.add_argument(
        "--admin-key",
        help=f"an admin API key; prefer env {ADMIN_KEY_ENV}, as a flag it shows in the process list "
        "(default: the TUI's own key in the data dir)",
    )
    parser.add_argument(
        "--ca-cert",
        metavar="PEM",
        help=f"the appliance's certificate to trust over HTTPS (env {CA_CERT_ENV}; default: the data dir's own)",
    )


@contextmanager
def admin_ops(args: argparse.Namespace) -> Iterator[AdminOps]:
    from appliance.admin.reach import open_admin

    settings = load_settings(args)
    key = getattr(args, "admin_key", None) or os.environ.get(ADMIN_KEY_ENV) or None
    ops = open_admin(
        settings.data_path,
        server_url(settings, getattr(args, "url", None)),
        key,
        specialists_path=settings.specialists_path,
        ca_cert=server_ca_cert(settings, args),
        database=settings.database,
    )
    try:
        yield ops
    finally:
        close = getattr(ops, "close", None)
        if close is not None:
            close()


class AdminCommand(Command):
    name = "admin"
    help = "manage accounts, keys and plans, read the audit log (through the server when it runs, else on the data dir)"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        add_target_flags(parser)
        areas = actions(parser, dest="area", metavar="AREA")

        accounts = actions(areas.add_parser("accounts", help="accounts"))
        p = action(accounts, "create", "create an account", accounts_create, json=True)
        p.add_argument("name")
        p.add_argument("--plan", default="starter", help="solo, starter, professional or scale (default starter)")
        action(accounts, "list", "list accounts", accounts_list, json=True)
        p = action(accounts, "set-plan", "move an account to another plan", accounts_set_plan)
        p.add_argument("name")
        p.add_argument("plan")
        p = action(accounts, "set-cap", "set a hard monthly spending cap on overage, or 'none'", accounts_set_cap)
        p.add_argument("name")
        p.add_argument("cap", type=_cap)
        p = action(
            accounts,
            "set-specialists",
            "choose the specialists an account may use, or 'default'",
            accounts_set_specialists,
        )
        p.add_argument("name")
        p.add_argument("names", help="comma-separated specialists, e.g. classify,summarise; or 'default'")

        keys = actions(areas.add_parser("keys", help="API keys"))
        p = action(keys, "create", "create a key (printed once)", keys_create)
        p.add_argument("--account", help="the account the key belongs to")
        p.add_argument("--test", action="store_true", help="a sandbox alv_test_ key")
        p.add_argument("--admin", action="store_true", help="an admin key (admin API, hive status, every specialist)")
        p.add_argument("--json", action="store_true", help='print {"key": ..., "prefix": ...}')
        p = action(keys, "list", "list keys (prefixes only)", keys_list, json=True)
        p.add_argument("--account")
        p = action(keys, "revoke", "revoke the key with this prefix", keys_revoke)
        p.add_argument("prefix")

        plans = actions(areas.add_parser("plans", help="plans"))
        action(plans, "list", "list plans and their limits", plans_list, json=True)
        p = action(plans, "set", "change a plan's limits, or create a new plan", plans_set, json=True)
        p.add_argument("name")
        p.add_argument("--rpm", type=int, help="requests per minute per key")
        p.add_argument("--monthly", type=int, help="requests per month per account")
        p.add_argument("--tpm", type=int, help="tokens per minute per key")
        p.add_argument(
            "--specialists", dest="plan_specialists", type=int, metavar="N", help="specialists an account may use"
        )
        p.add_argument(
            "--custom-prompts", choices=["yes", "no"], help="whether accounts may set their own system prompts"
        )
        p.add_argument("--overage", type=float, help="price per 1,000 requests beyond the monthly requests")
        p.add_argument("--price", type=float, help="monthly price")
        p.add_argument("--share-weight", type=int, metavar="W", help="the plan's weight in the fair scheduler (1-100)")
        p.add_argument("--base", default="starter", help="a new plan starts from this plan's values (default starter)")

        p = action(
            areas,
            "backup",
            "a consistent, checked copy of the database (a new file, or a time-stamped one in a folder)",
            backup,
            json=True,
        )
        p.add_argument(
            "path",
            help="the file to write, or a folder for alveare-<UTC time>.db (ending in /: made if missing, owner-only)",
        )

        migrate_db.register(areas)

        p = action(areas, "usage", "requests, tokens, overage and alerts for the period", usage, json=True)
        p.add_argument("--account", help="one account (default: all)")
        p.add_argument("--period", help="a month like 2026-03 (default: the current one, UTC)")

        audit = actions(areas.add_parser("audit", help="the audit log of admin actions (hash-chained)"))
        p = action(audit, "list", "admin actions, newest first: who, what and when", audit_list, json=True)
        p.add_argument("--limit", type=int, default=50, help="rows to show, 1 to 500 (default 50)")
        p.add_argument("--before", type=int, metavar="ID", help="only rows older than this row id (the next page)")
        action(
            audit,
            "verify",
            "walk the hash chain; exit 1 and name the first bad row if a row was changed or removed",
            audit_verify,
            json=True,
        )


# accounts -------------------------------------------------------------------
def accounts_create(args: argparse.Namespace) -> int:
    with admin_ops(args) as ops:
        account = ops.create_account(args.name, args.plan)
    if args.json:
        print_json(account)
    else:
        print(f"Created account {account.name} on the {account.plan} plan.")
    return 0


def accounts_list(args: argparse.Namespace) -> int:
    with admin_ops(args) as ops:
        overviews = ops.accounts()
    accounts = [o.account for o in overviews]
    if args.json:
        print_json(accounts)
        return 0
    rows = []
    for a in accounts:
        cap = f"{a.spending_cap:.2f}" if a.spending_cap is not None else "-"
        chosen = ",".join(a.specialists) if a.specialists else "default"
        rows.append([a.name, a.plan, cap, chosen, a.created_at[:19]])
    table(["NAME", "PLAN", "SPENDING CAP", "SPECIALISTS", "CREATED"], rows, right=["SPENDING CAP"])
    return 0


def accounts_set_plan(args: argparse.Namespace) -> int:
    with admin_ops(args) as ops:
        account = ops.set_account_plan(args.name, args.plan)
    print(f"Account {account.name} is now on the {account.plan} plan.")
    return 0


def _cap(text: str) -> float | None:
    if text.lower() in ("none", "off", "-"):
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a cap is an amount like 50 or 12.5, or 'none'; not {text!r}") from None


def accounts_set_cap(args: argparse.Namespace) -> int:
    with admin_ops(args) as ops:
        account = ops.set_spending_cap(args.name, args.cap)
    cap = "no spending cap" if account.spending_cap is None else f"a spending cap of {account.spending_cap:g}"
    print(f"Account {account.name} now has {cap} per period.")
    return 0


def accounts_set_specialists(args: argparse.Namespace) -> int:
    names = None if args.names.strip().lower() == "default" else args.names.split(",")
    with admin_ops(args) as ops:
        account = ops.set_account_specialists(args.name, names)
    chosen = ", ".join(account.specialists) if account.specialists else "the plan's default set"
    print(f"Account {account.name} may use: {chosen}.")
    return 0


# keys -----------------------------------------------------------------------
def keys_create(args: argparse.Namespace) -> int:
    from appliance.core.errors import InvalidRequest
    from appliance.store import ADMIN_ACCOUNT

    if args.admin:
        if args.test:
            raise InvalidRequest("An admin key is a live key; leave out --test.")
        if args.account not in (None, ADMIN_ACCOUNT):
            raise InvalidRequest(f"Admin keys belong to the {ADMIN_ACCOUNT} account; leave out --account.")
        account = ADMIN_ACCOUNT
    elif args.account:
        account = args.account
    else:
        raise InvalidRequest("Name the key's account with --account NAME (or ask for an admin key with --admin).")
    with admin_ops(args) as ops:
        created = ops.create_key(account, test=args.test, admin=args.admin)
    if args.json:
        print_json({"key": created.key, "prefix": created.prefix})
    else:
        kind = "admin" if args.admin else "test" if created.test else "live"
        print(f"Created a {kind} key for {created.account}. It is shown once; store it safely:")
        print(f"  {created.key}")
    return 0


def keys_list(args: argparse.Namespace) -> int:
    with admin_ops(args) as ops:
        keys = ops.keys(args.account)
    if args.json:
        print_json(keys)
        return 0
    rows = []
    for k in keys:
        # KIND: live or test (alv_test_ sandbox), or admin: a live key that may also use the admin API.
        kind = "admin" if k.admin else "test" if k.test else "live"
        state = "revoked" if k.revoked_at else "active"
        rows.append([k.prefix, k.account, kind, state, k.created_at[:19], (k.last_used_at or "-")[:19]])
    table(["PREFIX", "ACCOUNT", "KIND", "STATE", "CREATED", "LAST USED"], rows)
    return 0


def keys_revoke(args: argparse.Namespace) -> int:
    with admin_ops(args) as ops:
        key = ops.revoke_key(args.prefix)
    print(f"Revoked key {key.prefix} of {key.account}.")
    return 0


# plans ----------------------------------------------------------------------
def plans_list(args: argparse.Namespace) -> int:
    with admin_ops(args) as ops:
        plans = ops.plans()
    if args.json:
        print_json(plans)
        return 0
    headers = ["PLAN", "REQ/MIN", "REQ/MONTH", "TOK/MIN", "SPECIALISTS", "CUSTOM", "OVERAGE/1K", "PRICE", "WEIGHT"]
    rows = [
        [
            p.name,
            p.requests_per_minute,
            p.requests_per_month,
            p.tokens_per_minute,
            p.specialists_allowed,
            "yes" if p.custom_prompts else "no",
            f"{p.overage_per_1k_requests:.2f}",
            f"{p.monthly_price:.2f}",
            p.share_weight,
        ]
        for p in plans
    ]
    table(headers, rows, right=headers[1:])
    return 0


def plans_set(args: argparse.Namespace) -> int:
    limits = {
        "requests_per_minute": args.rpm,
        "requests_per_month": args.monthly,
        "tokens_per_minute": args.tpm,
        "specialists_allowed": args.plan_specialists,
        "custom_prompts": None if args.custom_prompts is None else args.custom_prompts == "yes",
        "overage_per_1k_requests": args.overage,
        "monthly_price": args.price,
        "share_weight": args.share_weight,
    }
    limits = {k: v for k, v in limits.items() if v is not None}
    name = args.name.strip().lower()  # plan names are kept in lower case
    with admin_ops(args) as ops:
        existing = {p.name: p for p in ops.plans()}
        if name not in existing:
            if args.base not in existing:
                from appliance.core.errors import NotFound

                raise NotFound(f"No plan named {args.base!r} to start from; plans: {', '.join(existing)}.")
            # A new plan starts from --base's values; AdminOps creates from starter's, so send them all.
            base = existing[args.base]
            limits = {
                **{k: getattr(base, k) for k in ("requests_per_minute", "requests_per_month", "tokens_per_minute")},
                "specialists_allowed": base.specialists_allowed,
                "custom_prompts": base.custom_prompts,
                "overage_per_1k_requests": base.overage_per_1k_requests,
                "monthly_price": base.monthly_price,
                "share_weight": base.share_weight,
                **limits,
            }
        plan = ops.set_plan(args.name, **limits)
    if args.json:
        print_json(plan)
    else:
        print(
            f"{'Updated' if name in existing else 'Created'} plan {plan.name}: "
            f"{plan.requests_per_minute} requests/min, {plan.requests_per_month} requests/month, "
            f"{plan.tokens_per_minute} tokens/min, {plan.specialists_allowed} specialists, "
            f"custom prompts {'yes' if plan.custom_prompts else 'no'}, "
            f"overage {plan.overage_per_1k_requests:g} per 1,000 requests, share weight {plan.share_weight}."
        )
    return 0


# usage ----------------------------------------------------------------------
def usage(args: argparse.Namespace) -> int:
    with admin_ops(args) as ops:
        overviews = ops.accounts(args.period)
        if args.account:
            overviews = [o for o in overviews if o.account.name == args.account]
            if not overviews:
                from appliance.core.errors import NotFound

                raise NotFound(f"No account named {args.account!r}.")
        summaries = [o.usage for o in overviews]
        alerts = ops.alerts(args.account, summaries[0].period if summaries else args.period)
    if args.json:
        print_json({"usage": summaries, "alerts": alerts})
        return 0
    headers = ["ACCOUNT", "PLAN", "PERIOD", "REQUESTS", "LIMIT", "OVERAGE", "SPENDING", "CAP", "TOKENS", "TEST"]
    headers.append("FAILED")
    rows = [
        [
            u.account,
            u.plan,
            u.period,
            u.requests_used,
            u.requests_limit,
            u.overage_requests,
            f"{u.spending:.2f}",
            f"{u.spending_cap:.2f}" if u.spending_cap is not None else "-",
            u.tokens_used,
            u.test_requests,
            u.failed_requests,
        ]
        for u in summaries
    ]
    table(headers, rows, right=headers[3:])
    if args.account and summaries and summaries[0].by_specialist:
        print("by specialist: " + ", ".join(f"{k} {v}" for k, v in summaries[0].by_specialist.items()))
    for a in alerts:
        print(
            f"alert: {a.account} reached {a.threshold}% ({a.requests_used} of {a.requests_limit} requests) "
            f"at {a.created_at[:19]}"
        )
    return 0


# backup ---------------------------------------------------------------------
def backup(args: argparse.Namespace) -> int:
    with admin_ops(args) as ops:
        info = ops.backup(args.path)
    if args.json:
        print_json(info)
    else:
        print(
            f"Backed up to {info.path}: {info.bytes:,} bytes, integrity {info.integrity}, "
            f"{info.accounts} accounts, {info.keys} keys, {info.usage_records} usage records."
        )
    return 0


# audit ----------------------------------------------------------------------
def audit_list(args: argparse.Namespace) -> int:
    import msgspec

    with admin_ops(args) as ops:
        page = ops.audit(args.limit, args.before)
    if args.json:
        print_json(page)
        return 0
    if not page.data:
        print("No admin actions recorded yet.")
        return 0
    rows = [
        [
            e.id,
            e.at[:19].replace("T", " "),
            e.actor,
            e.action,
            e.target,
            cut(msgspec.json.encode(e.change).decode(), 100),
        ]
        for e in page.data
    ]
    table(["ID", "WHEN (UTC)", "WHO", "ACTION", "TARGET", "CHANGE"], rows, right=["ID"])
    if page.has_more:
        print(f"Older rows: --before {page.next_before}. Each change in full: --json.")
    return 0


def audit_verify(args: argparse.Namespace) -> int:
    with admin_ops(args) as ops:
        result = ops.verify_audit()
    if args.json:
        print_json(result)
    elif result.ok:
        print(f"The audit log's chain holds: {result.rows} rows, the newest hashing to {result.head}.")
    else:
        print(f"The audit log's chain breaks at row {result.bad_row}: {result.problem}.")
        if result.rows:
            print(f"The {result.rows} rows before it hold, the last of them hashing to {result.head}.")
    return 0 if result.ok else 1
