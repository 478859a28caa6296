"""Signing in with an API token, and out.

Wrong tokens count against the same per-address allowance as the API's bearer tokens
(`tracker.api.throttle`): after too many, 429 until the wait is over, with no lookup.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from tracker import tokens
from tracker.api.deps import auth_failures
from tracker.api.throttle import client_key
from tracker.db.engine import Database
from tracker.ui.pages import (
    PageError,
    PageRoute,
    form_of,
    local_path,
    redirect,
    render,
    replace_session,
    session_of,
)

__all__ = ["router"]

router = APIRouter(route_class=PageRoute, include_in_schema=False)


@router.get("/signin")
async def signin_page(request: Request, next: str | None = None) -> Response:
    session = await session_of(request)
    if session.token is not None:
        return redirect(request, local_path(next))
    return render(request, "signin.html", {"next": local_path(next)})


def _check(database: Database, presented: str) -> tokens.TokenView | None:
    with database.read() as session:
        token = tokens.authenticate(session, presented)
    if token is not None and tokens.needs_last_used_update(token):
        with database.write() as session:
            tokens.mark_used(session, token.id)
    return token


@router.post("/signin")
async def signin(request: Request) -> Response:
    form = await form_of(request, sign_in=True)
    target = local_path(form.get("next"))
    presented = form.get("token") or ""
    failures = auth_failures(request)
    key = client_key(request.client.host if request.client else None)
    wait_s = failures.charge(key)
    if wait_s is not None:
        raise PageError(429, f"too many wrong tokens from this address: try again in {wait_s} s")
    try:
        token = await run_in_threadpool(_check, request.app.state.database, presented)
    except BaseException:
        failures.refund(key)  # the database failed, not the person
        raise
    if token is None:
        problem = "that token is not valid, or was revoked: check it and try again"
        return render(request, "signin.html", {"next": target, "problem": problem}, status_code=401)
    failures.refund(key)
    return replace_session(
        request,
        target,
        token_id=token.id,
        reference=tokens.session_reference(presented),
        notice=f"signed in as {token.name}",
    )


@router.post("/signout")
async def signout(request: Request) -> Response:
    await form_of(request)
    return replace_session(request, "/signin", notice="signed out")
