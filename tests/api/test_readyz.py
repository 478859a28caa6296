"""`/readyz` needs no token, so it says only which check failed and a fixed reason: never the
database's user, host or name, nor the broker's address. The detail goes to the log."""

from __future__ import annotations

import logging
import socket
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Configure
from tracker import db
from tracker.api import create_app
from tracker.api.routes.ops import UNAVAILABLE
from tracker.db.clock import utc_now
from tracker.ops import heartbeats
from tracker.tasks import register
from tracker.worker.celery_app import app as celery


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_database_that_fails_is_named_only_as_the_database(
    configure: Configure, caplog: pytest.LogCaptureFixture
) -> None:
    port = _unused_port()
    configure(TRACKER_DATABASE_URL=f"postgresql+psycopg://ops_user:pw@127.0.0.1:{port}/ops_db")
    caplog.set_level(logging.WARNING)

    with TestClient(create_app(), raise_server_exceptions=False) as api:
        ready = api.get("/readyz")

    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable"
    assert ready.json()["checks"]["database"] == UNAVAILABLE["database"]
    for detail in ("ops_user", "ops_db", "127.0.0.1", str(port), "postgresql", "pw"):
        assert detail not in ready.text, detail
    [logged] = [r for r in caplog.records if "readyz" in r.getMessage()]
    assert logged.levelno == logging.WARNING
    assert "database" in logged.getMessage() and f"127.0.0.1:{port}/ops_db" in logged.getMessage()
    assert "pw@" not in logged.getMessage()


def test_a_broker_that_fails_is_named_only_as_the_broker(
    database_url: str,
    configure: Configure,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configure(TRACKER_DATABASE_URL=database_url)
    port = _unused_port()
    assert celery.conf.broker_url  # the configuration is read before it is changed
    monkeypatch.setitem(celery.conf, "broker_url", f"redis://:brokerpw@127.0.0.1:{port}/7")
    monkeypatch.setitem(celery.conf, "broker_write_url", None)
    monkeypatch.setitem(celery.conf, "broker_transport_options", {})
    caplog.set_level(logging.WARNING)

    with TestClient(create_app(), raise_server_exceptions=False) as api:
        ready = api.get("/readyz")

    assert ready.status_code == 503
    assert ready.json()["checks"] == {
        "database": "ok",
        "broker": UNAVAILABLE["broker"],
        "beat": "none seen yet",
        "workers": "none seen yet",
        "overdue": "ok",
    }
    for detail in ("redis", "127.0.0.1", str(port), "brokerpw"):
        assert detail not in ready.text, detail
    [logged] = [r for r in caplog.records if "readyz" in r.getMessage()]
    assert "broker" in logged.getMessage() and str(port) in logged.getMessage()
    assert "brokerpw" not in logged.getMessage()


def test_a_fresh_installation_with_nothing_due_is_ready(
    database_url: str, configure: Configure
) -> None:
    configure(TRACKER_DATABASE_URL=database_url)

    with TestClient(create_app()) as api:
        ready = api.get("/readyz")

    assert ready.status_code == 200, ready.text
    assert ready.json() == {
        "status": "ok",
        "checks": {
            "database": "ok",
            "broker": "ok",
            "beat": "none seen yet",
            "workers": "none seen yet",
            "overdue": "ok",
        },
        "paused": [],
    }


def test_overdue_tasks_make_it_unready_and_say_why(database_url: str, configure: Configure) -> None:
    configure(TRACKER_DATABASE_URL=database_url)
    now = utc_now()
    with db.session_scope(database_url) as session:
        register.register(
            session, ["waiting"], now=now - timedelta(minutes=5), first_poll_delay_s=0
        )
        seen = now - timedelta(minutes=2)
        heartbeats.record(session, kind="beat", host="h", pid=1, started_at=seen, now=seen)
        heartbeats.record(session, kind="polls", host="h", pid=2, started_at=seen, now=now)

    with TestClient(create_app()) as api:
        ready = api.get("/readyz")

    assert ready.status_code == 503
    checks = ready.json()["checks"]
    assert checks["beat"] == f"gone: last seen {seen:%H:%M:%S} UTC" and checks["workers"] == "ok"
    assert checks["overdue"].startswith("1 task overdue (the oldest by 5m 0")
    assert checks["overdue"].endswith(
        f"s): no beat has ticked since {seen:%H:%M:%S} UTC: is `tracker beat` running?"
    )
