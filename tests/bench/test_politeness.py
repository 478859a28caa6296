"""The politeness benchmark runs and reports every schedule (never how good the figures are)."""

from __future__ import annotations

import math

from bench import politeness


def test_every_schedule_gets_a_row_with_finite_figures() -> None:
    rows = politeness.compute(tasks=200, seed=3)

    assert [name for name, _ in rows] == list(politeness.SCHEDULES)
    for name, figures in rows:
        assert figures["polls_per_task"] >= 1, name
        assert all(math.isfinite(value) and value >= 0 for value in figures.values()), name
    assert politeness.table(rows).count("\n") == len(rows) + 1


def test_a_fixed_schedule_detects_within_its_interval() -> None:
    [figures] = [f for name, f in politeness.compute(tasks=500, seed=1) if name == "fixed 10 s"]
    assert figures["delay_max_s"] <= 10.0
