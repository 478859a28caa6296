"""Webhook secrets are encrypted at rest: dumps show none, keys rotate, a wrong key sends nothing.

Real pieces: SQLite files and PostgreSQL (dumped with `iterdump` and `pg_dump`), a webhook
receiver on loopback verifying every signature, and the `tracker` command for the key steps.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import insert, select
from sqlalchemy.engine import make_url

from tests.conftest import Configure
from tests.support import run_cli
from tests.webhooks.test_delivery import LOOPBACK, _deliveries, _send_due, receiver
from tracker import db
from tracker.db.clock import utc_now
from tracker.db.models import WebhookDelivery, WebhookEndpoint
from tracker.errors import UnreadableSecret
from tracker.tasks import register, untrack
from tracker.testing.receiver import WebhookReceiver
from tracker.webhooks import endpoints, probe
from tracker.webhooks.guarded_http import guarded_session
from tracker.webhooks.signing import generate_secret
from tracker.webhooks.vault import ENCRYPTED_PREFIX

__all__ = ["receiver"]  # the fixture, used by name

K1, K2 = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def _cancel(url: str, task_id: str) -> None:
    """A task registered and untracked: its endpoint hears task.cancelled."""
    with db.session_scope(url) as session:
        register.register(session, [task_id], now=utc_now(), first_poll_delay_s=600)
    with db.session_scope(url) as session:
        untrack.untrack(session, task_id)


def _add(url: str, receiver: WebhookReceiver, path: str = "/hook") -> endpoints.CreatedEndpoint:
    with db.session_scope(url) as session:
        created = endpoints.add_endpoint(
            session, receiver.url + path, events=["task.cancelled"], policy=LOOPBACK
        )
    assert created.secret is not None
    return created


def _stored_secrets(url: str) -> list[str]:
    with db.read_scope(url) as session:
        rows = session.scalars(select(WebhookEndpoint)).all()
        return [
            stored
            for row in rows
            for stored in (row.secret, *(e["secret"] for e in row.previous_secrets))
        ]


def _dump(url: str, tmp_path: Path) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        connection = sqlite3.connect(str(parsed.database))
        try:
            text = "\n".join(connection.iterdump())
        finally:
            connection.close()
        if shutil.which("sqlite3"):  # and as a user would, with the sqlite3 shell
            shell = subprocess.run(
                ["sqlite3", str(parsed.database), ".dump"],
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            )
            text += shell.stdout
        return text
    if not shutil.which("pg_dump"):
        pytest.skip("pg_dump is not installed")
    libpq = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    dumped = subprocess.run(
        ["pg_dump", "--data-only", libpq], capture_output=True, text=True, check=True, timeout=60
    )
    return dumped.stdout


def test_a_database_dump_holds_no_webhook_secret_in_clear(
    database_url: str, configure: Configure, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    configure(TRACKER_SECRET_KEY=K1)
    shown = [_add(database_url, receiver).secret]
    with db.session_scope(database_url) as session:
        register.register(session, ["t1"], now=utc_now(), first_poll_delay_s=600)
        subscribed = endpoints.subscribe_tasks(
            session, ["t1"], receiver.url + "/per-task", policy=LOOPBACK
        )
        shown.append(subscribed.secret)
        shown.append(endpoints.rotate_secret(session, 1, overlap_s=3600).secret)

    dump = _dump(database_url, tmp_path)

    assert "webhook_endpoints" in dump and ENCRYPTED_PREFIX in dump
    assert "whsec_" not in dump
    for secret in shown:
        assert secret is not None
        assert secret.removeprefix("whsec_") not in dump
    assert K1 not in dump


def test_rotating_the_key_keeps_deliveries_signing(
    database_url: str, configure: Configure, receiver: WebhookReceiver
) -> None:
    configure(TRACKER_SECRET_KEY=K1, TRACKER_DATABASE_URL=database_url)
    created = _add(database_url, receiver)
    assert created.secret is not None
    receiver.set_secrets([created.secret])
    _cancel(database_url, "before")
    _send_due(database_url)
    before = _stored_secrets(database_url)

    configure(TRACKER_SECRET_KEY=f"{K2},{K1}")  # the new key first, the old one after it
    code, out, err = run_cli("secrets", "rotate-key")
    assert code == 0, err
    assert "encrypted 1 webhook secrets of 1 endpoints" in " ".join(out.split())
    configure(TRACKER_SECRET_KEY=K2)  # the old key dropped
    _cancel(database_url, "after")
    _send_due(database_url)

    arrived = receiver.wait_for(2)
    assert [item.verified for item in arrived] == [True, True]
    assert [item.payload["data"]["task_id"] for item in arrived] == ["before", "after"]
    [after] = _stored_secrets(database_url)
    assert after != before[0]
    token = after.removeprefix(ENCRYPTED_PREFIX).encode()
    assert Fernet(K2.encode()).decrypt(token).decode() == created.secret
    assert K1 not in out + err and K2 not in out + err and created.secret not in out + err


def test_a_secret_encrypted_with_a_key_no_longer_configured_is_never_sent_unsigned(
    database_url: str, configure: Configure, receiver: WebhookReceiver
) -> None:
    configure(TRACKER_SECRET_KEY=K1, TRACKER_DATABASE_URL=database_url)
    created = _add(database_url, receiver)
    assert created.secret is not None
    receiver.set_secrets([created.secret])
    configure(TRACKER_SECRET_KEY=K2)  # K1 lost
    _cancel(database_url, "t1")

    counts = _send_due(database_url)

    assert counts == {"unsigned": 1}
    assert receiver.received == []  # send_batch has returned: nothing was POSTed
    [delivery] = _deliveries(database_url)
    assert delivery.status == "pending" and not delivery.attempts
    assert delivery.next_attempt_at is not None and delivery.next_attempt_at > utc_now()
    assert delivery.last_error is not None
    assert f"the signing secret of webhook endpoint {created.endpoint.id} cannot be decrypted" in (
        delivery.last_error
    )
    assert created.secret not in delivery.last_error and K1 not in delivery.last_error
    code, _, err = run_cli("secrets", "rotate-key")
    assert code == 1 and f"webhook endpoint {created.endpoint.id} cannot be decrypted" in err
    assert len(err.strip().splitlines()) == 1 and K2 not in err

    configure(TRACKER_SECRET_KEY=f"{K2},{K1}")  # the key is back: it goes out, signed
    with db.session_scope(database_url) as session:
        row = session.get(WebhookDelivery, delivery.id)
        assert row is not None
        row.next_attempt_at = utc_now()  # rather than wait UNSIGNED_RETRY_S
    assert _send_due(database_url) == {"delivered": 1}
    [item] = receiver.wait_for(1)
    assert item.verified


@pytest.mark.parametrize(
    ("value", "which"),
    [("not-a-key", "the key"), (f"{Fernet.generate_key().decode()},short", "key 2 of 2")],
)
def test_an_invalid_secret_key_is_one_line_that_never_shows_it(
    configure: Configure, value: str, which: str
) -> None:
    configure(TRACKER_SECRET_KEY=value)
    code, out, err = run_cli("list")
    assert code == 1
    assert err.count("\n") == 1
    assert f"TRACKER_SECRET_KEY: {which} is not a Fernet key" in err
    for part in value.split(","):
        assert part not in err + out


def test_without_a_configured_key_one_is_made_owner_only_and_said_once(
    cli_db: str, configure: Configure, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    configure(TRACKER_WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8", TRACKER_DATA_DIR=tmp_path / "keys")
    caplog.set_level(logging.WARNING, logger="tracker.webhooks.vault")
    assert run_cli("list")[0] == 0
    assert not (tmp_path / "keys" / "secret.key").exists()  # made when first needed

    assert run_cli("webhooks", "add", "http://127.0.0.1:9/a")[0] == 0
    assert run_cli("webhooks", "add", "http://127.0.0.1:9/b")[0] == 0

    key_file = tmp_path / "keys" / "secret.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert key_file.parent.stat().st_mode & 0o777 == 0o700
    said = [r.getMessage() for r in caplog.records if "created a new key" in r.getMessage()]
    assert said == [f"created a new key for webhook secrets in {key_file} (owner-only): back it "
                    "up with the database, or set TRACKER_SECRET_KEY instead"]  # fmt: skip
    key = key_file.read_bytes().strip()
    for stored in _stored_secrets(cli_db):
        token = stored.removeprefix(ENCRYPTED_PREFIX).encode()
        assert Fernet(key).decrypt(token).startswith(b"whsec_")


def test_plain_secrets_from_before_are_encrypted_by_db_upgrade_and_still_sign(
    cli_db: str, configure: Configure, receiver: WebhookReceiver
) -> None:
    configure(TRACKER_SECRET_KEY=K1)
    plain, previous = generate_secret(), generate_secret()
    now = utc_now()
    with db.session_scope(cli_db) as session:  # as 0008 leaves a database made before it
        session.execute(
            insert(WebhookEndpoint).values(
                url=receiver.url + "/old",
                events=["task.cancelled"],
                secret=plain,
                previous_secrets=[{"secret": previous, "until": "2999-01-01T00:00:00+00:00"}],
                all_tasks=True,
                enabled=True,
                created_at=now,
                updated_at=now,
            )
        )

    code, out, _ = run_cli("db", "upgrade")
    assert code == 0 and "encrypted 2 webhook secrets stored in plain text" in out
    stored = _stored_secrets(cli_db)
    assert all(value.startswith(ENCRYPTED_PREFIX) for value in stored)
    assert plain not in str(stored) and previous not in str(stored)
    assert "encrypted" not in run_cli("db", "upgrade")[1]  # once

    receiver.set_secrets([previous])  # a receiver still on the rotated-out secret
    _cancel(cli_db, "t1")
    _send_due(cli_db)
    [item] = receiver.wait_for(1)
    assert item.verified
    assert len(item.headers["webhook-signature"].split(" ")) == 2


def test_a_webhook_test_with_an_unreadable_secret_is_refused_and_stores_nothing(
    database_url: str, configure: Configure, receiver: WebhookReceiver
) -> None:
    configure(TRACKER_SECRET_KEY=K1, TRACKER_DATABASE_URL=database_url)
    created = _add(database_url, receiver)
    configure(TRACKER_SECRET_KEY=K2)  # K1 lost

    with guarded_session(LOOPBACK) as http, pytest.raises(UnreadableSecret, match="decrypted"):
        probe.send_test_event(
            created.endpoint.id,
            session_scope=lambda: db.session_scope(database_url),
            http=http,
            timeout_s=5,
            disable_after_s=86400,
        )

    assert _deliveries(database_url) == [] and receiver.received == []
    code, _, err = run_cli("webhooks", "test", str(created.endpoint.id))
    assert code == 1 and "cannot be decrypted" in err and len(err.strip().splitlines()) == 1
