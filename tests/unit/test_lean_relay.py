"""The benchmark's lean relay: its frames match ours, and it streams a real fakeai reply."""

import json

from aiohttp.test_utils import TestClient, TestServer

from bench.clients import TOKEN_PREFIX
from bench.lean_relay import (
    complete_frame,
    content_deltas,
    create_app,
    message_content,
    token_frame,
)
from chat import events
from realtime import wire


def test_token_frame_is_byte_for_byte_our_token_event():
    ours = wire.dumps(events.token(content="héllo ", index=3, timestamp=1_700_000_000_123))

    assert token_frame("héllo ", 3, 1_700_000_000_123) == ours


def test_token_frame_starts_with_the_prefix_the_benchmark_client_counts():
    assert token_frame("x", 0, 0).startswith(TOKEN_PREFIX)


def test_content_deltas_of_a_content_chunk():
    line = b'data: {"choices":[{"index":0,"delta":{"content":"Hi "},"finish_reason":null}]}\n'

    assert content_deltas(line) == ["Hi "]


def test_content_deltas_are_empty_for_role_usage_and_blank_lines():
    role = b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n'
    usage = b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n'

    assert [content_deltas(line) for line in (role, usage, b"\n", b": keepalive\n")] == [
        [],
        [],
        [],
        [],
    ]


def test_content_deltas_mark_the_end_of_the_stream():
    assert content_deltas(b"data: [DONE]\n") is None


def test_message_content_accepts_our_message_frame_and_a_bare_content():
    assert message_content('{"type":"message","content":"hi"}') == "hi"
    assert message_content('{"content":"hi"}') == "hi"


def test_message_content_refuses_other_frames():
    refused = ['{"type":"cancel"}', '{"type":"message","content":"  "}', "[1]", "not json"]

    assert [message_content(raw) for raw in refused] == [None] * 4


def test_complete_frame_carries_the_text_and_the_token_count():
    frame = json.loads(complete_frame("Hi there", 2, 12.3456))

    assert frame == {
        "type": "complete",
        "content": "Hi there",
        "total_tokens": 2,
        "metrics": {"ttft_ms": 12.35},
    }


async def test_relays_every_token_of_a_fakeai_reply_then_complete(fakeai_url):
    client = TestClient(TestServer(create_app(fakeai_url)))
    await client.start_server()
    try:
        ws = await client.ws_connect("/ws/chat/")
        await ws.send_str(json.dumps({"type": "message", "content": "hello relay"}))
        frames = []
        while not frames or frames[-1]["type"] == "token":
            frames.append(json.loads(await ws.receive_str(timeout=10)))
        await ws.close()
    finally:
        await client.close()

    tokens, complete = frames[:-1], frames[-1]
    assert complete["type"] == "complete"
    assert len(tokens) == complete["total_tokens"] == 12  # fakeai's reply length in tests
    assert [t["index"] for t in tokens] == list(range(12))
    assert "".join(t["content"] for t in tokens) == complete["content"]
