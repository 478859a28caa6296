"""What one delivery attempt means: delivered, retry later, or give up. Pure, table-tested.

Only a 2xx answer is success; a redirect is a failure (redirects are never followed). 410 Gone
ends the delivery and disables the endpoint. Other failures wait per the retry schedule
(like Svix: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h) with +-20% jitter; 429, 502, 503 and 504
wait at least their `Retry-After`, up to an hour. When the schedule is exhausted the delivery
is `failed` (dead): kept, visible and replayable.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from tracker.states import DeliveryStatus

__all__ = [
    "AttemptResult",
    "DeliveryDecision",
    "decide_after_attempt",
]

JITTER_RATIO = 0.2
RETRY_AFTER_STATUSES = frozenset({429, 502, 503, 504})
MAX_RETRY_AFTER_S = 3600.0


@dataclass(frozen=True, slots=True)
class AttemptResult:
    status_code: int | None  # None: no HTTP answer (refused, timeout, connection error)
    error: str | None = None
    retry_after_s: float | None = None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True, slots=True)
class DeliveryDecision:
    status: DeliveryStatus  # pending (to be retried), delivered, failed (dead)
    next_attempt_at: datetime | None
    disable_endpoint_reason: str | None = None


def decide_after_attempt(
    result: AttemptResult,
    *,
    attempt_number: int,
    schedule_s: Sequence[float],
    now: datetime,
    rng: random.Random,
) -> DeliveryDecision:
    """The delivery's next state after its `attempt_number`-th attempt (1 = the first)."""
    if result.succeeded:
        return DeliveryDecision(DeliveryStatus.DELIVERED, None)
    if result.status_code == 410:
        return DeliveryDecision(
            DeliveryStatus.FAILED, None, disable_endpoint_reason="the receiver answered 410 Gone"
        )
    if attempt_number > len(schedule_s):
        return DeliveryDecision(DeliveryStatus.FAILED, None)
    delay_s = schedule_s[attempt_number - 1] * rng.uniform(1 - JITTER_RATIO, 1 + JITTER_RATIO)
    if result.status_code in RETRY_AFTER_STATUSES and result.retry_after_s is not None:
        delay_s = max(delay_s, min(result.retry_after_s, MAX_RETRY_AFTER_S))
    return DeliveryDecision(DeliveryStatus.PENDING, now + timedelta(seconds=delay_s))
