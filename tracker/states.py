"""The shared vocabulary: task and delivery statuses, and the rules for moving between them.

Pure data and functions, no I/O.

Upstream reports 1 pending, 2 processing, 5 uploading, 3 completed, 4 failed. Tracker adds
`registered` (not polled yet) and three outcomes of its own: `not_found`, `expired`, `cancelled`.
"""

from __future__ import annotations

import enum

__all__ = [
    "TERMINAL_STATUSES",
    "DeliveryStatus",
    "TaskStatus",
    "can_transition",
    "status_from_upstream_code",
]


class TaskStatus(enum.StrEnum):
    REGISTERED = "registered"  # known to tracker, not polled yet
    PENDING = "pending"  # upstream task_status 1: queued at the provider
    PROCESSING = "processing"  # upstream task_status 2: the video is being generated
    UPLOADING = "uploading"  # upstream task_status 5: generated, being uploaded; URLs soon
    COMPLETED = "completed"  # upstream task_status 3: done, result URLs known (terminal)
    FAILED = "failed"  # upstream task_status 4: the provider gave up, message says why (terminal)
    NOT_FOUND = "not_found"  # upstream answered 404 for longer than the grace period (terminal)
    EXPIRED = "expired"  # tracked for longer than the maximum tracking age (terminal)
    CANCELLED = "cancelled"  # the user stopped tracking it (terminal)

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {
        TaskStatus.COMPLETED,
        TaskStatus.FAILED,
        TaskStatus.NOT_FOUND,
        TaskStatus.EXPIRED,
        TaskStatus.CANCELLED,
    }
)

_UPSTREAM_CODES: dict[int, TaskStatus] = {
    1: TaskStatus.PENDING,
    2: TaskStatus.PROCESSING,
    3: TaskStatus.COMPLETED,
    4: TaskStatus.FAILED,
    5: TaskStatus.UPLOADING,
}


def status_from_upstream_code(code: int) -> TaskStatus:
    """Map TensorsLab's `task_status`; raises `ValueError` for a code outside the contract."""
    try:
        return _UPSTREAM_CODES[code]
    except KeyError:
        raise ValueError(f"task_status {code!r} is not one of 1, 2, 3, 4, 5") from None


def can_transition(current: TaskStatus, new: TaskStatus) -> bool:
    """Whether a task in `current` may move to `new`.

    Terminal statuses are final. Nothing moves back to `registered`. Among the live statuses any
    move is allowed, because upstream is the authority on where a task is (it may, say, report
    pending again after processing when it requeues a job); the tracker records what it was told.
    A move to the same status is not a transition.
    """
    if current.is_terminal or new is TaskStatus.REGISTERED:
        return False
    return current is not new


class DeliveryStatus(enum.StrEnum):
    """Where one webhook delivery stands."""

    PENDING = "pending"  # due now or at `next_attempt_at`; being retried
    DELIVERED = "delivered"  # a 2xx answer came back (final until redelivered by hand)
    FAILED = "failed"  # dead: the retry schedule ran out or the endpoint answered 410 Gone
