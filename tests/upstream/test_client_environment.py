"""The status client reads the environment once, when it is made: a proxy given by HTTP_PROXY
is used (and skipped for NO_PROXY hosts), and a ~/.netrc entry for the API's host never
replaces the API key. Real HTTP on loopback: a recording server plays the proxy or the API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracker.testing.loopback import LoopbackHandler, LoopbackServer
from tracker.upstream.base import TaskReport
from tracker.upstream.tensorslab import TensorsLabClient

API_KEY = "environment-test-key"
ANSWER = {"code": 1000, "msg": "ok", "data": {"taskid": "t1", "task_status": 2, "url": []}}


class _Handler(LoopbackHandler["Recorder"]):
    def respond(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.owner.seen.append((self.path, self.headers.get("Authorization")))
        self.send_whole(200, json.dumps(ANSWER).encode(), content_type="application/json")


class Recorder(LoopbackServer):
    """Answers every request with a processing task and records (path, Authorization)."""

    def __init__(self) -> None:
        super().__init__(host="127.0.0.1", port=0, handler=_Handler, name="the recorder")
        self.seen: list[tuple[str, str | None]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    with Recorder() as server:
        yield server


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "NETRC"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))


def test_a_proxy_from_the_environment_carries_the_polls(
    recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", recorder.url)
    client = TensorsLabClient(base_url="http://upstream.invalid", api_key=API_KEY)
    try:
        result = client.fetch("t1")
    finally:
        client.close()

    assert isinstance(result, TaskReport)
    # A proxy is asked for the absolute URL; the host itself is never looked up.
    assert recorder.seen == [("http://upstream.invalid/v1/video/infobytaskid", f"Bearer {API_KEY}")]


def test_no_proxy_hosts_are_asked_directly(
    recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # discard: nothing listens there
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    client = TensorsLabClient(base_url=recorder.url, api_key=API_KEY)
    try:
        result = client.fetch("t1")
    finally:
        client.close()

    assert isinstance(result, TaskReport)
    assert recorder.seen == [("/v1/video/infobytaskid", f"Bearer {API_KEY}")]


def test_a_netrc_entry_for_the_host_does_not_replace_the_api_key(
    recorder: Recorder, tmp_path: Path
) -> None:
    (tmp_path / ".netrc").write_text("machine 127.0.0.1 login someone password secret\n")
    (tmp_path / ".netrc").chmod(0o600)
    client = TensorsLabClient(base_url=recorder.url, api_key=API_KEY)
    try:
        client.fetch("t1")
        client.fetch("t1")
    finally:
        client.close()

    assert [auth for _, auth in recorder.seen] == [f"Bearer {API_KEY}"] * 2
