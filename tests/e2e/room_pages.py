"""What the browser tests know about the room pages: test ids, fakeai's answers, small actions.

The data-testid contract lives in templates/rooms/ and static/js/room.js.
"""

from __future__ import annotations

import json
import re

from playwright.sync_api import Locator, Page, WebSocketRoute, expect

from fakeai.replies import reply_tokens
from tests.e2e.chat_pages import expect_connected, normalize

ROOM_SOCKET = re.compile(r"/ws/room/[^/]+/$")


def create_room(page: Page, base_url: str, name: str, *, private: bool = False) -> str:
    """Create a room through the form (the AI answers every message); lands in it. Its path."""
    page.goto(f"{base_url}/rooms/")
    page.get_by_test_id("new-room").click()
    page.get_by_label("Name").fill(name)
    page.get_by_label("Private" if private else "Public", exact=False).check()
    page.get_by_test_id("create-room").click()
    expect(page.get_by_test_id("room-title")).to_have_text(name)
    expect_connected(page)
    return re.sub(r"^https?://[^/]+", "", page.url)


def enter_room(page: Page, base_url: str, path: str) -> None:
    page.goto(base_url + path)
    expect_connected(page)


def ai_reply_to(*messages: tuple[str, str], tokens: int) -> str:
    """fakeai's answer in a room whose people said `messages`: (username, text) pairs, in order.

    The AI's prompt gives each person's message as "username: text".
    """
    prompt = [{"role": "user", "content": f"{who}: {text}"} for who, text in messages]
    return normalize("".join(reply_tokens(prompt, tokens)))


def room_messages(page: Page, role: str | None = None) -> Locator:
    if role is None:
        return page.get_by_test_id("message")
    return page.locator(f'[data-testid=message][data-role="{role}"]')


def last_ai_reply(page: Page) -> Locator:
    return room_messages(page, "assistant").last


def text_of(message: Locator) -> str:
    return normalize(message.get_by_test_id("message-body").inner_text())


def participants(page: Page) -> Locator:
    return page.get_by_test_id("participant-name")


# The newest AI reply is streaming and shows `text` so far (checked in the page, at once).
AI_STREAMING_WITH_TEXT_JS = """(text) => {
  const replies = document.querySelectorAll('[data-testid=message][data-role=assistant]');
  const last = replies[replies.length - 1];
  return Boolean(last && last.dataset.status === 'streaming'
    && last.querySelector('[data-testid=message-body]').textContent.includes(text));
}"""


def wait_until_ai_streams(page: Page, text: str = "Echo:") -> None:
    page.wait_for_function(AI_STREAMING_WITH_TEXT_JS, arg=text)


# Records every text the newest AI reply shows while it streams, with the number of
# the socket it came on (1 for the first connection, 2 after one reconnect...).
RECORD_STREAMED_TEXTS_JS = """() => {
  window.__streamed = [];
  const connection = document.querySelector('[data-testid=connection-state]');
  let socket = 0;
  let connected = false;
  const countSockets = () => {
    const now = connection.dataset.state === 'connected';
    if (now && !connected) socket += 1;
    connected = now;
  };
  countSockets();
  new MutationObserver(countSockets).observe(connection, {attributes: true});
  const list = document.querySelector('[data-testid=message-list]');
  new MutationObserver(() => {
    const replies = list.querySelectorAll('[data-testid=message][data-role=assistant]');
    const last = replies[replies.length - 1];
    if (last && last.dataset.status === 'streaming') {
      const text = last.querySelector('[data-testid=message-body]').textContent;
      window.__streamed.push({socket, text});
    }
  }).observe(list, {subtree: true, childList: true, characterData: true, attributes: true});
}"""


def record_streamed_texts(page: Page) -> None:
    page.evaluate(RECORD_STREAMED_TEXTS_JS)


def streamed_texts(page: Page) -> list[tuple[int, str]]:
    """(socket number, the reply's text) each time it changed while streaming, in order."""
    return [
        (record["socket"], normalize(record["text"]))
        for record in page.evaluate("window.__streamed")
        if record["text"].strip().startswith("Echo:")
    ]


class DropFirstServerEvent:
    """Routes the page's room sockets through Playwright and drops the first server
    event of `event_type`, as a server that lost it would. Install before the page
    opens its socket."""

    def __init__(self, page: Page, event_type: str) -> None:
        self.event_type = event_type
        self.dropped = False
        page.route_web_socket(ROOM_SOCKET, self._route)

    def _route(self, route: WebSocketRoute) -> None:
        server = route.connect_to_server()

        def forward(message: str | bytes) -> None:
            wanted = isinstance(message, str) and json.loads(message)["type"] == self.event_type
            if wanted and not self.dropped:
                self.dropped = True
                return
            route.send(message)

        server.on_message(forward)
