"""The dashboard served in this process by FastAPI's TestClient, on SQLite and PostgreSQL, and
a way to sign in through its own form (the CSRF token read from the page, as a browser would)."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from tests.conftest import Configure
from tracker import db, tokens
from tracker.api import create_app
from tracker.db.clock import utc_now

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def error_of(html: str) -> str:
    """The message of an error page (or of the sign-in form)."""
    found = re.search(r'<p class="error-message"[^>]*>(.*?)</p>', html, re.S)
    assert found, "the page shows no error"
    return found.group(1)


@dataclass
class Dashboard:
    client: TestClient
    token: str
    token_id: int

    def sign_in(self, token: str | None = None) -> None:
        page = self.client.get("/signin")
        answer = self.client.post(
            "/signin", data={"csrf": csrf_of(page.text), "token": token or self.token}
        )
        assert answer.status_code == 303, answer.text

    def csrf(self, path: str = "/tasks") -> str:
        return csrf_of(self.client.get(path).text)

    def post(self, path: str, **fields: str) -> httpx.Response:
        answer: httpx.Response = self.client.post(path, data={"csrf": self.csrf(), **fields})
        return answer


@pytest.fixture
def dashboard(database_url: str, configure: Configure) -> Iterator[Dashboard]:
    configure(TRACKER_DATABASE_URL=database_url, TRACKER_WEBHOOK_ALLOWED_NETWORKS="127.0.0.0/8")
    with db.session_scope() as session:
        created = tokens.create_token(session, "dashboard tests", now=utc_now())
    app = create_app()
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as client:
        yield Dashboard(client, created.secret, created.token.id)


@pytest.fixture
def served(dashboard: Dashboard) -> Iterator[httpx.Client]:
    """The same app behind a real uvicorn on loopback: TestClient decodes a path twice, so only
    a real server shows what a browser gets for `%252F`."""
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(dashboard.client.app, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    port = listening.getsockname()[1]
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        listening.close()
