"""TensorsLab's image tasks: `POST /v1/images/infobytaskid` with `{"taskid": ...}`.

The HTTP attempt, its deadline and the envelope are the video endpoint's (`tensorslab_api.py`).
The `data` differs: `image_status` 1 queued, 2 processing, 3 completed, 4 failed (there is no
uploading step: an image's URLs come with `completed`), `url` a list of image URLs,
`error_message` (not `message`) on failure, and details such as `category` (the model),
`width`, `height`, `prompt` and `starttime` ("2026-01-30 12:00:00"). TensorsLab's published
clients say no more than that, so anything else (a status outside 1-4, a `url` that is not a
list of strings, an `error_message` that is not a string) is a `ContractViolation`, as for video.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tracker.states import TaskStatus
from tracker.upstream.base import ContractViolation, PollResult, TaskReport
from tracker.upstream.tensorslab_api import StatusClient, excerpt, parse_envelope, string_list

__all__ = [
    "IMAGE_STATUSES",
    "PROVIDER_NAME",
    "STATUS_PATH",
    "TensorsLabImageClient",
    "parse_image_response",
]

PROVIDER_NAME = "tensorslab-image"
STATUS_PATH = "/v1/images/infobytaskid"
# `image_status` as TensorsLab's image clients number it.
IMAGE_STATUSES: Mapping[int, TaskStatus] = {
    1: TaskStatus.PENDING,  # queued
    2: TaskStatus.PROCESSING,
    3: TaskStatus.COMPLETED,  # `url` lists the images
    4: TaskStatus.FAILED,  # `error_message` says why
}
DETAIL_FIELDS = ("category", "width", "height", "prompt", "negative", "origseed", "starttime")


class TensorsLabImageClient(StatusClient):
    """Asks TensorsLab about image tasks. Thread-compatible per instance; make one per process."""

    name = PROVIDER_NAME
    status_path = STATUS_PATH

    def request_body(self, task_id: str) -> dict[str, Any]:
        return {"taskid": task_id}

    def parse_response(
        self, task_id: str, *, status_code: int, headers: Mapping[str, str], text: str
    ) -> PollResult:
        return parse_image_response(task_id, status_code=status_code, headers=headers, text=text)


def parse_image_response(
    task_id: str, *, status_code: int, headers: Mapping[str, str], text: str
) -> PollResult:
    """Turn one HTTP answer of the image endpoint into a `PollResult`. Pure."""
    return parse_envelope(
        task_id, status_code=status_code, headers=headers, text=text, read_data=_image_report
    )


def _image_report(task_id: str, payload: dict[str, Any], text: str) -> PollResult:
    data: dict[str, Any] = payload["data"]
    raw_status = data.get("image_status")
    if not isinstance(raw_status, int) or isinstance(raw_status, bool):
        return ContractViolation(f"`image_status` missing or not an integer: {excerpt(text)}")
    status = IMAGE_STATUSES.get(raw_status)
    if status is None:
        return ContractViolation(f"image_status {raw_status!r} is not one of 1, 2, 3, 4")
    urls = string_list(data.get("url"))
    if urls is None:
        return ContractViolation(f"`url` is not a list of strings: {excerpt(text)}")
    message = data.get("error_message")
    if message is None:
        message = ""
    if not isinstance(message, str):
        return ContractViolation(f"`error_message` is not a string: {excerpt(text)}")
    details = {key: data[key] for key in DETAIL_FIELDS if data.get(key) not in (None, "")}
    return TaskReport(
        status=status,
        result_urls=tuple(urls),
        message=message,
        details=details,
        payload=payload,
    )
