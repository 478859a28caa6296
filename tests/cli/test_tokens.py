"""API tokens from the command line: created and shown once, stored hashed, listed, revoked."""

from __future__ import annotations

import json

from sqlalchemy import select

from tests.support import run_cli
from tracker import db, tokens
from tracker.db.models import ApiToken


def test_a_token_is_shown_once_and_stored_only_as_a_hash(cli_db: str) -> None:
    code, out, _ = run_cli("tokens", "create", "video-backend", "--json")
    assert code == 0
    created = json.loads(out)
    secret = created["secret"]
    assert secret.startswith("trk_") and len(secret) > 40

    with db.session_scope() as session:
        stored = session.scalars(select(ApiToken)).one()
        assert secret not in (stored.token_hash, stored.prefix, stored.name)
        assert tokens.authenticate(session, secret) is not None
        assert tokens.authenticate(session, secret + "x") is None

    code, out, _ = run_cli("tokens", "list", "--json")
    assert code == 0 and secret not in out
    [listed] = json.loads(out)
    assert (listed["name"], listed["revoked_at"]) == ("video-backend", None)
    assert secret.startswith(listed["prefix"])


def test_a_revoked_token_no_longer_authenticates(cli_db: str) -> None:
    code, out, _ = run_cli("tokens", "create", "old", "--json")
    created = json.loads(out)

    code, out, _ = run_cli("tokens", "revoke", str(created["token"]["id"]))
    assert code == 0 and "revoked" in out
    with db.session_scope() as session:
        assert tokens.authenticate(session, created["secret"]) is None
    assert run_cli("tokens", "list", "--json")[1].strip() == "[]"
    [revoked] = json.loads(run_cli("tokens", "list", "--all", "--json")[1])
    assert revoked["revoked_at"] is not None


def test_bad_token_commands_say_what_is_wrong(cli_db: str) -> None:
    code, _, err = run_cli("tokens", "revoke", "42")
    assert code == 3 and "no API token with ID 42" in err
    code, _, err = run_cli("tokens", "create", "   ")
    assert code == 2 and "token name" in err
    code, _, err = run_cli("tokens", "create", "x" * 5000)
    assert code == 2 and "got 5000 starting" in err and len(err) < 300
    assert run_cli("tokens", "list", "--json")[1].strip() == "[]"
