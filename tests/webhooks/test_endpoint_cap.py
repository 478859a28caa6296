"""The per-endpoint cap on attempts in flight (TRACKER_WEBHOOK_ENDPOINT_CONCURRENCY), on SQLite
and PostgreSQL: a claim leases at most cap-minus-in-flight due deliveries per endpoint, oldest
first, one endpoint per claim, and concurrent claims stay disjoint and within the cap.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timedelta

from sqlalchemy import select, update

from tracker import db
from tracker.db.clock import utc_now
from tracker.db.leasing import Claim
from tracker.db.models import TrackedTask, WebhookDelivery
from tracker.states import DeliveryStatus, TaskStatus
from tracker.tasks import register
from tracker.webhooks import endpoints, outbox, sender
from tracker.webhooks.guard import AddressPolicy

LOOPBACK = AddressPolicy.from_setting("127.0.0.0/8")
LEASE_S = 60.0


def _deliveries(url: str, per_endpoint: dict[str, int], start: datetime) -> dict[str, list[int]]:
    """Endpoints named by path, each with its count of pending deliveries; the deliveries are
    due one second apart, interleaved across endpoints, all before `start`. Returns their ids
    by endpoint, oldest first."""
    total = max(per_endpoint.values())
    with db.session_scope(url) as session:
        register.register(session, ["cap-task"], now=start, first_poll_delay_s=3600)
        task_pk = session.scalar(select(TrackedTask.id).where(TrackedTask.task_id == "cap-task"))
        assert task_pk is not None
        ids: dict[str, list[int]] = {}
        for name, count in per_endpoint.items():
            created = endpoints.add_endpoint(
                session,
                f"http://127.0.0.1:9/{name}",
                events=["task.status_changed"],
                now=start,
                policy=LOOPBACK,
            )
            ids[name] = [created.endpoint.id] * count
        for _ in range(total):
            outbox.enqueue_deliveries(
                session,
                task_pk=task_pk,
                old_status=TaskStatus.PENDING,
                new_status=TaskStatus.PROCESSING,
                at=start,
            )
        rows = session.execute(
            select(WebhookDelivery.id, WebhookDelivery.endpoint_id).order_by(WebhookDelivery.id)
        ).all()
        by_endpoint: dict[int, list[int]] = {}
        for delivery_id, endpoint_id in rows:
            by_endpoint.setdefault(endpoint_id, []).append(delivery_id)
        result = {}
        for name, count in per_endpoint.items():
            endpoint_id = ids[name][0]
            keep, extra = by_endpoint[endpoint_id][:count], by_endpoint[endpoint_id][count:]
            if extra:
                session.execute(
                    update(WebhookDelivery)
                    .where(WebhookDelivery.id.in_(extra))
                    .values(status=DeliveryStatus.DELIVERED.value, next_attempt_at=None)
                )
            result[name] = keep
        # Due one second apart, oldest first, endpoints interleaved.
        for index in range(total):
            for offset, name in enumerate(per_endpoint):
                if index < len(result[name]):
                    at = start - timedelta(seconds=1000 - index * 10 - offset)
                    session.execute(
                        update(WebhookDelivery)
                        .where(WebhookDelivery.id == result[name][index])
                        .values(next_attempt_at=at)
                    )
    return result


def _claim(url: str, now: datetime, cap: int | None, *, batch_size: int = 10) -> list[Claim]:
    with db.session_scope(url) as session:
        return sender.claim_due_deliveries(
            session, now=now, limit=1000, lease_s=LEASE_S, batch_size=batch_size, endpoint_cap=cap
        )


def _ids(claims: list[Claim]) -> list[int]:
    return [row_id for claim in claims for row_id in claim.row_ids]


def _finish(url: str, delivery_ids: list[int]) -> None:
    """What `send_batch` writes after a delivered attempt: final, lease released."""
    with db.session_scope(url) as session:
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(delivery_ids))
            .values(
                status=DeliveryStatus.DELIVERED.value,
                next_attempt_at=None,
                lease_token=None,
                lease_expires_at=None,
            )
        )


def test_a_claim_takes_at_most_the_cap_per_endpoint_oldest_first(database_url: str) -> None:
    now = utc_now()
    made = _deliveries(database_url, {"slow": 10, "fast": 10, "quiet": 2}, now)

    claims = _claim(database_url, now, cap=3)

    assert sorted(_ids(claims)) == sorted(made["slow"][:3] + made["fast"][:3] + made["quiet"])
    # One endpoint per claim: a slow endpoint's batch holds none of another's deliveries.
    owners = {row_id: name for name, ids in made.items() for row_id in ids}
    for claim in claims:
        assert len({owners[row_id] for row_id in claim.row_ids}) == 1, claim


def test_deliveries_in_flight_count_against_the_cap_until_done_or_their_lease_ends(
    database_url: str,
) -> None:
    now = utc_now()
    made = _deliveries(database_url, {"slow": 8, "fast": 8}, now)
    first = _ids(_claim(database_url, now, cap=3))
    assert sorted(first) == sorted(made["slow"][:3] + made["fast"][:3])

    # Everything due is over the cap while those are in flight.
    assert _claim(database_url, now + timedelta(seconds=1), cap=3) == []
    # The fast endpoint's three are done: three more of its own, none of the slow one's.
    _finish(database_url, made["fast"][:3])
    second = _ids(_claim(database_url, now + timedelta(seconds=2), cap=3))
    assert sorted(second) == sorted(made["fast"][3:6])
    # A larger cap gives the room above what is in flight, no more.
    third = _ids(_claim(database_url, now + timedelta(seconds=3), cap=5))
    assert sorted(third) == sorted(made["slow"][3:5] + made["fast"][6:8])
    # Leases that ended no longer count: those rows are due again, and take the room.
    later = now + timedelta(seconds=LEASE_S + 10)
    again = _ids(_claim(database_url, later, cap=5))
    assert Counter("slow" if row_id in made["slow"] else "fast" for row_id in again) == Counter(
        slow=5, fast=5
    )


def test_without_a_cap_every_due_delivery_is_claimed_in_batches(database_url: str) -> None:
    now = utc_now()
    made = _deliveries(database_url, {"a": 7, "b": 5}, now)

    claims = _claim(database_url, now, cap=None, batch_size=4)

    assert sorted(_ids(claims)) == sorted(made["a"] + made["b"])
    assert [len(claim.row_ids) for claim in claims] == [4, 4, 4]


def test_a_cap_larger_than_a_batch_splits_one_endpoint_into_batches(database_url: str) -> None:
    now = utc_now()
    made = _deliveries(database_url, {"a": 9}, now)

    claims = _claim(database_url, now, cap=7, batch_size=3)

    assert [claim.row_ids for claim in claims] == [
        tuple(made["a"][0:3]),
        tuple(made["a"][3:6]),
        tuple(made["a"][6:7]),
    ]


def test_concurrent_claims_are_disjoint_and_stay_within_the_cap(database_url: str) -> None:
    now = utc_now()
    made = _deliveries(database_url, {"a": 30, "b": 30, "c": 3}, now)
    cap, claimers = 4, 8
    results: list[list[int]] = [[] for _ in range(claimers)]
    errors: list[BaseException] = []
    start = threading.Barrier(claimers)

    def claim(index: int) -> None:
        try:
            start.wait()
            results[index] = _ids(_claim(database_url, now, cap=cap))
        except BaseException as error:  # reported below, with the others
            errors.append(error)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(claimers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors

    claimed = [row_id for ids in results for row_id in ids]
    assert len(claimed) == len(set(claimed)), "a delivery was claimed twice"
    owners = {row_id: name for name, ids in made.items() for row_id in ids}
    per_endpoint = Counter(owners[row_id] for row_id in claimed)
    assert all(count <= cap for count in per_endpoint.values()), per_endpoint
    # Nothing is left unclaimed that fits: every endpoint reached its cap (or ran out).
    assert per_endpoint == Counter(a=cap, b=cap, c=3)
