"""API tokens: create (shown once), list, revoke, and check a presented bearer token.

A token is 32 random bytes, so a plain SHA-256 of it is a safe thing to store and look up by:
unlike a password it cannot be guessed from its hash, and the lookup stays one indexed query.

A dashboard session keeps a token's ID and a *session reference* (a hash of its stored hash),
never the token: `authenticate_reference` checks both against the store on every request, so a
revoked token ends its sessions at once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tracker.db.clock import database_now
from tracker.db.models import ApiToken
from tracker.errors import InvalidInput, UnknownToken

__all__ = [
    "CreatedToken",
    "TokenView",
    "authenticate",
    "authenticate_reference",
    "create_token",
    "list_tokens",
    "mark_used",
    "needs_last_used_update",
    "revoke_token",
    "session_reference",
]

TOKEN_PREFIX = "trk_"
MAX_NAME_LENGTH = 100
# Writing last_used_at on every request would turn each read into a write; once a minute
# is enough to tell which tokens are still in use.
LAST_USED_PRECISION = timedelta(minutes=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenView:
    id: int
    name: str
    prefix: str  # the token's first characters, enough to recognise it, useless to use it
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, row: ApiToken) -> TokenView:
        return cls(
            id=row.id,
            name=row.name,
            prefix=row.prefix,
            created_at=row.created_at,
            last_used_at=row.last_used_at,
            revoked_at=row.revoked_at,
        )


@dataclass(frozen=True, slots=True)
class CreatedToken:
    token: TokenView
    secret: str  # the bearer token itself: shown once, stored only as a hash


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_token(session: Session, name: str, *, now: datetime | None = None) -> CreatedToken:
    """A new token named `name` (names need not be unique; revoke by ID)."""
    name = name.strip()
    if not name or len(name) > MAX_NAME_LENGTH or not name.isprintable():
        raise InvalidInput(
            f"a token name must be 1 to {MAX_NAME_LENGTH} printable characters, got "
            f"{len(name)} starting {name[:40]!r}"
        )
    now = now or database_now(session)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        name=name, token_hash=_hash(secret), prefix=secret[: len(TOKEN_PREFIX) + 6], created_at=now
    )
    session.add(row)
    session.flush()
    return CreatedToken(TokenView.of(row), secret)


def list_tokens(session: Session, *, include_revoked: bool = False) -> list[TokenView]:
    query = select(ApiToken).order_by(ApiToken.id)
    if not include_revoked:
        query = query.where(ApiToken.revoked_at.is_(None))
    return [TokenView.of(row) for row in session.scalars(query)]


def revoke_token(session: Session, token_id: int, *, now: datetime | None = None) -> TokenView:
    """Revoke a token: every request that presents it is refused from now on."""
    row = session.get(ApiToken, token_id)
    if row is None:
        raise UnknownToken(f"no API token with ID {token_id}")
    if row.revoked_at is None:
        row.revoked_at = now or database_now(session)
        session.flush()
    return TokenView.of(row)


def authenticate(session: Session, presented: str) -> TokenView | None:
    """The live token that `presented` is, or None. Only reads."""
    if not presented.startswith(TOKEN_PREFIX) or len(presented) > 200:
        return None
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == _hash(presented)))
    if row is None or row.revoked_at is not None:
        return None
    return TokenView.of(row)


def _reference(token_hash: str) -> str:
    return hashlib.sha256(f"dashboard-session:{token_hash}".encode()).hexdigest()[:32]


def session_reference(presented: str) -> str:
    """What a session stores to name the token it was opened with: not the token, and not
    its stored hash either (so the cookie cannot be replayed as a lookup key)."""
    return _reference(_hash(presented))


def authenticate_reference(session: Session, token_id: int, reference: str) -> TokenView | None:
    """The live token with `token_id` whose session reference is `reference`, or None (unknown,
    revoked, or another token's reference). Only reads."""
    if not 0 < token_id < 2**63:
        return None
    row = session.get(ApiToken, token_id)
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(_reference(row.token_hash), reference):
        return None
    return TokenView.of(row)


def needs_last_used_update(token: TokenView, *, now: datetime | None = None) -> bool:
    """Whether `last_used_at` is stale enough to write (once a minute, not every request)."""
    now = now or datetime.now(UTC)
    return token.last_used_at is None or now - token.last_used_at >= LAST_USED_PRECISION


def mark_used(session: Session, token_id: int, *, now: datetime | None = None) -> None:
    """Record that a token was just used."""
    session.execute(
        update(ApiToken)
        .where(ApiToken.id == token_id)
        .values(last_used_at=now or database_now(session))
        .execution_options(synchronize_session=False)
    )
