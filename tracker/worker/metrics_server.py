"""Each worker's own counters over HTTP: `/metrics` on TRACKER_WORKER_METRICS_PORT.

prometheus-client's multiprocess mode, as it documents it: the worker's pool children write
their counters to files in the worker's own folder (`tracker.metrics.enable_worker_metrics`),
the worker's main process serves them merged (`MultiProcessCollector`) from a thread of its own,
and a pool child that exits is marked dead (`mark_process_dead`). The server binds before Celery
starts, so a port that is taken stops the worker before it consumes anything.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING

from tracker.errors import PortUnavailable

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

__all__ = [
    "HOST_SETTING",
    "SETTING",
    "close_inherited_server",
    "forget_pool_process",
    "metrics_url",
    "port_fix",
    "serve_worker_metrics",
    "stop_serving",
]

SETTING = "TRACKER_WORKER_METRICS_PORT"
HOST_SETTING = "TRACKER_WORKER_METRICS_HOST"

_server: WSGIServer | None = None  # this process's server, or the one its parent forked


def metrics_url(host: str, port: int) -> str:
    where = f"[{host}]" if ":" in host else host
    return f"http://{where}:{port}/metrics"


def port_fix(source: str, error: OSError | None = None, *, host: str = "") -> str:
    """What to do about a metrics port that cannot be served: `source` is what chose it
    (e.g. "TRACKER_WORKER_METRICS_PORT=9101"), `error` why it cannot be bound."""
    if isinstance(error, socket.gaierror):  # the host is the problem, not the port
        return f"{HOST_SETTING}={host} is no address of this machine"
    if source.startswith(SETTING):
        return f"{source}: choose a free port, or unset it for none"
    return f"{source}: choose a free port"


def serve_worker_metrics(folder: Path, *, host: str, port: int, source: str = "") -> str:
    """Serve the counters written under `folder` at `/metrics` on host:port, from a daemon
    thread; returns the URL. `source` says what chose the port (default: the setting).

    Raises PortUnavailable, one line naming the port and its setting, when it cannot bind.
    """
    global _server
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry, path=str(folder))  # type: ignore[no-untyped-call]
    try:
        _server, _ = start_http_server(port, addr=host, registry=registry)
    except OSError as error:  # taken, not ours to bind, or a host name that does not resolve
        raise PortUnavailable(
            f"cannot serve the worker's metrics on {host}:{port}: {error.strerror or error} "
            f"({port_fix(source or f'{SETTING}={port}', error, host=host)})"
        ) from None
    return metrics_url(host, port)


def stop_serving() -> None:
    """Stop this process's server (the worker's ends with its process; tests stop theirs)."""
    global _server
    if _server is not None:
        _server.shutdown()
        _server.server_close()
        _server = None


def close_inherited_server() -> None:
    """In a process forked from the worker (a pool child, the embedded beat): close its copy of
    the listening socket, which no thread of this process serves."""
    if _server is not None:
        with contextlib.suppress(OSError):
            _server.socket.close()


def forget_pool_process(pid: int) -> None:
    """What prometheus-client asks when a process of a multiprocess setup exits: its live
    gauges' files go (counters and histograms stay: they keep counting what it did)."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, folder)  # type: ignore[no-untyped-call]
