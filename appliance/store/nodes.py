"""The cluster's nodes: each appliance on a shared store writes a heartbeat row every few seconds
(its address, model, load and version); any node lists them all, up or down, judged by the
database's clock so no node's clock enters."""

from __future__ import annotations

from concurrent.futures import Future

import msgspec

from appliance.store.database import StoreBase
from appliance.store.sql import Db

# A node whose last heartbeat is older than this is down (five missed beats at the servers' 2 s).
DOWN_AFTER_S = 10.0


class NodeBeat(msgspec.Struct, frozen=True, kw_only=True):
    """What a node says of itself in a heartbeat."""

    id: str
    url: str
    version: str
    model: str
    slots_total: int
    slots_busy: int
    queue_depth: int
    tokens_per_second: float
    started_at: str
    stopped: bool = False


class NodeRow(msgspec.Struct, frozen=True, kw_only=True):
    beat: NodeBeat
    age_s: float

    @property
    def state(self) -> str:
        if self.beat.stopped:
            return "stopped"
        return "up" if self.age_s <= DOWN_AFTER_S else "down"


_FIELDS = ("id", "url", "version", "model", "slots_total", "slots_busy", "queue_depth", "tokens_per_second",
           "started_at", "stopped")  # fmt: skip


class Nodes(StoreBase):
    def beat(self, node: NodeBeat) -> Future[None]:
        """Queue this node's heartbeat (its row, stamped with the database's time)."""
        values = [getattr(node, f) if f != "stopped" else int(node.stopped) for f in _FIELDS]

        def job(db: Db) -> None:
            cols = ", ".join((*_FIELDS, "heartbeat"))
            marks = ", ".join(["?"] * len(_FIELDS) + [db.now_s()])
            updates = ", ".join(f"{c} = excluded.{c}" for c in (*_FIELDS[1:], "heartbeat"))
            db.execute(f"INSERT INTO nodes ({cols}) VALUES ({marks}) ON CONFLICT (id) DO UPDATE SET {updates}", values)

        return self._writer.submit(job)

    def nodes(self) -> list[NodeRow]:
        """Every node that ever beat, with the seconds since its last heartbeat; newest first."""
        rows = self._read(
            lambda db: db.dicts(f"SELECT {', '.join(_FIELDS)}, {db.now_s()} - heartbeat AS age FROM nodes ORDER BY id")
        )
        out = []
        for r in rows:
            age = float(r.pop("age"))
            r["stopped"] = bool(r["stopped"])
            out.append(NodeRow(beat=NodeBeat(**r), age_s=max(0.0, age)))
        return sorted(out, key=lambda n: n.age_s)
