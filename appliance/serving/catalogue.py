"""Which specialists a caller may use, as served: the admin's overrides and the account's own prompts."""

from __future__ import annotations

import asyncio
from pathlib import Path

from appliance.admin.checks import apply_override, check_prompt
from appliance.core import protocol as p
from appliance.core.errors import PermissionDenied
from appliance.core.specialists import Specialist, Specialists
from appliance.engine.interface import AdapterStatus, Engine
from appliance.store import Principal, Store


class Catalogue:
    def __init__(self, specialists: Specialists, store: Store, engine: Engine, *, created: int) -> None:
        self.specialists = specialists
        self.store = store
        self.engine = engine
        self.created = created  # the models' `created`: when the server started

    # ------------------------------------------------------------ who may use what
    def enabled(self, principal: Principal) -> list[Specialist]:
        """The specialists the account may use: its chosen set, or the first ones of the catalogue,
        at most as many as its plan allows. Admin keys may use every specialist."""
        if principal.admin:
            return list(self.specialists)
        allowed = principal.plan.specialists_allowed
        if principal.specialists is None:
            return list(self.specialists)[:allowed]
        chosen = set(principal.specialists)
        return [s for s in self.specialists if s.name in chosen][:allowed]

    def resolve(self, principal: Principal, model: str, param: str = "model") -> Specialist:
        """The specialist a request names, as served; 404 if unknown, 403 if not enabled for the account."""
        specialist = self.specialists.resolve(model, param=param)
        if specialist not in self.enabled(principal):
            raise PermissionDenied(
                f"The specialist '{specialist.name}' is not enabled for your account (plan {principal.plan.name}, "
                f"{principal.plan.specialists_allowed} specialists). Enabled: "
                f"{', '.join(s.name for s in self.enabled(principal)) or 'none'}.",
                param=param,
                code="specialist_not_enabled",
            )
        return self.served(specialist)

    def served(self, specialist: Specialist) -> Specialist:
        """The specialist with the admin's override from the store, read per request (one primary-key
        read), so a change made through the admin API or directly on the data dir applies at once."""
        return apply_override(specialist, self.store.specialist_override(specialist.name))

    def system_prompt(self, principal: Principal, specialist: Specialist) -> str:
        """The account's own prompt for the specialist when its plan allows one, else the default."""
        if principal.plan.custom_prompts:
            custom = self.store.custom_prompt(principal.account_id, specialist.name)
            if custom is not None:
                return custom
        return specialist.system_prompt

    # ------------------------------------------------------------ models
    def _adapters(self) -> dict[str, AdapterStatus]:
        """The adapters the engine has loaded, by specialist: what requests decode under."""
        return {a.specialist: a for a in self.engine.adapters()}

    def models(self, principal: Principal) -> p.ModelList:
        adapters = self._adapters()
        return p.ModelList(data=[self._model(s.name, s.model_id, adapters) for s in self.enabled(principal)])

    def model(self, principal: Principal, model_id: str) -> p.Model:
        s = self.resolve(principal, model_id)
        return self._model(s.name, s.model_id, self._adapters())

    def _model(self, name: str, model_id: str, adapters: dict[str, AdapterStatus]) -> p.Model:
        adapter = adapters.get(name)
        return p.Model(id=model_id, created=self.created, adapter=Path(adapter.file).name if adapter else None)

    def model_info(self, principal: Principal, model_id: str) -> p.ModelInfo:
        s = self.resolve(principal, model_id)
        return p.ModelInfo(
            id=s.model_id,
            specialist=s.name,
            description=s.description,
            system_prompt=self.system_prompt(principal, s),
            parameters=p.SpecialistParameters(
                temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens, stop=list(s.stop)
            ),
            examples=[p.SpecialistExample(user=e.user, assistant=e.assistant) for e in s.examples],
            base_model=self.engine.model_name,
            context_length=self.engine.context_length,
            adapter=p.SpecialistAdapter(Path(a.file).name, a.scale, a.size_bytes)
            if (a := self._adapters().get(s.name))
            else None,
        )

    # ------------------------------------------------------------ the account's own prompts
    def _view(self, principal: Principal, specialist: Specialist, enabled: list[Specialist]) -> p.SpecialistView:
        specialist = self.served(specialist)
        prompt = self.system_prompt(principal, specialist)
        return p.SpecialistView(
            name=specialist.name,
            model=specialist.model_id,
            description=specialist.description,
            system_prompt=prompt,
            custom=prompt != specialist.system_prompt,
            enabled=specialist.name in {s.name for s in enabled},
        )

    def specialist_list(self, principal: Principal) -> p.SpecialistList:
        enabled = self.enabled(principal)
        return p.SpecialistList(
            data=[self._view(principal, s, enabled) for s in self.specialists],
            custom_prompts_allowed=principal.plan.custom_prompts,
        )

    async def set_system_prompt(
        self, principal: Principal, name: str, update: p.SystemPromptUpdate
    ) -> p.SpecialistView:
        specialist = self.resolve(principal, name, param="name")
        if not principal.plan.custom_prompts:
            raise PermissionDenied(
                f"Custom system prompts are not included in the {principal.plan.name} plan; "
                "they come with the professional and scale plans.",
                code="custom_prompts_not_in_plan",
            )
        prompt = check_prompt(update.system_prompt)
        await asyncio.wrap_future(self.store.set_custom_prompt(principal.account_id, specialist.name, prompt))
        return await asyncio.to_thread(self._view, principal, specialist, self.enabled(principal))

    async def reset_system_prompt(self, principal: Principal, name: str) -> p.SpecialistView:
        specialist = self.specialists.resolve(name, param="name")
        await asyncio.wrap_future(self.store.delete_custom_prompt(principal.account_id, specialist.name))
        return await asyncio.to_thread(self._view, principal, specialist, self.enabled(principal))
