"""The chat WebSocket protocol, as a client sees it, against a real fakeai upstream."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest
from asgiref.sync import sync_to_async

from chat import persistence, services
from chat.models import Conversation, Message
from realtime import runs, streams, wire
from realtime.db import on_db_pool
from tests.consumers.conftest import ChatClient, connect, make_user_with_token, raw_socket
from tests.support.chat_tokens import assert_tokens_in_order

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.services]

SLOW = "fakeai:ttft=0,tps=40,tokens=60"


def fakeai_get(fakeai_url: str, path: str):
    with urllib.request.urlopen(fakeai_url.removesuffix("/v1") + path, timeout=5) as response:
        return json.loads(response.read())


def fakeai_reset(fakeai_url: str) -> None:
    request = urllib.request.Request(
        fakeai_url.removesuffix("/v1") + "/_fakeai/reset", method="POST"
    )
    urllib.request.urlopen(request, timeout=5).close()


async def wait_for(predicate, *, timeout_s: float = 5.0, interval_s: float = 0.02):
    """Poll a condition that is observed asynchronously (another process)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        result = await sync_to_async(predicate)()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval_s)


@pytest.fixture
async def alice(drain_replies):
    return await make_user_with_token("alice")


@pytest.fixture
async def client(alice) -> ChatClient:
    _, token = alice
    chat = await connect(token)
    yield chat
    await chat.close()


def types_of(received: list[dict]) -> list[str]:
    return [event["type"] for event in received]


# --- a full exchange ------------------------------------------------------------------
async def test_full_exchange_streams_tokens_in_order_then_completes(client):
    await client.send({"type": "message", "content": "hello there"})
    received = await client.receive_until("complete")

    kinds = types_of(received)
    assert kinds[:3] == ["ack", "progress", "progress"]
    assert [e["stage"] for e in received if e["type"] == "progress"] == [
        "thinking",
        "generating",
        "complete",
    ]
    assert kinds.index("complete") > max(i for i, k in enumerate(kinds) if k == "token")
    complete = received[-1]
    assert assert_tokens_in_order(received, total=complete["total_tokens"]) == complete["content"]
    assert complete["content"].startswith("Echo: hello there (turn 1)")
    assert complete["total_tokens"] == 12  # fakeai's reply length in this suite
    assert complete["metrics"]["ttft_ms"] > 0
    assert complete["metrics"]["completion_tokens"] == 12


async def test_a_reader_that_fell_behind_gets_its_backlog_in_one_frame(client):
    await client.send({"content": "catch up"})
    complete = (await client.receive_until("complete"))[-1]
    # Resuming a finished reply from the start: all its tokens are waiting.
    await client.send({"type": "resume", "message_id": complete["message_id"], "after": -1})
    replay = await client.receive_until("complete")
    assert [e["type"] for e in replay] == ["progress", "token", "progress", "complete"]
    assert replay[1]["content"] == complete["content"]
    assert replay[1]["index"] == complete["total_tokens"] - 1


async def test_completed_reply_is_persisted_with_metrics(client):
    await client.send({"type": "message", "content": "persist me"})
    received = await client.receive_until("complete")
    message = await Message.objects.aget(pk=received[-1]["message_id"])
    assert message.status == Message.Status.COMPLETE
    assert message.content == received[-1]["content"]
    assert message.ttft_ms is not None and message.tokens == received[-1]["total_tokens"]
    assert message.prompt_tokens and message.completion_tokens


async def test_bare_content_frame_is_treated_as_a_message(client):
    await client.send({"content": "bare"})
    received = await client.receive_until("complete")
    assert received[0]["type"] == "ack"
    assert received[-1]["content"].startswith("Echo: bare (turn 1)")


async def test_complete_html_is_sanitized_markdown(client):
    await client.send({"content": "<script>alert(1)</script> **bold**"})
    complete = (await client.receive_until("complete"))[-1]
    assert "<script>" not in complete["html"]
    assert "<strong>bold</strong>" in complete["html"]


async def test_second_turn_sends_the_history_upstream(client, fakeai_url):
    await client.send({"content": "first question"})
    first = await client.receive_until("complete")
    conversation_id = first[0]["conversation_id"]
    await client.send({"content": "second question", "conversation_id": conversation_id})
    second = await client.receive_until("complete")

    assert second[0]["conversation_id"] == conversation_id
    assert second[-1]["content"].startswith("Echo: second question (turn 2)")
    sent = fakeai_get(fakeai_url, "/_fakeai/requests")[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[1]["content"] == "first question"
    assert sent[2]["content"] == first[-1]["content"]
    assert sent[3]["content"] == "second question"


# --- cancel and busy ------------------------------------------------------------------
async def test_cancel_stops_upstream_and_saves_partial_text_as_cancelled(
    client, settings, fakeai_url
):
    settings.OPENAI_MODEL = SLOW
    fakeai_reset(fakeai_url)
    await client.send({"content": "long answer please"})
    ack = await client.receive()
    streamed = [e for e in await client.receive_until("token") if e["type"] == "token"]
    streamed += [await client.receive(), await client.receive()]
    await client.send({"type": "cancel", "message_id": ack["message_id"]})
    received = await client.receive_until("cancelled")

    cancelled = received[-1]
    assert cancelled["message_id"] == ack["message_id"]
    assert cancelled["content"].startswith("".join(t["content"] for t in streamed))
    assert cancelled["content"].startswith("Echo: long answer")
    message = await Message.objects.aget(pk=ack["message_id"])
    assert message.status == Message.Status.CANCELLED
    assert message.content == cancelled["content"]
    assert message.tokens < 60
    stats = await wait_for(
        lambda: (s := fakeai_get(fakeai_url, "/_fakeai/stats"))["client_disconnects"] >= 1 and s
    )
    assert stats["completed"] == 0


async def test_cancel_without_message_id_stops_the_current_reply(client, settings):
    settings.OPENAI_MODEL = SLOW
    await client.send({"content": "stop me"})
    await client.receive_until("token")
    await client.send({"type": "cancel"})
    received = await client.receive_until("cancelled")
    assert received[-1]["type"] == "cancelled"


async def test_second_message_while_streaming_is_refused_as_busy(client, settings):
    settings.OPENAI_MODEL = SLOW
    await client.send({"content": "one"})
    await client.receive_until("token")
    await client.send({"content": "two"})
    events = await client.receive_until("error")
    error = events[-1]
    assert error["code"] == "busy" and error["retryable"] is True
    assert "message_id" not in error
    await client.send({"type": "cancel"})
    await client.receive_until("cancelled")


async def test_second_socket_in_same_conversation_is_busy_while_streaming(alice, settings):
    settings.OPENAI_MODEL = SLOW
    _, token = alice
    first, second = await connect(token), await connect(token)
    await first.send({"content": "one"})
    ack = await first.receive()
    await second.send({"content": "two", "conversation_id": ack["conversation_id"]})
    # The refusal is this socket's answer; the first socket's message reaches it through
    # the user's group (Redis in multi-instance mode), so the two may come in either order.
    events = {e["type"]: e for e in [await second.receive(), await second.receive()]}
    assert events["user_message"]["message_id"] == ack["message_id"]
    assert events["error"]["code"] == "busy"
    await first.send({"type": "cancel"})
    await first.receive_until("cancelled")
    await first.close()
    await second.close()


# --- upstream faults ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fault", "code", "partial_tokens"),
    [
        ("429-retry=0.05", "rate_limited", 0),
        ("500", "upstream_error", 0),
        ("cut-3", "upstream_error", 3),
        ("malformed-3", "upstream_error", 3),
        ("hang-2", "timeout", 2),
        ("hang", "timeout", 0),
    ],
)
async def test_upstream_fault_gives_error_keeps_partial_and_socket_usable(
    client, settings, fault, code, partial_tokens
):
    settings.OPENAI_MODEL = f"fakeai:tokens=20,fault={fault}"
    settings.LLM_TIMEOUT_SECONDS = 0.5
    settings.LLM_MAX_RETRIES = 1
    await client.send({"content": "fault please"})
    received = await client.receive_until("error")

    error = received[-1]
    assert error["code"] == code
    assert error["retryable"] is True
    frames = [e for e in received if e["type"] == "token"]
    text = assert_tokens_in_order(frames, total=partial_tokens) if partial_tokens else ""
    assert not frames or partial_tokens
    assert error["content"] == text
    message = await Message.objects.aget(pk=error["message_id"])
    assert (message.status, message.error_code) == (Message.Status.ERROR, code)
    assert message.content == text
    assert message.error_text == error["message"]
    assert error["metrics"]["tokens"] == partial_tokens

    settings.OPENAI_MODEL = "fakeai"
    await client.send(
        {"content": "after the fault", "conversation_id": received[0]["conversation_id"]}
    )
    assert (await client.receive_until("complete"))[-1]["type"] == "complete"


async def test_rate_limit_before_first_token_is_retried(client, settings, fakeai_url):
    # The base name keys fakeai's "first K requests" counter, so make it unique.
    settings.OPENAI_MODEL = f"retry-{id(client)}:fault=429-retry=0.05x1"
    await client.send({"content": "retry me"})
    received = await client.receive_until("complete", "error")
    assert received[-1]["type"] == "complete"
    assert received[-1]["metrics"]["attempts"] == 2


# --- bad input ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "invalid_json"),
        ('["a list"]', "invalid_event"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "message", "content": "   "}', "empty_content"),
        ('{"type": "message", "content": 5}', "invalid_event"),
        ('{"type": "resume"}', "invalid_event"),
        ('{"type": "cancel"}', "not_streaming"),
    ],
)
async def test_bad_frame_gets_error_and_socket_stays_open(client, frame, code):
    await client.send(frame)
    error = await client.receive()
    assert error["type"] == "error" and error["code"] == code
    await client.send({"type": "ping"})
    assert (await client.receive())["type"] == "pong"


async def test_nul_character_in_a_message_is_dropped_not_fatal(client):
    await client.send({"content": "nul\u0000here"})
    received = await client.receive_until("complete")
    assert received[-1]["content"].startswith("Echo: nulhere")


async def test_oversize_content_is_refused(client, settings):
    settings.CHAT_MAX_MESSAGE_CHARS = 100
    await client.send({"content": "x" * 101})
    error = await client.receive()
    assert error["code"] == "too_large"
    assert await Message.objects.acount() == 0


async def test_oversize_frame_is_refused(client, settings):
    settings.WS_MAX_FRAME_BYTES = 1000
    await client.send({"content": "y" * 2000})
    assert (await client.receive())["code"] == "too_large"


async def test_binary_frame_is_refused(client):
    await client.ws.send_to(bytes_data=b"\x00\x01")
    assert (await client.receive())["code"] == "invalid_event"


async def test_rate_limit_per_user(client, settings):
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 2
    await client.send({"content": "one"})
    conversation_id = (await client.receive_until("complete"))[0]["conversation_id"]
    await client.send({"content": "two"})
    await client.receive_until("complete")
    await client.send({"content": "three", "conversation_id": conversation_id})
    assert (await client.receive())["code"] == "rate_limited"
    assert await Message.objects.filter(conversation_id=conversation_id).acount() == 2


async def test_flooding_socket_is_told_why_then_closed_with_4429(settings, drain_replies):
    settings.WS_MAX_FRAMES_PER_10S = 3
    chat = await connect((await make_user_with_token("flood"))[1])
    for _ in range(4):
        await chat.send({"type": "ping"})
    assert [(await chat.receive())["type"] for _ in range(3)] == ["pong"] * 3
    error = await chat.receive()
    assert error["code"] == "too_many_frames" and error["retryable"] is False
    assert await chat.ws.receive_output(timeout=5) == {"type": "websocket.close", "code": 4429}
    await chat.close()


# --- auth and ownership -----------------------------------------------------------------
async def test_anonymous_socket_is_closed_with_4401():
    communicator = raw_socket([(b"origin", b"http://testserver")])
    await communicator.connect()
    assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}
    await communicator.disconnect()


async def test_frames_from_an_anonymous_socket_are_ignored():
    communicator = raw_socket([(b"origin", b"http://testserver")])
    await communicator.connect()
    await communicator.send_to(text_data='{"content": "sneaky"}')
    assert (await communicator.receive_output(timeout=5))["code"] == 4401
    assert await communicator.receive_nothing(timeout=0.3)
    assert await Message.objects.acount() == 0
    await communicator.disconnect()


async def test_invalid_token_is_anonymous():
    communicator = raw_socket([(b"authorization", b"Bearer rt_wrong")])
    await communicator.connect()
    assert (await communicator.receive_output(timeout=5))["code"] == 4401
    await communicator.disconnect()


async def test_session_socket_from_foreign_origin_is_rejected(alice):
    communicator = raw_socket([(b"origin", b"http://evil.example")])
    connected, _ = await communicator.connect()
    assert not connected
    await communicator.disconnect()


async def test_session_cookie_authenticates_a_browser_socket(alice):
    from django.test import Client

    user, _ = alice
    browser = Client()
    await sync_to_async(browser.force_login)(user)
    cookie = f"sessionid={browser.cookies['sessionid'].value}".encode()
    chat = await connect(
        headers=[
            (b"host", b"127.0.0.1:8000"),
            (b"origin", b"http://127.0.0.1:8000"),
            (b"cookie", cookie),
        ]
    )
    await chat.send({"content": "from the browser"})
    assert (await chat.receive_until("complete"))[-1]["type"] == "complete"
    await chat.close()


async def test_user_cannot_post_to_someone_elses_conversation(client, alice):
    _, bob_token = await make_user_with_token("bob")
    await client.send({"content": "alice's secret"})
    alice_events = await client.receive_until("complete")
    bob = await connect(bob_token)
    await bob.send({"content": "let me in", "conversation_id": alice_events[0]["conversation_id"]})
    error = await bob.receive()
    assert error["code"] == "not_found"
    assert await Message.objects.filter(conversation__owner__username="bob").acount() == 0
    assert await Message.objects.acount() == 2
    await bob.close()


async def test_user_cannot_resume_or_cancel_someone_elses_reply(client, settings):
    settings.OPENAI_MODEL = SLOW
    _, bob_token = await make_user_with_token("bob")
    await client.send({"content": "alice streams"})
    ack = await client.receive()
    bob = await connect(bob_token)
    await bob.send({"type": "resume", "message_id": ack["message_id"]})
    assert (await bob.receive())["code"] == "not_found"
    await bob.send({"type": "cancel", "message_id": ack["message_id"]})
    assert (await bob.receive())["code"] == "not_found"
    assert (await client.receive_until("complete"))[-1]["type"] == "complete"
    await bob.close()


# --- decoupled from the socket: resume, orphans, dead generators ------------------------
async def test_reply_survives_a_closed_socket(alice):
    _, token = alice
    chat = await connect(token)
    await chat.send({"content": "I will leave"})
    ack = await chat.receive()
    await chat.close()
    await runs.wait_all()
    message = await Message.objects.aget(pk=ack["message_id"])
    assert message.status == Message.Status.COMPLETE
    assert message.content.startswith("Echo: I will leave")


async def test_resume_after_reconnect_replays_missed_tokens_then_follows_live(alice, settings):
    settings.OPENAI_MODEL = SLOW
    _, token = alice
    first = await connect(token)
    await first.send({"content": "resume me"})
    ack = await first.receive()
    seen = [e for e in await first.receive_until("token") if e["type"] == "token"]
    seen += [await first.receive()]
    await first.close()

    second = await connect(token)
    await second.send(
        {"type": "resume", "message_id": ack["message_id"], "after": seen[-1]["index"]}
    )
    received = await second.receive_until("complete")
    complete = received[-1]
    rest = assert_tokens_in_order(received, after=seen[-1]["index"], total=complete["total_tokens"])
    assert "".join(t["content"] for t in seen) + rest == complete["content"]
    await second.close()


async def test_resume_of_a_finished_reply_sends_its_stored_result(client):
    await client.send({"content": "done already"})
    complete = (await client.receive_until("complete"))[-1]
    await client.send({"type": "resume", "message_id": complete["message_id"], "after": 3})
    replay = await client.receive_until("complete")
    assert replay[-1]["content"] == complete["content"]
    assert all(e["index"] > 3 for e in replay if e["type"] == "token")


async def test_reply_nobody_reads_is_cancelled_after_the_grace_period(alice, settings):
    settings.OPENAI_MODEL = "fakeai:tps=20,tokens=200"
    settings.RUN_ORPHAN_GRACE_SECONDS = 0.2
    _, token = alice
    chat = await connect(token)
    await chat.send({"content": "abandon me"})
    ack = await chat.receive()
    await chat.receive_until("token")
    await chat.close()
    await runs.wait_all()
    message = await Message.objects.aget(pk=ack["message_id"])
    assert (message.status, message.error_code) == (Message.Status.CANCELLED, "abandoned")
    assert 0 < message.tokens < 200


async def test_returning_reader_keeps_an_orphaned_reply_alive(alice, settings):
    # The reply (3 s) outlives the grace period (1 s): only the returning reader saves it.
    settings.OPENAI_MODEL = "fakeai:tps=40,tokens=120"
    settings.RUN_ORPHAN_GRACE_SECONDS = 1
    _, token = alice
    first = await connect(token)
    await first.send({"content": "come back"})
    ack = await first.receive()
    await first.close()
    second = await connect(token)
    await second.send({"type": "resume", "message_id": ack["message_id"], "after": -1})
    assert (await second.receive_until("complete"))[-1]["type"] == "complete"
    await second.close()


async def test_resume_of_a_reply_whose_process_died_marks_it_interrupted(client, alice):
    user, _ = alice
    conversation = await Conversation.objects.acreate(owner=user, title="crashed")
    orphan = await Message.objects.acreate(
        conversation=conversation,
        role="assistant",
        status="streaming",
        content="half an ans",
    )
    await client.send({"type": "resume", "message_id": orphan.pk, "after": -1})
    error = await client.receive()
    assert error["code"] == "interrupted" and error["content"] == "half an ans"
    await orphan.arefresh_from_db()
    assert (orphan.status, orphan.error_code, orphan.content) == (
        "error",
        "interrupted",
        "half an ans",
    )


async def test_dead_reply_does_not_block_the_conversation(client, alice):
    user, _ = alice
    conversation = await Conversation.objects.acreate(owner=user, title="crashed")
    await Message.objects.acreate(conversation=conversation, role="assistant", status="streaming")
    await client.send({"content": "carry on", "conversation_id": conversation.pk})
    assert (await client.receive_until("complete"))[-1]["content"].startswith("Echo: carry on")


async def test_database_refuses_a_second_streaming_reply_in_a_conversation(alice):
    # Two messages racing past the busy check (e.g. on two processes) meet the
    # unique constraint when they save: the second is refused as busy.
    user, _ = alice
    conversation_id, _, _ = await services._save_turn(
        user=user, content="first", conversation_id=None, model="fakeai"
    )
    with pytest.raises(wire.ProtocolError) as refused:
        await services._save_turn(
            user=user, content="second", conversation_id=conversation_id, model="fakeai"
        )
    assert refused.value.code == "busy"
    assert await Message.objects.filter(conversation_id=conversation_id).acount() == 2


async def test_first_message_titles_the_conversation_and_later_ones_keep_it(client):
    await client.send({"content": "What is WAL mode?\nMore detail here"})
    first = await client.receive_until("complete")
    conversation_id = first[0]["conversation_id"]
    await client.send({"content": "and another thing", "conversation_id": conversation_id})
    await client.receive_until("complete")
    conversation = await Conversation.objects.aget(pk=conversation_id)
    assert conversation.title == "What is WAL mode?"


async def test_conversation_deleted_while_starting_is_not_found(alice):
    user, _ = alice
    conversation = await Conversation.objects.acreate(owner=user, title="gone soon")
    conversation_id = conversation.pk
    await conversation.adelete()
    with pytest.raises(wire.ProtocolError) as refused:
        await services._save_turn(
            user=user, content="hello?", conversation_id=conversation_id, model="fakeai"
        )
    assert refused.value.code == "not_found"


async def test_a_failed_final_save_still_ends_the_reply_for_its_readers(client, monkeypatch):
    def database_down(rows):
        raise RuntimeError("database unavailable")

    monkeypatch.setattr(persistence, "_save_finals", on_db_pool(database_down))
    await client.send({"content": "save fails"})
    received = await client.receive_until("complete")
    assert received[-1]["content"].startswith("Echo: save fails")
    await client.send({"type": "ping"})
    assert (await client.receive())["type"] == "pong"


async def test_a_reply_that_cannot_start_closes_its_early_model_request(
    client, settings, fakeai_url, monkeypatch
):
    settings.OPENAI_MODEL = "fakeai:ttft=500,tps=20,tokens=40"
    fakeai_reset(fakeai_url)

    async def stream_store_down(self, key, *, control_channel):
        # Fail once the model request is in flight: it must not be left running.
        await wait_for(lambda: fakeai_get(fakeai_url, "/_fakeai/stats")["active"] == 1)
        raise RuntimeError("stream store down")

    monkeypatch.setattr(type(streams.get_streams()), "open", stream_store_down)
    await client.send({"content": "never starts"})
    error = await client.receive()

    assert (error["type"], error["code"], error["retryable"]) == ("error", "internal_error", True)
    stats = await wait_for(
        lambda: (s := fakeai_get(fakeai_url, "/_fakeai/stats"))["client_disconnects"] >= 1 and s
    )
    assert stats["completed"] == 0
    reply = await Message.objects.aget(role="assistant")
    assert (reply.status, reply.error_code) == ("error", "interrupted")
    await client.send({"type": "ping"})
    assert (await client.receive())["type"] == "pong"


async def test_a_failing_follower_tells_the_client_and_logs_the_traceback(
    client, monkeypatch, caplog
):
    async def reader_breaks(message_id, *, after=-1):
        yield 0, {"type": "token", "content": "a", "index": 0, "timestamp": 0}
        raise RuntimeError("reader broke")

    monkeypatch.setattr(services, "follow_reply", reader_breaks)
    await client.send({"content": "follow me"})
    received = await client.receive_until("error")

    ack, error = received[0], received[-1]
    assert [e["type"] for e in received] == ["ack", "progress", "token", "error"]
    assert error["code"] == "internal_error" and error["message_id"] == ack["message_id"]
    failures = [r for r in caplog.records if r.getMessage().startswith("follower failed")]
    assert failures and "reader broke" in str(failures[0].exc_info[1])
    await client.send({"type": "ping"})
    assert (await client.receive())["type"] == "pong"
