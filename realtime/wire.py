"""Wire basics shared by every socket and stream: error codes, framing, frame parsing.

Apps build their own events on these (chat/events.py, rooms, voice); what is
common to every protocol lives here once: the `error` event and its codes,
JSON and SSE framing, and the validation of a client frame (size, JSON,
nesting, an object with a `type`). Pure Python: no Django, no sockets.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from typing import Any

# --- error codes ---------------------------------------------------------------
INVALID_JSON = "invalid_json"
UNKNOWN_TYPE = "unknown_type"
INVALID_EVENT = "invalid_event"
EMPTY_CONTENT = "empty_content"
TOO_LARGE = "too_large"
BUSY = "busy"
NOT_FOUND = "not_found"
NOT_STREAMING = "not_streaming"
RATE_LIMITED = "rate_limited"
UPSTREAM_ERROR = "upstream_error"
TIMEOUT = "timeout"
BAD_REQUEST = "bad_request"
INTERRUPTED = "interrupted"
ABANDONED = "abandoned"
TOO_MANY_FRAMES = "too_many_frames"
UNAUTHORIZED = "unauthorized"
FORBIDDEN = "forbidden"
INTERNAL_ERROR = "internal_error"
# HTTP only: refusals Django makes before a view runs.
INVALID_REQUEST = "invalid_request"
METHOD_NOT_ALLOWED = "method_not_allowed"
CSRF_FAILED = "csrf_failed"

RETRYABLE_CODES = frozenset(
    {BUSY, RATE_LIMITED, UPSTREAM_ERROR, TIMEOUT, INTERRUPTED, INTERNAL_ERROR}
)

# Deeper JSON than this is refused before anything walks it (a 2 KB frame of
# nested arrays otherwise exhausts the recursion limit of whatever reads it).
MAX_JSON_DEPTH = 32

# JSON may carry lone UTF-16 surrogates as escapes ("\ud800"); decoded, they
# make a string that cannot be encoded as UTF-8: not sent on a socket, not
# stored by a database driver. (Escaped pairs decode to one code point.)
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")
# A cheap look at the raw text before walking the decoded frame.
_MAY_HOLD_SURROGATES = re.compile(r"\\u[dD][89a-fA-F]|[\ud800-\udfff]")


class ProtocolError(Exception):
    """A client event or request we refuse; becomes one `error` event."""

    def __init__(self, code: str, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = code in RETRYABLE_CODES if retryable is None else retryable


def now_ms() -> int:
    return int(time.time() * 1000)


def error(
    code: str,
    message: str,
    *,
    retryable: bool | None = None,
    message_id: int | None = None,
    **extra: Any,
) -> dict:
    """An `error` event; with `message_id` it is that message's terminal event."""
    event: dict[str, Any] = {
        "type": "error",
        "code": code,
        "message": message,
        "retryable": code in RETRYABLE_CODES if retryable is None else retryable,
    }
    if message_id is not None:
        event["message_id"] = message_id
    event.update({key: value for key, value in extra.items() if value is not None})
    return event


def error_from(exc: ProtocolError, *, message_id: int | None = None) -> dict:
    return error(exc.code, exc.message, retryable=exc.retryable, message_id=message_id)


def dumps(event: dict) -> str:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


def sse(payload: dict, *, event_id: int | None = None) -> bytes:
    """One Server-Sent Events frame carrying `payload` as JSON."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}data: {dumps(payload)}\n\n".encode()


# --- client -> server ------------------------------------------------------------
def parse_frame(raw: str | bytes, *, max_frame_bytes: int) -> dict:
    """Validate one client JSON frame: size, UTF-8, JSON, nesting depth, an object.

    Lone surrogates in its strings become U+FFFD, so what comes out can be
    stored and sent. Raises ProtocolError with a precise code.
    """
    size = len(raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw)
    if size > max_frame_bytes:
        raise ProtocolError(TOO_LARGE, f"Frame is {size} bytes; the limit is {max_frame_bytes}")
    if isinstance(raw, bytes):
        try:
            # JSON between systems is UTF-8 (RFC 8259); json.loads would also
            # take UTF-16 and surrogates encoded as bytes.
            raw = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ProtocolError(INVALID_JSON, "Frame is not valid UTF-8") from None
    try:
        data = json.loads(raw)
    except RecursionError:
        raise ProtocolError(INVALID_JSON, "Frame is nested too deeply") from None
    except ValueError:
        raise ProtocolError(INVALID_JSON, "Frame is not valid JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError(INVALID_EVENT, "Frame must be a JSON object")
    if _depth_exceeds(data, MAX_JSON_DEPTH):
        raise ProtocolError(INVALID_JSON, "Frame is nested too deeply")
    if _MAY_HOLD_SURROGATES.search(raw):
        data = _replace_lone_surrogates(data)
    return data


def clean_text(value: str) -> str:
    """`value` without NUL (PostgreSQL text cannot store it) and with lone
    surrogates as U+FFFD (what a browser sends for them in a text frame)."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    return value if value.isascii() else _LONE_SURROGATE.sub("\ufffd", value)


def _replace_lone_surrogates(value: Any) -> Any:
    """Every string of a decoded frame, keys included, made encodable.

    Recursive, but only after the depth check has bounded the nesting.
    """
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_replace_lone_surrogates(k): _replace_lone_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_lone_surrogates(item) for item in value]
    return value


def event_type(data: dict, *, allowed: Iterable[str], default: str | None = None) -> str:
    """The frame's `type` (or `default` when it has none), if it is one of `allowed`."""
    kind = data.get("type", default)
    if not isinstance(kind, str):
        raise ProtocolError(INVALID_EVENT, "Frame needs a 'type'")
    if kind not in allowed:
        raise ProtocolError(UNKNOWN_TYPE, f"Unknown event type '{kind[:40]}'")
    return kind


def _depth_exceeds(value: Any, limit: int) -> bool:
    """True if containers nest deeper than `limit` (iterative: no recursion to exhaust)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def text_field(
    data: dict, key: str, *, max_chars: int, required: bool = True, default: str = ""
) -> str:
    """A string field, stripped and cleaned (`clean_text`): safe to store and to send."""
    value = data.get(key, default)
    if not isinstance(value, str):
        raise ProtocolError(INVALID_EVENT, f"'{key}' must be a string")
    value = clean_text(value).strip()
    if required and not value:
        raise ProtocolError(EMPTY_CONTENT, f"'{key}' is empty")
    if len(value) > max_chars:
        raise ProtocolError(
            TOO_LARGE, f"'{key}' is {len(value)} characters; the limit is {max_chars}"
        )
    return value


_DIGITS = re.compile(r"-?[0-9]{1,18}")
# Past this an id or index is nonsense, and some databases overflow on it.
MAX_INT_FIELD = 2**53


def int_field(
    data: dict, key: str, default: int | None = None, *, minimum: int | None = None
) -> int | None:
    """An optional integer field; digit strings are accepted (form posts send them)."""
    value = data.get(key, default)
    if value is None:
        return default
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(INVALID_EVENT, f"'{key}' must be an integer")
    if abs(value) > MAX_INT_FIELD:
        raise ProtocolError(INVALID_EVENT, f"'{key}' is out of range")
    if minimum is not None and value < minimum:
        raise ProtocolError(INVALID_EVENT, f"'{key}' must be {minimum} or more")
    return value
