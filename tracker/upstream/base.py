"""Provider-neutral results of asking an upstream API about one task.

A provider module (e.g. `tensorslab.py`) turns HTTP exchanges into exactly one of these values;
the rest of tracker never sees HTTP. Errors are values, not exceptions, because a batch of polls
must record every outcome and go on:

    PollResult
      TaskReport             the task exists; upstream says where it is (status, URLs, details)
      TaskMissing            upstream says the task does not exist (HTTP 404)
      UpstreamProblem        the question could not be answered this time:
        Throttled              HTTP 429; `retry_after_s` says when to ask again
        InsufficientCredits    the account has no credits (code 9000): pause polling
        UpstreamFailure        upstream answered with its failure code (9999) and a message
        Unauthorized           the API key was refused (HTTP 401/403)
        ContractViolation      an answer outside the documented contract
        Unavailable            5xx, timeout
          Unreachable          no connection at all: refused, DNS, TLS, connect timeout
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from tracker.states import TaskStatus

__all__ = [
    "ContractViolation",
    "InsufficientCredits",
    "PollResult",
    "Provider",
    "TaskMissing",
    "TaskReport",
    "Throttled",
    "Unauthorized",
    "Unavailable",
    "Unreachable",
    "UpstreamFailure",
    "UpstreamProblem",
]


@dataclass(frozen=True, slots=True)
class TaskReport:
    """Upstream knows the task and says where it is."""

    status: TaskStatus
    result_urls: tuple[str, ...] = ()
    message: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)
    payload: Mapping[str, Any] = field(default_factory=dict)  # the whole answer, as recorded


@dataclass(frozen=True, slots=True)
class TaskMissing:
    """Upstream says it has no such task (yet, or ever)."""

    message: str = ""
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class UpstreamProblem:
    """The question could not be answered this time. `kind` is a short stable label."""

    message: str
    retry_after_s: float | None = None

    kind = "problem"

    def describe(self) -> str:
        return f"{self.kind}: {self.message}"


@dataclass(frozen=True, slots=True)
class Throttled(UpstreamProblem):
    kind = "throttled"


@dataclass(frozen=True, slots=True)
class InsufficientCredits(UpstreamProblem):
    kind = "insufficient_credits"


@dataclass(frozen=True, slots=True)
class UpstreamFailure(UpstreamProblem):
    kind = "upstream_failure"


@dataclass(frozen=True, slots=True)
class Unauthorized(UpstreamProblem):
    kind = "unauthorized"


@dataclass(frozen=True, slots=True)
class ContractViolation(UpstreamProblem):
    kind = "contract_violation"


@dataclass(frozen=True, slots=True)
class Unavailable(UpstreamProblem):
    kind = "unavailable"


@dataclass(frozen=True, slots=True)
class Unreachable(Unavailable):
    """No connection could be made (refused, DNS, TLS, connect timeout): nothing answered."""

    kind = "unreachable"


PollResult = TaskReport | TaskMissing | UpstreamProblem


class Provider(Protocol):
    """What the poller needs from an upstream: a name and one question per task."""

    name: str

    def fetch(self, task_id: str) -> PollResult:
        """Ask upstream about `task_id`. Never raises for network or protocol trouble."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
