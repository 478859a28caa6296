"""The HTTP API's request and response bodies (pydantic), and how views become them.

`...Create` / `...Update` are what clients send (unknown fields are refused), `...Public` what
they get back. Secrets appear only in `WebhookCreated` and `RegisteredTask.webhook_secret`.
Every model carries an example (tests/api/test_openapi.py checks each against its schema), and
fields state the forms the server checks: task IDs (`params.task_id_schema`), http(s) URLs,
event names.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from tracker.api.params import EXAMPLE_TASK_ID, task_id_schema
from tracker.states import DeliveryStatus, TaskStatus
from tracker.tasks.ids import MAX_TASK_ID_LENGTH
from tracker.tasks.register import MAX_METADATA_BYTES
from tracker.upstream.names import DEFAULT_PROVIDER, PROVIDERS
from tracker.webhooks import headers as header_rules
from tracker.webhooks.events import ALL_EVENTS
from tracker.webhooks.guard import MAX_URL_LENGTH

__all__ = [
    "AttemptPublic",
    "DeliveryList",
    "DeliveryPublic",
    "ErrorBody",
    "ErrorDetail",
    "ErrorResponse",
    "HealthPublic",
    "PausePublic",
    "ReadinessPublic",
    "RegisteredTask",
    "RegisteredTasks",
    "ResumedPublic",
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

EXAMPLE_URL = "https://example.com/hooks/tensorslab"
EXAMPLE_TIME = "2026-11-29T03:12:09.521000Z"
# An absolute http(s) URL; the server also refuses credentials, refused networks and more.
URL_SCHEMA: dict[str, Any] = {"format": "uri", "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://"}
EVENTS_SCHEMA: dict[str, Any] = {"items": {"enum": list(ALL_EVENTS)}}
# Metadata is any JSON object whose keys and strings, at any depth, hold no NUL character
# (PostgreSQL cannot store one; `register.unstorable_text` refuses it with a message).
NO_NUL_PATTERN = "^[^\\u0000]*$"
_METADATA_VALUE_REF = {"$ref": "#/components/schemas/MetadataValue"}
METADATA_SCHEMA: dict[str, Any] = {
    "propertyNames": {"pattern": NO_NUL_PATTERN},
    "additionalProperties": _METADATA_VALUE_REF,
}
# Schemas that no model stands for, added to the document's components (`openapi.finish`).
EXTRA_COMPONENTS: dict[str, dict[str, Any]] = {
    "MetadataValue": {
        "description": "A JSON value of metadata: its strings and keys hold no NUL character.",
        "anyOf": [
            {"type": "string", "pattern": NO_NUL_PATTERN},
            {"type": ["number", "boolean", "null"]},
            {"type": "array", "items": _METADATA_VALUE_REF},
            {"type": "object", **METADATA_SCHEMA},
        ],
        "examples": [{"order": 1042, "tags": ["launch"]}],
    }
}


def _example(example: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [example]})


class _Input(BaseModel):
    # Strict: a value of another JSON type is refused, not converted (`"enabled": 0` is not
    # false), so what the schema refuses the server refuses too.
    model_config = ConfigDict(extra="forbid", strict=True)


class _Output(BaseModel):
    """Read from the use cases' frozen views by attribute name (`Model.model_validate(view)`)."""

    model_config = ConfigDict(from_attributes=True)


# --- errors --------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    field: str = Field(description="Where the problem is, e.g. `tasks[0].task_id`.")
    message: str

    model_config = _example(
        {"field": "limit", "message": "Input should be less than or equal to 100"}
    )


class ErrorBody(BaseModel):
    code: str = Field(description="Stable and machine-readable, e.g. `not_found`.")
    message: str = Field(description="What went wrong, for a human.")
    details: list[ErrorDetail] = Field(default_factory=list)

    model_config = _example(
        {"code": "not_found", "message": f"unknown task {EXAMPLE_TASK_ID!r}", "details": []}
    )


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

    # The characters are checked by `validate_task_id` (its message names the character).
    task_id: str = Field(
        min_length=1,
        max_length=MAX_TASK_ID_LENGTH,
        description="The ID TensorsLab returned when the video or image task was created.",
        examples=[EXAMPLE_TASK_ID],
        json_schema_extra=task_id_schema(),
    )
    provider: str = Field(
        default=DEFAULT_PROVIDER,
        max_length=32,
        description=f"Whose task ID it is: one of {', '.join(PROVIDERS)} (TensorsLab's video "
        "tasks, the default, or its image tasks). A task is identified by provider and ID.",
        examples=list(PROVIDERS),
        json_schema_extra={"enum": list(PROVIDERS)},
    )
    webhook_url: str | None = Field(
        default=None,
        max_length=MAX_URL_LENGTH,
        description="Also POST how this task ends (completed, failed, not_found, expired, "
        "cancelled) to this URL (http or https), signed with a secret returned once.",
        examples=[EXAMPLE_URL],
        json_schema_extra=URL_SCHEMA,
    )
    metadata: dict[str, Any] | None = Field(
        default=None,
        description="Your own JSON object, stored with the task and sent in its webhooks; "
        f"at most {MAX_METADATA_BYTES} bytes (16 KiB) as compact UTF-8 JSON, with no NUL "
        "character (`\\u0000`), or the request gets 422 `invalid_input` and nothing is stored.",
        examples=[{"order": 1042}],
        json_schema_extra=METADATA_SCHEMA,
    )

    model_config = _example(
        {"task_id": EXAMPLE_TASK_ID, "metadata": {"order": 1042}, "webhook_url": EXAMPLE_URL}
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
                        {"task_id": "20251129_41d0be13", "webhook_url": EXAMPLE_URL},
                    ]
                }
            ]
        }
    )


PAUSE_EXAMPLE: dict[str, Any] = {
    "provider": "tensorslab",
    "cause": "unauthorized",
    "reason": "unauthorized: HTTP 401: API key refused",
    "started_at": "2026-11-29T03:00:00Z",
    "paused_until": "2026-11-29T03:10:00Z",
}


class PausePublic(_Output):
    """Polling of the task's provider is paused: no poll before `paused_until`, then one
    probe poll at a time until an answer lifts it (a `rate_limited` pause just ends)."""

    provider: str
    cause: str = Field(
        description="no_credits, rate_limited, unauthorized or unreachable.",
        examples=["unauthorized"],
    )
    reason: str = Field(
        description="What upstream answered.", examples=["unauthorized: HTTP 401: API key refused"]
    )
    started_at: datetime | None = Field(description="When this pause began.")
    paused_until: datetime = Field(description="No poll before then; then one probe poll.")

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [PAUSE_EXAMPLE]})


class ResumedPublic(_Output):
    provider: str
    cause: str = Field(description="The cause of the pause that was lifted.")
    tasks_due: int = Field(description="Tasks the pause had held back, due now.")

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [{"provider": "tensorslab", "cause": "unauthorized", "tasks_due": 12}]
        },
    )


TASK_EXAMPLE: dict[str, Any] = {
    "task_id": EXAMPLE_TASK_ID,
    "provider": "tensorslab",
    "status": "completed",
    "result_urls": ["https://cdn.example.com/videos/20251129_9f3c2a7e.mp4"],
    "upstream_message": None,
    "last_error": None,
    "details": {"resolution": "720p", "duration": 5},
    "metadata": {"order": 1042},
    "created_at": "2026-11-29T03:09:41.102000Z",
    "updated_at": EXAMPLE_TIME,
    "completed_at": EXAMPLE_TIME,
    "last_polled_at": EXAMPLE_TIME,
    "next_poll_at": None,
    "poll_count": 9,
    "error_count": 0,
    "paused": None,
}


class TaskPublic(_Output):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [TASK_EXAMPLE]})

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
    paused: PausePublic | None = Field(
        default=None,
        description="Set while the task is live and polling of its provider is paused.",
    )


class RegisteredTask(_Output):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [{"created": True, "task": TASK_EXAMPLE, "webhook_secret": None}]
        },
    )

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
    webhook_warning: str | None = Field(
        default=None,
        description="Set when the host of `webhook_url` does not resolve right now: the "
        "webhook is kept, and its deliveries fail (recorded, retried) until it resolves.",
    )


class RegisteredTasks(_Output):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {"tasks": [{"created": True, "task": TASK_EXAMPLE, "webhook_secret": None}]}
            ]
        },
    )

    tasks: list[RegisteredTask]


class TaskList(_Output):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [{"tasks": [TASK_EXAMPLE], "next_cursor": "1764385781102000_42"}]
        },
    )

    tasks: list[TaskPublic]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page."
    )


TRANSITION_EXAMPLE: dict[str, Any] = {
    "from_status": "processing",
    "to_status": "completed",
    "occurred_at": EXAMPLE_TIME,
    "note": None,
    "upstream_payload": {"code": 1000, "data": {"task_status": 3}},
}


class TransitionPublic(_Output):
    model_config = ConfigDict(
        from_attributes=True, json_schema_extra={"examples": [TRANSITION_EXAMPLE]}
    )

    from_status: TaskStatus
    to_status: TaskStatus
    occurred_at: datetime
    note: str | None
    upstream_payload: dict[str, Any] | None = Field(
        description="The upstream answer that showed the change (None for tracker's own)."
    )


class TransitionList(_Output):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [{"task_id": EXAMPLE_TASK_ID, "transitions": [TRANSITION_EXAMPLE]}]
        },
    )

    task_id: str
    transitions: list[TransitionPublic]


# --- webhooks ------------------------------------------------------------------------------


def _any_case(name: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in name)


# The rules `tracker.webhooks.headers` enforces, stated for clients (one letter case differing
# between two names, also refused, is the one rule JSON Schema cannot say).
HEADERS_SCHEMA: dict[str, Any] = {
    "maxProperties": header_rules.MAX_HEADERS,
    "propertyNames": {
        "minLength": 1,
        "maxLength": header_rules.MAX_NAME_LENGTH,
        "pattern": "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$",
        "not": {
            "pattern": "^("
            + "|".join(_any_case(n) for n in sorted(header_rules.RESERVED_HEADERS))
            + ")$"
        },
    },
    "additionalProperties": {
        "type": "string",
        "maxLength": header_rules.MAX_VALUE_LENGTH,
        "pattern": "^[\\u0020-\\u007E\\t]*$",
    },
}


HEADERS_DESCRIPTION = (
    "Headers sent with every attempt, `{name: value}`: at most 20, names HTTP tokens, values "
    "printable ASCII (no CR, LF or other control characters). webhook-id, webhook-signature, "
    "webhook-timestamp, Host, Content-Length, Content-Type, Transfer-Encoding and Connection "
    "are tracker's and refused (422). Values are never returned: they may be credentials."
)


class WebhookCreate(_Input):
    url: str = Field(
        min_length=1,
        max_length=MAX_URL_LENGTH,
        description="An http(s) URL, without credentials, outside the refused networks.",
        examples=[EXAMPLE_URL],
        json_schema_extra=URL_SCHEMA,
    )
    events: list[str] = Field(
        default_factory=list,
        description="Event types to send; empty means task.completed and task.failed.",
        examples=[["task.completed", "task.failed"]],
        json_schema_extra=EVENTS_SCHEMA,
    )

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"url": EXAMPLE_URL, "events": ["task.completed", "task.failed"]}]
        },
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description=HEADERS_DESCRIPTION,
        examples=[{"X-Env": "prod"}],
        json_schema_extra=HEADERS_SCHEMA,
    )


class WebhookUpdate(_Input):
    url: str | None = Field(
        default=None, min_length=1, max_length=MAX_URL_LENGTH, json_schema_extra=URL_SCHEMA
    )
    events: list[str] | None = Field(default=None, json_schema_extra=EVENTS_SCHEMA)
    enabled: bool | None = Field(default=None, examples=[False])
    headers: dict[str, str] | None = Field(
        default=None,
        description="Replaces every custom header (`{}` removes them). " + HEADERS_DESCRIPTION,
        examples=[{"X-Env": "staging"}],
        json_schema_extra=HEADERS_SCHEMA,
    )

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"enabled": False}]})


WEBHOOK_EXAMPLE: dict[str, Any] = {
    "id": 1,
    "url": EXAMPLE_URL,
    "events": ["task.completed", "task.failed"],
    "enabled": True,
    "disabled_reason": None,
    "all_tasks": True,
    "task_count": 0,
    "failing_since": None,
    "created_at": "2026-11-28T10:00:00Z",
    "rotating_until": None,
}


class WebhookPublic(_Output):
    model_config = ConfigDict(
        from_attributes=True, json_schema_extra={"examples": [WEBHOOK_EXAMPLE]}
    )

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
    header_names: list[str] = Field(
        default_factory=list,
        description="The names of its custom headers; their values are never returned.",
        examples=[["X-Env"]],
    )
    warning: str | None = Field(
        default=None,
        description="Only in the response that set the URL: its host does not resolve right "
        "now; the webhook is kept, and deliveries fail (recorded, retried) until it resolves.",
    )


class WebhookCreated(_Output):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "webhook": WEBHOOK_EXAMPLE,
                    "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                    "created": True,
                }
            ]
        },
    )

    webhook: WebhookPublic
    secret: str | None = Field(
        description="The signing secret: shown in this response only; null when the URL "
        "already had this endpoint (its secret was shown when it was made)."
    )
    created: bool = Field(default=True, description="False: the URL's endpoint existed.")
    warning: str | None = Field(
        default=None,
        description="Set when the URL's host does not resolve right now (the webhook is "
        "added, and deliveries fail, recorded and retried, until it resolves), or when the "
        "URL's endpoint existed and `headers` differ from its own: they were not applied "
        "(PATCH the webhook's `headers` to replace them).",
    )


class WebhookList(_Output):
    model_config = ConfigDict(
        from_attributes=True, json_schema_extra={"examples": [{"webhooks": [WEBHOOK_EXAMPLE]}]}
    )

    webhooks: list[WebhookPublic]


ATTEMPT_EXAMPLE: dict[str, Any] = {
    "attempted_at": EXAMPLE_TIME,
    "status_code": 200,
    "succeeded": True,
    "duration_ms": 84.2,
    "error": None,
    "response_excerpt": "ok",
}


class AttemptPublic(_Output):
    model_config = ConfigDict(
        from_attributes=True, json_schema_extra={"examples": [ATTEMPT_EXAMPLE]}
    )

    attempted_at: datetime
    status_code: int | None
    succeeded: bool
    duration_ms: float
    error: str | None
    response_excerpt: str | None


DELIVERY_EXAMPLE: dict[str, Any] = {
    "id": 12,
    "message_id": "msg_2pX7kLq9aR3vN8tB5cYz",
    "webhook_id": 1,
    "url": EXAMPLE_URL,
    "task_id": EXAMPLE_TASK_ID,
    "event_type": "task.completed",
    "status": "delivered",
    "attempt_count": 1,
    "next_attempt_at": None,
    "last_status_code": 200,
    "last_error": None,
    "created_at": EXAMPLE_TIME,
    "delivered_at": EXAMPLE_TIME,
    "payload": '{"type":"task.completed","timestamp":"2026-11-29T03:12:09.521Z","data":{}}',
    "attempts": [ATTEMPT_EXAMPLE],
}


class DeliveryPublic(_Output):
    model_config = ConfigDict(
        from_attributes=True, json_schema_extra={"examples": [DELIVERY_EXAMPLE]}
    )

    id: int
    message_id: str = Field(description="The `webhook-id` header, the same on every retry.")
    webhook_id: int = Field(validation_alias=AliasChoices("webhook_id", "endpoint_id"))
    url: str
    task_id: str | None = Field(description="None for a `webhook.test` event.")
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
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={"examples": [{"deliveries": [DELIVERY_EXAMPLE], "next_cursor": "12"}]},
    )

    deliveries: list[DeliveryPublic]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page."
    )


# --- operations ----------------------------------------------------------------------------


class HealthPublic(BaseModel):
    status: str = Field(examples=["ok"])

    model_config = _example({"status": "ok"})


class ReadinessPublic(BaseModel):
    status: str = Field(description="ok, or unavailable with the reasons in `checks`.")
    checks: dict[str, str] = Field(
        examples=[
            {"database": "ok", "broker": "ok", "beat": "ok", "workers": "ok", "overdue": "ok"}
        ]
    )
    paused: list[PausePublic] = Field(
        default_factory=list,
        description="Providers whose polling is paused (the API stays ready: 200).",
    )

    model_config = _example(
        {"status": "ok", "checks": {"database": "ok", "broker": "ok"}, "paused": []}
    )
