"""A long conversation in Chromium: older messages load on scroll; the reader keeps their place."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.chat_pages import expect_connected, messages, sign_up, unique_username
from tests.support import processes

pytestmark = pytest.mark.e2e

HISTORY = 130  # the page shows the newest 50 (CHAT_PAGE_MESSAGES)

SEED_HISTORY = """
from django.contrib.auth import get_user_model
from chat.models import Conversation, Message
user = get_user_model().objects.get(username={username!r})
c = Conversation.objects.create(owner=user, title="A long one")
for n in range({count}):
    role = "user" if n % 2 == 0 else "assistant"
    body = "\\n\\n".join([f"Message {{n}}."] + ["A line that takes up some room."] * (n % 3))
    Message.objects.create(conversation=c, role=role, content=body)
print(c.pk)
"""

# Where message `n` sits in the scrolling box, in pixels from the box's top.
OFFSET_IN_BOX_JS = """(n) => {
  const box = document.querySelector('[data-testid=message-list]');
  const node = [...document.querySelectorAll('[data-testid=message-body]')]
    .find((b) => b.textContent.trim().startsWith(`Message ${n}.`));
  return node.getBoundingClientRect().top - box.getBoundingClientRect().top;
}"""


def test_scrolling_up_loads_older_messages_without_moving_what_is_read(page, live_site):
    username = unique_username("history")
    sign_up(page, live_site.url, username)
    seed = SEED_HISTORY.format(username=username, count=HISTORY)
    output = processes.manage("shell", "--no-imports", "-c", seed, env=live_site.env)
    page.goto(f"{live_site.url}/chat/{int(output.split()[-1])}/")
    expect_connected(page)
    expect(messages(page, "user").or_(messages(page, "assistant"))).to_have_count(50)
    first_shown = HISTORY - 50
    expect(page.get_by_test_id("message-body").first).to_contain_text(f"Message {first_shown}.")

    # The reader scrolls up until the oldest shown message is in view, and reads it.
    page.get_by_test_id("message-body").first.scroll_into_view_if_needed()
    before = page.evaluate(OFFSET_IN_BOX_JS, first_shown)
    expect(page.get_by_test_id("message")).to_have_count(100)
    # The page above grew; the message being read stayed where it was.
    assert abs(page.evaluate(OFFSET_IN_BOX_JS, first_shown) - before) <= 1

    page.get_by_test_id("message-list").evaluate("(box) => { box.scrollTop = 0; }")
    expect(page.get_by_test_id("message")).to_have_count(HISTORY)
    expect(page.get_by_test_id("older-messages")).to_have_count(0)
    expect(page.get_by_test_id("message-body").first).to_contain_text("Message 0.")
    bodies = page.get_by_test_id("message-body").all_inner_texts()
    assert [b.split(".")[0] for b in bodies] == [f"Message {n}" for n in range(HISTORY)]
