"""0012 moves each live task's due time and lease into `scheduled_polls`, keeping them, and
nothing else: a terminal task gets no scheduled poll, no transition is lost (on SQLite it
rebuilds `tracked_tasks`, whose transitions would cascade on delete with foreign keys on), on
SQLite and PostgreSQL; the downgrade puts the due times and leases back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from tracker.db import migrate


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.db'}"
    return str(request.getfixturevalue("empty_postgres_url"))


def _tables(engine: sa.Engine) -> dict[str, sa.Table]:
    meta = sa.MetaData()
    meta.reflect(engine)
    return dict(meta.tables)


def _naive_utc(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def test_live_tasks_keep_their_due_time_and_lease_and_come_back_on_downgrade(
    empty_url: str,
) -> None:
    migrate.upgrade(empty_url, "0011")
    engine = sa.create_engine(empty_url)
    now = datetime(2026, 12, 6, 1, 0, tzinfo=UTC)
    if engine.dialect.name == "sqlite":
        now = now.replace(tzinfo=None)
    leased_until = now + timedelta(seconds=120)
    t = _tables(engine)
    tasks = [
        # (id, status, next_poll_at, lease_token, lease_expires_at)
        (1, "processing", now + timedelta(seconds=20), None, None),
        (2, "pending", leased_until, "a" * 32, leased_until),
        (3, "completed", None, None, None),
    ]
    with engine.begin() as c:
        for pk, status, due, token, until in tasks:
            c.execute(
                sa.insert(t["tracked_tasks"]).values(
                    id=pk,
                    provider="tensorslab-image" if pk == 2 else "tensorslab",
                    task_id=f"t{pk}",
                    status=status,
                    result_urls=[],
                    details={},
                    task_metadata={},
                    created_at=now,
                    updated_at=now,
                    next_poll_at=due,
                    lease_token=token,
                    lease_expires_at=until,
                    poll_count=0,
                    error_count=0,
                    consecutive_errors=0,
                )
            )
        c.execute(
            sa.insert(t["task_transitions"]).values(
                id=1, task_pk=3, from_status="processing", to_status="completed", occurred_at=now
            )
        )

    migrate.upgrade(empty_url)
    t = _tables(engine)
    assert {"next_poll_at", "lease_token", "lease_expires_at"}.isdisjoint(
        t["tracked_tasks"].columns.keys()
    )
    with engine.connect() as c:
        scheduled = c.execute(
            sa.select(t["scheduled_polls"]).order_by(t["scheduled_polls"].c.task_pk)
        ).all()
        assert c.execute(sa.select(sa.func.count()).select_from(t["task_transitions"])).scalar()
        assert c.execute(sa.select(sa.func.count()).select_from(t["tracked_tasks"])).scalar() == 3
    assert [
        (row.task_pk, row.provider, _naive_utc(row.next_poll_at), row.lease_token)
        for row in scheduled
    ] == [
        (1, "tensorslab", _naive_utc(now + timedelta(seconds=20)), None),
        (2, "tensorslab-image", _naive_utc(leased_until), "a" * 32),
    ]
    assert _naive_utc(scheduled[1].lease_expires_at) == _naive_utc(leased_until)

    migrate.downgrade(empty_url, "0011")
    t = _tables(engine)
    with engine.connect() as c:
        rows = c.execute(
            sa.select(
                t["tracked_tasks"].c.id,
                t["tracked_tasks"].c.next_poll_at,
                t["tracked_tasks"].c.lease_token,
            ).order_by(t["tracked_tasks"].c.id)
        ).all()
    assert [(pk, due and _naive_utc(due), token) for pk, due, token in rows] == [
        (1, _naive_utc(now + timedelta(seconds=20)), None),
        (2, _naive_utc(leased_until), "a" * 32),
        (3, None, None),
    ]
    assert "scheduled_polls" not in t
    engine.dispose()
