"""API tokens from the command line: created and shown once, stored hashed, listed, revoked."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from tests.conftest import Configure
from tracker import db, tokens
from tracker.cli import app
from tracker.leasing import utc_now
from tracker.models import ApiToken

runner = CliRunner()


@pytest.fixture
def cli_db(database_url: str, configure: Configure) -> str:
    configure(TRACKER_DATABASE_URL=database_url)
    return database_url


def _run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_a_token_is_shown_once_and_stored_only_as_a_hash(cli_db: str) -> None:
    code, out, _ = _run("tokens", "create", "video-backend", "--json")
    assert code == 0
    created = json.loads(out)
    secret = created["secret"]
    assert secret.startswith("trk_") and len(secret) > 40

    with db.session_scope() as session:
        stored = session.scalars(select(ApiToken)).one()
        assert secret not in (stored.token_hash, stored.prefix, stored.name)
        assert tokens.authenticate(session, secret, now=utc_now()) is not None
        assert tokens.authenticate(session, secret + "x", now=utc_now()) is None

    code, out, _ = _run("tokens", "list", "--json")
    assert code == 0 and secret not in out
    [listed] = json.loads(out)
    assert (listed["name"], listed["revoked_at"]) == ("video-backend", None)
    assert secret.startswith(listed["prefix"])


def test_a_revoked_token_no_longer_authenticates(cli_db: str) -> None:
    code, out, _ = _run("tokens", "create", "old", "--json")
    created = json.loads(out)

    code, out, _ = _run("tokens", "revoke", str(created["token"]["id"]))
    assert code == 0 and "revoked" in out
    with db.session_scope() as session:
        assert tokens.authenticate(session, created["secret"], now=utc_now()) is None
    assert _run("tokens", "list", "--json")[1].strip() == "[]"
    [revoked] = json.loads(_run("tokens", "list", "--all", "--json")[1])
    assert revoked["revoked_at"] is not None


def test_bad_token_commands_say_what_is_wrong(cli_db: str) -> None:
    code, _, err = _run("tokens", "revoke", "42")
    assert code == 1 and "no API token with ID 42" in err
    code, _, err = _run("tokens", "create", "   ")
    assert code == 2 and "token name" in err
    assert _run("tokens", "list", "--json")[1].strip() == "[]"
