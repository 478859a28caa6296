"""0008 merges live endpoints that share a URL into the oldest, losing no delivery or attempt;
the merged-away secrets keep signing; then a second live endpoint for a URL is refused."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from tests.webhooks.test_delivery import _send_due
from tracker.db import migrate
from tracker.testing.receiver import WebhookReceiver
from tracker.webhooks.events import PER_TASK_EVENTS
from tracker.webhooks.signing import generate_secret


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.db'}"
    return str(request.getfixturevalue("empty_postgres_url"))


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running


def _at(engine: sa.Engine, minute: int) -> datetime:
    value = datetime(2026, 11, 29, 3, minute, tzinfo=UTC)
    return value.replace(tzinfo=None) if engine.dialect.name == "sqlite" else value


S = {n: generate_secret() for n in range(1, 8)}
P1 = generate_secret()  # endpoint 1's previous secret, still signing at the merge

# (id, task_pk or None for all tasks, path, events, enabled, removed)
ENDPOINTS = (
    (1, None, "/a", ["task.completed", "task.failed"], True, False),
    (2, 1, "/a", list(PER_TASK_EVENTS), True, False),
    (3, 2, "/a", list(PER_TASK_EVENTS), False, False),  # disabled by the user
    (4, 1, "/b", list(PER_TASK_EVENTS), True, False),
    (5, 3, "/b", list(PER_TASK_EVENTS), True, False),
    (6, 1, "/a", list(PER_TASK_EVENTS), False, True),  # removed before: history
    (7, None, "/c", ["task.completed"], True, False),
)
# (id, endpoint, task_pk, event, body, status, held)
DELIVERIES = (
    (10, 1, 1, "task.completed", '{"n":1}', "delivered", False),
    (11, 1, 2, "task.completed", '{"n":2}', "pending", False),
    (20, 2, 1, "task.cancelled", '{"n":3}', "delivered", False),
    (21, 2, 1, "task.completed", '{"n":1}', "pending", False),  # arrived already as 10
    (30, 3, 2, "task.completed", '{"n":2}', "pending", True),  # the same message as 11
    (31, 3, 2, "task.expired", '{"n":4}', "pending", True),  # held for the disabled one
    (40, 4, 1, "task.completed", '{"n":1}', "delivered", False),
    (41, 4, 1, "task.failed", '{"n":5}', "pending", False),
    (50, 5, 3, "task.completed", '{"n":6}', "pending", False),
    (60, 6, 1, "task.completed", '{"n":1}', "failed", False),
)


def _seed(engine: sa.Engine, base_url: str) -> None:
    meta = sa.MetaData()
    meta.reflect(engine)
    tasks, ends, dels, tries = (
        meta.tables[name]
        for name in (
            "tracked_tasks",
            "webhook_endpoints",
            "webhook_deliveries",
            "delivery_attempts",
        )
    )
    now = _at(engine, 0)
    with engine.begin() as c:
        for pk in (1, 2, 3):
            c.execute(
                sa.insert(tasks).values(
                    id=pk,
                    provider="tensorslab",
                    task_id=f"t{pk}",
                    status="registered",
                    result_urls=[],
                    details={},
                    task_metadata={},
                    created_at=now,
                    updated_at=now,
                    poll_count=0,
                    error_count=0,
                    consecutive_errors=0,
                )
            )
        for endpoint_id, task_pk, path, events, enabled, removed in ENDPOINTS:
            c.execute(
                sa.insert(ends).values(
                    id=endpoint_id,
                    url=base_url + path,
                    events=events,
                    secret=S[endpoint_id],
                    previous_secret=P1 if endpoint_id == 1 else None,
                    previous_secret_expires_at=(
                        datetime.now(UTC) + timedelta(days=1) if endpoint_id == 1 else None
                    ),
                    enabled=enabled,
                    disabled_reason=None if enabled else "disabled by the user",
                    task_pk=task_pk,
                    created_at=_at(engine, endpoint_id),
                    updated_at=now,
                    removed_at=now if removed else None,
                )
            )
        for delivery_id, endpoint_id, task_pk, event, body, status, held in DELIVERIES:
            c.execute(
                sa.insert(dels).values(
                    id=delivery_id,
                    message_id=f"msg_{delivery_id}",
                    endpoint_id=endpoint_id,
                    task_pk=task_pk,
                    event_type=event,
                    payload=body,
                    status=status,
                    attempt_count=1,
                    next_attempt_at=now if status == "pending" and not held else None,
                    created_at=now,
                    updated_at=now,
                )
            )
            c.execute(
                sa.insert(tries).values(
                    delivery_id=delivery_id,
                    attempted_at=now,
                    duration_ms=1.0,
                    status_code=200 if status == "delivered" else 503,
                    succeeded=status == "delivered",
                )
            )
        if engine.dialect.name == "postgresql":  # rows given ids: the sequences go past them
            for table in ("webhook_endpoints", "webhook_deliveries", "tracked_tasks"):
                c.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), 100)"))


def test_endpoints_with_one_url_are_merged_into_the_oldest_losing_nothing(
    empty_url: str, receiver: WebhookReceiver
) -> None:
    migrate.upgrade(empty_url, "0007")
    engine = sa.create_engine(empty_url)
    _seed(engine, receiver.url)

    migrate.upgrade(empty_url)

    meta = sa.MetaData()
    meta.reflect(engine)
    ends, dels, tries, subs = (
        meta.tables[name]
        for name in (
            "webhook_endpoints",
            "webhook_deliveries",
            "delivery_attempts",
            "webhook_subscriptions",
        )
    )
    with engine.connect() as c:
        rows = {r.id: r for r in c.execute(sa.select(ends))}
        deliveries = {r.id: r for r in c.execute(sa.select(dels))}
        attempts = c.scalar(sa.select(sa.func.count()).select_from(tries))
        subscribed = set(c.execute(sa.select(subs.c.endpoint_id, subs.c.task_pk)).all())
    assert len(deliveries) == len(DELIVERIES) and attempts == len(DELIVERIES)  # nothing lost
    assert sorted(i for i, r in rows.items() if r.removed_at is None) == [1, 4, 7]
    for merged, keeper in ((2, 1), (3, 1), (5, 4)):
        assert rows[merged].disabled_reason == (
            f"removed: same URL as endpoint {keeper}, merged into it"
        )
    assert rows[6].disabled_reason == "disabled by the user"  # removed before: as it was

    # The oldest secret signs; the others keep signing as rotated-out secrets.
    assert rows[1].secret == S[1] and rows[4].secret == S[4]
    assert [e["secret"] for e in rows[1].previous_secrets] == [P1, S[2], S[3]]
    assert [e["secret"] for e in rows[4].previous_secrets] == [S[5]]
    # For every task if one of them was; else for the tasks of the per-task ones.
    assert (rows[1].all_tasks, rows[4].all_tasks, rows[7].all_tasks) == (True, False, True)
    assert subscribed == {(4, 1), (4, 3)}
    assert rows[1].events == ["task.completed", "task.failed", *PER_TASK_EVENTS[2:]]
    assert rows[1].enabled and rows[1].disabled_reason is None

    owner = {i: d.endpoint_id for i, d in deliveries.items()}
    assert owner == {10: 1, 11: 1, 20: 1, 21: 1, 30: 1, 31: 1, 40: 4, 41: 4, 50: 4, 60: 6}
    status = {i: d.status for i, d in deliveries.items()}
    # A message the receiver already got (10) or will get (11) is not sent again.
    assert (status[21], status[30]) == ("failed", "failed")
    assert deliveries[21].last_error == (
        "the same message as delivery 10 (endpoints merged, not sent)"
    )
    assert (status[11], status[31], status[41], status[50]) == ("pending",) * 4
    assert deliveries[31].next_attempt_at is not None  # the URL's endpoint is enabled: released

    # The pending ones go out, verified by a receiver that knows only the merged-away secrets.
    receiver.set_secrets([S[3], S[5]])
    engine.dispose()
    assert _send_due(empty_url) == {"delivered": 4}
    arrived = receiver.wait_for(4)
    assert all(item.verified for item in arrived)
    assert sorted(item.headers["webhook-id"] for item in arrived) == [
        "msg_11",
        "msg_31",
        "msg_41",
        "msg_50",
    ]

    now = _at(engine, 30)
    with pytest.raises(IntegrityError), engine.begin() as c:
        c.execute(
            sa.insert(ends).values(
                id=99,
                url=receiver.url + "/a",
                events=[],
                secret="s",
                previous_secrets=[],
                all_tasks=True,
                enabled=True,
                created_at=now,
                updated_at=now,
            )
        )

    migrate.downgrade(empty_url, "0007")  # back to one endpoint per (task, URL)
    meta = sa.MetaData()
    meta.reflect(engine)
    ends = meta.tables["webhook_endpoints"]
    with engine.connect() as c:
        per_task = c.execute(
            sa.select(ends.c.task_pk, ends.c.secret).where(
                ends.c.url == receiver.url + "/b", ends.c.removed_at.is_(None)
            )
        ).all()
        total = c.scalar(sa.select(sa.func.count()).select_from(meta.tables["webhook_deliveries"]))
    assert sorted(per_task) == [(1, S[4]), (3, S[4])]
    assert total == len(DELIVERIES)
    engine.dispose()
