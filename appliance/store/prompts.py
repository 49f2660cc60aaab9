"""Custom system prompts (an account's, per specialist) and the admin's specialist overrides."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from appliance.store import clock
from appliance.store.audit import append, diff, digest
from appliance.store.database import StoreBase
from appliance.store.records import CustomPrompt, SpecialistOverride
from appliance.store.sql import Db

# An override's fields, as its audit rows show them: a prompt by its length and digest, never its text.
OVERRIDE_FIELDS = ("system_prompt", "temperature", "top_p", "max_tokens")


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

    def set_custom_prompt(
        self, account_id: int, specialist: str, prompt: str, *, actor: str | None = None
    ) -> Future[None]:
        row = {
            "account_id": account_id,
            "specialist": specialist,
            "system_prompt": prompt,
            "updated_at": clock.now_iso(),
        }

        def job(db: Db) -> None:
            before = _prompt_of(db, account_id, specialist)
            db.upsert("custom_prompts", row, pk=("account_id", "specialist"))
            if actor is not None:
                change = diff(_shown(before), _shown(prompt), ["system_prompt"])
                append(db, actor, "prompt.set", _prompt_target(db, account_id, specialist), change)

        return self._writer.submit(job)

    def delete_custom_prompt(self, account_id: int, specialist: str, *, actor: str | None = None) -> Future[bool]:
        def job(db: Db) -> bool:
            before = _prompt_of(db, account_id, specialist)
            cursor = db.execute(
                "DELETE FROM custom_prompts WHERE account_id = ? AND specialist = ?", [account_id, specialist]
            )
            if actor is not None:
                change = diff(_shown(before), _shown(None), ["system_prompt"])
                append(db, actor, "prompt.reset", _prompt_target(db, account_id, specialist), change)
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
        actor: str | None = None,
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

        def job(db: Db) -> None:
            rows = db.dicts("SELECT * FROM specialist_overrides WHERE specialist = ?", [specialist])
            row = rows[0] if rows else {"specialist": specialist}
            after = {**row, **changes, "updated_at": clock.now_iso()}
            db.upsert("specialist_overrides", after, pk=["specialist"])
            if actor is not None:
                change = diff(_override_shown(rows[0] if rows else None), _override_shown(after), OVERRIDE_FIELDS)
                append(db, actor, "specialist.set", specialist, change)

        self._write(job)
        found = self.specialist_override(specialist)
        assert found is not None
        return found

    def delete_specialist_override(self, specialist: str, *, actor: str | None = None) -> bool:
        def job(db: Db) -> bool:
            rows = db.dicts("SELECT * FROM specialist_overrides WHERE specialist = ?", [specialist])
            deleted = db.execute("DELETE FROM specialist_overrides WHERE specialist = ?", [specialist]).rowcount > 0
            if actor is not None:
                change = diff(_override_shown(rows[0] if rows else None), {}, OVERRIDE_FIELDS)
                append(db, actor, "specialist.reset", specialist, change)
            return deleted

        return self._write(job)


def _prompt_of(db: Db, account_id: int, specialist: str) -> str | None:
    row = db.execute(
        "SELECT system_prompt FROM custom_prompts WHERE account_id = ? AND specialist = ?", [account_id, specialist]
    ).fetchone()
    return row[0] if row else None


def _prompt_target(db: Db, account_id: int, specialist: str) -> str:
    row = db.execute("SELECT name FROM accounts WHERE id = ?", [account_id]).fetchone()
    return f"{row[0] if row else account_id}/{specialist}"


def _shown(prompt: str | None) -> dict[str, Any]:
    return {"system_prompt": digest(prompt) if prompt is not None else None}


def _override_shown(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    shown = {f: row.get(f) for f in OVERRIDE_FIELDS}
    if shown["system_prompt"] is not None:
        shown["system_prompt"] = digest(shown["system_prompt"])
    return shown
