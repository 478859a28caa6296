"""schemathesis against the app's own OpenAPI document: generated requests to every route,
valid and not, with a real token, must get no server error and no response outside the schema.
"""

from __future__ import annotations

import atexit
import tempfile
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from tests.conftest import SIM_API_KEY
from tracker import db, tokens
from tracker.api import create_app
from tracker.db import migrate
from tracker.settings import Settings
from tracker.testing.simulator import Simulator

TOKEN_HEADER: dict[str, str] = {}


# The app serves the database of the settings it is built with, so it is built here, at import
# (schemathesis' lazy `from_fixture` fails on pytest 9), on a database of its own that the
# fixture below migrates. Every example of every operation shares it.
# POST /v1/submissions creates tasks: at the simulator, never anywhere else.
DATABASE_URL = f"sqlite:///{Path(tempfile.mkdtemp(prefix='tracker-schema-')) / 'schema.db'}"
SIMULATOR = Simulator(api_key=SIM_API_KEY).start()
schema = schemathesis.openapi.from_asgi(
    "/openapi.json",
    create_app(
        Settings(
            database_url=DATABASE_URL,
            webhook_allowed_networks="127.0.0.0/8",
            tensorslab_base_url=SIMULATOR.base_url,
            tensorslab_api_key=SIM_API_KEY,
        )
    ),
)
atexit.register(SIMULATOR.stop)


@pytest.fixture(autouse=True)
def database_and_token() -> None:
    migrate.upgrade(DATABASE_URL)
    with db.session_scope(DATABASE_URL) as session:
        secret = tokens.create_token(session, "schemathesis").secret
    TOKEN_HEADER["Authorization"] = f"Bearer {secret}"


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_no_server_error_and_every_response_fits_the_schema(case: Any) -> None:
    # /readyz answers its documented 503 once the tasks registered by other examples are
    # overdue (no beat runs here); its body must still fit the schema.
    server_error = [] if case.path == "/readyz" else [checks.not_a_server_error]
    case.call_and_validate(
        headers=TOKEN_HEADER,
        checks=[
            *server_error,
            checks.response_schema_conformance,
            checks.status_code_conformance,
            checks.content_type_conformance,
        ],
    )
