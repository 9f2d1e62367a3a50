"""The room WebSocket as its members see it, against the real app and a real fakeai."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.db.models import Q

from realtime import locks, runs
from realtime_site.asgi import application
from rooms import presence, services
from rooms.models import Membership, Room, RoomMessage
from tests.consumers.conftest import make_user_with_token
from tests.support.chat_tokens import assert_tokens_in_order

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.services]

SLOW = "fakeai:ttft=0,tps=40,tokens=60"


@pytest.fixture(autouse=True)
def room_state_reset(settings):
    settings.ROOM_TYPING_THROTTLE_SECONDS = 2
    presence.reset()
    locks._memory._held.clear()
    yield
    presence.reset()


class Member:
    """One member's socket in a room."""

    def __init__(self, communicator: WebsocketCommunicator, username: str) -> None:
        self.ws = communicator
        self.username = username

    async def send(self, frame: dict | str) -> None:
        await self.ws.send_to(text_data=frame if isinstance(frame, str) else json.dumps(frame))

    async def receive(self, timeout: float = 10) -> dict:
        return json.loads(await self.ws.receive_from(timeout=timeout))

    async def receive_until(self, *types: str, timeout: float = 15) -> list[dict]:
        received = []
        while True:
            received.append(await self.receive(timeout=timeout))
            if received[-1]["type"] in types:
                return received

    async def next_of(self, kind: str, timeout: float = 15) -> dict:
        return (await self.receive_until(kind, timeout=timeout))[-1]

    async def next_about(self, kind: str, username: str, timeout: float = 15) -> dict:
        """The next `kind` event about `username` (one's own arrival is told too)."""
        while True:
            event = await self.next_of(kind, timeout=timeout)
            if event["user"]["username"] == username:
                return event

    async def close(self) -> None:
        await self.ws.disconnect()


async def closed_with(member: Member) -> int:
    """Read past the events still in flight to the close; its code."""
    while True:
        output = await member.ws.receive_output(timeout=5)
        if output["type"] == "websocket.close":
            return output["code"]


def room_socket(slug: str, token: str | None) -> WebsocketCommunicator:
    headers = [(b"host", b"testserver"), (b"origin", b"http://testserver")]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    return WebsocketCommunicator(application, f"/ws/room/{slug}/", headers=headers)


async def enter(slug: str, token: str, username: str) -> tuple[Member, dict]:
    """Connect and read the room_state."""
    communicator = room_socket(slug, token)
    connected, _ = await communicator.connect()
    assert connected
    member = Member(communicator, username)
    state = await member.receive()
    assert state["type"] == "room_state"
    return member, state


@sync_to_async
def make_room(owner, **options) -> Room:
    return services.create_room(owner=owner, name=options.pop("name", "Lab"), **options)


@pytest.fixture
async def people(drain_runs):
    return {name: await make_user_with_token(name) for name in ("ana", "bo", "cy")}


@pytest.fixture
async def drain_runs():
    yield
    await runs.wait_all(timeout_s=10)


@pytest.fixture
async def room(people):
    return await make_room(people["ana"][0], is_private=False)


# --- entering -----------------------------------------------------------------------------
async def test_anonymous_socket_is_closed_with_4401(room):
    communicator = room_socket(room.slug, None)
    await communicator.connect()
    assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}
    await communicator.disconnect()


async def test_a_non_member_of_a_private_room_is_closed_with_4403(people):
    private = await make_room(people["ana"][0], is_private=True, name="Secret")
    communicator = room_socket(private.slug, people["bo"][1])
    await communicator.connect()
    assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": 4403}
    await communicator.disconnect()
    assert not await Membership.objects.filter(room=private, user=people["bo"][0]).aexists()


async def test_no_such_room_is_closed_with_4403(people):
    communicator = room_socket("nowhere", people["bo"][1])
    await communicator.connect()
    assert (await communicator.receive_output(timeout=5))["code"] == 4403
    await communicator.disconnect()


async def test_entering_sends_the_room_its_history_and_who_is_here(people, room):
    ana, _ = people["ana"]
    await RoomMessage.objects.acreate(room=room, author=ana, role="user", content="earlier")
    member, state = await enter(room.slug, people["ana"][1], "ana")
    assert state["room"]["slug"] == room.slug and state["room"]["ai_mode"] == "every"
    assert [m["content"] for m in state["conversation"]] == ["earlier"]
    assert state["conversation"][0]["user"] == {"id": ana.pk, "username": "ana"}
    assert state["participants"] == [{"id": ana.pk, "username": "ana"}]
    assert state["ai_turn"] is None
    await member.close()


async def test_entering_a_public_room_joins_it(people, room):
    member, _ = await enter(room.slug, people["cy"][1], "cy")
    assert await Membership.objects.filter(room=room, user=people["cy"][0]).aexists()
    await member.close()


# --- presence -------------------------------------------------------------------------------
async def test_arrivals_and_departures_are_told_once_per_person_whatever_the_tabs(people, room):
    ana, _ = await enter(room.slug, people["ana"][1], "ana")
    bo_tab1, _ = await enter(room.slug, people["bo"][1], "bo")
    joined = await ana.next_about("participant_joined", "bo")
    assert joined["count"] == 2

    bo_tab2, state = await enter(room.slug, people["bo"][1], "bo")
    assert [p["username"] for p in state["participants"]] == ["ana", "bo"]
    await bo_tab1.close()  # bo still has a tab open: nobody left
    await bo_tab2.close()
    left = await ana.next_of("participant_left")
    assert left["user"]["username"] == "bo" and left["count"] == 1
    # No second "joined" for bo's second tab, and no second "left".
    assert await ana.ws.receive_nothing(timeout=0.3)
    await ana.close()


async def test_typing_is_told_to_the_room_at_most_every_throttle_period(people, room):
    ana, _ = await enter(room.slug, people["ana"][1], "ana")
    bo, _ = await enter(room.slug, people["bo"][1], "bo")
    await ana.next_about("participant_joined", "bo")
    for _ in range(3):
        await bo.send({"type": "typing"})
    typing = await ana.next_of("user_typing")
    assert typing["user"]["username"] == "bo"
    await bo.send({"type": "ping"})
    await bo.next_of("pong")
    assert await ana.ws.receive_nothing(timeout=0.3)  # the other two were not told
    await ana.close()
    await bo.close()


# --- messages and the AI -----------------------------------------------------------------------
async def test_a_message_reaches_everyone_then_the_ai_answers_everyone(people, room):
    ana, _ = await enter(room.slug, people["ana"][1], "ana")
    bo, _ = await enter(room.slug, people["bo"][1], "bo")
    await ana.next_about("participant_joined", "bo")
    await ana.send({"type": "message", "content": "hello room"})

    for member in (ana, bo):
        received = [
            event
            for event in await member.receive_until("ai_complete")
            if not event["type"].startswith("participant_")
        ]
        kinds = [e["type"] for e in received]
        assert kinds[0] == "user_message" and kinds[1] == "ai_typing"
        said = received[0]
        assert (said["content"], said["user"]["username"]) == ("hello room", "ana")
        assert received[1]["status"] is True
        complete = received[-1]
        text = assert_tokens_in_order(
            [{**e, "type": "token"} for e in received if e["type"] == "ai_token"],
            total=complete["metrics"]["tokens"],
        )
        assert complete["content"] == text
        assert complete["content"].startswith("Echo: ana: hello room")
        assert "<p>" in complete["html"]
        assert (await member.next_of("ai_typing"))["status"] is False

    reply = await RoomMessage.objects.aget(role="assistant")
    assert reply.status == "complete" and reply.content == complete["content"]
    assert await RoomMessage.objects.filter(answered_by=reply).acount() == 1
    await ana.close()
    await bo.close()


async def test_messages_during_a_turn_are_answered_together_in_the_next(people, room, settings):
    settings.OPENAI_MODEL = SLOW
    ana, _ = await enter(room.slug, people["ana"][1], "ana")
    await ana.send({"type": "message", "content": "first"})
    await ana.next_of("ai_token")
    await ana.send({"type": "message", "content": "second"})
    await ana.send({"type": "message", "content": "third"})
    first = await ana.next_of("ai_complete", timeout=20)
    second_turn = await ana.receive_until("ai_complete", timeout=20)

    assert first["content"].startswith("Echo: ana: first")
    started = [e for e in second_turn if e["type"] == "ai_typing" and e["status"]]
    assert started and second_turn[-1]["message_id"] != first["message_id"]
    replies = [m async for m in RoomMessage.objects.filter(role="assistant").order_by("id")]
    assert len(replies) == 2
    answered = {
        m.content: m.answered_by_id
        async for m in RoomMessage.objects.filter(role="user").order_by("id")
    }
    assert answered == {"first": replies[0].pk, "second": replies[1].pk, "third": replies[1].pk}
    await ana.close()


async def test_in_mention_mode_only_messages_naming_the_ai_are_answered(people):
    room = await make_room(people["ana"][0], is_private=False, ai_mode="mention", name="Quiet")
    ana, _ = await enter(room.slug, people["ana"][1], "ana")
    await ana.send({"type": "message", "content": "just us people"})
    await ana.next_of("user_message")
    assert await ana.ws.receive_nothing(timeout=0.5)
    await ana.send({"type": "message", "content": "@AI what do you think?"})
    assert (await ana.next_of("ai_complete"))["content"].startswith("Echo: ana: @AI what")
    await ana.close()


async def test_the_author_of_a_message_can_stop_the_reply_for_everyone(people, room, settings):
    settings.OPENAI_MODEL = SLOW
    ana, _ = await enter(room.slug, people["ana"][1], "ana")
    bo, _ = await enter(room.slug, people["bo"][1], "bo")
    cy, _ = await enter(room.slug, people["cy"][1], "cy")
    await bo.send({"type": "message", "content": "tell me a long story"})
    token = await bo.next_of("ai_token")
    await cy.send({"type": "cancel", "message_id": token["message_id"]})
    refused = await cy.next_of("error")
    assert refused["code"] == "forbidden"
    await bo.send({"type": "cancel", "message_id": token["message_id"]})
    for member in (ana, bo, cy):
        cancelled = await member.next_of("ai_cancelled", timeout=20)
        assert cancelled["message_id"] == token["message_id"]
    reply = await RoomMessage.objects.aget(pk=token["message_id"])
    assert reply.status == "cancelled" and 0 < reply.tokens < 60
    for member in (ana, bo, cy):
        await member.close()


async def test_the_owner_can_stop_any_reply(people, room, settings):
    settings.OPENAI_MODEL = SLOW
    ana, _ = await enter(room.slug, people["ana"][1], "ana")  # the owner
    bo, _ = await enter(room.slug, people["bo"][1], "bo")
    await bo.send({"type": "message", "content": "go on"})
    token = await ana.next_of("ai_token")
    await ana.send({"type": "cancel", "message_id": token["message_id"]})
    assert (await bo.next_of("ai_cancelled", timeout=20))["message_id"] == token["message_id"]
    await ana.close()
    await bo.close()


async def test_a_returning_member_resumes_the_reply_after_its_last_token(people, room, settings):
    settings.OPENAI_MODEL = SLOW
    ana, _ = await enter(room.slug, people["ana"][1], "ana")
    await ana.send({"type": "message", "content": "stay with me"})
    seen = [await ana.next_of("ai_token") for _ in range(3)]
    await ana.close()

    back, state = await enter(room.slug, people["ana"][1], "ana")
    assert state["ai_turn"] == {"message_id": seen[0]["message_id"]}
    await back.send({"type": "resume", "after": seen[-1]["index"]})
    received = await back.receive_until("ai_complete", timeout=20)
    complete = received[-1]
    # Indices are what a client keeps: every token after the last it had arrives.
    later = {e["index"] for e in received if e["type"] == "ai_token"}
    assert max(later) == complete["metrics"]["tokens"] - 1
    assert complete["content"].startswith("".join(t["content"] for t in seen))
    await back.close()


async def test_resume_of_a_finished_reply_sends_it(people, room):
    ana, _ = await enter(room.slug, people["ana"][1], "ana")
    await ana.send({"type": "message", "content": "quick one"})
    complete = await ana.next_of("ai_complete")
    await ana.next_of("ai_typing")
    await ana.send({"type": "resume", "after": 2, "message_id": complete["message_id"]})
    replay = await ana.receive_until("ai_complete")
    assert replay[-1]["content"] == complete["content"]
    await ana.close()


# --- refusals -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{oops", "invalid_json"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "message", "content": "  "}', "empty_content"),
        ('{"type": "message", "content": 7}', "invalid_event"),
        ('{"type": "resume", "after": -5}', "invalid_event"),
        ('{"type": "cancel"}', "not_streaming"),
        ('{"type": "resume", "message_id": 999999}', "not_found"),
    ],
)
async def test_bad_frames_get_an_error_and_the_socket_stays(people, room, frame, code):
    ana, _ = await enter(room.slug, people["ana"][1], "ana")
    await ana.send(frame)
    assert (await ana.next_of("error"))["code"] == code
    await ana.send({"type": "ping"})
    assert (await ana.next_of("pong"))["type"] == "pong"
    await ana.close()


async def test_oversize_messages_are_refused(people, room, settings):
    settings.ROOM_MAX_MESSAGE_CHARS = 10
    ana, _ = await enter(room.slug, people["ana"][1], "ana")
    await ana.send({"type": "message", "content": "x" * 11})
    assert (await ana.next_of("error"))["code"] == "too_large"
    assert await RoomMessage.objects.acount() == 0
    await ana.close()


async def test_a_flooding_member_is_closed_and_the_room_goes_on(people, room, settings):
    settings.WS_MAX_FRAMES_PER_10S = 3
    ana, _ = await enter(room.slug, people["ana"][1], "ana")
    bo, _ = await enter(room.slug, people["bo"][1], "bo")
    await ana.next_about("participant_joined", "bo")
    for _ in range(4):
        await bo.send({"type": "ping"})
    assert (await bo.next_of("error"))["code"] == "too_many_frames"
    assert await closed_with(bo) == 4429
    await ana.send({"type": "message", "content": "still here?"})
    assert (await ana.next_of("ai_complete"))["content"].startswith("Echo: ana: still here")
    await ana.close()


async def test_a_member_the_owner_removes_is_closed_with_4403(people):
    private = await make_room(people["ana"][0], is_private=True, name="Inner")
    bo_user = people["bo"][0]
    await Membership.objects.acreate(room=private, user=bo_user)
    bo, _ = await enter(private.slug, people["bo"][1], "bo")
    await sync_to_async(services.remove_member)(
        room=private, by=people["ana"][0], user_id=bo_user.pk
    )
    assert await closed_with(bo) == 4403
    await bo.close()


async def test_one_turn_per_room_even_when_messages_arrive_at_once(people, room, settings):
    settings.OPENAI_MODEL = "fakeai:ttft=50,tps=100,tokens=20"
    ana, _ = await enter(room.slug, people["ana"][1], "ana")
    bo, _ = await enter(room.slug, people["bo"][1], "bo")
    await asyncio.gather(
        ana.send({"type": "message", "content": "at once A"}),
        bo.send({"type": "message", "content": "at once B"}),
    )
    completes = [await ana.next_of("ai_complete", timeout=20)]
    # Both may be answered in one turn, or the second in the turn after.
    while await RoomMessage.objects.filter(
        Q(role="user", answered_by__isnull=True) | Q(status="streaming")
    ).aexists():
        completes.append(await ana.next_of("ai_complete", timeout=20))
    assert len({c["message_id"] for c in completes}) == len(completes)
    replies = [m async for m in RoomMessage.objects.filter(role="assistant").order_by("id")]
    assert all(m.status == "complete" for m in replies)
    assert not await RoomMessage.objects.filter(role="user", answered_by__isnull=True).aexists()
    await ana.close()
    await bo.close()


async def test_with_group_fanout_every_member_still_gets_the_whole_reply(people, room, settings):
    settings.ROOM_FANOUT = "group"
    ana, _ = await enter(room.slug, people["ana"][1], "ana")
    bo, _ = await enter(room.slug, people["bo"][1], "bo")
    await ana.next_about("participant_joined", "bo")
    await bo.send({"type": "message", "content": "through the group"})
    for member in (ana, bo):
        received = await member.receive_until("ai_complete")
        tokens = [e for e in received if e["type"] == "ai_token"]
        assert [t["index"] for t in tokens] == list(range(len(tokens)))
        assert "".join(t["content"] for t in tokens) == received[-1]["content"]
    await ana.close()
    await bo.close()
