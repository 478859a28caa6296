"""`Tracker`: the Python API, for code that registers and queries tasks without HTTP.

    from tracker import Tracker

    tracker = Tracker()                      # the configured database (TRACKER_DATABASE_URL)
    tracker.register("20251129_9f3c2a7e", metadata={"order": 1042})
    tracker.get("20251129_9f3c2a7e").status  # TaskStatus.REGISTERED, later COMPLETED ...
    tracker.register("img_4f1e", provider="tensorslab-image")   # an image task
    tracker.get("img_4f1e", provider="tensorslab-image").result_urls

Each method is one transaction calling the same use cases as the CLI and the HTTP API
(`tracker.tasks`, `tracker.webhooks`), and returns their frozen views. Errors are tracker's own
types (`tracker.errors`): `UnknownTask` (a `NotFound`), `InvalidInput` and its kinds,
`TaskAlreadyEnded` (a `Conflict`), `DatabaseUnavailable`...
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tracker.db.clock import database_now
from tracker.db.engine import Database
from tracker.settings import Settings, get_settings
from tracker.states import DeliveryStatus, TaskStatus
from tracker.tasks import forget, pauses, queries, register, submit, untrack
from tracker.tasks.forget import Forgotten
from tracker.tasks.pauses import Resumed
from tracker.tasks.schedule import PollPolicy
from tracker.tasks.submit import SubmissionView
from tracker.tasks.views import Registration, TaskPage, TaskView, TransitionView, Untracked
from tracker.upstream.names import DEFAULT_PROVIDER
from tracker.upstream.tensorslab_create import validate_request
from tracker.webhooks import deliveries, endpoints, probe
from tracker.webhooks.deliveries import DeliveryView
from tracker.webhooks.endpoints import CreatedEndpoint, EndpointView
from tracker.webhooks.guard import AddressPolicy
from tracker.webhooks.guarded_http import guarded_session
from tracker.webhooks.vetting import vet_webhook_url

__all__ = ["Registered", "Tracker"]


@dataclass(frozen=True, slots=True)
class Registered:
    """What `Tracker.register` did: each task (new or already tracked), and a new secret."""

    tasks: list[Registration]
    webhook_secret: str | None  # the signing secret of `webhook_url`, this once; else None
    webhook_id: int | None = None  # the endpoint of `webhook_url`, which signs for these tasks


class Tracker:
    """Register, query and stop tracking TensorsLab tasks; manage where webhooks go."""

    def __init__(self, *, database_url: str | None = None, settings: Settings | None = None):
        self.settings = settings or get_settings()
        self.database = Database(database_url or self.settings.database_url)

    @property
    def database_url(self) -> str:
        return self.database.url

    def _policy(self) -> AddressPolicy:
        return AddressPolicy.from_settings(self.settings)

    # --- tasks -------------------------------------------------------------------------

    def register(
        self,
        task_ids: str | Iterable[str],
        *,
        metadata: Mapping[str, Any] | None = None,
        webhook_url: str | None = None,
        provider: str = DEFAULT_PROVIDER,
    ) -> Registered:
        """Start tracking one ID or several (all, or none if any is invalid) of `provider`:
        `tensorslab` (video tasks, the default) or `tensorslab-image`."""
        ids = [task_ids] if isinstance(task_ids, str) else list(task_ids)
        vetted = None if webhook_url is None else vet_webhook_url(webhook_url, self._policy())
        with self.database.write() as session:
            registrations = register.register(
                session,
                ids,
                first_poll_delay_s=PollPolicy.for_provider(self.settings, provider).first_delay_s,
                provider=provider,
                metadata=dict(metadata) if isinstance(metadata, Mapping) else metadata,
                webhook_url=vetted,
                policy=self._policy(),
            )
        secret = next((item.webhook_secret for item in registrations if item.webhook_secret), None)
        endpoint_id = next(
            (item.webhook_endpoint_id for item in registrations if item.webhook_endpoint_id), None
        )
        return Registered(registrations, secret, endpoint_id)

    def submit(
        self,
        kind: str,
        model: str,
        *,
        prompt: str,
        duration: int | None = None,
        resolution: str | None = None,
        ratio: str | None = None,
        image_url: str | None = None,
        batch_size: int | None = None,
        webhook_url: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> SubmissionView:
        """Create a TensorsLab `kind` ("video" or "image") task with `model` and track it.

        The create is sent once and never retried. Every call carries an idempotency key (a
        new one unless given; it is on the result): calling again with the same key and
        arguments answers from the stored submission instead of creating a second task.
        Raises `SubmissionRefused` (TensorsLab said no), `SubmissionUnknown` (sent, no
        answer: a task may exist; check before submitting again), `InvalidInput`...
        """
        request = validate_request(
            kind,
            model,
            prompt=prompt,
            duration_s=duration,
            resolution=resolution,
            ratio=ratio,
            image_url=image_url,
            batch_size=batch_size,
        )
        view = submit.submit_configured(
            request,
            settings=self.settings,
            session_scope=self.database.write,
            metadata=dict(metadata) if isinstance(metadata, Mapping) else metadata,
            webhook_url=webhook_url,
            idempotency_key=idempotency_key or f"python-{uuid.uuid4()}",
        )
        error = submit.outcome_error(view)
        if error is not None:
            raise error
        return view

    def submissions(
        self, *, status: str | None = None, limit: int = 50
    ) -> builtins.list[SubmissionView]:
        """Submissions, newest first."""
        with self.database.read() as session:
            return submit.list_submissions(session, status=status, limit=limit)

    def get(self, task_id: str, *, provider: str = DEFAULT_PROVIDER) -> TaskView:
        with self.database.read() as session:
            return queries.get_task(session, task_id, provider=provider)

    def history(
        self, task_id: str, *, provider: str = DEFAULT_PROVIDER
    ) -> builtins.list[TransitionView]:
        """Every status change of the task, oldest first."""
        with self.database.read() as session:
            return queries.history(session, task_id, provider=provider)

    def list(
        self,
        *,
        status: TaskStatus | str | None = None,
        provider: str | None = None,
        created_since: datetime | None = None,
        updated_since: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> TaskPage:
        """One page of tasks, newest first; pass `page.next_cursor` back for the next."""
        with self.database.read() as session:
            return queries.page_tasks(
                session,
                status=TaskStatus(status) if status is not None else None,
                provider=provider,
                created_since=created_since,
                updated_since=updated_since,
                limit=limit,
                cursor=cursor,
            )

    def untrack(self, task_id: str, *, provider: str = DEFAULT_PROVIDER) -> Untracked:
        """Stop tracking: the task becomes `cancelled`; `TaskAlreadyEnded` if it had ended."""
        with self.database.write() as session:
            return untrack.untrack(session, task_id, provider=provider)

    def forget(self, task_id: str, *, provider: str = DEFAULT_PROVIDER) -> Forgotten:
        """Erase an ended task and its whole history; `TaskStillTracked` while it is live."""
        with self.database.write() as session:
            return forget.forget(session, task_id, provider=provider)

    def resume(self, provider: str = DEFAULT_PROVIDER) -> Resumed:
        """Lift a provider's pause now (`tensorslab` or `tensorslab-image`); `ProviderNotPaused`
        when it is not paused."""
        with self.database.write() as session:
            return pauses.resume(session, provider, now=database_now(session))

    # --- webhooks ----------------------------------------------------------------------

    def add_webhook(
        self,
        url: str,
        *,
        events: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
    ) -> CreatedEndpoint:
        """The URL's endpoint, for every task; `.secret` is its signing secret when this call
        made it (returned this once), None when the URL had one (`.created` False).

        `headers` are sent with every attempt; they go to a new endpoint only (an existing one
        keeps its own: `.headers_unchanged` says they differ; `update_webhook` replaces them).
        A host that does not resolve right now is accepted (`vet_webhook_url` says so, if you
        want to warn)."""
        vetted = vet_webhook_url(url, self._policy())
        with self.database.write() as session:
            return endpoints.add_endpoint(
                session, vetted, events=events, headers=headers or {}, policy=self._policy()
            )

    def webhooks(self, *, include_per_task: bool = False) -> builtins.list[EndpointView]:
        with self.database.read() as session:
            return endpoints.list_endpoints(session, include_per_task=include_per_task)

    def update_webhook(
        self,
        webhook_id: int,
        *,
        url: str | None = None,
        events: Sequence[str] | None = None,
        enabled: bool | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> EndpointView:
        """Change what is given; `headers` replaces every custom header (`{}` removes them)."""
        vetted = None if url is None else vet_webhook_url(url, self._policy())
        with self.database.write() as session:
            return endpoints.update_endpoint(
                session,
                webhook_id,
                policy=self._policy(),
                url=vetted,
                events=events,
                enabled=enabled,
                headers=headers,
            )

    def test_webhook(self, webhook_id: int) -> DeliveryView:
        """Send a signed `webhook.test` to the endpoint now; its delivery, with the attempt."""
        with guarded_session(self._policy()) as http:
            return probe.send_test_event(
                webhook_id,
                session_scope=self.database.write,
                http=http,
                timeout_s=self.settings.webhook_timeout_s,
                disable_after_s=self.settings.webhook_disable_after_s,
            )

    def remove_webhook(self, webhook_id: int) -> EndpointView:
        with self.database.write() as session:
            return endpoints.remove_endpoint(session, webhook_id)

    def rotate_webhook_secret(
        self, webhook_id: int, *, overlap_s: float = 86400
    ) -> CreatedEndpoint:
        with self.database.write() as session:
            return endpoints.rotate_secret(session, webhook_id, overlap_s=overlap_s)

    def deliveries(
        self,
        *,
        task_id: str | None = None,
        status: DeliveryStatus | str | None = None,
        limit: int = 50,
    ) -> builtins.list[DeliveryView]:
        """Webhook deliveries with their attempts, newest first."""
        with self.database.read() as session:
            return deliveries.page_deliveries(
                session, task_id=task_id, status=status, limit=limit, with_attempts=True
            ).deliveries

    def delivery(self, delivery: int | str) -> DeliveryView:
        """One delivery, by its number or its `msg_...` ID, with every attempt."""
        with self.database.read() as session:
            return deliveries.get_delivery(session, str(delivery))

    def redeliver(self, delivery: int | str, *, now: bool = False) -> DeliveryView:
        """Send a finished delivery again, with the same `webhook-id`; with `now`, make a
        pending one due now instead (`AlreadyDelivered` for a delivered one)."""
        with self.database.write() as session:
            if now:
                deliveries.send_now(session, delivery)
            else:
                deliveries.redeliver(session, delivery)
            return deliveries.get_delivery(session, delivery)
