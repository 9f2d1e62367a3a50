"""Wire basics every protocol shares: frame validation, field parsing, error events."""

from __future__ import annotations

import json

import pytest

from realtime import wire
from realtime.ratelimit import FrameRateLimiter


def code_of(call) -> str:
    with pytest.raises(wire.ProtocolError) as caught:
        call()
    return caught.value.code


def test_a_valid_frame_is_returned_as_a_dict():
    assert wire.parse_frame('{"type": "ping", "x": [1, {"y": 2}]}', max_frame_bytes=100) == {
        "type": "ping",
        "x": [1, {"y": 2}],
    }


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("nope", "invalid_json"),
        ('{"a": 1', "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        ("[1]", "invalid_event"),
        ('"text"', "invalid_event"),
        ("null", "invalid_event"),
    ],
)
def test_bad_frames_raise_precise_codes(raw, code):
    assert code_of(lambda: wire.parse_frame(raw, max_frame_bytes=1000)) == code


def test_size_is_checked_in_bytes_before_parsing():
    assert code_of(lambda: wire.parse_frame("é" * 600, max_frame_bytes=1000)) == "too_large"


def test_deep_nesting_is_refused_without_recursion_error():
    # 1,100 nested arrays in 2 KB used to raise RecursionError in the server.
    deep = '{"type": "ping", "x": ' + "[" * 1100 + "]" * 1100 + "}"
    assert code_of(lambda: wire.parse_frame(deep, max_frame_bytes=10_000)) == "invalid_json"


def test_nesting_just_past_the_limit_is_refused_and_at_the_limit_accepted():
    def nested(depth: int) -> str:
        return '{"x": ' * depth + "1" + "}" * depth

    assert wire.parse_frame(nested(wire.MAX_JSON_DEPTH), max_frame_bytes=10_000)
    too_deep = nested(wire.MAX_JSON_DEPTH + 1)
    assert code_of(lambda: wire.parse_frame(too_deep, max_frame_bytes=10_000)) == "invalid_json"


def test_event_type_defaults_and_restricts():
    assert wire.event_type({"content": "x"}, allowed={"message"}, default="message") == "message"
    assert code_of(lambda: wire.event_type({}, allowed={"message"})) == "invalid_event"
    assert code_of(lambda: wire.event_type({"type": 5}, allowed={"message"})) == "invalid_event"
    assert code_of(lambda: wire.event_type({"type": "x" * 500}, allowed={"a"})) == "unknown_type"


def test_escaped_lone_surrogates_become_replacement_characters_everywhere():
    raw = '{"type": "\\ud800", "\\udfffk": ["a\\udc00b", {"x": "\\uDBFF"}]}'
    frame = wire.parse_frame(raw, max_frame_bytes=1000)
    assert frame == {"type": "\ufffd", "\ufffdk": ["a\ufffdb", {"x": "\ufffd"}]}
    # Encodable now: it can be sent on a socket and stored.
    assert json.loads(wire.dumps(frame).encode()) == frame


def test_an_escaped_surrogate_pair_is_one_character_and_kept():
    frame = wire.parse_frame('{"c": "\\ud83d\\ude00 \\\\ud800"}', max_frame_bytes=100)
    assert frame == {"c": "😀 \\ud800"}  # an escaped backslash is not an escape


@pytest.mark.parametrize(
    "raw",
    [b'{"c": "\xed\xa0\x80"}', '{"c": "x"}'.encode("utf-16"), b'{"c": "\xff"}'],
)
def test_a_bytes_frame_must_be_utf8(raw):
    assert code_of(lambda: wire.parse_frame(raw, max_frame_bytes=1000)) == "invalid_json"


def test_a_utf8_bytes_frame_may_start_with_a_byte_order_mark():
    assert wire.parse_frame(b'\xef\xbb\xbf{"c": "\xc3\xa9"}', max_frame_bytes=100) == {"c": "é"}


def test_clean_text_drops_nul_and_replaces_lone_surrogates():
    assert wire.clean_text("a\x00b\ud800c") == "ab\ufffdc"
    assert wire.clean_text("plain 😀") == "plain 😀"


def test_text_field_replaces_lone_surrogates():
    assert wire.text_field({"c": " \udfffa "}, "c", max_chars=5) == "\ufffda"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(7, 7), ("12", 12), ("-1", -1), (None, None)],
)
def test_int_field_accepts_ints_and_digit_strings(value, expected):
    assert wire.int_field({"n": value}, "n") == expected


@pytest.mark.parametrize("value", [True, 1.5, "abc", "²", "1" * 40, 2**60, [], {}])
def test_int_field_refuses_everything_else(value):
    assert code_of(lambda: wire.int_field({"n": value}, "n")) == "invalid_event"


def test_int_field_minimum():
    assert wire.int_field({"n": -1}, "n", minimum=-1) == -1
    assert code_of(lambda: wire.int_field({"n": -2}, "n", minimum=-1)) == "invalid_event"
    assert code_of(lambda: wire.int_field({"n": "-2"}, "n", minimum=-1)) == "invalid_event"


def test_text_field_strips_nul_and_checks_length():
    assert wire.text_field({"c": " a\x00b "}, "c", max_chars=5) == "ab"
    assert code_of(lambda: wire.text_field({"c": "\x00 "}, "c", max_chars=5)) == "empty_content"
    assert code_of(lambda: wire.text_field({"c": "abcdef"}, "c", max_chars=5)) == "too_large"
    assert code_of(lambda: wire.text_field({"c": 5}, "c", max_chars=5)) == "invalid_event"


def test_error_retryable_follows_the_code_unless_given():
    assert wire.error("busy", "m")["retryable"] is True
    assert wire.error("bad_request", "m")["retryable"] is False
    assert wire.error("busy", "m", retryable=False)["retryable"] is False


def test_error_extra_fields_are_kept_and_none_dropped():
    event = wire.error("timeout", "m", message_id=3, content="partial", metrics=None)
    assert event == {
        "type": "error",
        "code": "timeout",
        "message": "m",
        "retryable": True,
        "message_id": 3,
        "content": "partial",
    }


def test_sse_frame_has_optional_id_and_blank_line():
    assert wire.sse({"a": 1}, event_id=4) == b'id: 4\ndata: {"a":1}\n\n'
    assert json.loads(wire.sse({"a": "é"}).decode().removeprefix("data: ")) == {"a": "é"}


def test_frame_rate_limiter_slides_its_window():
    limiter = FrameRateLimiter(limit=2, window_s=10)
    assert limiter.allow(now=0) and limiter.allow(now=1)
    assert not limiter.allow(now=2)
    assert limiter.allow(now=11.5)  # the frames at 0 and 1 have left the window
