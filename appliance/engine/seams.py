"""The seams through which machine-tuning pieces hook into the slot loop, so the scheduler names none:
`ThreadChoice`, how many threads each step uses (tuning/threads.py), and `DecodeTarget`, where a step
decodes (the solo lane, tuning/solo_lane.py, runs some on a context of its own).

Between steps the scheduler tells its target about the request running alone, if any (`follow`);
a step then decodes on `ctx_for_step()` (None: the main context), each slot's rows in `seq_of(its
sequence)`. Before anything but such a step touches the main context the scheduler calls `leave`, so
every slot's cells are back there. `MainContext` is the target with nothing beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from appliance.engine.native.llama import Context


class ThreadChoice(Protocol):
    """The thread count for each step: asked before it, told what it cost after."""

    current: int

    def choose(self, prefill: bool = False) -> int: ...

    def observe(self, threads: int, seconds: float, rows: int) -> None: ...


@dataclass(frozen=True)
class LoneRequest:
    """The only request running, admitted alone, past its prompt, with nothing queued, no sibling
    choices waiting for it and no drafting: the one a target may decode elsewhere."""

    owner: object  # the request itself: another request in the same sequence is another owner
    seq: int  # its sequence in the main context
    cells: int  # the cells it holds there
    tokens_left: int  # the most tokens it may still generate


class DecodeTarget(Protocol):
    def follow(self, lone: LoneRequest | None, busy: bool) -> None:
        """Between steps: move the lone request in, or the held one back. `busy`: several requests
        run, or one waits."""

    def ctx_for_step(self) -> Context | None:
        """The context the next step decodes on; None: the main one."""

    def seq_of(self, seq: int) -> int:
        """The sequence a slot's rows go in on the step's context."""

    def leave(self) -> None:
        """Move a held request's cells back to the main context."""

    def let_go(self, seq: int) -> None:
        """The request in `seq` ends: its cells back to the main context, where every slot keeps its history."""

    def drop(self) -> None:
        """Forget a held request without moving it (every cell is being cleared after a failed step)."""

    def release_memory(self) -> None:
        """Several requests run: memory held for a lone one may go."""

    def set_threads(self, n: int) -> None: ...

    def stepped(self) -> None:
        """A step decoded on ctx_for_step()."""

    def summary(self) -> str:
        """What it did, for the log at stop; empty: nothing to say."""

    def close(self) -> None: ...


class MainContext:
    """Every step on the main context, every slot in its own sequence."""

    def follow(self, lone: LoneRequest | None, busy: bool) -> None:
        pass

    def ctx_for_step(self) -> Context | None:
        return None

    def seq_of(self, seq: int) -> int:
        return seq

    def leave(self) -> None:
        pass

    def let_go(self, seq: int) -> None:
        pass

    def drop(self) -> None:
        pass

    def release_memory(self) -> None:
        pass

    def set_threads(self, n: int) -> None:
        pass

    def stepped(self) -> None:
        pass

    def summary(self) -> str:
        return ""

    def close(self) -> None:
        pass
