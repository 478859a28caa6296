"""`Tracker.forget` and `Tracker.resume`: the same use cases as the CLI and the API."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tracker import Tracker, db
from tracker.db.clock import utc_now
from tracker.errors import ProviderNotPaused, TaskStillTracked, UnknownTask
from tracker.tasks.decide import PauseCause, ProviderPause
from tracker.tasks.pauses import pause_provider


def test_forget_and_resume_from_python(database_url: str) -> None:
    tracker = Tracker(database_url=database_url)
    tracker.register(["py-1"])
    with pytest.raises(TaskStillTracked):
        tracker.forget("py-1")
    tracker.untrack("py-1")
    forgotten = tracker.forget("py-1")
    assert (forgotten.erased.tasks, forgotten.erased.transitions) == (1, 1)
    with pytest.raises(UnknownTask):
        tracker.get("py-1")

    with pytest.raises(ProviderNotPaused):
        tracker.resume()
    now = utc_now()
    with db.session_scope(database_url) as session:
        pause = ProviderPause(now + timedelta(minutes=5), "HTTP 401", PauseCause.UNAUTHORIZED)
        pause_provider(session, "tensorslab", pause, at=now)
    assert tracker.resume().cause == "unauthorized"
