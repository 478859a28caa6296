"""`webhooks test`: send a signed `webhook.test` event to one endpoint now, and show the attempt.

The event goes through the same path as every webhook: a delivery row (with no task) is written
already leased to the caller, so no tick takes it, and `sender.send_batch` signs, POSTs and
records it, with the endpoint's headers, secrets and SSRF guard. It gets one attempt and no
retries: the caller sees at once how the endpoint answered (status, duration, error), and the
delivery stays listed (`tracker deliveries`) like any other. Should the caller die mid-send,
the lease ends and a worker sends it, with the same `webhook-id`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import timedelta

import requests
from sqlalchemy.orm import Session

from tracker.db.clock import database_now
from tracker.db.leasing import Claim
from tracker.db.models import WebhookDelivery, WebhookEndpoint
from tracker.errors import EndpointDisabled, UnknownEndpoint
from tracker.states import DeliveryStatus
from tracker.webhooks.deliveries import DeliveryView, get_delivery
from tracker.webhooks.events import TEST_EVENT, probe_payload_body
from tracker.webhooks.outbox import new_message_id
from tracker.webhooks.sender import send_batch
from tracker.webhooks.vault import get_vault

__all__ = ["send_test_event"]

LEASE_MARGIN_S = 10.0  # beyond two attempt deadlines: time to write the outcome

SessionScope = Callable[[], AbstractContextManager[Session]]


def send_test_event(
    endpoint_id: int,
    *,
    session_scope: SessionScope,
    http: requests.Session,
    timeout_s: float,
    disable_after_s: float,
) -> DeliveryView:
    """Send one `webhook.test` to the endpoint and return its delivery, with the attempt.

    Refused (nothing stored): an unknown or removed endpoint (`UnknownEndpoint`), a disabled
    one (`EndpointDisabled`: its deliveries are held, so would the test be), one whose secret
    no configured key decrypts (`UnreadableSecret`: nothing is sent unsigned, and a test left
    pending would go out whenever the key is back, long after anyone waited). The endpoint is
    judged by the answer as for any delivery: a 410 disables it, failures count towards
    TRACKER_WEBHOOK_DISABLE_AFTER_S.
    """
    with session_scope() as session:
        claim = _write_leased_delivery(session, endpoint_id, lease_s=2 * timeout_s)
    send_batch(
        claim,
        session_scope=session_scope,
        http=http,
        timeout_s=timeout_s,
        schedule_s=(),  # one attempt: the caller is waiting for its outcome
        disable_after_s=disable_after_s,
    )
    with session_scope() as session:
        return get_delivery(session, claim.row_ids[0])


def _write_leased_delivery(session: Session, endpoint_id: int, *, lease_s: float) -> Claim:
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or endpoint.removed_at is not None:
        raise UnknownEndpoint(f"no webhook endpoint with ID {endpoint_id}")
    if not endpoint.enabled:
        raise EndpointDisabled(
            f"webhook endpoint {endpoint_id} is disabled ({endpoint.disabled_reason}); "
            f"`tracker webhooks enable {endpoint_id}` first, then test it"
        )
    # Raises UnreadableSecret: the sender would keep the test pending and unsigned.
    get_vault().decrypt(endpoint.secret, endpoint_id=endpoint.id)
    now = database_now(session)
    lease_ends = now + timedelta(seconds=lease_s + LEASE_MARGIN_S)
    token = uuid.uuid4().hex
    row = WebhookDelivery(
        message_id=new_message_id(),
        endpoint_id=endpoint.id,
        task_pk=None,
        event_type=TEST_EVENT,
        payload=probe_payload_body(occurred_at=now, endpoint_id=endpoint.id, url=endpoint.url),
        status=DeliveryStatus.PENDING.value,
        attempt_count=0,
        # As a claim leaves a row: due again only when the lease ends.
        next_attempt_at=lease_ends,
        lease_token=token,
        lease_expires_at=lease_ends,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    return Claim(lease_token=token, row_ids=(row.id,), lease_expires_at=lease_ends)
