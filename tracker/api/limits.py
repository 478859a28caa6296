"""Request bodies are capped and must be UTF-8, checked before any route parses them.

A body over TRACKER_API_MAX_BODY_BYTES gets 413 as soon as its declared length or the bytes
received so far pass the cap, so a 10 MB upload is never held in memory whole. A body that is not
UTF-8 gets 400 naming the first bad byte, instead of a parser's generic failure.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodyLimits"]


class BodyLimits:
    """ASGI middleware: cap the body size, require UTF-8, then replay the body to the app."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await _refuse(send, 413, "too_large", self._too_large(declared))
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await _refuse(send, 413, "too_large", self._too_large(size, at_least=True))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as error:
            message_text = (
                f"the body is not valid UTF-8: byte 0x{body[error.start]:02x} at position "
                f"{error.start}"
            )
            await _refuse(send, 400, "invalid_utf8", message_text)
            return
        await self.app(scope, _replay(body, receive), send)

    def _too_large(self, size: int, *, at_least: bool = False) -> str:
        return (
            f"the body is {'more than ' if at_least else ''}{size} bytes; the limit is "
            f"{self.max_body_bytes} (TRACKER_API_MAX_BODY_BYTES)"
        )


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _replay(body: bytes, original: Receive) -> Receive:
    """The whole body once, then whatever the server says next (a disconnect, eventually)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return await original()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _refuse(send: Send, status: int, code: str, message: str) -> None:
    payload: dict[str, Any] = {"error": {"code": code, "message": message, "details": []}}
    body = json.dumps(payload, separators=(",", ":")).encode()  # as JSONResponse writes it
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
