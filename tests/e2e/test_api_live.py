"""The HTTP API served by real processes on loopback: `tracker up` (worker, beat and the API
together) on PostgreSQL and Redis, the simulator finishing a task, a real webhook receiver.

The user's story: register over HTTP with a webhook URL, watch the task complete over HTTP,
receive the signed webhook, redeliver it over HTTP, read the metrics. Nothing secret leaks into
a response or a log line. Waits are for conditions, with generous deadlines.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from tests.conftest import SIM_API_KEY
from tests.processes import Processes
from tracker import db, tokens
from tracker.db.clock import utc_now
from tracker.testing.receiver import WebhookReceiver
from tracker.testing.simulator import Simulator, Step, TaskScript

pytestmark = pytest.mark.e2e
DEADLINE_S = 90


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _create_token(database_url: str) -> str:
    with db.session_scope(database_url) as session:
        return tokens.create_token(session, "live test", now=utc_now()).secret


def _wait_for(
    what: str, check: Callable[[], Any], group: Processes, *, timeout_s: float = DEADLINE_S
) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        group.check_alive()
        try:
            last = check()
        except requests.ConnectionError as error:
            last = error
        else:
            if last:
                return last
        time.sleep(0.3)
    pytest.fail(f"{what}: not after {timeout_s} s (last: {last!r})\n{group.logs()}")


def test_the_whole_story_over_http(
    clean_postgres_url: str,
    redis_url: str,
    simulator: Simulator,
    processes: Callable[..., Processes],
) -> None:
    simulator.add_task(
        TaskScript(
            "live-1",
            (Step(1, polls=1), Step(2, polls=2), Step(3)),
            urls=("https://cdn.example.invalid/live-1.mp4",),
        )
    )
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    group = processes(
        database_url=clean_postgres_url,
        broker_url=redis_url,
        simulator=simulator,
        TRACKER_API_PORT=str(port),
    )
    group.start("up", "up", "--concurrency", "2")
    _wait_for("the API answers /healthz", lambda: requests.get(f"{base}/healthz").ok, group)
    token = _create_token(clean_postgres_url)
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {token}"

    with WebhookReceiver() as receiver:
        registered = http.post(
            f"{base}/v1/tasks",
            json={"task_id": "live-1", "webhook_url": f"{receiver.url}/hook", "metadata": {"n": 1}},
        )
        assert registered.status_code == 201, registered.text
        secret = registered.json()["webhook_secret"]
        receiver.set_secrets([secret])

        def completed() -> bool:
            return bool(http.get(f"{base}/v1/tasks/live-1").json()["status"] == "completed")

        _wait_for("live-1 completed", completed, group)
        task = http.get(f"{base}/v1/tasks/live-1").json()
        assert task["result_urls"] == ["https://cdn.example.invalid/live-1.mp4"]
        assert task["metadata"] == {"n": 1}
        moves = http.get(f"{base}/v1/tasks/live-1/transitions").json()["transitions"]
        assert [(m["from_status"], m["to_status"]) for m in moves] == [
            ("registered", "pending"),
            ("pending", "processing"),
            ("processing", "completed"),
        ]

        [webhook] = receiver.wait_for(1, timeout_s=DEADLINE_S)
        assert webhook.verified
        assert webhook.payload["type"] == "task.completed"
        assert webhook.payload["data"]["task_id"] == "live-1"

        def delivered() -> list[dict[str, Any]]:
            found = http.get(f"{base}/v1/deliveries", params={"task_id": "live-1"}).json()
            return [d for d in found["deliveries"] if d["status"] == "delivered"]

        [delivery] = _wait_for("the delivery is recorded as delivered", delivered, group)
        assert delivery["message_id"] == webhook.headers["webhook-id"]
        assert [a["status_code"] for a in delivery["attempts"]] == [200]

        again = http.post(f"{base}/v1/deliveries/{delivery['id']}/redeliver")
        assert again.status_code == 202, again.text
        both = receiver.wait_for(2, timeout_s=DEADLINE_S)
        assert both[1].headers["webhook-id"] == webhook.headers["webhook-id"]
        assert both[1].verified

        def two_attempts() -> bool:
            shown = http.get(f"{base}/v1/deliveries/{delivery['id']}").json()
            return len(shown["attempts"]) == 2 and shown["status"] == "delivered"

        _wait_for("the redelivery's attempt is recorded", two_attempts, group)

    ready = requests.get(f"{base}/readyz").json()
    assert ready["checks"] == {
        "database": "ok",
        "broker": "ok",
        "beat": "ok",
        "workers": "ok",
        "overdue": "ok",
    }
    assert ready["paused"] == []
    exposition = requests.get(f"{base}/metrics").text
    assert 'tracker_tasks{status="completed"} 1.0' in exposition
    assert 'tracker_transitions_total{to_status="completed"} 1.0' in exposition
    assert 'tracker_webhook_attempts_total{outcome="succeeded"} 2.0' in exposition
    assert 'tracker_polls_total{outcome="completed"}' in exposition  # counted by the worker
    assert "tracker_upstream_latency_seconds_count" in exposition

    listed = http.get(f"{base}/v1/webhooks", params={"include_per_task": True})
    assert listed.status_code == 200 and "/hook" in listed.text
    assert secret not in listed.text

    group.stop_all()
    logs = group.logs()
    assert "GET /v1/tasks/live-1 HTTP/1.1" in logs  # the API's access log is there...
    for leaked in (secret, token, SIM_API_KEY):
        assert leaked not in logs  # ...and no secret is, in any process's output
    assert "raised unexpected" not in logs and "Traceback" not in logs, logs


def test_readiness_names_a_broker_that_does_not_answer(
    tmp_path: Any, simulator: Simulator, processes: Callable[..., Processes]
) -> None:
    from tracker.db import migrate

    database_url = f"sqlite:///{tmp_path / 'ready.db'}"
    migrate.upgrade(database_url)
    port = _free_port()
    group = processes(
        database_url=database_url,
        broker_url="redis://127.0.0.1:1/0",
        simulator=simulator,
        TRACKER_API_PORT=str(port),
    )
    group.start("api", "api")
    base = f"http://127.0.0.1:{port}"
    _wait_for("the API answers /healthz", lambda: requests.get(f"{base}/healthz").ok, group)

    response = requests.get(f"{base}/readyz", timeout=30)
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "ok"
    assert response.json()["checks"]["broker"].startswith("unavailable: cannot reach the broker")


def test_the_api_says_clearly_when_its_port_is_taken(tmp_path: Any) -> None:
    from tracker.db import migrate

    database_url = f"sqlite:///{tmp_path / 'port.db'}"
    migrate.upgrade(database_url)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "tracker", "api", "--port", str(port)],
            env={"TRACKER_DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert f"cannot serve the API on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
