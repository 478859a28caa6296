"""What one poll result means for one task: a pure function from (task, answer, now) to changes.

`decide()` applies the state machine (`states.py`) and the schedule (`schedule.py`). The poller
writes what it returns; nothing here touches the database or the network, so every row of the
decision table is tested directly.
"""

from __future__ import annotations

import dataclasses
import enum
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tracker.states import TaskStatus, can_transition
from tracker.tasks.schedule import PollPolicy, error_backoff_s, jittered, next_poll_delay_s
from tracker.upstream.base import (
    InsufficientCredits,
    PollResult,
    TaskMissing,
    TaskReport,
    Throttled,
    Unauthorized,
    UpstreamProblem,
)

__all__ = [
    "RETRY_AFTER_SPREAD",
    "PauseCause",
    "PollOutcome",
    "ProviderPause",
    "TaskSnapshot",
    "decide",
    "retry_after_delay_s",
]

# After a Retry-After of R seconds a task's next poll is drawn from [R, R * (1 + spread)].
RETRY_AFTER_SPREAD = 0.5


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSnapshot:
    """The parts of a tracked task that a decision depends on."""

    status: TaskStatus
    created_at: datetime
    not_found_since: datetime | None = None
    consecutive_errors: int = 0


class PauseCause(enum.StrEnum):
    """Why a provider's polling is paused: a short code for machines (metrics, JSON)."""

    NO_CREDITS = "no_credits"  # code 9000: buy credits, then `tracker resume`
    RATE_LIMITED = "rate_limited"  # a 429 with Retry-After: ends by itself
    UNAUTHORIZED = "unauthorized"  # HTTP 401/403: the API key is refused
    UNREACHABLE = "unreachable"  # no connection for longer than TRACKER_UNREACHABLE_AFTER_S

    @property
    def needs_probe(self) -> bool:
        """Whether, once the pause's time is up, one probe poll must show the cause is gone
        before every task is polled again (a 429's wait simply ends)."""
        return self is not PauseCause.RATE_LIMITED


@dataclass(frozen=True, slots=True)
class ProviderPause:
    """Stop polling this provider's tasks until `until`, because `reason` (`cause`, its code)."""

    until: datetime
    reason: str
    cause: PauseCause


@dataclass(frozen=True, slots=True, kw_only=True)
class PollOutcome:
    """The changes one poll makes. `new_status` is None when the status stays the same."""

    new_status: TaskStatus | None
    next_poll_at: datetime | None  # None: never poll again (terminal)
    not_found_since: datetime | None
    consecutive_errors: int
    last_error: str | None  # None clears a previous error
    counts_as_error: bool = False
    result_urls: tuple[str, ...] | None = None  # None: keep what is stored
    upstream_message: str | None = None  # None: keep what is stored
    details: Mapping[str, Any] | None = None  # None: keep what is stored
    payload: Mapping[str, Any] = field(default_factory=dict)  # recorded with a transition
    provider_pause: ProviderPause | None = None

    @property
    def is_terminal(self) -> bool:
        return self.new_status is not None and self.new_status.is_terminal


def decide(
    task: TaskSnapshot,
    result: PollResult,
    *,
    now: datetime,
    policy: PollPolicy,
    rng: random.Random,
) -> PollOutcome:
    """Apply one poll's `result` to `task` at `now`."""
    if task.status.is_terminal:
        raise ValueError(f"a {task.status} task is never polled")
    age_s = (now - task.created_at).total_seconds()
    if isinstance(result, TaskReport):
        outcome = _reported(task, result, now=now, age_s=age_s, policy=policy, rng=rng)
    elif isinstance(result, TaskMissing):
        outcome = _missing(task, result, now=now, age_s=age_s, policy=policy, rng=rng)
    else:
        outcome = _problem(task, result, now=now, age_s=age_s, policy=policy, rng=rng)
    if not outcome.is_terminal and age_s >= policy.max_tracking_age_s:
        return dataclasses.replace(outcome, new_status=TaskStatus.EXPIRED, next_poll_at=None)
    return outcome


def _reported(
    task: TaskSnapshot,
    report: TaskReport,
    *,
    now: datetime,
    age_s: float,
    policy: PollPolicy,
    rng: random.Random,
) -> PollOutcome:
    new_status = report.status if can_transition(task.status, report.status) else None
    status_after = new_status or task.status
    next_poll_at = None
    if not status_after.is_terminal:
        delay_s = next_poll_delay_s(policy, age_s=age_s, status=status_after, rng=rng)
        next_poll_at = now + timedelta(seconds=delay_s)
    return PollOutcome(
        new_status=new_status,
        next_poll_at=next_poll_at,
        not_found_since=None,
        consecutive_errors=0,
        last_error=None,
        result_urls=report.result_urls if report.result_urls else None,
        upstream_message=report.message if report.message else None,
        details=report.details if report.details else None,
        payload=report.payload,
    )


def _missing(
    task: TaskSnapshot,
    missing: TaskMissing,
    *,
    now: datetime,
    age_s: float,
    policy: PollPolicy,
    rng: random.Random,
) -> PollOutcome:
    since = task.not_found_since or now
    missing_for_s = (now - since).total_seconds()
    note = f"not found upstream for {missing_for_s:.0f} s: {missing.message or 'HTTP 404'}"
    if missing_for_s >= policy.not_found_grace_s:
        return PollOutcome(
            new_status=TaskStatus.NOT_FOUND,
            next_poll_at=None,
            not_found_since=since,
            consecutive_errors=0,
            last_error=note,
            upstream_message=missing.message or None,
            payload=missing.payload,
        )
    delay_s = next_poll_delay_s(policy, age_s=age_s, status=task.status, rng=rng)
    remaining_s = policy.not_found_grace_s - missing_for_s
    return PollOutcome(
        new_status=None,
        # Poll again no later than the grace deadline, so not_found is decided on time.
        next_poll_at=now + timedelta(seconds=min(delay_s, max(remaining_s, 0.5))),
        not_found_since=since,
        consecutive_errors=0,
        last_error=note,
    )


def _problem(
    task: TaskSnapshot,
    problem: UpstreamProblem,
    *,
    now: datetime,
    age_s: float,
    policy: PollPolicy,
    rng: random.Random,
) -> PollOutcome:
    streak = task.consecutive_errors + 1
    delay_s = jittered(
        error_backoff_s(policy, age_s=age_s, status=task.status, consecutive_errors=streak), rng
    )
    pause = None
    if isinstance(problem, InsufficientCredits):
        delay_s = max(delay_s, policy.no_credits_pause_s)
        pause = ProviderPause(
            now + timedelta(seconds=delay_s), problem.describe(), PauseCause.NO_CREDITS
        )
    elif isinstance(problem, Unauthorized):
        # A refused key does not fix itself in seconds: wait, then let one probe poll tell.
        delay_s = max(delay_s, policy.auth_pause_s)
        pause = ProviderPause(
            now + timedelta(seconds=policy.auth_pause_s),
            problem.describe(),
            PauseCause.UNAUTHORIZED,
        )
    elif isinstance(problem, Throttled) and problem.retry_after_s:
        pause = ProviderPause(
            now + timedelta(seconds=problem.retry_after_s),
            problem.describe(),
            PauseCause.RATE_LIMITED,
        )
    if problem.retry_after_s is not None:
        # Each task comes back at its own point of a window after the Retry-After: tasks
        # throttled together (and the provider's pause) must not all be released at once.
        delay_s = max(delay_s, retry_after_delay_s(problem.retry_after_s, rng))
    return PollOutcome(
        new_status=None,
        next_poll_at=now + timedelta(seconds=delay_s),
        not_found_since=task.not_found_since,
        consecutive_errors=streak,
        last_error=problem.describe(),
        counts_as_error=True,
        provider_pause=pause,
    )


def retry_after_delay_s(retry_after_s: float, rng: random.Random) -> float:
    """When to poll again after upstream asked to wait `retry_after_s`: never sooner, and
    spread over the following `RETRY_AFTER_SPREAD` of it, so the throttled tasks come back
    a few at a time instead of in one burst when the pause ends."""
    return retry_after_s * rng.uniform(1.0, 1.0 + RETRY_AFTER_SPREAD)
