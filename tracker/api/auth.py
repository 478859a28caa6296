"""Bearer-token authentication for every `/v1` route.

Tokens are checked against their stored hashes (`tracker.tokens`); a missing, malformed,
unknown or revoked token gets 401 with a `WWW-Authenticate: Bearer` header and a JSON error.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tracker import db, tokens
from tracker.api.errors import ApiError
from tracker.leasing import utc_now

__all__ = ["Authenticated", "require_token"]

_bearer = HTTPBearer(
    auto_error=False,
    description="A token from `tracker tokens create NAME`: `Authorization: Bearer trk_...`.",
)
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def require_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> tokens.TokenView:
    if credentials is None:
        raise ApiError(
            401,
            "missing bearer token: send `Authorization: Bearer <token>` "
            "(create one with `tracker tokens create NAME`)",
            headers=_CHALLENGE,
        )
    with db.session_scope() as session:
        token = tokens.authenticate(session, credentials.credentials, now=utc_now())
    if token is None:
        raise ApiError(401, "invalid or revoked bearer token", headers=_CHALLENGE)
    return token


Authenticated = Annotated[tokens.TokenView, Depends(require_token)]
