"""LocalAdmin: AdminOps directly on the data dir's store and the specialists catalogue."""

from __future__ import annotations

import copy
from collections.abc import Iterator

from appliance.admin.checks import check_parameters, check_plan_limits, check_prompt, finite_number, profile
from appliance.admin.ops import DEFAULT_URL, SpecialistProfile, TryItEvent
from appliance.core.errors import InvalidRequest, NotFound, PermissionDenied, ServerUnavailable
from appliance.core.protocol import AdapterStatus, HiveStatus
from appliance.core.specialists import Specialist, Specialists
from appliance.store import (
    ADMIN_ACCOUNT,
    LOCAL_ACTOR,
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
    Store,
    UsageBreakdown,
)


class LocalAdmin:
    """AdminOps directly on the data dir's store and the specialists catalogue.

    The admin API's routes call it inside the server; the TUI uses it when no server runs.
    Every write goes through the store's one writer thread and is committed when it returns, with
    its audit-log row in the same transaction, naming `actor` as who did it.
    """

    def __init__(
        self, store: Store, specialists: Specialists, *, url: str = DEFAULT_URL, actor: str = LOCAL_ACTOR
    ) -> None:
        self.store = store
        self.catalogue = specialists
        # Where a server would be: named in the ServerUnavailable messages.
        self.url = url
        # Who the audit log names: "cli-local" on the data dir; the admin API names the request's key.
        self.actor = actor

    def acting_as(self, actor: str) -> LocalAdmin:
        """The same operations on the same store, recorded in the audit log as `actor`'s (one request's)."""
        other = copy.copy(self)
        other.actor = actor
        return other

    @property
    def online(self) -> bool:
        return False

    def close(self) -> None:
        self.store.close()

    # plans
    def plans(self) -> list[BillingPlan]:
        return self.store.plans()

    def set_plan(self, name: str, **limits: int | float | bool) -> BillingPlan:
        plan, _created = self.store.set_plan(name, actor=self.actor, **check_plan_limits(limits))
        return plan

    # accounts
    def accounts(self, period: str | None = None) -> list[AccountOverview]:
        return self.store.account_overviews(period)

    def create_account(self, name: str, plan: str = "starter") -> Account:
        return self.store.create_account(name, plan, actor=self.actor)

    def set_account_plan(self, name: str, plan: str) -> Account:
        return self.store.set_account_plan(name, plan, actor=self.actor)

    def set_spending_cap(self, name: str, cap: float | None) -> Account:
        if cap is not None and not finite_number(cap):
            raise InvalidRequest("spending_cap must be an amount of 0 or more, or null for none.", param="spending_cap")
        try:
            return self.store.set_spending_cap(name, cap, actor=self.actor)
        except InvalidRequest as exc:
            raise InvalidRequest(
                "spending_cap must be an amount of 0 or more, or null for none.", param="spending_cap"
            ) from exc

    def set_account_specialists(self, name: str, specialists: list[str] | None) -> Account:
        if specialists is None:
            return self.store.set_specialists(name, None, actor=self.actor)
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
        return self.store.set_specialists(name, chosen, actor=self.actor)

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
                self.store.create_account(ADMIN_ACCOUNT, "scale", actor=self.actor)
        return self.store.create_key(account, test=test, admin=admin, actor=self.actor)

    def revoke_key(self, prefix: str) -> KeyInfo:
        return self.store.revoke_key(prefix, actor=self.actor)

    # usage
    def usage(self, account: str | None = None, period: str | None = None) -> UsageBreakdown:
        return self.store.usage_breakdown(account, period)

    def alerts(self, account: str | None = None, period: str | None = None) -> list[AlertEvent]:
        return self.store.alerts(account, period)

    # specialists and custom prompts
    def _specialist(self, name: str) -> Specialist:
        return self.catalogue.named(name)

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
            s.name,
            system_prompt=prompt,
            temperature=temperature,
            top_p=top_p,
            max_tokens=max_tokens,
            actor=self.actor,
        )
        return profile(s, override)

    def reset_specialist(self, name: str) -> SpecialistProfile:
        s = self._specialist(name)
        self.store.delete_specialist_override(s.name, actor=self.actor)
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
        self.store.set_custom_prompt(acct.id, s.name, check_prompt(prompt), actor=self.actor).result()
        return self.store.custom_prompts(acct.id)[s.name]

    def reset_custom_prompt(self, account: str, specialist: str) -> bool:
        acct = self.store.account(account)
        s = self._specialist(specialist)
        return self.store.delete_custom_prompt(acct.id, s.name, actor=self.actor).result()

    # the database
    def backup(self, path: str) -> BackupInfo:
        return self._backup(path, to_send=False)

    def backup_to_send(self, path: str) -> BackupInfo:
        """A backup the admin API streams to its client (`path` a scratch file in the data dir): the
        audit log names it a download, since the file the client keeps is named on its machine."""
        return self._backup(path, to_send=True)

    def _backup(self, path: str, *, to_send: bool) -> BackupInfo:
        info = self.store.backup(path)
        counts = {"accounts": info.accounts, "keys": info.keys, "usage_records": info.usage_records}
        target = "download" if to_send else info.path
        self.store.record_audit(self.actor, "backup", target, {"bytes": info.bytes, **counts})
        return info

    # the audit log
    def audit(self, limit: int = 50, before: int | None = None) -> AuditPage:
        return self.store.audit_log(limit=limit, before=before)

    def verify_audit(self) -> AuditVerification:
        return self.store.verify_audit()

    # live server only
    def _offline(self, what: str) -> ServerUnavailable:
        return ServerUnavailable(
            f"No Alveare server is running at {self.url}, so {what} is not available; start it with `alveare serve`."
        )

    def hive_status(self) -> HiveStatus:
        raise self._offline("the hive status")

    def try_it(self, specialist: str, prompt: str, *, max_tokens: int | None = None) -> Iterator[TryItEvent]:
        raise self._offline("try-it")

    def set_specialist_adapter(self, name: str, path: str, scale: float = 1.0) -> AdapterStatus:
        raise self._offline("setting an adapter (the server checks it by loading it on its model)")

    def clear_specialist_adapter(self, name: str) -> AdapterStatus | None:
        raise self._offline("clearing an adapter")
