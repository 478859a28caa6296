"""Worker metrics: safe to create from many poll threads at once, and never fatal to a poll."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import os, sys, threading
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[1]
    from tracker import metrics

    start = threading.Barrier(16)

    def poll_thread():
        start.wait()  # all threads reach for the not-yet-created metrics together
        metrics._record_latency("tensorslab", 0.01)
        metrics.record_polls({"completed": 1})

    threads = [threading.Thread(target=poll_thread) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    """
)


def test_sixteen_poll_threads_create_and_count_the_metrics_together(tmp_path: Path) -> None:
    folder = tmp_path / "metrics" / "host"
    folder.mkdir(parents=True)
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "could not record a metric" not in result.stderr, result.stderr

    from prometheus_client import CollectorRegistry, generate_latest

    from tracker.metrics import _WorkerFilesCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_WorkerFilesCollector(tmp_path / "metrics"))
    text = generate_latest(registry).decode()
    assert 'tracker_polls_total{outcome="completed"} 16.0' in text
    assert 'tracker_upstream_latency_seconds_count{provider="tensorslab"} 16.0' in text
