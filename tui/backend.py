"""The TUI's back end: one typed worker method per `AdminOps` call (after harlequin's Textual `@work`
methods), so a reader and a type checker see which operation a screen runs, with which arguments, and
what its `done` callback gets.

`AdminOps` blocks (HTTP to the admin API, or SQLite on the data dir), so each call runs in a thread
worker and hands its answer to `done` on the UI thread. Its error becomes a notification, never a
traceback, or goes to `failed` (a form's, which shows it and keeps what was typed). A server that went
away mid-call makes the app fall back to the data dir and try once more.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any, ParamSpec, TypeAlias, TypeVar

from textual import work
from textual.app import App
from textual.worker import Worker

from appliance.admin.ops import AdminOps, SpecialistProfile
from appliance.core.errors import AlveareError, ServerUnavailable
from appliance.core.protocol import AdapterStatus
from appliance.store import (
    Account,
    AccountOverview,
    AlertEvent,
    AuditPage,
    AuditVerification,
    BillingPlan,
    CreatedKey,
    CustomPrompt,
    KeyInfo,
    UsageBreakdown,
)

T = TypeVar("T")
# What a call's answer goes to, on the UI thread.
Done: TypeAlias = Callable[[T], object]
# Where a write's refusal goes instead of a notification, on the UI thread: the message and the
# parameter it names, if any (a form shows it under its fields and keeps what was typed).
Failed: TypeAlias = Callable[[str, str | None], object]

P = ParamSpec("P")


def backend_call(method: Callable[P, None]) -> Callable[P, Worker[None]]:
    """`@work(thread=True, group="backend", exit_on_error=False)`: a thread worker (AdminOps blocks) whose
    errors are handled inside it (none may end the app). Spelled as a call so that type checkers keep the
    method's parameters: `work(...)` given only options types the result as taking anything."""
    return work(method, thread=True, group="backend", exit_on_error=False)


class BackendApp(App[None]):
    """The app's `AdminOps` back end, with the reconnect and fall-back rules, and its typed calls."""

    def __init__(
        self,
        backend: AdminOps,
        *,
        reopen: Callable[[], AdminOps] | None = None,
        probe: Callable[[], bool] | None = None,
    ) -> None:
        """`reopen` builds a fresh back end (the admin API if a server answers, else the data dir);
        `probe` says cheaply whether a server answers, so an offline app reconnects only then."""
        super().__init__()
        self.backend = backend
        self.reopen = reopen
        self.probe = probe
        self._reopen_lock = threading.Lock()
        # Why the last attempt to reach a server that answers failed, if it did.
        self.connect_error: str | None = None

    # --- the typed calls: each runs one AdminOps method in a thread worker ---------------------
    # plans
    @backend_call
    def plans(self, *, done: Done[list[BillingPlan]]) -> None:
        self._answer(lambda ops: ops.plans(), done)

    @backend_call
    def set_plan(
        self, name: str, *, done: Done[BillingPlan], failed: Failed | None = None, **limits: int | float | bool
    ) -> None:
        self._answer(lambda ops: ops.set_plan(name, **limits), done, failed)

    # accounts
    @backend_call
    def accounts(self, period: str | None, *, done: Done[list[AccountOverview]]) -> None:
        self._answer(lambda ops: ops.accounts(period), done)

    @backend_call
    def create_account(self, name: str, plan: str, *, done: Done[Account], failed: Failed | None = None) -> None:
        self._answer(lambda ops: ops.create_account(name, plan), done, failed)

    @backend_call
    def set_account_plan(self, name: str, plan: str, *, done: Done[Account], failed: Failed | None = None) -> None:
        self._answer(lambda ops: ops.set_account_plan(name, plan), done, failed)

    @backend_call
    def set_spending_cap(
        self, name: str, cap: float | None, *, done: Done[Account], failed: Failed | None = None
    ) -> None:
        self._answer(lambda ops: ops.set_spending_cap(name, cap), done, failed)

    @backend_call
    def set_account_specialists(
        self, name: str, specialists: list[str] | None, *, done: Done[Account], failed: Failed | None = None
    ) -> None:
        self._answer(lambda ops: ops.set_account_specialists(name, specialists), done, failed)

    # keys
    @backend_call
    def keys(self, account: str | None, *, done: Done[list[KeyInfo]]) -> None:
        self._answer(lambda ops: ops.keys(account), done)

    @backend_call
    def create_key(
        self, account: str, *, test: bool = False, done: Done[CreatedKey], failed: Failed | None = None
    ) -> None:
        self._answer(lambda ops: ops.create_key(account, test=test), done, failed)

    @backend_call
    def revoke_key(self, prefix: str, *, done: Done[KeyInfo]) -> None:
        self._answer(lambda ops: ops.revoke_key(prefix), done)

    # usage
    @backend_call
    def usage(self, account: str | None, period: str | None, *, done: Done[UsageBreakdown]) -> None:
        self._answer(lambda ops: ops.usage(account, period), done)

    @backend_call
    def alerts(self, account: str | None, period: str | None, *, done: Done[list[AlertEvent]]) -> None:
        self._answer(lambda ops: ops.alerts(account, period), done)

    # specialists and custom prompts
    @backend_call
    def specialists(self, *, done: Done[list[SpecialistProfile]]) -> None:
        self._answer(lambda ops: ops.specialists(), done)

    @backend_call
    def set_specialist(
        self,
        name: str,
        *,
        system_prompt: str | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
        done: Done[SpecialistProfile],
        failed: Failed | None = None,
    ) -> None:
        self._answer(
            lambda ops: ops.set_specialist(
                name, system_prompt=system_prompt, temperature=temperature, top_p=top_p, max_tokens=max_tokens
            ),
            done,
            failed,
        )

    @backend_call
    def reset_specialist(self, name: str, *, done: Done[SpecialistProfile]) -> None:
        self._answer(lambda ops: ops.reset_specialist(name), done)

    @backend_call
    def adapters(self, *, done: Done[dict[str, AdapterStatus]]) -> None:
        """The LoRA adapters the running server has loaded, by specialist; none known offline (only the
        server knows what its model has loaded)."""

        def loaded(ops: AdminOps) -> dict[str, AdapterStatus]:
            return {a.specialist: a for a in ops.hive_status().adapters} if ops.online else {}

        self._answer(loaded, done)

    @backend_call
    def set_specialist_adapter(
        self, name: str, path: str, scale: float, *, done: Done[AdapterStatus], failed: Failed | None = None
    ) -> None:
        self._answer(lambda ops: ops.set_specialist_adapter(name, path, scale), done, failed)

    @backend_call
    def clear_specialist_adapter(self, name: str, *, done: Done[AdapterStatus | None]) -> None:
        self._answer(lambda ops: ops.clear_specialist_adapter(name), done)

    @backend_call
    def custom_prompts(self, account: str, *, done: Done[list[CustomPrompt]]) -> None:
        self._answer(lambda ops: ops.custom_prompts(account), done)

    @backend_call
    def set_custom_prompt(
        self, account: str, specialist: str, prompt: str, *, done: Done[CustomPrompt], failed: Failed | None = None
    ) -> None:
        self._answer(lambda ops: ops.set_custom_prompt(account, specialist, prompt), done, failed)

    @backend_call
    def reset_custom_prompt(self, account: str, specialist: str, *, done: Done[bool]) -> None:
        self._answer(lambda ops: ops.reset_custom_prompt(account, specialist), done)

    # the audit log
    @backend_call
    def audit(self, limit: int, before: int | None, *, done: Done[AuditPage]) -> None:
        self._answer(lambda ops: ops.audit(limit, before), done)

    @backend_call
    def verify_audit(self, *, done: Done[AuditVerification]) -> None:
        self._answer(lambda ops: ops.verify_audit(), done)

    # --- how a call runs ------------------------------------------------------------------------
    def _answer(self, call: Callable[[AdminOps], T], done: Done[T], failed: Failed | None = None) -> None:
        """(Worker thread.) `call` on the back end; its result to `done` on the UI thread, its error to
        `failed` if given, else to a notification. A lost server: management goes on on the data dir, and
        the call is tried once more."""
        for attempt in (1, 2):
            backend = self.backend
            try:
                result = call(backend)
            except ServerUnavailable as exc:
                if attempt == 1 and backend.online and self.server_lost():
                    continue
                self._refused(failed, exc.message, None, title="Server unavailable", severity="warning")
                return
            except AlveareError as exc:
                self._refused(failed, exc.message, exc.param, title="Not done", severity="error")
                return
            except Exception as exc:
                message = f"{type(exc).__name__}: {exc}"
                self._refused(failed, message, None, title="Unexpected error", severity="error")
                return
            self._from_thread(done, result)
            return

    def _refused(self, failed: Failed | None, message: str, param: str | None, *, title: str, severity: str) -> None:
        if failed is not None:
            self._from_thread(failed, message, param)
        else:
            self._from_thread(self.notify_once, message, title=title, severity=severity)

    def notify_once(self, message: str, *, title: str = "", severity: str = "information") -> None:
        """A notification, unless the same one is already showing (several screens loading at once
        hit the same error)."""
        if any(n.message == message and n.title == title for n in self._notifications):
            return
        self.notify(message, title=title, severity=severity)  # type: ignore[arg-type]

    def _from_thread(self, callback: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the app is shutting down
            self.call_from_thread(callback, *args, **kwargs)

    # --- reaching the server ----------------------------------------------------------------------
    def ensure_online(self) -> AdminOps:
        """(Worker thread.) Offline with a way to reconnect: try to reach the server again."""
        backend = self.backend
        if backend.online or self.reopen is None:
            return backend
        if self.probe is not None and not self.probe():
            return backend
        with self._reopen_lock:
            try:
                fresh = self.reopen()
            except AlveareError as exc:
                # A server answers but will not let us in (a wrong admin key, another data dir).
                self.connect_error = exc.message
                return self.backend
            except Exception as exc:
                self.connect_error = f"{type(exc).__name__}: {exc}"
                return self.backend
            self.connect_error = None
            if fresh.online:
                self._from_thread(self.set_backend, fresh)
                return fresh
            _close(fresh)
        return self.backend

    def server_lost(self) -> bool:
        """(Worker thread.) An online back end lost its server: switch to the data dir if we can."""
        if not self.backend.online or self.reopen is None:
            return False
        with self._reopen_lock:
            if not self.backend.online:
                return True
            try:
                fresh = self.reopen()
            except Exception:
                return False
            if fresh.online:
                _close(fresh)
                return False
            self._from_thread(self.set_backend, fresh)
            return True

    def set_backend(self, backend: AdminOps) -> None:
        old, self.backend = self.backend, backend
        if old is not backend:
            _close(old)
        self._show_connection()
        if backend.online:
            self.notify("Connected to the server: changes apply through its admin API.", title="Online")
        else:
            self.notify("The server is down: managing the data dir directly.", title="Offline", severity="warning")

    def _show_connection(self) -> None:
        if self.backend.online:
            self.sub_title = "server online"
        else:
            self.sub_title = "server down · working on the data dir"


def _close(backend: AdminOps) -> None:
    close = getattr(backend, "close", None)
    if callable(close):
        with contextlib.suppress(Exception):
            close()
