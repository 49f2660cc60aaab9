"""This node among its cluster's: a heartbeat row in the shared store every HEARTBEAT_S (its
address, model, load and version), and the list of every node for GET /v1/hive/status?all=1,
`alveare hives status` and the TUI. A single box (SQLite) lists itself alone and writes no
heartbeat."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
from pathlib import Path

from appliance.core import protocol as p
from appliance.serving.status import Status
from appliance.store import Store, now_iso
from appliance.store.nodes import NodeBeat, NodeRow
from appliance.store.shared_limits import SharedLimits

log = logging.getLogger("alveare.cluster")

HEARTBEAT_S = 2.0
# Heartbeats between two looks for silent nodes' quota holds: a minute.
RECLAIM_EVERY = 30
NODE_ID_FILE = "node-id"


def node_id(data_dir: Path) -> str:
    """This node's id, kept in the data dir from its first start: the same node after a restart."""
    path = data_dir / NODE_ID_FILE
    with contextlib.suppress(FileNotFoundError):
        found = path.read_text(encoding="utf-8").strip()
        if found:
            return found
    made = secrets.token_hex(6)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(made + "\n")
    return made


class Cluster:
    def __init__(self, store: Store, status: Status, *, data_dir: Path, url: str) -> None:
        self.store = store
        self.status = status
        self.data_dir = data_dir
        self.url = url
        self.started_at = now_iso()
        self.shared = store.dialect == "postgresql"
        # The cluster's limits, whose silent nodes' holds the heartbeat takes back now and then.
        self.shared_limits: SharedLimits | None = None

    @functools.cached_property
    def id(self) -> str:
        # Read (or made) when first needed: a first heartbeat, or a node list.
        return node_id(self.data_dir)

    def _beat(self, *, stopped: bool = False) -> NodeBeat:
        s = self.status.hive_status()
        return NodeBeat(
            id=self.id,
            url=self.url,
            version=s.version,
            model=s.model.name,
            slots_total=s.slots_total,
            slots_busy=s.slots_busy,
            queue_depth=s.queue_depth,
            tokens_per_second=s.tokens_per_second,
            started_at=self.started_at,
            stopped=stopped,
        )

    async def run(self) -> None:
        """Beat until cancelled (the server stopping); a beat the store could not write is logged and
        the next one tries again."""
        if not self.shared:
            return
        await asyncio.to_thread(lambda: self.id)  # the data dir's file, read off the event loop
        beats = 0
        while True:
            self.store.beat(self._beat()).add_done_callback(_log_failed_beat)
            if self.shared_limits is not None and beats % RECLAIM_EVERY == 0:
                self.shared_limits.reclaim_silent().add_done_callback(_log_failed_beat)
            beats += 1
            await asyncio.sleep(HEARTBEAT_S)

    async def stopped(self) -> None:
        """The last beat: this node stopped on purpose (listed as stopped, not down)."""
        if self.shared:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.wrap_future(self.store.beat(self._beat(stopped=True))), 3.0)

    def nodes(self) -> list[p.HiveNode]:
        """Every node (in a worker thread: a cluster's are read from the store)."""
        rows = self.store.nodes() if self.shared else [NodeRow(beat=self._beat(), age_s=0.0)]
        return [
            p.HiveNode(
                id=r.beat.id,
                url=r.beat.url,
                state=r.state,
                heartbeat_age_seconds=round(r.age_s, 3),
                version=r.beat.version,
                model=r.beat.model,
                slots_total=r.beat.slots_total,
                slots_busy=r.beat.slots_busy,
                queue_depth=r.beat.queue_depth,
                tokens_per_second=r.beat.tokens_per_second,
                started_at=r.beat.started_at,
                this_node=r.beat.id == self.id,
            )
            for r in rows
        ]


def _log_failed_beat(future) -> None:  # type: ignore[no-untyped-def]
    if not future.cancelled() and future.exception() is not None:
        log.warning("could not write this node's heartbeat: %s", future.exception())
