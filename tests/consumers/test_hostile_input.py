"""Hostile input is bad input, not a crash: odd Unicode, odd numbers, an unreachable model.

Marked `services`: PostgreSQL's driver refuses what SQLite's forgives, so these
run against both.
"""

from __future__ import annotations

import json

import pytest
from django.test import AsyncClient

from chat.models import Message
from tests.consumers.conftest import ChatClient, connect, make_user_with_token
from tests.support import processes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services]


@pytest.fixture
async def alice(drain_replies):
    return await make_user_with_token("alice")


@pytest.fixture
async def client(alice) -> ChatClient:
    chat = await connect(alice[1])
    yield chat
    await chat.close()


async def test_lone_surrogates_in_a_message_are_stored_and_echoed_as_replacement_characters(
    client,
):
    # json.dumps escapes them as \ud800 and \udfff, as JavaScript's JSON.stringify does.
    await client.send({"type": "message", "content": "a\ud800b \ud83d\ude00 c\udfff"})
    received = await client.receive_until("complete")

    ack, complete = received[0], received[-1]
    stored = await Message.objects.aget(pk=ack["user_message_id"])
    assert stored.content == "a\ufffdb 😀 c\ufffd"
    assert complete["content"].startswith("Echo: a\ufffdb 😀 c\ufffd (turn 1)")


async def test_a_lone_surrogate_in_the_type_is_an_unknown_type_and_the_socket_stays_open(client):
    await client.send('{"type": "\\ud800", "content": "x"}')
    error = await client.receive()
    assert (error["code"], error["message"]) == ("unknown_type", "Unknown event type '\ufffd'")
    await client.send({"type": "ping"})
    assert (await client.receive())["type"] == "pong"


async def test_resume_from_before_the_first_token_is_refused(client):
    await client.send({"content": "hello"})
    message_id = (await client.receive_until("complete"))[-1]["message_id"]

    await client.send({"type": "resume", "message_id": message_id, "after": -2})

    error = await client.receive()
    assert (error["code"], error["message"]) == ("invalid_event", "'after' must be -1 or more")


async def test_an_unreachable_model_ends_the_reply_as_upstream_error_not_timeout(client, settings):
    settings.OPENAI_BASE_URL = f"http://127.0.0.1:{processes.free_port()}/v1"
    settings.LLM_MAX_RETRIES = 0

    await client.send({"content": "anyone there?"})
    error = (await client.receive_until("error"))[-1]

    assert (error["code"], error["message"], error["retryable"]) == (
        "upstream_error",
        "Cannot reach the model service.",
        True,
    )
    stored = await Message.objects.aget(pk=error["message_id"])
    assert (stored.status, stored.error_code) == ("error", "upstream_error")


async def test_lone_surrogates_in_an_sse_body_are_stored_as_replacement_characters(alice):
    _, token = alice
    body = json.dumps({"content": "sse \udc00"})
    response = await AsyncClient().post(
        "/api/chat/stream",
        data=body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200
    b"".join([chunk async for chunk in response.streaming_content])
    stored = await Message.objects.filter(role="user").aget()
    assert stored.content == "sse \ufffd"


async def test_sse_resume_from_before_the_first_token_is_a_400(alice):
    _, token = alice
    response = await AsyncClient().get(
        "/api/chat/stream/1/?after=-5", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_event"
