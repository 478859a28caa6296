"""A webhook attempt has a deadline for the whole attempt, whatever the receiver does.

The receiver's `Trickle` answers one byte at a time, so no socket read ever waits long enough
for `requests`' read timeout; only the whole-attempt deadline (TRACKER_WEBHOOK_TIMEOUT_S,
`tracker.http_deadline`) ends it. Real pieces only: the receiver on loopback, the SSRF-guarded
session, SQLite and PostgreSQL. Durations are checked against the deadline from below and 5x the
deadline from above (the attempt did end): a correctness bound, not a speed claim.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

from tests.conftest import SIM_API_KEY
from tests.support import poll_until_terminal
from tracker import db
from tracker.db.clock import utc_now
from tracker.db.leasing import Claim
from tracker.tasks import register
from tracker.testing.receiver import Answer, Trickle, WebhookReceiver
from tracker.testing.simulator import Simulator, Step, TaskScript
from tracker.upstream.tensorslab import TensorsLabClient
from tracker.webhooks import deliveries, endpoints, sender
from tracker.webhooks.guard import AddressPolicy
from tracker.webhooks.guarded_http import guarded_session

LOOPBACK = AddressPolicy.from_setting("127.0.0.0/8")
TIMEOUT_S = 1.5
CUT = f"no answer within {TIMEOUT_S:g} s (deadline for the complete answer)"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running


def _one_delivery(url: str, receiver: WebhookReceiver, simulator: Simulator) -> None:
    """An endpoint on the receiver and one due delivery to it: a task polled until completed."""
    with db.session_scope(url) as session:
        created = endpoints.add_endpoint(
            session, receiver.url + "/hook", now=utc_now(), policy=LOOPBACK
        )
    assert created.secret is not None
    receiver.set_secrets([created.secret])
    simulator.add_task(TaskScript("video-1", (Step(2, polls=1), Step(3))))
    with db.session_scope(url) as session:
        register.register(session, ["video-1"], now=utc_now(), first_poll_delay_s=0)
    client = TensorsLabClient(base_url=simulator.base_url, api_key=SIM_API_KEY)
    try:
        poll_until_terminal(url, client, task_ids=["video-1"])
    finally:
        client.close()


def _claim(url: str, lease_s: float) -> list[Claim]:
    with db.session_scope(url) as session:
        return sender.claim_due_deliveries(
            session, now=utc_now(), limit=10, lease_s=lease_s, batch_size=10
        )


def _send(url: str, claim: Claim, *, schedule: tuple[float, ...] = (60.0,)) -> dict[str, int]:
    http = guarded_session(LOOPBACK)
    try:
        return sender.send_batch(
            claim,
            session_scope=lambda: db.session_scope(url),
            http=http,
            timeout_s=TIMEOUT_S,
            schedule_s=schedule,
            disable_after_s=86400,
            rng=random.Random(0),
        )
    finally:
        http.close()


def _the_delivery(url: str) -> deliveries.DeliveryView:
    with db.session_scope(url) as session:
        [listed] = deliveries.page_deliveries(session).deliveries
        return deliveries.get_delivery(session, str(listed.id))


@pytest.mark.parametrize(
    "behaviour",
    [Trickle(0.3), Trickle(0.3, body="x" * 300, headers=False)],
    ids=["headers-trickle", "body-trickles"],
)
def test_a_trickling_receiver_is_cut_at_the_deadline_and_recorded_as_a_timeout(
    database_url: str, simulator: Simulator, receiver: WebhookReceiver, behaviour: Trickle
) -> None:
    _one_delivery(database_url, receiver, simulator)
    receiver.script(behaviour)
    [claim] = _claim(database_url, lease_s=60)

    started = time.monotonic()
    outcomes = _send(database_url, claim)
    elapsed = time.monotonic() - started

    assert outcomes == {"retry": 1}
    sent = _the_delivery(database_url)
    [attempt] = sent.attempts
    assert attempt.error == CUT and not attempt.succeeded and attempt.status_code is None
    assert attempt.response_excerpt is None  # bytes before the cut are no answer
    assert TIMEOUT_S * 1000 <= attempt.duration_ms < 5 * TIMEOUT_S * 1000
    assert elapsed < 5 * TIMEOUT_S
    assert sent.status == "pending" and sent.last_error == CUT
    assert len(receiver.received) == 1


def test_a_delivery_is_never_sent_twice_while_an_attempt_is_open(
    database_url: str, simulator: Simulator, receiver: WebhookReceiver
) -> None:
    """Ticks claim with a short lease and send each batch in its own thread, like workers.

    Without a whole-attempt deadline the trickled attempt outlives its 3 s lease, and the next
    tick sends the same delivery again while the first attempt is still open.
    """
    _one_delivery(database_url, receiver, simulator)
    receiver.script(Trickle(0.3), default=Answer(200))
    lease_s = 2 * TIMEOUT_S  # the least the settings allow
    batches: list[threading.Thread] = []

    until = time.monotonic() + 20
    while time.monotonic() < until and _the_delivery(database_url).status != "delivered":
        for claim in _claim(database_url, lease_s):
            batch = threading.Thread(
                target=_send, args=(database_url, claim), kwargs={"schedule": (2.0,)}, daemon=True
            )
            batch.start()
            batches.append(batch)
        time.sleep(0.1)
    for batch in batches:
        batch.join(timeout=5 * TIMEOUT_S)
    receiver.stop()  # without the deadline: ends the trickle still open
    for batch in batches:
        batch.join(timeout=30)

    sent = _the_delivery(database_url)
    assert sent.status == "delivered", sent
    first, retry = sent.attempts
    assert first.error == CUT and retry.status_code == 200
    assert TIMEOUT_S * 1000 <= first.duration_ms < 5 * TIMEOUT_S * 1000
    calls = receiver.received
    assert len(calls) == 2  # the trickled attempt, then the retry: nothing in between
    first_ended = first.attempted_at + timedelta(milliseconds=first.duration_ms)
    assert calls[1].received_at >= first_ended.timestamp()  # sent only after the first ended
    assert calls[0].headers["webhook-id"] == calls[1].headers["webhook-id"]
