"""Slowing down wrong bearer tokens, per client address, before they reach the database.

Every token check is charged to the caller's address in a leaky bucket: `burst` checks may be
made at once, then one more every `interval_s`. A check that finds the token is handed back, so
only wrong (unknown or revoked) tokens fill the bucket, and a full one gets 429 with
Retry-After before anything is asked of the database. Charging before the lookup (not counting
after it) keeps concurrent wrong guesses from slipping past the limit together.

Memory is bounded: at most `max_addresses` buckets (a float pair each), the least recently
charged one dropped first when a new address comes; an emptied bucket is forgotten. IPv6
addresses share a bucket per /64, the block one client usually holds. The record lives in the
process: each API process (uvicorn worker) keeps its own, and behind a reverse proxy every
client is the proxy's address (tracker never trusts X-Forwarded-For), so limit there too.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["AuthFailures", "client_key"]


def client_key(host: str | None) -> str:
    """Whose bucket a request from `host` fills: the IPv4 address, or the IPv6 /64."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class AuthFailures:
    """Leaky buckets of token checks by client key; thread-safe (routes run in a threadpool)."""

    def __init__(
        self,
        *,
        burst: int = 20,
        interval_s: float = 3.0,
        max_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.interval_s = interval_s
        self.max_addresses = max_addresses
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # level, at

    def charge(self, key: str) -> int | None:
        """Count a token check for `key`; None if it may go ahead, else seconds to wait."""
        with self._lock:
            now = self._clock()
            level = self._level(key, now)
            if level + 1 > self.burst:
                return max(1, math.ceil((level + 1 - self.burst) * self.interval_s))
            self._buckets[key] = (level + 1, now)
            self._buckets.move_to_end(key)
            while len(self._buckets) > self.max_addresses:
                self._buckets.popitem(last=False)
            return None

    def refund(self, key: str) -> None:
        """Give back the charge of a check that found its token (or could not decide)."""
        with self._lock:
            now = self._clock()
            level = self._level(key, now) - 1
            if level <= 0:
                self._buckets.pop(key, None)
            elif key in self._buckets:
                self._buckets[key] = (level, now)

    def __len__(self) -> int:
        return len(self._buckets)

    def _level(self, key: str, now: float) -> float:
        found = self._buckets.get(key)
        if found is None:
            return 0.0
        level, at = found
        return max(0.0, level - (now - at) / self.interval_s)
