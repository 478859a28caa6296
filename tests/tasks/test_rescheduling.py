"""A polled batch's next due times: written so that rows due together are stored together, and
never leaving a scheduled poll behind an ended task."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select, text, update

from tests.conftest import SIM_API_KEY
from tests.support import FAST_POLICY, reschedule
from tracker import db
from tracker.db.clock import utc_now
from tracker.db.leasing import Claim
from tracker.db.models import ScheduledPoll, TrackedTask
from tracker.states import TaskStatus
from tracker.tasks import polling, register, rescheduling, untrack
from tracker.testing.simulator import Simulator, Step, TaskScript
from tracker.upstream.tensorslab import TensorsLabClient


@pytest.fixture
def client(simulator: Simulator) -> Iterator[TensorsLabClient]:
    upstream = TensorsLabClient(base_url=simulator.base_url, api_key=SIM_API_KEY)
    yield upstream
    upstream.close()


def _claim(url: str, *, batch_size: int = 50) -> list[Claim]:
    with db.session_scope(url) as session:
        return polling.claim_due_tasks(
            session, now=utc_now(), limit=1000, lease_s=60, batch_size=batch_size
        )


def _poll(url: str, claim: Claim, client: TensorsLabClient) -> polling.BatchSummary:
    return polling.poll_batch(
        claim,
        provider=client,
        session_scope=lambda: db.session_scope(url),
        policy=FAST_POLICY,
        fetch_margin_s=1,
        concurrency=4,
    )


def _pages(url: str, task_ids: list[str]) -> set[int]:
    """The heap pages that hold these tasks' scheduled polls (PostgreSQL's `ctid`)."""
    with db.session_scope(url) as session:
        ctids = session.scalars(
            select(text("scheduled_polls.ctid::text"))
            .select_from(ScheduledPoll)
            .join(TrackedTask, TrackedTask.id == ScheduledPoll.task_pk)
            .where(TrackedTask.task_id.in_(task_ids))
        ).all()
    return {int(str(ctid).strip("()").split(",")[0]) for ctid in ctids}


def test_the_scheduled_polls_a_batch_wrote_lie_together_in_the_table(
    clean_postgres_url: str, simulator: Simulator, client: TensorsLabClient
) -> None:
    """Rows registered far apart but polled in one batch are stored together afterwards, so
    the claim that finds them due again touches a few pages, not one per row."""
    url = clean_postgres_url
    everyone = [f"video-{n:04d}" for n in range(2000)]
    batch = everyone[::40]  # 50 tasks spread over the whole table
    for task_id in batch:
        simulator.add_task(TaskScript(task_id, (Step(2),)))
    with db.session_scope(url) as session:
        register.register(session, everyone, now=utc_now(), first_poll_delay_s=3600)
        reschedule(session, utc_now() - timedelta(seconds=1), *batch)
    spread = len(_pages(url, batch))

    [claim] = _claim(url)
    summary = _poll(url, claim, client)

    assert summary.polled == 50
    assert spread >= 10, f"the batch's rows were on {spread} pages before: the test sees nothing"
    assert len(_pages(url, batch)) <= 2


def test_a_scheduled_poll_left_behind_an_ended_task_is_removed_unpolled(
    database_url: str, simulator: Simulator, client: TensorsLabClient
) -> None:
    simulator.add_task(TaskScript("video-1", (Step(2),)))
    with db.session_scope(database_url) as session:
        register.register(session, ["video-1"], now=utc_now(), first_poll_delay_s=0)
    [claim] = _claim(database_url)
    with db.session_scope(database_url) as session:  # ended, its scheduled poll still there
        session.execute(update(TrackedTask).values(status=TaskStatus.CANCELLED.value))

    summary = _poll(database_url, claim, client)

    assert summary.polled == 0
    assert simulator.task_state("video-1")["polls"] == 0
    with db.session_scope(database_url) as session:
        assert session.scalars(select(ScheduledPoll)).all() == []


def test_an_untrack_that_waited_on_a_batch_leaves_no_poll_behind(
    clean_postgres_url: str, simulator: Simulator, client: TensorsLabClient
) -> None:
    """The race the delete-and-insert opens: an untrack whose delete waits on a batch's lock
    misses the row the batch inserts; the task ends all the same, and the next batch that
    claims the row removes it without asking upstream."""
    url = clean_postgres_url
    simulator.add_task(TaskScript("video-1", (Step(2),)))
    with db.session_scope(url) as session:
        register.register(session, ["video-1"], now=utc_now(), first_poll_delay_s=0)
    [claim] = _claim(url)
    [pk] = claim.row_ids
    untracked = threading.Event()

    def untrack_now() -> None:
        with db.session_scope(url) as session:
            untrack.untrack(session, "video-1", now=utc_now())
        untracked.set()

    with db.session_scope(url) as session:  # a batch's write, held open
        session.execute(
            select(ScheduledPoll).where(ScheduledPoll.task_pk == pk).with_for_update()
        ).all()
        rescheduling.reschedule(
            session, claim.lease_token, [rescheduling.NextPoll(pk, "tensorslab", utc_now())]
        )
        waiting = threading.Thread(target=untrack_now)
        waiting.start()
        time.sleep(0.5)
        assert not untracked.is_set()  # it waits on the batch's lock
    waiting.join(timeout=30)
    assert untracked.is_set()

    with db.session_scope(url) as session:
        assert session.get(TrackedTask, pk).status == TaskStatus.CANCELLED.value  # type: ignore[union-attr]
        assert len(session.scalars(select(ScheduledPoll)).all()) == 1  # the race's leftover
    [next_claim] = _claim(url)
    summary = _poll(url, next_claim, client)

    assert summary.polled == 0
    assert simulator.task_state("video-1")["polls"] == 0
    with db.session_scope(url) as session:
        assert session.scalars(select(ScheduledPoll)).all() == []
