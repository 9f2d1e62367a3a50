"""The sidebar in Chromium: the whole history loads on scroll; search finds and opens."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.chat_pages import expect_connected, sign_up, unique_username
from tests.support import processes

pytestmark = pytest.mark.e2e

SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
HISTORY = 230  # the sidebar lists 100 (CHAT_SIDEBAR_PAGE_CONVERSATIONS) at a time

SEED_CONVERSATIONS = """
from django.contrib.auth import get_user_model
from chat.models import Conversation
user = get_user_model().objects.get(username={username!r})
Conversation.objects.bulk_create(
    Conversation(owner=user, title=f"Conversation {{n:03}}") for n in range({count})
)
"""

SEED_SEARCHABLE = """
from django.contrib.auth import get_user_model
from chat.models import Conversation, Message
user = get_user_model().objects.get(username={username!r})
for title, question, answer in [
    ("Holiday plans", "Where should we go in May?", "The fjords of Norway are lovely in spring."),
    ("Kitchen", "How long do I boil an egg?", "About seven minutes for a firm yolk."),
    ("Garden", "When to plant tulips?", "In autumn, before the first frost."),
]:
    c = Conversation.objects.create(owner=user, title=title)
    Message.objects.create(conversation=c, role="user", content=question)
    Message.objects.create(conversation=c, role="assistant", content=answer)
"""


def seed(site, script: str, username: str, **values) -> None:
    processes.manage(
        "shell", "--no-imports", "-c", script.format(username=username, **values), env=site.env
    )


def scroll_sidebar_to_the_end(page) -> None:
    page.locator("#sidebar-nav").evaluate("(nav) => { nav.scrollTop = nav.scrollHeight; }")


def titles(page) -> list[str]:
    return page.locator("#conversation-list .conversation-title").all_inner_texts()


def test_the_sidebar_loads_the_whole_history_on_scroll(page, live_site):
    username = unique_username("sidebar")
    sign_up(page, live_site.url, username)
    seed(live_site, SEED_CONVERSATIONS, username, count=HISTORY)
    page.reload()
    expect_connected(page)
    links = page.get_by_test_id("conversation-link")
    expect(links).to_have_count(100)

    scroll_sidebar_to_the_end(page)
    expect(links).to_have_count(200)
    scroll_sidebar_to_the_end(page)
    expect(links).to_have_count(HISTORY)
    expect(page.get_by_test_id("conversation-more")).to_have_count(0)
    assert titles(page) == [f"Conversation {n:03}" for n in reversed(range(HISTORY))]


def test_the_phone_drawer_loads_more_on_scroll_and_opens_an_old_conversation(phone_page, live_site):
    page = phone_page
    username = unique_username("drawer")
    sign_up(page, live_site.url, username)
    seed(live_site, SEED_CONVERSATIONS, username, count=150)
    page.reload()
    expect_connected(page)
    page.get_by_test_id("sidebar-toggle").click()
    expect(page.get_by_test_id("sidebar")).to_be_visible()
    links = page.get_by_test_id("conversation-link")
    expect(links).to_have_count(100)
    scroll_sidebar_to_the_end(page)
    expect(links).to_have_count(150)
    oldest = page.get_by_role("link", name="Conversation 000")
    oldest.click()
    expect(page.get_by_test_id("chat-title")).to_have_text("Conversation 000")


def test_search_finds_a_conversation_by_its_content_and_opens_it(page, live_site):
    username = unique_username("search")
    sign_up(page, live_site.url, username)
    seed(live_site, SEED_SEARCHABLE, username)
    page.reload()
    expect_connected(page)

    box = page.get_by_test_id("conversation-search")
    box.fill("fjord")  # a word of an answer, not of any title
    results = page.get_by_test_id("search-result")
    expect(results).to_have_count(1)
    expect(results.first).to_contain_text("Holiday plans")
    expect(results.first.locator("mark")).to_have_text(["fjords"])
    expect(page.get_by_test_id("conversation-list")).to_be_hidden()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "sidebar-search.png"))

    results.first.click()
    expect(page.get_by_test_id("chat-title")).to_have_text("Holiday plans")
    expect(page.get_by_test_id("message-body").last).to_contain_text("fjords of Norway")


def test_search_by_keyboard_alone(page, live_site):
    username = unique_username("keys")
    sign_up(page, live_site.url, username)
    seed(live_site, SEED_SEARCHABLE, username)
    page.reload()
    expect_connected(page)
    page.get_by_test_id("message-list").focus()

    page.keyboard.press("/")
    box = page.get_by_test_id("conversation-search")
    expect(box).to_be_focused()
    page.keyboard.type("seven min")  # the last word is matched as it is typed
    expect(page.get_by_test_id("search-result")).to_have_count(1)
    page.keyboard.press("ArrowDown")
    expect(page.get_by_test_id("search-result").first).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("chat-title")).to_have_text("Kitchen")

    page.get_by_test_id("composer-input").focus()
    page.keyboard.press("Control+k")
    expect(box).to_be_focused()
    page.keyboard.type("nothing like this")
    expect(page.get_by_test_id("search-status")).to_contain_text("No conversations match")
    page.keyboard.press("Escape")
    expect(box).to_have_value("")
    expect(page.get_by_test_id("conversation-list")).to_be_visible()
    expect(page.get_by_test_id("conversation-link")).to_have_count(3)
