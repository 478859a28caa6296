"""Two providers side by side: video (`tensorslab`) and image (`tensorslab-image`) tasks.

Real databases and the simulator's two endpoints; the batches are claimed and polled as ticks and
workers do. Each task is asked on its own provider's endpoint, scheduled by its own provider's
policy, and a pause one provider's answer calls for holds back that provider's tasks only.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import delete, select

from tests.conftest import SIM_API_KEY
from tests.support import FAST_POLICY, poll_until_terminal, reschedule
from tracker import db
from tracker.db.clock import utc_now
from tracker.db.models import ProviderFailureRow, ProviderPauseRow
from tracker.errors import InvalidInput, UnknownTask
from tracker.settings import Settings
from tracker.states import TaskStatus
from tracker.tasks import polling, queries, register, stats, untrack
from tracker.tasks.schedule import PollPolicy, policies_by_provider
from tracker.tasks.views import TaskView
from tracker.testing.simulator import Faults, Simulator, Step, TaskScript
from tracker.upstream import Provider
from tracker.upstream.names import IMAGE_PROVIDER, VIDEO_PROVIDER
from tracker.upstream.tensorslab import TensorsLabClient
from tracker.upstream.tensorslab_image import TensorsLabImageClient

IMAGE_URLS = ("https://cdn.example.invalid/a.png", "https://cdn.example.invalid/b.png")
VIDEO_URLS = ("https://cdn.example.invalid/v.mp4",)


@pytest.fixture
def clients(simulator: Simulator) -> Iterator[dict[str, Provider]]:
    made: dict[str, Provider] = {
        VIDEO_PROVIDER: TensorsLabClient(base_url=simulator.base_url, api_key=SIM_API_KEY),
        IMAGE_PROVIDER: TensorsLabImageClient(base_url=simulator.base_url, api_key=SIM_API_KEY),
    }
    yield made
    for client in made.values():
        client.close()


def _register(url: str, provider: str, *task_ids: str) -> None:
    with db.session_scope(url) as session:
        register.register(session, list(task_ids), first_poll_delay_s=0, provider=provider)


def _task(url: str, task_id: str, provider: str) -> TaskView:
    with db.read_scope(url) as session:
        return queries.get_task(session, task_id, provider=provider)


def _poll_once(
    url: str, clients: dict[str, Provider], policy: object = FAST_POLICY, *, now: datetime
) -> int:
    """One tick and its batches at `now`; returns how many tasks were claimed."""
    with db.session_scope(url) as session:
        claims = polling.claim_due_tasks(session, now=now, limit=100, lease_s=60, batch_size=10)
    for claim in claims:
        polling.poll_batch(
            claim,
            provider=clients,
            session_scope=lambda: db.session_scope(url),
            policy=policy,  # type: ignore[arg-type]
            fetch_margin_s=1,
        )
    return sum(len(claim.row_ids) for claim in claims)


def test_image_and_video_tasks_in_one_batch_each_reach_their_results(
    database_url: str, simulator: Simulator, clients: dict[str, Provider]
) -> None:
    simulator.add_task(
        TaskScript(
            "img-1", (Step(1, polls=1), Step(2, polls=1), Step(3)), urls=IMAGE_URLS, kind="image"
        )
    )
    simulator.add_task(TaskScript.fails("img-2", message="nsfw", kind="image"))
    simulator.add_task(TaskScript.completes("vid-1", after_polls=2, urls=VIDEO_URLS))
    _register(database_url, IMAGE_PROVIDER, "img-1", "img-2")
    _register(database_url, VIDEO_PROVIDER, "vid-1")

    poll_until_terminal(database_url, clients)

    image = _task(database_url, "img-1", IMAGE_PROVIDER)
    assert (image.status, image.result_urls) == (TaskStatus.COMPLETED, IMAGE_URLS)
    assert image.details["category"] == "seedreamv45"
    assert {"width", "height", "starttime"} <= set(image.details)
    failed = _task(database_url, "img-2", IMAGE_PROVIDER)
    assert (failed.status, failed.upstream_message) == (TaskStatus.FAILED, "nsfw")
    video = _task(database_url, "vid-1", VIDEO_PROVIDER)
    assert (video.status, video.result_urls) == (TaskStatus.COMPLETED, VIDEO_URLS)
    with db.read_scope(database_url) as session:
        path = [t.to_status for t in queries.history(session, "img-1", provider=IMAGE_PROVIDER)]
    assert path == [TaskStatus.PENDING, TaskStatus.PROCESSING, TaskStatus.COMPLETED]
    # Each task was asked on its own endpoint only.
    assert simulator.task_state("img-1", kind="image")["polls"] == 3
    assert simulator.task_state("vid-1")["polls"] == 3
    assert simulator.stats()["by_outcome"].get("not_found", 0) == 0


def test_the_same_id_is_two_tasks_under_two_providers(
    database_url: str, simulator: Simulator, clients: dict[str, Provider]
) -> None:
    simulator.add_task(TaskScript.completes("shared", after_polls=0, urls=IMAGE_URLS, kind="image"))
    simulator.add_task(TaskScript.fails("shared", message="video refused", after_polls=0))
    _register(database_url, IMAGE_PROVIDER, "shared")
    _register(database_url, VIDEO_PROVIDER, "shared")

    poll_until_terminal(database_url, clients)

    assert _task(database_url, "shared", IMAGE_PROVIDER).status is TaskStatus.COMPLETED
    assert _task(database_url, "shared", VIDEO_PROVIDER).status is TaskStatus.FAILED
    _register(database_url, VIDEO_PROVIDER, "video-only")
    with (
        db.read_scope(database_url) as session,
        pytest.raises(UnknownTask, match="no tracked tensorslab-image task with ID 'video-only'"),
    ):
        queries.get_task(session, "video-only", provider=IMAGE_PROVIDER)
    with (
        db.session_scope(database_url) as session,
        pytest.raises(InvalidInput, match="unknown provider"),
    ):
        untrack.untrack(session, "shared", provider="tensorslab-audio")


def _make_due(url: str, at: datetime) -> None:
    """Every live task due at `at`, as if its next poll had come."""
    with db.session_scope(url) as session:
        reschedule(session, at)


def _paused(url: str) -> dict[str, str]:
    with db.read_scope(url) as session:
        return {row.provider: row.reason for row in session.scalars(select(ProviderPauseRow))}


def test_a_video_pause_does_not_pause_images_and_an_image_pause_does_not_pause_videos(
    database_url: str, simulator: Simulator, clients: dict[str, Provider]
) -> None:
    """9000 (no credits) at the video endpoint pauses video tasks only; a 429 with Retry-After
    at the image endpoint pauses image tasks only."""
    simulator.add_task(TaskScript("vid-p", (Step(2),)))
    simulator.add_task(TaskScript("img-p", (Step(2),), kind="image"))
    simulator.set_faults(Faults(code=9000), task_id="vid-p")
    _register(database_url, VIDEO_PROVIDER, "vid-p")
    _register(database_url, IMAGE_PROVIDER, "img-p")

    now = utc_now()
    assert _poll_once(database_url, clients, now=now) == 2
    assert list(_paused(database_url)) == [VIDEO_PROVIDER]
    assert "insufficient_credits" in _paused(database_url)[VIDEO_PROVIDER]
    _make_due(database_url, now)
    assert _poll_once(database_url, clients, now=now + timedelta(seconds=10)) == 1
    assert simulator.task_state("img-p", kind="image")["polls"] == 2
    assert simulator.task_state("vid-p")["polls"] == 1

    # The other way round: the image endpoint throttles with a Retry-After.
    simulator.set_faults(None, task_id="vid-p")
    simulator.set_faults(Faults(throttle_next=1, retry_after_s=120), task_id="img-p", kind="image")
    with db.session_scope(database_url) as session:
        session.execute(delete(ProviderPauseRow))
    _make_due(database_url, now)
    assert _poll_once(database_url, clients, now=now + timedelta(seconds=20)) == 2
    assert list(_paused(database_url)) == [IMAGE_PROVIDER]
    assert "throttled" in _paused(database_url)[IMAGE_PROVIDER]
    _make_due(database_url, now)
    assert _poll_once(database_url, clients, now=now + timedelta(seconds=30)) == 1
    assert simulator.task_state("vid-p")["polls"] == 3
    assert simulator.task_state("img-p", kind="image")["polls"] == 3
    with db.read_scope(database_url) as session:
        paused_now = queries.provider_pauses(session, now=now + timedelta(seconds=30))
    assert [pause.provider for pause in paused_now] == [IMAGE_PROVIDER]


def test_each_provider_is_scheduled_by_its_own_policy(
    database_url: str, simulator: Simulator, clients: dict[str, Provider]
) -> None:
    """With the default settings an image task is polled again within 2-5 s, a video task
    only after the 90 s quiet period."""
    policies = policies_by_provider(Settings())
    assert policies[IMAGE_PROVIDER].first_delay_s == 2.0
    assert policies[VIDEO_PROVIDER].first_delay_s == 5.0
    simulator.add_task(TaskScript("img-s", (Step(2),), kind="image"))
    simulator.add_task(TaskScript("vid-s", (Step(2),)))
    _register(database_url, IMAGE_PROVIDER, "img-s")
    _register(database_url, VIDEO_PROVIDER, "vid-s")
    # Timing is the database's: take the registration time as the start.
    start = _task(database_url, "img-s", IMAGE_PROVIDER).created_at
    assert _poll_once(database_url, clients, policies, now=start + timedelta(seconds=6)) == 2
    image = _task(database_url, "img-s", IMAGE_PROVIDER)
    video = _task(database_url, "vid-s", VIDEO_PROVIDER)
    assert image.next_poll_at is not None and image.last_polled_at is not None
    assert video.next_poll_at is not None and video.last_polled_at is not None
    image_wait_s = (image.next_poll_at - image.last_polled_at).total_seconds()
    video_due_at_age_s = (video.next_poll_at - video.created_at).total_seconds()
    assert 1.8 <= image_wait_s <= 5.0
    assert video_due_at_age_s >= 90 * 0.9


def test_stats_per_provider(
    database_url: str, simulator: Simulator, clients: dict[str, Provider]
) -> None:
    simulator.add_task(TaskScript.completes("img-a", after_polls=1, kind="image"))
    simulator.add_task(TaskScript.completes("img-b", after_polls=0, kind="image"))
    simulator.add_task(TaskScript.fails("vid-a", after_polls=3))
    _register(database_url, IMAGE_PROVIDER, "img-a", "img-b")
    _register(database_url, VIDEO_PROVIDER, "vid-a")
    poll_until_terminal(database_url, clients)

    with db.read_scope(database_url) as session:
        now = utc_now()
        images = stats.compute_stats(session, now=now, provider=IMAGE_PROVIDER)
        videos = stats.compute_stats(session, now=now, provider=VIDEO_PROVIDER)
        both = stats.compute_stats(session, now=now)
    assert (
        images.total,
        images.counts[TaskStatus.COMPLETED],
        images.counts[TaskStatus.FAILED],
    ) == (2, 2, 0)
    assert (
        videos.total,
        videos.counts[TaskStatus.COMPLETED],
        videos.counts[TaskStatus.FAILED],
    ) == (1, 0, 1)
    assert images.total_polls == 3 and videos.total_polls == 4
    assert images.polls_per_task is not None and images.polls_per_task.max == 2
    assert videos.polls_per_task is not None and videos.polls_per_task.max == 4
    assert both.total == 3 and both.total_polls == 7
    assert set(both.by_provider) == {IMAGE_PROVIDER, VIDEO_PROVIDER}
    assert both.by_provider[IMAGE_PROVIDER] == images
    assert both.by_provider[VIDEO_PROVIDER] == videos
    assert images.by_provider == {}


def test_a_policy_per_provider_must_name_every_provider_polled() -> None:
    policies = policies_by_provider(Settings())
    assert set(policies) == {VIDEO_PROVIDER, IMAGE_PROVIDER}
    video = PollPolicy.from_settings(Settings())
    assert policies[VIDEO_PROVIDER] == video
    assert policies[IMAGE_PROVIDER] == dataclasses.replace(
        video, first_delay_s=2.0, min_interval_s=2.0, max_interval_s=5.0, quiet_until_s=0.0
    )


def test_a_task_whose_provider_has_no_client_here_is_not_asked_about(
    database_url: str, simulator: Simulator, clients: dict[str, Provider]
) -> None:
    """Never through another provider's client: it is left for its lease to end."""
    simulator.add_task(TaskScript.completes("vid-n", after_polls=0))
    simulator.add_task(TaskScript.completes("img-n", after_polls=0, kind="image"))
    _register(database_url, VIDEO_PROVIDER, "vid-n")
    _register(database_url, IMAGE_PROVIDER, "img-n")
    only_video = {VIDEO_PROVIDER: clients[VIDEO_PROVIDER]}
    assert _poll_once(database_url, only_video, now=utc_now()) == 2
    assert _task(database_url, "vid-n", VIDEO_PROVIDER).status is TaskStatus.COMPLETED
    image = _task(database_url, "img-n", IMAGE_PROVIDER)
    assert (image.status, image.poll_count) == (TaskStatus.REGISTERED, 0)
    assert simulator.stats()["by_kind"] == {"video": 1, "image": 0}


def _tick(url: str, clients: dict[str, Provider], policy: PollPolicy, at: datetime) -> int:
    """One tick at `at` and its batches, their answers stamped `at` too; how many claimed."""
    with db.session_scope(url) as session:
        claims = polling.claim_due_tasks(session, now=at, limit=100, lease_s=60, batch_size=10)
    for claim in claims:
        polling.poll_batch(
            claim,
            provider=clients,
            session_scope=lambda: db.session_scope(url),
            policy=policy,
            fetch_margin_s=1,
            now=lambda: at,
        )
    return sum(len(claim.row_ids) for claim in claims)


def _failing(url: str) -> set[str]:
    with db.read_scope(url) as session:
        return set(session.scalars(select(ProviderFailureRow.provider)))


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING and "paused (" in record.getMessage()
    ]


def test_a_refused_key_at_the_video_endpoint_pauses_videos_only_with_a_probe_of_its_own(
    database_url: str,
    simulator: Simulator,
    clients: dict[str, Provider],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """401 for video tasks: videos pause (one WARNING), images are polled on; when the pause's
    time is up one video probe is claimed beside every due image task, and its answer lifts
    the video pause."""
    caplog.set_level(logging.INFO, logger="tracker.tasks.polling")
    videos = ("vid-a", "vid-b", "vid-c")
    for task_id in videos:
        simulator.add_task(TaskScript(task_id, (Step(2),)))
        simulator.set_faults(Faults(auth_status=401), task_id=task_id)
    simulator.add_task(TaskScript("img-a", (Step(2),), kind="image"))
    _register(database_url, VIDEO_PROVIDER, *videos)
    _register(database_url, IMAGE_PROVIDER, "img-a")
    policy = dataclasses.replace(FAST_POLICY, auth_pause_s=300)
    start = utc_now() + timedelta(seconds=1)

    assert _tick(database_url, clients, policy, start) == 4
    assert set(_paused(database_url)) == {VIDEO_PROVIDER}
    [warning] = _warnings(caplog)
    assert warning.startswith("polling of tensorslab paused (unauthorized)")
    assert "`tracker resume` lifts it now" in warning

    for seconds in (10, 20):
        _make_due(database_url, start)
        assert _tick(database_url, clients, policy, start + timedelta(seconds=seconds)) == 1
    assert simulator.task_state("img-a", kind="image")["polls"] == 3

    for task_id in videos:  # the key is fixed
        simulator.set_faults(None, task_id=task_id)
    _make_due(database_url, start)
    probe_at = start + timedelta(seconds=310)
    assert _tick(database_url, clients, policy, probe_at) == 2, "the image task and one probe"
    assert _paused(database_url) == {}, "the probe's answer lifted the pause"
    _make_due(database_url, start)
    assert _tick(database_url, clients, policy, probe_at + timedelta(seconds=1)) == 4
    assert len(_warnings(caplog)) == 1


def test_an_image_endpoint_that_cannot_be_reached_pauses_images_only(
    database_url: str,
    simulator: Simulator,
    clients: dict[str, Provider],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """In batches that hold both, the video answers do not end the image endpoint's run of
    failed connections: after `unreachable_after_s` of them images pause (`unreachable`),
    videos go on, and `tracker resume tensorslab-image` is the advice."""
    caplog.set_level(logging.INFO, logger="tracker.tasks.polling")
    simulator.add_task(TaskScript("vid-u", (Step(2),)))
    _register(database_url, VIDEO_PROVIDER, "vid-u")
    _register(database_url, IMAGE_PROVIDER, "img-u")
    nowhere = TensorsLabImageClient(
        base_url="http://127.0.0.1:9", api_key=SIM_API_KEY, connect_timeout_s=1
    )
    split = {VIDEO_PROVIDER: clients[VIDEO_PROVIDER], IMAGE_PROVIDER: nowhere}
    policy = dataclasses.replace(FAST_POLICY, unreachable_after_s=30, unreachable_pause_s=120)
    start = utc_now() + timedelta(seconds=1)
    try:
        assert _tick(database_url, split, policy, start) == 2
        assert _failing(database_url) == {IMAGE_PROVIDER} and _paused(database_url) == {}
        _make_due(database_url, start)
        assert _tick(database_url, split, policy, start + timedelta(seconds=40)) == 2
    finally:
        nowhere.close()
    assert list(_paused(database_url)) == [IMAGE_PROVIDER]
    assert _paused(database_url)[IMAGE_PROVIDER].startswith("unreachable for 40 s")
    [warning] = _warnings(caplog)
    assert warning.startswith("polling of tensorslab-image paused (unreachable)")
    assert "`tracker resume tensorslab-image` lifts it now" in warning

    _make_due(database_url, start)
    assert _tick(database_url, split, policy, start + timedelta(seconds=50)) == 1  # video only
    assert simulator.task_state("vid-u")["polls"] == 3

    # The endpoint is back: after the pause, one image probe reaches it and lifts the pause.
    simulator.add_task(TaskScript("img-u", (Step(2),), kind="image"))
    _make_due(database_url, start)
    assert _tick(database_url, clients, policy, start + timedelta(seconds=170)) == 2
    assert _paused(database_url) == {} and _failing(database_url) == set()
    assert simulator.task_state("img-u", kind="image")["polls"] == 1
