"""The dashboard's session: one signed cookie, re-checked against the token store on every request.

The cookie (`tracker_session`, HttpOnly, SameSite=Strict, Secure over HTTPS) is signed with
itsdangerous under a key derived from the project's secret key (`vault.derive_key`). It holds
a CSRF nonce, and once signed in the token's ID and session reference (`tokens.
session_reference`), never the token itself; a one-shot notice may ride along to the next page.
A session is signed out `SESSION_MAX_AGE_S` after sign-in, whatever was clicked since; a
revoked token ends its sessions at the next request, since each request looks it up again.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from tracker import tokens
from tracker.db.engine import Database
from tracker.settings import Settings
from tracker.webhooks.vault import derive_key

__all__ = [
    "COOKIE_NAME",
    "COOKIE_SALT",
    "SESSION_MAX_AGE_S",
    "Session",
    "SessionCodec",
    "codec_for",
    "new_nonce",
]

COOKIE_NAME = "tracker_session"
SESSION_MAX_AGE_S = 12 * 3600  # a working day; then the token is asked for again
COOKIE_SALT = "tracker.dashboard.session"
EXPIRED = "your session expired: sign in again"


@dataclass(frozen=True, slots=True)
class Session:
    """What the cookie said, checked: `token` is None when nobody is signed in."""

    csrf: str
    token: tokens.TokenView | None
    reference: str | None = None  # the token's session reference, while signed in
    signed_in_at: int | None = None  # seconds since 1970; it ends SESSION_MAX_AGE_S later
    notice: str | None = None
    ended: str | None = None  # why a signed-in session stopped being one (revoked, expired)
    fresh: bool = False  # no valid cookie came: one must be set with this CSRF nonce

    def csrf_matches(self, presented: str | None) -> bool:
        # As bytes: compare_digest refuses str with non-ASCII characters (a TypeError, a 500).
        return presented is not None and hmac.compare_digest(
            self.csrf.encode(), presented.encode("utf-8", "surrogatepass")
        )


def new_nonce() -> str:
    """A CSRF nonce: 24 random bytes, URL-safe."""
    return secrets.token_urlsafe(24)


class SessionCodec:
    """Reads and writes the session cookie with one app's key, derived on first use (so an API
    that never serves the dashboard never makes a key file)."""

    def __init__(self, key: Callable[[], bytes]) -> None:
        self._key = key
        self._made: URLSafeTimedSerializer | None = None
        self._lock = threading.Lock()

    @property
    def _serializer(self) -> URLSafeTimedSerializer:
        with self._lock:
            if self._made is None:
                self._made = URLSafeTimedSerializer(self._key(), salt=COOKIE_SALT)
            return self._made

    def read(self, request: Request, database: Database) -> Session:
        raw = request.cookies.get(COOKIE_NAME)
        if not raw:
            return Session(csrf=new_nonce(), token=None, fresh=True)
        try:
            data: Any = self._serializer.loads(raw, max_age=SESSION_MAX_AGE_S)
        except BadSignature as error:
            ended = EXPIRED if isinstance(error, SignatureExpired) else None
            return Session(csrf=new_nonce(), token=None, fresh=True, ended=ended)
        if not isinstance(data, dict) or not isinstance(data.get("c"), str):
            return Session(csrf=new_nonce(), token=None, fresh=True)
        notice = data.get("n") if isinstance(data.get("n"), str) else None
        token_id, reference, since = data.get("t"), data.get("r"), data.get("s")
        if not isinstance(token_id, int) or not isinstance(reference, str):
            return Session(csrf=data["c"], token=None, notice=notice)
        if not isinstance(since, int) or not 0 <= time.time() - since <= SESSION_MAX_AGE_S:
            return Session(csrf=new_nonce(), token=None, fresh=True, ended=EXPIRED)
        with database.read() as session:
            token = tokens.authenticate_reference(session, token_id, reference)
        if token is None:
            return Session(
                csrf=new_nonce(),
                token=None,
                fresh=True,
                ended="the token of this session was revoked: sign in with a live one",
            )
        return Session(
            csrf=data["c"], token=token, reference=reference, notice=notice, signed_in_at=since
        )

    def write(
        self,
        response: Response,
        request: Request,
        *,
        csrf: str,
        token_id: int | None = None,
        reference: str | None = None,
        signed_in_at: int | None = None,
        notice: str | None = None,
    ) -> None:
        """Set the cookie; with a token, signed in since `signed_in_at` (default: now)."""
        data: dict[str, Any] = {"c": csrf}
        if token_id is not None and reference is not None:
            data |= {"t": token_id, "r": reference, "s": signed_in_at or int(time.time())}
        if notice:
            data["n"] = notice
        response.set_cookie(
            COOKIE_NAME,
            self._serializer.dumps(data),
            max_age=SESSION_MAX_AGE_S,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )

    def keep(
        self, response: Response, request: Request, session: Session, *, notice: str | None
    ) -> None:
        """Write the cookie back as `session` is, with `notice` for the next page (or none)."""
        self.write(
            response,
            request,
            csrf=session.csrf,
            token_id=session.token.id if session.token else None,
            reference=session.reference,
            signed_in_at=session.signed_in_at,
            notice=notice,
        )


def codec_for(settings: Settings) -> SessionCodec:
    return SessionCodec(lambda: derive_key("dashboard-session", settings=settings))
