"""0009 adds per-endpoint headers and lets a delivery have no task, losing no delivery or
attempt (on SQLite it rebuilds the deliveries table, whose attempts would cascade on delete
with foreign keys on), on SQLite and PostgreSQL; the downgrade drops the test deliveries with
their attempts and nothing else."""

from __future__ import annotations

from datetime import UTC, datetime
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


def test_headers_and_taskless_deliveries_keep_every_delivery_and_attempt(empty_url: str) -> None:
    migrate.upgrade(empty_url, "0008")
    engine = sa.create_engine(empty_url)
    now = datetime(2026, 12, 2, 1, 0, tzinfo=UTC)
    if engine.dialect.name == "sqlite":
        now = now.replace(tzinfo=None)
    t = _tables(engine)
    with engine.begin() as c:
        c.execute(
            sa.insert(t["tracked_tasks"]).values(
                id=1,
                provider="tensorslab",
                task_id="t1",
                status="completed",
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
        c.execute(
            sa.insert(t["webhook_endpoints"]).values(
                id=1,
                url="http://x/a",
                events=["task.completed"],
                secret="s1",
                previous_secrets=[],
                all_tasks=True,
                enabled=True,
                created_at=now,
                updated_at=now,
            )
        )
        for delivery_id in (1, 2):
            c.execute(
                sa.insert(t["webhook_deliveries"]).values(
                    id=delivery_id,
                    message_id=f"msg_{delivery_id}",
                    endpoint_id=1,
                    task_pk=1,
                    event_type="task.completed",
                    payload="{}",
                    status="pending",
                    attempt_count=1,
                    next_attempt_at=now,
                    created_at=now,
                    updated_at=now,
                )
            )
            for _ in range(2):
                c.execute(
                    sa.insert(t["delivery_attempts"]).values(
                        delivery_id=delivery_id,
                        attempted_at=now,
                        duration_ms=1.0,
                        status_code=503,
                        succeeded=False,
                    )
                )

    migrate.upgrade(empty_url)

    t = _tables(engine)
    with engine.begin() as c:
        assert c.scalar(sa.select(sa.func.count()).select_from(t["delivery_attempts"])) == 4
        assert c.scalar(sa.select(sa.func.count()).select_from(t["webhook_deliveries"])) == 2
        assert c.execute(sa.select(t["webhook_endpoints"].c.headers)).scalar_one() == {}
        c.execute(
            sa.insert(t["webhook_deliveries"]).values(
                id=3,
                message_id="msg_3",
                endpoint_id=1,
                task_pk=None,
                event_type="webhook.test",
                payload="{}",
                status="delivered",
                attempt_count=1,
                created_at=now,
                updated_at=now,
            )
        )
        c.execute(
            sa.insert(t["delivery_attempts"]).values(
                delivery_id=3,
                attempted_at=now,
                duration_ms=1.0,
                status_code=200,
                succeeded=True,
            )
        )
    indexes = {i["name"]: i for i in sa.inspect(engine).get_indexes("webhook_deliveries")}
    assert indexes["ix_webhook_deliveries_due"]["column_names"] == ["next_attempt_at"]
    if engine.dialect.name == "sqlite":
        with engine.connect() as c:
            sql = c.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE name = 'ix_webhook_deliveries_due'"
            ).scalar_one()
        assert "WHERE next_attempt_at IS NOT NULL" in sql

    migrate.downgrade(empty_url, "0008")
    t = _tables(engine)
    with engine.begin() as c:
        attempts = c.execute(
            sa.select(t["delivery_attempts"].c.delivery_id).order_by("delivery_id")
        ).scalars()
        assert list(attempts) == [1, 1, 2, 2]  # the test event's attempt went with it
        ids = c.scalars(sa.select(t["webhook_deliveries"].c.id).order_by("id")).all()
    assert ids == [1, 2]  # the test event had no task: it goes
    assert "headers" not in t["webhook_endpoints"].c
    engine.dispose()
