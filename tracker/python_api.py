"""`Tracker`: the Python API, for code that registers and queries tasks without HTTP.

    from tracker import Tracker

    tracker = Tracker()                      # the configured database (TRACKER_DATABASE_URL)
    tracker.register("20251129_9f3c2a7e", metadata={"order": 1042})
    tracker.get("20251129_9f3c2a7e").status  # TaskStatus.REGISTERED, later COMPLETED ...

Each method is one transaction calling the same use cases as the CLI and the HTTP API
(`tracker.service`, `tracker.webhooks.endpoints`), and returns their frozen views. Errors are
tracker's own types (`tracker.errors`): `UnknownTask`, `InvalidInput` and its kinds, ...
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tracker import db, service
from tracker.leasing import utc_now
from tracker.service import Registration, TaskPage, TaskView, TransitionView, Untracked
from tracker.settings import Settings, get_settings
from tracker.states import TaskStatus
from tracker.webhooks import endpoints
from tracker.webhooks.endpoints import CreatedEndpoint, DeliveryView, EndpointView

__all__ = ["Registered", "Tracker"]


@dataclass(frozen=True, slots=True)
class Registered:
    """What `Tracker.register` did: each task (new or already tracked), and a new secret."""

    tasks: list[Registration]
    webhook_secret: str | None  # the signing secret of `webhook_url`, this once; else None


class Tracker:
    """Register, query and stop tracking TensorsLab tasks; manage where webhooks go."""

    def __init__(self, *, database_url: str | None = None, settings: Settings | None = None):
        self.settings = settings or get_settings()
        self.database_url = database_url or self.settings.database_url

    def _session(self) -> Any:
        return db.session_scope(self.database_url)

    # --- tasks -------------------------------------------------------------------------

    def register(
        self,
        task_ids: str | Iterable[str],
        *,
        metadata: Mapping[str, Any] | None = None,
        webhook_url: str | None = None,
    ) -> Registered:
        """Start tracking one ID or several (all, or none if any is invalid)."""
        ids = [task_ids] if isinstance(task_ids, str) else list(task_ids)
        with self._session() as session:
            now = utc_now()
            registrations = service.register(
                session,
                ids,
                now=now,
                first_poll_delay_s=self.settings.poll_first_delay_s,
                metadata=dict(metadata) if isinstance(metadata, Mapping) else metadata,
            )
            secret = None
            if webhook_url is not None:
                secret = endpoints.add_task_webhook(
                    session,
                    [item.task.task_id for item in registrations],
                    webhook_url,
                    now=now,
                    policy=self.settings.webhook_policy,
                )
        return Registered(registrations, secret)

    def get(self, task_id: str) -> TaskView:
        with self._session() as session:
            return service.get_task(session, task_id)

    def history(self, task_id: str) -> builtins.list[TransitionView]:
        """Every status change of the task, oldest first."""
        with self._session() as session:
            return service.history(session, task_id)

    def list(
        self,
        *,
        status: TaskStatus | str | None = None,
        created_since: datetime | None = None,
        updated_since: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> TaskPage:
        """One page of tasks, newest first; pass `page.next_cursor` back for the next."""
        with self._session() as session:
            return service.page_tasks(
                session,
                status=TaskStatus(status) if status is not None else None,
                created_since=created_since,
                updated_since=updated_since,
                limit=limit,
                cursor=cursor,
            )

    def untrack(self, task_id: str) -> Untracked:
        """Stop tracking: the task becomes `cancelled` (unless it already ended)."""
        with self._session() as session:
            return service.untrack(session, task_id, now=utc_now())

    # --- webhooks ----------------------------------------------------------------------

    def add_webhook(self, url: str, *, events: Sequence[str] = ()) -> CreatedEndpoint:
        """An endpoint for every task; `.secret` is its signing secret, returned this once."""
        with self._session() as session:
            return endpoints.add_endpoint(
                session, url, events=events, now=utc_now(), policy=self.settings.webhook_policy
            )

    def webhooks(self, *, include_per_task: bool = False) -> builtins.list[EndpointView]:
        with self._session() as session:
            return endpoints.list_endpoints(session, include_per_task=include_per_task)

    def update_webhook(
        self,
        webhook_id: int,
        *,
        url: str | None = None,
        events: Sequence[str] | None = None,
        enabled: bool | None = None,
    ) -> EndpointView:
        with self._session() as session:
            return endpoints.update_endpoint(
                session,
                webhook_id,
                now=utc_now(),
                policy=self.settings.webhook_policy,
                url=url,
                events=events,
                enabled=enabled,
            )

    def remove_webhook(self, webhook_id: int) -> EndpointView:
        with self._session() as session:
            return endpoints.remove_endpoint(session, webhook_id, now=utc_now())

    def rotate_webhook_secret(
        self, webhook_id: int, *, overlap_s: float = 86400
    ) -> CreatedEndpoint:
        with self._session() as session:
            return endpoints.rotate_secret(session, webhook_id, now=utc_now(), overlap_s=overlap_s)

    def deliveries(
        self, *, task_id: str | None = None, status: str | None = None, limit: int = 50
    ) -> builtins.list[DeliveryView]:
        """Webhook deliveries with their attempts, newest first."""
        with self._session() as session:
            return endpoints.list_deliveries(
                session, task_id=task_id, status=status, limit=limit, with_attempts=True
            )

    def delivery(self, delivery: int | str) -> DeliveryView:
        """One delivery, by its number or its `msg_...` ID, with every attempt."""
        with self._session() as session:
            return endpoints.get_delivery(session, str(delivery))

    def redeliver(self, delivery: int | str) -> DeliveryView:
        """Send a delivery again, with the same `webhook-id`."""
        with self._session() as session:
            endpoints.redeliver(session, str(delivery), now=utc_now())
            return endpoints.get_delivery(session, str(delivery))
