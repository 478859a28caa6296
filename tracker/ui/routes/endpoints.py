"""Endpoints: list them with their failure state, add one (its secret shown once), enable or
disable, rotate the secret (the new one shown once), send a test event.

Thin: parse, vet the URL before the write transaction opens (as the API does), call
`tracker.webhooks.endpoints` / `probe`, render. A secret is only ever in the page that answers
the POST which made it; no page shows it again.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from tracker.api.deps import DatabaseDep
from tracker.db.engine import Database
from tracker.errors import InvalidInput
from tracker.settings import Settings
from tracker.ui.forms import parse_id
from tracker.ui.pages import Form, PageRoute, form_of, redirect, render, signed_in
from tracker.ui.session import Session
from tracker.webhooks import endpoints, probe
from tracker.webhooks.deliveries import DeliveryView
from tracker.webhooks.events import ALL_EVENTS, DEFAULT_EVENTS
from tracker.webhooks.guard import AddressPolicy
from tracker.webhooks.guarded_http import guarded_session
from tracker.webhooks.vetting import vet_webhook_url

__all__ = ["router"]

router = APIRouter(route_class=PageRoute, include_in_schema=False)
ROTATION_OVERLAP_S = 86400.0  # as `webhooks rotate-secret` and the API: a day of both secrets


def _page(
    request: Request,
    database: Database,
    *,
    shown: endpoints.CreatedEndpoint | None = None,
    what: str = "",
    warning: str | None = None,
    status_code: int = 200,
) -> Response:
    with database.read() as session:
        hooks = endpoints.list_endpoints(session, include_per_task=True)
    return render(
        request,
        "endpoints.html",
        {
            "title": "Endpoints",
            "endpoints": hooks,
            "events": ALL_EVENTS,
            "default_events": DEFAULT_EVENTS,
            "shown": shown,
            "what": what,
            "warning": warning,
        },
        status_code=status_code,
    )


@router.get("/endpoints")
def endpoints_page(
    request: Request, database: DatabaseDep, _: Session = Depends(signed_in)
) -> Response:
    return _page(request, database)


def _endpoint_of(form: Form) -> int:
    endpoint_id = parse_id(form.get("endpoint"), name="endpoint")
    if endpoint_id is None:
        raise InvalidInput("endpoint: which webhook endpoint is missing")
    return endpoint_id


@router.post("/actions/endpoint-add")
async def add_endpoint(request: Request) -> Response:
    form = await form_of(request)
    url = form.get("url")
    if url is None:
        raise InvalidInput("url: the endpoint's URL is missing")
    events = [name for name in form.lists.get("events", []) if name]
    settings: Settings = request.app.state.settings
    database: Database = request.app.state.database
    policy = AddressPolicy.from_settings(settings)

    def run() -> tuple[endpoints.CreatedEndpoint, str | None]:
        vetted = vet_webhook_url(url, policy)
        with database.write() as session:
            created = endpoints.add_endpoint(session, vetted, events=events, policy=policy)
        return created, vetted.warning

    created, warning = await run_in_threadpool(run)
    if created.secret is None:
        notice = (
            f"{created.endpoint.url} had an endpoint already (webhook {created.endpoint.id}): "
            "it now hears every task; its secret stays as it was"
        )
        return redirect(request, "/endpoints", notice=notice)
    return await run_in_threadpool(
        lambda: _page(
            request, database, shown=created, what="added", warning=warning, status_code=201
        )
    )


@router.post("/actions/endpoint-enabled")
async def set_enabled(request: Request) -> Response:
    form = await form_of(request)
    endpoint_id = _endpoint_of(form)
    enabled = form.get("enabled") == "yes"
    database: Database = request.app.state.database

    def run() -> None:
        with database.write() as session:
            endpoints.set_enabled(session, endpoint_id, enabled)

    await run_in_threadpool(run)
    said = "enabled: held deliveries go out now" if enabled else "disabled: deliveries are held"
    return redirect(request, "/endpoints", notice=f"webhook {endpoint_id} {said}")


@router.post("/actions/endpoint-rotate")
async def rotate_secret(request: Request) -> Response:
    form = await form_of(request)
    endpoint_id = _endpoint_of(form)
    database: Database = request.app.state.database

    def run() -> Response:
        with database.write() as session:
            rotated = endpoints.rotate_secret(session, endpoint_id, overlap_s=ROTATION_OVERLAP_S)
        return _page(request, database, shown=rotated, what="rotated")

    response: Response = await run_in_threadpool(run)
    return response


@router.post("/actions/endpoint-test")
async def send_test(request: Request) -> Response:
    form = await form_of(request)
    endpoint_id = _endpoint_of(form)
    settings: Settings = request.app.state.settings
    database: Database = request.app.state.database

    def run() -> DeliveryView:
        with guarded_session(AddressPolicy.from_settings(settings)) as http:
            return probe.send_test_event(
                endpoint_id,
                session_scope=database.write,
                http=http,
                timeout_s=settings.webhook_timeout_s,
                disable_after_s=settings.webhook_disable_after_s,
            )

    view = await run_in_threadpool(run)
    attempt = view.attempts[-1] if view.attempts else None
    if attempt is not None and attempt.succeeded:
        said = f"answered {attempt.status_code} in {attempt.duration_ms:.0f} ms"
    elif attempt is not None:
        code = attempt.status_code if attempt.status_code is not None else "no answer"
        said = f"failed ({code}{': ' + attempt.error if attempt.error else ''})"
    else:
        said = "was written; no attempt is recorded yet"
    return redirect(
        request,
        "/endpoints",
        notice=f"test event to webhook {endpoint_id} {said} (delivery {view.id})",
    )
