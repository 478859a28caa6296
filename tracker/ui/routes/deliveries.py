"""Deliveries: the filtered list with every attempt, one delivery, redeliver (again or now),
and recovering every failed delivery of one endpoint since a time.

Thin: parse, call `tracker.webhooks.deliveries` (and `endpoints` for the filter's choices) in
one transaction, render or redirect.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from tracker.api.deps import DatabaseDep
from tracker.errors import InvalidInput
from tracker.states import DeliveryStatus
from tracker.tasks.pagination import decode_row_cursor
from tracker.ui.forms import parse_choice, parse_id, parse_moment, time_value
from tracker.ui.pages import PageRoute, form_of, local_path, redirect, render, signed_in
from tracker.ui.session import Session
from tracker.webhooks import deliveries, endpoints
from tracker.webhooks.events import EVENT_TYPES

__all__ = ["router"]

router = APIRouter(route_class=PageRoute, include_in_schema=False)
PAGE_SIZE = 30


@router.get("/deliveries")
def deliveries_page(
    request: Request,
    database: DatabaseDep,
    _: Session = Depends(signed_in),
    status: str | None = None,
    endpoint: str | None = None,
    event: str | None = None,
    since: str | None = None,
    before: str | None = None,
    cursor: str | None = None,
) -> Response:
    wanted = parse_choice(status, DeliveryStatus, name="status")
    endpoint_id = parse_id(endpoint, name="endpoint")
    event_type = event.strip() if event and event.strip() else None
    if event_type is not None and event_type not in EVENT_TYPES:
        raise InvalidInput(f"event: {event_type[:40]!r} is not one of {', '.join(EVENT_TYPES)}")
    created_since = parse_moment(since, name="written from")
    created_before = parse_moment(before, name="written before")
    before_id = decode_row_cursor(cursor.strip()) if cursor and cursor.strip() else None
    with database.read() as session:
        page = deliveries.page_deliveries(
            session,
            status=wanted,
            endpoint_id=endpoint_id,
            event_type=event_type,
            created_since=created_since,
            created_before=created_before,
            limit=PAGE_SIZE,
            before_id=before_id,
            with_attempts=True,
        )
        hooks = endpoints.list_endpoints(session, include_per_task=True)
    params: dict[str, Any] = {
        "status": wanted.value if wanted else "",
        "endpoint": endpoint_id or "",
        "event": event_type or "",
        "since": time_value(created_since),
        "before": time_value(created_before),
    }
    back = "/deliveries" + (f"?{request.url.query}" if request.url.query else "")
    return render(
        request,
        "deliveries.html",
        {
            "title": "Deliveries",
            "deliveries": page.deliveries,
            "next_cursor": page.next_before_id,
            "paged": before_id is not None,
            "params": params,
            "statuses": list(DeliveryStatus),
            "events": EVENT_TYPES,
            "endpoints": hooks,
            "back": back,
        },
    )


@router.get("/deliveries/{delivery_ref}")
def delivery_page(
    request: Request, delivery_ref: str, database: DatabaseDep, _: Session = Depends(signed_in)
) -> Response:
    with database.read() as session:
        delivery = deliveries.get_delivery(session, delivery_ref)
    return render(
        request,
        "delivery.html",
        {"title": f"Delivery {delivery.id}", "d": delivery, "back": f"/deliveries/{delivery.id}"},
    )


@router.post("/actions/redeliver")
async def redeliver(request: Request) -> Response:
    form = await form_of(request)
    delivery_id = parse_id(form.get("delivery"), name="delivery")
    if delivery_id is None:
        raise InvalidInput("delivery: which delivery to send again is missing")
    now = form.get("mode") == "now"
    database = request.app.state.database

    def run() -> deliveries.DeliveryView:
        with database.write() as session:
            if now:
                return deliveries.send_now(session, delivery_id)
            return deliveries.redeliver(session, delivery_id, pending_now=True)

    await run_in_threadpool(run)
    said = "is due now: the next tick sends it" if now else "goes out again, same webhook-id"
    return redirect(request, local_path(form.get("back")), notice=f"delivery {delivery_id} {said}")


@router.post("/actions/recover")
async def recover(request: Request) -> Response:
    form = await form_of(request)
    endpoint_id = parse_id(form.get("endpoint"), name="endpoint")
    since = parse_moment(form.get("since"), name="since")
    if endpoint_id is None or since is None:
        raise InvalidInput("recovering failed deliveries needs an endpoint and a time since")
    database = request.app.state.database

    def run() -> int:
        with database.write() as session:
            return deliveries.redeliver_failed(session, since=since, endpoint_id=endpoint_id)

    count = await run_in_threadpool(run)
    notice = (
        f"{count} failed deliver{'y' if count == 1 else 'ies'} of webhook {endpoint_id} since "
        f"{time_value(since).replace('T', ' ')} UTC go out again"
    )
    return redirect(request, f"/deliveries?endpoint={endpoint_id}", notice=notice)
