"""The latency dashboard in Chromium: a staff member sees an answer's latency charted."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import expect

from tests.e2e.chat_pages import expect_connected, last_reply, log_in, send
from tests.support import processes

BUILD_DIR = Path(__file__).resolve().parents[2] / "build"


def make_staff(site, username: str) -> None:
    site.create_user(username)
    code = (
        "from django.contrib.auth import get_user_model; "
        f"get_user_model().objects.filter(username={username!r}).update(is_staff=True)"
    )
    processes.manage("shell", "--no-imports", "-c", code, env=site.env)


def test_staff_see_the_latency_of_an_answer_they_just_had(page, live_site):
    make_staff(live_site, "operator")
    log_in(page, live_site.url, "operator")
    expect_connected(page)
    send(page, "How fast are you?")
    expect(last_reply(page)).to_have_attribute("data-status", "complete", timeout=15_000)

    page.get_by_test_id("nav-latency").click()
    ttft = page.locator('[data-testid=series][data-title="Time to first token"]')
    expect(ttft.get_by_test_id("count")).not_to_have_text("0")
    expect(ttft.locator("svg polyline").first).to_be_attached()
    BUILD_DIR.mkdir(exist_ok=True)
    page.screenshot(path=BUILD_DIR / "latency-dashboard.png", full_page=True)
