"""What every benchmark scenario returns: rows of one table, each a figure with its comparison.

A scenario measures tracker and what users would write instead side by side in the same run, so
each row carries the ratio to its baseline and, where the project set one, the target it is held
to. `bench.report` turns the rows into `bench/results/latest.md` and `latest.json`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Row", "ScenarioResult"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    """One measured figure, e.g. subject="tracker", metric="polls/s", value=812.0."""

    subject: str  # who was measured: "tracker", "plain requests loop", ...
    metric: str  # what, with its unit: "polls/s", "delay p99 (s)", "claim p50 (ms)"
    value: float
    ratio: float | None = None  # value / the baseline's value, measured in the same run
    baseline: str | None = None  # the subject the ratio is taken against
    target: str | None = None  # the project's target, in words: ">= 0.6x plain loop"
    met: bool | None = None  # whether the target is met; None where there is none
    note: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ScenarioResult:
    """All rows of one scenario, with the sizes and settings it ran with."""

    scenario: str  # "poll throughput", "detection delay", ...
    rows: tuple[Row, ...]
    parameters: dict[str, Any] = field(default_factory=dict)  # sizes, settings, flags
    notes: tuple[str, ...] = ()  # findings: bottlenecks, profiles, why a target is missed

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
