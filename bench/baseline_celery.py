"""The design users write first, as a throughput baseline: one self-rescheduling Celery task per ID.

Each tracked ID is one message. The task polls TensorsLab once (same URL, body and headers as
tracker's client, one kept-alive `requests.Session` per worker thread) and, unless the video is
finished, sends itself again with `apply_async(countdown=...)`: countdown 0 (the default here)
polls as fast as the worker can, which is what the throughput scenario measures. It stores
nothing: a real version would also write the status somewhere, so this baseline is generous.

Configured from the environment, read when this module is imported (the worker imports it):
`BENCH_SELFRETRY_BROKER`, `BENCH_SELFRETRY_QUEUE`, `BENCH_SELFRETRY_BASE_URL`,
`BENCH_SELFRETRY_API_KEY`, `BENCH_SELFRETRY_COUNTDOWN_S`. The worker runs as

    celery -A bench.baseline_celery worker --pool threads -c 8 -Q <queue>
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable
from typing import Any

import requests
from celery import Celery

__all__ = ["POLL_TASK", "app", "make_app", "poll", "seed"]

POLL_TASK = "bench.selfretry.poll"
STATUS_PATH = "/v1/video/infobytaskid"
FINISHED = (3, 4)  # task_status completed, failed


def make_app(broker_url: str, queue: str) -> Celery:
    celery = Celery("bench-selfretry", broker=broker_url)
    celery.conf.update(
        task_default_queue=queue,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
    )
    return celery


app = make_app(
    os.environ.get("BENCH_SELFRETRY_BROKER", "redis://127.0.0.1:6379/13"),
    os.environ.get("BENCH_SELFRETRY_QUEUE", "bench-selfretry"),
)
_base_url = os.environ.get("BENCH_SELFRETRY_BASE_URL", "http://127.0.0.1:8099").rstrip("/")
_api_key = os.environ.get("BENCH_SELFRETRY_API_KEY", "bench-key")
_countdown_s = float(os.environ.get("BENCH_SELFRETRY_COUNTDOWN_S", "0"))
_local = threading.local()


def _session() -> requests.Session:
    """This thread's kept-alive session, with the headers tracker's client sends."""
    session: requests.Session | None = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
        session.headers.update(
            {
                "Authorization": f"Bearer {_api_key}",
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": "tracker/0.1 (self-hosted task tracker)",
            }
        )
    return session


@app.task(name=POLL_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
def poll(task_id: str) -> None:
    """Poll `task_id` once; send this task again unless the video is finished."""
    status: Any = None
    try:
        response = _session().post(
            _base_url + STATUS_PATH,
            data=json.dumps({"taskid": task_id, "moreTaskInfo": True}),
            timeout=(5.0, 30.0),
            allow_redirects=False,
        )
        status = response.json().get("data", {}).get("task_status")
    except (requests.RequestException, ValueError, AttributeError):
        pass  # try again: the first design retries on anything
    if status not in FINISHED:
        poll.apply_async((task_id,), countdown=_countdown_s)


def seed(celery: Celery, task_ids: Iterable[str], queue: str) -> int:
    """Send the first message of every ID (what registering one looks like in this design)."""
    sent = 0
    with celery.producer_or_acquire() as producer:
        for task_id in task_ids:
            celery.send_task(POLL_TASK, args=(task_id,), queue=queue, producer=producer)
            sent += 1
    return sent
