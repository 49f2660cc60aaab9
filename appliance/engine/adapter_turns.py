"""Which LoRA adapter each step decodes under, and when a replaced one may go.

llama.cpp applies adapters to a whole context, so requests under different adapters take turns, a
step each: the adapter of the flow with the least service first, as fairness.py orders flows for
prompt rows, so one fine-tuned specialist's traffic cannot starve another's; on a tie (one flow's
requests under two adapters) the adapter that waited longest.
"""

from __future__ import annotations

from collections.abc import Callable

from appliance.engine.adapters import BASE, Adapters
from appliance.engine.native.llama import Context
from appliance.engine.prefix_cache import PrefixCache
from appliance.engine.slots import Slot


class AdapterTurns:
    def __init__(self, adapters: Adapters) -> None:
        self.adapters = adapters
        self._last: dict[int, int] = {}  # adapter key -> the step it last decoded in

    def choose(self, order: list[Slot], services: Callable[[set[str]], dict[str, float]]) -> int:
        """The adapter key the next step decodes under, among the requests in `order`'s slots."""
        running = [s.active for s in order if s.active is not None]
        keys = {a.adapter for a in running}
        if len(keys) < 2:
            return next(iter(keys), BASE)
        service = services({a.request.share.flow for a in running})
        least: dict[int, float] = {}
        for a in running:
            have = service.get(a.request.share.flow, 0.0)
            least[a.adapter] = min(least.get(a.adapter, have), have)
        return min(keys, key=lambda k: (least[k], self._last.get(k, -1)))

    def stepped(self, key: int, step: int) -> None:
        self._last[key] = step

    def collect(self, paused: set[int], ctx: Context, slots: list[Slot], prefixes: PrefixCache) -> None:
        """Free the adapters replaced or removed that no request in a slot needs any more, nor one
        paused (`paused`: their keys), with the cells computed under them."""
        in_use = paused | {s.active.adapter for s in slots if s.active is not None}
        for key in self.adapters.collect(in_use, [ctx]):
            self._last.pop(key, None)
            prefixes.forget(key)
            for slot in slots:
                if slot.active is None and slot.adapter == key and slot.kv:
                    ctx.seq_rm(slot.seq)
                    slot.kv = []
