"""`/v1/tasks`: register task IDs, list and read them, their transitions, cancel (stop
tracking) and erase them.

Thin: each route parses, calls one task use case in one transaction, and shapes the answer.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from tracker.api.deps import DatabaseDep, SettingsDep
from tracker.api.errors import ApiError, documented_errors
from tracker.api.params import EXAMPLE_TASK_ID, TIMESTAMP_FORM, Timestamp, task_id_schema
from tracker.api.schemas import (
    RegisteredTask,
    RegisteredTasks,
    TaskBatchCreate,
    TaskCreate,
    TaskList,
    TaskPublic,
    TransitionList,
    TransitionPublic,
)
from tracker.db.clock import database_now
from tracker.states import TaskStatus
from tracker.tasks import forget, pauses, queries, register, untrack
from tracker.tasks.ids import MAX_TASK_ID_LENGTH
from tracker.tasks.pagination import MAX_PAGE_SIZE, TASK_CURSOR_PATTERN
from tracker.tasks.schedule import PollPolicy
from tracker.tasks.views import Registration
from tracker.upstream.names import DEFAULT_PROVIDER, PROVIDERS
from tracker.webhooks.guard import AddressPolicy
from tracker.webhooks.vetting import vet_webhook_urls

__all__ = ["router"]

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])

# The length and characters are checked by the use cases (`validate_task_id`), whose messages
# say what is wrong; the schema states the same rule.
TaskIdPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=MAX_TASK_ID_LENGTH,
        examples=[EXAMPLE_TASK_ID],
        json_schema_extra=task_id_schema(),
    ),
]
ProviderQuery = Annotated[
    str,
    Query(
        max_length=32,
        description=f"Whose task ID it is: {', '.join(PROVIDERS)} (the default: video tasks).",
        examples=list(PROVIDERS),
    ),
]


@router.post(
    "",
    summary="Register one task ID or a batch",
    description=(
        'Start tracking TensorsLab task IDs. Send one task (`{"task_id": ...}`) or a batch '
        '(`{"tasks": [...]}`, at most TRACKER_API_MAX_BATCH). All are stored or, if any is '
        "invalid, none. Registering an ID that is already tracked changes nothing and returns "
        "it with `created: false`. The status is 201 when something new was registered, else "
        "200. A `webhook_url` gets the task's end, signed by that URL's one endpoint "
        "(`webhook_id`); its secret is returned only in the response that made the endpoint."
    ),
    status_code=201,
    response_model=RegisteredTask | RegisteredTasks,
    responses={
        200: {"model": RegisteredTask | RegisteredTasks, "description": "Already tracked."},
        **documented_errors(400, 413, 422),
    },
)
def register_tasks(
    body: TaskCreate | TaskBatchCreate,
    response: Response,
    settings: SettingsDep,
    database: DatabaseDep,
) -> object:
    items = body.tasks if isinstance(body, TaskBatchCreate) else [body]
    if len(items) > settings.api_max_batch:
        raise ApiError(
            413,
            f"{len(items)} tasks in one request; the limit is {settings.api_max_batch} "
            "(TRACKER_API_MAX_BATCH): send them in several requests",
        )
    policy = AddressPolicy.from_settings(settings)
    vetted = vet_webhook_urls((item.webhook_url for item in items), policy)  # before the write
    warnings = {
        (item.provider, item.task_id): vetted[item.webhook_url].warning
        for item in items
        if item.webhook_url
    }
    by_provider: dict[str, list[TaskCreate]] = {}
    for item in items:
        by_provider.setdefault(item.provider, []).append(item)
    registrations: dict[tuple[str, str], Registration] = {}
    with database.write() as session:  # one transaction: all providers' tasks, or none
        for provider, group in by_provider.items():
            for registration in register.register_tasks(
                session,
                [
                    register.NewTask(
                        item.task_id,
                        item.metadata,
                        None if item.webhook_url is None else vetted[item.webhook_url],
                    )
                    for item in group
                ],
                first_poll_delay_s=PollPolicy.for_provider(settings, provider).first_delay_s,
                provider=provider,
                policy=policy,
            ):
                registrations[provider, registration.task.task_id] = registration
    ordered = dict.fromkeys((item.provider, item.task_id) for item in items)
    results = [
        RegisteredTask.model_validate(registrations[key]).model_copy(
            update={"webhook_warning": warnings.get(key)}
        )
        for key in ordered
    ]
    response.status_code = 201 if any(item.created for item in results) else 200
    if isinstance(body, TaskBatchCreate):
        return RegisteredTasks(tasks=results)
    return results[0]


@router.get(
    "",
    summary="List tracked tasks, newest first",
    description="Filter by status, provider and time; follow `next_cursor` for more pages.",
    response_model=TaskList,
    responses=documented_errors(422),
)
def list_tasks(
    database: DatabaseDep,
    status: Annotated[TaskStatus | None, Query(description="Only tasks in this status.")] = None,
    provider: Annotated[
        str | None,
        Query(examples=["tensorslab"], json_schema_extra={"enum": list(PROVIDERS)}),
    ] = None,
    created_since: Annotated[
        Timestamp | None,
        Query(
            description=f"Registered at or after this time: {TIMESTAMP_FORM}.",
            examples=["2026-12-02T10:00:00Z"],
        ),
    ] = None,
    updated_since: Annotated[
        Timestamp | None,
        Query(
            description=f"Changed at or after this time: {TIMESTAMP_FORM}.",
            examples=["2026-12-02T11:00:00+01:00"],
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
    cursor: Annotated[
        str | None,
        Query(
            description="`next_cursor` of the previous page: `<microseconds since 1970 UTC>_<id>`"
            ", the position after which the page starts (pass back what you were given).",
            examples=["1764637616778009_42"],
            json_schema_extra={"pattern": TASK_CURSOR_PATTERN},
        ),
    ] = None,
) -> TaskList:
    with database.read() as session:
        page = queries.page_tasks(
            session,
            status=status,
            provider=provider,
            created_since=created_since,
            updated_since=updated_since,
            limit=limit,
            cursor=cursor,
        )
        page = dataclasses.replace(
            page, tasks=pauses.annotate(session, page.tasks, now=database_now(session))
        )
    return TaskList.model_validate(page)


@router.get(
    "/{task_id}",
    summary="One tracked task",
    response_model=TaskPublic,
    responses=documented_errors(404, 422),
)
def get_task(
    task_id: TaskIdPath, database: DatabaseDep, provider: ProviderQuery = DEFAULT_PROVIDER
) -> TaskPublic:
    with database.read() as session:
        [task] = pauses.annotate(
            session,
            [queries.get_task(session, task_id, provider=provider)],
            now=database_now(session),
        )
    return TaskPublic.model_validate(task)


@router.get(
    "/{task_id}/transitions",
    summary="Every status change of a task, oldest first",
    response_model=TransitionList,
    responses=documented_errors(404, 422),
)
def get_transitions(
    task_id: TaskIdPath, database: DatabaseDep, provider: ProviderQuery = DEFAULT_PROVIDER
) -> TransitionList:
    with database.read() as session:
        transitions = queries.history(session, task_id, provider=provider)
    return TransitionList(
        task_id=task_id, transitions=[TransitionPublic.model_validate(t) for t in transitions]
    )


@router.post(
    "/{task_id}/cancel",
    summary="Stop tracking a task",
    description=(
        "The task becomes `cancelled` and is never polled again (webhooks subscribed to "
        "`task.cancelled` are told). Cancelling a cancelled task again returns it unchanged; "
        "a task that already completed, failed, expired or was not found gives 409."
    ),
    response_model=TaskPublic,
    responses=documented_errors(404, 409, 422),
)
def cancel_task(
    task_id: TaskIdPath, database: DatabaseDep, provider: ProviderQuery = DEFAULT_PROVIDER
) -> TaskPublic:
    with database.write() as session:
        result = untrack.untrack(session, task_id, provider=provider)
    return TaskPublic.model_validate(result.task)


@router.delete(
    "/{task_id}",
    summary="Erase an ended task and its history",
    description=(
        "For data deletion requests: the task, its transitions, its webhook deliveries (unsent "
        "ones too) with their attempts, and its webhook subscriptions are erased; then "
        "the task is 404. A task still tracked gives 409: cancel it first "
        "(`POST /v1/tasks/{task_id}/cancel`)."
    ),
    status_code=204,
    response_class=Response,
    responses={204: {"description": "Erased."}, **documented_errors(404, 409, 422)},
)
def erase_task(
    task_id: TaskIdPath, database: DatabaseDep, provider: ProviderQuery = DEFAULT_PROVIDER
) -> Response:
    with database.write() as session:
        forget.forget(session, task_id, provider=provider)
    return Response(status_code=204)
