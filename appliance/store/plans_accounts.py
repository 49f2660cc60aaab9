"""Plans (their limits and prices) and accounts (their plan, spending cap and specialists)."""

from __future__ import annotations

from typing import Any

from appliance.core.errors import Conflict, InvalidRequest, NotFound
from appliance.store import clock
from appliance.store.audit import append, diff
from appliance.store.database import StoreBase
from appliance.store.records import Account, BillingPlan
from appliance.store.sql import Db

PLAN_FIELDS = (
    "requests_per_minute",
    "requests_per_month",
    "tokens_per_minute",
    "specialists_allowed",
    "custom_prompts",
    "overage_per_1k_requests",
    "monthly_price",
    "share_weight",
)
# A plan's weight is 1 to this: enough range for any price list, small enough that a heavy plan's
# share still leaves a light one a slot.
MAX_SHARE_WEIGHT = 100


# Here, under both keys and usage, which write it: a key is an account's, and its last use is set by either.
def note_key_use(db: Db, key_id: int, at: str) -> None:
    """Set a key's last use to `at`, never back: a slow request's record, or a request metered after
    a later one was authenticated, must not make the key look unused since then. (The auth version's
    triggers ignore last_used_at, so this never empties the server's key cache.)"""
    db.execute(
        "UPDATE api_keys SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)",
        [at, key_id, at],
    )


class PlansAndAccounts(StoreBase):
    # plans -----------------------------------------------------------------
    def plans(self) -> list[BillingPlan]:
        rows = self._dicts("SELECT * FROM plans ORDER BY requests_per_minute, name")
        return [self._plan(r) for r in rows]

    def plan(self, name: str) -> BillingPlan:
        rows = self._dicts("SELECT * FROM plans WHERE name = ?", [name.lower()])
        if not rows:
            known = ", ".join(p.name for p in self.plans())
            raise NotFound(f"No plan named {name!r}. Plans: {known}.", param="plan", code="plan_not_found")
        return self._plan(rows[0])

    @staticmethod
    def _plan(row: dict[str, Any]) -> BillingPlan:
        return BillingPlan(**{**row, "custom_prompts": bool(row["custom_prompts"])})

    def set_plan(
        self, name: str, *, base: str = "starter", actor: str | None = None, **changes: Any
    ) -> tuple[BillingPlan, bool]:
        """Change a plan's limits, or create the plan (from `base`'s values) when it does not exist.

        Returns the plan and whether it was created. `actor`, here and in the other writes: who does
        it, for the audit log, in the same transaction; None for a write that is no admin action.
        """
        name = name.strip().lower()
        if not name or len(name) > 32 or not name.replace("-", "").replace("_", "").isalnum():
            raise InvalidRequest("A plan name is 1 to 32 letters, digits, '-' or '_'.", param="name")
        unknown = set(changes) - set(PLAN_FIELDS)
        if unknown:
            raise InvalidRequest(f"Unknown plan fields: {', '.join(sorted(unknown))}.")
        changes = {k: v for k, v in changes.items() if v is not None}
        for field in ("requests_per_minute", "requests_per_month", "tokens_per_minute"):
            if field in changes and (not isinstance(changes[field], int) or changes[field] < 1):
                raise InvalidRequest(f"{field} must be a whole number of at least 1.", param=field)
        if "share_weight" in changes and (
            not isinstance(changes["share_weight"], int) or not 1 <= changes["share_weight"] <= MAX_SHARE_WEIGHT
        ):
            raise InvalidRequest(
                f"share_weight must be a whole number from 1 to {MAX_SHARE_WEIGHT}.", param="share_weight"
            )
        if "specialists_allowed" in changes and changes["specialists_allowed"] < 0:
            raise InvalidRequest("specialists_allowed must not be negative.", param="specialists_allowed")
        for field in ("overage_per_1k_requests", "monthly_price"):
            if field in changes and not 0 <= changes[field] < 1e9:
                raise InvalidRequest(f"{field} must be a price of 0 or more.", param=field)
        try:
            current = self.plan(name)
            created = False
        except NotFound:
            current = self.plan(base)
            created = True
        row = {**msgspec_to_dict(current), **changes, "name": name}
        row["custom_prompts"] = int(bool(row["custom_prompts"]))

        def job(db: Db) -> None:
            before = next(iter(db.dicts("SELECT * FROM plans WHERE name = ?", [name])), None)
            db.upsert("plans", row, pk=["name"])
            if actor is None:
                return
            if before is None:
                append(db, actor, "plan.create", name, {"base": base, **_plan_values(row)})
            else:
                append(db, actor, "plan.update", name, diff(_plan_values(before), _plan_values(row), PLAN_FIELDS))

        self._write(job)
        return self.plan(name), created

    # accounts --------------------------------------------------------------
    def create_account(self, name: str, plan: str = "starter", *, actor: str | None = None) -> Account:
        name = name.strip()
        if not name or len(name) > 64 or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise InvalidRequest("An account name is 1 to 64 letters, digits, '-', '_' or '.'.", param="name")
        plan_row = self.plan(plan)

        def job(db: Db) -> None:
            if db.count("accounts", "name = ?", [name]):
                raise Conflict(f"An account named {name!r} already exists.", param="name")
            db.insert(
                "accounts",
                {
                    "name": name,
                    "plan": plan_row.name,
                    "spending_cap": None,
                    "created_at": clock.now_iso(),
                    "specialists": None,
                },
            )
            if actor is not None:
                append(db, actor, "account.create", name, {"plan": plan_row.name})

        self._write(job)
        return self.account(name)

    def account(self, name: str) -> Account:
        rows = self._dicts("SELECT * FROM accounts WHERE name = ?", [name])
        if not rows:
            raise NotFound(f"No account named {name!r}.", param="account", code="account_not_found")
        return self._account(rows[0])

    def accounts(self) -> list[Account]:
        rows = self._dicts("SELECT * FROM accounts ORDER BY id")
        return [self._account(r) for r in rows]

    @staticmethod
    def _account(row: dict[str, Any]) -> Account:
        specialists = row.get("specialists")
        return Account(**{**row, "specialists": specialists.split(",") if specialists else None})

    def _update_account(self, name: str, values: dict[str, Any], actor: str | None) -> Account:
        acct = self.account(name)

        def job(db: Db) -> None:
            before = db.dicts("SELECT * FROM accounts WHERE id = ?", [acct.id])[0]
            db.update("accounts", acct.id, values)
            if actor is not None:
                change = diff(_account_values(before), _account_values(values), values)
                append(db, actor, "account.update", acct.name, change)

        self._write(job)
        return self.account(name)

    def set_account_plan(self, name: str, plan: str, *, actor: str | None = None) -> Account:
        return self._update_account(name, {"plan": self.plan(plan).name}, actor)

    def set_spending_cap(self, name: str, cap: float | None, *, actor: str | None = None) -> Account:
        if cap is not None and not 0 <= cap < 1e12:
            raise InvalidRequest("A spending cap is an amount of 0 or more, or 'none'.", param="cap")
        return self._update_account(name, {"spending_cap": cap}, actor)

    def set_specialists(self, name: str, specialists: list[str] | None, *, actor: str | None = None) -> Account:
        """The specialists the account may use (None: the plan's default set). Names are checked by the caller."""
        if specialists is not None:
            plan = self.plan(self.account(name).plan)
            if len(specialists) > plan.specialists_allowed:
                raise InvalidRequest(
                    f"The {plan.name} plan allows {plan.specialists_allowed} specialists; "
                    f"{len(specialists)} were given.",
                    param="specialists",
                )
        chosen = ",".join(specialists) if specialists is not None else None
        return self._update_account(name, {"specialists": chosen}, actor)


def _plan_values(row: dict[str, Any]) -> dict[str, Any]:
    """A plan row's limits as the audit log shows them (custom_prompts a bool, as the API has it)."""
    return {**{f: row[f] for f in PLAN_FIELDS}, "custom_prompts": bool(row["custom_prompts"])}


def _account_values(row: dict[str, Any]) -> dict[str, Any]:
    """An account row's fields as the audit log shows them (specialists a list, as the API has it)."""
    specialists = row.get("specialists")
    return {**row, "specialists": specialists.split(",") if specialists else None}


def msgspec_to_dict(value: Any) -> dict[str, Any]:
    return {f: getattr(value, f) for f in value.__struct_fields__}
