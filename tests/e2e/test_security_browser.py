"""The Content-Security-Policy as a real browser enforces it on the real pages."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.chat_pages import (
    ChatFrames,
    last_reply,
    send,
    sign_up,
    unique_username,
    wait_for_status,
    wait_until_streaming,
)

pytestmark = pytest.mark.e2e


def test_a_streaming_reply_causes_no_csp_violation(page_watch, slow_site):
    page = page_watch.page
    frames = ChatFrames(page)
    with page.expect_response(f"{slow_site.url}/accounts/signup/") as signup_page:
        sign_up(page, slow_site.url, unique_username("csp"))
    policy = signup_page.value.header_value("content-security-policy")

    send(page, "stream under a strict policy\n\n| a | b |\n|:-:|--:|\n| 1 | 2 |")
    wait_until_streaming(page)
    wait_for_status(last_reply(page), "complete")
    frames.wait_for("complete")

    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    assert frames.types().count("token") > 0
    assert page_watch.csp_violations == []
    assert page_watch.errors == []


def test_the_browser_refuses_an_inline_style_and_reports_it(page_watch, live_site):
    page = page_watch.page
    sign_up(page, live_site.url, unique_username("cspstyle"))

    page.evaluate("document.body.setAttribute('style', 'outline: 7px solid red')")

    expect(page.locator("body")).to_have_attribute("style", "outline: 7px solid red")
    assert page.evaluate("getComputedStyle(document.body).outlineWidth") != "7px"
    assert page_watch.csp_violations == ["style-src-attr blocked inline"]
    page_watch.csp_violations.clear()  # seen and expected: the fixture checks for others


def test_the_browser_refuses_an_inline_script_and_reports_it(page_watch, live_site):
    page = page_watch.page
    sign_up(page, live_site.url, unique_username("cspscript"))

    page.evaluate(
        """() => {
          const script = document.createElement("script");
          script.textContent = "window.injected = true";
          document.body.append(script);
        }"""
    )

    assert page.evaluate("window.injected === undefined")
    assert page_watch.csp_violations == ["script-src-elem blocked inline"]
    page_watch.csp_violations.clear()
