"""The chat protocol module: chat frame validation and chat event builders."""

from __future__ import annotations

import json

import pytest

from chat import events
from realtime import wire

LIMITS = {"max_frame_bytes": 1000, "max_content_chars": 50}


def parse(raw, **overrides):
    return events.parse_client_event(raw, **{**LIMITS, **overrides})


def test_message_content_is_stripped():
    event = parse('{"type": "message", "content": "  hi  ", "conversation_id": 7}')
    assert (event.type, event.content, event.conversation_id) == ("message", "hi", 7)


def test_bare_content_is_a_message():
    assert parse('{"content": "hi"}').type == "message"


def test_resume_reads_message_id_and_after():
    event = parse('{"type": "resume", "message_id": 3, "after": 9}')
    assert (event.message_id, event.after) == (3, 9)


def test_after_defaults_to_minus_one():
    assert parse('{"type": "resume", "message_id": 3}').after == -1


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("nope", "invalid_json"),
        ("[1]", "invalid_event"),
        ("{}", "invalid_event"),
        ('{"type": 5}', "invalid_event"),
        ('{"type": "x"}', "unknown_type"),
        ('{"type": "message"}', "empty_content"),
        ('{"type": "message", "content": "' + "a" * 51 + '"}', "too_large"),
        ('{"type": "message", "content": "x", "conversation_id": "abc"}', "invalid_event"),
        ('{"type": "resume", "message_id": true}', "invalid_event"),
    ],
)
def test_invalid_frames_raise_precise_codes(raw, code):
    with pytest.raises(wire.ProtocolError) as caught:
        parse(raw)
    assert caught.value.code == code


def test_frame_size_is_checked_before_parsing():
    with pytest.raises(wire.ProtocolError) as caught:
        parse("x" * 1001)
    assert caught.value.code == "too_large"


def test_types_can_be_restricted():
    with pytest.raises(wire.ProtocolError) as caught:
        parse('{"type": "cancel"}', allowed_types=frozenset({"message"}))
    assert caught.value.code == "unknown_type"


def test_only_reply_errors_are_terminal():
    assert events.is_terminal(wire.error("timeout", "m", message_id=1))
    assert not events.is_terminal(wire.error("busy", "m"))
    assert events.is_terminal({"type": "complete"})
    assert not events.is_terminal({"type": "token"})


def test_sse_frame_carries_id_and_legacy_fields():
    frame = events.sse(events.token(content="hi", index=4, timestamp=1), event_id=4).decode()
    head, data = frame.rstrip("\n").split("\n")
    assert head == "id: 4"
    payload = json.loads(data.removeprefix("data: "))
    assert payload == {"type": "token", "content": "hi", "index": 4, "timestamp": 1, "token": "hi"}
    assert frame.endswith("\n\n")


def test_sse_terminal_frame_says_done():
    frame = events.sse(events.cancelled(message_id=1, content="", html="", metrics={}))
    assert json.loads(frame.decode().removeprefix("data: "))["done"] is True


def test_nul_characters_are_removed_from_messages():
    assert parse('{"content": "a\\u0000b"}').content == "ab"
    with pytest.raises(wire.ProtocolError) as caught:
        parse('{"content": "\\u0000"}')
    assert caught.value.code == "empty_content"
