"""Webhook URLs are checked before a transaction opens: the edges' first step with a URL.

`vet_webhook_url` runs the SSRF guard's add-time check (`guard.vet_url`), DNS lookup included,
and turns a refusal into `InvalidWebhookURL`; the `VettedURL` it returns is what the use cases
store, so they never resolve a name while they hold the database (on SQLite, its write lock).
A host that does not resolve right now is accepted, with the warning the edge shows.
"""

from __future__ import annotations

from collections.abc import Iterable

from tracker.errors import InvalidWebhookURL
from tracker.webhooks.guard import (
    AddressPolicy,
    RefusedURL,
    Resolver,
    VettedURL,
    system_resolver,
    vet_url,
)

__all__ = ["VettedURL", "vet_webhook_url", "vet_webhook_urls"]


def vet_webhook_url(
    url: str, policy: AddressPolicy, *, resolve: Resolver = system_resolver
) -> VettedURL:
    """The URL checked (`InvalidWebhookURL` if refused), with a warning if it does not resolve."""
    try:
        return vet_url(url, policy, resolve=resolve)
    except RefusedURL as error:
        raise InvalidWebhookURL(str(error)) from None


def vet_webhook_urls(
    urls: Iterable[str | None], policy: AddressPolicy, *, resolve: Resolver = system_resolver
) -> dict[str, VettedURL]:
    """Each distinct URL given (None skipped), vetted once."""
    vetted: dict[str, VettedURL] = {}
    for url in urls:
        if url is not None and url not in vetted:
            vetted[url] = vet_webhook_url(url, policy, resolve=resolve)
    return vetted
