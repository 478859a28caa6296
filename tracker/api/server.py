"""How uvicorn serves the API: the options `tracker api` and `tracker up` use, and a time limit
on reading each request.

A client that sends its request a byte at a time would otherwise hold its connection (and a
slot of the server's) forever: uvicorn's own timeout only covers idle kept-alive connections.
The headers arrive before any ASGI code runs, inside uvicorn's HTTP protocol (h11), so the limit
is kept there, in `RequestTimeoutProtocol`: one clock per request, started when the connection
opens (or, on a kept-alive connection, when the previous response has been sent) and stopped
once the request has arrived whole, headers and body. When it runs out first the client gets
408 and the connection is closed; a request the app is reading sees a disconnect, as if the
client had gone. The time the app takes to answer is not counted.

The protocol is always h11 (also when httptools is installed): the limit is written against
h11's connection states, and WebSockets are off (the API has none).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from tracker.settings import Settings

__all__ = ["RequestTimeoutProtocol", "request_timeout_protocol", "server_options"]

log = logging.getLogger(__name__)


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options for the API (beside app, host, port and log level)."""
    return {
        "http": request_timeout_protocol(settings.api_request_timeout_s),
        "ws": "none",
        "server_header": False,
        "proxy_headers": False,  # behind a proxy, set it up there; never trust X-Forwarded-* here
        # Requests still running after the grace period are cut; `up` kills it then anyway.
        "timeout_graceful_shutdown": max(1, int(settings.shutdown_grace_s)),
    }


def request_timeout_protocol(timeout_s: float) -> type[RequestTimeoutProtocol]:
    """The protocol class for uvicorn's `http=`, with this time limit per request."""
    if timeout_s <= 0:
        raise ValueError(f"the request time limit must be positive, got {timeout_s}")
    name = f"RequestTimeoutProtocol{timeout_s:g}s"
    return type(name, (RequestTimeoutProtocol,), {"request_timeout_s": float(timeout_s)})


def _timeout_response(timeout_s: float) -> bytes:
    message = (
        f"the request did not arrive whole within {timeout_s:g} s "
        "(TRACKER_API_REQUEST_TIMEOUT_S); the connection is closed"
    )
    payload = {"error": {"code": "request_timeout", "message": message, "details": []}}
    body = json.dumps(payload, separators=(",", ":")).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class RequestTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol with a time limit on receiving each request (see the module)."""

    request_timeout_s: float = 10.0
    _request_clock: asyncio.TimerHandle | None = None
    _request_begun = False  # a byte of the request the clock is timing has arrived

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_clock(begun=False)

    def data_received(self, data: bytes) -> None:
        if data and self.conn.their_state is h11.IDLE:
            self._request_begun = True
        super().data_received(data)
        self._stop_clock_once_received()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # When the connection is kept alive, uvicorn has now started the next cycle (our side is
        # no longer DONE) and handled whatever the client had already sent of the next request.
        if self.transport.is_closing() or self.conn.our_state in (h11.DONE, h11.MUST_CLOSE):
            return
        self._start_clock(begun=self.conn.their_state is not h11.IDLE or self._buffered())
        self._stop_clock_once_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_clock()
        super().connection_lost(exc)

    # -- the clock ----------------------------------------------------------------------------

    def _buffered(self) -> bool:
        data, _closed = self.conn.trailing_data
        return bool(data)

    def _start_clock(self, *, begun: bool) -> None:
        self._cancel_clock()
        self._request_begun = begun
        self._request_clock = self.loop.call_later(self.request_timeout_s, self._out_of_time)

    def _cancel_clock(self) -> None:
        if self._request_clock is not None:
            self._request_clock.cancel()
            self._request_clock = None

    def _stop_clock_once_received(self) -> None:
        if self.conn.their_state is not h11.IDLE and self.conn.their_state is not h11.SEND_BODY:
            self._cancel_clock()  # DONE: the whole request is here (or the connection is ending)

    def _out_of_time(self) -> None:
        self._request_clock = None
        if self.transport.is_closing():
            return
        state = self.conn.their_state
        if state is not h11.IDLE and state is not h11.SEND_BODY:
            return
        cycle = self.cycle if state is h11.SEND_BODY else None
        if cycle is not None:
            # The app may be waiting for the rest of the body: it sees the client go.
            cycle.disconnected = True
            cycle.message_event.set()
        answered = cycle is not None and cycle.response_started
        if self._request_begun and not answered:
            self.transport.write(_timeout_response(self.request_timeout_s))
        # else: an idle connection has nothing to be told, and an answered one no room for it
        log.debug(
            "closing the connection from %s: no whole request within %g s",
            f"{self.client[0]}:{self.client[1]}" if self.client else "?",
            self.request_timeout_s,
        )
        self.transport.close()
