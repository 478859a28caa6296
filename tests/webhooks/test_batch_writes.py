"""How a batch's attempts are written while others are still being sent, on SQLite and PostgreSQL.

The POSTs of a batch run on threads the process keeps; those finished are written (one
transaction per chunk) while a slow one still runs, each chunk checking that its deliveries are
still leased and updating their endpoints. Real pieces only: the receiver on loopback, the
SSRF-guarded session, the databases.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from tracker import db
from tracker.db.clock import utc_now
from tracker.db.leasing import Claim
from tracker.db.models import DeliveryAttempt, TrackedTask, WebhookDelivery, WebhookEndpoint
from tracker.states import DeliveryStatus, TaskStatus
from tracker.tasks import register
from tracker.testing.receiver import Answer, WebhookReceiver
from tracker.webhooks import endpoints, outbox, sender
from tracker.webhooks.guard import AddressPolicy
from tracker.webhooks.guarded_http import guarded_session

LOOPBACK = AddressPolicy.from_setting("127.0.0.0/8")
SLOW_S = 3.0  # far above sender.CHUNK_WAIT_S: the other attempts are written meanwhile
REFUSED_URL = "http://127.0.0.1:9/refused"  # the discard port: nothing listens, refused at once


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running


def _outbox(url: str, receiver: WebhookReceiver, *, per_endpoint: int, urls: list[str]) -> None:
    """Endpoints at `urls`, each with `per_endpoint` pending deliveries due now."""
    now = utc_now()
    with db.session_scope(url) as session:
        register.register(session, ["batch-task"], now=now, first_poll_delay_s=3600)
        task_pk = session.scalar(select(TrackedTask.id).where(TrackedTask.task_id == "batch-task"))
        assert task_pk is not None
        secrets = []
        for endpoint_url in urls:
            created = endpoints.add_endpoint(
                session, endpoint_url, events=["task.status_changed"], now=now, policy=LOOPBACK
            )
            assert created.secret is not None
            secrets.append(created.secret)
        for _ in range(per_endpoint):
            outbox.enqueue_deliveries(
                session,
                task_pk=task_pk,
                old_status=TaskStatus.PENDING,
                new_status=TaskStatus.PROCESSING,
                at=now - timedelta(seconds=1),
            )
    receiver.set_secrets(secrets)


def _claim(url: str) -> Claim:
    with db.session_scope(url) as session:
        [claim] = sender.claim_due_deliveries(
            session, now=utc_now(), limit=100, lease_s=60, batch_size=100
        )
    return claim


def _send(url: str, claim: Claim, *, concurrency: int = 4) -> dict[str, int]:
    http = guarded_session(LOOPBACK)
    try:
        return sender.send_batch(
            claim,
            session_scope=lambda: db.session_scope(url),
            http=http,
            timeout_s=10.0,
            schedule_s=(60.0,),
            disable_after_s=86400,
            concurrency=concurrency,
            rng=random.Random(0),
        )
    finally:
        http.close()


def _in_background(url: str, claim: Claim) -> tuple[threading.Thread, dict[str, int]]:
    outcomes: dict[str, int] = {}
    thread = threading.Thread(target=lambda: outcomes.update(_send(url, claim)), daemon=True)
    thread.start()
    return thread, outcomes


def _statuses(url: str) -> dict[int, str]:
    with db.session_scope(url) as session:
        return dict(session.execute(select(WebhookDelivery.id, WebhookDelivery.status)).all())


def _wait_for_delivered(url: str, count: int, *, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while list(_statuses(url).values()).count(DeliveryStatus.DELIVERED.value) < count:
        if time.monotonic() > deadline:
            pytest.fail(f"fewer than {count} deliveries written delivered: {_statuses(url)}")
        time.sleep(0.05)


def _attempts(url: str) -> dict[int, int]:
    with db.session_scope(url) as session:
        return dict(
            session.execute(
                select(DeliveryAttempt.delivery_id, func.count()).group_by(
                    DeliveryAttempt.delivery_id
                )
            ).all()
        )


def test_attempts_finished_are_written_while_a_slow_one_runs_and_all_are_written(
    database_url: str, receiver: WebhookReceiver
) -> None:
    _outbox(database_url, receiver, per_endpoint=6, urls=[receiver.url + "/hook"])
    receiver.script(Answer(200, delay_s=SLOW_S))  # the first to arrive is slow, the rest quick
    claim = _claim(database_url)

    thread, outcomes = _in_background(database_url, claim)
    _wait_for_delivered(database_url, 5)
    assert thread.is_alive()  # written before the slow attempt ended, not after it
    thread.join(30)

    assert outcomes == {"delivered": 6}
    assert set(_statuses(database_url).values()) == {DeliveryStatus.DELIVERED.value}
    assert sorted(_attempts(database_url).values()) == [1] * 6
    assert len(receiver.received) == 6


def test_a_delivery_whose_lease_is_lost_mid_batch_is_not_written(
    database_url: str, receiver: WebhookReceiver
) -> None:
    _outbox(database_url, receiver, per_endpoint=4, urls=[receiver.url + "/hook"])
    receiver.script(Answer(200, delay_s=SLOW_S))
    claim = _claim(database_url)

    thread, outcomes = _in_background(database_url, claim)
    _wait_for_delivered(database_url, 3)
    [slow] = [pk for pk, status in _statuses(database_url).items() if status == "pending"]
    with db.session_scope(database_url) as session:  # another claim took it (its lease ended)
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == slow)
            .values(lease_token="someone-else")
        )
    thread.join(30)

    assert outcomes == {"delivered": 3, "lease_lost": 1}
    assert slow not in _attempts(database_url)
    with db.session_scope(database_url) as session:
        row = session.get(WebhookDelivery, slow)
        assert row is not None
        assert (row.status, row.attempt_count, row.lease_token) == ("pending", 0, "someone-else")


def test_two_endpoints_in_one_batch_each_get_their_outcomes(
    database_url: str, receiver: WebhookReceiver
) -> None:
    _outbox(database_url, receiver, per_endpoint=3, urls=[receiver.url + "/hook", REFUSED_URL])
    receiver.script(Answer(200, delay_s=1.0))  # splits the batch into chunks
    claim = _claim(database_url)
    assert len(claim.row_ids) == 6

    outcomes = _send(database_url, claim)

    assert outcomes == {"delivered": 3, "retry": 3}
    with db.session_scope(database_url) as session:
        rows = session.execute(
            select(WebhookEndpoint.url, WebhookDelivery.status, WebhookEndpoint.failing_since)
            .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
            .order_by(WebhookDelivery.id)
        ).all()
    by_url: dict[str, set[str]] = {}
    for endpoint_url, status, _ in rows:
        by_url.setdefault(endpoint_url, set()).add(status)
    assert by_url == {receiver.url + "/hook": {"delivered"}, REFUSED_URL: {"pending"}}
    failing = {endpoint_url: since is not None for endpoint_url, _, since in rows}
    assert failing == {receiver.url + "/hook": False, REFUSED_URL: True}
    assert sorted(_attempts(database_url).values()) == [1] * 6


def test_batches_reuse_the_process_threads(database_url: str, receiver: WebhookReceiver) -> None:
    _outbox(database_url, receiver, per_endpoint=4, urls=[receiver.url + "/hook"])
    seen = []
    for _ in range(3):
        with db.session_scope(database_url) as session:
            claims = sender.claim_due_deliveries(
                session, now=utc_now(), limit=100, lease_s=60, batch_size=2
            )
        assert len(claims) == 2
        for claim in claims:
            assert _send(database_url, claim, concurrency=3) == {"delivered": 2}
        seen.append({t.ident for t in threading.enumerate() if t.name.startswith("tracker-web")})
        _due_again(database_url)

    assert seen[0] and seen[0] == seen[1] == seen[2]  # kept, not started again per batch
    assert len(receiver.received) == 12


def _due_again(url: str) -> None:
    """Every delivery pending and due again, as a redelivery leaves them."""
    with db.session_scope(url) as session:
        session.execute(
            update(WebhookDelivery).values(
                status="pending", next_attempt_at=utc_now() - timedelta(seconds=1)
            )
        )
