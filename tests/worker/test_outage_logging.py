"""A tick (or a poll, or a delivery) that fails because the database is down logs one WARNING
line naming the cause, the traceback only at DEBUG, and one INFO line when it works again.

Real databases: a PostgreSQL URL on a port nothing listens on, then a migrated SQLite file.
The tick function is called in-process, as the worker would run it."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from tests.conftest import Configure
from tracker import db
from tracker.db import migrate
from tracker.db.clock import utc_now
from tracker.tasks import register
from tracker.worker import celery_app

LOGGER = "tracker.worker.celery_app"


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_failing_tick_logs_one_warning_with_the_cause_then_one_info_when_it_recovers(
    configure: Configure, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    port = _unused_port()
    configure(TRACKER_DATABASE_URL=f"postgresql+psycopg://tracker:s3cret@127.0.0.1:{port}/test")
    caplog.set_level(logging.DEBUG)

    for _ in range(3):
        assert celery_app.tick() == 0

    ours = [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.INFO]
    assert [r.levelno for r in ours] == [logging.WARNING] * 3
    for record in ours:
        message = record.getMessage()
        assert message.startswith("tick failed: cannot use the database at ")
        assert f"127.0.0.1:{port}" in message and "s3cret" not in message
        assert "\n" not in message and record.exc_info is None
    tracebacks = [r for r in caplog.records if r.exc_info is not None]
    assert tracebacks and {r.levelno for r in tracebacks} == {logging.DEBUG}
    assert all(r.name == LOGGER for r in tracebacks), "only ours: once per tick, at DEBUG"
    assert len(tracebacks) == 3
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]

    url = f"sqlite:///{tmp_path / 'tracker.db'}"
    migrate.upgrade(url)
    configure(TRACKER_DATABASE_URL=url)
    caplog.clear()
    for _ in range(2):
        assert celery_app.tick() == 0

    ours = [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.INFO]
    assert [(r.levelno, r.getMessage()) for r in ours] == [
        (logging.INFO, "tick works again (after 3 failed runs)")
    ]


def test_a_failing_poll_and_delivery_log_one_warning_each(
    configure: Configure, caplog: pytest.LogCaptureFixture
) -> None:
    configure(
        TRACKER_DATABASE_URL=f"postgresql+psycopg://tracker@127.0.0.1:{_unused_port()}/test",
        TENSORSLAB_API_KEY="sk-test",
    )
    message = {
        "row_ids": [1, 2],
        "lease_token": "t" * 32,
        "lease_expires_at": "2099-01-01T00:00:00+00:00",
    }
    caplog.set_level(logging.DEBUG)

    assert celery_app.poll(message) == {}
    assert celery_app.deliver(message) == {}

    ours = [r for r in caplog.records if r.levelno >= logging.INFO and r.name == LOGGER]
    assert [r.getMessage().split(":")[0] for r in ours] == ["poll failed", "deliver failed"]
    assert {r.levelno for r in ours} == {logging.WARNING}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_tick_that_cannot_send_to_the_broker_logs_one_warning_naming_the_broker(
    configure: Configure,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'tracker.db'}"
    migrate.upgrade(url)
    configure(TRACKER_DATABASE_URL=url)
    with db.session_scope(url) as session:
        register.register(session, ["video-1"], now=utc_now(), first_poll_delay_s=0)
    app = celery_app.app
    assert app.conf.broker_url  # the configuration is read before it is changed
    port = _unused_port()
    monkeypatch.setitem(app.conf, "broker_url", f"redis://:brokerpw@127.0.0.1:{port}/7")
    monkeypatch.setitem(app.conf, "broker_write_url", None)
    monkeypatch.setitem(app.conf, "broker_transport_options", {})
    monkeypatch.setattr(app, "_pool", None)  # connections are made anew, to that broker
    monkeypatch.setattr(app.amqp, "_producer_pool", None)
    caplog.set_level(logging.DEBUG)

    assert celery_app.tick() == 0

    ours = [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.INFO]
    assert [r.levelno for r in ours] == [logging.WARNING]
    message = ours[0].getMessage()
    assert message.startswith("tick failed: cannot send to the broker at redis://")
    assert str(port) in message and "brokerpw" not in message
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
