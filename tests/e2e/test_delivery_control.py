"""Delivery control with real processes: `tracker worker` and `tracker beat` send, and the
user's `tracker` commands (child processes too) steer them.

- `redeliver --now` sends a delivery whose next retry was ten hours away, at the next tick;
- `webhooks test` sends a signed `webhook.test`, with the endpoint's custom headers;
- a task registered with a webhook whose host does not resolve is accepted, and its attempts
  are recorded as failures saying so.

Tests wait for conditions with generous deadlines; they never assert that something was fast.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import standardwebhooks

from tests.processes import Processes
from tracker import db
from tracker.db.clock import utc_now
from tracker.testing.processes import tracker_command
from tracker.testing.receiver import Answer, WebhookReceiver
from tracker.testing.simulator import Simulator, Step, TaskScript
from tracker.webhooks import deliveries

pytestmark = pytest.mark.e2e
DEADLINE_S = 90


def _tracker(group: Processes, *args: str) -> subprocess.CompletedProcess[str]:
    """A `tracker` command the user types, with the processes' settings."""
    return subprocess.run(
        tracker_command(*args),
        env=group.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _wait_for_delivery(
    database_url: str,
    group: Processes,
    done: Callable[[deliveries.DeliveryView], bool],
) -> deliveries.DeliveryView:
    deadline = time.monotonic() + DEADLINE_S
    view = None
    while time.monotonic() < deadline:
        group.check_alive()
        with db.read_scope(database_url) as session:
            found = deliveries.page_deliveries(session, with_attempts=True).deliveries
        view = next((item for item in found if item.event_type != "webhook.test"), None)
        if view is not None and done(view):
            return view
        time.sleep(0.3)
    pytest.fail(f"the delivery did not get there: {view}\n{group.logs()}")


@pytest.fixture(params=["sqlite+filesystem", "postgres+redis"])
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(database URL, broker URL) for the two ways to run tracker."""
    if request.param == "sqlite+filesystem":
        url = f"sqlite:///{tmp_path / 'e2e.db'}"
        from tracker.db import migrate

        migrate.upgrade(url)
        return url, "filesystem://"
    postgres = request.getfixturevalue("clean_postgres_url")
    return str(postgres), str(request.getfixturevalue("redis_url"))


def test_now_sends_a_delivery_whose_retry_was_hours_away_and_a_test_event_arrives_signed(
    stack: tuple[str, str], simulator: Simulator, processes: Callable[..., Processes]
) -> None:
    database_url, broker_url = stack
    simulator.add_task(TaskScript("e2e-now", (Step(2, polls=1), Step(3))))
    group = processes(
        database_url=database_url,
        broker_url=broker_url,
        simulator=simulator,
        TRACKER_WEBHOOK_RETRY_SCHEDULE_S="36000",  # a failed attempt is retried in ten hours
    )

    with WebhookReceiver() as receiver:
        receiver.script(Answer(503, body="not yet"), default=Answer(200))  # fixed after one
        added = _tracker(
            group, "webhooks", "add", receiver.url + "/hook", "--header", "X-Env: prod", "--json"
        )
        assert added.returncode == 0, added.stderr
        secret = json.loads(added.stdout)["secret"]
        receiver.set_secrets([secret])
        assert _tracker(group, "register", "e2e-now").returncode == 0
        group.start("worker", "worker", "--concurrency", "2")
        group.start("beat", "beat")

        receiver.wait_for(1, timeout_s=DEADLINE_S)
        waiting = _wait_for_delivery(database_url, group, lambda d: d.attempt_count == 1)
        assert waiting.status == "pending" and waiting.next_attempt_at is not None
        assert waiting.next_attempt_at > utc_now() + timedelta(hours=7)

        asked_at = time.monotonic()
        now = _tracker(group, "redeliver", waiting.message_id, "--now")
        assert now.returncode == 0, now.stderr
        assert "is due now: the next tick sends it" in now.stdout
        first, second = receiver.wait_for(2, timeout_s=DEADLINE_S)
        took_s = time.monotonic() - asked_at
        delivered = _wait_for_delivery(database_url, group, lambda d: d.status == "delivered")

        tested = _tracker(group, "webhooks", "test", "1")
        assert tested.returncode == 0, tested.stdout + tested.stderr
        assert "ok: HTTP 200 in " in tested.stdout
        received = receiver.wait_for(3, timeout_s=DEADLINE_S)
        time.sleep(1.5)  # a second copy of the test event, if a tick sent one, would come now
        assert len(receiver.received) == 3

    assert second.headers["webhook-id"] == first.headers["webhook-id"] == waiting.message_id
    assert second.verified and second.answered_status == 200
    assert second.headers["x-env"] == "prod"
    assert [a.status_code for a in delivered.attempts] == [503, 200]
    print(f"redeliver --now: sent {took_s:.1f} s after the command (the retry was 10 h away)")
    probe = received[2]
    payload = standardwebhooks.Webhook(secret).verify(probe.body, probe.headers)
    assert payload["type"] == "webhook.test" and payload["data"]["webhook_id"] == 1
    assert probe.headers["x-env"] == "prod"


def test_a_webhook_host_that_does_not_resolve_is_accepted_and_its_attempts_say_why(
    tmp_path: Path, simulator: Simulator, processes: Callable[..., Processes]
) -> None:
    database_url = f"sqlite:///{tmp_path / 'e2e.db'}"
    from tracker.db import migrate

    migrate.upgrade(database_url)
    simulator.add_task(TaskScript("e2e-nowhere", (Step(2, polls=1), Step(3))))
    group = processes(database_url=database_url, broker_url="filesystem://", simulator=simulator)
    url = "http://hooks.tracker-test.invalid/hook"  # RFC 6761: never resolves, no DNS query

    registered = _tracker(group, "register", "e2e-nowhere", "--webhook", url)
    assert registered.returncode == 0, registered.stderr
    assert "warning: the host hooks.tracker-test.invalid does not resolve right now" in (
        registered.stderr
    )
    assert "signing secret (shown once" in registered.stdout
    group.start("worker", "worker", "--concurrency", "2")
    group.start("beat", "beat")

    failed = _wait_for_delivery(database_url, group, lambda d: d.status == "failed")

    assert failed.task_id == "e2e-nowhere" and failed.event_type == "task.completed"
    assert len(failed.attempts) == 4  # the first, and the schedule's three retries
    for attempt in failed.attempts:
        assert attempt.status_code is None and attempt.error is not None
        assert attempt.error.startswith("the host does not resolve: Failed to resolve "), attempt
        assert "hooks.tracker-test.invalid" in attempt.error
