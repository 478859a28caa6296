"""`/v1/webhooks` and `/v1/deliveries`: endpoints, their deliveries and attempts, redelivery,
test events.

Thin: parse, call `tracker.webhooks.endpoints`, shape. A secret is in the creation (and
rotation) response only; custom header values in none. URLs are vetted (DNS included) before
the write transaction opens.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from tracker.api.deps import DatabaseDep, SettingsDep
from tracker.api.errors import documented_errors
from tracker.api.params import EXAMPLE_TASK_ID, task_id_schema
from tracker.api.schemas import (
    DeliveryList,
    DeliveryPublic,
    WebhookCreate,
    WebhookCreated,
    WebhookList,
    WebhookPublic,
    WebhookUpdate,
)
from tracker.states import DeliveryStatus
from tracker.tasks.ids import MAX_TASK_ID_LENGTH, validate_task_id
from tracker.tasks.pagination import MAX_PAGE_SIZE, ROW_CURSOR_PATTERN, decode_row_cursor
from tracker.webhooks import deliveries, endpoints, probe
from tracker.webhooks.guard import AddressPolicy
from tracker.webhooks.guarded_http import guarded_session
from tracker.webhooks.vetting import vet_webhook_url

__all__ = ["deliveries_router", "webhooks_router"]

webhooks_router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
deliveries_router = APIRouter(prefix="/v1/deliveries", tags=["deliveries"])

MAX_ID = 2**63 - 1
WebhookIdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="The webhook's ID.")]
DeliveryIdPath = Annotated[
    str,
    Path(
        pattern=r"^([1-9][0-9]{0,18}|msg_[0-9A-Za-z]{1,36})$",
        description="The delivery's number (`12`) or its message ID (`msg_...`, the "
        "`webhook-id` header).",
        examples=["12"],
    ),
]


@webhooks_router.post(
    "",
    summary="Add a webhook endpoint for every task",
    description="The URL must be http(s), without user:password@, and must not point into a "
    "refused network (loopback, private, link-local... unless TRACKER_WEBHOOK_ALLOWED_NETWORKS "
    "allows it). A host that does not resolve right now is accepted with a `warning`: every "
    "send resolves it again. `headers` are sent with every attempt. 201: a new endpoint, its "
    "signing secret in this response only. A URL has one endpoint: if it has one, 200 with "
    "that endpoint (`created: false`, no secret), which now hears every task and the given "
    "events too; its headers stay as they are (a `warning` says so when `headers` differ: "
    "PATCH the webhook to replace them).",
    status_code=201,
    response_model=WebhookCreated,
    responses={
        200: {"model": WebhookCreated, "description": "The URL's existing endpoint."},
        **documented_errors(400, 413, 422),
    },
)
def add_webhook(
    body: WebhookCreate, response: Response, settings: SettingsDep, database: DatabaseDep
) -> WebhookCreated:
    policy = AddressPolicy.from_settings(settings)
    vetted = vet_webhook_url(body.url, policy)
    with database.write() as session:
        created = endpoints.add_endpoint(
            session, vetted, events=body.events, headers=body.headers, policy=policy
        )
    response.status_code = 201 if created.created else 200
    return WebhookCreated(
        webhook=WebhookPublic.model_validate(created.endpoint),
        secret=created.secret,
        created=created.created,
        warning=_add_warning(vetted.warning, created),
    )


def _add_warning(url_warning: str | None, created: endpoints.CreatedEndpoint) -> str | None:
    notes = [url_warning] if url_warning else []
    if created.headers_unchanged:
        notes.append(
            f"the headers given were not applied: webhook {created.endpoint.id} existed and "
            "keeps its own; PATCH its `headers` to replace them"
        )
    return "; ".join(notes) or None


@webhooks_router.get(
    "",
    summary="List webhook endpoints",
    response_model=WebhookList,
    responses=documented_errors(422),
)
def list_webhooks(
    database: DatabaseDep,
    include_per_task: Annotated[
        bool,
        Query(description="Also list the webhooks for the tasks registered with their URL."),
    ] = False,
) -> WebhookList:
    with database.read() as session:
        views = endpoints.list_endpoints(session, include_per_task=include_per_task)
    return WebhookList(webhooks=[WebhookPublic.model_validate(view) for view in views])


@webhooks_router.get(
    "/{webhook_id}",
    summary="One webhook endpoint",
    response_model=WebhookPublic,
    responses=documented_errors(404, 422),
)
def get_webhook(webhook_id: WebhookIdPath, database: DatabaseDep) -> WebhookPublic:
    with database.read() as session:
        return WebhookPublic.model_validate(endpoints.get_endpoint(session, webhook_id))


@webhooks_router.patch(
    "/{webhook_id}",
    summary="Change a webhook's URL, events, headers, or enable/disable it",
    description="A URL has one endpoint: moving one onto another's URL is 409, naming it. "
    "`headers` replaces every custom header (`{}` removes them).",
    response_model=WebhookPublic,
    responses=documented_errors(400, 404, 409, 413, 422),
)
def update_webhook(
    webhook_id: WebhookIdPath, body: WebhookUpdate, settings: SettingsDep, database: DatabaseDep
) -> WebhookPublic:
    policy = AddressPolicy.from_settings(settings)
    vetted = None if body.url is None else vet_webhook_url(body.url, policy)
    with database.write() as session:
        view = endpoints.update_endpoint(
            session,
            webhook_id,
            policy=policy,
            url=vetted,
            events=body.events,
            enabled=body.enabled,
            headers=body.headers,
        )
    public = WebhookPublic.model_validate(view)
    return public.model_copy(update={"warning": vetted.warning if vetted else None})


@webhooks_router.post(
    "/{webhook_id}/test",
    summary="Send a signed webhook.test event to a webhook now",
    description="The event goes the way every webhook goes (signed with its secrets, with its "
    "headers, through the address guard), once and without retries, and this answers when "
    "the attempt is over: the delivery with its attempt (status code, duration, error). "
    "`status` is `delivered` when the endpoint answered 2xx, else `failed`. 409 for a "
    "disabled webhook. The event is sent to this webhook only, whatever its events.",
    response_model=DeliveryPublic,
    responses=documented_errors(404, 409, 422),
)
def send_webhook_test(
    webhook_id: WebhookIdPath, settings: SettingsDep, database: DatabaseDep
) -> DeliveryPublic:
    with guarded_session(AddressPolicy.from_settings(settings)) as http:
        view = probe.send_test_event(
            webhook_id,
            session_scope=database.write,
            http=http,
            timeout_s=settings.webhook_timeout_s,
            disable_after_s=settings.webhook_disable_after_s,
        )
    return DeliveryPublic.model_validate(view)


@webhooks_router.post(
    "/{webhook_id}/rotate-secret",
    summary="Give a webhook a new secret",
    description="The previous secret keeps signing too (a second signature) for "
    "`overlap_s` seconds, so the receiver can switch without dropping a message.",
    response_model=WebhookCreated,
    responses=documented_errors(404, 422),
)
def rotate_webhook_secret(
    webhook_id: WebhookIdPath,
    database: DatabaseDep,
    overlap_s: Annotated[float, Query(ge=0, le=30 * 86400)] = 86400,
) -> WebhookCreated:
    with database.write() as session:
        created = endpoints.rotate_secret(session, webhook_id, overlap_s=overlap_s)
    return WebhookCreated(
        webhook=WebhookPublic.model_validate(created.endpoint), secret=created.secret
    )


@webhooks_router.delete(
    "/{webhook_id}",
    summary="Remove a webhook endpoint",
    description="Nothing more is sent to it; its deliveries and attempts stay, for the record.",
    status_code=204,
    response_class=Response,
    responses=documented_errors(404, 422),
)
def remove_webhook(webhook_id: WebhookIdPath, database: DatabaseDep) -> Response:
    with database.write() as session:
        endpoints.remove_endpoint(session, webhook_id)
    return Response(status_code=204)


@deliveries_router.get(
    "",
    summary="Webhook deliveries with their attempts, newest first",
    response_model=DeliveryList,
    responses=documented_errors(422),
)
def list_deliveries(
    database: DatabaseDep,
    task_id: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=MAX_TASK_ID_LENGTH,
            examples=[EXAMPLE_TASK_ID],
            json_schema_extra=task_id_schema(),
        ),
    ] = None,
    status: Annotated[DeliveryStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
    cursor: Annotated[
        str | None,
        Query(
            description="`next_cursor` of the previous page: a delivery ID; the page holds "
            "the deliveries before it.",
            examples=["12"],
            json_schema_extra={"pattern": ROW_CURSOR_PATTERN},
        ),
    ] = None,
) -> DeliveryList:
    if task_id is not None:
        validate_task_id(task_id)
    before_id = None if cursor is None else decode_row_cursor(cursor)
    with database.read() as session:
        page = deliveries.page_deliveries(
            session,
            task_id=task_id,
            status=status,
            limit=limit,
            before_id=before_id,
            with_attempts=True,
        )
    return DeliveryList(
        deliveries=[DeliveryPublic.model_validate(view) for view in page.deliveries],
        next_cursor=None if page.next_before_id is None else str(page.next_before_id),
    )


@deliveries_router.get(
    "/{delivery_id}",
    summary="One delivery with every attempt",
    response_model=DeliveryPublic,
    responses=documented_errors(404, 422),
)
def get_delivery(delivery_id: DeliveryIdPath, database: DatabaseDep) -> DeliveryPublic:
    with database.read() as session:
        return DeliveryPublic.model_validate(deliveries.get_delivery(session, delivery_id))


@deliveries_router.post(
    "/{delivery_id}/redeliver",
    summary="Send a delivery again, or a pending one now",
    description="A delivered or failed delivery goes through a fresh round of the retry "
    "schedule with the same `webhook-id`, so receivers can deduplicate. A pending one, "
    "however far off its next retry, is made due now: the next tick sends it. A pending one "
    "held for a disabled webhook stays held (409: enable the webhook). With `now=true` a "
    "delivered one is refused (409) and nothing changes: only what has not arrived is sent.",
    status_code=202,
    response_model=DeliveryPublic,
    responses=documented_errors(404, 409, 422),
)
def redeliver(
    delivery_id: DeliveryIdPath,
    database: DatabaseDep,
    now: Annotated[
        bool, Query(description="Only what has not been delivered: 409 for a delivered one.")
    ] = False,
) -> DeliveryPublic:
    with database.write() as session:
        if now:
            deliveries.send_now(session, delivery_id)
        else:
            deliveries.redeliver(session, delivery_id, pending_now=True)
        return DeliveryPublic.model_validate(deliveries.get_delivery(session, delivery_id))
