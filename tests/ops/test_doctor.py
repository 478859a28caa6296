"""`tracker doctor` in this process, each check failing the way an operator meets it: a refused
key (never printed), a database without the schema or behind on migrations, invalid settings,
a disabled webhook endpoint, a paused provider. The real processes' side is in
tests/e2e/test_operating.py."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from tests.conftest import SIM_API_KEY, Configure
from tests.support import run_cli
from tracker import db
from tracker.db import migrate
from tracker.db.clock import utc_now
from tracker.tasks.decide import PauseCause, ProviderPause
from tracker.tasks.pauses import pause_provider
from tracker.testing.simulator import Simulator
from tracker.webhooks import endpoints
from tracker.webhooks.guard import AddressPolicy


def _checks(*args: str) -> tuple[int, dict[str, dict[str, str]]]:
    code, out, _ = run_cli("doctor", "--json", *args)
    report = json.loads(out)
    assert report["ok"] is (code == 0)
    return code, {check["name"]: check for check in report["checks"]}


def test_a_refused_key_fails_the_upstream_check_without_showing_the_key(
    cli_db: str, configure: Configure
) -> None:
    wrong = "wrong-key-0123456789"
    with Simulator(api_key=SIM_API_KEY) as simulator:
        base_url = simulator.base_url
        configure(TENSORSLAB_BASE_URL=base_url, TENSORSLAB_API_KEY=wrong)
        code, out, err = run_cli("doctor")
        configure(TENSORSLAB_API_KEY=SIM_API_KEY)
        _, accepted = _checks()

    assert code == 1
    [line] = [line for line in out.splitlines() if " upstream:" in line]
    assert line.startswith(f"FAIL  upstream: {base_url} refused the key: HTTP 401")
    assert line.endswith("→ check TENSORSLAB_API_KEY (and TENSORSLAB_AUTH_SCHEME)")
    assert wrong not in out + err
    assert accepted["upstream"]["status"] == "ok"
    assert "accepts the key" in accepted["upstream"]["detail"]


def test_an_upstream_that_does_not_answer_is_unreachable(cli_db: str, configure: Configure) -> None:
    configure(TENSORSLAB_BASE_URL="http://127.0.0.1:9", TENSORSLAB_API_KEY="k-123456")
    code, checks = _checks()
    assert code == 1
    assert checks["upstream"]["status"] == "fail"
    assert checks["upstream"]["detail"].startswith("cannot reach http://127.0.0.1:9")
    assert "TENSORSLAB_BASE_URL" in checks["upstream"]["fix"]


def test_a_database_without_the_schema_says_to_upgrade_and_skips_what_needs_it(
    configure: Configure, tmp_path: Path
) -> None:
    configure(TRACKER_DATABASE_URL=f"sqlite:///{tmp_path / 'new.db'}")
    code, checks = _checks()
    assert code == 1
    assert checks["database"]["status"] == "fail"
    assert "tracker db upgrade" in checks["database"]["detail"]
    for name in ("migrations", "beat", "workers", "overdue", "webhooks", "pauses"):
        assert checks[name]["status"] == "skip", name


def test_a_database_behind_on_migrations_says_so(configure: Configure, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    migrate.upgrade(url, "0005")
    configure(TRACKER_DATABASE_URL=url)
    code, checks = _checks()
    assert code == 1
    assert checks["migrations"]["status"] == "fail"
    assert checks["migrations"]["detail"].startswith("the database is at 0005; the latest is 0")
    assert checks["migrations"]["fix"].startswith("run `tracker db upgrade`")


def test_invalid_settings_fail_first_and_everything_else_is_skipped(configure: Configure) -> None:
    configure(TRACKER_TICK_INTERVAL_S="-1")
    code, out, _ = run_cli("doctor")
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith("FAIL  settings: invalid settings: TRACKER_TICK_INTERVAL_S")
    assert all(line.startswith("skip ") for line in lines[1:-1])
    assert lines[-1] == "1 of 11 checks failed"


def test_a_disabled_endpoint_and_a_paused_provider_are_failures_with_what_to_do(
    cli_db: str,
) -> None:
    now = utc_now()
    with db.session_scope(cli_db) as session:
        created = endpoints.add_endpoint(
            session,
            "http://127.0.0.1:9/hook",
            events=["task.completed"],
            now=now,
            policy=AddressPolicy.from_setting("127.0.0.0/8"),
        )
        endpoints.set_enabled(session, created.endpoint.id, False, now=now)
        pause = ProviderPause(
            until=now + timedelta(minutes=10),
            reason="no credits (9000)",
            cause=PauseCause.NO_CREDITS,
        )
        pause_provider(session, "tensorslab", pause, at=now)

    _, checks = _checks()

    assert checks["webhooks"]["status"] == "fail"
    assert checks["webhooks"]["detail"] == (
        f"endpoint {created.endpoint.id} http://127.0.0.1:9/hook disabled (disabled by the user)"
    )
    assert "tracker webhooks enable ID" in checks["webhooks"]["fix"]
    assert checks["pauses"]["status"] == "fail"
    assert checks["pauses"]["detail"] == (
        f"polling is paused: tensorslab (no_credits) until {pause.until:%Y-%m-%d %H:%M:%S} UTC: "
        "no credits (9000)"
    )
    assert created.secret is not None
    assert created.secret not in json.dumps(checks)


def test_the_upstream_check_asks_every_provider_s_endpoint(
    cli_db: str, configure: Configure
) -> None:
    with Simulator(api_key=SIM_API_KEY) as simulator:
        configure(TENSORSLAB_BASE_URL=simulator.base_url, TENSORSLAB_API_KEY=SIM_API_KEY)
        _, checks = _checks()
        asked = simulator.stats()["by_kind"]
    assert checks["upstream"]["status"] == "ok", checks["upstream"]
    assert checks["upstream"]["detail"].endswith(
        "(a made-up task ID got 404 from each provider: tensorslab, tensorslab-image)"
    )
    assert asked == {"video": 1, "image": 1}
