"""What TensorsLab's status endpoints share: the HTTP session, one bounded attempt, the envelope.

Video (`tensorslab.py`) and image (`tensorslab_image.py`) tasks are asked about the same way:
`POST <base>/<path>` with a JSON body, `Authorization: <scheme> <key>`, and an answer in one
envelope (`code` 1000 success, 9999 failure, 9000 insufficient credits; `msg`; `data`). HTTP 429,
5xx, 401/403 and 404 mean the same for both. Only the `data` object differs, so a provider
module gives `StatusClient` its path, its request body and a reader of `data`.

One `requests.Session` per client (one client per worker process) keeps connections alive. What
requests would read from the environment before every request (proxies, the CA bundle, ~/.netrc)
is read once, when the client is made.
Each poll is one attempt bounded as a whole (connect, send, answer and JSON body) by
`deadline_s` = connect + read timeout (`tracker.http_deadline`): an upstream that trickles its
answer cannot keep a poll open past its lease.
Every answer becomes one `PollResult`; anything outside the contract becomes a
`ContractViolation` rather than a guess, so it can never cause a false transition.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import requests
import urllib3

from tracker.http_deadline import DeadlineExceeded, attempt_deadline, deadline_session
from tracker.retry_after import parse_retry_after
from tracker.upstream.base import (
    ContractViolation,
    InsufficientCredits,
    PollResult,
    TaskMissing,
    Throttled,
    Unauthorized,
    Unavailable,
    Unreachable,
    UpstreamFailure,
)

__all__ = [
    "CODE_FAILURE",
    "CODE_INSUFFICIENT_CREDITS",
    "CODE_SUCCESS",
    "MAX_RETRY_AFTER_S",
    "DataReader",
    "StatusClient",
    "excerpt",
    "parse_envelope",
    "read_environment_once",
    "string_list",
]

CODE_SUCCESS = 1000
CODE_FAILURE = 9999
CODE_INSUFFICIENT_CREDITS = 9000
MAX_RETRY_AFTER_S = 3600.0
_EXCERPT_CHARS = 200

# Reads the `data` object of a code-1000 answer: (task_id, the whole payload, the body text).
DataReader = Callable[[str, dict[str, Any], str], PollResult]


class StatusClient:
    """Asks one TensorsLab status endpoint about tasks. Thread-compatible per instance; make
    one per process. Subclasses set `name` and `status_path` and implement `request_body` and
    `parse_response`."""

    name: str
    status_path: ClassVar[str]

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        auth_scheme: str = "Bearer",
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
        session: requests.Session | None = None,
    ) -> None:
        self._url = base_url.rstrip("/") + self.status_path
        self._timeout = (connect_timeout_s, read_timeout_s)
        self.deadline_s = connect_timeout_s + read_timeout_s  # the whole attempt, body included
        self._session = deadline_session(session or requests.Session())
        read_environment_once(self._session, self._url)
        self._session.headers.update(
            {
                "Authorization": f"{auth_scheme} {api_key}" if auth_scheme else api_key,
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": "tracker/0.1 (self-hosted task tracker)",
            }
        )

    def request_body(self, task_id: str) -> dict[str, Any]:
        raise NotImplementedError

    def parse_response(
        self, task_id: str, *, status_code: int, headers: Mapping[str, str], text: str
    ) -> PollResult:
        raise NotImplementedError

    def fetch(self, task_id: str) -> PollResult:
        body = json.dumps(self.request_body(task_id))
        try:
            # The body is read inside the deadline too (stream=False: `post` returns it read).
            with attempt_deadline(self.deadline_s):
                # Redirects are not in the contract; following one could send the key elsewhere.
                response = self._session.post(
                    self._url, data=body, timeout=self._timeout, allow_redirects=False
                )
        except DeadlineExceeded as error:
            return Unavailable(f"timed out: {error}")
        except requests.ConnectTimeout as error:  # before Timeout: it is both
            return Unreachable(f"could not connect: {type(error).__name__}")
        except requests.Timeout as error:
            return Unavailable(f"timed out: {type(error).__name__}")
        except requests.ConnectionError as error:
            if _dropped_after_connect(error):  # it was reached: an answer cut short
                return Unavailable(f"connection failed: {_first_line(error)}")
            return Unreachable(f"connection failed: {_first_line(error)}")  # refused, DNS, TLS
        except requests.RequestException as error:
            return Unavailable(f"request failed: {_first_line(error)}")
        except Exception as error:  # urllib3 protocol errors can escape requests' wrapping
            return Unavailable(f"request failed: {_first_line(error)}")
        try:
            return self.parse_response(
                task_id,
                status_code=response.status_code,
                headers=response.headers,
                text=response.text,
            )
        except Exception as error:  # e.g. RecursionError on a deeply nested body: one task's
            # strange answer must not lose its whole batch; it is a contract violation.
            return ContractViolation(f"unreadable answer: {type(error).__name__}")

    def close(self) -> None:
        self._session.close()


def read_environment_once(session: requests.Session, url: str) -> None:
    """Settle now what requests reads from the environment before every request, and stop it
    reading: the proxy for `url` (HTTP_PROXY, HTTPS_PROXY, honouring NO_PROXY) and the CA
    bundle (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE). ~/.netrc is no longer read, so it can never
    replace the API key's Authorization header with its own. Those lookups (files checked,
    environment parsed) took about a quarter of a poll's CPU time in the client (py-spy on
    bench/throughput.py); the environment does not change while a worker runs."""
    proxies = requests.utils.get_environ_proxies(url)
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    session.trust_env = False
    for scheme, proxy in proxies.items():
        session.proxies.setdefault(scheme, proxy)
    if bundle and session.verify is True:
        session.verify = bundle


def parse_envelope(
    task_id: str,
    *,
    status_code: int,
    headers: Mapping[str, str],
    text: str,
    read_data: DataReader,
) -> PollResult:
    """Turn one HTTP answer into a `PollResult`; `read_data` reads a success's `data`. Pure."""
    if status_code == 429:
        return Throttled(
            f"HTTP 429: {excerpt(text)}", retry_after_s=_retry_after_s(headers.get("Retry-After"))
        )
    if status_code >= 500:
        return Unavailable(
            f"HTTP {status_code}: {excerpt(text)}",
            retry_after_s=_retry_after_s(headers.get("Retry-After")),
        )
    if status_code in (401, 403):
        return Unauthorized(f"HTTP {status_code}: API key refused: {excerpt(text)}")

    payload = _json_object(text)
    if status_code == 404:
        # The contract documents 404 with an ErrorResponse body. A 404 without one is more likely
        # a wrong base URL or a proxy than an unknown task, so it must not count toward not_found.
        code = payload.get("code") if payload is not None else None
        if payload is None or not isinstance(code, int) or isinstance(code, bool):
            return ContractViolation(f"HTTP 404 without the documented body: {excerpt(text)}")
        message = payload.get("msg")
        return TaskMissing(message=message if isinstance(message, str) else "", payload=payload)
    if status_code != 200:
        return ContractViolation(f"unexpected HTTP {status_code}: {excerpt(text)}")
    if payload is None:
        return ContractViolation(f"body is not a JSON object: {excerpt(text)}")

    code = payload.get("code")
    message = payload.get("msg")
    if not isinstance(code, int) or isinstance(code, bool):
        return ContractViolation(f"`code` missing or not an integer: {excerpt(text)}")
    if code == CODE_INSUFFICIENT_CREDITS:
        return InsufficientCredits(f"code 9000: {message or 'insufficient credits'}")
    if code == CODE_FAILURE:
        return UpstreamFailure(f"code 9999: {message or '(no message)'}")
    if code != CODE_SUCCESS:
        return ContractViolation(f"unknown code {code}: {excerpt(text)}")
    data = payload.get("data")
    if not isinstance(data, dict):
        return ContractViolation(f"code 1000 without a `data` object: {excerpt(text)}")
    reported_id = data.get("taskid")
    if reported_id is not None and reported_id != task_id:
        return ContractViolation(f"asked for {task_id!r}, answer is about {reported_id!r}")
    return read_data(task_id, payload, text)


def string_list(value: object) -> list[str] | None:
    """`value` as a list of strings (None and absent are empty), or None if it is not one."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        return None
    return value


def _dropped_after_connect(error: requests.ConnectionError) -> bool:
    """A connection that was made and then dropped (urllib3's ProtocolError: aborted, reset
    mid-answer), as opposed to one never made (refused, DNS, TLS: MaxRetryError, SSLError)."""
    return bool(error.args) and isinstance(error.args[0], urllib3.exceptions.ProtocolError)


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _retry_after_s(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), bounded; None if absent."""
    seconds = parse_retry_after(value, now=datetime.now(UTC))
    return None if seconds is None else min(seconds, MAX_RETRY_AFTER_S)


def excerpt(text: str) -> str:
    """`text` on one line, cut to 200 characters: for messages about an answer."""
    text = " ".join(text.split())
    return text if len(text) <= _EXCERPT_CHARS else text[:_EXCERPT_CHARS] + "..."


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0][:_EXCERPT_CHARS] if str(error) else type(error).__name__
