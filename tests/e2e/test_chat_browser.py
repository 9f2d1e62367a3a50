"""The chat product in a real headless Chromium against real daphne + fakeai processes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.chat_pages import (
    FAST_TOKENS,
    LAPTOP,
    PASSWORD,
    PHONE,
    SLOW_TOKENS,
    ChatFrames,
    ChatSocketCutter,
    body_of,
    conversation_path,
    create_conversation,
    expect_connected,
    expected_reply,
    last_reply,
    log_in,
    messages,
    normalize,
    reply_prefix,
    send,
    sign_up,
    unique_username,
    wait_for_status,
    wait_until_streaming,
)
from tests.support import processes

pytestmark = pytest.mark.e2e

# Written into the build folder; copied into docs/screenshots/ by hand when they change,
# so a test run never modifies tracked files.
SCREENSHOT_DIR = Path(__file__).resolve().parents[2] / "build" / "screenshots"


# --- accounts ------------------------------------------------------------------------
def test_sign_up_through_the_form_lands_on_a_connected_chat_page(page, live_site):
    username = unique_username("signup")

    sign_up(page, live_site.url, username)

    expect(page.get_by_test_id("username")).to_have_text(username)
    expect(page.get_by_test_id("empty-state")).to_be_visible()
    expect(page.get_by_test_id("model-badge")).to_have_text("demo model")
    expect(page.get_by_test_id("nav-admin")).to_have_count(0)  # not staff


def test_sign_up_shows_field_errors_when_passwords_differ(page, live_site):
    page.goto(f"{live_site.url}/accounts/signup/")
    page.get_by_label("Username").fill(unique_username("mismatch"))
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password confirmation").fill(PASSWORD + "x")

    page.get_by_test_id("signup-submit").click()

    expect(page).to_have_url(f"{live_site.url}/accounts/signup/")
    expect(page.get_by_test_id("field-error")).to_contain_text("didn’t match")


def test_log_in_redirects_back_to_the_chat_page(page, live_site):
    username = unique_username("login")
    live_site.create_user(username, PASSWORD)
    page.goto(f"{live_site.url}/chat/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/chat/$"))

    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_test_id("login-submit").click()

    expect(page).to_have_url(f"{live_site.url}/chat/")
    expect(page.get_by_test_id("username")).to_have_text(username)
    expect_connected(page)


def test_log_in_with_a_wrong_password_shows_an_error(page, live_site):
    log_in(page, live_site.url, unique_username("nobody"), "wrong-password")

    expect(page.get_by_test_id("form-errors")).to_contain_text("correct username and password")


def test_log_out_is_a_post_that_returns_to_the_login_page(page, live_site):
    sign_up(page, live_site.url, unique_username("logout"))

    page.get_by_test_id("logout-button").click()

    expect(page).to_have_url(f"{live_site.url}/accounts/login/")
    expect(page.get_by_test_id("nav-signup")).to_be_visible()
    page.goto(f"{live_site.url}/chat/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/chat/$"))


def test_logging_out_in_one_tab_sends_the_other_tab_to_the_login_page(page, live_site):
    sign_up(page, live_site.url, unique_username("twotabs"))
    other_tab = page.context.new_page()
    other_tab.goto(f"{live_site.url}/chat/")
    expect_connected(other_tab)

    page.get_by_test_id("logout-button").click()

    expect(page).to_have_url(f"{live_site.url}/accounts/login/")
    # Its socket closed with 4401 the moment the session ended: no reload needed.
    expect(other_tab).to_have_url(re.compile(r"/accounts/login/\?next=%2Fchat%2F$"))


def test_a_socket_refused_as_logged_out_sends_the_browser_to_the_login_page(page, live_site):
    cutter = ChatSocketCutter(page)
    sign_up(page, live_site.url, unique_username("expired"))
    page.context.clear_cookies()

    cutter.cut()  # the page reconnects, now without a session

    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=%2Fchat%2F$"))


# --- streaming a reply -----------------------------------------------------------------
def test_tokens_arrive_and_show_before_the_reply_completes(page, slow_site):
    frames = ChatFrames(page)
    sign_up(page, slow_site.url, unique_username("stream"))

    send(page, "watch me stream")

    wait_until_streaming(page)  # partial text, no badge yet
    reply = last_reply(page)
    wait_for_status(reply, "complete")
    expect(reply.get_by_test_id("latency-badge")).to_be_visible()
    frames.wait_for("complete")
    kinds = frames.types()
    token_positions = [i for i, kind in enumerate(kinds) if kind == "token"]
    assert kinds[0] == "ack"
    assert kinds.index("complete") > token_positions[-1]
    # At 30 tokens/s the server keeps up: frames carry one token each, or a
    # few when it fell behind; the last one's index is the last token's.
    indexes = [event["index"] for event in frames.events if event["type"] == "token"]
    assert len(indexes) > SLOW_TOKENS // 2
    assert indexes == sorted(set(indexes)) and indexes[-1] == SLOW_TOKENS - 1


def test_the_final_answer_is_fakeai_text_rendered_as_html_with_a_latency_badge(page, live_site):
    sign_up(page, live_site.url, unique_username("answer"))

    send(page, "hello world")

    reply = last_reply(page)
    wait_for_status(reply, "complete")
    paragraph = body_of(reply).locator("p")
    expect(paragraph).to_have_count(1)
    assert normalize(paragraph.inner_text()) == expected_reply("hello world", tokens=FAST_TOKENS)
    badge = reply.get_by_test_id("latency-badge")
    expect(badge).to_contain_text(re.compile(r"TTFT \d+ ms"))
    expect(badge).to_contain_text(f"{FAST_TOKENS} tokens")
    expect(page.get_by_test_id("stop-button")).to_be_hidden()
    page.get_by_test_id("composer-input").fill("next")
    expect(page.get_by_test_id("send-button")).to_be_enabled()


def test_the_first_message_turns_the_page_into_a_saved_conversation(page, live_site):
    sign_up(page, live_site.url, unique_username("newconv"))

    send(page, "Plan a picnic\nwith details")

    wait_for_status(last_reply(page), "complete")
    path = conversation_path(page)
    current = page.locator("[data-testid=conversation-link][aria-current=page]")
    expect(current).to_have_attribute("href", path)
    expect(current).to_contain_text("Plan a picnic")
    expect(page.get_by_test_id("chat-title")).to_have_text("Plan a picnic")


def test_stopping_a_slow_reply_keeps_its_partial_text_and_frees_send(page, slow_site):
    sign_up(page, slow_site.url, unique_username("stop"))
    send(page, "stop me early")
    wait_until_streaming(page, "Echo: stop me early")

    page.get_by_test_id("stop-button").click()

    reply = last_reply(page)
    wait_for_status(reply, "cancelled")
    expect(reply.get_by_test_id("message-stopped")).to_have_text("stopped")
    partial = normalize(body_of(reply).inner_text())
    full = expected_reply("stop me early", tokens=SLOW_TOKENS)
    assert partial.startswith("Echo: stop me early")
    assert full.startswith(partial) and len(partial) < len(full)
    expect(page.get_by_test_id("stop-button")).to_be_hidden()
    send(page, "and again")
    expect(messages(page, "assistant")).to_have_count(2)


def test_reloading_shows_the_stored_history_with_its_badge(page, live_site):
    sign_up(page, live_site.url, unique_username("history"))
    send(page, "remember\nthis")
    wait_for_status(last_reply(page), "complete")
    path = conversation_path(page)

    page.reload()

    expect_connected(page)
    assert conversation_path(page) == path
    user = messages(page, "user")
    expect(user).to_have_count(1)
    assert body_of(user).inner_text() == "remember\nthis"  # line break kept
    reply = last_reply(page)
    expect(reply).to_have_attribute("data-status", "complete")
    assert normalize(body_of(reply).inner_text()) == expected_reply(
        "remember\nthis", tokens=FAST_TOKENS
    )
    expect(reply.get_by_test_id("latency-badge")).to_contain_text(f"{FAST_TOKENS} tokens")
    expect(page.locator("[data-testid=conversation-link][aria-current=page]")).to_have_count(1)


def test_reloading_during_a_reply_continues_it_live(page, slow_site):
    sign_up(page, slow_site.url, unique_username("reload"))
    send(page, "survive a reload")
    wait_until_streaming(page)
    frames = ChatFrames(page)  # from here on: what the reloaded page receives

    page.reload()

    reply = last_reply(page)
    wait_for_status(reply, "complete")
    assert normalize(body_of(reply).inner_text()) == expected_reply(
        "survive a reload", tokens=SLOW_TOKENS
    )
    frames.wait_for("complete")
    assert "token" in frames.types(), "the reloaded page should have followed the live stream"
    expect(messages(page, "assistant")).to_have_count(1)


def test_a_dropped_socket_reconnects_and_resumes_the_same_bubble(page, slow_site):
    cutter = ChatSocketCutter(page)
    sign_up(page, slow_site.url, unique_username("resume"))
    send(page, "keep going")
    wait_until_streaming(page)

    cutter.cut()

    expect(page.get_by_test_id("connection-state")).to_have_attribute("data-state", "reconnecting")
    reply = last_reply(page)
    wait_for_status(reply, "complete")
    expect_connected(page)
    assert normalize(body_of(reply).inner_text()) == expected_reply(
        "keep going", tokens=SLOW_TOKENS
    )
    expect(messages(page, "assistant")).to_have_count(1)


def test_a_failed_reply_keeps_its_partial_text_and_retry_replaces_it(page, live_site):
    username = unique_username("fault")
    sign_up(page, live_site.url, username)
    path = create_conversation(live_site, username, model="fakeai:fault=cut-4")
    page.goto(live_site.url + path)
    expect_connected(page)

    send(page, "break please")

    reply = messages(page, "assistant").first
    wait_for_status(reply, "error")
    expect(reply.get_by_test_id("message-error")).to_be_visible()
    assert normalize(body_of(reply).inner_text()) == reply_prefix("break please", tokens=4)
    failed_id = reply.get_attribute("data-message-id")
    page.get_by_test_id("retry-button").click()
    # The same question is asked again: no second copy of it, and the new
    # answer (which fails the same way with this model) takes the old one's place.
    expect(messages(page, "assistant")).not_to_have_attribute("data-message-id", failed_id)
    wait_for_status(messages(page, "assistant"), "error")
    expect(messages(page, "user")).to_have_count(1)
    expect(messages(page, "assistant")).to_have_count(1)
    expect(page.get_by_test_id("retry-button")).to_have_count(1)


def test_a_refused_message_shows_a_notice_and_goes_back_to_the_composer(page, live_site):
    username = unique_username("refused")
    sign_up(page, live_site.url, username)
    path = create_conversation(live_site, username, model="fakeai")
    page.goto(live_site.url + path)
    expect_connected(page)
    # Deleted behind the page's back (no open tab is told of a shell's delete).
    conversation_id = int(path.split("/")[2])
    processes.manage(
        "shell", "--no-imports", "-c",
        "from chat.models import Conversation; "
        f"Conversation.objects.filter(pk={conversation_id}).delete()",
        env=live_site.env,
    )  # fmt: skip

    send(page, "anyone there?")

    expect(page.get_by_test_id("notice")).to_contain_text("No such conversation")
    expect(page.get_by_test_id("composer-input")).to_have_value("anyone there?")
    expect(messages(page, "user")).to_have_count(0)
    expect(page.get_by_test_id("send-button")).to_be_enabled()


# --- composing ---------------------------------------------------------------------------
def test_enter_sends_and_shift_enter_inserts_a_newline(page, live_site):
    sign_up(page, live_site.url, unique_username("keys"))
    composer = page.get_by_test_id("composer-input")

    composer.type("first line")
    composer.press("Shift+Enter")
    composer.type("second line")

    expect(composer).to_have_value("first line\nsecond line")
    expect(messages(page, "user")).to_have_count(0)

    composer.press("Enter")

    expect(messages(page, "user")).to_have_count(1)
    assert body_of(messages(page, "user")).inner_text() == "first line\nsecond line"
    expect(composer).to_have_value("")
    wait_for_status(last_reply(page), "complete")


# --- conversations ---------------------------------------------------------------------
def test_renaming_a_conversation_updates_its_title(page, live_site):
    sign_up(page, live_site.url, unique_username("rename"))
    send(page, "name me")
    wait_for_status(last_reply(page), "complete")

    page.get_by_test_id("conversation-menu").locator("summary").click()
    page.get_by_test_id("rename-input").fill("Renamed chat")
    page.get_by_test_id("rename-submit").click()

    expect(page.get_by_test_id("chat-title")).to_have_text("Renamed chat")
    expect(page.locator("[data-testid=conversation-link][aria-current=page]")).to_contain_text(
        "Renamed chat"
    )


def test_deleting_a_conversation_asks_first_then_removes_it(page, live_site):
    sign_up(page, live_site.url, unique_username("delete"))
    send(page, "delete me")
    wait_for_status(last_reply(page), "complete")
    dialogs: list[str] = []

    def accept(dialog):
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)

    page.get_by_test_id("conversation-menu").locator("summary").click()
    page.get_by_test_id("delete-button").click()

    expect(page).to_have_url(f"{live_site.url}/chat/")
    expect(page.get_by_test_id("flash")).to_contain_text("Conversation deleted.")
    expect(page.get_by_test_id("conversation-empty")).to_be_visible()
    assert dialogs and "Delete this conversation" in dialogs[0]


def test_api_tokens_are_shown_once_with_usage_and_can_be_revoked(page, live_site):
    sign_up(page, live_site.url, unique_username("tokens"))
    page.goto(f"{live_site.url}/chat/tokens/")

    page.get_by_test_id("token-name").fill("laptop")
    page.get_by_test_id("token-create").click()

    key = page.get_by_test_id("new-token-key").inner_text()
    assert key.startswith("rt_")
    expect(page.get_by_test_id("new-token")).to_contain_text(f"--token {key}")
    expect(page.get_by_test_id("new-token")).to_contain_text(f"Authorization: Bearer {key}")
    expect(page.get_by_test_id("token-row")).to_contain_text("laptop")
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_test_id("token-revoke").click()
    expect(page.get_by_test_id("flash")).to_contain_text("Token revoked.")
    expect(page.get_by_test_id("token-empty")).to_be_visible()


# --- layout ------------------------------------------------------------------------------
def test_on_a_phone_the_sidebar_hides_behind_a_toggle(phone_page, live_site):
    page = phone_page
    sign_up(page, live_site.url, unique_username("phone"))
    sidebar = page.get_by_test_id("sidebar")
    toggle = page.get_by_test_id("sidebar-toggle")
    expect(sidebar).to_be_hidden()

    toggle.click()

    expect(sidebar).to_be_visible()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    page.keyboard.press("Escape")
    expect(sidebar).to_be_hidden()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


MARKDOWN_REPLY = """Use a loop that doubles the wait after each failure and adds **jitter**, \
so many clients don't retry in lockstep:

```python
import random, time
import httpx

def get_with_retry(url: str, attempts: int = 5) -> httpx.Response:
    for attempt in range(attempts):
        try:
            return httpx.get(url, timeout=5.0).raise_for_status()
        except httpx.HTTPError:
            if attempt == attempts - 1:
                raise
            time.sleep(min(10, 0.5 * 2 ** attempt) * random.uniform(0.5, 1.0))
```

- Cap the delay (here **10 s**) so a long outage doesn't mean minute-long waits.
- Retry only *idempotent* requests, or ones with an `Idempotency-Key`."""

SEED_CONVERSATION = """
from django.contrib.auth import get_user_model
from chat.models import Conversation, Message
user = get_user_model().objects.get(username={username!r})
c = Conversation.objects.create(owner=user, title="Retry with exponential backoff")
Message.objects.create(conversation=c, role="user", content={question!r})
Message.objects.create(
    conversation=c, role="assistant", status="complete", content={answer!r},
    ttft_ms=312.4, total_ms=2100.0, tokens=118, tokens_per_second=56.2,
)
"""


def test_screenshots_of_a_finished_exchange_with_code(browser, live_site):
    """Writes build/screenshots/chat-desktop.png and chat-mobile.png (copied into docs/)."""
    username = "ada"  # shown in the screenshots; the session's database is fresh
    laptop = browser.new_context(viewport=LAPTOP)
    sign_up(laptop.new_page(), live_site.url, username)
    seed = SEED_CONVERSATION.format(
        username=username,
        question="How do I retry an HTTP call with exponential backoff in Python?\nKeep it short.",
        answer=MARKDOWN_REPLY,
    )
    processes.manage("shell", "--no-imports", "-c", seed, env=live_site.env)
    phone = browser.new_context(
        viewport=PHONE, is_mobile=True, has_touch=True, storage_state=laptop.storage_state()
    )
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)

    for name, context in (("chat-desktop", laptop), ("chat-mobile", phone)):
        page = context.new_page()
        page.goto(f"{live_site.url}/chat/")
        page.goto(live_site.url + page.get_by_test_id("conversation-link").get_attribute("href"))
        expect_connected(page)
        reply = last_reply(page)
        expect(reply.locator(".code-block .copy-code")).to_be_visible()
        expect(reply.get_by_test_id("latency-badge")).to_contain_text("118 tokens")
        expect(page.get_by_test_id("send-button")).to_be_disabled()  # nothing typed yet
        page.get_by_test_id("composer-input").blur()
        page.screenshot(path=SCREENSHOT_DIR / f"{name}.png", animations="disabled")
        context.close()
