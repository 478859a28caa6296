"""The API's limits against misbehaving clients, on a real uvicorn server on loopback, served
with the options `tracker api` uses (`tracker.api.server.server_options`):

- a request must arrive whole (headers and body) within TRACKER_API_REQUEST_TIMEOUT_S, or the
  client gets 408 and is closed, while normal requests go on being served;
- metadata is at most 16 KiB of JSON per task, refused by the one registration use case;
- a page of tasks stays a sane size (MAX_PAGE_SIZE);
- wrong bearer tokens from one address get 429 after a burst, without a database query, while
  other addresses are unaffected.

Waits are for conditions, with generous deadlines; nothing asserts that something was fast.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import uvicorn
from sqlalchemy import event

from tests.conftest import Configure
from tests.support import run_cli
from tracker import Tracker, db, tokens
from tracker.api import create_app
from tracker.api.server import server_options
from tracker.api.throttle import AuthFailures, client_key
from tracker.db import migrate
from tracker.db.clock import utc_now
from tracker.errors import InvalidMetadata
from tracker.settings import get_settings
from tracker.tasks.pagination import MAX_PAGE_SIZE
from tracker.tasks.register import MAX_METADATA_BYTES

REQUEST_TIMEOUT_S = 2
DEADLINE_S = 60  # generous: how long anything here may take before the test gives up


@dataclass
class LiveApi:
    base: str
    port: int
    database_url: str
    token: str

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def live_api(tmp_path: Any, configure: Configure) -> Iterator[LiveApi]:
    url = f"sqlite:///{tmp_path / 'tracker.db'}"
    migrate.upgrade(url)
    configure(TRACKER_DATABASE_URL=url, TRACKER_API_REQUEST_TIMEOUT_S=REQUEST_TIMEOUT_S)
    with db.session_scope(url) as session:
        secret = tokens.create_token(session, "limits", now=utc_now()).secret
    port = _free_port()
    settings = get_settings()
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        **server_options(settings),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + DEADLINE_S
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped while starting"
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield LiveApi(f"http://127.0.0.1:{port}", port, url, secret)
    finally:
        server.should_exit = True
        thread.join(DEADLINE_S)


def _stored_task_ids(url: str) -> list[str]:
    tracker = Tracker(database_url=url)
    return sorted(task.task_id for task in tracker.list(limit=MAX_PAGE_SIZE).tasks)


# --- reading a request takes at most TRACKER_API_REQUEST_TIMEOUT_S -------------------------


@dataclass
class SlowClient:
    name: str
    sock: socket.socket
    trickle: bytes  # sent a byte at a time, forever (it never completes the request)
    received: bytes = b""
    closed: bool = False
    sent: int = 0


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S)
    sock.setblocking(False)
    return sock


def _read_until_closed(clients: list[SlowClient], *, deadline: float) -> None:
    """Send each client's next byte every 0.5 s and read whatever comes, until all are closed."""
    while time.monotonic() < deadline:
        open_clients = [client for client in clients if not client.closed]
        if not open_clients:
            return
        readable, _, _ = select.select([c.sock for c in open_clients], [], [], 0.5)
        for client in open_clients:
            if client.sock in readable:
                try:
                    data = client.sock.recv(65536)
                except ConnectionResetError:
                    data = b""
                client.received += data
                client.closed = not data
            elif client.sent < len(client.trickle):
                try:
                    client.sock.send(client.trickle[client.sent : client.sent + 1])
                    client.sent += 1
                except OSError:
                    pass  # closed by the server: what it wrote is still read above


def test_slow_headers_and_slow_bodies_get_408_and_are_closed_while_others_are_served(
    live_api: LiveApi,
) -> None:
    slow_headers = b"GET /v1/tasks HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000
    clients = [
        SlowClient(f"headers-{n}", _connect(live_api.port), slow_headers) for n in range(200)
    ]
    # The whole header block, then a body far slower than declared.
    body_head = (
        "POST /v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {live_api.token}\r\nContent-Length: 10000\r\n\r\n"
    ).encode()
    slow_body = SlowClient("body", _connect(live_api.port), b'{"task_id": "slow-' + b"1" * 9_000)
    slow_body.sock.sendall(body_head)
    # A kept-alive connection: one whole request answered, then the next one trickles in.
    kept_alive = SlowClient("kept-alive", _connect(live_api.port), slow_headers)
    kept_alive.sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    clients += [slow_body, kept_alive]

    # Meanwhile, normal requests are served.
    stop = threading.Event()
    served: list[int] = []

    def normal_requests() -> None:
        while not stop.is_set():
            served.append(requests.get(f"{live_api.base}/healthz", timeout=DEADLINE_S).status_code)
            served.append(
                requests.get(
                    f"{live_api.base}/v1/tasks", headers=live_api.auth(), timeout=DEADLINE_S
                ).status_code
            )
            time.sleep(0.2)

    normal = threading.Thread(target=normal_requests, daemon=True)
    normal.start()
    try:
        _read_until_closed(clients, deadline=time.monotonic() + DEADLINE_S)
    finally:
        stop.set()
        normal.join(DEADLINE_S)
        for client in clients:
            client.sock.close()

    still_open = [client.name for client in clients if not client.closed]
    assert still_open == [], f"{len(still_open)} slow connections still open: {still_open[:5]}"
    for client in clients:
        answer = client.received
        if client is kept_alive:  # the first request's answer, then the 408
            assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
            answer = answer[answer.index(b"HTTP/1.1 ", 1) :]
        assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), (client.name, answer[:200])
        assert b"\r\nconnection: close\r\n" in answer.lower()
        body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
        assert body["error"]["code"] == "request_timeout"
        assert "TRACKER_API_REQUEST_TIMEOUT_S" in body["error"]["message"]
    assert served and set(served) == {200}, served
    assert _stored_task_ids(live_api.database_url) == []  # the slow POST stored nothing


def test_a_connection_that_sends_nothing_is_closed_without_an_answer(live_api: LiveApi) -> None:
    idle = SlowClient("idle", _connect(live_api.port), b"")
    try:
        _read_until_closed([idle], deadline=time.monotonic() + DEADLINE_S)
    finally:
        idle.sock.close()
    assert idle.closed
    assert idle.received == b""


def test_a_request_that_arrives_in_time_is_answered_however_long_the_app_takes(
    live_api: LiveApi,
) -> None:
    # Headers and a body sent in pieces, well within the limit: an ordinary registration.
    body = json.dumps({"task_id": "in-pieces"}).encode()
    with socket.create_connection(("127.0.0.1", live_api.port), timeout=DEADLINE_S) as sock:
        sock.sendall(
            b"POST /v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {live_api.token}\r\nContent-Length: {len(body)}\r\n".encode()
        )
        sock.sendall(b"\r\n" + body[:5])
        sock.sendall(body[5:])
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 201 "), answer[:300]
    assert _stored_task_ids(live_api.database_url) == ["in-pieces"]


# --- metadata is at most 16 KiB of JSON per task -------------------------------------------


def _metadata_of_size(size: int, char: str = "a") -> dict[str, str]:
    filler = size - len('{"x":""}')
    assert filler % len(char.encode()) == 0
    metadata = {"x": char * (filler // len(char.encode()))}
    assert len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode()) == size
    return metadata


def test_metadata_over_16_kib_is_refused_over_http_and_nothing_is_stored(
    live_api: LiveApi,
) -> None:
    assert MAX_METADATA_BYTES == 16 * 1024
    tasks_url = f"{live_api.base}/v1/tasks"
    too_big = _metadata_of_size(MAX_METADATA_BYTES + 1)
    response = requests.post(
        tasks_url,
        json={"task_id": "big", "metadata": too_big},
        headers=live_api.auth(),
        timeout=DEADLINE_S,
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert "'big'" in error["message"]
    assert f"{MAX_METADATA_BYTES + 1} bytes" in error["message"]
    assert "\n" not in error["message"]

    # Bytes, not characters: 2-byte characters reach the cap at half the length.
    wide = _metadata_of_size(MAX_METADATA_BYTES + 2, "é")
    batch = {"tasks": [{"task_id": "fine"}, {"task_id": "wide", "metadata": wide}]}
    response = requests.post(tasks_url, json=batch, headers=live_api.auth(), timeout=DEADLINE_S)
    assert response.status_code == 422, response.text
    assert "'wide'" in response.json()["error"]["message"]
    assert _stored_task_ids(live_api.database_url) == []  # not even the fine one

    at_cap = _metadata_of_size(MAX_METADATA_BYTES)
    response = requests.post(
        tasks_url,
        json={"task_id": "at-cap", "metadata": at_cap},
        headers=live_api.auth(),
        timeout=DEADLINE_S,
    )
    assert response.status_code == 201, response.text
    assert response.json()["task"]["metadata"] == at_cap
    assert _stored_task_ids(live_api.database_url) == ["at-cap"]


def test_metadata_over_16_kib_is_refused_by_the_python_client_and_the_cli_sees_nothing(
    live_api: LiveApi,
) -> None:
    tracker = Tracker(database_url=live_api.database_url)
    with pytest.raises(InvalidMetadata) as caught:
        tracker.register(["py-1", "py-2"], metadata=_metadata_of_size(MAX_METADATA_BYTES + 1))
    assert "'py-1'" in str(caught.value)
    assert f"{MAX_METADATA_BYTES + 1} bytes" in str(caught.value)
    with pytest.raises(InvalidMetadata, match="not JSON"):
        tracker.register(["py-3"], metadata={"when": object()})

    code, out, err = run_cli("list", "--json")
    assert code == 0, err
    assert json.loads(out) == [] or json.loads(out).get("tasks") == [], out
    assert _stored_task_ids(live_api.database_url) == []


# --- a page of tasks stays a sane size -----------------------------------------------------


def test_a_full_page_of_tasks_with_the_largest_metadata_stays_small(live_api: LiveApi) -> None:
    tracker = Tracker(database_url=live_api.database_url)
    ids = [f"page-{n:03}" for n in range(MAX_PAGE_SIZE + 5)]
    tracker.register(ids, metadata=_metadata_of_size(MAX_METADATA_BYTES))

    response = requests.get(
        f"{live_api.base}/v1/tasks",
        params={"limit": MAX_PAGE_SIZE},
        headers=live_api.auth(),
        timeout=DEADLINE_S,
    )
    assert response.status_code == 200
    page = response.json()
    assert len(page["tasks"]) == MAX_PAGE_SIZE and page["next_cursor"]
    assert len(response.content) < 2 * 1024 * 1024, len(response.content)

    too_many = requests.get(
        f"{live_api.base}/v1/tasks",
        params={"limit": MAX_PAGE_SIZE + 1},
        headers=live_api.auth(),
        timeout=DEADLINE_S,
    )
    assert too_many.status_code == 422
    deliveries = requests.get(
        f"{live_api.base}/v1/deliveries",
        params={"limit": MAX_PAGE_SIZE + 1},
        headers=live_api.auth(),
        timeout=DEADLINE_S,
    )
    assert deliveries.status_code == 422


# --- wrong tokens are slowed down before the database --------------------------------------


def _get_tasks(live_api: LiveApi, token: str, *, source: str = "127.0.0.1") -> tuple[int, Any]:
    connection = http.client.HTTPConnection(
        "127.0.0.1", live_api.port, timeout=DEADLINE_S, source_address=(source, 0)
    )
    try:
        connection.request("GET", "/v1/tasks", headers=live_api.auth(token))
        response = connection.getresponse()
        return response.status, (response.getheader("Retry-After"), json.loads(response.read()))
    finally:
        connection.close()


def test_wrong_tokens_get_429_after_a_burst_without_a_database_query(live_api: LiveApi) -> None:
    queries: list[str] = []
    engine = db.get_engine(live_api.database_url)

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        queries.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        burst = AuthFailures().burst
        for n in range(burst):
            status, (_, body) = _get_tasks(live_api, f"trk_wrong-{n}")
            assert status == 401, (n, body)
        assert queries, "the first wrong tokens are looked up"

        before = len(queries)
        for n in range(10):
            status, (retry_after, body) = _get_tasks(live_api, f"trk_wrong-again-{n}")
            assert status == 429, body
            assert body["error"]["code"] == "too_many_requests"
            assert retry_after is not None and int(retry_after) >= 1
        # Even the right token, from the address that guessed wrong, is held back...
        assert _get_tasks(live_api, live_api.token)[0] == 429
        assert len(queries) == before, queries[before:]  # ...and none of it reached the database

        # Another address is unaffected, and its success clears nothing for the first.
        status, (_, body) = _get_tasks(live_api, live_api.token, source="127.0.0.2")
        assert status == 200, body
        assert _get_tasks(live_api, f"trk_wrong-{burst}", source="127.0.0.2")[0] == 401
        status, (retry_after, _) = _get_tasks(live_api, live_api.token)
        assert status == 429
    finally:
        event.remove(engine, "before_cursor_execute", count)

    # After Retry-After, the address may try again.
    time.sleep(int(retry_after) + 0.5)
    deadline = time.monotonic() + DEADLINE_S
    while (status := _get_tasks(live_api, live_api.token)[0]) == 429:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert status == 200


def test_a_missing_token_is_401_and_not_a_guess(live_api: LiveApi) -> None:
    for _ in range(AuthFailures().burst + 5):
        response = requests.get(f"{live_api.base}/v1/tasks", timeout=DEADLINE_S)
        assert response.status_code == 401
    assert _get_tasks(live_api, live_api.token)[0] == 200


def test_the_record_of_failures_is_bounded_and_leaks_away() -> None:
    now = [0.0]
    record = AuthFailures(burst=3, interval_s=10, max_addresses=100, clock=lambda: now[0])
    for n in range(1000):
        assert record.charge(f"10.0.{n // 256}.{n % 256}") is None
    assert len(record) == 100

    assert [record.charge("a") for _ in range(4)] == [None, None, None, 10]
    now[0] += 10  # one failure leaks away
    assert record.charge("a") is None
    assert record.charge("a") == 10
    record.refund("b")  # a success elsewhere changes nothing for "a"
    assert record.charge("a") == 10


def test_ipv6_clients_share_a_bucket_per_64() -> None:
    assert client_key("2001:db8::1") == client_key("2001:db8::ffff") == "2001:db8::/64"
    assert client_key("2001:db8:0:1::1") != client_key("2001:db8::1")
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_key("192.0.2.7") == "192.0.2.7"
    assert client_key(None) == "unknown"
