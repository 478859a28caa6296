"""`/v1/providers`: lift a provider's pause early (`tracker resume`). Thin, like every route."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from tracker.api.deps import DatabaseDep
from tracker.api.errors import documented_errors
from tracker.api.schemas import ResumedPublic
from tracker.db.clock import database_now
from tracker.tasks import pauses
from tracker.upstream.names import PROVIDERS

__all__ = ["router"]

router = APIRouter(prefix="/v1/providers", tags=["providers"])


@router.post(
    "/{provider}/resume",
    summary="Lift a provider's pause now",
    description=(
        "Polling of the provider starts again at the next tick, and its tasks that the pause "
        "held back are due at once (e.g. after buying credits or fixing the API key). A "
        "provider that is not paused gives 409 and nothing changes."
    ),
    response_model=ResumedPublic,
    responses=documented_errors(409, 422),
)
def resume_provider(
    provider: Annotated[
        str,
        Path(max_length=32, examples=list(PROVIDERS), json_schema_extra={"enum": list(PROVIDERS)}),
    ],
    database: DatabaseDep,
) -> ResumedPublic:
    with database.write() as session:
        resumed = pauses.resume(session, provider, now=database_now(session))
    return ResumedPublic.model_validate(resumed)
