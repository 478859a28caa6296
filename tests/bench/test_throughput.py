"""The throughput and detection benchmarks run end to end in quick mode and report every row.

They start real processes (the simulator, tracker worker and beat, a Celery worker) on Redis and
PostgreSQL. Only that each expected figure is produced and finite is checked, never its size.
"""

from __future__ import annotations

import argparse
import math
from types import ModuleType

import pytest

from bench import detection, throughput
from bench.result import ScenarioResult

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.redis]


def _quick_args(module: ModuleType) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    parser.set_defaults(**module.QUICK)
    return parser.parse_args([])


def _figures(result: ScenarioResult) -> dict[tuple[str, str, str | None], float]:
    assert all(math.isfinite(row.value) for row in result.rows), result.rows
    return {(row.subject, row.metric, row.baseline): row.value for row in result.rows}


def test_throughput_reports_every_subject_and_the_worker_memory() -> None:
    result = throughput.run(_quick_args(throughput))

    figures = _figures(result)
    assert set(figures) == {
        ("plain requests loop", "polls/s", None),
        ("self-retrying Celery task", "polls/s", None),
        ("tracker", "polls/s", "plain requests loop"),
        ("tracker", "polls/s", "self-retrying Celery task"),
        ("tracker worker", "RSS at start (MiB)", None),
        ("tracker worker", "RSS after warm-up (MiB)", None),
        ("tracker worker", "RSS after run (MiB)", None),
        ("tracker worker", "RSS growth (%)", None),
    }
    assert all(value > 0 for key, value in figures.items() if key[1] == "polls/s")
    assert [row.met is not None for row in result.rows if row.target] == [True, True, True]
    assert result.parameters["tracker_settings"]["TRACKER_POLL_CONCURRENCY"]


def test_detection_reports_the_delay_percentiles_of_every_webhook() -> None:
    args = _quick_args(detection)

    result = detection.run(args)

    figures = _figures(result)
    metrics = [row.metric for row in result.rows]
    assert metrics == [
        "delay p50 (s)",
        "delay p95 (s)",
        "delay p99 (s)",
        "delay max (s)",
        "completion to poll p99 (s)",
        "poll to webhook p50 (s)",
        "poll to webhook p99 (s)",
        "webhooks received",
        "polls per task",
    ]
    assert figures[(detection.SUBJECT, "webhooks received", None)] == args.detection_tasks
    [p99] = [row for row in result.rows if row.metric == "delay p99 (s)"]
    assert p99.target and p99.met is not None
