"""A real webhook receiver on loopback: for the tests, the demo and local development.

It accepts a POST on any path, checks the Standard Webhooks signature with the secrets it was
given (a request verifies if any one of them matches), records every request, and answers as
scripted: a status, a redirect, a hang, an answer trickled one byte at a time, bytes that are
not HTTP, or a dropped connection.
Standard library HTTP server, one thread per connection, so a hang never blocks other requests.

    with WebhookReceiver(secrets=[secret]) as receiver:
        receiver.script(Answer(503, headers=(("Retry-After", "2"),)))  # then 200s
        ...  # send webhooks to receiver.url + "/any/path"
        [first, second] = receiver.wait_for(2)
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Self, TypeAlias

from tracker.testing.loopback import LoopbackHandler, LoopbackServer
from tracker.testing.trickle import trickle
from tracker.webhooks.signing import WebhookVerificationError, validate_secret, verify_signature

__all__ = [
    "Answer",
    "Behaviour",
    "Drop",
    "Garbage",
    "Hang",
    "ReceivedWebhook",
    "Redirect",
    "Trickle",
    "WebhookReceiver",
]

MAX_BODY_BYTES = 16 * 1024 * 1024
GARBAGE = b"\x00\xffthis is not HTTP at all\r\n\x16\x03\x01\r\n\r\n"


@dataclass(frozen=True, slots=True)
class ReceivedWebhook:
    """One request as it arrived, and how it was judged and answered."""

    path: str
    headers: dict[str, str]  # lower-cased names
    body: str  # decoded as UTF-8, undecodable bytes replaced
    received_at: float  # time.time() when the request was read
    verified: bool  # the signature checked out with one of the secrets
    verify_error: str | None  # why it did not (None when verified)
    # The parsed JSON body; None when it is not JSON. Typed Any, not `Any | None`: with the latter
    # mypy refuses `item.payload["data"]`, which callers write after checking `verified`.
    payload: Any
    # The status answered; None while the answer is still pending (a Hang, a delay) and when no
    # HTTP answer was given at all (Garbage, Drop, or a Hang cut short by stop()).
    answered_status: int | None


# -- behaviours: what the receiver does with one request ---------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """Answer `status` with a plain-text `body` and extra `headers`, after `delay_s` seconds."""

    status: int = 200
    body: str = "ok"
    headers: tuple[tuple[str, str], ...] = ()
    delay_s: float = 0.0

    def __post_init__(self) -> None:
        if not 100 <= self.status <= 599:
            raise ValueError(f"an HTTP status is 100..599, not {self.status}")
        if self.delay_s < 0:
            raise ValueError(f"delay_s must not be negative, got {self.delay_s}")


@dataclass(frozen=True, slots=True)
class Redirect:
    """Answer a redirect to `location` (a client that follows it leaves the receiver)."""

    location: str
    status: int = 302

    def __post_init__(self) -> None:
        if not 300 <= self.status <= 399:
            raise ValueError(f"a redirect status is 300..399, not {self.status}")


@dataclass(frozen=True, slots=True)
class Hang:
    """Say nothing for `seconds`, then answer 200; stop() cuts it short and drops instead."""

    seconds: float

    def __post_init__(self) -> None:
        if self.seconds < 0:
            raise ValueError(f"seconds must not be negative, got {self.seconds}")


@dataclass(frozen=True, slots=True)
class Trickle:
    """Answer `status` with `body`, one byte every `every_s` seconds (each byte after a wait).

    With `headers` (the default) the status line and headers trickle too; without, they go at
    once and only the body trickles (its Content-Length announced). Every `socket.recv` of the
    client gets a byte well within any per-read timeout, so only a deadline on the whole attempt
    ends it. stop() cuts it short (the connection is dropped), as does a client that goes away.
    """

    every_s: float
    status: int = 200
    body: str = "ok"
    headers: bool = True

    def __post_init__(self) -> None:
        if not 100 <= self.status <= 599:
            raise ValueError(f"an HTTP status is 100..599, not {self.status}")
        if not self.every_s > 0:
            raise ValueError(f"every_s must be positive, got {self.every_s}")


@dataclass(frozen=True, slots=True)
class Garbage:
    """Write bytes that are not HTTP at all, then close the connection."""


@dataclass(frozen=True, slots=True)
class Drop:
    """Close the connection without answering."""


Behaviour: TypeAlias = Answer | Redirect | Hang | Trickle | Garbage | Drop


# -- the receiver ------------------------------------------------------------------------------


class WebhookReceiver(LoopbackServer):
    """Records webhooks POSTed to `url` and answers them as scripted; `start()` serves it."""

    def __init__(
        self, *, secrets: Sequence[str] = (), host: str = "127.0.0.1", port: int = 0
    ) -> None:
        super().__init__(
            host=host, port=port, handler=_Handler, name="the webhook receiver", quiet_errors=True
        )
        self._secrets = _checked_secrets(secrets)
        self._changed = threading.Condition()  # guards everything below; notified on each record
        self._received: list[ReceivedWebhook] = []
        self._script: deque[Behaviour] = deque()
        self._default: Behaviour = Answer(200)
        self._stopping = threading.Event()  # set by stop(): ends hangs and delays at once

    # -- lifecycle: `with`, `url` from LoopbackServer ----------------------------------------
    def start(self) -> Self:
        if self._server is None:
            self._stopping.clear()
        return super().start()

    def stop(self) -> None:
        """Stop serving; returns promptly, ending hangs and open connections."""
        self._stopping.set()
        super().stop()

    # -- configuration -----------------------------------------------------------------------
    def script(self, *behaviours: Behaviour, default: Behaviour = Answer(200)) -> None:
        """Answer the next requests with `behaviours`, one each in order, then with `default`.

        Replaces any script not yet used up.
        """
        for behaviour in (*behaviours, default):
            if not isinstance(behaviour, Answer | Redirect | Hang | Trickle | Garbage | Drop):
                raise TypeError(f"not a receiver behaviour: {behaviour!r}")
        with self._changed:
            self._script = deque(behaviours)
            self._default = default

    def set_secrets(self, secrets: Sequence[str]) -> None:
        """Verify the requests that arrive from now on with these secrets (any one may match)."""
        checked = _checked_secrets(secrets)
        with self._changed:
            self._secrets = checked

    # -- what arrived ------------------------------------------------------------------------
    @property
    def received(self) -> list[ReceivedWebhook]:
        """Every request so far, oldest first (a copy)."""
        with self._changed:
            return list(self._received)

    def clear(self) -> None:
        """Forget the requests received so far (the script is kept)."""
        with self._changed:
            self._received.clear()
            self._changed.notify_all()

    def wait_for(
        self,
        count: int,
        *,
        timeout_s: float = 30.0,
        predicate: Callable[[ReceivedWebhook], bool] | None = None,
    ) -> list[ReceivedWebhook]:
        """Wait until at least `count` requests (matching `predicate`, if given) have arrived.

        Returns all the matching requests, oldest first. Raises TimeoutError, listing what did
        arrive, after `timeout_s` seconds.
        """
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                matching = [r for r in self._received if predicate is None or predicate(r)]
                if len(matching) >= count:
                    return matching
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            arrived = list(self._received)
        what = "matching requests" if predicate is not None else "requests"
        raise TimeoutError(
            f"waited {timeout_s:g} s for {count} {what} at the webhook receiver, "
            f"{len(matching)} matched; {_summary(arrived)}"
        )

    # -- for the request handler -------------------------------------------------------------
    def _next_behaviour(self) -> Behaviour:
        with self._changed:
            return self._script.popleft() if self._script else self._default

    def _record(self, path: str, headers: dict[str, str], raw: bytes) -> ReceivedWebhook:
        with self._changed:
            secrets = self._secrets
        verified, error = _check(raw, headers, secrets)
        body = raw.decode("utf-8", errors="replace")
        try:
            payload: Any = json.loads(body)
        except ValueError:
            payload = None
        item = ReceivedWebhook(
            path=path,
            headers=headers,
            body=body,
            received_at=time.time(),
            verified=verified,
            verify_error=error,
            payload=payload,
            answered_status=None,
        )
        with self._changed:
            self._received.append(item)
            self._changed.notify_all()
        return item

    def _answered(self, item: ReceivedWebhook, status: int) -> None:
        """Note the status about to be written (before writing: a client never sees it first)."""
        with self._changed:
            for index, candidate in enumerate(self._received):
                if candidate is item:
                    self._received[index] = replace(item, answered_status=status)
                    self._changed.notify_all()
                    return


def _checked_secrets(secrets: Sequence[str]) -> tuple[str, ...]:
    if isinstance(secrets, str):
        raise TypeError("secrets must be a sequence of secrets, not one string")
    return tuple(validate_secret(secret) for secret in secrets)


def _check(
    raw: bytes, headers: dict[str, str], secrets: tuple[str, ...]
) -> tuple[bool, str | None]:
    if not secrets:
        return False, "the receiver has no secret to verify with"
    errors: list[str] = []
    for secret in secrets:
        try:
            verify_signature(body=raw, headers=headers, secret=secret)
        except WebhookVerificationError as error:
            message = str(error) or type(error).__name__
            if message not in errors:
                errors.append(message)
        else:
            return True, None
    return False, "; ".join(errors)


def _summary(arrived: list[ReceivedWebhook], limit: int = 20) -> str:
    if not arrived:
        return "nothing arrived"
    lines = [
        f"{item.path} status={item.answered_status} "
        + ("verified" if item.verified else f"unverified ({item.verify_error})")
        + f" body={item.body[:80]!r}"
        for item in arrived[-limit:]
    ]
    more = f" (the last {limit} shown)" if len(arrived) > limit else ""
    return f"{len(arrived)} arrived{more}:\n  " + "\n  ".join(lines)


class _Handler(LoopbackHandler[WebhookReceiver]):
    server_version = "tracker-webhook-receiver/1.0"
    timeout = 120  # an idle kept-alive connection frees its thread eventually

    @property
    def receiver(self) -> WebhookReceiver:
        return self.owner

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the recorded requests are the log

    def respond(self, method: str) -> None:
        if method != "POST":
            self._refuse()
            return
        try:
            raw = self._read_body()
        except ValueError as error:
            self.close_connection = True
            self._write(400, f"bad request: {error}\n")
            return
        if raw is None:
            self.close_connection = True
            self._write(413, f"body larger than {MAX_BODY_BYTES} bytes\n")
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        item = self.receiver._record(self.path, headers, raw)
        self._behave(self.receiver._next_behaviour(), item)

    def _behave(self, behaviour: Behaviour, item: ReceivedWebhook) -> None:
        stopping = self.receiver._stopping
        match behaviour:
            case Answer(status=status, body=body, headers=extra, delay_s=delay_s):
                if delay_s and stopping.wait(delay_s):
                    self.close_connection = True
                    return
                self.receiver._answered(item, status)
                self._write(status, body, extra)
            case Redirect(location=location, status=status):
                self.receiver._answered(item, status)
                self._write(status, f"redirect to {location}\n", (("Location", location),))
            case Hang(seconds=seconds):
                if stopping.wait(seconds):
                    self.close_connection = True  # stop() came first: drop, answer nothing
                    return
                self.receiver._answered(item, 200)
                self._write(200, "ok")
            case Trickle(every_s=every_s, status=status, body=body, headers=slow_headers):
                self.close_connection = True  # the connection ends with the answer, or before
                self.receiver._answered(item, status)
                whole = self._rendered(status, body)
                head_length = whole.index(b"\r\n\r\n") + 4
                at_once, slowly = (b"", whole) if slow_headers else _split(whole, head_length)
                with contextlib.suppress(OSError):
                    if at_once:
                        self.wfile.write(at_once)
                        self.wfile.flush()
                    # stop(), or a client that goes away, ends it: the rest is dropped
                    trickle(self.wfile, self.connection, slowly, every_s=every_s, stop=stopping)
            case Garbage():
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.wfile.write(GARBAGE)
                    self.wfile.flush()
            case Drop():
                self.close_connection = True

    def _refuse(self) -> None:
        self.close_connection = True
        self._write(405, "webhooks are POSTed\n", (("Allow", "POST"),))

    def _read_body(self) -> bytes | None:
        """The request body; None when it is too large. ValueError when it is malformed."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError(f"negative Content-Length {length}")
        if length > MAX_BODY_BYTES:
            return None
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes | None:
        parts: list[bytes] = []
        size = 0
        while True:
            line = self.rfile.readline(1024)
            chunk = int(line.split(b";", 1)[0].strip() or b"x", 16)  # ValueError if malformed
            if chunk == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            size += chunk
            if size > MAX_BODY_BYTES:
                return None
            parts.append(self.rfile.read(chunk))
            self.rfile.readline(8)  # the CRLF after each chunk

    def _rendered(self, status: int, body: str) -> bytes:
        """The bytes `_write` would send, captured instead of sent."""
        real, self.wfile = self.wfile, io.BytesIO()
        try:
            self._write(status, body)
            return self.wfile.getvalue()
        finally:
            self.wfile = real

    def _write(self, status: int, body: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        """Status line, headers and body in one write."""
        payload = body.encode("utf-8")
        self.send_whole(status, payload, content_type="text/plain; charset=utf-8", headers=headers)


def _split(data: bytes, at: int) -> tuple[bytes, bytes]:
    return data[:at], data[at:]
