"""The submit use case against the real simulator, on SQLite and PostgreSQL: checked first,
claimed by its Idempotency-Key, sent once, its outcome stored, the task tracked as `register`
tracks one.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import SIM_API_KEY, Configure
from tracker import db
from tracker.db.migrate import upgrade
from tracker.errors import (
    IdempotencyKeyReused,
    InvalidMetadata,
    InvalidWebhookURL,
    RateLimited,
    SubmissionRefused,
    SubmissionUnknown,
)
from tracker.settings import get_settings
from tracker.tasks import queries
from tracker.tasks.submit import (
    SubmissionStatus,
    list_submissions,
    outcome_error,
    submit,
    submit_configured,
)
from tracker.testing.simulator import Simulator
from tracker.testing.simulator.creates import CreateBehaviour
from tracker.upstream.tensorslab_create import TensorsLabCreator, validate_request
from tracker.webhooks.guard import AddressPolicy

REQUEST = validate_request("video", "seedancev2", prompt="a fox", duration_s=5)


@pytest.fixture
def creator(simulator: Simulator) -> Iterator[TensorsLabCreator]:
    made = TensorsLabCreator(base_url=simulator.base_url, api_key=SIM_API_KEY, read_timeout_s=2)
    yield made
    made.close()


@pytest.fixture
def url(database_url: str) -> str:
    upgrade(database_url)
    return database_url


def _submit(url: str, creator: TensorsLabCreator, request: Any = REQUEST, **options: Any) -> Any:
    return submit(
        request,
        session_scope=lambda: db.session_scope(url),
        creator=creator,
        first_poll_delay_s=0,
        policy=AddressPolicy.from_setting("127.0.0.0/8"),
        **options,
    )


def _stored(url: str) -> list[Any]:
    with db.read_scope(url) as session:
        return list_submissions(session)


def test_a_created_task_is_tracked_with_its_metadata_and_webhook(
    url: str, creator: TensorsLabCreator, simulator: Simulator
) -> None:
    view = _submit(url, creator, metadata={"order": 7}, webhook_url="http://127.0.0.1:9/hook")
    assert view.status is SubmissionStatus.CREATED and outcome_error(view) is None
    assert view.webhook_secret is not None and view.webhook_secret.startswith("whsec_")
    with db.read_scope(url) as session:
        task = queries.get_task(session, view.task_id)
    assert dict(task.metadata) == {"order": 7}
    assert [record.task_id for record in simulator.creates()] == [view.task_id]
    [stored] = _stored(url)
    assert stored.webhook_secret is None  # never stored in the view of a listing
    assert stored.request == {
        "kind": "video",
        "model": "seedancev2",
        "prompt": "a fox",
        "duration": 5,
    }


def test_a_webhook_url_is_vetted_once_before_any_transaction_and_its_warning_returned(
    url: str, creator: TensorsLabCreator
) -> None:
    lookups: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        lookups.append(host)  # the DNS lookup must not run while the database is held
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    view = _submit(url, creator, webhook_url="http://hooks.example.test/hook", resolve=resolver)
    assert view.status is SubmissionStatus.CREATED
    assert view.webhook_warning is not None and "does not resolve right now" in view.webhook_warning
    assert lookups == ["hooks.example.test"]
    assert view.webhook_secret is not None  # the URL's endpoint was made, warning or not


def test_the_same_key_answers_from_the_store_and_another_body_is_refused(
    url: str, creator: TensorsLabCreator, simulator: Simulator
) -> None:
    first = _submit(url, creator, idempotency_key="order-7")
    again = _submit(url, creator, idempotency_key="order-7")
    other = validate_request("video", "seedancev2", prompt="a different fox")
    with pytest.raises(IdempotencyKeyReused, match="order-7"):
        _submit(url, creator, other, idempotency_key="order-7")
    assert again.replayed and (again.id, again.task_id) == (first.id, first.task_id)
    assert len(simulator.creates()) == 1
    assert len(_stored(url)) == 1


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"metadata": [1, 2]}, InvalidMetadata),
        ({"metadata": {"x": "y" * 17000}}, InvalidMetadata),
        ({"webhook_url": "http://10.1.2.3/hook"}, InvalidWebhookURL),
        ({"webhook_url": "ftp://127.0.0.1/hook"}, InvalidWebhookURL),
        ({"rate_limit": lambda wait_s: False}, RateLimited),
    ],
)
def test_refused_before_sending_sends_and_stores_nothing(
    url: str, creator: TensorsLabCreator, simulator: Simulator, options: Any, error: type
) -> None:
    with pytest.raises(error):
        _submit(url, creator, **options)
    assert simulator.creates() == [] and simulator.requests.times() == []
    assert _stored(url) == []


def test_a_refusal_is_stored_with_upstream_s_message(
    url: str, creator: TensorsLabCreator, simulator: Simulator
) -> None:
    simulator.set_create_behaviour(CreateBehaviour(refuse_code=9999, refuse_msg="prompt refused"))
    view = _submit(url, creator)
    assert view.status is SubmissionStatus.REFUSED
    assert isinstance(outcome_error(view), SubmissionRefused)
    assert "prompt refused" in str(outcome_error(view))
    with db.read_scope(url) as session:
        assert queries.list_tasks(session) == []


def test_an_unknown_outcome_keeps_what_was_sent_and_its_key_answers_the_same(
    url: str, creator: TensorsLabCreator, simulator: Simulator
) -> None:
    simulator.set_create_behaviour(CreateBehaviour(drop_after_receiving=1))
    view = _submit(url, creator, idempotency_key="k-unknown")
    again = _submit(url, creator, idempotency_key="k-unknown")  # a retry sends nothing
    assert view.status is again.status is SubmissionStatus.UNKNOWN
    assert isinstance(outcome_error(again), SubmissionUnknown)
    assert "will not resend" in str(outcome_error(view))
    assert len(simulator.creates()) == 1
    assert SIM_API_KEY not in repr(_stored(url))


def test_the_python_client_sends_an_idempotency_key_and_raises_on_a_refusal(
    url: str, simulator: Simulator
) -> None:
    from tracker import Tracker
    from tracker.settings import Settings

    tracker = Tracker(
        settings=Settings(
            database_url=url,
            TENSORSLAB_BASE_URL=simulator.base_url,
            TENSORSLAB_API_KEY=SIM_API_KEY,
        )
    )
    made = tracker.submit("image", "seedreamv4", prompt="a cat", resolution="1:1")
    assert made.idempotency_key is not None and made.idempotency_key.startswith("python-")
    assert made.task_id is not None
    assert tracker.get(made.task_id, provider="tensorslab-image").task_id == made.task_id
    again = tracker.submit(
        "image",
        "seedreamv4",
        prompt="a cat",
        resolution="1:1",
        idempotency_key=made.idempotency_key,
    )
    assert again.replayed and again.task_id == made.task_id
    assert len(simulator.creates()) == 1
    simulator.set_create_behaviour(CreateBehaviour(refuse_http_status=400))
    with pytest.raises(SubmissionRefused, match="HTTP 400"):
        tracker.submit("video", "seedancev2", prompt="a dog")
    assert [item.status for item in tracker.submissions()] == [
        SubmissionStatus.REFUSED,
        SubmissionStatus.CREATED,
    ]


def test_a_submitted_task_s_first_poll_follows_its_provider_s_schedule(
    url: str, simulator: Simulator, configure: Configure
) -> None:
    configure(
        TRACKER_DATABASE_URL=url,
        TENSORSLAB_BASE_URL=simulator.base_url,
        TENSORSLAB_API_KEY=SIM_API_KEY,
        TRACKER_POLL_FIRST_DELAY_S=30,
        TRACKER_IMAGE_POLL_FIRST_DELAY_S=2,
    )
    firsts: dict[str, float] = {}
    for request in (REQUEST, validate_request("image", "seedreamv4", prompt="a lighthouse")):
        view = submit_configured(request, settings=get_settings(), session_scope=db.session_scope)
        assert view.status is SubmissionStatus.CREATED and view.task_id is not None
        with db.read_scope(url) as session:
            task = queries.get_task(session, view.task_id, provider=request.spec.provider)
        assert task.next_poll_at is not None
        firsts[request.kind] = (task.next_poll_at - task.created_at).total_seconds()
    assert firsts == {"video": pytest.approx(30, abs=0.5), "image": pytest.approx(2, abs=0.5)}
