"""Sending webhook deliveries: claim the due ones, sign and POST them, record every attempt.

Claims use the same leases as polls (`leasing.py`), so two ticks never send one delivery at the
same moment; a worker killed between claim and send leaves the delivery to fall due again when
its lease ends, with the same `webhook-id`. No transaction is open during a POST. Every attempt
is written with its outcome, and the delivery and its endpoint are updated by `retry.py`'s rules:
a batch's POSTs share a thread pool kept by the process, and what has finished is written (one
transaction per chunk) while the rest are still being sent.
A delivery whose endpoint is disabled is not sent but held (pending, no due time) until the
endpoint is enabled; one whose endpoint was removed fails without an attempt. One whose
endpoint's secret cannot be decrypted (a key missing from TRACKER_SECRET_KEY) is never sent
unsigned: it stays pending, tried again every `UNSIGNED_RETRY_S`, with `last_error` saying why.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Generator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import requests
from requests.structures import CaseInsensitiveDict
from sqlalchemy import Integer, Text, bindparam, func, insert, select, update
from sqlalchemy.orm import Session
from urllib3.exceptions import NameResolutionError

from tracker.db.clock import DatabaseClock
from tracker.db.leasing import Claim, GroupCap, lease_due_rows
from tracker.db.models import (
    DeliveryAttempt,
    TrackedTask,
    UTCDateTime,
    WebhookDelivery,
    WebhookEndpoint,
)
from tracker.errors import UnreadableSecret, one_line
from tracker.http_deadline import DeadlineExceeded, attempt_deadline
from tracker.retry_after import parse_retry_after
from tracker.states import DeliveryStatus
from tracker.webhooks.retry import AttemptResult, DeliveryDecision, decide_after_attempt
from tracker.webhooks.signing import sign_headers
from tracker.webhooks.vault import Vault, get_vault

__all__ = ["claim_due_deliveries", "send_batch"]

log = logging.getLogger(__name__)

RESPONSE_EXCERPT_BYTES = 4096
USER_AGENT = "tracker-webhooks/0.1"
CONNECT_TIMEOUT_S = 5.0
UNSIGNED_RETRY_S = 60.0  # a delivery that cannot be signed: looked at again after this
CHUNK_WAIT_S = 0.5  # while a batch's attempts run, what has finished is written this often


def claim_due_deliveries(
    session: Session,
    *,
    now: datetime,
    limit: int,
    lease_s: float,
    batch_size: int,
    endpoint_cap: int | None = None,
) -> list[Claim]:
    """Lease up to `limit` due deliveries, in claims of `batch_size`.

    With `endpoint_cap` (TRACKER_WEBHOOK_ENDPOINT_CONCURRENCY), an endpoint gets at most that many
    attempts in flight, those leased by earlier claims included, oldest due first, and each claim
    holds one endpoint's deliveries: a slow endpoint delays only its own deliveries, and ties up
    at most `endpoint_cap` attempts' worth of the webhook workers.
    """
    return lease_due_rows(
        session,
        WebhookDelivery,
        due=WebhookDelivery.next_attempt_at,
        now=now,
        limit=limit,
        lease_s=lease_s,
        batch_size=batch_size,
        group_cap=None
        if endpoint_cap is None
        else GroupCap(WebhookDelivery.endpoint_id, endpoint_cap),
    )


@dataclass(frozen=True, slots=True)
class _Job:
    delivery_id: int
    message_id: str
    payload: str
    attempt_count: int
    endpoint_id: int
    url: str
    secrets: tuple[str, ...]
    refusal: str | None  # why the endpoint can never receive it (removed), if so
    held: bool = False  # the endpoint is disabled: not sent, kept until it is enabled
    headers: tuple[tuple[str, str], ...] = ()  # the endpoint's own (`webhooks.headers`)
    unsigned: str | None = None  # why it cannot be signed (its secret is unreadable): not sent
    task_id: str | None = None  # for the logs; None for an event about no task (webhook.test)
    event_type: str = ""


@dataclass(frozen=True, slots=True)
class _Sent:
    job: _Job
    result: AttemptResult
    attempted_at: datetime
    duration_ms: float
    excerpt: str | None


SessionScope = Callable[[], Any]


def send_batch(
    claim: Claim,
    *,
    session_scope: SessionScope,
    http: requests.Session,
    timeout_s: float,
    schedule_s: Sequence[float],
    disable_after_s: float,
    concurrency: int = 1,
    now: Callable[[], datetime] | None = None,
    rng: random.Random | None = None,
) -> dict[str, int]:
    """Send the claimed deliveries that are still leased; returns outcome counts.

    Times are the database's (`now` defaults to a `DatabaseClock` read with the jobs), like the
    lease's end that the tick stamped, so a host whose clock is off neither sends past its
    lease nor schedules retries early.
    """
    rng = rng or random.Random()
    with session_scope() as session:
        clock = now or DatabaseClock.read(session)
        jobs = _load_jobs(session, claim, clock())
    now = clock
    # `timeout_s` bounds a whole attempt (connect, send, answer, body: `_post`), so an attempt
    # started before this ends before the lease does: the lease never runs out under a POST.
    deadline = claim.lease_expires_at - timedelta(seconds=timeout_s)

    def attempt(job: _Job) -> _Sent | None:
        if job.refusal is not None:
            return _Sent(job, AttemptResult(None, job.refusal), now(), 0.0, None)
        if job.held:
            return _Sent(job, AttemptResult(None), now(), 0.0, None)  # nothing is sent
        if job.unsigned is not None:
            return _Sent(job, AttemptResult(None, job.unsigned), now(), 0.0, None)  # nor this
        if now() >= deadline:
            return None  # too close to the lease's end: it falls due again
        return _post(job, http=http, timeout_s=timeout_s, at=now())

    outcomes: Counter[str] = Counter()
    record = functools.partial(
        _record,
        claim=claim,
        session_scope=session_scope,
        schedule_s=schedule_s,
        disable_after_s=disable_after_s,
        rng=rng,
        outcomes=outcomes,
    )
    if concurrency > 1 and len(jobs) > 1:
        # The attempts still running go on while those finished are written (`_as_they_finish`).
        finishing = _as_they_finish(_send_pool(concurrency), attempt, jobs)
        with contextlib.closing(finishing):  # a failed write cancels the attempts not started
            for finished in finishing:
                record(finished)
    else:
        record([attempt(job) for job in jobs])
    outcomes = +outcomes  # drop the zero counts
    if outcomes:
        log.info("webhook deliveries: %s", dict(outcomes))
    if outcomes["not_started"]:
        log.warning(
            "%d deliveries were not sent: their lease would have ended first "
            "(raise TRACKER_WEBHOOK_LEASE_S or TRACKER_WEBHOOK_CONCURRENCY)",
            outcomes["not_started"],
        )
    return dict(outcomes)


def _record(
    results: Sequence[_Sent | None],
    *,
    claim: Claim,
    session_scope: SessionScope,
    schedule_s: Sequence[float],
    disable_after_s: float,
    rng: random.Random,
    outcomes: Counter[str],
) -> None:
    """Write finished attempts in one transaction, adding to `outcomes`; None is an attempt
    not started (its lease would have ended first)."""
    outcomes["not_started"] += sum(1 for sent in results if sent is None)
    done = [sent for sent in results if sent is not None]
    if not done:
        return
    with session_scope() as session:
        # A few statements per chunk, not a few per delivery (the round trips dominated a batch;
        # see bench/webhooks.py): lock the rows still leased, write the deliveries in one
        # executemany (pipelined by psycopg) and insert the attempts in one statement; only then
        # lock their endpoints (once each, fresh: one disabled or enabled meanwhile decides a
        # held delivery's fate) and write each once. Every worker process sending to an endpoint
        # waits for that lock, so it is held for as few round trips as possible.
        leased = _still_leased(session, claim, [sent.job.delivery_id for sent in done])
        kept = [sent for sent in done if sent.job.delivery_id in leased]
        outcomes["lease_lost"] += len(done) - len(kept)
        unsigned = [sent for sent in kept if sent.job.unsigned is not None]
        outcomes["unsigned"] += len(unsigned)
        _write_unsigned(session, claim, unsigned)
        held = [sent for sent in kept if sent.job.unsigned is None and sent.job.held]
        kept = [sent for sent in kept if sent.job.unsigned is None and not sent.job.held]
        decided = [(sent, _decide(sent, schedule_s=schedule_s, rng=rng)) for sent in kept]
        recorded = [(sent, decision) for sent, decision in decided if sent.job.refusal is None]
        _write_deliveries(session, claim, decided)
        for sent, decision in recorded:
            outcomes[_label(decision)] += 1
            _log_attempt(sent, decision)
        _insert_attempts(session, [sent for sent, _ in recorded])
        endpoint_ids = {sent.job.endpoint_id for sent in [*(sent for sent, _ in recorded), *held]}
        locked = _lock_endpoints(session, endpoint_ids)
        refused, on_hold = _settle_holds(held, locked)
        outcomes["held"] += len(on_hold)
        _write_holds(session, claim, on_hold)
        refused_decided = [
            (sent, _decide(sent, schedule_s=schedule_s, rng=rng)) for sent in refused
        ]
        _write_deliveries(session, claim, refused_decided)
        outcomes["endpoint_unavailable"] += len(decided) - len(recorded) + len(refused)
        _update_endpoints(session, recorded, locked, disable_after_s)


def _as_they_finish(
    pool: ThreadPoolExecutor, attempt: Callable[[_Job], _Sent | None], jobs: Sequence[_Job]
) -> Generator[list[_Sent | None], None, None]:
    """Run `attempt` on each job in `pool`; yield the results (in the jobs' order) all at once
    if they all finish within `CHUNK_WAIT_S`, else every `CHUNK_WAIT_S` those finished since.

    Each chunk costs its own transaction, whatever its size, so a batch that finishes quickly
    is written once; a slow receiver no longer keeps the outcomes of the other attempts
    unwritten until its own ends. If the caller stops early (a write failed), the attempts not
    started are cancelled and those running are waited for: nothing of the batch is in flight
    once it returns.
    """
    order = {pool.submit(attempt, job): index for index, job in enumerate(jobs)}
    pending = set(order)
    try:
        while pending:
            finished, pending = wait(pending, timeout=CHUNK_WAIT_S)
            if finished:
                yield [future.result() for future in sorted(finished, key=order.__getitem__)]
    finally:
        for future in pending:
            future.cancel()
        wait(pending)


_send_pools: dict[tuple[int, int], ThreadPoolExecutor] = {}
_send_pools_lock = threading.Lock()


def _send_pool(concurrency: int) -> ThreadPoolExecutor:
    """This process's threads for webhook POSTs, kept between batches: starting new threads for
    each batch took about a quarter of a worker process's time (bench/webhooks.py)."""
    key = (os.getpid(), concurrency)  # a forked child makes its own: threads do not survive fork
    with _send_pools_lock:
        pool = _send_pools.get(key)
        if pool is None:
            pool = _send_pools[key] = ThreadPoolExecutor(
                max_workers=concurrency, thread_name_prefix="tracker-webhook"
            )
        return pool


def _load_jobs(session: Session, claim: Claim, at: datetime) -> list[_Job]:
    rows = session.execute(
        select(WebhookDelivery, WebhookEndpoint, TrackedTask.task_id)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        # Outer: a webhook.test delivery is about no task.
        .outerjoin(TrackedTask, TrackedTask.id == WebhookDelivery.task_pk)
        .where(
            WebhookDelivery.id.in_(claim.row_ids),
            WebhookDelivery.lease_token == claim.lease_token,
            WebhookDelivery.status == DeliveryStatus.PENDING,
        )
    ).all()
    jobs = []
    vault = get_vault()
    signing: dict[int, tuple[str, ...] | UnreadableSecret] = {}
    for delivery, endpoint, task_id in rows:
        refusal = "the endpoint was removed" if endpoint.removed_at is not None else None
        held = refusal is None and not endpoint.enabled
        secrets: tuple[str, ...] = ()
        unsigned = None
        if refusal is None and not held:
            if endpoint.id not in signing:
                signing[endpoint.id] = _signing_secrets(vault, endpoint, at)
            found = signing[endpoint.id]
            if isinstance(found, UnreadableSecret):
                unsigned = f"not sent: {found}"
            else:
                secrets = found
        jobs.append(
            _Job(
                delivery_id=delivery.id,
                message_id=delivery.message_id,
                payload=delivery.payload,
                attempt_count=delivery.attempt_count,
                endpoint_id=endpoint.id,
                url=endpoint.url,
                secrets=secrets,
                refusal=refusal,
                held=held,
                headers=tuple((endpoint.headers or {}).items()),
                unsigned=unsigned,
                task_id=task_id,
                event_type=delivery.event_type,
            )
        )
    for endpoint_id, found in signing.items():
        if isinstance(found, UnreadableSecret):
            count = sum(1 for job in jobs if job.endpoint_id == endpoint_id)
            log.warning("%s; %d of its deliveries wait, unsent", found, count)
    return jobs


def _signing_secrets(
    vault: Vault, endpoint: WebhookEndpoint, at: datetime
) -> tuple[str, ...] | UnreadableSecret:
    try:
        return tuple(
            vault.signing_secrets(
                endpoint_id=endpoint.id,
                secret=endpoint.secret,
                previous=endpoint.previous_secrets or [],
                at=at,
            )
        )
    except UnreadableSecret as error:
        return error


def _post(job: _Job, *, http: requests.Session, timeout_s: float, at: datetime) -> _Sent:
    headers: CaseInsensitiveDict[str] = CaseInsensitiveDict({"user-agent": USER_AGENT})
    # The endpoint's own headers first: the signature and framing ones always win (and adding
    # an endpoint refuses those names anyway).
    headers.update(job.headers)
    headers.update(
        sign_headers(message_id=job.message_id, body=job.payload, secrets=job.secrets, at=at)
    )
    headers["content-type"] = "application/json"
    started = time.monotonic()
    excerpt: str | None = None
    try:
        # The deadline bounds the whole attempt, the excerpt's read included: `requests`'
        # timeouts bound each socket read, and a receiver trickling its answer never trips them.
        with (
            attempt_deadline(timeout_s),
            http.post(
                job.url,
                data=job.payload.encode("utf-8"),
                headers=headers,
                timeout=(min(CONNECT_TIMEOUT_S, timeout_s), timeout_s),
                allow_redirects=False,
                stream=True,
            ) as response,
        ):
            raw = response.raw.read(RESPONSE_EXCERPT_BYTES, decode_content=True) or b""
            excerpt = raw.decode("utf-8", errors="replace")
            result = AttemptResult(
                response.status_code,
                None if response.ok else f"HTTP {response.status_code}",
                parse_retry_after(response.headers.get("Retry-After"), now=at),
            )
            if 300 <= response.status_code < 400:
                location = response.headers.get("Location", "")
                result = AttemptResult(
                    response.status_code,
                    f"HTTP {response.status_code} redirect to {location[:200]!r} (not followed)",
                )
    except DeadlineExceeded as cut:
        excerpt = None  # whatever was read before the cut is not an answer
        result = AttemptResult(None, str(cut))
    except requests.Timeout:
        result = AttemptResult(None, f"no answer within {timeout_s:g} s")
    except requests.RequestException as error:
        result = AttemptResult(None, _describe(error))
    except Exception as error:  # urllib3 protocol errors can escape requests' wrapping
        result = AttemptResult(None, _describe(error))
    duration_ms = (time.monotonic() - started) * 1000
    return _Sent(job, result, at, duration_ms, excerpt)


def _still_leased(session: Session, claim: Claim, ids: Sequence[int]) -> set[int]:
    """The ids still carrying the claim's token, locked until the transaction ends."""
    if not ids:
        return set()
    return set(
        session.scalars(
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.id.in_(ids),
                WebhookDelivery.lease_token == claim.lease_token,
            )
            .with_for_update(key_share=True)  # FOR NO KEY UPDATE: no clash with FK checks
        )
    )


def _lock_endpoints(session: Session, ids: set[int]) -> dict[int, WebhookEndpoint]:
    """The endpoints of a batch, fresh and locked (in id order) until the transaction ends.

    The lock is the one an enable's write takes: a delivery held below is committed before the
    enable releases held deliveries, or the enable came first and this sees it enabled.
    """
    if not ids:
        return {}
    return {
        endpoint.id: endpoint
        for endpoint in session.scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.id.in_(sorted(ids)))
            .order_by(WebhookEndpoint.id)
            .with_for_update(key_share=True)  # FOR NO KEY UPDATE: no clash with FK checks
            .execution_options(populate_existing=True)
        )
    }


def _settle_holds(
    sent: Sequence[_Sent], endpoints: Mapping[int, WebhookEndpoint]
) -> tuple[list[_Sent], list[tuple[_Sent, datetime | None]]]:
    """Split off the held jobs, each with its due time: None (still held) or now (enabled
    meanwhile). A held job whose endpoint was removed meanwhile becomes a refusal."""
    rest: list[_Sent] = []
    on_hold: list[tuple[_Sent, datetime | None]] = []
    for item in sent:
        endpoint = endpoints.get(item.job.endpoint_id)
        if not item.job.held:
            rest.append(item)
        elif endpoint is None or endpoint.removed_at is not None:
            refusal = "the endpoint was removed"
            job = replace(item.job, held=False, refusal=refusal)
            rest.append(replace(item, job=job, result=AttemptResult(None, refusal)))
        else:
            on_hold.append((item, item.attempted_at if endpoint.enabled else None))
    return rest, on_hold


_HOLD_DELIVERY = (
    update(WebhookDelivery)
    .where(
        WebhookDelivery.id == bindparam("b_id"),
        WebhookDelivery.lease_token == bindparam("b_token"),
    )
    .values(
        next_attempt_at=bindparam("b_next", type_=UTCDateTime()),
        lease_token=None,
        lease_expires_at=None,
        updated_at=bindparam("b_at", type_=UTCDateTime()),
    )
)


def _write_holds(
    session: Session, claim: Claim, on_hold: Sequence[tuple[_Sent, datetime | None]]
) -> None:
    """Held deliveries stay pending, unleased, with no due time (or due now, if enabled)."""
    if not on_hold:
        return
    session.connection().execute(
        _HOLD_DELIVERY,
        [
            {
                "b_id": sent.job.delivery_id,
                "b_token": claim.lease_token,
                "b_next": due,
                "b_at": sent.attempted_at,
            }
            for sent, due in on_hold
        ],
    )


_DEFER_DELIVERY = (
    update(WebhookDelivery)
    .where(
        WebhookDelivery.id == bindparam("b_id"),
        WebhookDelivery.lease_token == bindparam("b_token"),
    )
    .values(
        next_attempt_at=bindparam("b_next", type_=UTCDateTime()),
        last_error=bindparam("b_error", type_=Text()),
        lease_token=None,
        lease_expires_at=None,
        updated_at=bindparam("b_at", type_=UTCDateTime()),
    )
)


def _write_unsigned(session: Session, claim: Claim, unsigned: Sequence[_Sent]) -> None:
    """Deliveries that could not be signed stay pending, with why, and are looked at again
    later (no attempt is recorded: nothing was sent)."""
    if not unsigned:
        return
    session.connection().execute(
        _DEFER_DELIVERY,
        [
            {
                "b_id": sent.job.delivery_id,
                "b_token": claim.lease_token,
                "b_next": sent.attempted_at + timedelta(seconds=UNSIGNED_RETRY_S),
                "b_error": sent.job.unsigned,
                "b_at": sent.attempted_at,
            }
            for sent in unsigned
        ],
    )


def _decide(sent: _Sent, *, schedule_s: Sequence[float], rng: random.Random) -> DeliveryDecision:
    if sent.job.refusal is not None:
        return DeliveryDecision(DeliveryStatus.FAILED, None)
    return decide_after_attempt(
        sent.result,
        attempt_number=sent.job.attempt_count + 1,
        schedule_s=schedule_s,
        now=sent.attempted_at,
        rng=rng,
    )


def _log_attempt(sent: _Sent, decision: DeliveryDecision) -> None:
    """One line per attempt, naming the task (if it is about one); never the URL (it may hold
    a token) or what the receiver answered, only its status code."""
    job = sent.job
    answer = (
        f"HTTP {sent.result.status_code}" if sent.result.status_code is not None else "no answer"
    )
    label = _label(decision)
    # A dead delivery is an event lost, worth a warning; a failed webhook.test (about no task,
    # one attempt, its caller shown the outcome) is not.
    level = logging.WARNING if label == "dead" and job.task_id is not None else logging.INFO
    about = f"task {job.task_id}: " if job.task_id is not None else ""
    log.log(
        level,
        "%swebhook %s (delivery %d, endpoint %d, attempt %d): %s, %s",
        about,
        job.event_type,
        job.delivery_id,
        job.endpoint_id,
        job.attempt_count + 1,
        answer,
        {"retry": "will retry", "dead": "no retries left"}.get(label, label),
        extra={} if job.task_id is None else {"task_id": job.task_id},
    )


def _label(decision: DeliveryDecision) -> str:
    if decision.status is DeliveryStatus.DELIVERED:
        return "delivered"
    return "dead" if decision.status is DeliveryStatus.FAILED else "retry"


_WRITE_DELIVERY = (
    update(WebhookDelivery)
    .where(
        WebhookDelivery.id == bindparam("b_id"),
        WebhookDelivery.lease_token == bindparam("b_token"),
    )
    .values(
        status=bindparam("b_status"),
        next_attempt_at=bindparam("b_next", type_=UTCDateTime()),
        lease_token=None,
        lease_expires_at=None,
        last_status_code=bindparam("b_code", type_=Integer()),
        last_error=bindparam("b_error", type_=Text()),
        updated_at=bindparam("b_at", type_=UTCDateTime()),
        attempt_count=bindparam("b_attempts", type_=Integer()),
        # Set when delivered; otherwise an earlier delivery's time stays.
        delivered_at=func.coalesce(
            bindparam("b_delivered", type_=UTCDateTime()), WebhookDelivery.delivered_at
        ),
    )
)


def _write_deliveries(
    session: Session, claim: Claim, decided: Sequence[tuple[_Sent, DeliveryDecision]]
) -> None:
    """Each delivery's next state; the rows are locked and leased to `claim` (_still_leased)."""
    if not decided:
        return
    session.connection().execute(
        _WRITE_DELIVERY,
        [
            {
                "b_id": sent.job.delivery_id,
                "b_token": claim.lease_token,
                "b_status": decision.status.value,
                "b_next": decision.next_attempt_at,
                "b_code": sent.result.status_code,
                "b_error": sent.result.error,
                "b_at": sent.attempted_at,
                # A refusal is no attempt: the count stays.
                "b_attempts": sent.job.attempt_count + (sent.job.refusal is None),
                "b_delivered": sent.attempted_at
                if decision.status is DeliveryStatus.DELIVERED
                else None,
            }
            for sent, decision in decided
        ],
    )


def _insert_attempts(session: Session, sent: Sequence[_Sent]) -> None:
    if not sent:
        return
    session.execute(
        insert(DeliveryAttempt),
        [
            {
                "delivery_id": item.job.delivery_id,
                "attempted_at": item.attempted_at,
                "duration_ms": item.duration_ms,
                "status_code": item.result.status_code,
                "succeeded": item.result.succeeded,
                "error": item.result.error,
                "response_excerpt": item.excerpt,
            }
            for item in sent
        ],
    )


def _update_endpoints(
    session: Session,
    recorded: Sequence[tuple[_Sent, DeliveryDecision]],
    endpoints: Mapping[int, WebhookEndpoint],
    disable_after_s: float,
) -> None:
    """Apply each attempt, in order, to its endpoint (locked by `_lock_endpoints`), written once."""
    if not recorded:
        return
    for sent, decision in recorded:
        endpoint = endpoints.get(sent.job.endpoint_id)
        if endpoint is not None:
            _apply_attempt(endpoint, sent.result, decision, sent.attempted_at, disable_after_s)
    session.flush()


def _apply_attempt(
    endpoint: WebhookEndpoint,
    result: AttemptResult,
    decision: DeliveryDecision,
    at: datetime,
    disable_after_s: float,
) -> None:
    if result.succeeded:
        endpoint.failing_since = None
    else:
        endpoint.failing_since = endpoint.failing_since or at
        failing_for_s = (at - endpoint.failing_since).total_seconds()
        if decision.disable_endpoint_reason and endpoint.enabled:
            endpoint.enabled = False
            endpoint.disabled_reason = decision.disable_endpoint_reason
            log.warning("webhook endpoint %d disabled: %s", endpoint.id, endpoint.disabled_reason)
        elif failing_for_s >= disable_after_s and endpoint.enabled:
            endpoint.enabled = False
            endpoint.disabled_reason = (
                f"every attempt failed for {failing_for_s / 86400:.1f} days "
                "(TRACKER_WEBHOOK_DISABLE_AFTER_S)"
            )
            log.warning("webhook endpoint %d disabled: %s", endpoint.id, endpoint.disabled_reason)
    endpoint.updated_at = at


def _describe(error: BaseException) -> str:
    reason = getattr(error.args[0], "reason", None) if error.args else None
    if isinstance(reason, NameResolutionError):
        # "HTTPConnection(host=...): Failed to resolve 'host' (...)": keep the sentence.
        text = one_line(reason)
        return "the host does not resolve: " + text[max(text.find("Failed to resolve"), 0) :][:250]
    text = one_line(error, limit=10_000)
    if "refused address" in text.lower():
        # urllib3 quotes the refusal inside its own wrapper: "...(Caused by X('...: refused
        # address: ...'))". Keep the refusal, without the wrapper's closing quote and brackets.
        marker = text.lower().index("refused address")
        return text[marker:].rstrip("')\"")[:300]
    return text[:300]
