"""`TensorsLabClient` over real HTTP against the simulator on loopback; nothing is mocked.

What goes over the wire is read from the prepared requests `requests` actually sent (a response
hook on the session the client is given), and what the server saw from the simulator's statistics.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from tracker.states import TaskStatus
from tracker.testing.receiver import Answer, WebhookReceiver
from tracker.testing.simulator import Faults, Simulator, Step, TaskScript
from tracker.upstream.base import (
    ContractViolation,
    InsufficientCredits,
    PollResult,
    TaskMissing,
    TaskReport,
    Throttled,
    Unauthorized,
    Unavailable,
    Unreachable,
    UpstreamFailure,
)
from tracker.upstream.tensorslab import STATUS_PATH, TensorsLabClient

API_KEY = "client-test-key"
S = TaskStatus
URLS = ("https://cdn.example.invalid/final-1.mp4", "https://cdn.example.invalid/final-2.mp4")


@pytest.fixture(scope="module")
def server() -> Iterator[Simulator]:
    with Simulator(port=0, api_key=API_KEY, seed=3) as sim:
        yield sim


@pytest.fixture
def sim(server: Simulator) -> Simulator:
    server.reset()
    return server


class Wire:
    """The requests a session really sent, as `requests` prepared them."""

    def __init__(self, session: requests.Session) -> None:
        self.sent: list[requests.PreparedRequest] = []
        self.local_ports: list[int | None] = []  # the TCP connection each answer came on
        session.hooks["response"].append(self._record)

    def _record(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self.sent.append(response.request)
        # The hook runs before the body is read, so the connection is still attached.
        connection = getattr(response.raw, "connection", None)
        sock = getattr(connection, "sock", None)
        self.local_ports.append(sock.getsockname()[1] if sock is not None else None)

    def body(self, index: int = -1) -> Any:
        raw = self.sent[index].body
        assert raw is not None
        return json.loads(raw)

    def header(self, name: str, index: int = -1) -> str | None:
        return self.sent[index].headers.get(name)


MakeClient = Callable[..., tuple[TensorsLabClient, Wire]]


@pytest.fixture
def make_client(sim: Simulator) -> Iterator[MakeClient]:
    """`make_client(**options)`: a client on the simulator, and the record of what it sent."""
    clients: list[TensorsLabClient] = []

    def make(**options: Any) -> tuple[TensorsLabClient, Wire]:
        session = options.pop("session", None) or requests.Session()
        options.setdefault("base_url", sim.base_url)
        options.setdefault("api_key", API_KEY)
        client = TensorsLabClient(session=session, **options)
        clients.append(client)
        return client, Wire(session)

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client: MakeClient) -> TensorsLabClient:
    return make_client()[0]


# -- what goes over the wire ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "sent_authorization"),
    [
        pytest.param({}, f"Bearer {API_KEY}", id="bearer-by-default"),
        pytest.param({"auth_scheme": "Bearer"}, f"Bearer {API_KEY}", id="bearer-explicit"),
        pytest.param({"auth_scheme": ""}, API_KEY, id="raw-key-with-empty-scheme"),
    ],
)
def test_the_api_key_is_sent_in_the_authorization_header_and_accepted(
    sim: Simulator, make_client: MakeClient, options: dict[str, Any], sent_authorization: str
) -> None:
    sim.add_task(TaskScript("auth-1", (Step(1),)))
    client, wire = make_client(**options)

    result = client.fetch("auth-1")

    assert wire.header("Authorization") == sent_authorization
    assert isinstance(result, TaskReport) and result.status is S.PENDING


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"api_key": "wrong-key"}, id="wrong-key-bearer"),
        pytest.param({"api_key": "wrong-key", "auth_scheme": ""}, id="wrong-key-raw"),
        pytest.param({"auth_scheme": "Token"}, id="right-key-unknown-scheme"),
    ],
)
def test_a_refused_key_is_unauthorized(
    sim: Simulator, make_client: MakeClient, options: dict[str, Any]
) -> None:
    sim.add_task(TaskScript("auth-2", (Step(1),)))
    client, _ = make_client(**options)

    result = client.fetch("auth-2")

    assert isinstance(result, Unauthorized)
    assert "HTTP 401" in result.message and "invalid api key" in result.message
    assert sim.stats()["by_outcome"] == {"unauthorized": 1}


def test_the_request_is_a_json_post_asking_for_more_task_info(
    sim: Simulator, make_client: MakeClient
) -> None:
    sim.add_task(TaskScript("body-1", (Step(2),), details={"prompt": "a cat", "seed": 42}))
    client, wire = make_client(base_url=sim.base_url + "/")

    result = client.fetch("body-1")

    request = wire.sent[-1]
    assert request.method == "POST"
    assert request.url == sim.base_url + STATUS_PATH
    assert wire.header("Content-Type") == "application/json"
    assert wire.body() == {"taskid": "body-1", "moreTaskInfo": True}
    assert isinstance(result, TaskReport)
    # the simulator adds details only when asked for moreTaskInfo; empty ones are left out
    assert result.details == {
        "prompt": "a cat",
        "resolution": "720p",
        "fps": 24,
        "source": "tensorslab-sim",
        "duration": 5,
        "seed": 42,
        "ratio": "16:9",
    }


# -- lifecycles -----------------------------------------------------------------------------------


def test_a_full_lifecycle_one_poll_at_a_time_ends_completed_with_the_urls(
    sim: Simulator, client: TensorsLabClient
) -> None:
    steps = (Step(1, polls=1), Step(2, polls=1), Step(5, polls=1), Step(3))
    sim.add_task(TaskScript("life-1", steps, urls=URLS))

    results = [client.fetch("life-1") for _ in range(5)]

    assert all(isinstance(r, TaskReport) for r in results), results
    reports = [r for r in results if isinstance(r, TaskReport)]
    assert [r.status for r in reports] == [
        S.PENDING,
        S.PROCESSING,
        S.UPLOADING,
        S.COMPLETED,
        S.COMPLETED,
    ]
    assert [r.result_urls for r in reports] == [(), (), (), URLS, URLS]
    assert reports[-1].payload["data"]["taskid"] == "life-1"


def test_a_failed_task_reports_its_message(sim: Simulator, client: TensorsLabClient) -> None:
    sim.add_task(TaskScript.fails("fail-1", message="content policy violation", after_polls=1))

    first, second = client.fetch("fail-1"), client.fetch("fail-1")

    assert isinstance(first, TaskReport) and first.status is S.PROCESSING
    assert first.message == ""
    assert isinstance(second, TaskReport) and second.status is S.FAILED
    assert second.message == "content policy violation"
    assert second.result_urls == ()


def test_an_unknown_task_is_missing(sim: Simulator, client: TensorsLabClient) -> None:
    result = client.fetch("never-created")

    assert isinstance(result, TaskMissing)
    assert result.message == "task not found"
    assert result.payload == {"code": 9999, "msg": "task not found"}


def test_a_task_missing_for_a_while_then_appears(sim: Simulator, client: TensorsLabClient) -> None:
    sim.add_task(TaskScript("late-1", (Step(2),), missing_for_polls=2))

    results = [client.fetch("late-1") for _ in range(3)]

    assert [type(r) for r in results] == [TaskMissing, TaskMissing, TaskReport]


# -- injected faults ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("faults", "kind", "says", "retry_after_s"),
    [
        pytest.param(Faults(error_next=1), Unavailable, "HTTP 50", None, id="5xx-unavailable"),
        pytest.param(
            Faults(throttle_next=1, retry_after_s=7), Throttled, "HTTP 429", 7.0, id="429-throttled"
        ),
        pytest.param(
            Faults(throttle_next=1, retry_after_s=0), Throttled, "HTTP 429", 0.0, id="429-zero"
        ),
        pytest.param(
            Faults(code=9999, code_next=1),
            UpstreamFailure,
            "task query failed",
            None,
            id="code-9999-upstream-failure",
        ),
        pytest.param(
            Faults(code=9000, code_next=1),
            InsufficientCredits,
            "insufficient credits",
            None,
            id="code-9000-insufficient-credits",
        ),
        pytest.param(
            Faults(malformed_next=1), ContractViolation, "not a JSON object", None, id="malformed"
        ),
    ],
)
def test_each_injected_fault_maps_to_its_result_then_the_task_answers_again(
    sim: Simulator,
    client: TensorsLabClient,
    faults: Faults,
    kind: type,
    says: str,
    retry_after_s: float | None,
) -> None:
    sim.add_task(TaskScript("fault-1", (Step(2),)))
    sim.set_faults(faults)

    faulted = client.fetch("fault-1")
    recovered = client.fetch("fault-1")

    assert type(faulted) is kind, faulted
    assert says in getattr(faulted, "message", "")
    assert getattr(faulted, "retry_after_s", None) == retry_after_s
    assert isinstance(recovered, TaskReport) and recovered.status is S.PROCESSING


def test_every_malformed_answer_is_a_contract_violation(
    sim: Simulator, client: TensorsLabClient
) -> None:
    sim.add_task(TaskScript("bad-1", (Step(2),)))
    sim.set_faults(Faults(malformed_next=4))

    truncated, html, bad_status, no_data = (client.fetch("bad-1") for _ in range(4))

    assert isinstance(truncated, ContractViolation) and "not a JSON object" in truncated.message
    assert isinstance(html, ContractViolation) and "<!DOCTYPE html>" in html.message
    assert isinstance(bad_status, ContractViolation) and "task_status 7" in bad_status.message
    assert isinstance(no_data, ContractViolation) and "`data`" in no_data.message


def test_a_forced_code_on_every_answer_never_looks_like_a_report(
    sim: Simulator, client: TensorsLabClient
) -> None:
    sim.add_task(TaskScript("code-1", (Step(1, polls=1), Step(3))))
    sim.set_faults(Faults(code=9999))

    results = [client.fetch("code-1") for _ in range(3)]

    assert all(isinstance(r, UpstreamFailure) for r in results)
    assert sim.task_state("code-1")["status"] == 1, "faulted queries do not advance the task"


# -- the network ----------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_connection_refused_is_unreachable() -> None:
    client = TensorsLabClient(
        base_url=f"http://127.0.0.1:{_closed_port()}", api_key=API_KEY, connect_timeout_s=2
    )
    try:
        result = client.fetch("any")
    finally:
        client.close()

    assert isinstance(result, Unreachable) and result.kind == "unreachable"
    assert "connection failed" in result.message


def test_a_connection_dropped_after_connecting_is_unavailable_not_unreachable() -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)

    def drop_one() -> None:
        connection, _ = listener.accept()
        connection.recv(65536)
        connection.close()  # reached, then no answer

    thread = threading.Thread(target=drop_one, daemon=True)
    thread.start()
    client = TensorsLabClient(
        base_url=f"http://127.0.0.1:{listener.getsockname()[1]}", api_key=API_KEY
    )
    try:
        result = client.fetch("any")
    finally:
        client.close()
        thread.join(5)
        listener.close()

    assert isinstance(result, Unavailable) and not isinstance(result, Unreachable)
    assert "connection failed" in result.message


def test_a_slow_answer_times_out_as_unavailable() -> None:
    with Simulator(port=0, api_key=API_KEY) as slow:  # its own: the late answer must not leak
        slow.add_task(TaskScript("slow-1", (Step(2),), faults=Faults(latency_ms=1500)))
        client = TensorsLabClient(base_url=slow.base_url, api_key=API_KEY, read_timeout_s=0.3)
        started = time.monotonic()
        try:
            result = client.fetch("slow-1")
        finally:
            client.close()
        elapsed = time.monotonic() - started

    assert isinstance(result, Unavailable)
    assert "timed out" in result.message and "Timeout" in result.message
    assert elapsed < 1.2


def test_polls_reuse_one_kept_alive_connection(sim: Simulator, make_client: MakeClient) -> None:
    sim.add_tasks(TaskScript(f"ka-{i}", (Step(2),)) for i in range(4))
    session = requests.Session()
    client, wire = make_client(session=session)

    results: list[PollResult] = [client.fetch(f"ka-{i % 4}") for i in range(20)]

    assert all(isinstance(r, TaskReport) for r in results)
    assert sim.stats()["queries"] == 20
    assert len(wire.sent) == 20
    assert None not in wire.local_ports
    assert len(set(wire.local_ports)) == 1, "all 20 answers came on one TCP connection"
    adapter = session.get_adapter(sim.base_url)
    assert isinstance(adapter, requests.adapters.HTTPAdapter)
    keys = adapter.poolmanager.pools.keys()  # the container refuses plain iteration
    pools = [adapter.poolmanager.pools[key] for key in keys]
    assert [(p.num_requests, p.num_connections) for p in pools] == [(20, 1)]


def test_the_connection_check_notices_when_connections_are_not_kept(
    sim: Simulator, make_client: MakeClient
) -> None:
    """The check above is not vacuous: asking the server to close shows up as no kept socket."""
    sim.add_task(TaskScript("ka-close", (Step(2),)))
    session = requests.Session()
    session.headers["Connection"] = "close"
    client, wire = make_client(session=session)

    for _ in range(3):
        assert isinstance(client.fetch("ka-close"), TaskReport)

    assert wire.local_ports == [None, None, None]


def test_an_answer_too_deeply_nested_to_parse_is_a_contract_violation_not_a_crash() -> None:
    # json.loads raises RecursionError, not ValueError, on this: it must not escape fetch()
    # (it would lose the poll's whole batch) but be recorded like any answer off the contract.
    with WebhookReceiver() as peer:
        peer.script(default=Answer(200, body="[" * 200_000))
        client = TensorsLabClient(base_url=peer.url, api_key="key")
        try:
            result = client.fetch("20251129_9f3c2a7e")
        finally:
            client.close()
    assert isinstance(result, ContractViolation)
