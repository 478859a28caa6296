"""Webhooks end to end in-process: outbox, signing, retries, dead letters, redelivery, SSRF.

Real pieces only: the simulator and a webhook receiver are HTTP servers on loopback, the
databases are SQLite and PostgreSQL, and signatures are checked with `standardwebhooks`.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import standardwebhooks
from sqlalchemy import func, select

from tests.conftest import SIM_API_KEY
from tests.support import poll_until_terminal
from tracker import db
from tracker.db import clock
from tracker.db.clock import database_now, utc_now
from tracker.db.models import WebhookDelivery, WebhookEndpoint
from tracker.errors import InvalidInput
from tracker.tasks import queries, register, untrack
from tracker.testing.receiver import Answer, Drop, Garbage, Hang, Redirect, WebhookReceiver
from tracker.testing.simulator import Simulator, Step, TaskScript
from tracker.upstream.tensorslab import TensorsLabClient
from tracker.webhooks import deliveries, endpoints, sender
from tracker.webhooks.guard import AddressPolicy
from tracker.webhooks.guarded_http import guarded_session

LOOPBACK = AddressPolicy.from_setting("127.0.0.0/8")
QUICK_RETRIES = (0.05, 0.05, 0.05)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running


def _add_endpoint(url: str, receiver: WebhookReceiver, *events: str) -> endpoints.CreatedEndpoint:
    with db.session_scope(url) as session:
        created = endpoints.add_endpoint(
            session,
            receiver.url + "/hook",
            events=events,
            now=utc_now(),
            policy=LOOPBACK,
        )
    assert created.secret is not None
    receiver.set_secrets([created.secret])
    return created


def _finish_task(url: str, simulator: Simulator, task_id: str, *, status: int = 3) -> None:
    """Register a task and poll it until the simulator's script ends it."""
    simulator.add_task(TaskScript(task_id, (Step(2, polls=1), Step(status))))
    with db.session_scope(url) as session:
        register.register(session, [task_id], now=utc_now(), first_poll_delay_s=0)
    client = TensorsLabClient(base_url=simulator.base_url, api_key=SIM_API_KEY)
    try:
        poll_until_terminal(url, client, task_ids=[task_id])
    finally:
        client.close()


def _send_due(
    url: str,
    *,
    policy: AddressPolicy = LOOPBACK,
    schedule: tuple[float, ...] = QUICK_RETRIES,
    timeout_s: float = 5.0,
    disable_after_s: float = 86400,
) -> dict[str, int]:
    """One tick's worth of deliveries, sent in-process."""
    with db.session_scope(url) as session:
        claims = sender.claim_due_deliveries(
            session, now=utc_now(), limit=100, lease_s=60, batch_size=10
        )
    totals: dict[str, int] = {}
    http = guarded_session(policy)
    try:
        for claim in claims:
            counts = sender.send_batch(
                claim,
                session_scope=lambda: db.session_scope(url),
                http=http,
                timeout_s=timeout_s,
                schedule_s=schedule,
                disable_after_s=disable_after_s,
                concurrency=4,
                rng=random.Random(0),
            )
            for key, value in counts.items():
                totals[key] = totals.get(key, 0) + value
    finally:
        http.close()
    return totals


def _send_until_settled(url: str, **options: object) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        _send_due(url, **options)  # type: ignore[arg-type]
        with db.session_scope(url) as session:
            pending = session.scalar(  # held ones (no next attempt) wait for an enable
                select(func.count()).where(
                    WebhookDelivery.status == "pending",
                    WebhookDelivery.next_attempt_at.is_not(None),
                )
            )
        if not pending:
            return
        time.sleep(0.03)
    pytest.fail("deliveries still pending")


def _deliveries(url: str) -> list[deliveries.DeliveryView]:
    with db.session_scope(url) as session:
        return [
            deliveries.get_delivery(session, str(d.id))
            for d in deliveries.page_deliveries(session).deliveries
        ]


def test_a_completed_task_sends_exactly_one_signed_task_completed(
    database_url: str, simulator: Simulator, receiver: WebhookReceiver
) -> None:
    created = _add_endpoint(database_url, receiver)  # default events: completed, failed
    _finish_task(database_url, simulator, "video-1")

    _send_until_settled(database_url)

    [message] = receiver.wait_for(1)
    assert created.secret is not None
    payload = standardwebhooks.Webhook(created.secret).verify(message.body, message.headers)
    assert payload["type"] == "task.completed"
    assert payload["data"]["task_id"] == "video-1"
    assert payload["data"]["new_status"] == "completed"
    assert payload["data"]["result_urls"] == ["https://cdn.example.invalid/video-1.mp4"]
    assert message.headers["webhook-id"].startswith("msg_")
    assert message.headers["content-type"] == "application/json"
    [sent] = _deliveries(database_url)
    assert sent.status == "delivered" and sent.attempt_count == 1
    assert sent.payload == message.body  # the stored bytes are the bytes sent and signed
    time.sleep(0.1)
    _send_due(database_url)
    assert len(receiver.received) == 1


def test_status_changed_subscribers_hear_every_transition(
    database_url: str, simulator: Simulator, receiver: WebhookReceiver
) -> None:
    _add_endpoint(database_url, receiver, "task.status_changed")
    _finish_task(database_url, simulator, "video-1", status=4)

    _send_until_settled(database_url)

    moves = sorted(
        (m.payload["data"]["old_status"], m.payload["data"]["new_status"])
        for m in receiver.received
    )
    assert moves == [("processing", "failed"), ("registered", "processing")]
    assert all(m.verified for m in receiver.received)


def test_a_receiver_failing_twice_gets_retries_with_the_same_webhook_id(
    database_url: str, simulator: Simulator, receiver: WebhookReceiver
) -> None:
    _add_endpoint(database_url, receiver)
    receiver.script(Answer(500), Answer(503))
    _finish_task(database_url, simulator, "video-1")

    _send_until_settled(database_url)

    calls = receiver.received
    assert [c.answered_status for c in calls] == [500, 503, 200]
    assert len({c.headers["webhook-id"] for c in calls}) == 1
    [sent] = _deliveries(database_url)
    assert sent.status == "delivered"
    assert [a.status_code for a in sent.attempts] == [500, 503, 200]
    assert [a.succeeded for a in sent.attempts] == [False, False, True]


def test_a_receiver_that_always_fails_ends_dead_and_redeliver_sends_it_again(
    database_url: str, simulator: Simulator, receiver: WebhookReceiver
) -> None:
    _add_endpoint(database_url, receiver)
    receiver.script(default=Answer(500, body="broken"))
    _finish_task(database_url, simulator, "video-1")

    _send_until_settled(database_url)

    [dead] = _deliveries(database_url)
    assert dead.status == "failed" and dead.attempt_count == len(QUICK_RETRIES) + 1
    assert dead.attempts[-1].response_excerpt == "broken"
    first_id = receiver.received[0].headers["webhook-id"]

    receiver.script(default=Answer(200))
    with db.session_scope(database_url) as session:
        deliveries.redeliver(session, str(dead.id), now=utc_now())
    _send_until_settled(database_url)

    [again] = _deliveries(database_url)
    assert again.status == "delivered"
    assert receiver.received[-1].headers["webhook-id"] == first_id
    assert receiver.received[-1].verified


def test_redeliver_failed_since_replays_only_recent_failures(
    database_url: str, simulator: Simulator, receiver: WebhookReceiver
) -> None:
    _add_endpoint(database_url, receiver)
    receiver.script(default=Answer(500))
    _finish_task(database_url, simulator, "video-1")
    _send_until_settled(database_url, schedule=())

    with db.session_scope(database_url) as session:
        none = deliveries.redeliver_failed(
            session, since=utc_now() + timedelta(hours=1), now=utc_now()
        )
        some = deliveries.redeliver_failed(
            session, since=utc_now() - timedelta(hours=1), now=utc_now()
        )
    assert (none, some) == (0, 1)


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured(
    database_url: str, simulator: Simulator, receiver: WebhookReceiver, status: int
) -> None:
    _add_endpoint(database_url, receiver)
    receiver.script(Answer(status, headers=(("Retry-After", "7"),)))
    _finish_task(database_url, simulator, "video-1")
    before = utc_now()

    _send_due(database_url)

    [waiting] = _deliveries(database_url)
    assert waiting.status == "pending" and waiting.next_attempt_at is not None
    assert waiting.next_attempt_at >= before + timedelta(seconds=7)


def test_retry_after_as_an_http_date_is_honoured(
    database_url: str, simulator: Simulator, receiver: WebhookReceiver
) -> None:
    _add_endpoint(database_url, receiver)
    later = utc_now() + timedelta(minutes=20)
    receiver.script(Answer(503, headers=(("Retry-After", format_datetime(later, usegmt=True)),)))
    _finish_task(database_url, simulator, "video-1")

    _send_due(database_url, schedule=(5.0,))

    [waiting] = _deliveries(database_url)
    assert waiting.status == "pending" and waiting.next_attempt_at is not None
    # The schedule alone would retry within 6 s; the date asks for 20 minutes (to the second).
    assert waiting.next_attempt_at >= later - timedelta(seconds=1)


def test_410_gone_disables_the_endpoint(
    database_url: str, simulator: Simulator, receiver: WebhookReceiver
) -> None:
    created = _add_endpoint(database_url, receiver)
    receiver.script(Answer(410))
    _finish_task(database_url, simulator, "video-1")

    _send_until_settled(database_url)

    [gone] = _deliveries(database_url)
    assert gone.status == "failed" and len(receiver.received) == 1
    with db.session_scope(database_url) as session:
        [view] = endpoints.list_endpoints(session)
    assert view.id == created.endpoint.id
    assert not view.enabled and view.disabled_reason == "the receiver answered 410 Gone"


def test_an_endpoint_failing_for_too_long_is_disabled_and_says_so(
    database_url: str, simulator: Simulator, receiver: WebhookReceiver
) -> None:
    _add_endpoint(database_url, receiver)
    receiver.script(default=Answer(500))
    _finish_task(database_url, simulator, "video-1")

    _send_until_settled(database_url, disable_after_s=0.001)

    with db.session_scope(database_url) as session:
        [view] = endpoints.list_endpoints(session)
    assert not view.enabled
    assert view.disabled_reason is not None and "failed for" in view.disabled_reason


@pytest.mark.parametrize(
    ("behaviour", "error"),
    [
        (Redirect("http://169.254.169.254/latest/meta-data"), "redirect"),
        (Hang(10), "no answer within"),
        (Garbage(), ""),
        (Drop(), ""),
    ],
    ids=["redirect", "hang", "garbage", "drop"],
)
def test_a_misbehaving_receiver_is_a_failed_attempt_never_a_stuck_worker(
    database_url: str,
    simulator: Simulator,
    receiver: WebhookReceiver,
    behaviour: object,
    error: str,
) -> None:
    _add_endpoint(database_url, receiver)
    receiver.script(behaviour)  # type: ignore[arg-type]
    _finish_task(database_url, simulator, "video-1")

    _send_due(database_url, timeout_s=0.5)

    [sent] = _deliveries(database_url)
    [attempt] = sent.attempts
    assert not attempt.succeeded and sent.status == "pending"
    assert attempt.error is not None and error in attempt.error
    assert len(receiver.received) <= 1  # a redirect is never followed


def test_at_send_time_a_refused_address_is_a_failed_attempt_and_nothing_is_sent(
    database_url: str, simulator: Simulator, receiver: WebhookReceiver
) -> None:
    _add_endpoint(database_url, receiver)  # added while loopback was allowed
    _finish_task(database_url, simulator, "video-1")

    _send_due(database_url, policy=AddressPolicy())  # now it is not

    [sent] = _deliveries(database_url)
    [attempt] = sent.attempts
    assert attempt.status_code is None and attempt.error is not None
    assert "refused address" in attempt.error.lower()
    assert attempt.error.endswith("TRACKER_WEBHOOK_ALLOWED_NETWORKS"), attempt.error
    assert receiver.received == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://hooks.example.com/x", "http"),
        ("http:///no-host", "host"),
        ("https://example.com/" + "x" * 2040, "2048"),
        ("http://10.0.0.5/hook", "private"),
        ("http://169.254.169.254/latest", "link-local"),
        ("http://127.0.0.1:9/hook", "loopback"),
        ("http://[::1]/hook", "loopback"),
        ("http://100.64.0.1/hook", "carrier-grade NAT"),
        ("http://internal.example/hook", "private"),
    ],
)
def test_webhooks_add_refuses_bad_and_internal_urls(
    database_url: str, url: str, message: str
) -> None:
    def resolve(host: str, port: int) -> list[str]:
        return {"internal.example": ["10.9.8.7"]}.get(host, ["93.184.215.14"])

    with db.session_scope(database_url) as session, pytest.raises(InvalidInput, match=message):
        endpoints.add_endpoint(session, url, now=utc_now(), policy=AddressPolicy(), resolve=resolve)
    with db.session_scope(database_url) as session:
        assert session.scalar(select(func.count()).select_from(WebhookEndpoint)) == 0


def test_an_unknown_event_is_refused_with_the_valid_ones(database_url: str) -> None:
    with (
        db.session_scope(database_url) as session,
        pytest.raises(InvalidInput, match=r"valid events: task\.completed, task\.failed"),
    ):
        endpoints.add_endpoint(
            session,
            "http://127.0.0.1:9/hook",
            events=["task.done"],
            now=utc_now(),
            policy=LOOPBACK,
        )


def test_untrack_sends_task_cancelled_and_the_outbox_is_one_transaction(
    database_url: str, receiver: WebhookReceiver
) -> None:
    _add_endpoint(database_url, receiver, "task.cancelled")
    with db.session_scope(database_url) as session:
        register.register(session, ["video-1", "video-2"], now=utc_now(), first_poll_delay_s=60)
    with pytest.raises(RuntimeError), db.session_scope(database_url) as session:
        untrack.untrack(session, "video-2", now=utc_now())
        raise RuntimeError("the transaction fails after the transition was written")
    with db.session_scope(database_url) as session:
        untrack.untrack(session, "video-1", now=utc_now())

    _send_until_settled(database_url)

    [message] = receiver.wait_for(1)
    assert message.payload["type"] == "task.cancelled"
    assert message.payload["data"]["task_id"] == "video-1"
    with db.session_scope(database_url) as session:
        assert queries.history(session, "video-2") == []
    assert len(_deliveries(database_url)) == 1


def test_a_rotated_secret_signs_with_both_during_the_overlap(
    database_url: str, simulator: Simulator, receiver: WebhookReceiver
) -> None:
    old = _add_endpoint(database_url, receiver)
    with db.session_scope(database_url) as session:
        new = endpoints.rotate_secret(session, old.endpoint.id, now=utc_now(), overlap_s=3600)
    _finish_task(database_url, simulator, "video-1")

    _send_until_settled(database_url)

    [message] = receiver.wait_for(1)
    assert len(message.headers["webhook-signature"].split(" ")) == 2
    assert old.secret is not None and new.secret is not None
    for secret in (old.secret, new.secret):
        standardwebhooks.Webhook(secret).verify(message.body, message.headers)


def test_per_task_webhooks_hear_only_their_task(
    database_url: str, simulator: Simulator, receiver: WebhookReceiver
) -> None:
    with db.session_scope(database_url) as session:
        register.register(session, ["video-1"], now=utc_now(), first_poll_delay_s=0)
        secret = endpoints.subscribe_tasks(
            session, ["video-1"], receiver.url + "/one", now=utc_now(), policy=LOOPBACK
        ).secret
        again = endpoints.subscribe_tasks(
            session, ["video-1"], receiver.url + "/one", now=utc_now(), policy=LOOPBACK
        ).secret
    assert secret is not None and again is None
    receiver.set_secrets([secret])
    _finish_task(database_url, simulator, "video-1")
    _finish_task(database_url, simulator, "video-2")

    _send_until_settled(database_url)

    [message] = receiver.wait_for(1)
    assert message.payload["data"]["task_id"] == "video-1" and message.verified
    assert message.path == "/one"


def test_secrets_never_appear_in_listings(database_url: str, receiver: WebhookReceiver) -> None:
    created = _add_endpoint(database_url, receiver)
    with db.session_scope(database_url) as session:
        views = endpoints.list_endpoints(session, include_per_task=True)
    assert created.secret is not None
    assert created.secret not in repr(views)


def test_two_claims_at_once_never_share_a_delivery(
    database_url: str, receiver: WebhookReceiver
) -> None:
    _add_endpoint(database_url, receiver, "task.cancelled")
    ids = [f"video-{i}" for i in range(60)]
    with db.session_scope(database_url) as session:
        register.register(session, ids, now=utc_now(), first_poll_delay_s=60)
        for task_id in ids:
            untrack.untrack(session, task_id, now=utc_now())
    claimed: list[list[int]] = []
    barrier = threading.Barrier(2)

    def claim() -> None:
        barrier.wait()
        with db.session_scope(database_url) as session:
            batches = sender.claim_due_deliveries(
                session, now=utc_now(), limit=40, lease_s=60, batch_size=10
            )
        claimed.append([pk for batch in batches for pk in batch.row_ids])

    threads = [threading.Thread(target=claim) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    first, second = claimed
    assert set(first).isdisjoint(second) and len(first) + len(second) == 60


@pytest.mark.postgres
def test_sends_and_retries_follow_the_database_clock_not_the_host_clock(
    clean_postgres_url: str,
    simulator: Simulator,
    receiver: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = clean_postgres_url
    _add_endpoint(url, receiver)
    receiver.script(Answer(503))
    _finish_task(url, simulator, "video-1")
    with db.session_scope(url) as session:
        claims = sender.claim_due_deliveries(
            session, now=database_now(session), limit=10, lease_s=60, batch_size=10
        )
    # This worker's host clock runs an hour ahead of the database's (and of beat's host).
    monkeypatch.setattr(clock, "utc_now", lambda: datetime.now(UTC) + timedelta(hours=1))
    http = guarded_session(LOOPBACK)
    try:
        [claim] = claims
        outcomes = sender.send_batch(
            claim,
            session_scope=lambda: db.session_scope(url),
            http=http,
            timeout_s=5.0,
            schedule_s=(5.0,),
            disable_after_s=86400,
        )
    finally:
        http.close()
    # With the host's clock the lease would look an hour over, and nothing would be sent.
    assert outcomes == {"retry": 1} and len(receiver.received) == 1
    [waiting] = _deliveries(url)
    with db.read_scope(url) as session:
        database_time = database_now(session)
    assert waiting.next_attempt_at is not None
    assert waiting.next_attempt_at - database_time < timedelta(minutes=5)
