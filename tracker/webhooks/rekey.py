"""Encrypting the stored webhook secrets again: plain ones once (`tracker db upgrade`), or all
of them with the first key (`tracker secrets rotate-key`).

Every secret is decrypted before any is written, so a secret that no configured key opens
stops the whole run with `UnreadableSecret` (naming its endpoint) and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from tracker.db.models import WebhookEndpoint
from tracker.webhooks.vault import Vault, is_encrypted

__all__ = ["Rekeyed", "encrypt_secrets"]


@dataclass(frozen=True, slots=True)
class Rekeyed:
    endpoints: int  # endpoints whose stored secrets were written again
    secrets: int  # secrets written (current and rotated-out ones)


def encrypt_secrets(session: Session, vault: Vault, *, plain_only: bool) -> Rekeyed:
    """Encrypt with `vault`'s first key every stored secret, or with `plain_only` only the
    ones not encrypted yet. Removed endpoints' secrets too: a dump must not show them."""
    rows = session.scalars(
        select(WebhookEndpoint).order_by(WebhookEndpoint.id).with_for_update()
    ).all()

    def wanted(stored: str) -> bool:
        return not (plain_only and is_encrypted(stored))

    changes: list[tuple[WebhookEndpoint, str, list[dict[str, str]]]] = []
    count = 0
    for row in rows:
        previous = list(row.previous_secrets or [])
        todo = [wanted(row.secret), *(wanted(entry["secret"]) for entry in previous)]
        if not any(todo):
            continue
        secret = vault.reencrypt(row.secret, endpoint_id=row.id) if todo[0] else row.secret
        entries = [
            {**entry, "secret": vault.reencrypt(entry["secret"], endpoint_id=row.id)}
            if again
            else entry
            for entry, again in zip(previous, todo[1:], strict=True)
        ]
        changes.append((row, secret, entries))
        count += sum(todo)
    for row, secret, entries in changes:  # only now: all of them decrypted
        row.secret = secret
        row.previous_secrets = entries
    session.flush()
    return Rekeyed(len(changes), count)
