"""A conversation's own model and system prompt, export, share links, message actions and
highlighted code, in a real headless Chromium against real daphne + fakeai processes."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.chat_pages import (
    body_of,
    conversation_path,
    expect_connected,
    last_reply,
    messages,
    normalize,
    send,
    sign_up,
    unique_username,
    wait_for_status,
)

pytestmark = pytest.mark.e2e

BUILD_DIR = Path(__file__).resolve().parents[2] / "build" / "screenshots"
CODE_MESSAGE = "Look:\n```python\ndef greet(name):\n    return f'hi {name}'  # polite\n```\n"


def fakeai_requests(site) -> list[dict]:
    url = site.fakeai_url.removesuffix("/v1") + "/_fakeai/requests"
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def request_for(site, text: str) -> dict:
    """The newest chat request fakeai received whose last message is `text`."""
    for body in reversed(fakeai_requests(site)):
        if body["messages"][-1]["content"] == text:
            return body
    raise AssertionError(f"fakeai received no request ending with {text!r}")


def send_and_wait(page, text: str) -> None:
    send(page, text)
    wait_for_status(last_reply(page), "complete")


def open_menu(page) -> None:
    page.get_by_test_id("conversation-menu-toggle").click()
    expect(page.get_by_test_id("system-prompt-form")).to_be_visible()


def test_the_picked_model_and_system_prompt_reach_the_model(page, live_site):
    sign_up(page, live_site.url, unique_username("picker"))
    picker = page.get_by_test_id("model-picker")
    expect(picker).to_have_attribute("data-loaded", "true")
    # fakeai lists these; the default comes first.
    options = picker.locator("option")
    expect(options).to_have_text(["Default (fakeai)", "fakeai", "gpt-4o", "gpt-4o-mini"])
    expect(page.get_by_test_id("conversation-menu")).to_be_hidden()
    page.get_by_test_id("composer-input").fill("typed before picking")

    # Picking before the first message makes the conversation.
    picker.select_option("gpt-4o")

    expect(page).to_have_url(re.compile(r"/chat/\d+/$"))
    expect_connected(page)
    expect(page.get_by_test_id("model-picker")).to_have_value("gpt-4o")
    expect(page.get_by_test_id("composer-input")).to_have_value("typed before picking")
    open_menu(page)
    page.get_by_test_id("system-prompt-input").fill("Answer like a ship's captain.")
    page.get_by_test_id("system-prompt-submit").click()
    expect(page.get_by_test_id("flash")).to_contain_text("settings saved")
    expect_connected(page)
    text = f"where are we headed {unique_username('q')}"
    send_and_wait(page, text)

    sent = request_for(live_site, text)
    assert sent["model"] == "gpt-4o"
    assert sent["messages"][0] == {"role": "system", "content": "Answer like a ship's captain."}

    # Back to the site default, in place: the next request uses it.
    page.get_by_test_id("model-picker").select_option("")
    expect(page.get_by_test_id("model-picker")).to_have_attribute("data-saved", "")
    second = f"and now {unique_username('q')}"
    send_and_wait(page, second)
    assert request_for(live_site, second)["model"] == "fakeai"

    open_menu(page)
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=BUILD_DIR / "conversation-menu.png")


def test_a_conversation_downloads_as_markdown_and_json(page, live_site):
    sign_up(page, live_site.url, unique_username("export"))
    send_and_wait(page, "export me")  # a new chat: the menu follows its new id
    reply_text = normalize(body_of(last_reply(page)).inner_text())
    open_menu(page)

    with page.expect_download() as download:
        page.get_by_test_id("export-markdown").click()
    markdown = Path(download.value.path()).read_text()
    assert download.value.suggested_filename.endswith(".md")
    assert markdown.startswith("# export me\n")
    assert "## You · " in markdown and "\nexport me\n" in markdown
    assert "## Assistant · " in markdown and "Echo: export me (turn 1)" in markdown

    with page.expect_download() as download:
        page.get_by_test_id("export-json").click()
    data = json.loads(Path(download.value.path()).read_text())
    assert data["conversation"]["id"] == int(conversation_path(page).split("/")[2])
    user, reply = data["messages"]
    assert (user["role"], user["content"], user["status"]) == ("user", "export me", "complete")
    assert (reply["role"], reply["status"]) == ("assistant", "complete")
    assert normalize(reply["content"]) == reply_text
    assert reply["metrics"]["ttft_ms"] is not None and reply["metrics"]["tokens"] > 0
    assert reply["created_at"] and user["created_at"] <= reply["created_at"]


def test_a_share_link_reads_signed_out_until_it_is_revoked(page, browser, live_site):
    sign_up(page, live_site.url, unique_username("sharer"))
    send_and_wait(page, CODE_MESSAGE)
    open_menu(page)
    page.get_by_test_id("share-create").click()

    # Back on the page, the menu open, with the link.
    link = page.get_by_test_id("share-link")
    expect(link).to_be_visible()
    url = link.input_value()
    assert re.fullmatch(re.escape(live_site.url) + r"/share/[A-Za-z0-9_-]{32}/", url)

    stranger = browser.new_context()
    try:
        reader = stranger.new_page()
        response = reader.goto(url)
        assert response.status == 200
        expect(reader.get_by_test_id("shared-title")).to_have_text("Look:")
        expect(messages(reader, "assistant")).to_have_count(1)
        expect(body_of(messages(reader, "assistant"))).to_contain_text("Echo: Look:")
        expect(reader.locator(".hl-k", has_text="def")).to_be_visible()
        expect(reader.locator('meta[name="robots"]')).to_have_attribute(
            "content", "noindex, nofollow"
        )
        for absent in ("composer", "sidebar", "username", "conversation-menu", "retry-button"):
            expect(reader.get_by_test_id(absent)).to_have_count(0)
        expect(reader.get_by_test_id("nav-login")).to_be_visible()  # signed out

        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_test_id("share-revoke").click()
        expect(page.get_by_test_id("share-create")).to_be_attached()
        assert reader.reload().status == 404
    finally:
        stranger.close()


def test_copy_takes_the_whole_message_and_hovering_shows_the_local_time(page, live_site):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_site.url)
    sign_up(page, live_site.url, unique_username("copier"))
    send_and_wait(page, "first line\nsecond line")

    for reloaded in (False, True):  # a live message, then the stored one
        if reloaded:
            page.reload()
            expect_connected(page)
        reply = last_reply(page)
        reply.hover()
        reply.get_by_test_id("copy-message").click()
        expect(reply.get_by_test_id("copy-message")).to_have_text("Copied")
        copied = page.evaluate("navigator.clipboard.readText()")
        assert normalize(copied) == normalize(body_of(reply).inner_text())
        assert copied.startswith("Echo: first line\nsecond line (turn 1)")

        question = messages(page, "user").last
        question.hover()
        question.get_by_test_id("copy-message").click()
        assert page.evaluate("navigator.clipboard.readText()") == "first line\nsecond line"

        time = reply.get_by_test_id("message-time")
        expect(time).to_be_visible()
        expected = page.evaluate(
            """(iso) => new Date(iso).toLocaleString(undefined,
                 {dateStyle: "full", timeStyle: "medium"})""",
            time.get_attribute("datetime"),
        )
        expect(time).to_have_attribute("title", expected)


def test_code_blocks_are_highlighted_under_the_strict_csp(page_watch, live_site):
    page = page_watch.page
    sign_up(page, live_site.url, unique_username("coder"))
    send_and_wait(page, CODE_MESSAGE)

    for reloaded in (False, True):  # the live `complete` html, then the stored html
        if reloaded:
            page.reload()
            expect_connected(page)
        code = last_reply(page).locator("pre code.language-python")
        keyword = code.locator(".hl-k", has_text="def")
        expect(keyword).to_be_visible()
        expect(code.locator(".hl-c1")).to_have_text("# polite")
        colours = page.evaluate(
            "([a, b]) => [getComputedStyle(a).color, getComputedStyle(b).color]",
            [keyword.element_handle(), code.element_handle()],
        )
        assert colours[0] != colours[1], "the keyword is not coloured"
    # The dark theme (the toggle's data-theme) has colours of its own.
    page.evaluate("document.documentElement.dataset.theme = 'dark'")
    expect(keyword).to_have_css("color", "rgb(255, 123, 114)")
    page.evaluate("document.documentElement.dataset.theme = 'light'")
    expect(keyword).to_have_css("color", "rgb(0, 128, 0)")
    # page_watch fails the test on any CSP violation or script error.
