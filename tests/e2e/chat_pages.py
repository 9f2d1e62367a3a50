"""What the browser tests know about the pages: sizes, test ids, and small actions.

The data-testid contract lives in templates/ and static/js/chat.js; tests go
through these helpers so a markup change is fixed in one place.
"""

from __future__ import annotations

import json
import re
import uuid

from playwright.sync_api import Locator, Page, WebSocket, WebSocketRoute, expect

from fakeai.replies import reply_tokens, tokenize
from tests.conftest import LiveSite
from tests.support import processes

LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
PASSWORD = "pass-Word-123"

# A reply slow enough to watch stream, stop, or reload in the middle of:
# 60 tokens at 30 tokens/s take about two seconds.
SLOW_TTFT_MS = 200
SLOW_TPS = 30
SLOW_TOKENS = 60
# The session-wide site's fakeai (tests/conftest.py) answers at once with 12 tokens.
FAST_TOKENS = 12

# The newest assistant message is streaming and already shows `text`, but has
# no latency badge yet: checked in one go inside the page, so there is no race.
STREAMING_WITH_TEXT_JS = """(text) => {
  const replies = document.querySelectorAll('[data-testid=message][data-role=assistant]');
  const last = replies[replies.length - 1];
  return Boolean(last && last.dataset.status === 'streaming'
    && last.querySelector('[data-testid=message-body]').textContent.includes(text)
    && !last.querySelector('[data-testid=latency-badge]'));
}"""


def unique_username(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def expected_reply(*user_texts: str, tokens: int) -> str:
    """fakeai's deterministic answer to a conversation with these user turns."""
    messages = [{"role": "user", "content": text} for text in user_texts]
    return normalize("".join(reply_tokens(messages, tokens)))


def reply_prefix(user_text: str, *, tokens: int) -> str:
    """The first `tokens` tokens of fakeai's answer to a first turn."""
    return normalize("".join(tokenize(f"Echo: {user_text} (turn 1)")[:tokens]))


def create_conversation(site: LiveSite, username: str, *, model: str) -> str:
    """A conversation whose replies use `model`; fakeai reads speed and faults
    from a model-name suffix (fakeai/behaviour.py). Returns the page path."""
    code = (
        "from django.contrib.auth import get_user_model; "
        "from chat.models import Conversation; "
        f"user = get_user_model().objects.get(username={username!r}); "
        f"print(Conversation.objects.create(owner=user, model={model!r}).pk)"
    )
    output = processes.manage("shell", "--no-imports", "-c", code, env=site.env)
    return f"/chat/{int(output.split()[-1])}/"


def normalize(text: str) -> str:
    return " ".join(text.split())


def sign_up(page: Page, base_url: str, username: str) -> None:
    """Create an account through the sign-up form; lands on a connected chat page."""
    page.goto(f"{base_url}/accounts/signup/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password confirmation").fill(PASSWORD)
    page.get_by_test_id("signup-submit").click()
    expect(page).to_have_url(f"{base_url}/chat/")
    expect_connected(page)


def log_in(page: Page, base_url: str, username: str, password: str = PASSWORD) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_test_id("login-submit").click()


def expect_connected(page: Page) -> None:
    expect(page.get_by_test_id("connection-state")).to_have_attribute("data-state", "connected")


def send(page: Page, text: str) -> None:
    page.get_by_test_id("composer-input").fill(text)
    page.get_by_test_id("send-button").click()


def messages(page: Page, role: str) -> Locator:
    return page.locator(f'[data-testid=message][data-role="{role}"]')


def last_reply(page: Page) -> Locator:
    return messages(page, "assistant").last


def body_of(message: Locator) -> Locator:
    return message.get_by_test_id("message-body")


def wait_until_streaming(page: Page, text: str = "Echo:") -> None:
    """Wait until the newest reply shows `text` while still streaming."""
    page.wait_for_function(STREAMING_WITH_TEXT_JS, arg=text)


def wait_for_status(message: Locator, status: str) -> None:
    expect(message).to_have_attribute("data-status", status)


CHAT_SOCKET = re.compile(r"/ws/chat/$")


class ChatFrames:
    """Server events on the page's chat sockets, in arrival order, as Playwright sees them.

    Attach before the page opens its socket; sockets of later loads (reload,
    reconnect) are recorded too.
    """

    def __init__(self, page: Page) -> None:
        self.events: list[dict] = []
        self.sockets: list[WebSocket] = []
        page.on("websocket", self._opened)

    def _opened(self, socket: WebSocket) -> None:
        if CHAT_SOCKET.search(socket.url):
            self.sockets.append(socket)
            socket.on("framereceived", self._received)

    def _received(self, payload: str | bytes) -> None:
        if isinstance(payload, str):
            self.events.append(json.loads(payload))

    def types(self) -> list[str]:
        return [event["type"] for event in self.events]

    def wait_for(self, event_type: str) -> None:
        """Until an event of `event_type` arrived (Playwright delivers frames while it waits)."""
        while event_type not in self.types():
            self.sockets[-1].wait_for_event(
                "framereceived", predicate=lambda payload: f'"type":"{event_type}"' in payload
            )


class ChatSocketCutter:
    """Routes the page's chat sockets (or those matching `url`) through Playwright, so a
    test can cut one.

    Install before the page opens its socket. Every socket still reaches the
    real server (with the page's cookies and Origin); `cut()` closes the
    current one as a network failure would, and the page reconnects.
    """

    def __init__(self, page: Page, url: re.Pattern = CHAT_SOCKET) -> None:
        self.current: WebSocketRoute | None = None
        page.route_web_socket(url, self._route)

    def _route(self, route: WebSocketRoute) -> None:
        route.connect_to_server()
        self.current = route

    def cut(self) -> None:
        assert self.current is not None, "the page has not opened a socket to cut"
        self.current.close(code=4000, reason="cut by the test")


def conversation_path(page: Page) -> str:
    match = re.search(r"/chat/\d+/$", page.url)
    assert match, f"not on a conversation page: {page.url}"
    return match.group(0)


def create_exchange(site: LiveSite, username: str, *, question: str, answer: str) -> str:
    """A finished question and answer in a new conversation of `username`; its page path."""
    code = (
        "from django.contrib.auth import get_user_model; "
        "from chat.models import Conversation, Message; "
        f"user = get_user_model().objects.get(username={username!r}); "
        "c = Conversation.objects.create(owner=user, title='Seeded'); "
        f"Message.objects.create(conversation=c, role='user', content={question!r}); "
        f"Message.objects.create(conversation=c, role='assistant', content={answer!r}); "
        "print(c.pk)"
    )
    output = processes.manage("shell", "--no-imports", "-c", code, env=site.env)
    return f"/chat/{int(output.split()[-1])}/"
