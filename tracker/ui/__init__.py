"""The web dashboard: server-rendered pages over the same use cases as the CLI and the API.

`install_dashboard(app, settings)` adds its routes (left out of the OpenAPI document) and its
static files (`/ui/static`) to the API's FastAPI app, so `tracker api` and `tracker up` serve
it at `/`. Sign-in takes an API token; see `session.py` for the cookie and `pages.py` for how
errors become pages.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from tracker.settings import Settings

__all__ = ["install_dashboard"]

STATIC_FOLDER = Path(__file__).parent / "static"


def install_dashboard(app: FastAPI, settings: Settings) -> None:
    # Imported here: the routes use tracker.api's dependencies, and tracker.api's app imports
    # this package, so `import tracker.ui` (or `tracker.ui.charts`) first would find it half made.
    from tracker.ui.routes import auth, deliveries, endpoints, overview, tasks
    from tracker.ui.session import codec_for

    app.state.session_codec = codec_for(settings)
    for module in (auth, overview, tasks, deliveries, endpoints):
        app.include_router(module.router)
    app.mount("/ui/static", StaticFiles(directory=STATIC_FOLDER), name="ui-static")
