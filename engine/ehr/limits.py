"""The HTTP limits of `jakcds serve` (per server process), set on uvicorn's httptools protocol.

uvicorn bounds keep-alive idleness and requests in progress, but with httptools (its fast parser,
the project's choice) not the size of a request's head nor the time to send it, nor the number of
open connections: a 48 MiB header is buffered whole, and idle or dripping connections hold file
descriptors until the process has none left for a real EHR call. `LimitedHttpTools` refuses a head
over MAX_HEAD (400) and closes a connection that has not sent its head in HEAD_TIMEOUT seconds;
past MAX_CONNECTIONS open connections it closes the longest-idle one (as nginx reuses idle
keep-alive connections), so a new caller always gets a slot. The values are far above what an
EHR's own traffic reaches.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEAD_TIMEOUT = 10.0  # seconds to send a request's line and headers (slowloris, idle connections)
KEEP_ALIVE = 5  # seconds an idle keep-alive connection stays open between requests
MAX_HEAD = 64 * 1024  # bytes of a request's line and headers; more is a 400 and the connection closes
MAX_BODY = 32 * 1024 * 1024  # bytes of one request (a prefetch of a long chart fits); larger is a 413
MAX_CONNECTIONS = 512  # open connections (the longest-idle closed past it): half the common 1,024 file limit
# requests in progress; uvicorn counts open connections against it too, so it sits above MAX_CONNECTIONS
# (which bounds requests in progress: one per connection) and answers 503 only if that bound fails
CONCURRENCY = MAX_CONNECTIONS + 64


class LimitedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol with a cap and a deadline on the request head and a cap on open
    connections. A head still incomplete is counted in the reads that carry it (so at most one read
    over the cap is buffered); a complete one, by what it holds."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.opened, self.head_bytes = self.loop.time(), 0
        self.head_timer: asyncio.TimerHandle | None = self.loop.call_later(HEAD_TIMEOUT, self._close)
        if len(self.connections) > MAX_CONNECTIONS:
            idle = [c for c in self.connections if c is not self and isinstance(c, LimitedHttpTools) and c.idle()]
            if idle:
                min(idle, key=lambda c: c.opened)._close()

    def data_received(self, data: bytes) -> None:
        if self.head_timer is not None:
            self.head_bytes += len(data)
        super().data_received(data)
        if self.head_timer is not None and self.head_bytes > MAX_HEAD and not self.transport.is_closing():
            self.send_400_response(f"Request head larger than {MAX_HEAD} bytes.")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.head_timer is None:  # the next request of a keep-alive connection
            self.head_timer = self.loop.call_later(HEAD_TIMEOUT, self._close)

    def on_headers_complete(self) -> None:
        if len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers) > MAX_HEAD:
            raise ValueError("request head too large")  # httptools raises it as a parser error: uvicorn's 400
        if self.head_timer is not None:
            self.head_timer.cancel()
        self.head_timer, self.head_bytes = None, 0
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
        super().connection_lost(exc)

    def idle(self) -> bool:
        """No request in progress: none begun, or the last one answered."""
        return self.head_bytes == 0 and (self.cycle is None or self.cycle.response_complete)

    def _close(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()


def uvicorn_options() -> dict[str, Any]:
    return {"http": "jakcds.ehr.limits:LimitedHttpTools", "timeout_keep_alive": KEEP_ALIVE, "limit_concurrency": CONCURRENCY}


def describe() -> str:
    return (f"limits per server process: request head {MAX_HEAD // 1024} KiB sent within {HEAD_TIMEOUT:g} s; "
            f"keep-alive {KEEP_ALIVE} s; {MAX_CONNECTIONS} open connections (the longest-idle closed past it); "
            f"request body {MAX_BODY // 2**20} MiB")
