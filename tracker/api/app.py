"""The FastAPI application: routers, authentication, error shapes and body limits, assembled.

`create_app()` builds it on demand (nothing at import time); `tracker api` serves it with
uvicorn. Every `/v1` route needs a bearer token; `/healthz`, `/readyz`, `/metrics`, the
OpenAPI document and its pages (`/docs`, `/redoc`, served offline) do not. The web dashboard
(`tracker.ui`) is served beside them at `/`, signed in with the same tokens. `OPTIONS` and 405
answers list every method of the path (`methods.py`); the document's links and examples are
finished in `openapi.py`, for every route alike.
"""

from __future__ import annotations

from fastapi import Depends, FastAPI

from tracker import __version__
from tracker.api.deps import require_token
from tracker.api.docs import install_docs
from tracker.api.errors import install_error_handlers
from tracker.api.limits import BodyLimits
from tracker.api.methods import AllowedMethods
from tracker.api.openapi import install_openapi
from tracker.api.routes import ops, providers, submissions, tasks, webhooks
from tracker.db.engine import Database
from tracker.settings import Settings, get_settings
from tracker.ui import install_dashboard

__all__ = ["create_app"]

DESCRIPTION = """
Register TensorsLab video task IDs, and tracker polls them until they finish: every status
change and result URL is stored, and signed webhooks tell your endpoints how each task ended.

Every `/v1` route needs `Authorization: Bearer <token>`; create a token with
`tracker tokens create NAME`. Errors are JSON: `{"error": {"code", "message", "details"}}`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API for `settings` (default: the process's), serving exactly its database."""
    settings = settings or get_settings()
    app = FastAPI(
        title="tracker",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,  # FastAPI's pages load from a CDN: install_docs serves them offline
        redoc_url=None,
        openapi_tags=[
            {"name": "tasks", "description": "Tracked TensorsLab tasks and their history."},
            {"name": "webhooks", "description": "Where tracker sends how tasks end."},
            {"name": "submissions", "description": "Tasks tracker created upstream itself."},
            {"name": "deliveries", "description": "Each webhook message and its attempts."},
            {"name": "providers", "description": "Provider pauses: lift one early."},
            {"name": "operations", "description": "Health, readiness and metrics (no token)."},
        ],
    )
    app.state.settings = settings
    app.state.database = Database(settings.database_url)
    install_error_handlers(app)
    authenticated = [Depends(require_token)]
    app.include_router(tasks.router, dependencies=authenticated)
    app.include_router(submissions.router, dependencies=authenticated)
    app.include_router(webhooks.webhooks_router, dependencies=authenticated)
    app.include_router(webhooks.deliveries_router, dependencies=authenticated)
    app.include_router(providers.router, dependencies=authenticated)
    app.include_router(ops.router)
    install_dashboard(app, settings)  # `/` and its pages: HTML, sign-in by token, not in the schema
    install_docs(app)
    install_openapi(app)
    app.add_middleware(BodyLimits, max_body_bytes=settings.api_max_body_bytes)
    app.add_middleware(AllowedMethods, routes=app.router.routes)  # outermost: before any body
    return app
