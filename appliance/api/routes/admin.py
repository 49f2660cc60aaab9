"""The admin API (`/v1/admin/...`, admin keys only): what the admin TUI changes on a running server.

Each route decodes its body, then calls the app's `LocalAdmin` (appliance.admin.ops) in a worker
thread, acting as the request's admin key (its prefix is who the audit log names): reads are quick
indexed queries, and writes wait for the store's writer thread to commit, so neither holds up the
event loop. Errors are AlveareErrors, so they reach the client in the one
envelope; `appliance.admin.remote.AdminClient` turns them back into the same exceptions.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post, put
from litestar.background_tasks import BackgroundTask
from litestar.response import File

from appliance.admin.local import LocalAdmin
from appliance.api.auth import admin_only
from appliance.api.errors import decode_body
from appliance.core import protocol as p
from appliance.core.errors import InvalidRequest
from appliance.serving.adapters import SpecialistAdapters
from appliance.store import Principal

T = TypeVar("T")

# The largest adapter file the admin API takes (a 7B model's rank-64 adapter is about 160 MB).
MAX_ADAPTER_BYTES = 1 << 30


def _json(value: object, status: int = 200) -> Response[bytes]:
    return Response(content=p.encode(value), media_type="application/json", status_code=status)


async def _run(request: Request, op: Callable[[LocalAdmin], T]) -> T:
    admin: LocalAdmin = request.app.state.admin
    principal: Principal = request.user
    return await asyncio.to_thread(op, admin.acting_as(principal.key_prefix))


def _query(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    return value or None


def _query_int(request: Request, name: str) -> int | None:
    value = _query(request, name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidRequest(f"{name} must be a whole number, not {value!r}.", param=name) from None


class AdminController(Controller):
    path = "/v1/admin"
    guards = [admin_only]

    # plans ------------------------------------------------------------------
    @get("/plans")
    async def list_plans(self, request: Request) -> Response[bytes]:
        return _json(await _run(request, lambda a: a.plans()))

    @put("/plans/{name:str}", status_code=200)
    async def set_plan(self, request: Request) -> Response[bytes]:
        name = request.path_params["name"]
        body = decode_body(await request.body(), p.AdminPlanUpdate)
        limits: dict[str, Any] = {k: v for k, v in msgspec.structs.asdict(body).items() if v is not None}
        return _json(await _run(request, lambda a: a.set_plan(name, **limits)))

    # accounts ---------------------------------------------------------------
    @get("/accounts")
    async def list_accounts(self, request: Request) -> Response[bytes]:
        period = _query(request, "period")
        return _json(await _run(request, lambda a: a.accounts(period)))

    @post("/accounts", status_code=201)
    async def create_account(self, request: Request) -> Response[bytes]:
        body = decode_body(await request.body(), p.AdminAccountCreate)
        return _json(await _run(request, lambda a: a.create_account(body.name, body.plan)), 201)

    @patch("/accounts/{name:str}", status_code=200)
    async def update_account(self, request: Request) -> Response[bytes]:
        name = request.path_params["name"]
        body = decode_body(await request.body(), p.AdminAccountUpdate)
        if body.plan is None and body.spending_cap is msgspec.UNSET and body.specialists is msgspec.UNSET:
            raise InvalidRequest(
                "Give plan, spending_cap (null clears the cap) and/or specialists (null: the plan's default set)."
            )

        def update(a: LocalAdmin):
            account = a.set_account_plan(name, body.plan) if body.plan is not None else None
            if body.spending_cap is not msgspec.UNSET:
                account = a.set_spending_cap(name, body.spending_cap)
            if body.specialists is not msgspec.UNSET:
                account = a.set_account_specialists(name, body.specialists)
            return account

        return _json(await _run(request, update))

    @get("/accounts/{name:str}/prompts")
    async def list_prompts(self, request: Request) -> Response[bytes]:
        name = request.path_params["name"]
        return _json(await _run(request, lambda a: a.custom_prompts(name)))

    @put("/accounts/{name:str}/prompts/{specialist:str}", status_code=200)
    async def set_prompt(self, request: Request) -> Response[bytes]:
        name = request.path_params["name"]
        specialist = request.path_params["specialist"]
        body = decode_body(await request.body(), p.SystemPromptUpdate)
        return _json(await _run(request, lambda a: a.set_custom_prompt(name, specialist, body.system_prompt)))

    @delete("/accounts/{name:str}/prompts/{specialist:str}", status_code=200)
    async def reset_prompt(self, request: Request) -> Response[bytes]:
        name = request.path_params["name"]
        specialist = request.path_params["specialist"]
        deleted = await _run(request, lambda a: a.reset_custom_prompt(name, specialist))
        return _json(p.AdminDeleted(deleted=deleted))

    # keys -------------------------------------------------------------------
    @get("/keys")
    async def list_keys(self, request: Request) -> Response[bytes]:
        account = _query(request, "account")
        return _json(await _run(request, lambda a: a.keys(account)))

    @post("/keys", status_code=201)
    async def create_key(self, request: Request) -> Response[bytes]:
        body = decode_body(await request.body(), p.AdminKeyCreate)
        return _json(await _run(request, lambda a: a.create_key(body.account, test=body.test, admin=body.admin)), 201)

    @delete("/keys/{prefix:str}", status_code=200)
    async def revoke_key(self, request: Request) -> Response[bytes]:
        prefix = request.path_params["prefix"]
        return _json(await _run(request, lambda a: a.revoke_key(prefix)))

    # usage ------------------------------------------------------------------
    @get("/usage")
    async def usage(self, request: Request) -> Response[bytes]:
        account, period = _query(request, "account"), _query(request, "period")
        # Usage records are written in batches: wait for those already queued, so the answer is current.
        await asyncio.wrap_future(request.app.state.store.flush())
        return _json(await _run(request, lambda a: a.usage(account, period)))

    @get("/alerts")
    async def alerts(self, request: Request) -> Response[bytes]:
        account, period = _query(request, "account"), _query(request, "period")
        return _json(await _run(request, lambda a: a.alerts(account, period)))

    # specialists ------------------------------------------------------------
    @get("/specialists")
    async def list_specialists(self, request: Request) -> Response[bytes]:
        return _json(await _run(request, lambda a: a.specialists()))

    @put("/specialists/{name:str}", status_code=200)
    async def set_specialist(self, request: Request) -> Response[bytes]:
        name = request.path_params["name"]
        body = decode_body(await request.body(), p.AdminSpecialistUpdate)
        return _json(
            await _run(
                request,
                lambda a: a.set_specialist(
                    name,
                    system_prompt=body.system_prompt,
                    temperature=body.temperature,
                    top_p=body.top_p,
                    max_tokens=body.max_tokens,
                ),
            )
        )

    @delete("/specialists/{name:str}", status_code=200)
    async def reset_specialist(self, request: Request) -> Response[bytes]:
        name = request.path_params["name"]
        return _json(await _run(request, lambda a: a.reset_specialist(name)))

    # a specialist's LoRA adapter (serving/adapters.py) -------------------------
    @put("/specialists/{name:str}/adapter", status_code=200, request_max_body_size=MAX_ADAPTER_BYTES)
    async def set_adapter(self, request: Request) -> Response[bytes]:
        """The body is the adapter's GGUF file; `scale` (default 1) what it is applied at."""
        scale = _query(request, "scale")
        try:
            value = float(scale) if scale is not None else 1.0
        except ValueError:
            raise InvalidRequest(f"scale must be a number, not {scale!r}.", param="scale") from None
        adapters: SpecialistAdapters = request.app.state.adapters
        principal: Principal = request.user
        data = await request.body()
        return _json(await adapters.set(request.path_params["name"], data, value, actor=principal.key_prefix))

    @delete("/specialists/{name:str}/adapter", status_code=200)
    async def clear_adapter(self, request: Request) -> Response[bytes]:
        """Back to specialists.toml's adapter (the answer), or to none (null)."""
        adapters: SpecialistAdapters = request.app.state.adapters
        principal: Principal = request.user
        return _json(await adapters.clear(request.path_params["name"], actor=principal.key_prefix))

    # the database -----------------------------------------------------------
    @get("/backup")
    async def backup(self, request: Request) -> File:
        """A consistent copy of the database (SQLite's backup API, checked), streamed as one file.
        The copy is made in the data dir, the one place a hardened server may write, and removed
        once it is sent; the client checks it again and names it on its own machine."""
        path = request.app.state.store.path.with_name(f".backup-{secrets.token_hex(8)}.db")
        try:
            await _run(request, lambda a: a.backup_to_send(str(path)))
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return File(
            path=path,
            filename="alveare.db",
            media_type="application/vnd.sqlite3",
            background=BackgroundTask(path.unlink, missing_ok=True),
        )

    # the audit log ----------------------------------------------------------
    @get("/audit")
    async def audit(self, request: Request) -> Response[bytes]:
        limit, before = _query_int(request, "limit"), _query_int(request, "before")
        return _json(await _run(request, lambda a: a.audit(50 if limit is None else limit, before)))

    @get("/audit/verify")
    async def verify_audit(self, request: Request) -> Response[bytes]:
        return _json(await _run(request, lambda a: a.verify_audit()))


ROUTES = [AdminController]
