"""Each worker's metrics folder: its own, emptied when it starts (as prometheus-client asks), the
folders of this host's gone workers removed, live workers' kept; the API still merges them all."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tracker import metrics
from tracker.settings import get_settings
from tracker.worker.metrics_server import serve_worker_metrics, stop_serving

SCRIPT = """
import os, sys
os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[1]
from tracker import metrics
metrics.record_polls({"completed": int(sys.argv[2])})
"""


@pytest.fixture
def restore_multiproc_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(metrics.MULTIPROC_ENV, "unset")  # restored after the test
    yield


def _count_polls(folder: Path, completed: int) -> None:
    """A process of its own counts `completed` polls into `folder`, as a pool child would."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", SCRIPT, str(folder), str(completed)], check=True)


def _gone_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_starting_worker_gets_an_empty_folder_and_removes_gone_workers_folders(
    restore_multiproc_env: None,
) -> None:
    settings = get_settings()
    mine = metrics.worker_metrics_dir(settings)
    gone = metrics.worker_metrics_dir(settings, pid=_gone_pid())
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as other:
        try:
            alive = metrics.worker_metrics_dir(settings, pid=other.pid)
            for folder in (mine, gone, alive):
                _count_polls(folder, 3)  # mine: left by an earlier run with this pid

            folder = metrics.enable_worker_metrics(settings)

            assert folder == mine and os.environ[metrics.MULTIPROC_ENV] == str(mine)
            assert list(mine.iterdir()) == []
            assert not gone.exists()
            assert len(list(alive.glob("counter_*.db"))) == 1  # a live worker's: kept
        finally:
            other.kill()


def test_the_api_merges_every_workers_folder_and_the_older_one_per_host() -> None:
    settings = get_settings()
    root = settings.data_dir.resolve() / "metrics"
    _count_polls(root / "host-a" / "101", 1)
    _count_polls(root / "host-a" / "102", 2)
    _count_polls(root / "host-b" / "101", 4)
    _count_polls(root / "host-c", 8)  # as tracker wrote them before a folder per worker

    text = metrics.render(_no_database_figures(), settings)[0].decode()
    assert 'tracker_polls_total{outcome="completed"} 15.0' in text


def test_a_workers_port_serves_its_own_folder_only(tmp_path: Path) -> None:
    root = tmp_path / "metrics" / "host"
    _count_polls(root / "101", 1)
    _count_polls(root / "101", 2)  # another pool child of the same worker
    _count_polls(root / "102", 4)  # another worker
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    url = serve_worker_metrics(root / "101", host="127.0.0.1", port=port)
    try:
        text = requests.get(url, timeout=10).text
    finally:
        stop_serving()

    assert url == f"http://127.0.0.1:{port}/metrics"
    assert 'tracker_polls_total{outcome="completed"} 3.0' in text


def _no_database_figures() -> metrics.DatabaseFigures:
    return metrics.DatabaseFigures(
        tasks_by_status={},
        due_tasks=0,
        due_lag_s=0.0,
        transitions_by_status={},
        deliveries_by_status={},
        attempts_by_outcome={},
    )
