"""schemathesis against the app's own OpenAPI document: generated requests to every route,
valid and not, with a real token, must get no server error and no response outside the schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from tests.conftest import Configure
from tracker import db, tokens
from tracker.api import create_app
from tracker.db import migrate
from tracker.db.clock import utc_now
from tracker.settings import Settings

TOKEN_HEADER: dict[str, str] = {}


# The app reads the database from the settings at each request, so one app built here serves
# the database each test sets up below. (schemathesis' lazy `from_fixture` fails on pytest 9.)
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(Settings()))


@pytest.fixture(autouse=True)
def database_and_token(tmp_path: Path, configure: Configure) -> None:
    url = f"sqlite:///{tmp_path / 'schema.db'}"
    migrate.upgrade(url)
    configure(TRACKER_DATABASE_URL=url, TRACKER_WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8")
    with db.session_scope() as session:
        secret = tokens.create_token(session, "schemathesis", now=utc_now()).secret
    TOKEN_HEADER["Authorization"] = f"Bearer {secret}"


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_no_server_error_and_every_response_fits_the_schema(case: Any) -> None:
    case.call_and_validate(
        headers=TOKEN_HEADER,
        checks=[
            checks.not_a_server_error,
            checks.response_schema_conformance,
            checks.status_code_conformance,
            checks.content_type_conformance,
        ],
    )
