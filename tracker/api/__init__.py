"""tracker's HTTP API (FastAPI): `create_app()` builds it; `tracker api` serves it."""

from __future__ import annotations

from tracker.api.app import create_app

__all__ = ["create_app"]
