"""Versions of a conversation: regenerate a reply, edit a question, switch between them."""

from __future__ import annotations

import pytest
from django.test import AsyncClient

from chat.models import Message
from tests.consumers.conftest import connect, make_user_with_token
from tests.consumers.test_chat_consumer import fakeai_get

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.services]


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


async def exchange(client, content: str, conversation_id: int | None = None) -> list[dict]:
    frame = {"type": "message", "content": content}
    if conversation_id is not None:
        frame["conversation_id"] = conversation_id
    await client.send(frame)
    return await client.receive_until("complete")


async def two_turns(client) -> tuple[list[dict], list[dict]]:
    first = await exchange(client, "first question")
    second = await exchange(client, "second question", first[0]["conversation_id"])
    return first, second


def sent_to_model(fakeai_url: str) -> list[tuple[str, str]]:
    return [
        (m["role"], m["content"])
        for m in fakeai_get(fakeai_url, "/_fakeai/requests")[-1]["messages"]
    ]


async def shown(alice, conversation_id: int) -> list[tuple[str, str]]:
    """(role, text) of the path the conversation page shows."""
    user, _ = alice
    web = AsyncClient()
    await web.aforce_login(user)
    response = await web.get(f"/chat/{conversation_id}/")
    return [(m.role, m.content) for m in response.context["page"].messages]


async def test_regenerate_keeps_the_old_reply_as_a_version(tabs, alice, fakeai_url):
    here, there = tabs
    first, second = await two_turns(here)
    conversation_id, old = second[0]["conversation_id"], second[0]["message_id"]
    await there.receive()
    await there.receive()

    await here.send({"type": "regenerate", "message_id": old})
    events = await here.receive_until("complete")

    ack = events[0]
    assert ack["type"] == "ack" and ack["version_of"] == old
    assert ack["user_message_id"] == second[0]["user_message_id"]
    assert ack["versions"] == [old, ack["message_id"]]
    assert events[-1]["content"].startswith("Echo: second question (turn 2)")
    assert sent_to_model(fakeai_url)[1:] == [
        ("user", "first question"),
        ("assistant", first[-1]["content"]),
        ("user", "second question"),
    ]
    assert await there.receive() == {
        "type": "reply_regenerated",
        "conversation_id": conversation_id,
        "user_message_id": ack["user_message_id"],
        "message_id": ack["message_id"],
        "version_of": old,
        "versions": [old, ack["message_id"]],
    }
    replies = [m async for m in Message.objects.filter(parent_id=ack["user_message_id"])]
    assert [m.pk for m in replies] == [old, ack["message_id"]]
    assert all(m.status == "complete" for m in replies)


async def test_regenerating_an_earlier_reply_sends_only_the_path_to_it(client_pair, fakeai_url):
    here, alice = client_pair
    first, second = await two_turns(here)

    await here.send({"type": "regenerate", "message_id": first[0]["message_id"]})
    events = await here.receive_until("complete")

    assert sent_to_model(fakeai_url)[1:] == [("user", "first question")]
    assert events[-1]["content"].startswith("Echo: first question (turn 1)")
    assert await shown(alice, first[0]["conversation_id"]) == [
        ("user", "first question"),
        ("assistant", events[-1]["content"]),
    ]


async def test_edit_starts_a_branch_and_keeps_the_old_one(tabs, alice, fakeai_url):
    here, there = tabs
    first, second = await two_turns(here)
    conversation_id, old_question = first[0]["conversation_id"], second[0]["user_message_id"]
    await there.receive()
    await there.receive()

    await here.send({"type": "edit", "message_id": old_question, "content": "better question"})
    events = await here.receive_until("complete")

    ack = events[0]
    assert ack["version_of"] == old_question
    assert ack["versions"] == [old_question, ack["user_message_id"]]
    assert events[-1]["content"].startswith("Echo: better question (turn 2)")
    assert sent_to_model(fakeai_url)[1:] == [
        ("user", "first question"),
        ("assistant", first[-1]["content"]),
        ("user", "better question"),
    ]
    heard = await there.receive()
    assert heard["type"] == "message_edited"
    assert heard["content"] == "better question"
    assert heard["versions"] == ack["versions"]
    assert await shown(alice, conversation_id) == [
        ("user", "first question"),
        ("assistant", first[-1]["content"]),
        ("user", "better question"),
        ("assistant", events[-1]["content"]),
    ]
    old_reply = await Message.objects.aget(pk=second[0]["message_id"])
    assert old_reply.parent_id == old_question  # the old branch is kept whole


async def test_editing_the_first_message_starts_a_new_conversation_path(client_pair, fakeai_url):
    here, alice = client_pair
    first, _ = await two_turns(here)

    await here.send({"type": "edit", "message_id": first[0]["user_message_id"], "content": "anew"})
    events = await here.receive_until("complete")

    assert sent_to_model(fakeai_url)[1:] == [("user", "anew")]
    assert await shown(alice, first[0]["conversation_id"]) == [
        ("user", "anew"),
        ("assistant", events[-1]["content"]),
    ]


async def test_switch_shows_the_other_version_and_the_path_chosen_below_it(tabs, alice):
    here, there = tabs
    first, second = await two_turns(here)
    conversation_id = first[0]["conversation_id"]
    await here.send({"type": "edit", "message_id": second[0]["user_message_id"], "content": "b"})
    edited = await here.receive_until("complete")
    for _ in range(3):  # two messages and the edit
        await there.receive()

    await here.send({"type": "switch", "message_id": second[0]["user_message_id"]})

    switched = {
        "type": "version_switched",
        "conversation_id": conversation_id,
        "message_id": second[0]["user_message_id"],
    }
    assert await here.receive() == switched
    assert await there.receive() == switched
    assert [text for _, text in await shown(alice, conversation_id)][2:] == [
        "second question",
        second[-1]["content"],
    ]
    # Sending now continues the branch shown.
    third = await exchange(here, "third question", conversation_id)
    assert third[-1]["content"].startswith("Echo: third question (turn 3)")
    assert (await Message.objects.aget(pk=third[0]["user_message_id"])).parent_id == second[0][
        "message_id"
    ]
    await here.send({"type": "switch", "message_id": edited[0]["user_message_id"]})
    await here.receive()
    assert [text for _, text in await shown(alice, conversation_id)][2:] == [
        "b",
        edited[-1]["content"],
    ]


async def test_the_path_below_a_message_loads_as_html(client_pair):
    here, alice = client_pair
    first, second = await two_turns(here)
    await here.send({"type": "regenerate", "message_id": second[0]["message_id"]})
    regenerated = await here.receive_until("complete")
    user, _ = alice
    web = AsyncClient()
    await web.aforce_login(user)

    response = await web.get(
        f"/chat/{first[0]['conversation_id']}/messages/",
        {"from": regenerated[0]["message_id"]},
    )

    html = response.json()["html"]
    assert f'data-message-id="{regenerated[0]["message_id"]}"' in html
    assert 'data-testid="version-label">2/2<' in html
    assert html.count('data-testid="message"') == 1  # the question above is not repeated


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"type": "regenerate"}, "invalid_event"),
        ({"type": "edit", "message_id": 1}, "empty_content"),
        ({"type": "switch"}, "invalid_event"),
        ({"type": "regenerate", "message_id": 10**9}, "not_found"),
        ({"type": "edit", "message_id": 10**9, "content": "x"}, "not_found"),
        ({"type": "switch", "message_id": 10**9}, "not_found"),
    ],
)
async def test_refusals(client_pair, frame, code):
    here, _ = client_pair
    await here.send(frame)
    assert (await here.receive())["code"] == code


async def test_someone_elses_messages_cannot_be_branched(client_pair):
    here, _ = client_pair
    first = await exchange(here, "mine")
    _, bob_token = await make_user_with_token("bob")
    bob = await connect(bob_token)
    for frame in (
        {"type": "regenerate", "message_id": first[0]["message_id"]},
        {"type": "edit", "message_id": first[0]["user_message_id"], "content": "x"},
        {"type": "switch", "message_id": first[0]["message_id"]},
    ):
        await bob.send(frame)
        assert (await bob.receive())["code"] == "not_found"
    await bob.close()


async def test_branching_is_busy_while_a_reply_streams(client_pair, settings):
    settings.OPENAI_MODEL = "fakeai:ttft=0,tps=40,tokens=60"
    here, alice = client_pair
    first = await exchange(here, "q")
    other = await connect(alice[1])
    await here.send({"content": "slow", "conversation_id": first[0]["conversation_id"]})
    ack = await here.receive()
    await other.receive()

    for frame in (
        {"type": "regenerate", "message_id": first[0]["message_id"]},
        {"type": "edit", "message_id": first[0]["user_message_id"], "content": "x"},
        {"type": "switch", "message_id": first[0]["message_id"]},
    ):
        await other.send(frame)
        assert (await other.receive())["code"] == "busy"
    await here.send({"type": "cancel", "message_id": ack["message_id"]})
    await here.receive_until("cancelled")
    await other.close()


@pytest.fixture
async def client_pair(alice):
    """One socket and its user (the user, token)."""
    _, token = alice
    here = await connect(token)
    yield here, alice
    await here.close()
