"""`/v1/submissions`: create a TensorsLab task and track it; list and read submissions.

Thin: the body is checked against the provider's table (`validate_request`), then the submit
use case runs. A caller's `Idempotency-Key` header makes a retried POST answer from the stored
submission instead of creating a second paid task; the same key with another body is 409.
A submission that made no task is answered in the error shape with the stored submission
beside it: 409 `submission_refused`, 503 `submission_unknown` or `submission_not_sent`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from tracker.api.deps import DatabaseDep, SettingsDep
from tracker.api.errors import ApiError, documented_errors
from tracker.api.params import EXAMPLE_TASK_ID
from tracker.api.routes.webhooks import MAX_ID
from tracker.api.schemas import (
    EXAMPLE_TIME,
    EXAMPLE_URL,
    METADATA_SCHEMA,
    ErrorBody,
    TaskPublic,
    _Input,
)
from tracker.api.submission_schema import submission_body_schema
from tracker.errors import SubmissionRefused, SubmissionUnknown
from tracker.tasks import submit
from tracker.tasks.submit import SubmissionView
from tracker.upstream.tensorslab_create import MAX_PROMPT_CHARS, MAX_URL_CHARS, validate_request
from tracker.webhooks.guard import MAX_URL_LENGTH

__all__ = ["router"]

router = APIRouter(prefix="/v1/submissions", tags=["submissions"])


def _body_schema(schema: dict[str, Any]) -> None:
    # The fields' own schema would let through what the table refuses: the schema a client
    # reads is the table's, one branch per model (`submission_schema`).
    kept: dict[str, Any] = {key: schema[key] for key in ("title", "description") if key in schema}
    schema.clear()
    schema.update(kept)
    schema.update(submission_body_schema(METADATA_SCHEMA))
    schema["examples"] = [SUBMISSION_CREATE_EXAMPLE]


SUBMISSION_CREATE_EXAMPLE: dict[str, Any] = {
    "kind": "video",
    "model": "seedancev2",
    "prompt": "a red fox runs through fresh snow at dawn",
    "duration": 5,
    "resolution": "720p",
    "ratio": "16:9",
    "webhook_url": EXAMPLE_URL,
    "metadata": {"order": 1042},
}


class SubmissionCreate(_Input):
    """What to create: the model's kind and name, the prompt, and the options that model takes
    (`tracker submit video|image --help` lists them)."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_body_schema)

    kind: Literal["video", "image"]
    model: str = Field(max_length=64)
    prompt: str = Field(max_length=MAX_PROMPT_CHARS * 4)  # the real limit is checked in chars
    # JSON Schema's integers include 5.0: a whole float is taken as the integer (`_whole`).
    duration: int | float | None = None
    resolution: str | None = Field(default=None, max_length=32)
    ratio: str | None = Field(default=None, max_length=16)
    image_url: str | None = Field(default=None, max_length=MAX_URL_CHARS)
    batch_size: int | float | None = None
    webhook_url: str | None = Field(default=None, max_length=MAX_URL_LENGTH)
    metadata: dict[str, Any] | None = None


SUBMISSION_EXAMPLE: dict[str, Any] = {
    "id": 7,
    "kind": "video",
    "model": "seedancev2",
    "provider": "tensorslab",
    "status": "created",
    "request": {"kind": "video", "model": "seedancev2", "prompt": "a red fox", "duration": 5},
    "webhook_url": EXAMPLE_URL,
    "metadata": {"order": 1042},
    "idempotency_key": "order-1042",
    "task_id": EXAMPLE_TASK_ID,
    "upstream_message": None,
    "created_at": EXAMPLE_TIME,
    "updated_at": EXAMPLE_TIME,
    "sent_at": EXAMPLE_TIME,
    "task": None,
    "webhook_id": 3,
    "webhook_secret": None,
    "webhook_warning": None,
}


class SubmissionPublic(BaseModel):
    model_config = ConfigDict(
        from_attributes=True, json_schema_extra={"examples": [SUBMISSION_EXAMPLE]}
    )

    id: int
    kind: str
    model: str
    provider: str
    status: str
    request: dict[str, Any]
    webhook_url: str | None
    metadata: dict[str, Any]
    idempotency_key: str | None
    task_id: str | None
    upstream_message: str | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    task: TaskPublic | None = None
    webhook_id: int | None = None
    webhook_secret: str | None = None
    webhook_warning: str | None = Field(
        default=None,
        description="Set when the host of `webhook_url` does not resolve right now: the "
        "webhook is kept, and its deliveries fail (recorded, retried) until it resolves.",
    )


class SubmissionFailure(BaseModel):
    """The error shape, with the stored submission when one was recorded (refused, unknown)."""

    error: ErrorBody
    submission: SubmissionPublic | None = None

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": {
                        "code": "submission_refused",
                        "message": "submission 8 (video seedancev2): TensorsLab refused it: "
                        "insufficient credits",
                        "details": [],
                    },
                    "submission": {
                        **SUBMISSION_EXAMPLE,
                        "id": 8,
                        "status": "refused",
                        "task_id": None,
                        "upstream_message": "insufficient credits",
                        "webhook_id": None,
                    },
                }
            ]
        }
    )


class SubmissionList(BaseModel):
    submissions: list[SubmissionPublic]

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"submissions": [SUBMISSION_EXAMPLE]}]}
    )


def _whole(value: int | float | None) -> int | float | None:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _public(view: SubmissionView) -> dict[str, Any]:
    return SubmissionPublic.model_validate(view).model_dump(mode="json")


@router.post(
    "",
    summary="Create a TensorsLab task and track it",
    description=(
        "Sends one create request (never retried: it is paid work) and tracks the task ID "
        "it returns, with the webhook and metadata as a registration has them. Send an "
        "`Idempotency-Key` header to make a retry safe: the same key answers from the stored "
        "submission; the same key with another body is 409. A refusal by TensorsLab is 409 "
        "`submission_refused`; a create sent without an answer is 503 `submission_unknown` "
        "(a task may exist: check before submitting again); both carry the `submission`."
    ),
    status_code=201,
    response_model=SubmissionPublic,
    responses={
        **documented_errors(400, 413, 422),
        409: {
            "model": SubmissionFailure,
            "description": "TensorsLab refused it (`submission_refused`, with the submission), "
            "or the Idempotency-Key was used for another request.",
        },
        503: {
            "model": SubmissionFailure,
            "description": "Sent without an answer (`submission_unknown`: a task may exist), "
            "not sent, no rate limit token in time, no TENSORSLAB_API_KEY, or the database "
            "does not answer.",
        },
    },
)
def create_submission(
    body: SubmissionCreate,
    settings: SettingsDep,
    database: DatabaseDep,
    idempotency_key: Annotated[
        str | None, Header(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]{1,200}$")
    ] = None,
) -> object:
    request = validate_request(
        body.kind,
        body.model,
        prompt=body.prompt,
        duration_s=_whole(body.duration),
        resolution=body.resolution,
        ratio=body.ratio,
        image_url=body.image_url,
        batch_size=_whole(body.batch_size),
    )
    if settings.tensorslab_api_key is None:
        raise ApiError(
            503,
            "this tracker has no TENSORSLAB_API_KEY: it cannot create TensorsLab tasks",
            code="unavailable",
        )
    view = submit.submit_configured(
        request,
        settings=settings,
        session_scope=database.write,
        metadata=body.metadata,
        webhook_url=body.webhook_url,
        idempotency_key=idempotency_key,
    )
    headers = {"Idempotent-Replayed": "true"} if view.replayed else None
    error = submit.outcome_error(view)
    if error is None:
        return JSONResponse(_public(view), status_code=201, headers=headers)
    if isinstance(error, SubmissionRefused):
        status, code = 409, "submission_refused"
    elif isinstance(error, SubmissionUnknown):
        status, code = 503, "submission_unknown"
    else:
        status, code = 503, "submission_not_sent"
    body_out = {
        "error": {"code": code, "message": str(error), "details": []},
        "submission": _public(view),
    }
    return JSONResponse(body_out, status_code=status, headers=headers)


@router.get(
    "",
    summary="Submissions, newest first",
    response_model=SubmissionList,
    responses=documented_errors(422),
)
def list_submissions(
    database: DatabaseDep,
    status: Annotated[submit.SubmissionStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> SubmissionList:
    with database.read() as session:
        found = submit.list_submissions(
            session, status=None if status is None else status.value, limit=limit
        )
    return SubmissionList(submissions=[SubmissionPublic.model_validate(item) for item in found])


@router.get(
    "/{submission_id}",
    summary="One submission, with what was sent",
    response_model=SubmissionPublic,
    responses=documented_errors(404, 422),
)
def get_submission(
    submission_id: Annotated[int, Path(ge=1, le=MAX_ID, description="The submission's ID.")],
    database: DatabaseDep,
) -> SubmissionPublic:
    with database.read() as session:
        return SubmissionPublic.model_validate(submit.get_submission(session, submission_id))
