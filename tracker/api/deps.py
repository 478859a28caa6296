"""What routes are given by FastAPI's dependency injection: the app's settings, its database,
and the caller's token. `create_app(settings)` puts the first two on `app.state`, so an app
serves exactly the database of the settings it was built with.

Routes open their own transaction (`database.read()` / `database.write()`) rather than take a
session whose commit would run after the response was chosen: a write that fails to commit must
never be answered with a success.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tracker import tokens
from tracker.api.errors import ApiError
from tracker.db.engine import Database
from tracker.settings import Settings

__all__ = ["CurrentToken", "DatabaseDep", "SettingsDep", "require_token"]


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


def require_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    database: DatabaseDep,
) -> tokens.TokenView:
    """The live token the request presents; 401 with a Bearer challenge when there is none."""
    if credentials is None:
        raise ApiError(
            401,
            "missing bearer token: send `Authorization: Bearer <token>` "
            "(create one with `tracker tokens create NAME`)",
            headers=_CHALLENGE,
        )
    with database.read() as session:
        token = tokens.authenticate(session, credentials.credentials)
    if token is None:
        raise ApiError(401, "invalid or revoked bearer token", headers=_CHALLENGE)
    if tokens.needs_last_used_update(token):
        with database.write() as session:
            tokens.mark_used(session, token.id)
    return token


CurrentToken = Annotated[tokens.TokenView, Depends(require_token)]
