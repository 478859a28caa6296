"""0005 merges duplicate per-task endpoints, losing no delivery or attempt, then makes them
impossible (a partial unique index on live (task, URL))."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from tracker.db import migrate


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.db'}"
    return str(request.getfixturevalue("empty_postgres_url"))


def _at(engine: sa.Engine, minute: int) -> datetime:
    value = datetime(2026, 11, 29, 3, minute, tzinfo=UTC)
    return value.replace(tzinfo=None) if engine.dialect.name == "sqlite" else value


def test_duplicates_are_merged_into_the_oldest_and_then_refused(empty_url: str) -> None:
    migrate.upgrade(empty_url, "0004")
    engine = sa.create_engine(empty_url)
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
        for pk in (1, 2):
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
        # Task 1 sends to /a three times (endpoints 1-3) and once to /b (4); 5 is a removed /a
        # (history, not merged); task 2 sends to /a once (6).
        for endpoint_id, task_pk, url, removed in (
            (1, 1, "http://x/a", None),
            (2, 1, "http://x/a", None),
            (3, 1, "http://x/a", None),
            (4, 1, "http://x/b", None),
            (5, 1, "http://x/a", now),
            (6, 2, "http://x/a", None),
        ):
            c.execute(
                sa.insert(ends).values(
                    id=endpoint_id,
                    url=url,
                    events=["task.completed"],
                    secret=f"s{endpoint_id}",
                    enabled=removed is None,
                    task_pk=task_pk,
                    created_at=_at(engine, endpoint_id),
                    updated_at=now,
                    removed_at=removed,
                )
            )
            for n in range(2):  # two deliveries per endpoint, one attempt each
                delivery_id = endpoint_id * 10 + n
                c.execute(
                    sa.insert(dels).values(
                        id=delivery_id,
                        message_id=f"msg_{delivery_id}",
                        endpoint_id=endpoint_id,
                        task_pk=task_pk,
                        event_type="task.completed",
                        payload="{}",
                        status="delivered" if n else "pending",
                        attempt_count=1,
                        next_attempt_at=None if n else now,
                        created_at=now,
                        updated_at=now,
                    )
                )
                c.execute(
                    sa.insert(tries).values(
                        delivery_id=delivery_id,
                        attempted_at=now,
                        duration_ms=1.0,
                        status_code=200,
                        succeeded=True,
                    )
                )

    migrate.upgrade(empty_url, "0005")

    with engine.connect() as c:
        rows = {r.id: r for r in c.execute(sa.select(ends))}
        owner = {i: e for i, e in c.execute(sa.select(dels.c.id, dels.c.endpoint_id)).all()}
        status = {i: s for i, s in c.execute(sa.select(dels.c.id, dels.c.status)).all()}
        attempts = c.scalar(sa.select(sa.func.count()).select_from(tries))
    live = sorted(i for i, r in rows.items() if r.removed_at is None)
    assert live == [1, 4, 6]
    for merged in (2, 3):
        assert not rows[merged].enabled
        assert rows[merged].disabled_reason == "removed: a duplicate of endpoint 1, merged into it"
    assert rows[5].disabled_reason is None  # removed before: left as it was
    assert len(owner) == 12 and attempts == 12  # nothing lost
    assert {i for i, e in owner.items() if e == 1} == {10, 11, 20, 21, 30, 31}
    # The duplicates' pending copies of the keeper's pending message are never sent: the
    # receiver gets each event once, under one webhook-id.
    assert (status[10], status[20], status[30]) == ("pending", "failed", "failed")
    assert (status[11], status[21], status[31]) == ("delivered", "delivered", "delivered")
    assert {owner[50], owner[51], owner[40], owner[60]} == {5, 4, 6}

    with pytest.raises(IntegrityError), engine.begin() as c:
        c.execute(
            sa.insert(ends).values(
                id=99,
                url="http://x/a",
                events=[],
                secret="s",
                enabled=True,
                task_pk=1,
                created_at=now,
                updated_at=now,
            )
        )
    with engine.begin() as c:  # a global endpoint, or another task, may use the URL freely
        new_rows: tuple[tuple[int, int | None], ...] = ((100, None), (101, None), (102, 2))
        for new_id, owner_pk in new_rows:
            if owner_pk == 2:
                c.execute(sa.update(ends).where(ends.c.id == 6).values(removed_at=now))
            c.execute(
                sa.insert(ends).values(
                    id=new_id,
                    url="http://x/a",
                    events=[],
                    secret="s",
                    enabled=True,
                    task_pk=owner_pk,
                    created_at=now,
                    updated_at=now,
                )
            )
    migrate.downgrade(empty_url, "0004")
    engine.dispose()
