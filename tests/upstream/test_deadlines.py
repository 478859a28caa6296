"""A poll has a deadline for its whole attempt, whatever upstream does: real HTTP on loopback.

The simulator's `trickle_s` fault sends every answer one byte at a time, so no socket read ever
waits long enough for `requests`' read timeout; only the whole-attempt deadline
(`tracker.http_deadline`, TENSORSLAB_CONNECT_TIMEOUT_S + TENSORSLAB_READ_TIMEOUT_S) ends it.
Durations are checked against the deadline from below (it was waited for) and against 5x the
deadline from above (the attempt did end): a correctness bound, not a speed claim.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from tests.conftest import SIM_API_KEY
from tests.support import FAST_POLICY
from tracker import db
from tracker.db.clock import utc_now
from tracker.db.leasing import Claim
from tracker.db.models import TrackedTask
from tracker.tasks import polling, register
from tracker.testing.simulator import Faults, Simulator, Step, TaskScript
from tracker.upstream.base import TaskReport, Unavailable
from tracker.upstream.tensorslab import TensorsLabClient

CONNECT_S, READ_S = 0.5, 1.0
DEADLINE_S = CONNECT_S + READ_S
CUT = f"no answer within {DEADLINE_S:g} s (deadline for the complete answer)"
TRICKLE = Faults(trickle_s=0.3)  # a byte every 0.3 s: each read is answered well within 1 s


@pytest.fixture
def client(simulator: Simulator) -> Iterator[TensorsLabClient]:
    upstream = TensorsLabClient(
        base_url=simulator.base_url,
        api_key=SIM_API_KEY,
        connect_timeout_s=CONNECT_S,
        read_timeout_s=READ_S,
    )
    yield upstream
    upstream.close()


def test_a_trickled_answer_ends_at_the_deadline_as_unavailable(
    simulator: Simulator, client: TensorsLabClient
) -> None:
    simulator.add_task(TaskScript("slow", (Step(2),), faults=TRICKLE))
    simulator.add_task(TaskScript("fine", (Step(2),)))
    assert client.deadline_s == DEADLINE_S

    started = time.monotonic()
    result = client.fetch("slow")
    elapsed = time.monotonic() - started

    assert isinstance(result, Unavailable), result
    assert result.message == f"timed out: {CUT}"
    assert DEADLINE_S <= elapsed < 5 * DEADLINE_S
    assert isinstance(client.fetch("fine"), TaskReport)  # the session carries on


def test_a_trickling_upstream_is_never_polled_twice_at_once(
    database_url: str, simulator: Simulator, client: TensorsLabClient
) -> None:
    """Ticks claim with a short lease while batches run in their own threads, like workers.

    Without a whole-attempt deadline the trickled poll outlives its 4 s lease, the next tick
    claims the task again and a second poll of it starts while the first is still open.
    """
    simulator.add_task(TaskScript("slow", (Step(2),), faults=TRICKLE))
    with db.session_scope(database_url) as session:
        register.register(session, ["slow"], now=utc_now(), first_poll_delay_s=0)
    lease_s = 4.0  # twice the longest poll plus room, as the settings require
    batches: list[threading.Thread] = []
    summaries: list[polling.BatchSummary] = []

    def run(claim: Claim) -> None:
        summaries.append(
            polling.poll_batch(
                claim,
                provider=client,
                session_scope=lambda: db.session_scope(database_url),
                policy=FAST_POLICY,
                fetch_margin_s=client.deadline_s,
            )
        )

    until = time.monotonic() + 3 * lease_s
    while time.monotonic() < until:
        with db.session_scope(database_url) as session:
            claims = polling.claim_due_tasks(
                session, now=utc_now(), limit=10, lease_s=lease_s, batch_size=10
            )
        for claim in claims:
            batches.append(threading.Thread(target=run, args=(claim,), daemon=True))
            batches[-1].start()
        time.sleep(0.1)
    for batch in batches:  # the last ones end by their deadline
        batch.join(timeout=5 * DEADLINE_S)
    simulator.stop()  # without the deadline: ends the trickles still open
    for batch in batches:
        batch.join(timeout=30)

    state = simulator.task_state("slow")
    assert state["max_concurrent_queries"] == 1, state
    assert state["polls"] >= 2  # polled again after each timed-out attempt, never beside one
    assert sum(s.polled for s in summaries) == state["polls"]
    assert not any("lease_lost" in s.outcomes for s in summaries), summaries  # written in time
    with db.session_scope(database_url) as session:
        task = session.scalars(select(TrackedTask).where(TrackedTask.task_id == "slow")).one()
        assert task.last_error is not None
        assert CUT in task.last_error
