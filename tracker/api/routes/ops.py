"""Operations routes, outside `/v1` and without a token: `/healthz`, `/readyz`, `/metrics`.

None of them returns stored data beyond counts, and none names a secret. `/readyz` says only
which check failed, with a fixed reason: the error itself (which names the database's user,
host and database, or the broker's address) goes to the API's log at WARNING.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from tracker import health, metrics
from tracker.api.deps import DatabaseDep, SettingsDep
from tracker.api.errors import ERROR_RESPONSES
from tracker.api.schemas import HealthPublic, PausePublic, ReadinessPublic
from tracker.db.clock import database_now
from tracker.db.engine import Database
from tracker.errors import TrackerError
from tracker.ops import overdue
from tracker.settings import Settings
from tracker.tasks import pauses

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(tags=["operations"])

# What /readyz answers for a failed check; the error itself is only logged.
UNAVAILABLE = {
    "database": "unavailable: cannot use the database (the API's log says why)",
    "broker": "unavailable: cannot reach the broker (the API's log says why)",
}


@router.get(
    "/healthz",
    summary="The API process is up",
    response_model=HealthPublic,
)
def healthz() -> HealthPublic:
    return HealthPublic(status="ok")


def _check(name: str, check: Callable[[], None]) -> str:
    try:
        check()
    except TrackerError as error:
        log.warning("readyz: the %s check failed: %s", name, error)
        return UNAVAILABLE[name]
    return "ok"


def _paused(database: Database) -> list[PausePublic]:
    """Provider pauses, for /readyz to show (a pause does not make the API unready)."""
    try:
        with database.read() as session:
            found = pauses.active_pauses(session, now=database_now(session))
    except TrackerError as error:
        log.warning("readyz: could not read provider pauses: %s", error)
        return []
    return [PausePublic.model_validate(pause) for pause in found]


def _progress(settings: Settings, database: Database) -> tuple[dict[str, str], bool]:
    """beat, workers and overdue (tracker.ops.overdue.readiness); only overdue fails."""
    try:
        with database.read() as session:
            return overdue.readiness(session, now=database_now(session), settings=settings)
    except TrackerError as error:
        log.warning("readyz: the heartbeat checks failed: %s", error)
        return {"overdue": UNAVAILABLE["database"]}, False


@router.get(
    "/readyz",
    summary="The database and the broker answer, and no task is overdue; provider pauses",
    description="`beat` and `workers` say `ok`, `none seen yet` or `gone: last seen ...`; they "
    "are reported, as are provider pauses (`paused`), but only `database`, `broker` and "
    "`overdue` (due tasks that waited more than a few ticks, with the likely cause) make the "
    "answer 503: an installation with nothing due is ready.",
    response_model=ReadinessPublic,
    responses={503: {"model": ReadinessPublic, "description": "Something does not answer."}},
)
async def readyz(settings: SettingsDep, database: DatabaseDep) -> JSONResponse:
    checks = {
        "database": await run_in_threadpool(
            _check, "database", lambda: health.check_database(database.url)
        ),
        "broker": await run_in_threadpool(
            _check, "broker", lambda: health.check_broker(settings, timeout_s=3.0)
        ),
    }
    ready = all(value == "ok" for value in checks.values())
    if checks["database"] == "ok":
        progress, moving = await run_in_threadpool(_progress, settings, database)
        checks |= progress
        ready = ready and moving
    paused = await run_in_threadpool(_paused, database) if checks["database"] == "ok" else []
    body = ReadinessPublic(status="ok" if ready else "unavailable", checks=checks, paused=paused)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if ready else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    description="Tasks by status, due tasks and the lag of the most overdue one, transitions, "
    "webhook deliveries and attempts (read from the database at scrape time), plus what "
    "workers on hosts sharing TRACKER_DATA_DIR counted: polls by outcome, upstream latency, "
    "webhook sends by outcome.",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus text format."},
        503: ERROR_RESPONSES[503],
    },
)
def prometheus_metrics(settings: SettingsDep, database: DatabaseDep) -> Response:
    with database.read() as session:
        figures = metrics.read_database_figures(session, now=database_now(session))
    body, content_type = metrics.render(figures, settings)
    return Response(content=body, media_type=content_type)
