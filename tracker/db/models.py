"""SQLAlchemy tables: tracked tasks and their scheduled polls, transitions, provider pauses, the
webhook outbox, the processes' heartbeats, and what the adaptive schedule learned.

The schema itself is created only by the Alembic migrations in `migrations/`; these classes
describe it for queries. Times are stored in UTC and always come back timezone-aware.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ColumnElement,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, column_property, mapped_column
from sqlalchemy.types import DateTime, TypeDecorator

__all__ = [
    "ApiToken",
    "Base",
    "DeliveryAttempt",
    "ProcessHeartbeat",
    "ProviderFailureRow",
    "ProviderPauseRow",
    "RateBucket",
    "RetentionRun",
    "ScheduleBucket",
    "ScheduleLearning",
    "ScheduledPoll",
    "Submission",
    "TrackedTask",
    "Transition",
    "UTCDateTime",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookSubscription",
]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JSONType = JSON().with_variant(JSONB(), "postgresql")
BigID = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER only


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every engine (SQLite stores them naive, in UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ScheduledPoll(Base):
    """A live task's next poll: when it is due, and which claim holds it (its lease).

    One row per task that is still polled, deleted when the task ends. A claim (`leasing.py`)
    reads and writes only this narrow table, through its primary key and its due index, so its
    cost follows the due rows, not how many tasks were ever tracked (bench/scale.py).
    """

    __tablename__ = "scheduled_polls"

    task_pk: Mapped[int] = mapped_column(
        BigID, ForeignKey("tracked_tasks.id", ondelete="CASCADE"), primary_key=True
    )
    provider: Mapped[str] = mapped_column(String(32))  # the task's, for pauses and probes
    # When the next poll is due. A claim leaves it as it was (`leasing.py`, `keep_due`): while
    # a lease holds, the row is due again at the lease's end (`due_at`).
    next_poll_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_token: Mapped[str | None] = mapped_column(String(36))  # the claim that may write
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_scheduled_polls_next_poll_at", "next_poll_at"),)

    @classmethod
    def due_at(cls) -> ColumnElement[datetime]:
        """When the row is next due to be claimed: its lease's end while it has one (a claim sets
        the lease's end after the due time; a batch's write clears both), else `next_poll_at`.
        For reading; a filter that should use the due index adds `next_poll_at` itself."""
        return func.coalesce(cls.lease_expires_at, cls.next_poll_at)


class TrackedTask(Base):
    """One upstream task that tracker follows until it reaches a terminal status."""

    __tablename__ = "tracked_tasks"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(32))
    task_id: Mapped[str] = mapped_column(String(256))
    status: Mapped[str] = mapped_column(String(16))  # a TaskStatus value
    result_urls: Mapped[list[str]] = mapped_column(JSONType, default=list)
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)  # moreTaskInfo
    task_metadata: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)  # user's
    upstream_message: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # reached terminal
    last_polled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The last poll whose answer was a live status: the task finished after this moment.
    last_seen_unfinished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    not_found_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    poll_count: Mapped[int] = mapped_column(Integer, default=0)
    error_count: Mapped[int] = mapped_column(Integer, default=0)
    consecutive_errors: Mapped[int] = mapped_column(Integer, default=0)
    # Read-only: when the task's scheduled poll is next due (`ScheduledPoll.due_at`: the lease's
    # end while a batch holds it), None once it is terminal. Filter and write through
    # `ScheduledPoll` itself (a filter on this one reads every task).
    next_poll_at: Mapped[datetime | None] = column_property(
        select(ScheduledPoll.due_at())
        .where(ScheduledPoll.task_pk == id)
        .correlate_except(ScheduledPoll)
        .scalar_subquery()
    )

    __table_args__ = (
        UniqueConstraint("provider", "task_id"),
        Index("ix_tracked_tasks_status_created_at", "status", "created_at"),
        Index("ix_tracked_tasks_created_at", "created_at"),
        Index("ix_tracked_tasks_updated_at", "updated_at"),  # `GET /v1/tasks?updated_since=`
    )


class Transition(Base):
    """One change of a task's status, with the upstream answer that showed it."""

    __tablename__ = "task_transitions"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    task_pk: Mapped[int] = mapped_column(
        BigID, ForeignKey("tracked_tasks.id", ondelete="CASCADE"), index=True
    )
    from_status: Mapped[str] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    upstream_payload: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    note: Mapped[str | None] = mapped_column(Text)


class ProviderPauseRow(Base):
    """A provider-wide pause (no credits, throttled, key refused, unreachable): no task of it is
    claimed before `paused_until`; then one probe poll at a time until an answer lifts it."""

    __tablename__ = "provider_pauses"

    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    paused_until: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(Text)  # for a human: the upstream answer
    cause: Mapped[str] = mapped_column(String(32))  # a PauseCause value
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # when this pause began
    probe_until: Mapped[datetime | None] = mapped_column(UTCDateTime)  # a probe is in flight
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ProviderFailureRow(Base):
    """Since when every request to a provider has failed to connect (no row: it answers)."""

    __tablename__ = "provider_failures"

    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    unreachable_since: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RetentionRun(Base):
    """One maintenance job (`prune`): its last run, and how many tasks it removed in all."""

    __tablename__ = "retention_runs"

    job: Mapped[str] = mapped_column(String(32), primary_key=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_removed: Mapped[int] = mapped_column(Integer, default=0)
    removed_total: Mapped[int] = mapped_column(BigInteger, default=0)


class WebhookEndpoint(Base):
    """Where webhooks go: a URL (one live endpoint per URL), the events it wants, the secret.

    `all_tasks` false: it hears only the tasks subscribed to it (`WebhookSubscription`), those
    registered with its URL (`register --webhook URL`). Secrets are stored encrypted
    (`webhooks.vault`); `previous_secrets` are rotated-out ones, each signing until its time.
    """

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[str]] = mapped_column(JSONType)
    secret: Mapped[str] = mapped_column(Text)  # encrypted; signs; never shown after creation
    # [{"secret": encrypted, "until": ISO 8601 UTC}, ...]: they also sign until then
    previous_secrets: Mapped[list[dict[str, str]]] = mapped_column(JSONType, default=list)
    all_tasks: Mapped[bool] = mapped_column(Boolean, default=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # The endpoint's own headers ({name: value}), sent with every attempt (webhooks.headers).
    headers: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # kept for history

    __table_args__ = (
        # One live endpoint per URL: two callers adding the same URL at once insert one row
        # (`add_endpoint` and `subscribe_tasks` insert ON CONFLICT DO NOTHING).
        Index(
            "uq_webhook_endpoints_url",
            "url",
            unique=True,
            postgresql_where="removed_at IS NULL",
            sqlite_where="removed_at IS NULL",
        ),
    )


class WebhookSubscription(Base):
    """A task that an endpoint not for all tasks hears about (given at registration)."""

    __tablename__ = "webhook_subscriptions"

    endpoint_id: Mapped[int] = mapped_column(
        BigID, ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), primary_key=True
    )
    task_pk: Mapped[int] = mapped_column(
        BigID, ForeignKey("tracked_tasks.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WebhookDelivery(Base):
    """One message to one endpoint: the exact body, its id, and where its retries stand."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(40), unique=True)  # the webhook-id header
    endpoint_id: Mapped[int] = mapped_column(
        BigID, ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True
    )
    # None for an event about no task (`webhook.test`).
    task_pk: Mapped[int | None] = mapped_column(
        BigID, ForeignKey("tracked_tasks.id", ondelete="CASCADE"), index=True
    )
    event_type: Mapped[str] = mapped_column(String(32))
    payload: Mapped[str] = mapped_column(Text)  # the exact body sent and signed
    status: Mapped[str] = mapped_column(String(12))  # pending, delivered, failed
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    # None once final, and while held (pending for a disabled endpoint: not claimed).
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_token: Mapped[str | None] = mapped_column(String(36))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where="next_attempt_at IS NOT NULL",
            sqlite_where="next_attempt_at IS NOT NULL",
        ),
        Index("ix_webhook_deliveries_status_created_at", "status", "created_at"),
    )


class DeliveryAttempt(Base):
    """One try at sending a delivery, successful or not."""

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(
        BigID, ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    duration_ms: Mapped[float] = mapped_column(Float)
    status_code: Mapped[int | None] = mapped_column(Integer)
    succeeded: Mapped[bool] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(Text)
    response_excerpt: Mapped[str | None] = mapped_column(Text)  # the first few KB


class ApiToken(Base):
    """A bearer token for the HTTP API. Only its SHA-256 is stored; the token is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # hex SHA-256
    prefix: Mapped[str] = mapped_column(String(16))  # the first characters, to recognise it
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Submission(Base):
    """A task tracker created upstream itself: what was sent (no secrets), and what came of it."""

    __tablename__ = "submissions"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))  # video or image
    model: Mapped[str] = mapped_column(String(64))
    provider: Mapped[str] = mapped_column(String(32))  # whose status endpoint follows the task
    status: Mapped[str] = mapped_column(String(32))  # a SubmissionStatus value
    request: Mapped[dict[str, Any]] = mapped_column(JSONType)  # the fields sent
    webhook_url: Mapped[str | None] = mapped_column(Text)
    task_metadata: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    request_hash: Mapped[str] = mapped_column(String(64))  # of the whole request, for the key
    task_id: Mapped[str | None] = mapped_column(String(256))  # upstream's, once created
    upstream_message: Mapped[str | None] = mapped_column(Text)  # why refused, or what failed
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_submissions_created_at", "created_at"),)


class RateBucket(Base):
    """A token bucket shared by every process that talks to one API key (see rate_limit.py)."""

    __tablename__ = "rate_buckets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    updated_at_s: Mapped[float] = mapped_column(Float)  # the database's clock, epoch seconds


class ProcessHeartbeat(Base):
    """One running tracker process (beat, a worker): who it is and when it was last seen.

    Upserted by the process itself at most every TRACKER_HEARTBEAT_INTERVAL_S
    (`tracker.ops.heartbeats`); rows not seen for a day are dropped.
    """

    __tablename__ = "process_heartbeats"

    id: Mapped[int] = mapped_column(BigID, primary_key=True, autoincrement=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))  # beat, polls, webhooks, worker (both)
    queue: Mapped[str | None] = mapped_column(String(255))  # what a worker consumes
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    last_batch_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_batch: Mapped[dict[str, Any] | None] = mapped_column(JSONType)  # counts of the batch

    __table_args__ = (UniqueConstraint("host", "pid", "kind"),)


class ScheduleBucket(Base):
    """What the adaptive schedule learned of one bucket of alike tasks (`tasks/adaptive.py`):
    the ages at which its last tasks finished. Written only by `learning.refresh`."""

    __tablename__ = "schedule_buckets"

    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    model: Mapped[str] = mapped_column(String(64), primary_key=True)
    resolution: Mapped[str] = mapped_column(String(16), primary_key=True)
    duration_s: Mapped[int] = mapped_column(Integer, primary_key=True)  # 0 for images
    samples: Mapped[int] = mapped_column(BigInteger, default=0)  # tasks learned from, ever
    ages_s: Mapped[list[float]] = mapped_column(JSONType, default=list)  # the last 256
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ScheduleLearning(Base):
    """How far the adaptive schedule has read the completed tasks: every task whose
    (updated_at, id) is at or before (`learned_until`, `learned_through_id`) is learned."""

    __tablename__ = "schedule_learning"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    learned_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    learned_through_id: Mapped[int] = mapped_column(BigID, default=0)
    refreshed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
