"""When a task is next polled: pure arithmetic over the task's age, status and error streak.

The default schedule is built for real TensorsLab videos, which take about 2 to 15 minutes:

- first poll `first_delay_s` (5 s) after registration, to catch IDs that are wrong or fail at once;
- then quiet until the task is `quiet_until_s` (90 s) old: no real video finishes sooner, so
  polls in between would only cost the upstream (`bench/politeness.py` measures it);
- then every `age * INTERVAL_PER_AGE`, clamped to [`min_interval_s`, `max_interval_s`]
  (5 s .. 20 s), which is `max_interval_s` from then on: inside the window where videos finish
  the interval is flat, the best trade between polls and detection delay when finishing times
  are spread evenly. With `quiet_until_s` 0 the early polls come at about 5, 10, 15, 23, 34 s;
- `uploading` means the URLs are moments away, so it is polled at `min_interval_s`;
- errors back off exponentially from there up to `error_max_backoff_s`, never sooner than a
  `Retry-After` the upstream asked for (the caller applies that after jitter);
- every delay gets +-`JITTER_RATIO` jitter so tasks registered together spread out, except that
  jitter never stretches a normal interval past `max_interval_s`: that bound is a promise about
  the detection delay.

Image tasks (provider `tensorslab-image`) take seconds to a minute, so they have knobs of their
own (`TRACKER_IMAGE_POLL_*`): first poll at 2 s, no quiet period, then every half of the age
within 2 s .. 5 s (about 2, 4, 6, 9, 13.5, 18.5 s ... then every 5 s). The error backoff, the
pauses, the not-found grace and the maximum age are shared. `PollPolicy.for_provider` picks.

The adaptive schedule (`adaptive.py`) gives a task the `early_age_s` learned for its bucket:
after its first poll, a task answering normally is not polled again before that age if it is
later than the default's next poll; the wait is jittered only downwards (by at most 10 % of it
or one maximum interval, whichever is less), so a task finishing after the early age is still
seen within `max_interval_s`.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

from tracker.settings import Settings
from tracker.states import TaskStatus
from tracker.upstream.names import IMAGE_PROVIDER, PROVIDERS

__all__ = [
    "INTERVAL_PER_AGE",
    "JITTER_RATIO",
    "PollPolicy",
    "error_backoff_s",
    "jittered",
    "next_poll_delay_s",
    "policies_by_provider",
    "poll_interval_s",
]

INTERVAL_PER_AGE = 0.5  # poll a young task every half of its age, within the min/max bounds
JITTER_RATIO = 0.1  # each delay is multiplied by a factor drawn from [0.9, 1.1]
_MAX_BACKOFF_EXPONENT = 20  # 2**20 is past any sane cap; avoids float overflow on long streaks


@dataclass(frozen=True, slots=True, kw_only=True)
class PollPolicy:
    """The knobs of the schedule, in seconds."""

    first_delay_s: float = 5.0
    min_interval_s: float = 5.0
    max_interval_s: float = 20.0
    error_max_backoff_s: float = 300.0
    no_credits_pause_s: float = 600.0
    auth_pause_s: float = 300.0  # after a 401/403: then one probe poll
    unreachable_after_s: float = 180.0  # every request failing to connect this long: pause
    unreachable_pause_s: float = 120.0  # how long that pause lasts before its probe poll
    not_found_grace_s: float = 300.0
    max_tracking_age_s: float = 86400.0
    quiet_until_s: float = 90.0  # after the first poll, the next waits until this age (0: off)
    early_age_s: float = 0.0  # learned for the task's bucket (adaptive.py); 0: none

    @classmethod
    def from_settings(cls, settings: Settings) -> PollPolicy:
        return cls(
            first_delay_s=settings.poll_first_delay_s,
            min_interval_s=settings.poll_min_interval_s,
            max_interval_s=settings.poll_max_interval_s,
            error_max_backoff_s=settings.error_max_backoff_s,
            no_credits_pause_s=settings.no_credits_pause_s,
            auth_pause_s=settings.auth_pause_s,
            unreachable_after_s=settings.unreachable_after_s,
            unreachable_pause_s=settings.unreachable_pause_s,
            not_found_grace_s=settings.not_found_grace_s,
            max_tracking_age_s=settings.max_tracking_age_s,
            quiet_until_s=settings.poll_quiet_until_s,
        )

    @classmethod
    def for_provider(cls, settings: Settings, provider: str) -> PollPolicy:
        """The schedule of `provider`'s tasks: video's `TRACKER_POLL_*` knobs, or the image
        ones (`TRACKER_IMAGE_POLL_*`) for `tensorslab-image`."""
        policy = cls.from_settings(settings)
        if provider != IMAGE_PROVIDER:
            return policy
        return dataclasses.replace(
            policy,
            first_delay_s=settings.image_poll_first_delay_s,
            min_interval_s=settings.image_poll_min_interval_s,
            max_interval_s=settings.image_poll_max_interval_s,
            quiet_until_s=settings.image_poll_quiet_until_s,
        )


def policies_by_provider(settings: Settings) -> dict[str, PollPolicy]:
    """Every provider's schedule, by provider name."""
    return {name: PollPolicy.for_provider(settings, name) for name in PROVIDERS}


def poll_interval_s(policy: PollPolicy, *, age_s: float, status: TaskStatus) -> float:
    """The delay before the next poll of a live task that answered normally (no jitter)."""
    if status is TaskStatus.UPLOADING:
        return policy.min_interval_s
    return min(max(age_s * INTERVAL_PER_AGE, policy.min_interval_s), policy.max_interval_s)


def next_poll_delay_s(
    policy: PollPolicy, *, age_s: float, status: TaskStatus, rng: random.Random
) -> float:
    """The jittered delay before the next poll of a live task that answered normally.

    Inside the quiet period the next poll is at its end; after it, jitter may shorten the
    interval but never lengthen it past `max_interval_s`. Before a learned early age that ends
    later than the quiet period, the next poll is at the early age, jittered only downwards.
    """
    interval_s = poll_interval_s(policy, age_s=age_s, status=status)
    early_s = policy.early_age_s
    if (
        status is not TaskStatus.UPLOADING
        and early_s > policy.quiet_until_s
        and age_s + interval_s < early_s
    ):
        wait_s = early_s - age_s
        return wait_s - rng.uniform(0.0, min(wait_s * JITTER_RATIO, policy.max_interval_s))
    if status is not TaskStatus.UPLOADING and age_s + interval_s < policy.quiet_until_s:
        return jittered(policy.quiet_until_s - age_s, rng)
    return min(jittered(interval_s, rng), max(interval_s, policy.max_interval_s))


def error_backoff_s(
    policy: PollPolicy,
    *,
    age_s: float,
    status: TaskStatus,
    consecutive_errors: int,
) -> float:
    """The delay after the `consecutive_errors`-th failed poll in a row (1 = first failure)."""
    exponent = min(max(consecutive_errors, 1), _MAX_BACKOFF_EXPONENT)
    normal = poll_interval_s(policy, age_s=age_s, status=status)
    return min(normal * 2.0**exponent, max(policy.error_max_backoff_s, normal))


def jittered(delay_s: float, rng: random.Random) -> float:
    """`delay_s` spread by +-JITTER_RATIO."""
    return delay_s * rng.uniform(1.0 - JITTER_RATIO, 1.0 + JITTER_RATIO)
