"""Tabs of one person stay in sync; retry in place; the keyboard; an answer that does not jump."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from playwright.sync_api import Page, WebSocketRoute, expect

from tests.e2e.chat_pages import (
    CHAT_SOCKET,
    FAST_TOKENS,
    SLOW_TOKENS,
    body_of,
    conversation_path,
    create_conversation,
    expect_connected,
    expected_reply,
    last_reply,
    messages,
    normalize,
    send,
    sign_up,
    unique_username,
    wait_for_status,
    wait_until_streaming,
)
from tests.integration.test_multi_instance import cluster  # noqa: F401 (a fixture)

pytestmark = pytest.mark.e2e

STREAMING_NOTE = "A reply is streaming — press Escape or Stop to stop it."


def open_tab(page: Page, url: str) -> Page:
    """Another tab of the same browser (same session), connected."""
    tab = page.context.new_page()
    tab.goto(url)
    expect_connected(tab)
    return tab


def sidebar_link(page: Page, path: str):
    return page.locator(f'[data-testid=conversation-link][href="{path}"]')


# --- two tabs of one person ----------------------------------------------------------------
def test_a_message_and_its_live_reply_show_in_the_other_tab_which_can_stop_it(page, slow_site):
    sign_up(page, slow_site.url, unique_username("tabs"))
    send(page, "first question")
    wait_for_status(last_reply(page), "complete")
    path = conversation_path(page)
    other = open_tab(page, slow_site.url + path)

    send(page, "second question")

    expect(messages(other, "user")).to_have_count(2)
    assert body_of(messages(other, "user").last).inner_text() == "second question"
    wait_until_streaming(other, "Echo: second question")  # tokens arrive live
    expect(other.get_by_test_id("stop-button")).to_be_visible()
    other.get_by_test_id("stop-button").click()
    wait_for_status(last_reply(page), "cancelled")
    wait_for_status(last_reply(other), "cancelled")
    here_text = normalize(body_of(last_reply(page)).inner_text())
    assert normalize(body_of(last_reply(other)).inner_text()) == here_text
    full = expected_reply("first question", "second question", tokens=SLOW_TOKENS)
    assert full.startswith(here_text) and len(here_text) < len(full)
    for tab in (page, other):  # nothing drawn twice, in the sender or the other tab
        expect(messages(tab, "user")).to_have_count(2)
        expect(messages(tab, "assistant")).to_have_count(2)
        expect(tab.get_by_test_id("stop-button")).to_be_hidden()


def test_a_reply_that_completes_is_followed_to_the_end_in_the_other_tab(page, slow_site):
    sign_up(page, slow_site.url, unique_username("follow"))
    send(page, "opening line")
    wait_for_status(last_reply(page), "complete")
    other = open_tab(page, slow_site.url + conversation_path(page))

    send(page, "follow me")

    wait_until_streaming(other, "Echo: follow me")
    wait_for_status(last_reply(other), "complete")
    expect(last_reply(other).get_by_test_id("latency-badge")).to_be_visible()
    assert normalize(body_of(last_reply(other)).inner_text()) == expected_reply(
        "opening line", "follow me", tokens=SLOW_TOKENS
    )
    other.get_by_test_id("composer-input").fill("my turn")
    expect(other.get_by_test_id("send-button")).to_be_enabled()


def test_a_new_conversation_appears_in_the_sidebar_of_a_tab_showing_another(page, live_site):
    sign_up(page, live_site.url, unique_username("sidebar"))
    send(page, "older chat")
    wait_for_status(last_reply(page), "complete")
    older = conversation_path(page)
    other = open_tab(page, live_site.url + older)
    page.goto(f"{live_site.url}/chat/")
    expect_connected(page)

    send(page, "Brand new topic\nwith more")

    wait_for_status(last_reply(page), "complete")
    newer = conversation_path(page)
    expect(sidebar_link(other, newer)).to_contain_text("Brand new topic")
    expect(other.get_by_test_id("conversation-link").first).to_have_attribute("href", newer)
    expect(messages(other, "user")).to_have_count(1)  # the conversation shown is untouched
    assert conversation_path(other) == older


def test_rename_and_delete_in_one_tab_show_in_the_other(page, live_site):
    sign_up(page, live_site.url, unique_username("renamedel"))
    send(page, "name me")
    wait_for_status(last_reply(page), "complete")
    path = conversation_path(page)
    other = open_tab(page, live_site.url + path)

    page.get_by_test_id("conversation-menu").locator("summary").click()
    page.get_by_test_id("rename-input").fill("Renamed elsewhere")
    page.get_by_test_id("rename-submit").click()

    expect(other.get_by_test_id("chat-title")).to_have_text("Renamed elsewhere")
    expect(sidebar_link(other, path)).to_contain_text("Renamed elsewhere")

    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_test_id("conversation-menu").locator("summary").click()
    page.get_by_test_id("delete-button").click()

    expect(sidebar_link(other, path)).to_have_count(0)
    expect(other.get_by_test_id("empty-state")).to_be_visible()
    expect(other.get_by_test_id("notice")).to_contain_text("deleted in another window")
    expect(other).to_have_url(f"{live_site.url}/chat/")
    send(other, "a fresh start")  # the tab works on as a new chat
    wait_for_status(last_reply(other), "complete")
    assert conversation_path(other) != path


# --- retry -----------------------------------------------------------------------------------
def test_retry_regenerates_the_failed_answer_in_place(page, live_site):
    username = unique_username("retry")
    sign_up(page, live_site.url, username)
    # The first request to this model fails after 4 tokens; the same request again works.
    path = create_conversation(
        live_site, username, model=f"fakeai-{uuid.uuid4().hex[:8]}:fault=cut-4x1"
    )
    page.goto(live_site.url + path)
    expect_connected(page)
    send(page, "break once please")
    failed = last_reply(page)
    wait_for_status(failed, "error")
    failed_id = failed.get_attribute("data-message-id")
    other = open_tab(page, live_site.url + path)
    expect(messages(other, "assistant")).to_have_attribute("data-status", "error")

    failed.get_by_test_id("retry-button").click()

    for tab in (page, other):
        reply = last_reply(tab)
        wait_for_status(reply, "complete")
        expect(messages(tab, "user")).to_have_count(1)
        expect(messages(tab, "assistant")).to_have_count(1)
        assert reply.get_attribute("data-message-id") != failed_id
        assert normalize(body_of(reply).inner_text()) == expected_reply(
            "break once please", tokens=FAST_TOKENS
        )
        expect(tab.get_by_test_id("retry-button")).to_have_count(0)
    page.reload()  # the stored conversation holds the one answer
    expect(messages(page, "assistant")).to_have_count(1)
    expect(last_reply(page)).to_have_attribute("data-status", "complete")


# --- the keyboard ----------------------------------------------------------------------------
def test_send_is_disabled_while_the_box_is_empty_or_blank(page, live_site):
    sign_up(page, live_site.url, unique_username("blank"))
    composer, send_button = (
        page.get_by_test_id("composer-input"),
        page.get_by_test_id("send-button"),
    )
    expect(send_button).to_be_disabled()

    composer.fill("   \n\t ")
    expect(send_button).to_be_disabled()
    composer.press("Enter")
    expect(messages(page, "user")).to_have_count(0)

    composer.fill("  something  ")
    expect(send_button).to_be_enabled()
    composer.press("Enter")
    expect(messages(page, "user")).to_have_count(1)
    expect(send_button).to_be_disabled()  # the box is empty again


def test_enter_while_streaming_says_why_and_escape_stops_the_reply(page, slow_site):
    sign_up(page, slow_site.url, unique_username("escape"))
    send(page, "a long answer")
    wait_until_streaming(page)
    composer = page.get_by_test_id("composer-input")

    composer.fill("next question")
    composer.press("Enter")

    expect(page.get_by_test_id("notice")).to_have_text(STREAMING_NOTE)
    expect(composer).to_have_value("next question")
    expect(messages(page, "user")).to_have_count(1)
    composer.press("Escape")
    wait_for_status(last_reply(page), "cancelled")
    expect(page.get_by_test_id("send-button")).to_be_enabled()
    composer.press("Enter")
    expect(messages(page, "user")).to_have_count(2)


def test_escape_closes_an_open_menu_before_it_stops_a_reply(page, slow_site):
    sign_up(page, slow_site.url, unique_username("menu"))
    send(page, "first")
    wait_for_status(last_reply(page), "complete")
    send(page, "second, long")
    wait_until_streaming(page, "Echo: second")
    menu = page.get_by_test_id("conversation-menu")
    menu.locator("summary").click()
    expect(menu).to_have_attribute("open", "")

    page.keyboard.press("Escape")

    expect(menu).not_to_have_attribute("open", re.compile(".*"))
    expect(last_reply(page)).to_have_attribute("data-status", "streaming")
    page.keyboard.press("Escape")
    wait_for_status(last_reply(page), "cancelled")


# --- no jump when the final answer replaces the streamed text ----------------------------------
MARKDOWN_QUESTION = """Trip plan

## Day one
Leave early.
Bring **water** and `snacks`.

- tent
- stove
- maps

1. drive
2. hike

> Check the weather
> before leaving.

```python
def pack(items):
    return sorted(items)
```

| item | weight |
| :--- | ---: |
| tent | 2 kg |
| stove | 1 kg |

Last line, *done*."""


class HeldCompletion:
    """Routes the page's chat socket through the test and holds back `complete` frames."""

    def __init__(self, page: Page) -> None:
        self.route: WebSocketRoute | None = None
        self.held: list[str] = []
        page.route_web_socket(CHAT_SOCKET, self._route)

    def _route(self, route: WebSocketRoute) -> None:
        server = route.connect_to_server()
        self.route = route

        def from_server(message: str | bytes) -> None:
            if isinstance(message, str) and json.loads(message).get("type") == "complete":
                self.held.append(message)
            else:
                route.send(message)

        server.on_message(from_server)

    def release(self) -> None:
        assert self.route is not None and self.held, "no complete frame is held"
        for message in self.held:
            self.route.send(message)
        self.held.clear()


MEASURE_JS = """() => {
  const replies = document.querySelectorAll('[data-testid=message][data-role=assistant]');
  const box = document.getElementById('messages');
  return {
    height: replies[replies.length - 1].getBoundingClientRect().height,
    scrollTop: box.scrollTop,
    fromBottom: box.scrollHeight - box.scrollTop - box.clientHeight,
  };
}"""

STREAMED_TO_THE_END_JS = """() => new Promise((resolve) => {
  const last = [...document.querySelectorAll('[data-testid=message][data-role=assistant]')].pop();
  const done = last && last.dataset.status === 'streaming'
    && last.querySelector('[data-testid=message-body]').textContent.includes('(turn 1)');
  // Two frames: the buffered text is drawn and laid out.
  requestAnimationFrame(() => requestAnimationFrame(() => resolve(Boolean(done))));
})"""


def stream_markdown_reply_and_hold_its_end(page: Page, site_url: str) -> HeldCompletion:
    held = HeldCompletion(page)
    sign_up(page, site_url, unique_username("nojump"))
    send(page, MARKDOWN_QUESTION)
    page.wait_for_function(STREAMED_TO_THE_END_JS)
    for _ in range(100):  # Playwright hands frames over while the test waits
        if held.held:
            break
        page.wait_for_timeout(50)
    assert held.held, "no complete frame came"
    page.wait_for_function(STREAMED_TO_THE_END_JS)
    return held


def test_the_final_answer_takes_the_place_of_the_streamed_text_without_a_jump(page, live_site):
    held = stream_markdown_reply_and_hold_its_end(page, live_site.url)
    reply = last_reply(page)
    expect(body_of(reply).locator("ul li")).to_have_count(3)  # drawn as Markdown already
    expect(body_of(reply).locator(".code-block pre")).to_have_count(1)
    before = page.evaluate(MEASURE_JS)

    held.release()

    wait_for_status(reply, "complete")
    page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
    after = page.evaluate(MEASURE_JS)
    assert abs(after["height"] - before["height"]) <= 2, (before, after)
    assert before["fromBottom"] < 2 and after["fromBottom"] < 2, (before, after)
    assert abs(after["scrollTop"] - before["scrollTop"]) <= 4, (before, after)
    expect(reply.locator("table td.align-right")).to_have_count(2)  # the server's rendering
    expect(reply.get_by_test_id("latency-badge")).to_be_visible()


def test_a_reader_scrolled_up_stays_where_they_are_when_the_answer_is_swapped(page, live_site):
    held = stream_markdown_reply_and_hold_its_end(page, live_site.url)
    reply = last_reply(page)
    page.evaluate("() => { document.getElementById('messages').scrollTop -= 300; }")
    page.wait_for_timeout(50)
    before = page.evaluate(MEASURE_JS)
    assert before["fromBottom"] > 250, before

    held.release()

    wait_for_status(reply, "complete")
    page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
    after = page.evaluate(MEASURE_JS)
    assert after["scrollTop"] == before["scrollTop"], (before, after)
    assert abs(after["height"] - before["height"]) <= 2, (before, after)


# --- two tabs on two server processes (PostgreSQL + Redis) ---------------------------------------
def test_two_tabs_on_two_server_processes_stay_in_sync(page, request):
    """Tab one on the first daphne, tab two on the second: one database, one Redis.

    Cookies are per host, not port, so both tabs share the one login.
    """
    processes = request.getfixturevalue("cluster")  # tests/integration/test_multi_instance.py
    first, second = processes.first, processes.second
    sign_up(page, first, unique_username("procs"))
    send(page, "asked on the first process")
    wait_for_status(last_reply(page), "complete")
    path = conversation_path(page)
    other = open_tab(page, second + path)

    send(page, "while the other tab is on the second process")

    expect(messages(other, "user")).to_have_count(2)
    wait_until_streaming(other, "Echo: while the other tab")  # live, through Redis
    other.get_by_test_id("stop-button").click()
    wait_for_status(last_reply(page), "cancelled")
    wait_for_status(last_reply(other), "cancelled")
