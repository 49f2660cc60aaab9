"""uvicorn's HTTP protocol with the limits it lacks for clients that connect and then stall.

uvicorn times out a keep-alive connection only between requests, once its first request is done: a
client that connects and sends nothing, or its headers a byte at a time, or a body that never ends,
holds its connection (a file descriptor and a protocol object) for as long as it likes. Here:

- a request's head (request line and headers) must arrive within HEAD_TIMEOUT_S of the connection
  (or of the previous response), and its body within BODY_TIMEOUT_S of the head; past it the
  connection is closed;
- at most MAX_WAITING connections may be waiting for a request head at once; a new connection past
  that closes the one that has waited longest. A real client sends its head as soon as it connects,
  so the longest-waiting ones are the idle ones, and new clients keep being served.
"""

from __future__ import annotations

import asyncio
import logging
import time

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("alveare.connections")

HEAD_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 30.0  # the largest body (1 MiB by default) at about 35 KB/s
MAX_WAITING = 256


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    _deadline: asyncio.TimerHandle | None = None
    _waiting_since = 0.0

    # ---------------------------------------------------------------- uvicorn's hooks
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._wait_for_head()
        self._evict_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm(BODY_TIMEOUT_S)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._cancel()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._wait_for_head()

    # ---------------------------------------------------------------- the limits
    def _waiting_for_head(self) -> bool:
        return (self.cycle is None or self.cycle.response_complete) and not self.pipeline

    def _waiting_for_body(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete and self.cycle.more_body

    def _wait_for_head(self) -> None:
        self._waiting_since = time.monotonic()
        self._arm(HEAD_TIMEOUT_S)

    def _arm(self, seconds: float) -> None:
        self._cancel()
        self._deadline = self.loop.call_later(seconds, self._expire)

    def _cancel(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._waiting_for_head() or self._waiting_for_body():
            log.debug("closed a connection from %s that did not send its request in time", _address(self.client))
            self.transport.close()

    def _evict_idle(self) -> None:
        waiting = [
            c
            for c in self.connections
            if isinstance(c, GuardedHttpToolsProtocol)
            and c is not self
            and c._waiting_for_head()
            and not c.transport.is_closing()
        ]
        if len(waiting) < MAX_WAITING:
            return
        oldest = min(waiting, key=lambda c: c._waiting_since)
        log.debug("over %d idle connections: closed the oldest, from %s", MAX_WAITING, _address(oldest.client))
        oldest.transport.close()


def _address(client: tuple[str, int] | None) -> str:
    return client[0] if client else "unknown"
