"""The dashboard in a real headless Chromium (Debian's, driven by Playwright) against a real
`tracker up` on PostgreSQL and Redis, the simulator and real webhook receivers.

The user's story: sign in with a token; watch three tasks end as completed, failed and
not_found while the table refreshes itself; open the completed one and find its video; see a
failing receiver's delivery with its attempt, and get it delivered with "Redeliver now"; add an
endpoint and see its secret once; rotate it; a forged CSRF token is refused; sign out. No page
logs a console error, and the browser never reaches past loopback (the video's result URL is
made up: `preload="none"`, and any request off the machine is aborted and fails the test).

With TRACKER_TEST_SCREENSHOTS=<folder> the same run saves the README's screenshots there.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Route,
    ViewportSize,
    expect,
    sync_playwright,
)

from tests.processes import Processes
from tracker import db, tokens
from tracker.db.clock import utc_now
from tracker.testing.receiver import Answer, WebhookReceiver
from tracker.testing.simulator import Simulator, Step, TaskScript

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
DEADLINE_S = 90
expect.set_options(timeout=30_000)  # generous: the machine may be busy
VIDEO_URL = "https://cdn.example.invalid/ui-done.mp4"
LAPTOP: ViewportSize = {"width": 1366, "height": 900}
# The elements that reach past the right edge, outside the ones that scroll on purpose.
WIDER_THAN_THE_SCREEN = """() => [...document.querySelectorAll("body *")]
  .filter(e => !e.closest(".scroll") && e.getBoundingClientRect().right > window.innerWidth + 1)
  .map(e => e.tagName + "." + e.className).slice(0, 5)"""
HIDE_THE_SECRET = """() => {
  const shown = document.getElementById("new-secret");
  if (shown) { shown.textContent = "whsec_" + "\u2022".repeat(32); }
}"""
PHONE: ViewportSize = {"width": 390, "height": 844}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _on_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return not url.startswith(("http:", "https:", "ws:", "wss:"))  # data:, blob:, about:


class Watched:
    """A page whose console errors, uncaught exceptions and off-machine requests are kept."""

    def __init__(
        self,
        browser: Browser,
        base: str,
        viewport: ViewportSize,
        *,
        signed_in_as: BrowserContext | None = None,
    ) -> None:
        self.base = base
        self.problems: list[str] = []
        state = signed_in_as.storage_state() if signed_in_as else None
        self.context = browser.new_context(viewport=viewport, storage_state=state)
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))

    def _route(self, route: Route) -> None:
        if _on_loopback(route.request.url):
            route.continue_()
        else:
            self.problems.append(f"request off the machine: {route.request.url}")
            route.abort()

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.problems.append(f"console error on {self.page.url}: {message.text}")

    def go(self, path: str) -> Page:
        self.page.goto(self.base + path)
        return self.page

    def shot(self, name: str, *, full_page: bool = True) -> None:
        folder = os.environ.get("TRACKER_TEST_SCREENSHOTS")
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            self.page.evaluate(HIDE_THE_SECRET)  # no secret in a committed picture
            self.page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=full_page)


def _until(
    what: str, check: Callable[[], Any], group: Processes, timeout_s: float = DEADLINE_S
) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        group.check_alive()
        last = check()
        if last:
            return last
        time.sleep(0.5)
    pytest.fail(f"{what}: not after {timeout_s} s (last: {last!r})\n{group.logs()}")


@pytest.fixture
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install chromium"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def test_the_dashboard_in_a_browser(
    clean_postgres_url: str,
    redis_url: str,
    simulator: Simulator,
    processes: Callable[..., Processes],
    browser: Browser,
) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    group = processes(
        database_url=clean_postgres_url,
        broker_url=redis_url,
        simulator=simulator,
        TRACKER_API_PORT=str(port),
        TRACKER_NOT_FOUND_GRACE_S="8",
        TRACKER_WEBHOOK_RETRY_SCHEDULE_S="600",  # after a failure, the next try is far off
    )
    group.start("up", "up", "--concurrency", "2")
    _until("the API answers", lambda: _answers(f"{base}/healthz"), group)
    with db.session_scope(clean_postgres_url) as session:
        token = tokens.create_token(session, "browser", now=utc_now()).secret
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {token}"

    with WebhookReceiver() as failing, WebhookReceiver() as second:
        failing.script(Answer(500, body="receiver down for maintenance"))  # then 200s
        watched = Watched(browser, base, LAPTOP)
        page = watched.go("/")
        assert page.url.startswith(f"{base}/signin")
        page.fill("#token", token)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/")
        expect(page.locator(".notice")).to_contain_text("signed in as browser")

        simulator.add_task(
            TaskScript(
                "ui-done",
                (Step(1, after_s=5), Step(2, after_s=4), Step(3)),
                urls=(VIDEO_URL,),
                details={"prompt": "a red fox in the snow", "resolution": "720p"},
            )
        )
        simulator.add_task(TaskScript("ui-fail", (Step(1, after_s=8), Step(4)), message="quota"))
        # Their clocks start now. ui-missing is never added: 404 until the grace period is over.
        registered = api.post(
            f"{base}/v1/tasks",
            json={
                "tasks": [
                    {
                        "task_id": "ui-done",
                        "webhook_url": f"{failing.url}/hooks",
                        "metadata": {"shot": 1},
                    },
                    {"task_id": "ui-fail"},
                    {"task_id": "ui-missing"},
                ]
            },
        )
        assert registered.status_code == 201, registered.text
        page = watched.go("/tasks")
        assert page.locator("tr[data-live]").count() >= 1  # something left to refresh
        page.evaluate("window.notReloaded = true")
        for task_id, status in (
            ("ui-done", "completed"),
            ("ui-fail", "failed"),
            ("ui-missing", "not_found"),
        ):
            row = page.locator(f'tr[data-task-id="{task_id}"][data-status="{status}"]')
            row.wait_for(timeout=DEADLINE_S * 1000)
        assert page.evaluate("window.notReloaded") is True  # the rows changed in place
        assert page.locator("tr[data-live]").count() == 0
        watched.shot("tasks")

        page.click('a:text-is("ui-done")')
        page.wait_for_url(f"{base}/tasks/ui-done")
        video = page.locator("video")
        assert video.get_attribute("src") == VIDEO_URL
        assert video.get_attribute("preload") == "none"
        assert "a red fox in the snow" in page.inner_text("body")  # the upstream details
        timeline = page.locator(".moves tbody tr")
        assert timeline.count() == 3  # registered > pending > processing > completed

        # The failing receiver's delivery and its attempt: 500, with what it answered.
        _until(
            "the delivery's first attempt",
            lambda: "receiver down" in watched.go("/tasks/ui-done").inner_text("#task-head"),
            group,
        )
        page = watched.page
        card = page.locator("details.delivery").first
        assert "pending" in card.inner_text()
        assert card.locator("td.code").first.inner_text() == "500"
        watched.shot("task")
        card.locator("button:text-is('Redeliver now')").click()
        page.wait_for_url(f"{base}/tasks/ui-done")
        expect(page.locator(".notice")).to_contain_text("is due now")

        def delivered() -> bool:
            shown = watched.go("/deliveries?status=delivered")
            return "ui-done" in shown.inner_text("main")

        _until("the delivery is delivered", delivered, group)
        page = watched.page
        page.locator("details.delivery summary").first.click()
        codes = page.locator("details.delivery").first.locator("td.code").all_inner_texts()
        assert codes == ["500", "200"]
        assert len(failing.wait_for(2, timeout_s=DEADLINE_S)) == 2
        watched.shot("deliveries")

        # An endpoint: its secret once, then a rotation shows a new one once.
        page = watched.go("/endpoints")
        page.fill("input[name=url]", f"{second.url}/hooks")
        page.click("button:text-is('Add endpoint')")
        first_secret = page.inner_text("#new-secret")
        assert first_secret.startswith("whsec_")
        page.locator("button.copy").wait_for(state="visible")  # the script shows it
        page.locator("button.copy").click()
        watched.shot("endpoints", full_page=False)
        page = watched.go("/endpoints")
        assert first_secret not in page.content()
        endpoint = page.locator("section.endpoint", has_text=second.url)
        endpoint.locator("button:text-is('Rotate secret')").click()
        new_secret = page.inner_text("#new-secret")
        assert new_secret.startswith("whsec_") and new_secret != first_secret
        second.set_secrets([new_secret])
        page = watched.go("/endpoints")
        page.locator("section.endpoint", has_text=second.url).locator(
            "button:text-is('Send test event')"
        ).click()
        expect(page.locator(".notice")).to_contain_text("answered 200")
        [test_event] = second.wait_for(1, timeout_s=DEADLINE_S)
        assert test_event.verified  # signed with the rotated secret

        # A forged CSRF token: 403, and the endpoint stays enabled.
        endpoint_id = re.search(r"#(\d+)", endpoint.locator(".num").inner_text())
        assert endpoint_id is not None
        forged = page.request.post(
            f"{base}/actions/endpoint-enabled",
            form={"csrf": "forged", "endpoint": endpoint_id.group(1), "enabled": "no"},
            max_redirects=0,
        )
        assert forged.status == 403
        assert (
            "disabled"
            not in watched.go("/endpoints")
            .locator("section.endpoint", has_text=second.url)
            .locator(".badge")
            .all_inner_texts()
        )

        page = watched.go("/")
        assert page.locator("svg.chart").count() >= 4
        assert page.locator(".processes .dot.alive").count() >= 2  # beat and a worker
        watched.shot("overview")

        phone = Watched(browser, base, PHONE, signed_in_as=watched.context)
        for path in ("/", "/tasks", "/deliveries", "/endpoints", "/tasks/ui-done"):
            wider = phone.go(path).evaluate(WIDER_THAN_THE_SCREEN)
            assert wider == [], f"{path} is wider than a phone's screen: {wider}"
        phone.shot("phone-task")
        assert phone.problems == []
        phone.context.close()

        # With scripts off, the forms still work: sign in and send a delivery again.
        plain = browser.new_context(viewport=LAPTOP, java_script_enabled=False)
        plain.route(
            "**/*",
            lambda route: route.continue_() if _on_loopback(route.request.url) else route.abort(),
        )
        plain_page = plain.new_page()
        plain_page.goto(f"{base}/deliveries?status=delivered&event=task.completed")
        plain_page.fill("#token", token)
        plain_page.click("button[type=submit]")
        plain_page.wait_for_url(f"{base}/deliveries?status=delivered&event=task.completed")
        assert not plain_page.locator("button.copy").is_visible()
        plain_page.locator("details.delivery summary").first.click()  # no script needed
        plain_page.locator("button:text-is('Redeliver')").first.click()
        expect(plain_page.locator(".notice")).to_contain_text("goes out again")
        assert len(failing.wait_for(3, timeout_s=DEADLINE_S)) == 3
        plain.close()

        page = watched.go("/tasks")
        page.click("button:text-is('Sign out')")
        page.wait_for_url(f"{base}/signin")
        watched.go("/deliveries")
        assert watched.page.url.startswith(f"{base}/signin?next=")
        assert watched.problems == []
        watched.context.close()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).ok
    except requests.ConnectionError:
        return False
