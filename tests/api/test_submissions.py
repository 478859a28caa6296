"""`POST /v1/submissions` against the simulator: its body schema is the create table, so what
fits the schema is accepted (a whole float for an integer included) and what does not is
refused before anything is sent."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema_rs
import pytest
from fastapi.testclient import TestClient

from tests.conftest import SIM_API_KEY, Configure
from tracker import db, tokens
from tracker.api import create_app
from tracker.db import migrate
from tracker.db.clock import utc_now
from tracker.testing.simulator import Simulator
from tracker.upstream.tensorslab_create import MODELS, WHITESPACE, validate_request


@pytest.fixture
def client(tmp_path: Any, configure: Configure, simulator: Simulator) -> Iterator[TestClient]:
    url = f"sqlite:///{tmp_path / 'submissions.db'}"
    migrate.upgrade(url)
    configure(
        TRACKER_DATABASE_URL=url,
        TRACKER_WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8",
        TENSORSLAB_BASE_URL=simulator.base_url,
        TENSORSLAB_API_KEY=SIM_API_KEY,
    )
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        with db.session_scope() as session:
            secret = tokens.create_token(session, "tests", now=utc_now()).secret
        client.headers["Authorization"] = f"Bearer {secret}"
        yield client


def _body_schema(client: TestClient) -> dict[str, Any]:
    document = client.get("/openapi.json").json()
    schema = dict(document["components"]["schemas"]["SubmissionCreate"])
    schema["components"] = document["components"]  # for the metadata's $ref
    return schema


def test_the_schema_has_a_branch_per_model_and_every_option_it_lists_is_accepted(
    client: TestClient,
) -> None:
    schema = _body_schema(client)
    branches = {branch["title"]: branch for branch in schema["oneOf"]}
    assert set(branches) == set(MODELS)
    for name, branch in branches.items():
        spec = MODELS[name]
        properties = branch["properties"]
        for option, argument in (
            ("duration", "duration_s"),
            ("resolution", "resolution"),
            ("ratio", "ratio"),
        ):
            for choice in properties[option].get("anyOf", []):
                for value in choice.get("enum", []):
                    validate_request(spec.kind, name, prompt="a fox", **{argument: value})
        if spec.max_batch_size:
            validate_request(spec.kind, name, prompt="a fox", batch_size=spec.max_batch_size)
        else:
            assert properties["batch_size"] == {"type": "null"}


def test_a_whole_float_for_an_integer_fits_the_schema_and_is_created(
    client: TestClient, simulator: Simulator
) -> None:
    body = {"kind": "image", "model": "seedreamv4", "prompt": "a lighthouse", "batch_size": 8.0}
    assert jsonschema_rs.validator_for(_body_schema(client)).is_valid(body)
    response = client.post("/v1/submissions", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["request"]["batch_size"] == 8
    assert len(simulator.creates()) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "image", "model": "seedreamv4", "prompt": "a lighthouse", "batch_size": "8"},
        {"kind": "video", "model": "seedancev2", "prompt": "a fox", "duration": "5"},
        {"kind": "video", "model": "seedancev2", "prompt": "a\u0000fox"},
        {"kind": "video", "model": "seedancev2", "prompt": "   "},
        {"kind": "image", "model": "seedancev2", "prompt": "a fox"},
        {"kind": "video", "model": "seedancev2", "prompt": "a fox", "batch_size": 2},
    ],
)
def test_a_body_outside_the_schema_is_refused_and_nothing_is_sent(
    client: TestClient, simulator: Simulator, body: dict[str, Any]
) -> None:
    assert not jsonschema_rs.validator_for(_body_schema(client)).is_valid(body)
    response = client.post("/v1/submissions", json=body)
    assert response.status_code in (400, 422), response.text
    assert simulator.creates() == []


# Every character some definition calls whitespace, and two that none does.
EDGE_CHARACTERS = [*WHITESPACE, "\x11", "\u200b"]


@pytest.mark.parametrize("char", EDGE_CHARACTERS, ids=lambda char: f"U+{ord(char):04X}")
@pytest.mark.parametrize("field", ["prompt", "image_url"])
def test_schema_and_server_agree_on_whitespace_in_prompts_and_image_urls(
    client: TestClient, simulator: Simulator, char: str, field: str
) -> None:
    body: dict[str, Any] = {"kind": "video", "model": "seedancev2", "prompt": "a fox"}
    body[field] = char if field == "prompt" else f"http://images.example/{char}.png"
    fits = jsonschema_rs.validator_for(_body_schema(client)).is_valid(body)
    response = client.post("/v1/submissions", json=body)
    if fits:
        assert response.status_code == 201, response.text
    else:
        assert response.status_code == 422, response.text
        assert simulator.creates() == []
    assert fits == (char not in WHITESPACE)
