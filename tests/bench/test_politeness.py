"""The politeness benchmark runs and reports every schedule (never how good the figures are)."""

from __future__ import annotations

import argparse
import math

from bench import politeness, politeness_mix


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


def test_the_mix_reports_every_schedule_at_every_interval_with_learned_early_ages() -> None:
    rows, learned = politeness_mix.compute_mix(tasks=800, seed=2)

    names = [name for name, _ in rows]
    for interval_s in politeness_mix.INTERVALS_S:
        assert politeness_mix.adaptive_name(interval_s) in names
        assert politeness_mix.default_name(interval_s) in names
        assert set(learned[politeness_mix.adaptive_name(interval_s)]) == {
            kind.name for kind in politeness_mix.BUCKETS
        }
    assert {"mix: fixed 5 s", "mix: fixed 10 s", "mix: fixed 20 s"} <= set(names)
    for name, figures in rows:
        assert figures["polls_per_task"] >= 1, name
        assert all(math.isfinite(value) and value >= 0 for value in figures.values()), name
        assert 0 <= figures["late_share_pct"] <= 100, name


def test_on_the_mix_a_fixed_client_is_never_later_than_its_interval() -> None:
    rows, _ = politeness_mix.compute_mix(tasks=500, seed=1)
    figures = dict(rows)
    assert figures["mix: fixed 10 s"]["delay_max_s"] <= 10.0
    assert figures["mix: fixed 10 s"]["late_share_pct"] == 0.0


def test_without_mid_run_failures_no_completed_task_of_a_steady_stream_is_late() -> None:
    """The early age is learned below every finishing time of its bucket (p01, less 10 %)."""
    rows, _ = politeness_mix.compute_mix(tasks=2000, seed=4, midrun_failure_share=0.0)
    for name, figures in rows:
        assert figures["late_share_pct"] == 0.0, name


def test_learning_as_it_runs_reports_the_same_figures() -> None:
    figures = politeness_mix.measure_learning(tasks=800, seed=1, interval_s=20.0)
    assert set(figures) >= {"polls_per_task", "delay_p95_s", "late_share_pct"}
    assert all(math.isfinite(value) and value >= 0 for value in figures.values())


def test_the_scenario_judges_each_adaptive_row_against_its_client() -> None:
    args = argparse.Namespace(
        politeness_tasks=300,
        politeness_seed=1,
        politeness_mix_tasks=800,
        politeness_midrun_failures=1.0,
    )
    result = politeness.run(args)
    judged = {row.subject: row for row in result.rows if row.target and "mix" in row.subject}
    assert set(judged) == {politeness_mix.adaptive_name(i) for i in politeness_mix.INTERVALS_S}
    assert all(row.met in (True, False) and row.baseline for row in judged.values())
    subjects = {row.subject for row in result.rows}
    assert {politeness.LEARNING, politeness.DOUBLE} <= subjects
