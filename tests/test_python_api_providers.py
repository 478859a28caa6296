"""`Tracker(...)` with `provider=`: image tasks beside video tasks, the same ID as two tasks."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.conftest import Configure
from tracker import Tracker
from tracker.db.clock import utc_now
from tracker.errors import InvalidInput, ProviderNotPaused, UnknownTask
from tracker.states import TaskStatus
from tracker.tasks.decide import PauseCause, ProviderPause
from tracker.tasks.pauses import pause_provider


@pytest.fixture
def tracker(database_url: str, configure: Configure) -> Tracker:
    configure(TRACKER_DATABASE_URL=database_url)
    return Tracker()


def test_provider_names_whose_task_an_id_is(tracker: Tracker) -> None:
    image = tracker.register("t-7", provider="tensorslab-image").tasks[0].task
    video = tracker.register("t-7").tasks[0].task
    assert (image.provider, video.provider) == ("tensorslab-image", "tensorslab")
    assert image.next_poll_at is not None and video.next_poll_at is not None
    assert (image.next_poll_at - image.created_at).total_seconds() == 2.0
    assert (video.next_poll_at - video.created_at).total_seconds() == 5.0

    assert tracker.untrack("t-7", provider="tensorslab-image").task.status is TaskStatus.CANCELLED
    assert tracker.get("t-7").status is TaskStatus.REGISTERED
    assert tracker.get("t-7", provider="tensorslab-image").status is TaskStatus.CANCELLED
    history = tracker.history("t-7", provider="tensorslab-image")
    assert [t.to_status for t in history] == [TaskStatus.CANCELLED]
    assert [t.provider for t in tracker.list(provider="tensorslab-image").tasks] == [
        "tensorslab-image"
    ]

    tracker.register("v-only")
    with pytest.raises(UnknownTask, match="no tracked tensorslab-image task with ID 'v-only'"):
        tracker.get("v-only", provider="tensorslab-image")
    with pytest.raises(InvalidInput, match="unknown provider 'midjourney'"):
        tracker.register("x", provider="midjourney")
    with pytest.raises(UnknownTask):
        tracker.get("x")


def test_forget_and_resume_take_the_provider(tracker: Tracker) -> None:
    tracker.register("f-1", provider="tensorslab-image")
    tracker.register("f-1")
    tracker.untrack("f-1", provider="tensorslab-image")
    forgotten = tracker.forget("f-1", provider="tensorslab-image")
    assert (forgotten.provider, forgotten.status) == ("tensorslab-image", TaskStatus.CANCELLED)
    with pytest.raises(UnknownTask):
        tracker.get("f-1", provider="tensorslab-image")
    assert tracker.get("f-1").status is TaskStatus.REGISTERED

    now = utc_now()
    with tracker.database.write() as session:
        pause_provider(
            session,
            "tensorslab-image",
            ProviderPause(now + timedelta(hours=1), "code 9000: no credits", PauseCause.NO_CREDITS),
            at=now,
        )
    with pytest.raises(ProviderNotPaused):
        tracker.resume()  # tensorslab is not paused
    resumed = tracker.resume("tensorslab-image")
    assert (resumed.provider, resumed.cause) == ("tensorslab-image", "no_credits")
