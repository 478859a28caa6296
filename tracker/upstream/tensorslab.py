"""TensorsLab's video tasks: `POST /v1/video/infobytaskid`, spoken exactly as its OpenAPI
contract says.

The HTTP attempt, its deadline and the envelope (`code`, `msg`, `data`) are shared with the image
endpoint (`tensorslab_api.py`); this module reads the video `data`: `task_status` 1 pending,
2 processing, 5 uploading, 3 completed, 4 failed, `url` (the videos), `message` on failure and the
`moreTaskInfo` details.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tracker.states import status_from_upstream_code
from tracker.upstream.base import ContractViolation, PollResult, TaskReport
from tracker.upstream.tensorslab_api import (
    MAX_RETRY_AFTER_S,
    StatusClient,
    excerpt,
    parse_envelope,
    string_list,
)

__all__ = [
    "MAX_RETRY_AFTER_S",
    "PROVIDER_NAME",
    "STATUS_PATH",
    "TensorsLabClient",
    "parse_response",
]

PROVIDER_NAME = "tensorslab"
STATUS_PATH = "/v1/video/infobytaskid"
DETAIL_FIELDS = ("prompt", "imageurl", "resolution", "fps", "source", "duration", "seed", "ratio")


class TensorsLabClient(StatusClient):
    """Asks TensorsLab about video tasks. Thread-compatible per instance; make one per process."""

    name = PROVIDER_NAME
    status_path = STATUS_PATH

    def request_body(self, task_id: str) -> dict[str, Any]:
        return {"taskid": task_id, "moreTaskInfo": True}

    def parse_response(
        self, task_id: str, *, status_code: int, headers: Mapping[str, str], text: str
    ) -> PollResult:
        return parse_response(task_id, status_code=status_code, headers=headers, text=text)


def parse_response(
    task_id: str, *, status_code: int, headers: Mapping[str, str], text: str
) -> PollResult:
    """Turn one HTTP answer into a `PollResult`. Pure: no I/O, so every case is table-tested."""
    return parse_envelope(
        task_id, status_code=status_code, headers=headers, text=text, read_data=_task_report
    )


def _task_report(task_id: str, payload: dict[str, Any], text: str) -> PollResult:
    data: dict[str, Any] = payload["data"]
    raw_status = data.get("task_status")
    if not isinstance(raw_status, int) or isinstance(raw_status, bool):
        return ContractViolation(f"`task_status` missing or not an integer: {excerpt(text)}")
    try:
        status = status_from_upstream_code(raw_status)
    except ValueError as error:
        return ContractViolation(str(error))
    urls = string_list(data.get("url"))
    if urls is None:
        return ContractViolation(f"`url` is not a list of strings: {excerpt(text)}")
    message = data.get("message")
    if message is None:
        message = ""
    if not isinstance(message, str):
        return ContractViolation(f"`message` is not a string: {excerpt(text)}")
    details = {key: data[key] for key in DETAIL_FIELDS if data.get(key) not in (None, "")}
    return TaskReport(
        status=status,
        result_urls=tuple(urls),
        message=message,
        details=details,
        payload=payload,
    )
