"""Rendering the dashboard's pages: templates, the session around each page, and errors as pages.

Every dashboard route is a `PageRoute`: whatever it raises leaves as an HTML page with the
right status (a tracker error as the API maps it, a bad form or filter 422, a forged CSRF token
403, anything unexpected 500, logged), never as the API's JSON. A GET without a session is sent
to the sign-in page; a POST without one gets 401, and nothing changes. Every page carries
headers that keep it out of caches and frames and allow only the dashboard's own script and
style.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from tracker.api.errors import STATUS_BY_ERROR
from tracker.db.engine import Database
from tracker.errors import TrackerError
from tracker.ui import formatting
from tracker.ui.session import COOKIE_NAME, Session, SessionCodec, new_nonce

__all__ = [
    "Form",
    "PageError",
    "PageRoute",
    "SignInRequired",
    "form_of",
    "local_path",
    "redirect",
    "render",
    "replace_session",
    "session_of",
    "signed_in",
    "templates",
]

log = logging.getLogger(__name__)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
formatting.install(templates.env)

# Only the dashboard's own files; media may come from the result URLs (https) only when asked.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; "
        "media-src https:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
        "base-uri 'none'; object-src 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
MAX_FORM_FIELDS = 200  # the largest form (adding an endpoint) has a dozen

TITLES = {
    400: "Bad request",
    401: "Sign in first",
    403: "Refused",
    404: "Not found",
    409: "Not now",
    422: "Not accepted",
    429: "Too many tries",
    500: "Something failed",
    503: "Unavailable",
}


UNEXPECTED = "tracker failed to handle the request; the server's log says why"


class PageError(Exception):
    """A page that says what went wrong, with its status code."""

    def __init__(self, status_code: int, message: str, *, back: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.back = back


class SignInRequired(Exception):
    """A GET without a live session: off to the sign-in page, then back here."""

    def __init__(self, why: str | None) -> None:
        super().__init__(why or "")
        self.why = why


def _codec(request: Request) -> SessionCodec:
    codec: SessionCodec = request.app.state.session_codec
    return codec


def _database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


async def session_of(request: Request) -> Session:
    """This request's session, read once (the token is looked up in the store)."""
    cached: Session | None = getattr(request.state, "ui_session", None)
    if cached is None:
        cached = await run_in_threadpool(_codec(request).read, request, _database(request))
        request.state.ui_session = cached
    return cached


async def signed_in(request: Request) -> Session:
    """The dependency of every page but sign-in: a live session, or SignInRequired."""
    session = await session_of(request)
    if session.token is None:
        raise SignInRequired(session.ended)
    return session


@dataclass(frozen=True, slots=True)
class Form:
    """A posted form whose session and CSRF token checked out."""

    session: Session
    fields: Mapping[str, str]
    lists: Mapping[str, list[str]]

    def get(self, name: str) -> str | None:
        value = self.fields.get(name, "").strip()
        return value or None


async def _read_form(request: Request) -> tuple[dict[str, str], dict[str, list[str]]]:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return {}, {}
    body = (await request.body()).decode("utf-8", errors="replace")
    fields: dict[str, str] = {}
    lists: dict[str, list[str]] = {}
    try:
        pairs = parse_qsl(body, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except ValueError:
        raise PageError(422, f"the form has more than {MAX_FORM_FIELDS} fields") from None
    for name, value in pairs:
        fields.setdefault(name, value)
        lists.setdefault(name, []).append(value)
    return fields, lists


async def form_of(request: Request, *, sign_in: bool = False) -> Form:
    """The posted form, after its checks: a live session (401), then its CSRF token (403)."""
    session = await session_of(request)
    if session.token is None and not sign_in:
        raise PageError(
            401, session.ended or "you are signed out: sign in, then send the form again"
        )
    fields, lists = await _read_form(request)
    if session.fresh or not session.csrf_matches(fields.get("csrf")):
        raise PageError(
            403,
            "the form's security token is missing or does not match this session, so nothing "
            "was changed: reload the page and send it again",
        )
    return Form(session, fields, lists)


def _finish(request: Request, response: Response, *, notice: str | None = None) -> Response:
    session: Session | None = getattr(request.state, "ui_session", None)
    if session is not None and (session.fresh or session.notice or notice):
        _codec(request).keep(response, request, session, notice=notice)
    response.headers.update(SECURITY_HEADERS)
    return response


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status_code: int = 200,
) -> Response:
    """`template` with the page's session (user, CSRF token, one-shot notice) in its context."""
    session: Session | None = getattr(request.state, "ui_session", None)
    values = {
        "session": session,
        "csrf": session.csrf if session else "",
        "user": session.token if session else None,
        "notice": session.notice if session else None,
        "now": datetime.now(UTC),
        "path": request.url.path,
        **(context or {}),
    }
    response = templates.TemplateResponse(request, template, values, status_code=status_code)
    return _finish(request, response)


def redirect(request: Request, url: str, *, notice: str | None = None) -> Response:
    """303 to `url` (a page of this site), with `notice` shown once there."""
    return _finish(request, RedirectResponse(url, status_code=303), notice=notice)


def replace_session(
    request: Request,
    url: str,
    *,
    token_id: int | None = None,
    reference: str | None = None,
    notice: str | None = None,
) -> Response:
    """303 to `url` with a new session (a new CSRF nonce): signed in to the token given, or
    signed out."""
    response = RedirectResponse(url, status_code=303)
    _codec(request).write(
        response, request, csrf=new_nonce(), token_id=token_id, reference=reference, notice=notice
    )
    response.headers.update(SECURITY_HEADERS)
    return response


def _error_page(request: Request, status_code: int, message: str, back: str | None) -> Response:
    context = {"title": TITLES.get(status_code, "Error"), "message": message, "back": back}
    return render(request, "error.html", context, status_code=status_code)


def _status_of(error: TrackerError) -> int:
    for kind, status_code, _ in STATUS_BY_ERROR:
        if isinstance(error, kind):
            return status_code
    return 500


def _validation_message(error: RequestValidationError) -> str:
    problems = []
    for problem in error.errors()[:3]:
        where = ".".join(str(part) for part in problem.get("loc", ())[1:]) or "the request"
        problems.append(
            f"{where}: {str(problem.get('msg', 'invalid')).removeprefix('Value error, ')}"
        )
    return "; ".join(problems) or "the request is invalid"


def _asked_for(request: Request) -> str:
    """The path and query as the browser sent them, still percent-encoded, so a task ID with
    `%2F` in it comes back to itself after sign-in (the decoded path would name another)."""
    raw: bytes = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string", b"")
    return quote(raw + (b"?" + query if query else b""), safe="")


def _from_another_site_without_cookie(request: Request) -> bool:
    """A link followed from another site: the browser holds back the SameSite=Strict cookie."""
    return (
        request.headers.get("sec-fetch-site") == "cross-site" and COOKIE_NAME not in request.cookies
    )


def _bounce(request: Request) -> Response:
    """A page that asks for itself again from this site, so the session cookie comes along.
    No cookie is set here: sending one would replace the session the browser held back."""
    response = templates.TemplateResponse(request, "bounce.html", {"title": "Opening"})
    response.headers.update(SECURITY_HEADERS)
    return response


def local_path(raw: str | None) -> str:
    """`raw` if it is a path of this site (no scheme, no host), else `/`: no open redirect."""
    if raw and raw.startswith("/") and not raw.startswith(("//", "/\\")) and raw.isprintable():
        return raw
    return "/"


class PageRoute(APIRoute):
    """An APIRoute whose errors are pages (see the module's docstring)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await original(request)
            except SignInRequired as error:
                if _from_another_site_without_cookie(request):
                    return _bounce(request)
                response = RedirectResponse(f"/signin?next={_asked_for(request)}", 303)
                session: Session | None = getattr(request.state, "ui_session", None)
                kept = session.notice if session else None  # "signed out" survives the detour
                return _finish(request, response, notice=error.why or kept)
            except PageError as error:
                return _error_page(request, error.status_code, error.message, error.back)
            except TrackerError as error:
                return _error_page(request, _status_of(error), str(error), None)
            except RequestValidationError as error:
                return _error_page(request, 422, _validation_message(error), None)
            except HTTPException:
                raise
            except Exception:
                log.exception("unexpected error while rendering %s", request.url.path)
                return _error_page(request, 500, UNEXPECTED, None)

        return handler
