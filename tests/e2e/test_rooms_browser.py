"""Rooms in real headless Chromium: several people, each in a browser context of their own,
against real daphne + fakeai processes."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.chat_pages import (
    FAST_TOKENS,
    PHONE,
    SLOW_TOKENS,
    ChatSocketCutter,
    expect_connected,
    send,
    sign_up,
    unique_username,
    wait_for_status,
)
from tests.e2e.room_pages import (
    ROOM_SOCKET,
    DropFirstServerEvent,
    ai_reply_to,
    create_room,
    enter_room,
    last_ai_reply,
    participants,
    record_streamed_texts,
    room_messages,
    streamed_texts,
    text_of,
    wait_until_ai_streams,
)
from tests.support import processes

pytestmark = pytest.mark.e2e


def two_in_a_room(site, page, other_page, *, private: bool = False) -> tuple[str, str, str]:
    """ana creates a room and bo enters it; returns (ana, bo, the room's path)."""
    ana, bo = unique_username("ana"), unique_username("bo")
    sign_up(page, site.url, ana)
    sign_up(other_page, site.url, bo)
    path = create_room(page, site.url, f"Room of {ana}", private=private)
    if not private:
        enter_room(other_page, site.url, path)
        expect(page.get_by_test_id("participant-count")).to_have_text("2")
    return ana, bo, path


# --- messages, typing, presence ---------------------------------------------------------------
def test_two_people_see_each_others_messages_in_the_same_order(page, other_page, live_site):
    ana, bo, _ = two_in_a_room(live_site, page, other_page)

    send(page, "hello from ana")
    wait_for_status(last_ai_reply(other_page), "complete")
    send(other_page, "and hello from bo")

    for viewer in (page, other_page):
        expect(room_messages(viewer)).to_have_count(4)
        wait_for_status(last_ai_reply(viewer), "complete")
        people = room_messages(viewer, "user")
        expect(people.get_by_test_id("message-body")).to_have_text(
            ["hello from ana", "and hello from bo"]
        )
    expect(room_messages(page).get_by_test_id("message-author")).to_have_text(
        ["You", "AI", bo, "AI"]
    )
    expect(room_messages(other_page).get_by_test_id("message-author")).to_have_text(
        [ana, "AI", "You", "AI"]
    )


def test_the_other_person_sees_who_is_typing_and_you_never_see_yourself(
    page, other_page, live_site
):
    ana, bo, _ = two_in_a_room(live_site, page, other_page)

    other_page.get_by_test_id("composer-input").press_sequentially("still think")

    expect(page.get_by_test_id("typing")).to_have_text(f"{bo} is typing…")
    expect(other_page.get_by_test_id("typing")).to_have_text("")
    other_page.get_by_test_id("composer-input").press("Enter")
    # Their message arrived: they are not typing any more.
    expect(room_messages(page, "user")).to_have_count(1)
    expect(page.get_by_test_id("typing")).to_have_text("")


def test_the_participant_list_and_count_follow_people_arriving_and_leaving(
    page, other_page, live_site
):
    ana, bo, _ = two_in_a_room(live_site, page, other_page)
    expect(participants(page)).to_have_text([ana, bo])  # yourself first
    expect(participants(other_page)).to_have_text([bo, ana])

    other_page.close()

    expect(page.get_by_test_id("participant-count")).to_have_text("1")
    expect(participants(page)).to_have_text([ana])


# --- the AI's reply ----------------------------------------------------------------------------
def test_everyone_sees_the_ai_reply_stream_in_and_complete_the_same(page, other_page, slow_site):
    ana, bo, _ = two_in_a_room(slow_site, page, other_page)

    send(other_page, "what is a room?")

    for viewer in (page, other_page):
        wait_until_ai_streams(viewer, f"Echo: {bo}: what is a room?")
    expected = ai_reply_to((bo, "what is a room?"), tokens=SLOW_TOKENS)
    for viewer in (page, other_page):
        reply = last_ai_reply(viewer)
        wait_for_status(reply, "complete")
        assert text_of(reply) == expected
        expect(reply.get_by_test_id("latency-badge")).to_contain_text(f"{SLOW_TOKENS} tokens")
        expect(reply.get_by_test_id("stop-button")).to_have_count(0)


def test_stop_shows_for_the_person_answered_and_stops_the_reply_for_everyone(
    page, other_page, slow_site
):
    ana, bo, _ = two_in_a_room(slow_site, page, other_page)
    send(other_page, "stop me early")
    wait_until_ai_streams(other_page, f"Echo: {bo}: stop me early")

    last_ai_reply(other_page).get_by_test_id("stop-button").click()

    full = ai_reply_to((bo, "stop me early"), tokens=SLOW_TOKENS)
    for viewer in (other_page, page):
        reply = last_ai_reply(viewer)
        wait_for_status(reply, "cancelled")
        expect(reply.get_by_test_id("message-stopped")).to_have_text("stopped")
        partial = text_of(reply)
        assert partial.startswith(f"Echo: {bo}: stop me early")
        assert full.startswith(partial) and len(partial) < len(full)
    assert text_of(last_ai_reply(page)) == text_of(last_ai_reply(other_page))


def test_stop_is_not_offered_to_a_member_whose_message_is_not_being_answered(
    page, other_page, slow_site
):
    ana, bo, _ = two_in_a_room(slow_site, page, other_page)

    send(page, "ana asks")  # ana owns the room; bo only watches

    wait_until_ai_streams(other_page, f"Echo: {ana}: ana asks")
    expect(last_ai_reply(page).get_by_test_id("stop-button")).to_be_visible()
    expect(last_ai_reply(other_page).get_by_test_id("stop-button")).to_have_count(0)
    wait_for_status(last_ai_reply(other_page), "complete")
    expect(last_ai_reply(page).get_by_test_id("stop-button")).to_have_count(0)


def test_a_dropped_socket_reconnects_and_the_reply_goes_on_in_the_same_bubble(
    page, other_page, slow_site
):
    cutter = ChatSocketCutter(other_page, ROOM_SOCKET)
    ana, bo, _ = two_in_a_room(slow_site, page, other_page)
    record_streamed_texts(other_page)
    send(page, "keep going")
    wait_until_ai_streams(other_page, f"Echo: {ana}: keep going")

    cutter.cut()

    expect(other_page.get_by_test_id("connection-state")).to_have_attribute(
        "data-state", "reconnecting"
    )
    reply = last_ai_reply(other_page)
    wait_for_status(reply, "complete")
    expect_connected(other_page)
    full = ai_reply_to((ana, "keep going"), tokens=SLOW_TOKENS)
    assert text_of(reply) == full
    expect(room_messages(other_page, "assistant")).to_have_count(1)
    # While it streamed, before and after the reconnect, the bubble only ever
    # grew along the answer: the replay the new socket sent replaced, not repeated.
    shown = streamed_texts(other_page)
    assert {socket for socket, _ in shown} == {1, 2}
    assert all(full.startswith(text) for _, text in shown), shown


def test_reloading_during_a_reply_shows_it_continue_live(page, other_page, slow_site):
    ana, bo, _ = two_in_a_room(slow_site, page, other_page)
    send(page, "survive a reload")
    wait_until_ai_streams(other_page, f"Echo: {ana}: survive a reload")

    other_page.reload()
    record_streamed_texts(other_page)

    reply = last_ai_reply(other_page)
    wait_for_status(reply, "complete")
    full = ai_reply_to((ana, "survive a reload"), tokens=SLOW_TOKENS)
    assert text_of(reply) == full
    expect(room_messages(other_page, "assistant")).to_have_count(1)
    shown = streamed_texts(other_page)
    assert shown, "the reloaded page should have shown the reply streaming"
    assert all(full.startswith(text) for _, text in shown), shown


def test_a_reply_whose_end_was_lost_is_settled_from_the_server_when_the_next_one_starts(
    page, other_page, live_site
):
    lost = DropFirstServerEvent(other_page, "ai_complete")
    ana, bo, _ = two_in_a_room(live_site, page, other_page)
    send(page, "first question")
    wait_for_status(last_ai_reply(page), "complete")
    first = ai_reply_to((ana, "first question"), tokens=FAST_TOKENS)
    expect(last_ai_reply(other_page).get_by_test_id("message-body")).to_have_text(first)
    assert lost.dropped
    wait_for_status(last_ai_reply(other_page), "streaming")  # its end never came

    send(page, "second question")

    replies = room_messages(other_page, "assistant")
    expect(replies).to_have_count(2)
    for reply in (replies.first, replies.last):
        wait_for_status(reply, "complete")
        expect(reply.get_by_test_id("latency-badge")).to_contain_text(f"{FAST_TOKENS} tokens")
    assert text_of(replies.first) == first
    assert text_of(replies.first) == text_of(room_messages(page, "assistant").first)


# --- private rooms, invite links, members -------------------------------------------------
def test_a_private_room_refuses_a_stranger_and_admits_them_through_the_invite_link(
    page, other_page, live_site
):
    ana, bo, path = two_in_a_room(live_site, page, other_page, private=True)
    page.get_by_test_id("manage-members").click()
    invite_url = page.get_by_test_id("invite-url").inner_text()
    page.goto(live_site.url + path)
    expect_connected(page)

    other_page.goto(live_site.url + path)
    expect(other_page.get_by_test_id("forbidden-reason")).to_have_text(
        "This room is private. Ask its owner for an invite link."
    )
    other_page.goto(invite_url)
    expect(other_page.get_by_test_id("invite-room-name")).to_have_text(f"Room of {ana}")
    other_page.get_by_test_id("join-room").click()

    expect(other_page.get_by_test_id("room-title")).to_have_text(f"Room of {ana}")
    expect_connected(other_page)
    expect(page.get_by_test_id("participant-count")).to_have_text("2")
    expect(participants(page)).to_have_text([ana, bo])


def test_a_member_removed_by_the_owner_is_told_and_not_reconnected(page, other_page, live_site):
    ana, bo, path = two_in_a_room(live_site, page, other_page)
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_test_id("manage-members").click()

    page.locator("[data-testid=member-row]", has_text=bo).get_by_test_id("remove-member").click()

    expect(page.get_by_test_id("flash")).to_contain_text(f"{bo} was removed from the room.")
    expect(other_page.get_by_test_id("room-closed")).to_contain_text("not a member")
    expect(other_page.get_by_test_id("connection-state")).to_have_attribute("data-state", "offline")
    expect(other_page.get_by_test_id("composer")).to_be_hidden()


# --- a long room, and a phone ---------------------------------------------------------------
HISTORY = 130  # the page shows the newest 50 (ROOM_PAGE_MESSAGES)

SEED_HISTORY = """
from django.contrib.auth import get_user_model
from rooms.models import Room, RoomMessage
room = Room.objects.get(slug={slug!r})
user = get_user_model().objects.get(username={username!r})
for n in range({count}):
    body = "\\n\\n".join([f"Message {{n}}."] + ["A line that takes up some room."] * (n % 3))
    if n % 2:
        RoomMessage.objects.create(room=room, role="assistant", status="complete", content=body)
    else:
        RoomMessage.objects.create(room=room, role="user", author=user, content=body)
"""

OFFSET_IN_BOX_JS = """(n) => {
  const box = document.querySelector('[data-testid=message-list]');
  const node = [...document.querySelectorAll('[data-testid=message-body]')]
    .find((b) => b.textContent.trim().startsWith(`Message ${n}.`));
  return node.getBoundingClientRect().top - box.getBoundingClientRect().top;
}"""


def test_scrolling_up_loads_older_messages_without_moving_what_is_read(page, live_site):
    ana = unique_username("ana")
    sign_up(page, live_site.url, ana)
    path = create_room(page, live_site.url, "A long one")
    seed = SEED_HISTORY.format(slug=path.strip("/").split("/")[-1], username=ana, count=HISTORY)
    processes.manage("shell", "--no-imports", "-c", seed, env=live_site.env)
    enter_room(page, live_site.url, path)
    expect(room_messages(page)).to_have_count(50)
    first_shown = HISTORY - 50
    expect(page.get_by_test_id("message-body").first).to_contain_text(f"Message {first_shown}.")

    page.get_by_test_id("message-body").first.scroll_into_view_if_needed()
    before = page.evaluate(OFFSET_IN_BOX_JS, first_shown)
    expect(room_messages(page)).to_have_count(100)
    assert abs(page.evaluate(OFFSET_IN_BOX_JS, first_shown) - before) <= 1

    page.get_by_test_id("message-list").evaluate("(box) => { box.scrollTop = 0; }")
    expect(room_messages(page)).to_have_count(HISTORY)
    expect(page.get_by_test_id("older-messages")).to_have_count(0)
    bodies = page.get_by_test_id("message-body").all_inner_texts()
    assert [b.split(".")[0] for b in bodies] == [f"Message {n}" for n in range(HISTORY)]


def test_on_a_phone_the_people_hide_behind_a_toggle_with_the_count(phone_page, live_site):
    page = phone_page
    ana = unique_username("ana")
    sign_up(page, live_site.url, ana)
    create_room(page, live_site.url, "Pocket room")
    people = page.get_by_test_id("people")
    toggle = page.get_by_test_id("people-toggle")
    expect(people).to_be_hidden()
    expect(toggle).to_contain_text("1")

    toggle.click()

    expect(people).to_be_visible()
    expect(participants(page)).to_have_text([ana])
    page.keyboard.press("Escape")
    expect(people).to_be_hidden()
    send(page, "from my phone")
    wait_for_status(last_ai_reply(page), "complete")
    assert text_of(last_ai_reply(page)) == ai_reply_to((ana, "from my phone"), tokens=FAST_TOKENS)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


# --- the README's picture -------------------------------------------------------------------
# Written into the build folder; copied into docs/screenshots/ by hand when they change,
# so a test run never modifies tracked files.
SCREENSHOT_DIR = Path(__file__).resolve().parents[2] / "build" / "screenshots"

ROOM_REPLY = """Two good options for a weekend, both about an hour away by train:

| | Lakes | Old town |
|---|---|---|
| walking | 3 easy trails | flat, cobbled |
| if it rains | boat museum | covered market |

**Ana**, the lakes suit your hiking plan; **Bo**, the old town has the food market."""

SEED_ROOM = """
from django.contrib.auth import get_user_model
from rooms.models import Room, RoomMessage
from rooms import services
User = get_user_model()
ana, bo = User.objects.get(username="ana"), User.objects.get(username="bo")
room = services.create_room(owner=ana, name="Weekend trip", is_private=False)
services.join(room=room, user=bo)
RoomMessage.objects.create(room=room, role="user", author=ana, content={first!r})
RoomMessage.objects.create(room=room, role="user", author=bo, content={second!r})
RoomMessage.objects.create(
    room=room, role="assistant", status="complete", content={answer!r},
    ttft_ms=284.0, total_ms=1900.0, tokens=74, tokens_per_second=48.7,
)
print(room.slug)
"""


def test_screenshot_of_a_room(page, other_page, live_site):
    """Writes build/screenshots/room-desktop.png (docs/screenshots/ has copies)."""
    sign_up(page, live_site.url, "ana")  # shown in the picture; the session's database is fresh
    sign_up(other_page, live_site.url, "bo")
    seed = SEED_ROOM.format(
        first="Where should we go this weekend? Somewhere we can walk.",
        second="Somewhere with good food too, please!",
        answer=ROOM_REPLY,
    )
    slug = processes.manage("shell", "--no-imports", "-c", seed, env=live_site.env).split()[-1]
    enter_room(page, live_site.url, f"/rooms/{slug}/")
    enter_room(other_page, live_site.url, f"/rooms/{slug}/")
    expect(participants(page)).to_have_text(["ana", "bo"])

    other_page.get_by_test_id("composer-input").press_sequentially("Lakes!")

    expect(page.get_by_test_id("typing")).to_have_text("bo is typing…")
    expect(last_ai_reply(page).get_by_test_id("latency-badge")).to_contain_text("74 tokens")
    page.get_by_test_id("composer-input").blur()
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOT_DIR / "room-desktop.png", animations="disabled")
