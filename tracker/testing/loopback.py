"""The plumbing shared by the HTTP test doubles (the TensorsLab simulator, the webhook receiver).

`LoopbackServer` is their base: `start()` serves a `LoopbackHandler` subclass in a background
thread (one more thread per connection), `stop()` returns promptly, closing kept-alive
connections so no handler answers afterwards, and `url` is where it listens. Underneath,
`LoopbackHTTPServer` binds without the slow reverse DNS lookup of `HTTPServer` and tracks open
connections; `LoopbackHandler` speaks HTTP/1.1 keep-alive with Nagle off and writes each answer
in one write (so no 40 ms Nagle/delayed-ACK stall). Standard library only.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from types import TracebackType
from typing import Any, Generic, Self, TypeVar, cast

__all__ = ["LoopbackHTTPServer", "LoopbackHandler", "LoopbackServer"]

OwnerT = TypeVar("OwnerT")


class LoopbackHTTPServer(ThreadingHTTPServer, Generic[OwnerT]):
    """A threading HTTP server that knows its `owner` and can close its open connections."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[LoopbackHandler[OwnerT]],
        owner: OwnerT,
        *,
        request_queue_size: int = 128,
        quiet_errors: bool = False,
    ) -> None:
        self.owner = owner
        self.request_queue_size = request_queue_size  # read by server_activate()'s listen()
        self.quiet_errors = quiet_errors
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, handler)

    def server_bind(self) -> None:  # skips HTTPServer's getfqdn(), slow without DNS
        TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """End open connections so no handler thread answers, or lingers, after `stop()`."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not self.quiet_errors:  # quiet: a client that went away mid-answer is expected
            super().handle_error(request, client_address)


class LoopbackHandler(BaseHTTPRequestHandler, Generic[OwnerT]):
    """HTTP/1.1 keep-alive, Nagle off, whole answers in one write; `owner` is the server's.

    A subclass implements `respond(method)` for GET, POST, PUT, PATCH and DELETE.
    """

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # with one write per answer: no 40 ms Nagle/delayed-ACK stall

    @property
    def owner(self) -> OwnerT:
        return cast("LoopbackHTTPServer[OwnerT]", self.server).owner

    def respond(self, method: str) -> None:
        """Read the request (line and headers are parsed already) and answer it."""
        raise NotImplementedError

    def do_GET(self) -> None:
        self.respond("GET")

    def do_POST(self) -> None:
        self.respond("POST")

    def do_PUT(self) -> None:
        self.respond("PUT")

    def do_PATCH(self) -> None:
        self.respond("PATCH")

    def do_DELETE(self) -> None:
        self.respond("DELETE")

    def send_whole(
        self,
        status: int,
        body: bytes,
        *,
        content_type: str,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """Status line, headers and body in a single write; a dead client closes the connection."""
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
        lines = [
            f"HTTP/1.1 {status} {phrase}",
            f"Server: {self.server_version}",
            f"Date: {self.date_time_string()}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
            f"Connection: {'close' if self.close_connection else 'keep-alive'}",
            *(f"{name}: {value}" for name, value in headers),
        ]
        try:
            self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        except OSError:
            self.close_connection = True


class LoopbackServer:
    """Base of a test double served over HTTP in a background thread: start/stop, `with`, `url`.

    A subclass passes its handler class (a `LoopbackHandler` whose `owner` is the subclass
    instance) and a `name` used in messages ("the simulator is not started") and thread names.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        handler: type[LoopbackHandler[Any]],
        name: str,
        request_queue_size: int = 128,
        quiet_errors: bool = False,
    ) -> None:
        self.host, self.port = host, port  # port 0: any free port, set by start()
        self._handler = handler
        self._name = name
        self._request_queue_size = request_queue_size
        self._quiet_errors = quiet_errors
        self._server: LoopbackHTTPServer[Self] | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        """Listen and serve in a background thread; does nothing when already started."""
        if self._server is None:
            self._server = LoopbackHTTPServer(
                (self.host, self.port),
                self._handler,
                self,
                request_queue_size=self._request_queue_size,
                quiet_errors=self._quiet_errors,
            )
            self.port = self._server.server_address[1]
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"{self._name.removeprefix('the ').replace(' ', '-')}:{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close open connections; returns once the serving thread is gone."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            server.close_connections()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """`http://host:port`, without a trailing slash; append any path."""
        if self._server is None:
            raise RuntimeError(f"{self._name} is not started; call start() first")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"
