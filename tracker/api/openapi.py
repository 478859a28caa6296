"""The OpenAPI document: FastAPI's, finished by rules that hold for every route, present or
added later, so no route has to be listed here.

- Optional query parameters are stated as what they are on the wire, a string (or integer...)
  that may be left out, not `anyOf [..., null]`: a query string cannot carry a JSON null.
- Models keep their examples whole: FastAPI drops every null from the document, examples
  included, so an example with `"next_poll_at": null` would no longer fit its schema; the
  examples are put back from the models of `tracker.api` (`json_schema_extra`).
- Schemas no model stands for (`schemas.EXTRA_COMPONENTS`, such as the recursive
  `MetadataValue`) are added to the components.
- Enumerations get an example (their first value), so every schema has one.
- Links (`links` of each 2xx response), so a client or a stateful tester can follow what an
  operation returns: a response that holds a resource (a `...Public` schema, anywhere in the
  body) links to every operation with a parameter named after that resource's ID:
  `TaskPublic.task_id` -> `{task_id}` and `?task_id=`, `WebhookPublic.id` -> `{webhook_id}`,
  `DeliveryPublic.id` -> `{delivery_id}`.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from tracker.api.schemas import EXTRA_COMPONENTS

__all__ = ["install_openapi", "resource_pointers"]

HTTP_METHODS = ("get", "put", "post", "delete", "patch", "options", "head", "trace")
_MAX_DEPTH = 6  # pointers deeper than this are not worth following


def install_openapi(app: FastAPI) -> None:
    """Make `app.openapi()` (and `/openapi.json`) return the finished document, built once."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                openapi_version=app.openapi_version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            finish(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def finish(document: dict[str, Any]) -> None:
    """Apply every rule of the module to `document`, in place."""
    components = document.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in EXTRA_COMPONENTS.items():
        components.setdefault(name, copy.deepcopy(schema))
    for name, examples in _model_examples().items():
        if name in components:
            components[name]["examples"] = copy.deepcopy(examples)
    for schema in components.values():
        if "enum" in schema and "examples" not in schema:
            schema["examples"] = [schema["enum"][0]]
    for _path, _method, operation in _operations(document):
        for parameter in operation.get("parameters", []):
            if parameter.get("in") == "query" and not parameter.get("required"):
                parameter["schema"] = _without_null(parameter.get("schema", {}))
    _add_links(document, components)


def _model_examples() -> dict[str, list[Any]]:
    """The examples of every pydantic model defined in `tracker.api`, by model name."""
    found: dict[str, list[Any]] = {}
    pending: list[type[BaseModel]] = list(BaseModel.__subclasses__())
    while pending:
        model = pending.pop()
        pending.extend(model.__subclasses__())
        extra = model.model_config.get("json_schema_extra")
        if model.__module__.startswith("tracker.api") and isinstance(extra, dict):
            examples = extra.get("examples")
            if isinstance(examples, list):
                found[model.__name__] = examples
    return found


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document.get("paths", {}).items():
        for method in HTTP_METHODS:
            if method in item:
                yield path, method, item[method]


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    branches = schema.get("anyOf")
    if not isinstance(branches, list):
        return schema
    kept = [branch for branch in branches if branch != {"type": "null"}]
    if len(kept) != 1 or len(kept) == len(branches):
        return schema
    outer = {key: value for key, value in schema.items() if key != "anyOf"}
    if "$ref" in kept[0]:
        return {"allOf": [kept[0]], **outer}
    return {**kept[0], **outer}


# --- links ---------------------------------------------------------------------------------


def _resource_name(schema_name: str) -> str | None:
    """`WebhookPublic` -> `webhook`; None for a schema that is not a resource."""
    if not schema_name.endswith("Public") or schema_name == "Public":
        return None
    return re.sub(r"(?<!^)(?=[A-Z])", "_", schema_name.removesuffix("Public")).lower()


def resource_pointers(
    schema: dict[str, Any], components: dict[str, Any], pointer: str = "", depth: int = 0
) -> Iterator[tuple[str, str]]:
    """(resource, JSON pointer to its ID) for each resource a response body may hold."""
    if depth > _MAX_DEPTH:
        return
    reference = schema.get("$ref")
    if isinstance(reference, str):
        name = reference.rsplit("/", 1)[-1]
        target = components.get(name, {})
        resource = _resource_name(name)
        if resource is not None:
            properties = target.get("properties", {})
            for field in ("id", f"{resource}_id"):
                if field in properties:
                    yield resource, f"{pointer}/{field}"
                    break
        yield from resource_pointers(target, components, pointer, depth + 1)
        return
    for key in ("anyOf", "oneOf", "allOf"):
        for branch in schema.get(key, []):
            yield from resource_pointers(branch, components, pointer, depth + 1)
    for field, sub in schema.get("properties", {}).items():
        yield from resource_pointers(sub, components, f"{pointer}/{field}", depth + 1)
    if isinstance(schema.get("items"), dict):
        yield from resource_pointers(schema["items"], components, f"{pointer}/0", depth + 1)


def _camel(text: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", text))


def _add_links(document: dict[str, Any], components: dict[str, Any]) -> None:
    consumers: dict[str, list[tuple[str, str, str, str]]] = {}  # resource -> targets
    for path, method, operation in _operations(document):
        for parameter in operation.get("parameters", []):
            name = parameter.get("name", "")
            if parameter.get("in") in ("path", "query") and name.endswith("_id"):
                consumers.setdefault(name.removesuffix("_id"), []).append(
                    (operation["operationId"], parameter["in"], name, f"{method} {path}")
                )
    for _path, _method, operation in _operations(document):
        for status, response in operation.get("responses", {}).items():
            if not str(status).startswith("2"):
                continue
            for content in response.get("content", {}).values():
                found = list(
                    dict.fromkeys(resource_pointers(content.get("schema", {}), components))
                )
                links = response.setdefault("links", {})
                for resource, pointer in found:
                    for target_id, where, name, label in consumers.get(resource, []):
                        link_name = _camel(f"{label} {pointer}")
                        links[link_name] = {
                            "operationId": target_id,
                            "parameters": {f"{where}.{name}": f"$response.body#{pointer}"},
                            "description": f"The {resource} at `{pointer}` of this response.",
                        }
                if not links:
                    del response["links"]
