"""The Python API's side of delivery control: headers, `test_webhook`, `redeliver(now=True)`,
and an unresolvable webhook URL accepted at registration."""

from __future__ import annotations

import pytest

from tracker import Tracker
from tracker.errors import AlreadyDelivered, InvalidWebhookHeader
from tracker.settings import Settings
from tracker.testing.receiver import WebhookReceiver


def test_the_python_api_adds_headers_tests_and_redelivers_now(database_url: str) -> None:
    tracker = Tracker(
        database_url=database_url, settings=Settings(webhook_allowed_networks="127.0.0.0/8")
    )
    with WebhookReceiver() as receiver:
        created = tracker.add_webhook(receiver.url + "/hook", headers={"X-Env": "prod"})
        assert created.secret is not None
        receiver.set_secrets([created.secret])
        assert created.endpoint.header_names == ("X-Env",)
        with pytest.raises(InvalidWebhookHeader):
            tracker.update_webhook(created.endpoint.id, headers={"Host": "x"})

        view = tracker.test_webhook(created.endpoint.id)

        [message] = receiver.wait_for(1)
    assert message.verified and message.headers["x-env"] == "prod"
    assert view.status == "delivered" and [a.status_code for a in view.attempts] == [200]
    with pytest.raises(AlreadyDelivered):
        tracker.redeliver(view.message_id, now=True)
    assert tracker.redeliver(view.id).status == "pending"  # without now: sent again

    registered = tracker.register("t1", webhook_url="http://hooks.tracker-test.invalid/x")
    assert registered.webhook_secret is not None
