"""Submit and track: create a task upstream, then track the ID it gets, in one use case.

A create is paid work and TensorsLab offers no idempotency key, so tracker sends it at most
once and never retries it. The order makes that hold whatever fails:

1. everything is checked first (model and options from the provider's table, metadata, the
   webhook URL, the caller's `Idempotency-Key`): a refusal sends and stores nothing;
2. an `Idempotency-Key` already stored with the same request answers what it answered then
   (nothing is sent again); with another request it is refused;
3. the submission is stored as `sending` (committed, so the key is claimed before anything
   leaves) and one rate limit token is taken;
4. one create request; then one transaction records what came of it: `created` with the task
   registered exactly as `register` does (metadata, webhook), `refused` with upstream's
   message, `not_sent` (no connection was made) or `submission_unknown` (sent, no answer:
   a task may exist; the caller decides, looking at TensorsLab's dashboard).

A submission left `sending` (the process died while waiting for upstream) is as unknown as
`submission_unknown`.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tracker.db.clock import database_now
from tracker.db.models import Submission
from tracker.errors import (
    Conflict,
    IdempotencyKeyReused,
    InvalidInput,
    InvalidMetadata,
    RateLimited,
    SubmissionNotSent,
    SubmissionRefused,
    SubmissionUnknown,
    TrackerError,
    UnknownSubmission,
)
from tracker.settings import Settings
from tracker.tasks import rate_limit
from tracker.tasks.ids import validate_provider
from tracker.tasks.register import MAX_METADATA_BYTES, NewTask, register_tasks, unstorable_text
from tracker.tasks.schedule import PollPolicy
from tracker.tasks.views import TaskView
from tracker.upstream.tensorslab_create import (
    Created,
    CreateNotSent,
    CreateRefused,
    CreateResult,
    SubmissionRequest,
    creator_from_settings,
)
from tracker.webhooks.guard import AddressPolicy, Resolver, VettedURL, system_resolver
from tracker.webhooks.vetting import vet_webhook_url

__all__ = [
    "SUBMIT_RATE_WAIT_S",
    "Creator",
    "SubmissionStatus",
    "SubmissionView",
    "get_submission",
    "list_submissions",
    "outcome_error",
    "submit",
    "submit_configured",
]

# How long a submission waits for a rate limit token before it is refused, nothing sent.
SUBMIT_RATE_WAIT_S = 10.0
MAX_IDEMPOTENCY_KEY_LENGTH = 200
_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")  # printable ASCII, no spaces


class SubmissionStatus(enum.StrEnum):
    SENDING = "sending"  # stored, create in flight (or the process died: as unknown)
    CREATED = "created"  # upstream made it; the task is tracked
    REFUSED = "refused"  # upstream answered no; nothing was made
    NOT_SENT = "not_sent"  # no connection was made; nothing was sent
    UNKNOWN = "submission_unknown"  # sent, no usable answer: a task may exist


class Creator(Protocol):
    def create(self, request: SubmissionRequest) -> CreateResult: ...


SessionFactory = Callable[[], AbstractContextManager[Session]]


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmissionView:
    """One stored submission; `task` and the webhook's fields only in the answer that made it."""

    id: int
    kind: str
    model: str
    provider: str
    status: SubmissionStatus
    request: Mapping[str, Any]
    webhook_url: str | None
    metadata: Mapping[str, Any]
    idempotency_key: str | None
    task_id: str | None
    upstream_message: str | None
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    task: TaskView | None = None
    webhook_id: int | None = None
    webhook_secret: str | None = None  # the URL's new endpoint's secret, this once
    webhook_warning: str | None = None  # the URL's host does not resolve right now (kept)
    replayed: bool = False  # answered from the stored Idempotency-Key

    @classmethod
    def of(cls, row: Submission) -> SubmissionView:
        return cls(
            id=row.id,
            kind=row.kind,
            model=row.model,
            provider=row.provider,
            status=SubmissionStatus(row.status),
            request=dict(row.request),
            webhook_url=row.webhook_url,
            metadata=dict(row.task_metadata or {}),
            idempotency_key=row.idempotency_key,
            task_id=row.task_id,
            upstream_message=row.upstream_message,
            created_at=row.created_at,
            updated_at=row.updated_at,
            sent_at=row.sent_at,
        )


def submit(
    request: SubmissionRequest,
    *,
    session_scope: SessionFactory,
    creator: Creator,
    first_poll_delay_s: float,
    metadata: object = None,
    webhook_url: str | VettedURL | None = None,
    idempotency_key: str | None = None,
    policy: AddressPolicy | None = None,
    rate_limit: Callable[[float], bool] | None = None,
    resolve: Resolver = system_resolver,
) -> SubmissionView:
    """Create the task upstream once and track it; see the module docstring for the order.

    Returns the stored submission whatever came of it: `outcome_error(view)` says which error
    the edges report for one that did not create a task. Raises before sending anything when
    an input is refused (`InvalidInput`), the key was used for another request
    (`IdempotencyKeyReused`) or no rate limit token came in time (`RateLimited`).
    """
    validate_provider(request.spec.provider)  # a provider this tracker cannot poll: refuse now
    checked_metadata = _checked_metadata(metadata)
    vetted: VettedURL | None = None
    if webhook_url is not None:
        if policy is None:
            raise ValueError("a webhook URL was given without the policy that checks it")
        # Checked (DNS included) before any transaction, as `register` does; see webhooks.vetting.
        vetted = (
            webhook_url
            if isinstance(webhook_url, VettedURL)
            else vet_webhook_url(webhook_url, policy, resolve=resolve)
        )
    url = None if vetted is None else vetted.url
    if idempotency_key is not None and not _KEY.match(idempotency_key):
        raise InvalidInput(
            "the Idempotency-Key must be 1 to 200 printable ASCII characters without spaces"
        )
    sent = request.to_json()
    digest = _request_hash(sent, url, checked_metadata)

    if idempotency_key is not None:
        with session_scope() as session:
            earlier = _by_key(session, idempotency_key)
            if earlier is not None:
                return _replay(earlier, digest)
    if rate_limit is not None and not rate_limit(SUBMIT_RATE_WAIT_S):
        raise RateLimited(
            f"no request to TensorsLab may start within {SUBMIT_RATE_WAIT_S:g} s under "
            "TENSORSLAB_MAX_REQUESTS_PER_S: nothing was sent or stored; try again later"
        )
    try:
        with session_scope() as session:
            now = database_now(session)
            row = Submission(
                kind=request.kind,
                model=request.model,
                provider=request.spec.provider,
                status=SubmissionStatus.SENDING.value,
                request=sent,
                webhook_url=url,
                task_metadata=checked_metadata,
                idempotency_key=idempotency_key,
                request_hash=digest,
                created_at=now,
                updated_at=now,
                sent_at=now,
            )
            session.add(row)
            session.flush()
            submission_id = row.id
    except IntegrityError:
        # Another request with the same key got in first: answer as it did (or will).
        assert idempotency_key is not None
        with session_scope() as session:
            earlier = _by_key(session, idempotency_key)
            if earlier is None:  # pragma: no cover - a unique violation names a stored row
                raise
            return _replay(earlier, digest)

    result = creator.create(request)  # once: never retried, whatever happens
    view = _record(
        submission_id,
        result,
        vetted,
        session_scope=session_scope,
        first_poll_delay_s=first_poll_delay_s,
        policy=policy,
        resolve=resolve,
    )
    return view if vetted is None else replace(view, webhook_warning=vetted.warning)


def submit_configured(
    request: SubmissionRequest,
    *,
    settings: Settings,
    session_scope: SessionFactory,
    metadata: object = None,
    webhook_url: str | None = None,
    idempotency_key: str | None = None,
) -> SubmissionView:
    """`submit` with the configured upstream, rate limit and webhook policy (for the edges)."""
    bucket = rate_limit.make_bucket(settings, session_scope)
    creator = creator_from_settings(settings)
    first_poll = PollPolicy.for_provider(settings, request.spec.provider)
    try:
        return submit(
            request,
            session_scope=session_scope,
            creator=creator,
            first_poll_delay_s=first_poll.first_delay_s,
            metadata=metadata,
            webhook_url=webhook_url,
            idempotency_key=idempotency_key,
            policy=AddressPolicy.from_settings(settings),
            rate_limit=None
            if bucket is None
            else lambda wait_s: rate_limit.acquire(bucket, wait_s=wait_s),
        )
    finally:
        creator.close()


def _record(
    submission_id: int,
    result: CreateResult,
    vetted: VettedURL | None,
    *,
    session_scope: SessionFactory,
    first_poll_delay_s: float,
    policy: AddressPolicy | None,
    resolve: Resolver,
) -> SubmissionView:
    if not isinstance(result, Created):
        if isinstance(result, CreateRefused):
            status = SubmissionStatus.REFUSED
        elif isinstance(result, CreateNotSent):
            status = SubmissionStatus.NOT_SENT
        else:
            status = SubmissionStatus.UNKNOWN
        with session_scope() as session:
            row = _row(session, submission_id)
            row.status, row.upstream_message = status.value, result.message
            row.updated_at = database_now(session)
            return SubmissionView.of(row)
    try:
        with session_scope() as session:
            row = _row(session, submission_id)
            registrations = register_tasks(
                session,
                [NewTask(result.task_id, dict(row.task_metadata or {}), vetted)],
                first_poll_delay_s=first_poll_delay_s,
                provider=row.provider,
                policy=policy,
                resolve=resolve,
            )
            row.status, row.task_id = SubmissionStatus.CREATED.value, result.task_id
            row.upstream_message = None
            row.updated_at = database_now(session)
            registration = registrations[0]
            return replace(
                SubmissionView.of(row),
                task=registration.task,
                webhook_id=registration.webhook_endpoint_id,
                webhook_secret=registration.webhook_secret,
            )
    except TrackerError as error:
        # Upstream made the task but it could not be tracked (the database went away, or the
        # webhook URL's host stopped resolving): keep its ID so the caller can register it.
        with session_scope() as session:
            row = _row(session, submission_id)
            row.status, row.task_id = SubmissionStatus.CREATED.value, result.task_id
            row.upstream_message = f"created, but not tracked: {error}"
            row.updated_at = database_now(session)
        raise


def outcome_error(view: SubmissionView) -> TrackerError | None:
    """The error an edge reports for a submission that made no tracked task; None if it did."""
    where = f"submission {view.id} ({view.kind} {view.model})"
    if view.status is SubmissionStatus.REFUSED:
        return SubmissionRefused(f"{where}: TensorsLab refused it: {view.upstream_message}")
    if view.status is SubmissionStatus.NOT_SENT:
        return SubmissionNotSent(
            f"{where} was not sent: {view.upstream_message}; nothing was created, "
            "submitting again is safe"
        )
    if view.status in (SubmissionStatus.UNKNOWN, SubmissionStatus.SENDING):
        why = view.upstream_message or "no answer yet (still sending, or the sender stopped)"
        return SubmissionUnknown(
            f"{where} was sent but its outcome is unknown ({why}): a task may have been "
            "created and billed. tracker will not resend it; check your TensorsLab tasks "
            "before submitting again, and `tracker register` the task ID if you find it"
        )
    return None


def get_submission(session: Session, submission_id: int) -> SubmissionView:
    return SubmissionView.of(_row(session, submission_id))


def list_submissions(
    session: Session, *, status: str | None = None, limit: int = 50
) -> list[SubmissionView]:
    """Submissions, newest first."""
    query = select(Submission).order_by(Submission.id.desc()).limit(limit)
    if status is not None:
        try:
            SubmissionStatus(status)
        except ValueError:
            known = ", ".join(item.value for item in SubmissionStatus)
            raise InvalidInput(f"unknown submission status {status!r}; known: {known}") from None
        query = query.where(Submission.status == status)
    return [SubmissionView.of(row) for row in session.scalars(query)]


def _row(session: Session, submission_id: int) -> Submission:
    row = session.get(Submission, submission_id)
    if row is None:
        raise UnknownSubmission(f"no submission with ID {submission_id}")
    return row


def _by_key(session: Session, key: str) -> Submission | None:
    return session.scalars(select(Submission).where(Submission.idempotency_key == key)).first()


def _replay(row: Submission, digest: str) -> SubmissionView:
    if row.request_hash != digest:
        raise IdempotencyKeyReused(
            f"Idempotency-Key {row.idempotency_key!r} was used for another request "
            f"(submission {row.id}); use a new key for a new submission"
        )
    if row.status == SubmissionStatus.SENDING.value:
        raise Conflict(
            f"submission {row.id} with this Idempotency-Key is still being sent; ask again "
            "in a moment"
        )
    view = SubmissionView.of(row)
    return replace(view, replayed=True)


def _checked_metadata(metadata: object) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise InvalidMetadata(f"metadata must be a JSON object, got {type(metadata).__name__}")
    problem = unstorable_text(metadata)
    if problem is not None:
        raise InvalidMetadata(f"metadata contains {problem}")
    try:
        text = json.dumps(metadata, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as error:
        raise InvalidMetadata(f"metadata is not JSON: {error}") from None
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > MAX_METADATA_BYTES:
        raise InvalidMetadata(
            f"metadata is {size} bytes of JSON; the limit is {MAX_METADATA_BYTES} (16 KiB)"
        )
    return metadata


def _request_hash(sent: Mapping[str, Any], webhook_url: str | None, metadata: object) -> str:
    canonical = json.dumps(
        {"request": sent, "webhook_url": webhook_url, "metadata": metadata},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8", errors="surrogatepass")).hexdigest()
