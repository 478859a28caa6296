"""Upstream providers: one module per provider, all answering with the types in `base`."""

from __future__ import annotations

from tracker.errors import MissingAPIKey
from tracker.settings import Settings
from tracker.upstream.base import PollResult, Provider
from tracker.upstream.names import DEFAULT_PROVIDER, IMAGE_PROVIDER, PROVIDERS, VIDEO_PROVIDER
from tracker.upstream.tensorslab import TensorsLabClient
from tracker.upstream.tensorslab_api import StatusClient
from tracker.upstream.tensorslab_image import TensorsLabImageClient

__all__ = ["PROVIDERS", "PollResult", "Provider", "make_provider"]

_CLIENTS: dict[str, type[StatusClient]] = {
    VIDEO_PROVIDER: TensorsLabClient,
    IMAGE_PROVIDER: TensorsLabImageClient,
}


def make_provider(settings: Settings, name: str = DEFAULT_PROVIDER) -> Provider:
    """Build the client for `name` from settings. Raises `MissingAPIKey` without a key.

    Every provider is TensorsLab's, so all share its key, base URL and timeouts.
    """
    client = _CLIENTS.get(name)
    if client is None:
        raise ValueError(f"unknown provider {name!r}; known: {', '.join(PROVIDERS)}")
    if settings.tensorslab_api_key is None or not settings.tensorslab_api_key.get_secret_value():
        raise MissingAPIKey(
            "TENSORSLAB_API_KEY is not set: tracker will not poll TensorsLab without it "
            "(set it in the environment or in .env; `tracker demo` runs against the simulator)"
        )
    return client(
        base_url=settings.tensorslab_base_url,
        api_key=settings.tensorslab_api_key.get_secret_value(),
        auth_scheme=settings.tensorslab_auth_scheme,
        connect_timeout_s=settings.tensorslab_connect_timeout_s,
        read_timeout_s=settings.tensorslab_read_timeout_s,
    )
