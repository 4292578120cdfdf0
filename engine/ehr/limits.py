"""The HTTP limits of `jakcds serve` (per server process), set on uvicorn's h11 protocol.

uvicorn bounds keep-alive idleness, header size (h11) and requests in progress, but not the time
to send a request's head nor the number of open connections: idle or dripping connections would
hold file descriptors until the process has none left for a real EHR call. `LimitedH11` closes a
connection that has not sent its request head in HEAD_TIMEOUT seconds, and past MAX_CONNECTIONS
open connections closes the longest-idle one (as nginx reuses idle keep-alive connections), so a
new caller always gets a slot. The values are far above what an EHR's own traffic reaches.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEAD_TIMEOUT = 10.0  # seconds to send a request's line and headers (slowloris, idle connections)
KEEP_ALIVE = 5  # seconds an idle keep-alive connection stays open between requests
MAX_HEAD = 64 * 1024  # bytes of a request's line and headers; more is a 400 and the connection closes
MAX_BODY = 32 * 1024 * 1024  # bytes of one request (a prefetch of a long chart fits); larger is a 413
MAX_CONNECTIONS = 512  # open connections (the longest-idle closed past it): half the common 1,024 file limit
# requests in progress; uvicorn counts open connections against it too, so it sits above MAX_CONNECTIONS
# (which bounds requests in progress: one per connection) and answers 503 only if that bound fails
CONCURRENCY = MAX_CONNECTIONS + 64


class LimitedH11(H11Protocol):
    """uvicorn's h11 protocol with a deadline on the request head and a cap on open connections."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.opened = self.loop.time()
        self.head_timer: asyncio.TimerHandle | None = self.loop.call_later(HEAD_TIMEOUT, self._close)
        if len(self.connections) > MAX_CONNECTIONS:
            idle = [c for c in self.connections if c is not self and isinstance(c, LimitedH11) and c.idle()]
            if idle:
                min(idle, key=lambda c: c.opened)._close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        reading_head = self.conn.their_state is h11.IDLE
        if reading_head and self.head_timer is None:  # the next request of a keep-alive connection has begun
            self.head_timer = self.loop.call_later(HEAD_TIMEOUT, self._close)
        elif not reading_head and self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
        super().connection_lost(exc)

    def idle(self) -> bool:
        """No request in progress: none begun, or the last one answered."""
        return self.conn.their_state is h11.IDLE and (self.cycle is None or self.cycle.response_complete)

    def _close(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()


def uvicorn_options() -> dict[str, Any]:
    return {"http": "jakcds.ehr.limits:LimitedH11", "timeout_keep_alive": KEEP_ALIVE,
            "h11_max_incomplete_event_size": MAX_HEAD, "limit_concurrency": CONCURRENCY}


def describe() -> str:
    return (f"limits per server process: request head {MAX_HEAD // 1024} KiB sent within {HEAD_TIMEOUT:g} s; "
            f"keep-alive {KEEP_ALIVE} s; {MAX_CONNECTIONS} open connections (the longest-idle closed past it); "
            f"request body {MAX_BODY // 2**20} MiB")
