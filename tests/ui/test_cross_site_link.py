"""A link to the dashboard followed from another site, in Debian's headless Chromium.

The session cookie is SameSite=Strict, so the browser leaves it out of that first request. The
dashboard must neither send such a visitor to sign in again nor replace the session it holds
back; a browser with no session still ends on the sign-in page, once.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, sync_playwright

from tests.ui.conftest import Dashboard
from tests.ui.test_browser import CHROMIUM, CHROMIUM_ARGS


class _LinkPage(http.server.BaseHTTPRequestHandler):
    target = ""
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        body = f'<!doctype html><a id="go" href="{self.target}">the dashboard</a>'.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def elsewhere(served: httpx.Client) -> Iterator[str]:
    """Another site (`localhost` is not the site of `127.0.0.1`) with a link to /endpoints."""
    target = f"{str(served.base_url).rstrip('/')}/endpoints"
    handler = type("Link", (_LinkPage,), {"target": target})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def page() -> Iterator[Page]:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page()
        finally:
            browser.close()


def _follow_the_link(page: Page, elsewhere: str) -> None:
    page.goto(elsewhere)
    with page.expect_navigation():
        page.click("#go")
    page.wait_for_load_state("load")


def test_a_signed_in_browser_following_a_link_from_another_site_stays_signed_in(
    dashboard: Dashboard, served: httpx.Client, elsewhere: str, page: Page
):
    base = str(served.base_url).rstrip("/")
    page.goto(f"{base}/signin")
    page.fill("#token", dashboard.token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")
    _follow_the_link(page, elsewhere)
    page.wait_for_url(f"{base}/endpoints", timeout=30_000)
    assert page.locator("h1").inner_text() == "Endpoints"
    page.goto(f"{base}/tasks")  # the session is still the one signed in
    assert page.url == f"{base}/tasks"


def test_a_signed_out_browser_following_a_link_from_another_site_is_asked_to_sign_in(
    served: httpx.Client, elsewhere: str, page: Page
):
    base = str(served.base_url).rstrip("/")
    _follow_the_link(page, elsewhere)
    page.wait_for_url(f"{base}/signin?next=%2Fendpoints", timeout=30_000)
    assert page.locator("#token").is_visible()
