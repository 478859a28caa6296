"""The contract a strict client reads: `Allow` on OPTIONS and 405, date-time parameters, the
task-ID rule and cursor forms in the OpenAPI document, an example on every schema, links.

The live run of schemathesis against a real `tracker api` is tests/e2e/test_contract.py.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.conftest import Configure
from tracker import db, tokens
from tracker.api import create_app
from tracker.db import migrate
from tracker.db.clock import utc_now
from tracker.tasks.ids import MAX_TASK_ID_LENGTH, refused_in_task_id, task_id_pattern
from tracker.tasks.pagination import ROW_CURSOR_PATTERN, TASK_CURSOR_PATTERN


@pytest.fixture
def app(tmp_path: Path, configure: Configure) -> FastAPI:
    # The contract does not depend on the database: SQLite only (routes: tests/api/test_routes).
    database_url = f"sqlite:///{tmp_path / 'contract.db'}"
    migrate.upgrade(database_url)
    configure(TRACKER_DATABASE_URL=database_url)
    return create_app()


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as client:
        with db.session_scope() as session:
            secret = tokens.create_token(session, "contract", now=utc_now()).secret
        client.headers["Authorization"] = f"Bearer {secret}"
        yield client


@pytest.fixture
def document(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


def _documented_methods(document: dict[str, Any], path: str) -> set[str]:
    return {method.upper() for method in document["paths"][path]}


# --- Allow ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/v1/tasks", "/v1/tasks"),
        ("/v1/tasks/20251129_9f3c2a7e", "/v1/tasks/{task_id}"),
        ("/v1/webhooks", "/v1/webhooks"),
        ("/v1/webhooks/7", "/v1/webhooks/{webhook_id}"),
        ("/v1/deliveries/12/redeliver", "/v1/deliveries/{delivery_id}/redeliver"),
        ("/healthz", "/healthz"),
    ],
)
def test_options_answers_204_with_every_documented_method_of_the_path(
    client: TestClient, document: dict[str, Any], path: str, template: str
) -> None:
    response = client.options(path, headers={"Authorization": ""})  # no token needed
    assert response.status_code == 204, response.text
    allowed = {method.strip() for method in response.headers["allow"].split(",")}
    assert allowed == _documented_methods(document, template) | {"OPTIONS"}
    assert response.content == b""


def test_a_method_the_path_does_not_take_is_405_listing_every_method(
    client: TestClient, document: dict[str, Any]
) -> None:
    response = client.put("/v1/webhooks/7", json={"url": "https://example.com/"})
    assert response.status_code == 405
    allowed = {method.strip() for method in response.headers["allow"].split(",")}
    assert allowed == _documented_methods(document, "/v1/webhooks/{webhook_id}") | {"OPTIONS"}
    error = response.json()["error"]
    assert error["code"] == "method_not_allowed"
    assert "PUT is not allowed on /v1/webhooks/7" in error["message"]


def test_an_unknown_path_is_still_404_and_a_served_request_is_untouched(
    client: TestClient,
) -> None:
    assert client.options("/v1/nothing-here").status_code == 404
    assert client.get("/v1/tasks").status_code == 200


def test_a_route_added_later_is_in_allow_too(app: FastAPI, client: TestClient) -> None:
    @app.post("/v1/tasks/{task_id}/poke")
    def poke(task_id: str) -> dict[str, str]:
        return {"task_id": task_id}

    @app.get("/v1/tasks/{task_id}/poke")
    def poked(task_id: str) -> dict[str, str]:
        return {"task_id": task_id}

    response = client.options("/v1/tasks/x/poke")
    assert response.headers["allow"] == "GET, OPTIONS, POST"
    assert client.delete("/v1/tasks/x/poke").headers["allow"] == "GET, OPTIONS, POST"


# --- date-time parameters ------------------------------------------------------------------


def test_date_time_parameters_state_their_form(document: dict[str, Any]) -> None:
    parameters = {p["name"]: p for p in document["paths"]["/v1/tasks"]["get"]["parameters"]}
    for name in ("created_since", "updated_since"):
        schema = parameters[name]["schema"]
        assert schema["type"] == "string" and schema["format"] == "date-time"
        assert "ISO 8601 with a timezone" in parameters[name]["description"]
        assert schema["examples"]


@pytest.mark.parametrize(
    "value",
    ["0.5", "1764637616", "-1", "2026-12-02", "2026-12-02T10:00:00", "2026-12-02 10:00:00Z", "now"],
)
def test_a_date_time_parameter_that_is_not_rfc3339_is_422(client: TestClient, value: str) -> None:
    response = client.get("/v1/tasks", params={"updated_since": value})
    assert response.status_code == 422, response.text
    [detail] = response.json()["error"]["details"]
    assert detail["field"] == "updated_since"
    assert "ISO 8601 with a timezone" in detail["message"]


# --- task IDs and cursors in the document --------------------------------------------------


def _task_id_schemas(document: dict[str, Any]) -> list[dict[str, Any]]:
    found = [document["components"]["schemas"]["TaskCreate"]["properties"]["task_id"]]
    for item in document["paths"].values():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "task_id":
                    found.append(parameter["schema"])
    return found


def test_every_task_id_in_the_document_states_the_servers_rule(document: dict[str, Any]) -> None:
    schemas = _task_id_schemas(document)
    assert len(schemas) >= 5  # the body, the paths and the deliveries filter
    for schema in schemas:
        assert schema["minLength"] == 1
        assert schema["maxLength"] == MAX_TASK_ID_LENGTH
        assert schema["pattern"] == task_id_pattern()
        assert "whitespace" in schema["description"]


def test_the_task_id_pattern_refuses_exactly_the_characters_the_server_refuses() -> None:
    """Every code point, judged by the published pattern (ECMA-262 semantics, as schemathesis
    and JSON Schema validators read it; and Python's) and by the server's own predicate."""
    pattern = task_id_pattern()
    ecma = jsonschema_rs.validator_for({"type": "string", "pattern": pattern})
    python = re.compile(pattern)
    disagree = []
    for code in range(sys.maxunicode + 1):
        if 0xD800 <= code <= 0xDFFF:
            continue
        text = f"a{chr(code)}b"
        allowed = not refused_in_task_id(chr(code))
        if ecma.is_valid(text) != allowed or bool(python.fullmatch(text)) != allowed:
            disagree.append(hex(code))
    assert disagree == []


@pytest.mark.parametrize("task_id", ["a b", "a\tb", "a\u200bb", "a\x00b", "a\u2028b", "x\n"])
def test_an_id_the_pattern_refuses_is_refused_by_the_server(
    client: TestClient, task_id: str
) -> None:
    ecma = jsonschema_rs.validator_for({"type": "string", "pattern": task_id_pattern()})
    assert not ecma.is_valid(task_id)
    assert client.post("/v1/tasks", json={"task_id": task_id}).status_code == 422
    assert client.get("/v1/deliveries", params={"task_id": task_id}).status_code == 422


def test_cursors_state_their_form(document: dict[str, Any]) -> None:
    tasks = {p["name"]: p for p in document["paths"]["/v1/tasks"]["get"]["parameters"]}
    deliveries = {p["name"]: p for p in document["paths"]["/v1/deliveries"]["get"]["parameters"]}
    assert tasks["cursor"]["schema"]["pattern"] == TASK_CURSOR_PATTERN
    assert deliveries["cursor"]["schema"]["pattern"] == ROW_CURSOR_PATTERN
    for name, value in (("tasks", "12_3"), ("deliveries", "12")):
        found = tasks if name == "tasks" else deliveries
        assert re.fullmatch(found["cursor"]["schema"]["pattern"], value)


# --- examples and links --------------------------------------------------------------------


def _resolved(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    # The components travel with the schema so `$ref`s resolve.
    return {**schema, "components": document["components"]}


def test_every_schema_has_an_example_that_fits_it(document: dict[str, Any]) -> None:
    for name, schema in document["components"]["schemas"].items():
        examples = schema.get("examples")
        assert examples, f"{name} has no example"
        validator = jsonschema_rs.validator_for(_resolved(document, schema))
        for example in examples:
            errors = [str(error) for error in validator.iter_errors(example)]
            assert errors == [], f"the example of {name} does not fit it: {errors}"


def test_links_lead_from_each_resource_to_the_operations_on_it(document: dict[str, Any]) -> None:
    def links(path: str, method: str, status: str) -> dict[str, Any]:
        found: dict[str, Any] = document["paths"][path][method]["responses"][status]["links"]
        return found

    operation_ids = {
        operation["operationId"]: (method, path)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }

    def targets(found: dict[str, Any]) -> set[tuple[str, str, str]]:
        return {
            (*operation_ids[link["operationId"]], expression)
            for link in found.values()
            for expression in link["parameters"].values()
        }

    created_task = targets(links("/v1/tasks", "post", "201"))
    assert ("get", "/v1/tasks/{task_id}", "$response.body#/task/task_id") in created_task
    assert ("get", "/v1/deliveries", "$response.body#/task/task_id") in created_task
    assert ("get", "/v1/tasks/{task_id}", "$response.body#/tasks/0/task/task_id") in created_task
    created_webhook = targets(links("/v1/webhooks", "post", "201"))
    assert {(m, p) for m, p, _ in created_webhook} >= {
        ("get", "/v1/webhooks/{webhook_id}"),
        ("patch", "/v1/webhooks/{webhook_id}"),
        ("delete", "/v1/webhooks/{webhook_id}"),
        ("post", "/v1/webhooks/{webhook_id}/rotate-secret"),
    }
    listed = targets(links("/v1/deliveries", "get", "200"))
    assert ("get", "/v1/deliveries/{delivery_id}", "$response.body#/deliveries/0/id") in listed
    assert (
        "post",
        "/v1/deliveries/{delivery_id}/redeliver",
        "$response.body#/deliveries/0/id",
    ) in listed


def test_a_route_added_later_gets_links_too(app: FastAPI) -> None:
    @app.post("/v1/webhooks/{webhook_id}/ping")
    def ping(webhook_id: int) -> dict[str, int]:
        return {"webhook_id": webhook_id}

    document = app.openapi()
    targets = {
        link["operationId"]
        for link in document["paths"]["/v1/webhooks"]["post"]["responses"]["201"]["links"].values()
    }
    ping_id = document["paths"]["/v1/webhooks/{webhook_id}/ping"]["post"]["operationId"]
    assert ping_id in targets


def test_optional_query_parameters_are_plain_strings_on_the_wire(document: dict[str, Any]) -> None:
    for item in document["paths"].values():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "query":
                    assert "anyOf" not in parameter["schema"], parameter


# --- what the schema refuses, the server refuses; what it accepts, the server accepts -------


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/webhooks/7", {"enabled": 0}, "enabled"),  # not false
        ("/v1/webhooks/7", {"enabled": "true"}, "enabled"),
        ("/v1/webhooks", {"url": "https://example.com/", "events": "task.failed"}, "events"),
    ],
)
def test_a_value_of_another_json_type_is_refused_not_converted(
    client: TestClient, path: str, body: dict[str, Any], field: str
) -> None:
    method = client.patch if path != "/v1/webhooks" else client.post
    response = method(path, json=body)
    assert response.status_code == 422, response.text
    assert [d["field"] for d in response.json()["error"]["details"]] == [field]


def test_an_id_twice_in_one_batch_is_registered_once_with_its_first_metadata(
    client: TestClient,
) -> None:
    batch = {"tasks": [{"task_id": "twice", "metadata": {"n": 1}}, {"task_id": "twice"}]}
    response = client.post("/v1/tasks", json=batch)
    assert response.status_code == 201, response.text
    [only] = response.json()["tasks"]
    assert only["created"] is True and only["task"]["metadata"] == {"n": 1}
    assert client.get("/v1/tasks/twice").json()["metadata"] == {"n": 1}


@pytest.mark.parametrize(
    ("metadata", "valid"),
    [
        ({"order": 1042, "tags": ["a", {"b": None}], "ok": True, "x": 1.5}, True),
        ({"k": "a\x00"}, False),
        ({"a\x00": 1}, False),
        ({"k": [[{"deep": "\x00"}]]}, False),
    ],
)
def test_the_metadata_schema_refuses_what_the_server_cannot_store(
    client: TestClient, document: dict[str, Any], metadata: dict[str, Any], valid: bool
) -> None:
    schema = document["components"]["schemas"]["TaskCreate"]
    validator = jsonschema_rs.validator_for(_resolved(document, schema))
    assert validator.is_valid({"task_id": "m", "metadata": metadata}) is valid
    response = client.post("/v1/tasks", json={"task_id": "m", "metadata": metadata})
    assert response.status_code == (201 if valid else 422), response.text
