"""API keys in memory by keyed hash, so authenticating a request reads no key from SQLite on the event loop.

Staleness bound: none. Every request reads the store's auth version (one row, off the event loop,
in the same thread hop that looks a key up on a miss). Triggers bump that version on any change to
keys, accounts or plans, by any process on the data dir (this server's admin API, the CLI, the TUI), so
a revocation applies to the very next request, and a cached principal never outlives a change
to its key, account or plan.
"""

from __future__ import annotations

import asyncio

from appliance.store import Principal, Store

MAX_ENTRIES = 10_000  # past this, start again: a bound on memory, not a policy


class KeyCache:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._principals: dict[str, Principal] = {}
        self._version = -1

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
        return principal

    def _look_up(self, digest: str, known: Principal | None, known_version: int) -> tuple[int, Principal | None]:
        """In a worker thread. The version is read first: a change committed after it is seen by the
        next request, and one committed before it is in the principal read here."""
        version = self._store.auth_version()
        if known is not None and version == known_version:
            return version, known
        return version, self._store.principal_for(digest)
