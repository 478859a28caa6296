"""The JSON schema of `POST /v1/submissions`' body, made from the create table (`MODELS`).

One branch per model, with that model's kind and name as constants and exactly the options it
takes (the others may only be null), so that a strict client (or schemathesis) sees what the
server accepts: a body that fits the schema is not refused by `validate_request`. Sizes that
JSON Schema cannot bound (seedream's `WxH` by pixel count) are accepted by the server but left
out of the schema: the schema is narrower, never wider, than the server.
"""

from __future__ import annotations

from typing import Any

from tracker.upstream.tensorslab_create import (
    MAX_PROMPT_CHARS,
    MAX_URL_CHARS,
    MODELS,
    WHITESPACE,
    ModelSpec,
)
from tracker.webhooks.guard import MAX_URL_LENGTH

__all__ = ["PROMPT_PATTERN", "submission_body_schema"]

# The whitespace the server refuses, as a character class: `\s` means other characters in other
# regular-expression engines (ECMAScript's, Python's), so the schema names each one.
_WHITESPACE_CLASS = "".join(f"\\u{ord(char):04x}" for char in WHITESPACE)
# Not blank (some character that is not whitespace), no NUL (PostgreSQL cannot store one).
PROMPT_PATTERN = f"^[^\\u0000]*[^{_WHITESPACE_CLASS}\\u0000][^\\u0000]*$"
# An http(s) URL with a host (what `urlsplit(...).hostname` finds), no whitespace or NUL.
IMAGE_URL_PATTERN = (
    f"^[Hh][Tt][Tt][Pp][Ss]?://[^{_WHITESPACE_CLASS}\\u0000/?#@:\\[\\]]+"
    f"([:/?#][^{_WHITESPACE_CLASS}\\u0000\\[\\]]*)?$"
)
WEBHOOK_URL_SCHEMA: dict[str, Any] = {
    "type": "string",
    "maxLength": MAX_URL_LENGTH,
    "format": "uri",
    "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://",
}
# zimage's `W*H` (or `WxH`): each side 256 to 4096, no leading zero.
_SIDE = "(25[6-9]|2[6-9][0-9]|[3-9][0-9]{2}|[1-3][0-9]{3}|40[0-8][0-9]|409[0-6])"
ZIMAGE_SIZE_PATTERN = f"^{_SIDE}[x*]{_SIDE}$"
_NULL: dict[str, Any] = {"type": "null"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, _NULL]}


def _resolution(spec: ModelSpec) -> dict[str, Any]:
    choices: list[dict[str, Any]] = []
    if spec.resolutions:
        choices.append({"type": "string", "enum": list(spec.resolutions)})
    if spec.sizes == "zimage":
        choices.append({"type": "string", "pattern": ZIMAGE_SIZE_PATTERN})
    if not choices:
        return _NULL
    return {"anyOf": [*choices, _NULL]}


def _branch(spec: ModelSpec, metadata_schema: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "kind": {"type": "string", "const": spec.kind},
        "model": {"type": "string", "const": spec.name},
        "prompt": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_PROMPT_CHARS,
            "pattern": PROMPT_PATTERN,
        },
        "duration": _nullable({"type": "integer", "enum": list(spec.durations_s)})
        if spec.durations_s
        else _NULL,
        "resolution": _resolution(spec),
        "ratio": _nullable({"type": "string", "enum": list(spec.ratios)}) if spec.ratios else _NULL,
        "image_url": _nullable(
            {"type": "string", "maxLength": MAX_URL_CHARS, "pattern": IMAGE_URL_PATTERN}
        )
        if spec.image_url
        else _NULL,
        "batch_size": _nullable({"type": "integer", "minimum": 1, "maximum": spec.max_batch_size})
        if spec.max_batch_size
        else _NULL,
        "webhook_url": _nullable(WEBHOOK_URL_SCHEMA),
        "metadata": _nullable({"type": "object", **metadata_schema}),
    }
    return {
        "title": spec.name,
        "type": "object",
        "properties": properties,
        "required": ["kind", "model", "prompt"],
        "additionalProperties": False,
    }


def submission_body_schema(metadata_schema: dict[str, Any]) -> dict[str, Any]:
    """`{"oneOf": [...]}`, a branch per model of `MODELS` (their names set them apart)."""
    return {"oneOf": [_branch(spec, metadata_schema) for spec in MODELS.values()]}
