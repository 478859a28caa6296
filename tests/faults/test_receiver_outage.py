"""The fault campaign's webhook scenario: a receiver that answers 503 for a simulated day (or
two), with the default retry schedule (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h, +-20 %) driven
by an injected clock in-process: claims and sends get `now=` from the clock, which jumps to each
delivery's next attempt. Then the receiver comes back: the delivery arrives exactly once under
its one webhook-id, or it ended dead and `redeliver` sends it exactly once; every attempt is
recorded at the clock's time.

The signature timestamps are the injected clock's, a day ahead of the real one, so the
receiver's own Standard Webhooks check (five minutes' tolerance) refuses them; the test checks
the HMAC itself, against the timestamp the clock says.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import random
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select

from tests.conftest import SIM_API_KEY
from tests.faults.campaign import SUMMARIES
from tests.support import poll_until_terminal
from tracker import db
from tracker.db.clock import utc_now
from tracker.db.models import WebhookDelivery
from tracker.settings import Settings
from tracker.tasks import register
from tracker.testing.receiver import Answer, ReceivedWebhook, WebhookReceiver
from tracker.testing.simulator import Simulator, Step, TaskScript
from tracker.upstream.tensorslab import TensorsLabClient
from tracker.webhooks import deliveries, endpoints, sender
from tracker.webhooks.guard import AddressPolicy
from tracker.webhooks.guarded_http import guarded_session

pytestmark = pytest.mark.faults

LOOPBACK = AddressPolicy.from_setting("127.0.0.0/8")
DAY_S = 86400.0
JITTER = 0.2


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running


def _signature_ok(item: ReceivedWebhook, secret: str, at: datetime) -> bool:
    """Standard Webhooks' v1 HMAC of `id.timestamp.body`, with the timestamp the clock gave."""
    stamp = item.headers["webhook-timestamp"]
    if int(stamp) != int(at.timestamp()):
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{item.headers['webhook-id']}.{stamp}.{item.body}".encode()
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    offered = [part.removeprefix("v1,") for part in item.headers["webhook-signature"].split()]
    return any(hmac.compare_digest(expected, sig) for sig in offered)


class _Run:
    """One delivery driven through the retry schedule by an injected clock."""

    def __init__(self, url: str, receiver: WebhookReceiver, *, down_s: float) -> None:
        self.url, self.receiver = url, receiver
        self.settings = Settings()
        self.clock = utc_now()
        self.up_at = self.clock + timedelta(seconds=down_s)
        self.sent_at: list[datetime] = []  # the clock at each tick that sent something
        self.rng = random.Random(0)

    def now(self) -> datetime:
        return self.clock

    def tick(self) -> int:
        """Claim and send what is due at the clock's time, the receiver down or up by it."""
        down = self.clock < self.up_at
        self.receiver.script(default=Answer(503, body="down") if down else Answer(200))
        with db.session_scope(self.url) as session:
            claims = sender.claim_due_deliveries(
                session, now=self.clock, limit=100, lease_s=120, batch_size=20
            )
        http = guarded_session(LOOPBACK)
        sent = 0
        try:
            for claim in claims:
                counts = sender.send_batch(
                    claim,
                    session_scope=lambda: db.session_scope(self.url),
                    http=http,
                    timeout_s=5.0,
                    schedule_s=self.settings.webhook_retry_schedule_s,
                    disable_after_s=self.settings.webhook_disable_after_s,
                    now=self.now,
                    rng=self.rng,
                )
                sent += sum(counts.values())
        finally:
            http.close()
        if sent:
            self.sent_at.append(self.clock)
        return sent

    def delivery(self) -> WebhookDelivery:
        with db.read_scope(self.url) as session:
            [row] = session.scalars(select(WebhookDelivery)).all()
            session.expunge(row)
            return row

    def drive(self, *, until: datetime) -> WebhookDelivery:
        """Tick, jumping the clock to each next attempt, until the delivery settles."""
        for _ in range(50):
            self.tick()
            row = self.delivery()
            if row.status != "pending":
                return row
            assert row.next_attempt_at is not None, "a pending delivery with no due time"
            if row.next_attempt_at > until:
                pytest.fail(f"still pending at {row.next_attempt_at}, past {until}")
            self.clock = max(self.clock + timedelta(milliseconds=1), row.next_attempt_at)
        pytest.fail("the delivery never settled")


@pytest.mark.parametrize("down_days", [1, 2])
def test_a_receiver_down_for_days_gets_the_delivery_once_under_one_webhook_id(
    database_url: str, simulator: Simulator, receiver: WebhookReceiver, down_days: int
) -> None:
    started = time.monotonic()
    with db.session_scope(database_url) as session:
        created = endpoints.add_endpoint(
            session, receiver.url + "/hook", events=(), now=utc_now(), policy=LOOPBACK
        )
    simulator.add_task(TaskScript("outage-1", (Step(2, polls=1), Step(3))))
    with db.session_scope(database_url) as session:
        register.register(session, ["outage-1"], now=utc_now(), first_poll_delay_s=0)
    client = TensorsLabClient(base_url=simulator.base_url, api_key=SIM_API_KEY)
    try:
        poll_until_terminal(database_url, client, task_ids=["outage-1"])
    finally:
        client.close()

    run = _Run(database_url, receiver, down_s=down_days * DAY_S)
    schedule = run.settings.webhook_retry_schedule_s
    assert schedule == (5, 300, 1800, 7200, 18000, 36000, 36000)  # the default schedule
    row = run.drive(until=run.up_at + timedelta(days=2))
    redelivered = False
    if row.status == "failed":  # every attempt fell inside the outage: dead, then replayed
        assert run.clock < run.up_at or down_days == 1
        run.clock = max(run.clock, run.up_at) + timedelta(minutes=1)
        with db.session_scope(database_url) as session:
            deliveries.redeliver(session, str(row.id), now=run.clock)
        row = run.drive(until=run.clock + timedelta(hours=1))
        redelivered = True
    assert row.status == "delivered"
    if down_days == 2:
        assert redelivered  # the schedule (27.6 h +-20 %) ends before a two-day outage does

    with db.read_scope(database_url) as session:
        view = deliveries.get_delivery(session, str(row.id))
    arrived = receiver.received
    ids = {item.headers["webhook-id"] for item in arrived}
    answers = [item.answered_status for item in arrived]
    # Every request is an attempt, recorded at the clock's time with the answer it got.
    assert [a.status_code for a in view.attempts] == answers
    assert [a.attempted_at for a in view.attempts] == run.sent_at
    assert [a.succeeded for a in view.attempts] == [s == 200 for s in answers]
    assert created.secret is not None
    assert all(
        _signature_ok(item, created.secret, at)
        for item, at in zip(arrived, run.sent_at, strict=True)
    )
    # The schedule: each wait is its step of the default schedule, +-20 %.
    failed_run = run.sent_at[: len(schedule) + 1] if redelivered else run.sent_at
    for step, (before, after) in enumerate(itertools.pairwise(failed_run)):
        waited = (after - before).total_seconds()
        assert schedule[step] * (1 - JITTER) <= waited <= schedule[step] * (1 + JITTER), step
    if redelivered:
        assert answers[: len(schedule) + 1] == [503] * (len(schedule) + 1)
    assert all(at < run.up_at for at, s in zip(run.sent_at, answers, strict=True) if s == 503)

    lost = 0 if answers.count(200) >= 1 else 1
    duplicated = max(0, answers.count(200) - 1)
    two_ids = len(ids) - 1
    line = (
        f"[faults] receiver-down-{down_days}d ({database_url.split(':')[0]}, in-process): "
        f"tasks=1 faults=1 (receiver 503 for "
        f"{down_days * 24} simulated h) | lost=0 duplicated_transitions=0 lost_messages={lost} "
        f"two_id_messages={two_ids} overlapping_polls=0 | attempts={len(answers)} "
        f"({answers.count(503)}x503 then {answers.count(200)}x200"
        f"{', after redeliver' if redelivered else ''}) arrived-twice={duplicated} "
        f"simulated {(run.sent_at[-1] - run.sent_at[0]).total_seconds() / 3600:.1f} h "
        f"in {time.monotonic() - started:.1f}s"
    )
    SUMMARIES.append(line)
    print(line)
    assert (lost, duplicated, two_ids) == (0, 0, 0), line
    # attempt_count counts the current round (redeliver starts a fresh one); the attempts
    # themselves are all kept, above.
    assert view.attempt_count == (1 if redelivered else len(answers))
