"""Custom system prompts (an account's, per specialist) and the admin's specialist overrides."""

from __future__ import annotations

from concurrent.futures import Future

from sqlite_utils import Database

from appliance.store import clock
from appliance.store.database import StoreBase
from appliance.store.records import CustomPrompt, SpecialistOverride


class Prompts(StoreBase):
    # custom system prompts -------------------------------------------------
    def custom_prompts(self, account_id: int) -> dict[str, CustomPrompt]:
        rows = self._rows(
            "SELECT specialist, system_prompt, updated_at FROM custom_prompts WHERE account_id = ?", [account_id]
        )
        return {r[0]: CustomPrompt(*r) for r in rows}

    def custom_prompt(self, account_id: int, specialist: str) -> str | None:
        rows = self._rows(
            "SELECT system_prompt FROM custom_prompts WHERE account_id = ? AND specialist = ?", [account_id, specialist]
        )
        return rows[0][0] if rows else None

    def set_custom_prompt(self, account_id: int, specialist: str, prompt: str) -> Future[None]:
        row = {
            "account_id": account_id,
            "specialist": specialist,
            "system_prompt": prompt,
            "updated_at": clock.now_iso(),
        }

        def job(db: Database) -> None:
            db["custom_prompts"].upsert(row, pk=("account_id", "specialist"))

        return self._writer.submit(job)

    def delete_custom_prompt(self, account_id: int, specialist: str) -> Future[bool]:
        def job(db: Database) -> bool:
            cursor = db.execute(
                "DELETE FROM custom_prompts WHERE account_id = ? AND specialist = ?", [account_id, specialist]
            )
            return cursor.rowcount > 0

        return self._writer.submit(job)

    # specialist overrides ---------------------------------------------------
    _OVERRIDE_SQL = (
        "SELECT specialist, system_prompt, temperature, top_p, max_tokens, updated_at FROM specialist_overrides"
    )

    def specialist_override(self, specialist: str) -> SpecialistOverride | None:
        """The admin's override of a specialist's defaults (one primary-key read), or None."""
        rows = self._rows(self._OVERRIDE_SQL + " WHERE specialist = ?", [specialist])
        return SpecialistOverride(*rows[0]) if rows else None

    def specialist_overrides(self) -> dict[str, SpecialistOverride]:
        return {r[0]: SpecialistOverride(*r) for r in self._rows(self._OVERRIDE_SQL + " ORDER BY specialist")}

    def set_specialist_override(
        self,
        specialist: str,
        *,
        system_prompt: str | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        max_tokens: int | None = None,
    ) -> SpecialistOverride:
        """Merge the given fields into the specialist's override (None leaves a field as it is).

        Values are checked by the caller (appliance.admin.ops), which knows the catalogue.
        """
        changes = {
            "system_prompt": system_prompt,
            "temperature": temperature,
            "top_p": top_p,
            "max_tokens": max_tokens,
        }
        changes = {k: v for k, v in changes.items() if v is not None}

        def job(db: Database) -> None:
            rows = list(db["specialist_overrides"].rows_where("specialist = ?", [specialist]))
            row = rows[0] if rows else {"specialist": specialist}
            db["specialist_overrides"].upsert({**row, **changes, "updated_at": clock.now_iso()}, pk="specialist")

        self._write(job)
        found = self.specialist_override(specialist)
        assert found is not None
        return found

    def delete_specialist_override(self, specialist: str) -> bool:
        def job(db: Database) -> bool:
            return db.execute("DELETE FROM specialist_overrides WHERE specialist = ?", [specialist]).rowcount > 0

        return self._write(job)
