"""POST /api/chat/stream and its resume endpoint, in process against fakeai."""

from __future__ import annotations

import json

import pytest
from django.test import AsyncClient

from chat.models import Message
from fakeai.replies import reply_tokens
from tests.consumers.conftest import make_user_with_token
from tests.support.chat_tokens import assert_tokens_in_order

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.services]


async def read_sse(response) -> list[tuple[str | None, dict]]:
    """(id, payload) for every SSE frame of a streaming response."""
    body = b"".join([chunk async for chunk in response.streaming_content]).decode()
    frames = []
    for block in body.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        frames.append((fields.get("id"), json.loads(fields["data"])))
    return frames


@pytest.fixture
async def alice(drain_replies):
    return await make_user_with_token("alice")


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


async def post_json(client: AsyncClient, body: dict, **headers):
    return await client.post(
        "/api/chat/stream", data=json.dumps(body), content_type="application/json", headers=headers
    )


async def test_sse_streams_the_same_events_with_legacy_fields(alice):
    _, token = alice
    response = await post_json(AsyncClient(), {"content": "over sse"}, **bearer(token))

    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    assert response["Cache-Control"] == "no-cache"
    assert response["X-Accel-Buffering"] == "no"
    frames = await read_sse(response)
    kinds = [payload["type"] for _, payload in frames]
    assert kinds[:2] == ["ack", "progress"] and kinds[-1] == "complete"
    tokens = [(event_id, p) for event_id, p in frames if p["type"] == "token"]
    assert [event_id for event_id, _ in tokens] == [str(p["index"]) for _, p in tokens]
    assert all(p["token"] == p["content"] for _, p in tokens)
    complete = frames[-1][1]
    assert complete["done"] is True
    payloads = [p for _, p in frames]
    text = assert_tokens_in_order(payloads, total=complete["total_tokens"])
    assert complete["content"] == text
    assert complete["content"].startswith("Echo: over sse (turn 1)")


async def test_sse_accepts_a_browser_session_with_csrf(alice):
    user, _ = alice
    client = AsyncClient(enforce_csrf_checks=True)
    await client.aforce_login(user)
    await client.get("/chat/")
    csrf = client.cookies["csrftoken"].value

    refused = await post_json(client, {"content": "no csrf"})
    accepted = await post_json(client, {"content": "with csrf"}, **{"X-CSRFToken": csrf})

    assert refused.status_code == 403
    assert accepted.status_code == 200
    assert (await read_sse(accepted))[-1][1]["type"] == "complete"


async def test_sse_rejects_anonymous_and_bad_tokens():
    anonymous = await post_json(AsyncClient(), {"content": "hi"})
    bad_token = await post_json(AsyncClient(), {"content": "hi"}, **bearer("rt_nope"))
    assert anonymous.status_code == 401
    assert bad_token.status_code == 401
    assert await Message.objects.acount() == 0


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ("{broken", 400, "invalid_json"),
        ('{"content": ""}', 400, "empty_content"),
        ('{"type": "cancel"}', 400, "unknown_type"),
        ('{"content": "hi", "conversation_id": 999999}', 404, "not_found"),
    ],
)
async def test_sse_bad_request_gets_a_json_error(alice, body, status, code):
    _, token = alice
    response = await AsyncClient().post(
        "/api/chat/stream", data=body, content_type="application/json", **{"headers": bearer(token)}
    )
    assert response.status_code == status
    assert response.json()["code"] == code


async def test_sse_oversize_message_is_413(alice, settings):
    settings.CHAT_MAX_MESSAGE_CHARS = 10
    _, token = alice
    response = await post_json(AsyncClient(), {"content": "x" * 11}, **bearer(token))
    assert response.status_code == 413


async def test_sse_rate_limit_is_429_with_retry_after(alice, settings):
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 1
    _, token = alice
    first = await post_json(AsyncClient(), {"content": "one"}, **bearer(token))
    await read_sse(first)

    refused = await post_json(AsyncClient(), {"content": "two"}, **bearer(token))

    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"
    assert 1 <= int(refused["Retry-After"]) <= 60


async def test_sse_cannot_post_to_someone_elses_conversation(alice):
    _, alice_token = alice
    _, bob_token = await make_user_with_token("bob")
    first = await post_json(AsyncClient(), {"content": "mine"}, **bearer(alice_token))
    conversation_id = (await read_sse(first))[0][1]["conversation_id"]
    response = await post_json(
        AsyncClient(),
        {"content": "yours?", "conversation_id": conversation_id},
        **bearer(bob_token),
    )
    assert response.status_code == 404


async def test_sse_resume_replays_after_last_event_id(alice):
    _, token = alice
    first = await read_sse(await post_json(AsyncClient(), {"content": "again"}, **bearer(token)))
    message_id = first[0][1]["message_id"]

    response = await AsyncClient().get(
        f"/api/chat/stream/{message_id}/", headers={**bearer(token), "Last-Event-ID": "2"}
    )
    replay = [payload for _, payload in await read_sse(response)]
    complete = replay[-1]
    assert complete["content"] == first[-1][1]["content"]
    tokens = reply_tokens([{"role": "user", "content": "again"}], complete["total_tokens"])
    rest = assert_tokens_in_order(replay, after=2, total=complete["total_tokens"])
    assert rest == "".join(tokens[3:])


async def test_sse_resume_of_someone_elses_reply_is_404(alice):
    _, alice_token = alice
    _, bob_token = await make_user_with_token("bob")
    first = await read_sse(await post_json(AsyncClient(), {"content": "x"}, **bearer(alice_token)))
    response = await AsyncClient().get(
        f"/api/chat/stream/{first[0][1]['message_id']}/", headers=bearer(bob_token)
    )
    assert response.status_code == 404
