"""One request rate per API key across every process: a shared token bucket.

`TENSORSLAB_MAX_REQUESTS_PER_S` tokens flow into the bucket each second, up to
`TENSORSLAB_BURST`; every upstream request (a poll or a create, from any worker, the API or the
command line) takes one first. The bucket lives where all of them can see it: in Redis when the
broker is Redis (one Lua script reads, refills and takes atomically, on Redis's clock), else in
the database's `rate_buckets` table (one short transaction holding the row's lock, on the
database's clock). A take never borrows: with no whole token it only says how long until one
may be there, so over any window of W seconds at most `rate * W + burst` requests start.

When the backend cannot be asked (Redis or the database down), no token is given: a cap that
cannot be checked is not exceeded.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tracker.db.models import RateBucket
from tracker.db.upsert import insert_for
from tracker.errors import BrokerUnavailable, one_line
from tracker.settings import Settings

__all__ = [
    "DatabaseBucket",
    "RedisBucket",
    "TokenBucket",
    "acquire",
    "bucket_name",
    "make_bucket",
]

log = logging.getLogger(__name__)

# Redis: refill by the time passed on Redis's own clock, then take one token if there is one.
# Returns the seconds to wait as a string ("0.000000" when taken): Lua numbers returned to
# Redis become integers. Numbers are stored with string.format: Lua's tostring keeps only 14
# significant digits, which rounds an epoch time to 10 ms and would mint tokens on every call.
_TAKE_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
if now > at then
  tokens = math.min(burst, tokens + (now - at) * rate)
  at = now
end
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.9f', tokens),
  'at', string.format('%.6f', at))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 60000)
return string.format('%.6f', wait)
"""


class TokenBucket(Protocol):
    """A bucket shared by every process: `take()` is 0 when a token was taken, else the seconds
    until one may be there (nothing taken)."""

    rate_per_s: float
    burst: int

    def take(self) -> float: ...


def bucket_name(settings: Settings) -> str:
    """The bucket of the configured API key (and base URL): a hash, never the key itself."""
    key = settings.tensorslab_api_key.get_secret_value() if settings.tensorslab_api_key else ""
    digest = hashlib.sha256(f"{settings.tensorslab_base_url}\n{key}".encode()).hexdigest()
    return f"tensorslab:{digest[:32]}"


class RedisBucket:
    """The bucket as a Redis hash, taken from by one atomic script."""

    def __init__(self, client: Any, name: str, *, rate_per_s: float, burst: int) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._key = f"tracker:rate:{name}"
        self._client = client
        self._script = client.register_script(_TAKE_SCRIPT)

    @classmethod
    def from_url(cls, url: str, name: str, *, rate_per_s: float, burst: int) -> RedisBucket:
        import redis  # the Redis transport's own client: there whenever the broker is Redis

        client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        return cls(client, name, rate_per_s=rate_per_s, burst=burst)

    def take(self) -> float:
        try:
            answer = self._script(keys=[self._key], args=[self.rate_per_s, self.burst])
        except Exception as error:  # redis' ConnectionError, TimeoutError, ResponseError...
            raise BrokerUnavailable(
                f"cannot reach the rate limit in Redis: {one_line(error)}"
            ) from None
        return float(answer.decode() if isinstance(answer, bytes) else answer)


SessionFactory = Callable[[], AbstractContextManager[Session]]


class DatabaseBucket:
    """The bucket as a row of `rate_buckets`, read and written under the row's lock."""

    def __init__(
        self, session_scope: SessionFactory, name: str, *, rate_per_s: float, burst: int
    ) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._name = name
        self._session_scope = session_scope

    def take(self) -> float:
        with self._session_scope() as session:
            session.execute(
                insert_for(session, RateBucket)
                .values(name=self._name, tokens=float(self.burst), updated_at_s=0.0)
                .on_conflict_do_nothing(index_elements=["name"])
            )
            # FOR UPDATE on PostgreSQL; on SQLite the transaction (BEGIN IMMEDIATE) holds the
            # write lock already.
            row = session.execute(
                select(RateBucket.tokens, RateBucket.updated_at_s)
                .where(RateBucket.name == self._name)
                .with_for_update()
            ).one()
            # The time is read once the row is ours: read before, it would be as old as the
            # wait for the lock, and the request would leave that much later than its token.
            now = _epoch_now(session)
            tokens, at = float(row.tokens), float(row.updated_at_s)
            if now > at:
                tokens = min(float(self.burst), tokens + (now - at) * self.rate_per_s)
                at = now
            wait = 0.0
            if tokens >= 1:
                tokens -= 1
            else:
                wait = (1 - tokens) / self.rate_per_s
            bucket = session.get(RateBucket, self._name, with_for_update=True)
            assert bucket is not None
            bucket.tokens, bucket.updated_at_s = tokens, at
            return wait


def _epoch_now(session: Session) -> float:
    """The database's clock in epoch seconds (the host's for SQLite, as in `db.clock`)."""
    if session.get_bind().dialect.name == "postgresql":
        moment = session.scalar(select(func.extract("epoch", func.clock_timestamp())))
        if moment is None:  # pragma: no cover - PostgreSQL always answers
            raise TypeError("extract(epoch from clock_timestamp()) returned NULL")
        return float(moment)
    return time.time()


def make_bucket(settings: Settings, session_scope: SessionFactory) -> TokenBucket | None:
    """The configured API key's bucket; None when no cap is set."""
    rate = settings.tensorslab_max_requests_per_s
    if rate is None:
        return None
    burst = settings.rate_limit_burst
    name = bucket_name(settings)
    if settings.broker_url.startswith(("redis://", "rediss://")):
        return RedisBucket.from_url(settings.broker_url, name, rate_per_s=rate, burst=burst)
    return DatabaseBucket(session_scope, name, rate_per_s=rate, burst=burst)


def acquire(
    bucket: TokenBucket,
    *,
    wait_s: float,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> bool:
    """Take a token, waiting up to `wait_s` for one; False (nothing taken) if none came in time
    or the bucket could not be asked."""
    rng = rng or random.Random()
    give_up_at = time.monotonic() + wait_s
    while True:
        try:
            wait = bucket.take()
        except Exception as error:  # DatabaseUnavailable, BrokerUnavailable: fail closed
            log.warning("no rate limit token: %s", one_line(error))
            return False
        if wait <= 0:
            return True
        left = give_up_at - time.monotonic()
        if wait > left:
            return False
        # A little jitter so that processes that waited for the same token do not all ask at
        # the same instant again.
        sleep(min(left, wait + rng.uniform(0, min(wait, 0.05))))
