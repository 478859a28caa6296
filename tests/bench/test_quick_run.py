"""`python -m bench --quick` runs every scenario and reports every row (never how fast).

The quick run is a real run at small sizes: scratch PostgreSQL databases, a real
`tracker worker`, Redis, real sockets. It only checks that the harness produces each scenario
and row with finite figures, so the benchmarks cannot rot unnoticed.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bench import report
from bench.__main__ import SCENARIOS
from bench.result import Row, ScenarioResult
from tests.conftest import POSTGRES_ADMIN_URL

ROOT = Path(__file__).resolve().parents[2]

# Rows this side of the harness always produces (subjects depend on the quick sizes).
EXPECTED = {
    "politeness": {
        ("tracker default (5 s, quiet to 90 s, then every 20 s)", "polls per task"),
        ("tracker default (5 s, quiet to 90 s, then every 20 s)", "detection delay p95 (s)"),
        ("tracker, TRACKER_POLL_MAX_INTERVAL_S=5", "polls per task"),
        ("fixed 5 s", "polls per task"),
        ("fixed 10 s", "detection delay p95 (s)"),
        ("10 s growing x1.3 to 30 s (TensorsLab client)", "detection delay p50 (s)"),
        ("mix: tracker adaptive, TRACKER_POLL_MAX_INTERVAL_S=10", "polls per task"),
        ("mix: tracker adaptive, TRACKER_POLL_MAX_INTERVAL_S=20", "polls per task"),
        ("mix: tracker adaptive, TRACKER_POLL_MAX_INTERVAL_S=20", "seen later than the bound (%)"),
        ("mix: tracker adaptive, TRACKER_POLL_MAX_INTERVAL_S=30", "detection delay p95 (s)"),
        ("mix: tracker default, TRACKER_POLL_MAX_INTERVAL_S=20", "detection delay max (s)"),
        ("mix: fixed 5 s", "polls per task"),
        ("mix: fixed 20 s", "detection delay p95 (s)"),
        ("mix: 10 s growing x1.3 to 30 s (TensorsLab client)", "polls per task"),
    },
    "scale": {
        ("tracker, 2,000 rows", "claim p50 (ms)"),
        ("tracker, 2,000 rows", "claim p99 (ms)"),
        ("tracker, 20,000 rows", "claim p50 (ms)"),
        ("tracker, 20,000 rows", "claim p99 (ms)"),
        ("tracker, 40,000 rows", "claim p99 (ms)"),
        ("tracker, 40,000 rows, as registered (before a round of polls)", "claim p99 (ms)"),
        ("tracker, 20,000 rows", "EXPLAIN uses ix_scheduled_polls_next_poll_at (1 = yes)"),
        ("tracker, 40,000 rows", "EXPLAIN uses ix_scheduled_polls_next_poll_at (1 = yes)"),
        ("bare UPDATE of the claimed rows by id, 20,000 rows", "write p99 (ms)"),
        ("bare UPDATE of the claimed rows by id, 40,000 rows", "write p99 (ms)"),
    },
    "webhooks": {
        ("plain loop (16 threads, requests.Session each)", "deliveries/s"),
        ("tracker (tracker worker -c 2, ticks every 1 s)", "deliveries/s"),
    },
}
WITH_TARGET = {
    "politeness": ("tracker default (5 s, quiet to 90 s, then every 20 s)", "polls per task"),
    "scale": ("tracker, 20,000 rows", "claim p99 (ms)"),
    "webhooks": ("tracker (tracker worker -c 2, ticks every 1 s)", "deliveries/s"),
}


def _bench_env() -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("TRACKER_", "TENSORSLAB_")) or name.startswith("TRACKER_TEST_")
    }
    env["BENCH_POSTGRES_URL"] = POSTGRES_ADMIN_URL
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_quick_run_reports_every_scenario_and_row(tmp_path: Path) -> None:
    out = tmp_path / "results"
    finished = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=ROOT,
        env=_bench_env(),
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert finished.returncode == 0, finished.stdout[-4000:] + finished.stderr[-4000:]

    data = json.loads((out / "latest.json").read_text())
    assert data["quick"] is True
    assert data["machine"]["cores"] and data["git"]["commit"]
    scenarios = {scenario["module"]: scenario for scenario in data["scenarios"]}
    assert list(scenarios) == list(SCENARIOS)
    for name, scenario in scenarios.items():
        assert scenario["error"] is None, name
        assert scenario["rows"], name
        assert scenario["parameters"], name
        for row in scenario["rows"]:
            assert math.isfinite(row["value"]), (name, row)
            assert row["ratio"] is None or math.isfinite(row["ratio"]), (name, row)
    for name, wanted in EXPECTED.items():
        present = {(row["subject"], row["metric"]) for row in scenarios[name]["rows"]}
        assert wanted <= present, (name, wanted - present)
    for name, (subject, metric) in WITH_TARGET.items():
        [row] = [
            r for r in scenarios[name]["rows"] if r["subject"] == subject and r["metric"] == metric
        ]
        assert row["target"] and row["met"] in (True, False), (name, row)

    text = (out / "latest.md").read_text()
    for name in EXPECTED:
        for subject, metric in EXPECTED[name]:
            assert f"| {subject} | {metric} |" in text, (subject, metric)
    assert "ix_scheduled_polls_next_poll_at" in text  # the claim's EXPLAIN is in the notes


def _run_with(rows: tuple[Row, ...]) -> report.Run:
    result = ScenarioResult(scenario="demo", rows=rows, parameters={"size": 3}, notes=("n",))
    return report.Run(
        command="python -m bench --only demo",
        quick=False,
        started_at=datetime(2026, 11, 29, tzinfo=UTC),
        outcomes=(
            report.Outcome("demo", result, 1.0),
            report.Outcome("broken", None, 0.5, "Traceback: boom"),
        ),
        machine={
            "cpu": "cpu",
            "cores": 2,
            "ram_gib": 1.0,
            "os": "os",
            "python": "3.11",
            "postgresql": "15",
            "redis": "7",
            "load_average_at_start": None,
        },
        git={"commit": "0" * 40, "uncommitted_changes": False},
    )


def test_the_report_has_a_line_per_row_and_says_what_failed(tmp_path: Path) -> None:
    rows = (
        Row(subject="plain", metric="x/s", value=1000.0),
        Row(
            subject="tracker",
            metric="x/s",
            value=612.5,
            ratio=0.6125,
            baseline="plain",
            target=">= 0.6x plain",
            met=True,
        ),
    )
    md_path, json_path = report.write(_run_with(rows), tmp_path)

    text = md_path.read_text()
    assert "| demo | plain | x/s | 1,000 |  |  |  |  |" in text
    assert "| demo | tracker | x/s | 612.5 | 0.61x | plain | >= 0.6x plain | yes |" in text
    assert "Traceback: boom" in text
    data: dict[str, Any] = json.loads(json_path.read_text())
    assert [s["module"] for s in data["scenarios"]] == ["demo", "broken"]
    assert data["scenarios"][1]["error"] == "Traceback: boom"


def test_a_quick_run_never_writes_the_committed_results() -> None:
    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--only",
            "politeness",
            "--out",
            "bench/results",
        ],
        cwd=ROOT,
        env=_bench_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode != 0
    assert "never writes to bench/results" in finished.stderr
