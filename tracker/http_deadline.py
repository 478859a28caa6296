"""A deadline for a whole outbound HTTP attempt: connect, send, headers and body, all in one.

Why `requests`' ``timeout`` is not enough: ``timeout=(connect, read)`` bounds the connect and then
*each socket read* separately. A peer that sends one byte every 10 s never lets a read wait 15 s,
so an attempt with a 15 s timeout can stay open for minutes (a webhook receiver trickling its
answer held one for 182 s). tracker leases work for a fixed time and only starts a request that
can end before the lease does; that promise needs a bound on the whole attempt, whatever the
peer does.

How: inside ``with attempt_deadline(seconds):`` every connection that `DeadlineAdapter`'s pools
use (new or kept alive) is watched by one watchdog thread per process. When the deadline passes
the watchdog shuts the connection's socket down (``shutdown(SHUT_RDWR)``: a read or write blocked
in another thread returns at once), and the block ends with `DeadlineExceeded`, whatever it was
doing (connecting, sending, waiting for headers or reading the body). Connect and per-read socket
timeouts are also clamped to the time left, so nothing waits past the deadline to begin with.
Name resolution (``getaddrinfo``) cannot be interrupted: it is bounded by the system resolver.

    session = deadline_session()  # or mount DeadlineAdapter / use the Deadline*ConnectionPool
    try:
        with attempt_deadline(15.0):
            response = session.post(url, data=body, timeout=(5, 15))  # the body is read inside
    except DeadlineExceeded as error:
        ...  # error.deadline_s, error.elapsed_s
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import os
import socket
import threading
import time
from types import TracebackType
from typing import Any, Self

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.timeout import _DEFAULT_TIMEOUT, Timeout

__all__ = [
    "AttemptDeadline",
    "DeadlineAdapter",
    "DeadlineExceeded",
    "DeadlineHTTPConnection",
    "DeadlineHTTPConnectionPool",
    "DeadlineHTTPSConnection",
    "DeadlineHTTPSConnectionPool",
    "attempt_deadline",
    "clamp_timeout",
    "current_attempt",
    "deadline_session",
    "watch_socket",
]


class DeadlineExceeded(requests.Timeout):
    """The attempt did not complete within its deadline and was cut (its sockets shut down)."""

    def __init__(self, deadline_s: float, elapsed_s: float) -> None:
        super().__init__(f"no answer within {deadline_s:g} s (deadline for the complete answer)")
        self.deadline_s = deadline_s
        self.elapsed_s = elapsed_s


def _shut(sock: Any) -> None:
    """Shut a socket down for reading and writing; a blocked recv/send elsewhere returns."""
    raw = sock if isinstance(sock, socket.socket) else getattr(sock, "socket", None)
    if not isinstance(raw, socket.socket) or raw.fileno() == -1:
        return  # closed, or detached (wrapped for TLS: the wrapper is watched instead)
    with contextlib.suppress(OSError):
        # The plain socket's shutdown, also for an SSLSocket: SSLSocket.shutdown would unwrap
        # the TLS object under the thread that is reading through it.
        socket.socket.shutdown(raw, socket.SHUT_RDWR)


class AttemptDeadline:
    """One attempt's deadline: a context manager; see the module docstring."""

    def __init__(self, seconds: float) -> None:
        if not seconds > 0 or math.isinf(seconds):
            raise ValueError(f"a deadline is a positive number of seconds, got {seconds!r}")
        self.deadline_s = seconds
        self.started_at = 0.0
        self.expires_at = 0.0
        self._lock = threading.Lock()
        self._watched: list[Any] = []  # sockets and connections (whose .sock is shut)
        self._finished = False
        self._cut = False
        self._outer: AttemptDeadline | None = None

    # -- for the connections -------------------------------------------------------------------
    def remaining_s(self) -> float:
        return self.expires_at - time.monotonic()

    def watch(self, target: Any) -> None:
        """Shut `target` (a socket, or a connection with ``.sock``) down at the deadline."""
        with self._lock:
            if self._finished:
                return
            if self._cut:  # too late already: do not let it start
                _shut(getattr(target, "sock", target))
                return
            self._watched.append(target)

    def _expire(self) -> None:
        """Called by the watchdog at the deadline."""
        with self._lock:
            if self._finished:
                return
            self._cut = True
            for target in self._watched:
                if isinstance(target, socket.socket):
                    _shut(target)
                else:
                    sock = getattr(target, "sock", None)
                    if sock is not None:
                        _shut(sock)

    @property
    def cut(self) -> bool:
        """The watchdog shut the attempt's sockets down at the deadline."""
        return self._cut

    # -- the context manager -------------------------------------------------------------------
    def __enter__(self) -> Self:
        self.started_at = time.monotonic()
        self.expires_at = self.started_at + self.deadline_s
        self._outer = getattr(_current, "attempt", None)
        _current.attempt = self
        _watchdog.schedule(self)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        now = time.monotonic()
        with self._lock:
            self._finished = True
            cut = self._cut
            self._watched.clear()
        _current.attempt = self._outer
        elapsed = now - self.started_at
        # Cut: whatever the block saw (an error, or a body cut short that looked complete) is the
        # deadline's doing. Failed at or after the deadline (a clamped timeout firing just before
        # the watchdog): the same.
        if cut or (exc is not None and now >= self.expires_at):
            if isinstance(exc, DeadlineExceeded) and exc.deadline_s <= self.deadline_s:
                return None  # an inner, shorter deadline already said so
            if exc is None or isinstance(exc, Exception):
                raise DeadlineExceeded(self.deadline_s, elapsed) from exc
        return None


def attempt_deadline(seconds: float) -> AttemptDeadline:
    """``with attempt_deadline(s):`` bounds the requests calls inside to `s` seconds in all."""
    return AttemptDeadline(seconds)


_current = threading.local()


def current_attempt() -> AttemptDeadline | None:
    """The deadline this thread is inside, if any."""
    return getattr(_current, "attempt", None)


def watch_socket(sock: socket.socket) -> socket.socket:
    """Watch a socket just made for the current attempt (none: nothing); returns it."""
    attempt = current_attempt()
    if attempt is not None:
        attempt.watch(sock)
    return sock


def clamp_timeout(timeout: Any) -> Any:
    """A connect or read timeout (seconds, None or urllib3's default) no longer than the time
    left in the current attempt; unchanged outside one."""
    attempt = current_attempt()
    if attempt is None:
        return timeout
    left = max(attempt.remaining_s(), 0.001)
    if timeout is None or timeout is _DEFAULT_TIMEOUT:
        return left
    return min(float(timeout), left)


class _Watchdog:
    """One thread per process that cuts attempts at their deadlines (a heap of deadlines)."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)  # threads do not survive fork

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, AttemptDeadline]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def schedule(self, attempt: AttemptDeadline) -> None:
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="tracker-http-deadline", daemon=True
                )
                self._thread.start()
            heapq.heappush(self._heap, (attempt.expires_at, next(self._order), attempt))
            self._cond.notify()

    def _run(self) -> None:
        cond, heap = self._cond, self._heap
        while True:
            with cond:
                while heap and heap[0][2]._finished:
                    heapq.heappop(heap)
                if not heap:
                    cond.wait()
                    continue
                wait = heap[0][0] - time.monotonic()
                if wait > 0:
                    cond.wait(wait)
                    continue
                attempt = heapq.heappop(heap)[2]
            attempt._expire()


_watchdog = _Watchdog()


# -- urllib3 and requests plumbing -------------------------------------------------------------


def _clamped(timeout: Any) -> Any:
    """urllib3's per-request timeout with connect and read no longer than the time left."""
    if current_attempt() is None:
        return timeout
    if isinstance(timeout, Timeout):
        return Timeout(
            connect=clamp_timeout(timeout.connect_timeout), read=clamp_timeout(timeout.read_timeout)
        )
    value = clamp_timeout(timeout)
    return Timeout(connect=value, read=value)


class _DeadlinePoolMixin:
    """Watches every connection a request uses, and clamps its timeouts, inside a deadline."""

    def _make_request(self, conn: Any, *args: Any, **kwargs: Any) -> Any:
        attempt = current_attempt()
        if attempt is not None:
            attempt.watch(conn)  # a kept-alive one, or a new one (its .sock once connected)
            if "timeout" in kwargs:
                kwargs["timeout"] = _clamped(kwargs["timeout"])
        return super()._make_request(conn, *args, **kwargs)  # type: ignore[misc]


class DeadlineHTTPConnection(HTTPConnection):
    """Watches its new socket from the start (the TLS handshake happens before ``.sock``)."""

    def _new_conn(self) -> socket.socket:
        return watch_socket(super()._new_conn())


class DeadlineHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        return watch_socket(super()._new_conn())


class DeadlineHTTPConnectionPool(_DeadlinePoolMixin, HTTPConnectionPool):
    ConnectionCls: type[HTTPConnection] = DeadlineHTTPConnection


class DeadlineHTTPSConnectionPool(_DeadlinePoolMixin, HTTPSConnectionPool):
    ConnectionCls: type[HTTPSConnection] = DeadlineHTTPSConnection


class DeadlineAdapter(HTTPAdapter):
    """An HTTPAdapter whose pools honour `attempt_deadline` (through HTTP proxies too)."""

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": DeadlineHTTPConnectionPool,
            "https": DeadlineHTTPSConnectionPool,
        }

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS pools have their own connections
            manager.pool_classes_by_scheme = {
                "http": DeadlineHTTPConnectionPool,
                "https": DeadlineHTTPSConnectionPool,
            }
        return manager


def deadline_session(session: requests.Session | None = None) -> requests.Session:
    """`session` (or a new one) with `DeadlineAdapter` mounted for http:// and https://."""
    session = session or requests.Session()
    adapter = DeadlineAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
