"""Every error leaves the API as `{"error": {"code", "message", "details"}}` with its status.

tracker's own error types map to statuses here, in one table, so routes just call use cases and
let errors rise. Unexpected exceptions become a 500 that says nothing about the internals.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from tracker.api.schemas import ErrorResponse
from tracker.errors import (
    ConfigError,
    Conflict,
    InvalidInput,
    NotFound,
    TrackerError,
    Unavailable,
)

__all__ = [
    "ERROR_RESPONSES",
    "ApiError",
    "documented_errors",
    "error_response",
    "install_error_handlers",
]

log = logging.getLogger(__name__)

# One row per branch of the error tree (`tracker.errors`); the CLI's exit codes follow the same
# branches (`tracker.cli.output.EXIT_CODES`).
STATUS_BY_ERROR: tuple[tuple[type[TrackerError], int, str], ...] = (
    (InvalidInput, 422, "invalid_input"),
    (NotFound, 404, "not_found"),
    (Conflict, 409, "conflict"),
    (Unavailable, 503, "unavailable"),
    (ConfigError, 500, "misconfigured"),
)
RETRY_AFTER_UNAVAILABLE_S = 5  # a hint for clients: the database or broker may be back soon

CODE_BY_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    500: "internal_error",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    503: "unavailable",
}


def _described(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


# For the OpenAPI document: `responses={**ERROR_RESPONSES[401], ...}` style lookups.
ERROR_RESPONSES: dict[int, dict[str, Any]] = {
    400: _described("The body is not valid JSON or not UTF-8."),
    401: _described("No valid `Authorization: Bearer <token>` header."),
    404: _described("No such task, webhook or delivery."),
    409: _described("The current state forbids this action."),
    413: _described("The body or the batch is larger than the configured cap."),
    422: _described("A field is missing, of the wrong type, or refused; `details` says which."),
    429: _described(
        "Too many wrong bearer tokens from this address; `Retry-After` says when to try again."
    ),
    503: _described("The database or the broker does not answer; `Retry-After` says when."),
}


def documented_errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a /v1 route: `codes`, and what any /v1 route may answer: 401 and 429
    (every one checks a token) and 503 (every one uses the database)."""
    return {code: ERROR_RESPONSES[code] for code in sorted({401, 429, 503, *codes})}


class ApiError(Exception):
    """An error a route raises directly, with its status and stable code."""

    def __init__(
        self, status_code: int, message: str, *, code: str | None = None, headers: Any = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.code = code or CODE_BY_STATUS.get(status_code, "error")
        self.headers = headers


def error_response(
    status_code: int,
    code: str,
    message: str,
    *,
    details: Sequence[dict[str, str]] = (),
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": list(details)}}
    return JSONResponse(body, status_code=status_code, headers=headers)


def _field(location: Sequence[int | str]) -> str:
    parts = list(location)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    # A union body (one task or a batch) names the branch: the client never wrote it.
    parts = [part for part in parts if part not in ("TaskCreate", "TaskBatchCreate")]
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or str(location[0] if location else "body")


def _validation_details(error: RequestValidationError) -> list[dict[str, str]]:
    problems = list(error.errors())
    body = error.body
    if isinstance(body, dict):
        # Only report the branch of the union the client meant: a batch has "tasks".
        meant = "TaskBatchCreate" if "tasks" in body else "TaskCreate"
        other = "TaskCreate" if meant == "TaskBatchCreate" else "TaskBatchCreate"
        kept = [p for p in problems if other not in p.get("loc", ())]
        problems = kept or problems
    details: list[dict[str, str]] = []
    for problem in problems:
        message = str(problem.get("msg", "invalid")).removeprefix("Value error, ")
        if problem.get("type") == "dict_type":
            message = "must be a JSON object"
        detail = {"field": _field(problem.get("loc", ())), "message": message}
        if detail not in details:  # each branch of the union may say the same
            details.append(detail)
    return details


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(TrackerError)
    async def tracker_error(_: Request, error: TrackerError) -> JSONResponse:
        for kind, status_code, code in STATUS_BY_ERROR:
            if isinstance(error, kind):
                headers = None
                if status_code == 503:
                    headers = {"Retry-After": str(RETRY_AFTER_UNAVAILABLE_S)}
                return error_response(status_code, code, str(error), headers=headers)
        log.error("unmapped tracker error %s: %s", type(error).__name__, error)
        return error_response(500, "internal_error", "tracker failed to handle the request")

    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status_code, error.code, error.message, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        details = _validation_details(error)
        if any(p.get("type") == "json_invalid" for p in error.errors()):
            return error_response(400, "invalid_json", "the body is not valid JSON")
        if any(d["field"] == "body" for d in details):
            sent = request.headers.get("content-type", "none")
            return error_response(
                400,
                "invalid_json",
                "the body must be a JSON object, sent with Content-Type: application/json "
                f"(got Content-Type: {sent})",
            )
        summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:3])
        return error_response(
            422, "validation_error", f"the request is invalid: {summary}", details=details
        )

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> JSONResponse:
        code = CODE_BY_STATUS.get(error.status_code, "error")
        return error_response(
            error.status_code, code, str(error.detail), headers=getattr(error, "headers", None)
        )

    @app.exception_handler(Exception)
    async def unexpected(_: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error while handling a request")
        return error_response(500, "internal_error", "tracker failed to handle the request")
