"""Every chat socket of a user hears what the others do: messages, retries, renames, deletes."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from channels.layers import get_channel_layer
from django.test import AsyncClient

from chat import consumers
from chat.models import Conversation, Message
from tests.consumers.conftest import ChatClient, connect, make_user_with_token
from tests.support.chat_tokens import assert_tokens_in_order

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.services]

SLOW = "fakeai:ttft=0,tps=40,tokens=60"


@pytest.fixture
async def alice(drain_replies):
    return await make_user_with_token("alice")


@pytest.fixture
async def tabs(alice):
    """Two sockets of one user: the tab that acts and the tab that watches."""
    _, token = alice
    here, there = await connect(token), await connect(token)
    yield here, there
    await here.close()
    await there.close()


async def assert_silent(client: ChatClient, seconds: float = 0.3) -> None:
    assert await client.ws.receive_nothing(timeout=seconds), await client.receive()


def failing_model() -> str:
    """A model whose first request fails after 3 tokens; the same request retried works."""
    # fakeai counts a fault's requests per model name: a fresh name per test.
    return f"fakeai-{uuid.uuid4().hex[:8]}:fault=cut-3x1"


async def test_a_message_reaches_the_users_other_socket_but_not_the_sender(tabs):
    here, there = tabs

    await here.send({"type": "message", "content": "Plan a picnic\nwith details"})

    sent = await here.receive_until("complete")
    heard = await there.receive()
    ack = sent[0]
    assert heard == {
        "type": "user_message",
        "conversation_id": ack["conversation_id"],
        "title": "Plan a picnic",
        "user_message_id": ack["user_message_id"],
        "content": "Plan a picnic\nwith details",
        "message_id": ack["message_id"],
    }
    assert "user_message" not in [event["type"] for event in sent]
    await assert_silent(there)  # no tokens unless it asks for them


async def test_another_users_sockets_hear_nothing(tabs, drain_replies):
    here, _ = tabs
    _, bob_token = await make_user_with_token("bob")
    bob = await connect(bob_token)

    await here.send({"content": "private"})
    await here.receive_until("complete")

    await assert_silent(bob)
    await bob.close()


async def test_the_other_socket_follows_the_reply_live_and_can_stop_it(tabs, settings):
    settings.OPENAI_MODEL = SLOW
    here, there = tabs
    await here.send({"content": "a long answer"})
    ack = await here.receive()
    heard = await there.receive()

    await there.send({"type": "resume", "message_id": heard["message_id"], "after": -1})
    followed = await there.receive_until("token")
    while len([e for e in followed if e["type"] == "token"]) < 4:
        followed.append(await there.receive())
    await there.send({"type": "cancel", "message_id": heard["message_id"]})

    followed += await there.receive_until("cancelled")
    origin_end = (await here.receive_until("cancelled"))[-1]
    assert followed[-1] == origin_end
    assert origin_end["message_id"] == ack["message_id"]
    streamed = assert_tokens_in_order(followed)
    assert origin_end["content"].startswith(streamed)
    assert origin_end["content"].startswith("Echo: a long answer")


async def test_a_message_sent_over_sse_reaches_every_socket(alice, tabs):
    user, _ = alice
    here, there = tabs
    client = AsyncClient()
    await client.aforce_login(user)

    response = await client.post(
        "/api/chat/stream", {"content": "from the API"}, content_type="application/json"
    )
    body = b"".join([chunk async for chunk in response.streaming_content])

    assert b'"type":"complete"' in body
    for socket in (here, there):
        heard = await socket.receive()
        assert heard["type"] == "user_message" and heard["content"] == "from the API"


# --- retry --------------------------------------------------------------------------------
async def test_retry_replaces_the_failed_reply_in_place(alice, tabs):
    user, _ = alice
    here, there = tabs
    conversation = await Conversation.objects.acreate(owner=user, model=failing_model())
    await here.send({"content": "break once", "conversation_id": conversation.pk})
    failed = (await here.receive_until("error"))[-1]
    assert failed["code"] == "upstream_error"
    await there.receive()  # its user_message

    await here.send({"type": "retry", "message_id": failed["message_id"]})

    retried = await here.receive_until("complete")
    ack = retried[0]
    assert ack["type"] == "ack" and ack["replaces"] == failed["message_id"]
    assert ack["message_id"] != failed["message_id"]
    assert retried[-1]["content"].startswith("Echo: break once (turn 1)")
    assert await there.receive() == {
        "type": "reply_retried",
        "conversation_id": conversation.pk,
        "user_message_id": ack["user_message_id"],
        "message_id": ack["message_id"],
        "replaces": failed["message_id"],
    }
    rows = [
        (m.pk, m.role, m.status)
        async for m in Message.objects.filter(conversation=conversation).order_by("id")
    ]
    assert rows == [
        (ack["user_message_id"], "user", "complete"),
        (ack["message_id"], "assistant", "complete"),
    ]


async def test_retrying_twice_from_two_sockets_starts_one_reply(alice, tabs):
    user, _ = alice
    here, there = tabs
    conversation = await Conversation.objects.acreate(owner=user, model=failing_model())
    await here.send({"content": "race me", "conversation_id": conversation.pk})
    failed = (await here.receive_until("error"))[-1]
    await there.receive()

    await here.send({"type": "retry", "message_id": failed["message_id"]})
    await there.send({"type": "retry", "message_id": failed["message_id"]})

    outcomes = await asyncio.gather(here.receive(), there.receive())
    kinds = sorted(
        event["type"] if event["type"] != "error" else event["code"] for event in outcomes
    )
    assert kinds in (["ack", "not_found"], ["ack", "busy"], ["ack", "reply_retried"])
    assert await Message.objects.filter(conversation=conversation).acount() == 2


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("complete", "invalid_event"),
        ("not_newest", "invalid_event"),
        ("someone_elses", "not_found"),
        ("no_id", "invalid_event"),
    ],
)
async def test_retry_is_refused_for_what_it_cannot_replace(alice, tabs, case, code):
    user, _ = alice
    here, _ = tabs
    conversation = await Conversation.objects.acreate(owner=user, model=failing_model())
    await here.send({"content": "first", "conversation_id": conversation.pk})
    failed = (await here.receive_until("error"))[-1]
    await here.send({"content": "second", "conversation_id": conversation.pk})
    completed = (await here.receive_until("complete"))[-1]
    bob, _ = await make_user_with_token("bob")
    others = await Conversation.objects.acreate(owner=bob)
    await Message.objects.acreate(conversation=others, role="user", content="hi")
    stranger = await Message.objects.acreate(
        conversation=others, role="assistant", status="error", content="x"
    )
    frame = {
        "complete": {"type": "retry", "message_id": completed["message_id"]},
        "not_newest": {"type": "retry", "message_id": failed["message_id"]},
        "someone_elses": {"type": "retry", "message_id": stranger.pk},
        "no_id": {"type": "retry"},
    }[case]

    await here.send(frame)

    error = await here.receive()
    assert error["type"] == "error" and error["code"] == code
    assert "message_id" not in error
    assert await Message.objects.filter(conversation=conversation).acount() == 4


# --- renames and deletes ---------------------------------------------------------------
async def test_a_rename_in_one_page_reaches_every_socket(alice, tabs):
    user, _ = alice
    here, there = tabs
    conversation = await Conversation.objects.acreate(owner=user, title="Old")
    client = AsyncClient()
    await client.aforce_login(user)

    response = await client.post(f"/chat/{conversation.pk}/rename/", {"title": "  New name "})

    assert response.status_code == 302
    expected = {"type": "conversation_renamed", "conversation_id": conversation.pk}
    for socket in (here, there):
        assert await socket.receive() == {**expected, "title": "New name"}


async def test_a_delete_stops_its_streaming_reply_and_reaches_every_socket(alice, tabs, settings):
    settings.OPENAI_MODEL = SLOW
    user, _ = alice
    here, there = tabs
    await here.send({"content": "delete me mid-answer"})
    ack = await here.receive()
    await here.receive_until("token")
    await there.receive()  # its user_message
    client = AsyncClient()
    await client.aforce_login(user)

    response = await client.post(f"/chat/{ack['conversation_id']}/delete/")

    assert response.status_code == 302
    ended = (await here.receive_until("conversation_deleted", "cancelled"))[-1]
    if ended["type"] == "cancelled":
        ended = (await here.receive_until("conversation_deleted"))[-1]
    assert ended == {"type": "conversation_deleted", "conversation_id": ack["conversation_id"]}
    assert await there.receive() == ended
    assert not await Conversation.objects.filter(pk=ack["conversation_id"]).aexists()


async def test_a_long_lived_socket_joins_its_users_group_again_on_a_ping(tabs, monkeypatch):
    here, there = tabs
    monkeypatch.setattr(consumers, "USER_GROUP_REJOIN_SECONDS", -1)
    layer, joined = get_channel_layer(), []
    group_add = layer.group_add

    async def recording_group_add(group: str, channel: str) -> None:
        joined.append(group)
        await group_add(group, channel)

    monkeypatch.setattr(layer, "group_add", recording_group_add)

    await there.send({"type": "ping"})

    assert (await there.receive())["type"] == "pong"
    # Joined again (with Redis, the layer may record other group joins meanwhile).
    assert any(group.startswith("chat.user.") for group in joined)
    await here.send({"content": "still heard"})
    assert (await there.receive())["type"] == "user_message"
