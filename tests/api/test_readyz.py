"""`/readyz` needs no token, so it says only which check failed and a fixed reason: never the
database's user, host or name, nor the broker's address. The detail goes to the log."""

from __future__ import annotations

import logging
import socket

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Configure
from tracker.api import create_app
from tracker.api.routes.ops import UNAVAILABLE
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
    assert ready.json()["checks"] == {"database": "ok", "broker": UNAVAILABLE["broker"]}
    for detail in ("redis", "127.0.0.1", str(port), "brokerpw"):
        assert detail not in ready.text, detail
    [logged] = [r for r in caplog.records if "readyz" in r.getMessage()]
    assert "broker" in logged.getMessage() and str(port) in logged.getMessage()
    assert "brokerpw" not in logged.getMessage()
