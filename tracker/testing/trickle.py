"""Writing an answer one byte at a time, for the test doubles (the receiver and the simulator).

A peer that trickles its answer keeps every socket read of the client short, so only a deadline
on the whole attempt ends it. The trickle stops as soon as the client goes away (it closed or
shut down its end: its FIN is noticed while waiting, not only at the next failed write) or the
server stops, so a double's "still answering" is what the client sees.
"""

from __future__ import annotations

import contextlib
import io
import select
import socket
import threading
import time

__all__ = ["trickle"]

_CHECK_S = 0.05  # how often, while waiting, the client's end is looked at


def trickle(
    wfile: io.BufferedIOBase,
    sock: socket.socket,
    data: bytes,
    *,
    every_s: float,
    stop: threading.Event,
) -> bool:
    """Write `data` one byte every `every_s` seconds (each after a wait); True if all of it was."""
    with contextlib.suppress(OSError):
        for index in range(len(data)):
            if not _wait(sock, every_s, stop):
                return False
            wfile.write(data[index : index + 1])
            wfile.flush()
        return True
    return False


def _wait(sock: socket.socket, seconds: float, stop: threading.Event) -> bool:
    """Wait `seconds`; False at once if the server stops or the client has gone away."""
    until = time.monotonic() + seconds
    while (left := until - time.monotonic()) > 0:
        if stop.is_set():
            return False
        readable, _, _ = select.select([sock], [], [], min(left, _CHECK_S))
        if readable:
            try:
                if sock.recv(1, socket.MSG_PEEK) == b"":
                    return False  # end of stream: the client closed or shut down its end
            except OSError:
                return False
            stop.wait(min(left, _CHECK_S))  # unread bytes (not expected): keep waiting
    return not stop.is_set()
