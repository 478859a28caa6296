"""The SSRF guard at send time: a `requests.Session` whose every connection is judged.

`guarded_session` mounts an adapter whose urllib3 connections resolve the host themselves and
connect only to an address `AddressPolicy` (`guard.py`) allows, after resolution, so a name
that later resolves to an internal address (DNS rebinding) is still refused and nothing is
sent. Its pools honour `tracker.http_deadline.attempt_deadline` (a bound on the whole attempt,
body included) and its connects wait no longer than the time left. It leans on urllib3 2.x
internals (`HTTPConnection._new_conn`, `_dns_host`), which is why pyproject pins urllib3's major
version. Callers must pass ``allow_redirects=False``.
"""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.timeout import _DEFAULT_TIMEOUT, _TYPE_TIMEOUT

from tracker.http_deadline import (
    DeadlineHTTPConnectionPool,
    DeadlineHTTPSConnectionPool,
    clamp_timeout,
    watch_socket,
)
from tracker.webhooks.guard import (
    SETTING,
    AddressPolicy,
    IPAddress,
    Resolver,
    _ip_literal,
    _parse_address,
    system_resolver,
)

__all__ = ["RefusedAddress", "RefusedConnection", "guarded_session"]

log = logging.getLogger(__name__)


class RefusedAddress(ConnectionError):
    """At send time: the host resolves only to refused addresses, so no connection was made."""

    def __init__(self, message: str, *, host: str = "", reasons: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.host = host
        self.reasons = tuple(reasons)


class RefusedConnection(NewConnectionError):
    """`RefusedAddress` in the shape urllib3 and requests expect from a connection that failed.

    urllib3 wraps any `OSError` from a connection in ``ProtocolError("Connection aborted.")``,
    which reads like a dropped connection; a `NewConnectionError` is reported as what it is, a
    connection that was never made. The original `RefusedAddress` is ``.refused`` (and
    ``__cause__``).
    """

    def __init__(self, conn: HTTPConnection, refused: RefusedAddress) -> None:
        self.refused = refused
        super().__init__(conn, str(refused))


@dataclass(frozen=True)
class _Guard:
    policy: AddressPolicy
    resolve: Resolver


def _connect(
    address: IPAddress,
    port: int,
    timeout: _TYPE_TIMEOUT,
    source_address: tuple[str, int] | None,
    socket_options: Sequence[tuple[int, int, int | bytes]] | None,
) -> socket.socket:
    """One TCP connection to one address, set up as `urllib3.util.connection.create_connection`.

    Inside an attempt deadline (`tracker.http_deadline`) the socket is watched from its creation
    and the connect waits no longer than the time left.
    """
    timeout = clamp_timeout(timeout)
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    af, socktype, proto, _, sockaddr = socket.getaddrinfo(
        str(address), port, family, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST
    )[0]
    sock = watch_socket(socket.socket(af, socktype, proto))
    try:
        for option in socket_options or ():
            sock.setsockopt(*option)
        if timeout is not _DEFAULT_TIMEOUT:
            sock.settimeout(timeout)
        if source_address:
            sock.bind(source_address)
        sock.connect(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


def _guarded_new_conn(conn: HTTPConnection, guard: _Guard) -> socket.socket:
    """`HTTPConnection._new_conn`, connecting only to addresses the policy allows."""
    host = conn._dns_host.strip("[]")
    port = conn.port
    literal = _ip_literal(host)
    candidates: list[str | IPAddress]
    if literal is not None:
        candidates = [literal]
    else:
        try:
            candidates = list(guard.resolve(host, port))
        except socket.gaierror as error:
            raise NameResolutionError(conn.host, conn, error) from error
        except OSError as error:
            raise NewConnectionError(conn, f"Failed to resolve {conn.host!r}: {error}") from error
        if not candidates:
            nothing = socket.gaierror(socket.EAI_NONAME, "the name resolves to no address")
            raise NameResolutionError(conn.host, conn, nothing)
    allowed: list[IPAddress] = []
    reasons: list[str] = []
    for candidate in candidates:
        reason = guard.policy.refusal_reason(candidate)
        parsed = _parse_address(candidate)
        if reason is None and parsed is not None:
            allowed.append(parsed)
        else:
            reasons.append(reason or f"{candidate!r} is not an IP address")
    if not allowed:
        listed = "; ".join(reasons)
        if literal is None:
            listed = f"{host} resolves only to refused addresses ({listed})"
        them = "it" if len(reasons) == 1 else "them"
        refused = RefusedAddress(
            f"refused address: {listed}; allow {them} with {SETTING}",
            host=host,
            reasons=reasons,
        )
        log.warning("webhook connection refused: %s", refused)
        raise RefusedConnection(conn, refused) from refused
    if reasons:
        log.info("webhook to %s: skipping refused addresses (%s)", host, "; ".join(reasons))

    last_error: OSError | None = None
    for address in allowed:
        try:
            sock = _connect(address, port, conn.timeout, conn.source_address, conn.socket_options)
        except OSError as error:  # including TimeoutError (socket.timeout)
            last_error = error
        else:
            sys.audit("http.client.connect", conn, conn.host, conn.port)
            return sock
    if isinstance(last_error, TimeoutError):
        raise ConnectTimeoutError(
            conn, f"Connection to {conn.host} timed out. (connect timeout={conn.timeout})"
        ) from last_error
    raise NewConnectionError(
        conn, f"Failed to establish a new connection: {last_error}"
    ) from last_error


class _GuardedHTTPConnection(HTTPConnection):
    guard: ClassVar[_Guard]

    def _new_conn(self) -> socket.socket:
        return _guarded_new_conn(self, self.guard)


class _GuardedHTTPSConnection(HTTPSConnection):
    """Only the TCP target changes: TLS still sends and verifies the URL's host name."""

    guard: ClassVar[_Guard]

    def _new_conn(self) -> socket.socket:
        return _guarded_new_conn(self, self.guard)


def _pool_classes(guard: _Guard) -> dict[str, type[HTTPConnectionPool]]:
    """Connection pool classes whose connections are judged by this guard."""

    class GuardedHTTPConnection(_GuardedHTTPConnection):
        pass

    class GuardedHTTPSConnection(_GuardedHTTPSConnection):
        pass

    GuardedHTTPConnection.guard = guard
    GuardedHTTPSConnection.guard = guard

    class GuardedHTTPConnectionPool(DeadlineHTTPConnectionPool):
        ConnectionCls = GuardedHTTPConnection

    class GuardedHTTPSConnectionPool(DeadlineHTTPSConnectionPool):
        ConnectionCls = GuardedHTTPSConnection

    return {"http": GuardedHTTPConnectionPool, "https": GuardedHTTPSConnectionPool}


class _GuardedAdapter(HTTPAdapter):
    """An HTTPAdapter whose pools connect only to addresses the guard allows; never via a proxy."""

    def __init__(self, guard: _Guard) -> None:
        self._guard = guard  # before super().__init__, which builds the pool manager
        super().__init__()

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = _pool_classes(self._guard)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        raise requests.exceptions.InvalidProxyURL(
            f"webhooks are never sent through a proxy (asked to use {proxy})"
        )


def guarded_session(
    policy: AddressPolicy, *, resolve: Resolver = system_resolver
) -> requests.Session:
    """A `requests.Session` that connects only to addresses ``policy`` allows.

    Every new connection resolves the URL's host with ``resolve`` (an IP-literal host is taken
    as is), drops the refused addresses and connects to the first allowed one that accepts; the
    Host header, TLS SNI and certificate check keep the URL's host name. Proxies from the
    environment are ignored (``trust_env = False``) and explicit ones are rejected. Pass
    ``allow_redirects=False``: redirects must not be followed.

    When every address is refused, nothing is connected and requests raises
    ``requests.exceptions.ConnectionError`` whose ``args[0]`` is a
    ``urllib3.exceptions.MaxRetryError`` with ``.reason`` a `RefusedConnection` (a urllib3
    ``NewConnectionError``) carrying the `RefusedAddress` as ``.refused`` and ``__cause__``.
    Its message reads::

        HTTPConnectionPool(host='hooks.example', port=80): Max retries exceeded with url: /x
        (Caused by RefusedConnection('<...HTTPConnection object at 0x...>: refused address:
        hooks.example resolves only to refused addresses (10.1.2.3 is private); allow them
        with TRACKER_WEBHOOK_ALLOWED_NETWORKS'))
    """
    guard = _Guard(policy, resolve)
    session = requests.Session()
    session.trust_env = False
    adapter = _GuardedAdapter(guard)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
