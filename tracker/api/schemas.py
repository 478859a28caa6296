"""The HTTP API's request and response bodies (pydantic), and how views become them.

`...Create` / `...Update` are what clients send (unknown fields are refused), `...Public` what
they get back. Secrets appear only in `WebhookCreated` and `RegisteredTask.webhook_secret`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from tracker.states import DeliveryStatus, TaskStatus
from tracker.tasks.ids import MAX_TASK_ID_LENGTH
from tracker.tasks.register import MAX_METADATA_BYTES
from tracker.upstream.names import DEFAULT_PROVIDER, PROVIDERS

__all__ = [
    "AttemptPublic",
    "DeliveryList",
    "DeliveryPublic",
    "ErrorBody",
    "ErrorDetail",
    "ErrorResponse",
    "HealthPublic",
    "ReadinessPublic",
    "RegisteredTask",
    "RegisteredTasks",
    "TaskBatchCreate",
    "TaskCreate",
    "TaskList",
    "TaskPublic",
    "TransitionList",
    "TransitionPublic",
    "WebhookCreate",
    "WebhookCreated",
    "WebhookList",
    "WebhookPublic",
    "WebhookUpdate",
]

EXAMPLE_TASK_ID = "20251129_9f3c2a7e"


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Output(BaseModel):
    """Read from the use cases' frozen views by attribute name (`Model.model_validate(view)`)."""

    model_config = ConfigDict(from_attributes=True)


# --- errors --------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    field: str = Field(description="Where the problem is, e.g. `tasks[0].task_id`.")
    message: str


class ErrorBody(BaseModel):
    code: str = Field(description="Stable and machine-readable, e.g. `not_found`.")
    message: str = Field(description="What went wrong, for a human.")
    details: list[ErrorDetail] = Field(default_factory=list)


class ErrorResponse(BaseModel):
    """Every error the API returns has this shape."""

    error: ErrorBody

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": {
                        "code": "validation_error",
                        "message": "the request is invalid: tasks[0].task_id: String should "
                        "have at least 1 character",
                        "details": [
                            {
                                "field": "tasks[0].task_id",
                                "message": "String should have at least 1 character",
                            }
                        ],
                    }
                }
            ]
        }
    )


# --- tasks ---------------------------------------------------------------------------------


class TaskCreate(_Input):
    """One TensorsLab task ID to track."""

    task_id: str = Field(
        min_length=1,
        max_length=MAX_TASK_ID_LENGTH,
        description="The ID TensorsLab returned when the video or image task was created.",
        examples=[EXAMPLE_TASK_ID],
    )
    provider: str = Field(
        default=DEFAULT_PROVIDER,
        max_length=32,
        description=f"Whose task ID it is: one of {', '.join(PROVIDERS)} (TensorsLab's video "
        "tasks, the default, or its image tasks). A task is identified by provider and ID.",
        examples=list(PROVIDERS),
    )
    webhook_url: str | None = Field(
        default=None,
        max_length=2048,
        description="Also POST how this task ends (completed, failed, not_found, expired, "
        "cancelled) to this URL, signed with a secret returned once.",
        examples=["https://example.com/hooks/tensorslab"],
    )
    metadata: dict[str, Any] | None = Field(
        default=None,
        description="Your own JSON object, stored with the task and sent in its webhooks; "
        f"at most {MAX_METADATA_BYTES} bytes (16 KiB) as compact UTF-8 JSON, or the request "
        "gets 422 `invalid_input` and nothing is stored.",
        examples=[{"order": 1042}],
    )


class TaskBatchCreate(_Input):
    """Several task IDs at once: all are registered, or none if any is invalid."""

    tasks: list[TaskCreate] = Field(min_length=1, description="At most TRACKER_API_MAX_BATCH.")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "tasks": [
                        {"task_id": EXAMPLE_TASK_ID, "metadata": {"order": 1042}},
                        {
                            "task_id": "20251129_41d0be13",
                            "webhook_url": "https://example.com/hooks/tensorslab",
                        },
                    ]
                }
            ]
        }
    )


class TaskPublic(_Output):
    task_id: str
    provider: str
    status: TaskStatus
    result_urls: list[str] = Field(description="The video or image URLs, once completed.")
    upstream_message: str | None
    last_error: str | None
    details: dict[str, Any] = Field(
        description="TensorsLab's details of the task, as last seen: for video its "
        "moreTaskInfo (prompt, resolution, duration...), for images category, width, height, "
        "prompt, starttime."
    )
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    last_polled_at: datetime | None
    next_poll_at: datetime | None = Field(description="None once the task is terminal.")
    poll_count: int
    error_count: int


class RegisteredTask(_Output):
    created: bool = Field(description="False: it was already tracked and nothing changed.")
    task: TaskPublic
    webhook_id: int | None = Field(
        default=None,
        validation_alias=AliasChoices("webhook_id", "webhook_endpoint_id"),
        description="The endpoint of `webhook_url`, which signs this task's webhooks (one "
        "endpoint and one secret per URL); None when no URL was given.",
    )
    webhook_secret: str | None = Field(
        default=None,
        description="The signing secret of `webhook_url`, shown only in the response that made "
        "its endpoint; None when no URL was given or the URL already had an endpoint.",
    )


class RegisteredTasks(_Output):
    tasks: list[RegisteredTask]


class TaskList(_Output):
    tasks: list[TaskPublic]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page."
    )


class TransitionPublic(_Output):
    from_status: TaskStatus
    to_status: TaskStatus
    occurred_at: datetime
    note: str | None
    upstream_payload: dict[str, Any] | None = Field(
        description="The upstream answer that showed the change (None for tracker's own)."
    )


class TransitionList(_Output):
    task_id: str
    transitions: list[TransitionPublic]


# --- webhooks ------------------------------------------------------------------------------


class WebhookCreate(_Input):
    url: str = Field(
        min_length=1, max_length=2048, examples=["https://example.com/hooks/tensorslab"]
    )
    events: list[str] = Field(
        default_factory=list,
        description="Event types to send; empty means task.completed and task.failed.",
        examples=[["task.completed", "task.failed"]],
    )


class WebhookUpdate(_Input):
    url: str | None = Field(default=None, min_length=1, max_length=2048)
    events: list[str] | None = None
    enabled: bool | None = Field(default=None, examples=[False])


class WebhookPublic(_Output):
    id: int
    url: str
    events: list[str]
    enabled: bool
    disabled_reason: str | None
    all_tasks: bool = Field(
        description="True: it hears every task. False: only the tasks registered with its URL."
    )
    task_count: int = Field(description="How many tasks it hears, when not all_tasks; else 0.")
    failing_since: datetime | None
    created_at: datetime
    rotating_until: datetime | None = Field(
        description="Rotated-out secrets also sign until then (after a rotation or a merge)."
    )


class WebhookCreated(_Output):
    webhook: WebhookPublic
    secret: str | None = Field(
        description="The signing secret: shown in this response only; null when the URL "
        "already had this endpoint (its secret was shown when it was made)."
    )
    created: bool = Field(default=True, description="False: the URL's endpoint existed.")


class WebhookList(_Output):
    webhooks: list[WebhookPublic]


class AttemptPublic(_Output):
    attempted_at: datetime
    status_code: int | None
    succeeded: bool
    duration_ms: float
    error: str | None
    response_excerpt: str | None


class DeliveryPublic(_Output):
    id: int
    message_id: str = Field(description="The `webhook-id` header, the same on every retry.")
    webhook_id: int = Field(validation_alias=AliasChoices("webhook_id", "endpoint_id"))
    url: str
    task_id: str
    event_type: str
    status: DeliveryStatus = Field(description="pending, delivered or failed (dead).")
    attempt_count: int = Field(
        description="Attempts in the current round of retries (a redelivery starts a new "
        "round); `attempts` lists every attempt ever made."
    )
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    payload: str = Field(description="The exact body that is signed and sent.")
    attempts: list[AttemptPublic]


class DeliveryList(_Output):
    deliveries: list[DeliveryPublic]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page."
    )


# --- operations ----------------------------------------------------------------------------


class HealthPublic(BaseModel):
    status: str = Field(examples=["ok"])


class ReadinessPublic(BaseModel):
    status: str = Field(description="ok, or unavailable with the reasons in `checks`.")
    checks: dict[str, str] = Field(examples=[{"database": "ok", "broker": "ok"}])
