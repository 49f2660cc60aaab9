"""Admin operations: one interface, two ways to reach it.

`AdminOps` is what the admin TUI and the `alveare admin` commands program against. Two things
implement it with the same method names and return types:

- `LocalAdmin` (this module): works directly on the data dir's store and the specialists
  catalogue. The admin API's routes call it inside the server, and the TUI falls back to it
  when no server is running (then `hive_status` and `try_it` raise `ServerUnavailable`).
- `appliance.admin.remote.AdminClient`: the same operations over the server's admin API
  (`/v1/admin/...`, admin key), so the running server sees every change at once.

Errors are `appliance.core.errors.AlveareError` subclasses either way (the client turns the
API's error envelope back into them), so a caller shows `str(exc)` and never a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import msgspec

from appliance.core.protocol import AdapterStatus, HiveStatus
from appliance.store import (
    Account,
    AccountOverview,
    AlertEvent,
    AuditPage,
    AuditVerification,
    BackupInfo,
    BillingPlan,
    CreatedKey,
    CustomPrompt,
    KeyInfo,
    UsageBreakdown,
)

DEFAULT_URL = "http://127.0.0.1:8080"


class SpecialistProfile(msgspec.Struct, frozen=True):
    """A specialist as served now: the catalogue's profile with any admin override applied."""

    name: str
    model_id: str
    description: str
    system_prompt: str
    temperature: float
    top_p: float
    max_tokens: int
    stop: list[str]
    examples: int
    prompt_lookup: bool
    # True when the database holds an override of the prompt or parameters; `defaults` is
    # then the file's profile, so the TUI can show what "reset" goes back to.
    overridden: bool
    default_system_prompt: str
    default_temperature: float
    default_top_p: float
    default_max_tokens: int


class TryItEvent(msgspec.Struct, frozen=True):
    """One event of a try-it call: a piece of text, then one final event with the counts."""

    text: str = ""
    done: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: int = 0
    time_to_first_token_ms: int = 0
    finish_reason: str | None = None


class AdminOps(Protocol):
    """Everything the admin TUI does. Writes return the changed row."""

    @property
    def online(self) -> bool:
        """True when this talks to a running server (hive status and try-it work)."""
        ...

    # plans
    def plans(self) -> list[BillingPlan]: ...
    def set_plan(self, name: str, **limits: int | float | bool) -> BillingPlan:
        """Change a plan's limits (fields of Plan), or create it from `starter` if new."""
        ...

    # accounts
    def accounts(self, period: str | None = None) -> list[AccountOverview]: ...
    def create_account(self, name: str, plan: str = "starter") -> Account: ...
    def set_account_plan(self, name: str, plan: str) -> Account: ...
    def set_spending_cap(self, name: str, cap: float | None) -> Account: ...
    def set_account_specialists(self, name: str, specialists: list[str] | None) -> Account:
        """Choose the specialists an account may use (any name the catalogue resolves, at most the
        plan's number), or None for the plan's default set."""
        ...

    # keys
    def keys(self, account: str | None = None) -> list[KeyInfo]: ...
    def create_key(self, account: str, *, test: bool = False, admin: bool = False) -> CreatedKey:
        """A new key, shown this once. admin=True: an admin key, on the admin account (a live key)."""
        ...

    def revoke_key(self, prefix: str) -> KeyInfo: ...

    # usage
    def usage(self, account: str | None = None, period: str | None = None) -> UsageBreakdown: ...
    def alerts(self, account: str | None = None, period: str | None = None) -> list[AlertEvent]: ...

    # specialists and custom prompts
    def specialists(self) -> list[SpecialistProfile]: ...
    def set_specialist(
        self,
        name: str,
        *,
        system_prompt: str | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
    ) -> SpecialistProfile:
        """Override the default prompt and/or parameters (None leaves a field as it is)."""
        ...

    def reset_specialist(self, name: str) -> SpecialistProfile:
        """Drop the override: back to specialists.toml."""
        ...

    def custom_prompts(self, account: str) -> list[CustomPrompt]: ...
    def set_custom_prompt(self, account: str, specialist: str, prompt: str) -> CustomPrompt: ...
    def reset_custom_prompt(self, account: str, specialist: str) -> bool: ...

    # the database
    def backup(self, path: str) -> BackupInfo:
        """A consistent copy of the database, taken while the server runs, checked (PRAGMA
        integrity_check) and written to `path` on this machine: a new file, or a time-stamped one
        when `path` is a folder (one ending in / is made, owner-only, if missing). Never overwrites a file."""
        ...

    # the audit log
    def audit(self, limit: int = 50, before: int | None = None) -> AuditPage:
        """The audit log's newest `limit` rows (1 to 500), newest first; `before`: rows older than that id."""
        ...

    def verify_audit(self) -> AuditVerification:
        """Walk the audit log's hash chain; names the first row that breaks it."""
        ...

    # live server only (LocalAdmin raises ServerUnavailable)
    def hive_status(self) -> HiveStatus: ...
    def set_specialist_adapter(self, name: str, path: str, scale: float = 1.0) -> AdapterStatus:
        """Send a GGUF LoRA adapter (a file on this machine) for a specialist: the server loads it on
        its model (refused if it cannot serve it), keeps it in its data dir, and the specialist's
        requests decode under it from then on, over specialists.toml's."""
        ...

    def clear_specialist_adapter(self, name: str) -> AdapterStatus | None:
        """Drop the adapter set at run time: back to specialists.toml's (returned), or to none."""
        ...

    def try_it(self, specialist: str, prompt: str, *, max_tokens: int | None = None) -> Iterator[TryItEvent]:
        """Send one chat request to the specialist through the running server, streamed."""
        ...
