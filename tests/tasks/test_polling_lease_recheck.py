"""A batch re-checks its lease before each poll: a task untracked while the batch runs is never
asked about. Real simulator (slowed down), real databases, in-process."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from tests.conftest import SIM_API_KEY
from tests.support import FAST_POLICY
from tracker import db
from tracker.db.clock import utc_now
from tracker.tasks import polling, queries, register, untrack
from tracker.testing.simulator import Faults, Simulator, Step, TaskScript
from tracker.upstream.tensorslab import TensorsLabClient

TASK_IDS = [f"video-{i}" for i in range(4)]


@pytest.fixture
def client(simulator: Simulator) -> Iterator[TensorsLabClient]:
    upstream = TensorsLabClient(base_url=simulator.base_url, api_key=SIM_API_KEY)
    yield upstream
    upstream.close()


def _started(simulator: Simulator) -> list[str]:
    """The tasks whose first query the simulator has begun answering."""
    return [t for t in TASK_IDS if simulator.task_state(t)["max_concurrent_queries"] > 0]


@pytest.mark.parametrize("concurrency", [1, 2])
def test_a_task_untracked_while_its_batch_runs_is_not_polled(
    database_url: str, simulator: Simulator, client: TensorsLabClient, concurrency: int
) -> None:
    for task_id in TASK_IDS:
        simulator.add_task(TaskScript(task_id, (Step(2),)))
    # Each answer takes longer than the re-check interval: every later poll sees a fresh view.
    simulator.set_faults(Faults(latency_ms=(polling.LEASE_RECHECK_S + 0.3) * 1000))
    with db.session_scope(database_url) as session:
        register.register(session, TASK_IDS, now=utc_now(), first_poll_delay_s=0)
    with db.session_scope(database_url) as session:
        [claim] = polling.claim_due_tasks(
            session, now=utc_now(), limit=10, lease_s=60, batch_size=10
        )
    results: list[polling.BatchSummary] = []

    def run_batch() -> None:
        results.append(
            polling.poll_batch(
                claim,
                provider=client,
                session_scope=lambda: db.session_scope(database_url),
                read_scope=lambda: db.read_scope(database_url),
                policy=FAST_POLICY,
                fetch_margin_s=1,
                concurrency=concurrency,
            )
        )

    batch = threading.Thread(target=run_batch)
    batch.start()
    while not _started(simulator) and batch.is_alive():
        time.sleep(0.01)
    waiting = sorted(set(TASK_IDS) - set(_started(simulator)))
    assert waiting, "the batch asked about every task at once"
    gone = waiting[-1]
    with db.session_scope(database_url) as session:
        untrack.untrack(session, gone, now=utc_now())
    batch.join(timeout=60)
    assert not batch.is_alive()

    [summary] = results
    assert simulator.task_state(gone)["polls"] == 0, "an untracked task was asked about"
    for task_id in set(TASK_IDS) - {gone}:
        assert simulator.task_state(task_id)["polls"] == 1
    assert (summary.polled, summary.released, summary.skipped) == (3, 1, 0)
    with db.read_scope(database_url) as session:
        assert queries.get_task(session, gone).status.value == "cancelled"
        assert {t.status.value for t in queries.list_tasks(session)} == {"cancelled", "processing"}
