"""The admin operations' input checks, and a specialist as served (file profile plus override)."""

from __future__ import annotations

import math
from typing import Any

from appliance.admin.ops import SpecialistProfile
from appliance.core.errors import InvalidRequest
from appliance.core.protocol import MAX_SYSTEM_PROMPT, MAX_TOKENS_LIMIT
from appliance.core.specialists import Specialist, with_overrides
from appliance.store import (
    SpecialistOverride,
)

_PLAN_INTS = ("requests_per_minute", "requests_per_month", "tokens_per_minute", "specialists_allowed", "share_weight")
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


def finite_number(value: Any) -> bool:
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
        if field in _PLAN_PRICES and not finite_number(value):
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
    if temperature is not None and not (finite_number(temperature) and 0 <= temperature <= 2):
        raise InvalidRequest("temperature must be a number from 0 to 2.", param="temperature")
    if top_p is not None and not (finite_number(top_p) and 0 < top_p <= 1):
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
