"""What routes are given by FastAPI's dependency injection: the app's settings, its database,
and the caller's token. `create_app(settings)` puts the first two on `app.state`, so an app
serves exactly the database of the settings it was built with.

Routes open their own transaction (`database.read()` / `database.write()`) rather than take a
session whose commit would run after the response was chosen: a write that fails to commit must
never be answered with a success.

Wrong tokens are slowed down per client address before they reach the database
(`tracker.api.throttle`): after 20 quick failures from one address (an IPv6 /64), 429 with
Retry-After, then one more try every 3 s. The record is in memory, per API process.
"""

from __future__ import annotations

import threading
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tracker import tokens
from tracker.api.errors import ApiError
from tracker.api.throttle import AuthFailures, client_key
from tracker.db.engine import Database
from tracker.settings import Settings

__all__ = ["CurrentToken", "DatabaseDep", "SettingsDep", "auth_failures", "require_token"]


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


SettingsDep = Annotated[Settings, Depends(_settings)]
DatabaseDep = Annotated[Database, Depends(_database)]

_bearer = HTTPBearer(
    auto_error=False,
    description="A token from `tracker tokens create NAME`: `Authorization: Bearer trk_...`.",
)
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


_failures_lock = threading.Lock()


def auth_failures(request: Request) -> AuthFailures:
    """The app's record of token checks by client address, made on first use."""
    state = request.app.state
    with _failures_lock:
        record: AuthFailures | None = getattr(state, "auth_failures", None)
        if record is None:
            record = state.auth_failures = AuthFailures()
        return record


def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    database: DatabaseDep,
) -> tokens.TokenView:
    """The live token the request presents; 401 with a Bearer challenge when there is none,
    429 with Retry-After (and no database query) after too many wrong ones from its address."""
    if credentials is None:
        raise ApiError(
            401,
            "missing bearer token: send `Authorization: Bearer <token>` "
            "(create one with `tracker tokens create NAME`)",
            headers=_CHALLENGE,
        )
    failures = auth_failures(request)
    key = client_key(request.client.host if request.client else None)
    wait_s = failures.charge(key)
    if wait_s is not None:
        raise ApiError(
            429,
            f"too many wrong bearer tokens from this address: try again in {wait_s} s",
            code="too_many_requests",
            headers={"Retry-After": str(wait_s)},
        )
    try:
        with database.read() as session:
            token = tokens.authenticate(session, credentials.credentials)
    except BaseException:
        failures.refund(key)  # the database failed, not the caller
        raise
    if token is None:
        raise ApiError(401, "invalid or revoked bearer token", headers=_CHALLENGE)
    failures.refund(key)
    if tokens.needs_last_used_update(token):
        with database.write() as session:
            tokens.mark_used(session, token.id)
    return token


CurrentToken = Annotated[tokens.TokenView, Depends(require_token)]
