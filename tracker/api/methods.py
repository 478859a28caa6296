"""`OPTIONS` and 405 answers that name every method of the path, from the app's own routes.

FastAPI registers one route per method, and Starlette's router answers a method no route of the
path takes with the methods of whichever route it tried first, so `Allow` missed some; and
`OPTIONS` got that 405 too. This middleware asks every route of the app, at request time (so a
route added later is included), which of them match the path:

- `OPTIONS` on a path with routes (and no route of its own for OPTIONS): 204 with `Allow`;
- another method no route of the path takes: 405 with `Allow` and the usual error body;
- anything else goes on to the router unchanged (including unknown paths: 404).

No token is needed for either answer: the methods are public in `/openapi.json`. The API has
no CORS middleware; one added in front of this would answer its preflight requests first.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from tracker.api.errors import error_response

__all__ = ["AllowedMethods", "allowed_methods"]


# The methods a route may serve; each is tried against the routes, so the answer holds however
# the routes are grouped (FastAPI wraps included routers in route objects of its own).
METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE")


def _served(routes: list[BaseRoute], scope: Scope) -> bool:
    return any(route.matches(scope)[0] is Match.FULL for route in routes)


def allowed_methods(routes: list[BaseRoute], scope: Scope) -> tuple[bool, set[str]]:
    """Whether a route takes this request as it is and, when none does, the methods some
    route of the same path would take."""
    if _served(routes, scope):
        return True, set()
    return False, {m for m in METHODS if _served(routes, {**scope, "method": m})}


class AllowedMethods:
    """ASGI middleware answering `OPTIONS` and 405 with the path's full `Allow` (see module)."""

    def __init__(self, app: ASGIApp, *, routes: list[BaseRoute]) -> None:
        self.app = app
        self.routes = routes  # the app's own list, read at each request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        served, methods = allowed_methods(self.routes, scope)
        if served or not methods:
            await self.app(scope, receive, send)
            return
        allow = ", ".join(sorted(methods | {"OPTIONS"}))
        if scope["method"] == "OPTIONS":
            await send(
                {
                    "type": "http.response.start",
                    "status": 204,
                    "headers": [(b"allow", allow.encode())],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        response = error_response(
            405,
            "method_not_allowed",
            f"{scope['method']} is not allowed on {scope['path']}; allowed: {allow}",
            headers={"Allow": allow},
        )
        await response(scope, receive, send)
