"""Admin operations: one interface, two ways to reach it.

`AdminOps` is what the admin TUI and the `alveare admin` commands program against. Two things
implement it with the same method names and return types:

- `LocalAdmin` (this module): works directly on the data dir's store and the specialists
  catalogue. The admin API's routes call it inside the server, and the TUI falls back to it
  when no server is running (then `hive_status` and `try_it` raise `ServerUnavailable`).
- `appliance.client.AdminClient`: the same operations over the server's admin API
  (`/v1/admin/...`, admin key), so the running server sees every change at once.

Errors are `appliance.errors.AlveareError` subclasses either way (the client turns the
API's error envelope back into them), so a caller shows `str(exc)` and never a traceback.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, Protocol

import msgspec

from appliance.errors import InvalidRequest, NotFound, PermissionDenied, ServerUnavailable
from appliance.protocol import MAX_SYSTEM_PROMPT, MAX_TOKENS_LIMIT, HiveStatus
from appliance.specialists import Specialist, Specialists, with_overrides
from appliance.store import (
    ADMIN_ACCOUNT,
    Account,
    AccountOverview,
    AlertEvent,
    BackupInfo,
    CreatedKey,
    CustomPrompt,
    KeyInfo,
    Plan,
    SpecialistOverride,
    Store,
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
    def plans(self) -> list[Plan]: ...
    def set_plan(self, name: str, **limits: int | float | bool) -> Plan:
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
        when `path` is a folder. Never overwrites a file."""
        ...

    # live server only (LocalAdmin raises ServerUnavailable)
    def hive_status(self) -> HiveStatus: ...
    def try_it(self, specialist: str, prompt: str, *, max_tokens: int | None = None) -> Iterator[TryItEvent]:
        """Send one chat request to the specialist through the running server, streamed."""
        ...


# ---------------------------------------------------------------- validation
_PLAN_INTS = ("requests_per_minute", "requests_per_month", "tokens_per_minute", "specialists_allowed")
_PLAN_PRICES = ("overage_per_1k_requests", "monthly_price")


def check_prompt(prompt: str, field: str = "system_prompt") -> str:
    """A system prompt as stored: stripped, 1 to 8,000 characters."""
    if not isinstance(prompt, str):
        raise InvalidRequest(f"{field} must be text.", param=field)
    prompt = prompt.strip()
    if not prompt:
        raise InvalidRequest(f"{field} must not be empty.", param=field)
    if len(prompt) > MAX_SYSTEM_PROMPT:
        raise InvalidRequest(
            f"{field} is {len(prompt)} characters; the most allowed is {MAX_SYSTEM_PROMPT:,}.", param=field
        )
    return prompt


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_plan_limits(limits: dict[str, Any]) -> dict[str, Any]:
    """Plan fields with the right types (the store checks ranges); unknown fields are refused."""
    fields = {*_PLAN_INTS, *_PLAN_PRICES, "custom_prompts"}
    unknown = sorted(set(limits) - fields)
    if unknown:
        raise InvalidRequest(
            f"Unknown plan field {unknown[0]!r}; plan fields are: {', '.join(sorted(fields))}.", param=unknown[0]
        )
    out = {k: v for k, v in limits.items() if v is not None}
    for field, value in out.items():
        if field in _PLAN_INTS and (not isinstance(value, int) or isinstance(value, bool)):
            raise InvalidRequest(f"{field} must be a whole number.", param=field)
        if field in _PLAN_PRICES and not _number(value):
            raise InvalidRequest(f"{field} must be a number.", param=field)
        if field == "custom_prompts" and not isinstance(value, bool):
            raise InvalidRequest("custom_prompts must be true or false.", param=field)
    if "specialists_allowed" in out and out["specialists_allowed"] > 1000:
        raise InvalidRequest("specialists_allowed must be at most 1000.", param="specialists_allowed")
    return out


def check_parameters(
    temperature: float | None, top_p: float | None, max_tokens: int | None
) -> tuple[float | None, float | None, int | None]:
    """A specialist's sampling defaults, in the same ranges as specialists.toml and the API."""
    if temperature is not None and not (_number(temperature) and 0 <= temperature <= 2):
        raise InvalidRequest("temperature must be a number from 0 to 2.", param="temperature")
    if top_p is not None and not (_number(top_p) and 0 < top_p <= 1):
        raise InvalidRequest("top_p must be a number above 0 and at most 1.", param="top_p")
    if max_tokens is not None and (
        not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or not 1 <= max_tokens <= MAX_TOKENS_LIMIT
    ):
        raise InvalidRequest(f"max_tokens must be a whole number from 1 to {MAX_TOKENS_LIMIT}.", param="max_tokens")
    return (
        None if temperature is None else float(temperature),
        None if top_p is None else float(top_p),
        max_tokens,
    )


def apply_override(specialist: Specialist, override: SpecialistOverride | None) -> Specialist:
    """The specialist as served: the file's profile with the database's override on top."""
    if override is None:
        return specialist
    return with_overrides(
        specialist,
        system_prompt=override.system_prompt,
        temperature=override.temperature,
        top_p=override.top_p,
        max_tokens=override.max_tokens,
    )


def profile(specialist: Specialist, override: SpecialistOverride | None) -> SpecialistProfile:
    served = apply_override(specialist, override)
    return SpecialistProfile(
        name=served.name,
        model_id=served.model_id,
        description=served.description,
        system_prompt=served.system_prompt,
        temperature=served.temperature,
        top_p=served.top_p,
        max_tokens=served.max_tokens,
        stop=list(served.stop),
        examples=len(served.examples),
        prompt_lookup=served.prompt_lookup,
        overridden=override is not None,
        default_system_prompt=specialist.system_prompt,
        default_temperature=specialist.temperature,
        default_top_p=specialist.top_p,
        default_max_tokens=specialist.max_tokens,
    )


# ---------------------------------------------------------------- local
class LocalAdmin:
    """AdminOps directly on the data dir's store and the specialists catalogue.

    The admin API's routes call it inside the server; the TUI uses it when no server runs.
    Every write goes through the store's one writer thread and is committed when it returns.
    """

    def __init__(self, store: Store, specialists: Specialists, *, url: str = DEFAULT_URL) -> None:
        self.store = store
        self.catalogue = specialists
        # Where a server would be: named in the ServerUnavailable messages.
        self.url = url

    @property
    def online(self) -> bool:
        return False

    def close(self) -> None:
        self.store.close()

    # plans
    def plans(self) -> list[Plan]:
        return self.store.plans()

    def set_plan(self, name: str, **limits: int | float | bool) -> Plan:
        plan, _created = self.store.set_plan(name, **check_plan_limits(limits))
        return plan

    # accounts
    def accounts(self, period: str | None = None) -> list[AccountOverview]:
        return self.store.account_overviews(period)

    def create_account(self, name: str, plan: str = "starter") -> Account:
        return self.store.create_account(name, plan)

    def set_account_plan(self, name: str, plan: str) -> Account:
        return self.store.set_account_plan(name, plan)

    def set_spending_cap(self, name: str, cap: float | None) -> Account:
        if cap is not None and not _number(cap):
            raise InvalidRequest("spending_cap must be an amount of 0 or more, or null for none.", param="spending_cap")
        try:
            return self.store.set_spending_cap(name, cap)
        except InvalidRequest as exc:
            raise InvalidRequest(
                "spending_cap must be an amount of 0 or more, or null for none.", param="spending_cap"
            ) from exc

    def set_account_specialists(self, name: str, specialists: list[str] | None) -> Account:
        if specialists is None:
            return self.store.set_specialists(name, None)
        if not isinstance(specialists, list) or not all(isinstance(n, str) for n in specialists):
            raise InvalidRequest("specialists must be a list of specialist names, or null.", param="specialists")
        self.store.account(name)  # an unknown account is named before a bad specialist
        chosen: list[str] = []
        for raw in specialists:
            if raw.strip():
                resolved = self.catalogue.resolve(raw.strip(), param="specialists").name
                if resolved not in chosen:
                    chosen.append(resolved)
        if not chosen:
            raise InvalidRequest(
                "Name at least one specialist, or null for the plan's default set.", param="specialists"
            )
        return self.store.set_specialists(name, chosen)

    # keys
    def keys(self, account: str | None = None) -> list[KeyInfo]:
        return self.store.keys(account)

    def create_key(self, account: str, *, test: bool = False, admin: bool = False) -> CreatedKey:
        if admin:
            if test:
                raise InvalidRequest("An admin key is a live key; leave out test.", param="test")
            if account != ADMIN_ACCOUNT:
                raise InvalidRequest(f"Admin keys belong to the {ADMIN_ACCOUNT} account.", param="account")
            try:
                self.store.account(ADMIN_ACCOUNT)
            except NotFound:
                self.store.create_account(ADMIN_ACCOUNT, "scale")
        return self.store.create_key(account, test=test, admin=admin)

    def revoke_key(self, prefix: str) -> KeyInfo:
        return self.store.revoke_key(prefix)

    # usage
    def usage(self, account: str | None = None, period: str | None = None) -> UsageBreakdown:
        return self.store.usage_breakdown(account, period)

    def alerts(self, account: str | None = None, period: str | None = None) -> list[AlertEvent]:
        return self.store.alerts(account, period)

    # specialists and custom prompts
    def _specialist(self, name: str) -> Specialist:
        try:
            return self.catalogue.resolve(name, param="specialist")
        except NotFound:
            raise NotFound(
                f"No specialist named {name!r}. Specialists: {', '.join(s.name for s in self.catalogue)}.",
                param="specialist",
                code="specialist_not_found",
            ) from None

    def specialists(self) -> list[SpecialistProfile]:
        overrides = self.store.specialist_overrides()
        return [profile(s, overrides.get(s.name)) for s in self.catalogue]

    def specialist(self, name: str) -> SpecialistProfile:
        s = self._specialist(name)
        return profile(s, self.store.specialist_override(s.name))

    def set_specialist(
        self,
        name: str,
        *,
        system_prompt: str | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
    ) -> SpecialistProfile:
        s = self._specialist(name)
        if system_prompt is None and temperature is None and top_p is None and max_tokens is None:
            raise InvalidRequest("Give at least one of system_prompt, temperature, top_p or max_tokens.")
        prompt = None if system_prompt is None else check_prompt(system_prompt)
        temperature, top_p, max_tokens = check_parameters(temperature, top_p, max_tokens)
        override = self.store.set_specialist_override(
            s.name, system_prompt=prompt, temperature=temperature, top_p=top_p, max_tokens=max_tokens
        )
        return profile(s, override)

    def reset_specialist(self, name: str) -> SpecialistProfile:
        s = self._specialist(name)
        self.store.delete_specialist_override(s.name)
        return profile(s, None)

    def custom_prompts(self, account: str) -> list[CustomPrompt]:
        acct = self.store.account(account)
        return sorted(self.store.custom_prompts(acct.id).values(), key=lambda c: c.specialist)

    def set_custom_prompt(self, account: str, specialist: str, prompt: str) -> CustomPrompt:
        acct = self.store.account(account)
        s = self._specialist(specialist)
        plan = self.store.plan(acct.plan)
        if not plan.custom_prompts:
            raise PermissionDenied(
                f"Account {acct.name!r} is on the {plan.name} plan, which has no custom system prompts; "
                "move it to a plan with them (professional, scale) first.",
                code="custom_prompts_not_in_plan",
            )
        self.store.set_custom_prompt(acct.id, s.name, check_prompt(prompt)).result()
        return self.store.custom_prompts(acct.id)[s.name]

    def reset_custom_prompt(self, account: str, specialist: str) -> bool:
        acct = self.store.account(account)
        s = self._specialist(specialist)
        return self.store.delete_custom_prompt(acct.id, s.name).result()

    # the database
    def backup(self, path: str) -> BackupInfo:
        return self.store.backup(path)

    # live server only
    def _offline(self, what: str) -> ServerUnavailable:
        return ServerUnavailable(
            f"No Alveare server is running at {self.url}, so {what} is not available; start it with `alveare serve`."
        )

    def hive_status(self) -> HiveStatus:
        raise self._offline("the hive status")

    def try_it(self, specialist: str, prompt: str, *, max_tokens: int | None = None) -> Iterator[TryItEvent]:
        raise self._offline("try-it")
