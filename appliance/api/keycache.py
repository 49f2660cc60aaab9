"""API keys in memory by keyed hash, so authenticating a request reads no key from SQLite on the event loop.

Staleness bound: none. Every request reads the store's auth version (one row, off the event loop,
in the same thread hop that looks a key up on a miss). Triggers bump that version on any change to
keys, accounts or plans, by any process on the data dir (this server's admin API, the CLI, the TUI), so
a revocation applies to the very next request, and a cached principal never outlives a change
to its key, account or plan.

A key's last use: every authenticated request counts (the admin API, usage, models, status, not only
inference, which metering also records). It is queued to the store's writer thread (no I/O on the
event loop) at most once per key per `LAST_USED_EVERY_S`: the keys list shows it to the minute, so a
write per request would only add writes to a busy key's traffic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future

from appliance.store import Principal, Store

log = logging.getLogger("alveare.auth")

MAX_ENTRIES = 10_000  # past this, start again: a bound on memory, not a policy
LAST_USED_EVERY_S = 60.0


class KeyCache:
    def __init__(self, store: Store, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._principals: dict[str, Principal] = {}
        self._version = -1
        self._clock = clock
        # When each key's last use was last queued (the clock's seconds), for the throttle.
        self._marked: dict[int, float] = {}

    async def authenticate(self, key: str) -> Principal | None:
        """The principal for a well-formed key, or None for an unknown or revoked one."""
        digest = self._store.key_digest(key)
        known = self._principals.get(digest)
        version, principal = await asyncio.to_thread(self._look_up, digest, known, self._version)
        # The dict and the version change only here, on the event loop. The version only grows, so a
        # slow thread's older answer is used for its own request but never cached.
        if version > self._version:
            self._principals.clear()
            self._version = version
        if principal is not None and version == self._version:
            if len(self._principals) >= MAX_ENTRIES:
                self._principals.clear()
            self._principals[digest] = principal
        if principal is not None:
            self._mark_used(principal.key_id)
        return principal

    def _mark_used(self, key_id: int) -> None:
        """Queue the key's last use unless one was queued less than LAST_USED_EVERY_S ago (event loop;
        the write itself runs on the store's writer thread)."""
        now = self._clock()
        last = self._marked.get(key_id)
        if last is not None and now - last < LAST_USED_EVERY_S:
            return
        if len(self._marked) >= MAX_ENTRIES:
            self._marked.clear()
        self._marked[key_id] = now
        self._store.mark_key_used(key_id).add_done_callback(_log_failed_mark)

    def _look_up(self, digest: str, known: Principal | None, known_version: int) -> tuple[int, Principal | None]:
        """In a worker thread. The version is read first: a change committed after it is seen by the
        next request, and one committed before it is in the principal read here."""
        version = self._store.auth_version()
        if known is not None and version == known_version:
            return version, known
        return version, self._store.principal_for(digest)


def _log_failed_mark(future: Future[None]) -> None:
    # A lost "last used" mark is not worth failing a request for (the next one writes it again).
    if not future.cancelled() and future.exception() is not None:
        log.warning("could not record a key's last use: %s", future.exception())
