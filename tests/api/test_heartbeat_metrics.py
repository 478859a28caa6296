"""`/metrics` says how long ago each kind of process (beat, polls, webhooks) was last seen."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient

from tests.conftest import Configure
from tracker import db
from tracker.api import create_app
from tracker.db.clock import utc_now
from tracker.ops import heartbeats


def test_heartbeat_ages_by_kind_and_none_for_a_kind_never_seen(
    database_url: str, configure: Configure
) -> None:
    configure(TRACKER_DATABASE_URL=database_url)
    now = utc_now()
    with db.session_scope(database_url) as session:
        for kind, pid, ago_s in (("beat", 1, 90), ("polls", 2, 400), ("polls", 3, 2)):
            seen = now - timedelta(seconds=ago_s)
            heartbeats.record(session, kind=kind, host="h", pid=pid, started_at=seen, now=seen)

    with TestClient(create_app()) as api:
        text = api.get("/metrics").text

    ages = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith("tracker_heartbeat_age_seconds{")
    }
    assert set(ages) == {
        'tracker_heartbeat_age_seconds{kind="beat"}',
        'tracker_heartbeat_age_seconds{kind="polls"}',
    }
    assert 90 <= ages['tracker_heartbeat_age_seconds{kind="beat"}'] < 200
    assert 2 <= ages['tracker_heartbeat_age_seconds{kind="polls"}'] < 100  # the freshest one
