"""Sessions and database errors: readers never wait for writers on SQLite, and a database that
cannot serve becomes one `DatabaseUnavailable` line without statement parameters (secrets)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Insert, insert, select, text, update
from sqlalchemy.engine import make_url

from tracker import db, tokens
from tracker.api import create_app
from tracker.db import migrate
from tracker.db.models import TrackedTask, WebhookEndpoint
from tracker.errors import DatabaseUnavailable
from tracker.settings import Settings
from tracker.tasks import register

SECRET = "whsec_c2VjcmV0LXRoYXQtbXVzdC1uZXZlci1iZS1sb2dnZWQ="


def _sqlite(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'tracker.db'}"
    migrate.upgrade(url)
    return url


class Writer:
    """A writer that holds SQLite's write lock until `release` is set, or for 10 s.

    `gave_up` is set before the lock is released after the 10 s, so a reader that could only
    run once the lock was free finds it set.
    """

    def __init__(self, url: str) -> None:
        self.release, self.gave_up, locked = threading.Event(), threading.Event(), threading.Event()

        def hold() -> None:
            with db.session_scope(url) as session:
                session.execute(update(TrackedTask).values(poll_count=TrackedTask.poll_count + 1))
                locked.set()
                if not self.release.wait(10):
                    self.gave_up.set()

        self.thread = threading.Thread(target=hold)
        self.thread.start()
        assert locked.wait(10)

    def stop(self) -> None:
        self.release.set()
        self.thread.join()


def test_on_sqlite_a_read_does_not_wait_for_a_writer(tmp_path: Path) -> None:
    url = _sqlite(tmp_path)
    with db.session_scope(url) as session:
        register.register(session, ["vid-1"], first_poll_delay_s=0)
    writer = Writer(url)
    try:
        with db.read_scope(url) as session:
            ids = list(session.scalars(select(TrackedTask.task_id)))
    finally:
        writer.stop()
    assert ids == ["vid-1"] and not writer.gave_up.is_set()


def test_on_sqlite_the_api_answers_reads_while_a_worker_writes(tmp_path: Path) -> None:
    url = _sqlite(tmp_path)
    with db.session_scope(url) as session:
        register.register(session, ["vid-1"], first_poll_delay_s=0)
        secret = tokens.create_token(session, "reader").secret
    client = TestClient(create_app(Settings(database_url=url)))
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/v1/tasks", headers=headers).status_code == 200  # records its first use
    writer = Writer(url)
    try:
        answers = [client.get(path, headers=headers) for path in ("/v1/tasks", "/v1/tasks/vid-1")]
        answers.append(client.get("/metrics"))
    finally:
        writer.stop()
    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert not writer.gave_up.is_set()


def test_a_read_only_sqlite_database_is_one_line_without_parameters(tmp_path: Path) -> None:
    _sqlite(tmp_path)
    read_only = f"sqlite:///file:{tmp_path / 'tracker.db'}?mode=ro&uri=true"
    with pytest.raises(DatabaseUnavailable) as raised, db.session_scope(read_only) as session:
        session.execute(_endpoint_with_secret())
    message = str(raised.value)
    assert "read-only" in message and SECRET not in message and "\n" not in message
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_a_missing_schema_says_to_run_db_upgrade(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    with (
        pytest.raises(DatabaseUnavailable, match="run `tracker db upgrade` first"),
        db.read_scope(url) as session,
    ):
        session.execute(select(TrackedTask))


@pytest.mark.postgres
def test_a_lock_timeout_on_postgres_is_one_line_without_parameters(
    clean_postgres_url: str,
) -> None:
    url = clean_postgres_url
    with db.session_scope(url) as session:
        session.execute(_endpoint_with_secret())
    holder = psycopg.connect(_libpq(url))
    try:
        holder.execute("SELECT * FROM webhook_endpoints FOR UPDATE")  # holds the row lock
        with pytest.raises(DatabaseUnavailable) as raised, db.session_scope(url) as session:
            session.execute(text("SET LOCAL lock_timeout = '200ms'"))
            session.execute(update(WebhookEndpoint).values(secret=SECRET))
    finally:
        holder.rollback()
        holder.close()
    message = str(raised.value)
    assert "lock timeout" in message and SECRET not in message and "\n" not in message


@pytest.mark.postgres
def test_an_unreachable_postgres_is_one_line_naming_the_server(postgres_url: str) -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = make_url(postgres_url).set(port=port).render_as_string(hide_password=False)
    with pytest.raises(DatabaseUnavailable) as raised, db.read_scope(url) as session:
        session.execute(select(TrackedTask))
    assert "the connection failed" in str(raised.value)
    assert str(port) in str(raised.value) and "\n" not in str(raised.value)


def test_engines_hide_parameters_from_any_error_text(tmp_path: Path) -> None:
    url = _sqlite(tmp_path)
    with db.session_scope(url) as session:
        session.execute(_endpoint_with_secret())
    with pytest.raises(Exception) as raised, db.session_scope(url) as session:
        # Breaks a constraint: not an availability problem, so it surfaces as it is, but its
        # text must not carry the parameters (the secret) into a log or a traceback.
        session.execute(insert(WebhookEndpoint).values(id=1, url="x", events=[], secret=SECRET))
    assert SECRET not in str(raised.value)


def _endpoint_with_secret() -> Insert:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    return insert(WebhookEndpoint).values(
        url="https://example.com/hook",
        events=["task.completed"],
        secret=SECRET,
        enabled=True,
        created_at=now,
        updated_at=now,
    )


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
