"""The `alveare` command: argument parsing and dispatch only."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec

from appliance import __version__
from appliance.errors import AlveareError, ConfigError
from appliance.preflight import bind, check_model
from appliance.settings import Settings, load_settings

# What the [server] and [tui] extras bring; a command that needs one names the extra, not a traceback.
SERVER_AND_TUI_MODULES = frozenset({"litestar", "uvicorn", "llama_cpp", "textual", "sqlite_utils", "numpy", "jinja2"})


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from appliance.api import create_app
    from appliance.hive.engine import HiveEngine, embedded_model_path
    from appliance.hive.types import EngineConfig
    from appliance.specialists import load_specialists
    from appliance.store import Store

    specialists = load_specialists(settings.specialists_path and _path(settings.specialists_path))
    try:
        model_path = settings.model_path or embedded_model_path()
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from None
    # Everything that can be checked before listening is: a bad model file or a busy port is one
    # line and a non-zero exit, not a server that answers 503 forever or a traceback.
    check_model(model_path)
    sock = bind(settings.host, settings.port)
    first_run = not settings.data_path.exists()
    store = Store(settings.data_path)
    admin = store.ensure_admin()
    engine = HiveEngine(
        EngineConfig(
            model_path=model_path,
            n_ctx=settings.n_ctx,
            slots=settings.slots,
            threads=settings.threads,
            gpu=settings.gpu == "auto",
            flash_attn=settings.flash_attn,
            cpu_kernels=settings.cpu_kernels,
            kernel_cache_path=str(settings.kernel_cache_path),
            queue_size=settings.queue_size,
            cache_bytes=settings.prefix_cache_mb * 1024 * 1024,
            verbose=args.verbose,
        )
    )
    load_failure: list[str] = []

    def load_failed(reason: str) -> None:
        # The file passed the checks but llama.cpp could not load it (a damaged GGUF, too little memory).
        load_failure.append(reason)
        server.should_exit = True

    app = create_app(settings, engine=engine, store=store, specialists=specialists, on_load_failure=load_failed)
    if first_run:
        print(f"Created the data dir {settings.data_path}")
    if admin is not None:
        print("Admin API key (shown once; store it safely):")
        print(f"  {admin.key}")
    print(f"Alveare {__version__} serving {len(specialists)} specialists on {model_path}")
    print(
        f"Listening on http://{settings.host}:{settings.port}  (OpenAI base URL: http://{settings.host}:{settings.port}/v1)"
    )
    sys.stdout.flush()
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    store.close()
    if load_failure:
        print(f"alveare: error: could not load the model {model_path}: {load_failure[0]}", file=sys.stderr)
        return 1
    return 0 if server.started else 1


def _path(text: str) -> Path:
    return Path(text).expanduser()


def _store(settings: Settings):
    """The data dir's store for the admin commands: it must exist (only `serve` creates one)."""
    from appliance.store import Store

    return Store(settings.data_path, create=False)


def _print_json(value: object) -> None:
    print(msgspec.json.encode(value).decode())


def _accounts_create(settings: Settings, args: argparse.Namespace) -> int:
    account = _store(settings).create_account(args.name, args.plan)
    if args.json:
        _print_json(account)
    else:
        print(f"Created account {account.name} on the {account.plan} plan.")
    return 0


def _accounts_list(settings: Settings, args: argparse.Namespace) -> int:
    accounts = _store(settings).accounts()
    if args.json:
        _print_json(accounts)
        return 0
    print(f"{'NAME':<24} {'PLAN':<14} {'SPENDING CAP':>12}  CREATED")
    for a in accounts:
        cap = f"{a.spending_cap:.2f}" if a.spending_cap is not None else "-"
        print(f"{a.name:<24} {a.plan:<14} {cap:>12}  {a.created_at[:19]}")
    return 0


def _keys_create(settings: Settings, args: argparse.Namespace) -> int:
    from appliance.errors import InvalidRequest, NotFound
    from appliance.store import ADMIN_ACCOUNT

    store = _store(settings)
    if args.admin:
        if args.test:
            raise InvalidRequest("An admin key is a live key; leave out --test.")
        if args.account not in (None, ADMIN_ACCOUNT):
            raise InvalidRequest(f"Admin keys belong to the {ADMIN_ACCOUNT} account; leave out --account.")
        try:
            store.account(ADMIN_ACCOUNT)
        except NotFound:
            store.create_account(ADMIN_ACCOUNT, "scale")
        created = store.create_key(ADMIN_ACCOUNT, admin=True)
    elif args.account:
        created = store.create_key(args.account, test=args.test)
    else:
        raise InvalidRequest("Name the key's account with --account NAME (or ask for an admin key with --admin).")
    if args.json:
        _print_json({"key": created.key, "prefix": created.prefix})
    else:
        kind = "admin" if args.admin else "test" if created.test else "live"
        print(f"Created a {kind} key for {created.account}. It is shown once; store it safely:")
        print(f"  {created.key}")
    return 0


def _keys_list(settings: Settings, args: argparse.Namespace) -> int:
    keys = _store(settings).keys(args.account)
    if args.json:
        _print_json(keys)
        return 0
    # KIND: live or test (alv_test_ sandbox), or admin: a live key that may also use the admin API.
    print(f"{'PREFIX':<18} {'ACCOUNT':<20} {'KIND':<5} {'STATE':<8} {'CREATED':<20} LAST USED")
    for k in keys:
        state = "revoked" if k.revoked_at else "active"
        kind = "admin" if k.admin else "test" if k.test else "live"
        last = (k.last_used_at or "-")[:19]
        print(f"{k.prefix:<18} {k.account:<20} {kind:<5} {state:<8} {k.created_at[:19]:<20} {last}")
    return 0


def _keys_revoke(settings: Settings, args: argparse.Namespace) -> int:
    key = _store(settings).revoke_key(args.prefix)
    print(f"Revoked key {key.prefix} of {key.account}.")
    return 0


def _plans_list(settings: Settings, args: argparse.Namespace) -> int:
    plans = _store(settings).plans()
    if args.json:
        _print_json(plans)
        return 0
    print(
        f"{'PLAN':<14} {'REQ/MIN':>8} {'REQ/MONTH':>10} {'TOK/MIN':>10} {'SPECIALISTS':>11} {'CUSTOM':>6} "
        f"{'OVERAGE/1K':>10} {'PRICE':>8}"
    )
    for p in plans:
        print(
            f"{p.name:<14} {p.requests_per_minute:>8} {p.requests_per_month:>10} {p.tokens_per_minute:>10} "
            f"{p.specialists_allowed:>11} {'yes' if p.custom_prompts else 'no':>6} "
            f"{p.overage_per_1k_requests:>10.2f} {p.monthly_price:>8.2f}"
        )
    return 0


def _plans_set(settings: Settings, args: argparse.Namespace) -> int:
    custom = None if args.custom_prompts is None else args.custom_prompts == "yes"
    plan, created = _store(settings).set_plan(
        args.name,
        base=args.base,
        requests_per_minute=args.rpm,
        requests_per_month=args.monthly,
        tokens_per_minute=args.tpm,
        specialists_allowed=args.specialists,
        custom_prompts=custom,
        overage_per_1k_requests=args.overage,
        monthly_price=args.price,
    )
    if args.json:
        _print_json(plan)
    else:
        print(
            f"{'Created' if created else 'Updated'} plan {plan.name}: {plan.requests_per_minute} requests/min, "
            f"{plan.requests_per_month} requests/month, {plan.tokens_per_minute} tokens/min, "
            f"{plan.specialists_allowed} specialists, custom prompts {'yes' if plan.custom_prompts else 'no'}, "
            f"overage {plan.overage_per_1k_requests:g} per 1,000 requests."
        )
    return 0


def _accounts_set_plan(settings: Settings, args: argparse.Namespace) -> int:
    account = _store(settings).set_account_plan(args.name, args.plan)
    print(f"Account {account.name} is now on the {account.plan} plan.")
    return 0


def _cap(text: str) -> float | None:
    if text.lower() in ("none", "off", "-"):
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a cap is an amount like 50 or 12.5, or 'none'; not {text!r}") from None


def _accounts_set_cap(settings: Settings, args: argparse.Namespace) -> int:
    account = _store(settings).set_spending_cap(args.name, args.cap)
    cap = "no spending cap" if account.spending_cap is None else f"a spending cap of {account.spending_cap:g}"
    print(f"Account {account.name} now has {cap} per period.")
    return 0


def _accounts_set_specialists(settings: Settings, args: argparse.Namespace) -> int:
    from appliance.errors import InvalidRequest
    from appliance.specialists import load_specialists

    if args.names.strip().lower() == "default":
        names = None
    else:
        catalogue = load_specialists(settings.specialists_path and _path(settings.specialists_path))
        names = []
        for raw in args.names.split(","):
            if raw.strip():
                name = catalogue.resolve(raw.strip(), param="specialists").name
                if name not in names:
                    names.append(name)
        if not names:
            raise InvalidRequest("Name at least one specialist, or 'default'.")
    account = _store(settings).set_specialists(args.name, names)
    chosen = ", ".join(account.specialists) if account.specialists else "the plan's default set"
    print(f"Account {account.name} may use: {chosen}.")
    return 0


def _usage(settings: Settings, args: argparse.Namespace) -> int:
    store = _store(settings)
    names = [args.account] if args.account else [a.name for a in store.accounts()]
    summaries = [store.usage_summary(n, args.period) for n in names]
    alerts = store.alerts(args.account, summaries[0].period if summaries else args.period)
    if args.json:
        _print_json({"usage": summaries, "alerts": alerts})
        return 0
    print(
        f"{'ACCOUNT':<20} {'PLAN':<13} {'PERIOD':<8} {'REQUESTS':>9} {'LIMIT':>9} {'OVERAGE':>8} {'SPENDING':>9} "
        f"{'CAP':>8} {'TOKENS':>10} {'TEST':>6} {'FAILED':>6}"
    )
    for u in summaries:
        cap = f"{u.spending_cap:.2f}" if u.spending_cap is not None else "-"
        print(
            f"{u.account:<20} {u.plan:<13} {u.period:<8} {u.requests_used:>9} {u.requests_limit:>9} "
            f"{u.overage_requests:>8} {u.spending:>9.2f} {cap:>8} {u.tokens_used:>10} {u.test_requests:>6} "
            f"{u.failed_requests:>6}"
        )
    if args.account and summaries and summaries[0].by_specialist:
        print("by specialist: " + ", ".join(f"{k} {v}" for k, v in summaries[0].by_specialist.items()))
    for a in alerts:
        print(
            f"alert: {a.account} reached {a.threshold}% ({a.requests_used} of {a.requests_limit} requests) "
            f"at {a.created_at[:19]}"
        )
    return 0


def _tui(settings: Settings, args: argparse.Namespace) -> int:
    import os

    from textual.logging import TextualHandler

    from appliance.client import open_admin, server_answers
    from tui.app import AlveareApp

    # Log lines written to the terminal would tear the screen; Textual's handler keeps them in its log.
    logging.basicConfig(level=logging.WARNING, handlers=[TextualHandler()], force=True)
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    url = args.url or f"http://{host}:{settings.port}"
    admin_key = args.admin_key or os.environ.get("ALVEARE_ADMIN_KEY") or None
    data_dir = settings.data_path

    def reopen():
        return open_admin(data_dir, url, admin_key, specialists_path=settings.specialists_path)

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
    app = AlveareApp(backend, reopen=reopen, probe=lambda: server_answers(url))
    try:
        app.run()
    finally:
        close = getattr(app.backend, "close", None)
        if close is not None:
            close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alveare", description="On-prem LLM inference appliance.")
    parser.add_argument("--version", action="version", version=f"alveare {__version__}")
    parser.add_argument("--data-dir", help="data directory (env ALVEARE_DATA_DIR; default ~/.local/share/alveare)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the API server on the model")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8080)")
    serve.add_argument("--data-dir", dest="data_dir_sub", help=argparse.SUPPRESS)
    serve.add_argument("--model", help="GGUF model file (env ALVEARE_MODEL; default: the embedded SmolLM2-135M)")
    serve.add_argument("--specialists", help="specialists.toml to use instead of the built-in one")
    serve.add_argument("--slots", type=int, help="requests decoded together (default 8)")
    serve.add_argument("--ctx", type=int, help="KV-cache tokens shared by all slots (default 8192)")
    serve.add_argument("--threads", type=int, help="CPU threads (default: all available cores)")
    serve.add_argument("--gpu", choices=["auto", "off"], help="offload all layers when a GPU build is present")
    serve.add_argument(
        "--flash-attn", choices=["auto", "on", "off"], help="flash attention (default auto: llama.cpp decides)"
    )
    serve.add_argument(
        "--cpu-kernels",
        choices=["auto", "fast", "safe"],
        help="llama.cpp's fast CPU kernels (repacking, AMX): auto checks them once in a child process",
    )
    serve.add_argument("--timeout", type=float, help="server-side generation timeout in seconds (default 30)")
    serve.add_argument("--queue", type=int, help="requests that may wait for a slot (default 64)")
    serve.add_argument(
        "--prefix-cache-mb", type=int, help="host memory for saved shared prompt prefixes (default 128; 0: off)"
    )
    serve.add_argument("--webhook-url", help="POST usage alerts here as JSON (env ALVEARE_WEBHOOK_URL)")
    serve.add_argument("--cors-origins", help="browser origins allowed to call the API, comma-separated, or '*'")
    serve.add_argument("--verbose", action="store_true", help="show llama.cpp's own log lines")
    serve.set_defaults(func=_serve)

    tui = sub.add_parser("tui", help="the admin TUI: live status, accounts, plans, keys, specialists, prompts, usage")
    tui.add_argument("--url", help="the server to manage (default http://127.0.0.1:PORT, from the settings)")
    tui.add_argument(
        "--admin-key", help="an admin API key (env ALVEARE_ADMIN_KEY; default: the TUI's own key in the data dir)"
    )
    tui.set_defaults(func=_tui)

    admin = sub.add_parser("admin", help="manage accounts, keys and plans on the data dir").add_subparsers(
        dest="admin_command", required=True, metavar="AREA"
    )
    accounts = admin.add_parser("accounts", help="accounts").add_subparsers(dest="action", required=True)
    p = accounts.add_parser("create", help="create an account")
    p.add_argument("name")
    p.add_argument("--plan", default="starter", help="solo, starter, professional or scale (default starter)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_accounts_create)
    p = accounts.add_parser("list", help="list accounts")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_accounts_list)
    p = accounts.add_parser("set-plan", help="move an account to another plan")
    p.add_argument("name")
    p.add_argument("plan")
    p.set_defaults(func=_accounts_set_plan)
    p = accounts.add_parser("set-cap", help="set a hard monthly spending cap on overage, or 'none'")
    p.add_argument("name")
    p.add_argument("cap", type=_cap)
    p.set_defaults(func=_accounts_set_cap)
    p = accounts.add_parser("set-specialists", help="choose the specialists an account may use, or 'default'")
    p.add_argument("name")
    p.add_argument("names", help="comma-separated specialists, e.g. classify,summarise; or 'default'")
    p.set_defaults(func=_accounts_set_specialists)

    keys = admin.add_parser("keys", help="API keys").add_subparsers(dest="action", required=True)
    p = keys.add_parser("create", help="create a key (printed once)")
    p.add_argument("--account", help="the account the key belongs to")
    p.add_argument("--test", action="store_true", help="a sandbox alv_test_ key")
    p.add_argument(
        "--admin",
        action="store_true",
        help="an admin key (admin API, hive status, every specialist), on the admin account",
    )
    p.add_argument("--json", action="store_true", help='print {"key": ..., "prefix": ...}')
    p.set_defaults(func=_keys_create)
    p = keys.add_parser("list", help="list keys (prefixes only)")
    p.add_argument("--account")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_keys_list)
    p = keys.add_parser("revoke", help="revoke the key with this prefix")
    p.add_argument("prefix")
    p.set_defaults(func=_keys_revoke)

    plans = admin.add_parser("plans", help="plans").add_subparsers(dest="action", required=True)
    p = plans.add_parser("list", help="list plans and their limits")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_plans_list)
    p = plans.add_parser("set", help="change a plan's limits, or create a new plan")
    p.add_argument("name")
    p.add_argument("--rpm", type=int, help="requests per minute per key")
    p.add_argument("--monthly", type=int, help="requests per month per account")
    p.add_argument("--tpm", type=int, help="tokens per minute per key")
    p.add_argument("--specialists", type=int, help="specialists an account may enable")
    p.add_argument("--custom-prompts", choices=["yes", "no"], help="whether accounts may set their own system prompts")
    p.add_argument("--overage", type=float, help="price per 1,000 requests beyond the monthly requests")
    p.add_argument("--price", type=float, help="monthly price")
    p.add_argument("--base", default="starter", help="a new plan starts from this plan's values (default starter)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_plans_set)

    p = admin.add_parser("usage", help="requests, tokens, overage and alerts for the period")
    p.add_argument("--account", help="one account (default: all)")
    p.add_argument("--period", help="a month like 2026-03 (default: the current one, UTC)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_usage)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    overrides = {
        "data_dir": getattr(args, "data_dir_sub", None) or args.data_dir,
        "host": getattr(args, "host", None),
        "port": getattr(args, "port", None),
        "model_path": getattr(args, "model", None),
        "specialists_path": getattr(args, "specialists", None),
        "slots": getattr(args, "slots", None),
        "n_ctx": getattr(args, "ctx", None),
        "threads": getattr(args, "threads", None),
        "gpu": getattr(args, "gpu", None),
        "flash_attn": getattr(args, "flash_attn", None),
        "cpu_kernels": getattr(args, "cpu_kernels", None),
        "request_timeout_s": getattr(args, "timeout", None),
        "queue_size": getattr(args, "queue", None),
        "prefix_cache_mb": getattr(args, "prefix_cache_mb", None),
        "webhook_url": getattr(args, "webhook_url", None),
        "cors_origins": getattr(args, "cors_origins", None),
    }
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    func: Callable[[Settings, argparse.Namespace], int] = args.func
    try:
        settings = load_settings(overrides)
        return func(settings, args)
    except ConfigError as exc:
        print(f"alveare: error: {exc}", file=sys.stderr)
        return 2
    except AlveareError as exc:
        print(f"alveare: error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except ModuleNotFoundError as exc:
        # `pip install alveare` is the SDK and user CLI only; the server and TUI are extras.
        root = (exc.name or "").split(".")[0]
        if root not in SERVER_AND_TUI_MODULES:
            raise
        print(f"alveare: error: this command needs pip install 'alveare[all]' ({root} is missing)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
