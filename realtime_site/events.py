"""The wire protocol: event names, builders and client-event parsing, in one place.

Every JSON frame the server sends is built here and every frame a client sends
is validated here, so docs/protocol.md has exactly one source to match. This
module is pure Python: no Django, no sockets.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

# --- error codes ---------------------------------------------------------------
INVALID_JSON = "invalid_json"
UNKNOWN_TYPE = "unknown_type"
INVALID_EVENT = "invalid_event"
EMPTY_CONTENT = "empty_content"
TOO_LARGE = "too_large"
BUSY = "busy"
NOT_FOUND = "not_found"
RATE_LIMITED = "rate_limited"
UPSTREAM_ERROR = "upstream_error"
TIMEOUT = "timeout"
BAD_REQUEST = "bad_request"
INTERRUPTED = "interrupted"
ABANDONED = "abandoned"
TOO_MANY_FRAMES = "too_many_frames"

RETRYABLE_CODES = frozenset({BUSY, RATE_LIMITED, UPSTREAM_ERROR, TIMEOUT, INTERRUPTED})


class ProtocolError(Exception):
    """A client event or request we refuse; becomes one `error` event."""

    def __init__(self, code: str, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = code in RETRYABLE_CODES if retryable is None else retryable


# --- server -> client ------------------------------------------------------------
def now_ms() -> int:
    return int(time.time() * 1000)


def ack(*, message_id: int, conversation_id: int, user_message_id: int) -> dict:
    return {
        "type": "ack",
        "status": "processing",
        "message_id": message_id,
        "conversation_id": conversation_id,
        "user_message_id": user_message_id,
    }


PROGRESS_MESSAGES = {
    "thinking": "Thinking…",
    "generating": "Generating…",
    "complete": "Done",
}
PROGRESS_FRACTION = {"thinking": 0.1, "generating": 0.5, "complete": 1.0}


def progress(stage: str, *, message_id: int) -> dict:
    return {
        "type": "progress",
        "stage": stage,
        "progress": PROGRESS_FRACTION[stage],
        "message": PROGRESS_MESSAGES[stage],
        "message_id": message_id,
    }


def token(*, content: str, index: int, timestamp: int | None = None) -> dict:
    return {
        "type": "token",
        "content": content,
        "index": index,
        "timestamp": now_ms() if timestamp is None else timestamp,
    }


def complete(*, message_id: int, content: str, html: str, total_tokens: int, metrics: dict) -> dict:
    return {
        "type": "complete",
        "message_id": message_id,
        "content": content,
        "html": html,
        "total_tokens": total_tokens,
        "metrics": metrics,
    }


def cancelled(*, message_id: int, content: str, html: str, metrics: dict) -> dict:
    return {
        "type": "cancelled",
        "message_id": message_id,
        "content": content,
        "html": html,
        "metrics": metrics,
    }


def error(
    code: str,
    message: str,
    *,
    retryable: bool | None = None,
    message_id: int | None = None,
    content: str | None = None,
    metrics: dict | None = None,
) -> dict:
    """An error; with `message_id` it ends that reply and carries its saved text."""
    event: dict[str, Any] = {
        "type": "error",
        "code": code,
        "message": message,
        "retryable": code in RETRYABLE_CODES if retryable is None else retryable,
    }
    if message_id is not None:
        event["message_id"] = message_id
    if content is not None:
        event["content"] = content
    if metrics is not None:
        event["metrics"] = metrics
    return event


def error_from(exc: ProtocolError, *, message_id: int | None = None) -> dict:
    return error(exc.code, exc.message, retryable=exc.retryable, message_id=message_id)


TERMINAL_TYPES = frozenset({"complete", "cancelled", "error"})


def is_terminal(event: dict) -> bool:
    """True for the last event of a reply (only reply errors carry a message_id)."""
    return event["type"] in TERMINAL_TYPES and (event["type"] != "error" or "message_id" in event)


def dumps(event: dict) -> str:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


def sse(event: dict, *, event_id: int | None = None) -> bytes:
    """One Server-Sent Event frame.

    Legacy fields stay for the first client: `token` on token events and
    `done: true` on the last event of a reply.
    """
    payload = dict(event)
    if event["type"] == "token":
        payload["token"] = event["content"]
    if is_terminal(event):
        payload["done"] = True
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}data: {dumps(payload)}\n\n".encode()


# --- client -> server ------------------------------------------------------------
@dataclass(frozen=True)
class ClientEvent:
    type: str
    content: str = ""
    conversation_id: int | None = None
    message_id: int | None = None
    after: int = -1


CHAT_CLIENT_TYPES = frozenset({"message", "cancel", "resume", "ping"})


def _optional_int(data: dict, key: str, default: int | None = None) -> int | None:
    value = data.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.lstrip("-").isdigit():
            return int(value)
        raise ProtocolError(INVALID_EVENT, f"'{key}' must be an integer")
    return value


def parse_client_event(
    raw: str | bytes | None,
    *,
    allowed_types: frozenset[str] = CHAT_CLIENT_TYPES,
    max_frame_bytes: int,
    max_content_chars: int,
) -> ClientEvent:
    """Validate one client frame; raise ProtocolError with a precise code."""
    if raw is None:
        raise ProtocolError(INVALID_EVENT, "Binary frames are not accepted here")
    size = len(raw.encode() if isinstance(raw, str) else raw)
    if size > max_frame_bytes:
        raise ProtocolError(TOO_LARGE, f"Frame is {size} bytes; the limit is {max_frame_bytes}")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError(INVALID_JSON, "Frame is not valid JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError(INVALID_EVENT, "Frame must be a JSON object")
    # A bare {"content": ...} is a message: the first clients sent only that.
    event_type = data.get("type", "message" if "content" in data else None)
    if not isinstance(event_type, str):
        raise ProtocolError(INVALID_EVENT, "Frame needs a 'type'")
    if event_type not in allowed_types:
        raise ProtocolError(UNKNOWN_TYPE, f"Unknown event type '{event_type[:40]}'")
    content = data.get("content", "")
    if not isinstance(content, str):
        raise ProtocolError(INVALID_EVENT, "'content' must be a string")
    if event_type == "message":
        # NUL is never meaningful in a chat message, and PostgreSQL text cannot store it.
        content = content.replace("\x00", "").strip()
        if not content:
            raise ProtocolError(EMPTY_CONTENT, "Message is empty")
        if len(content) > max_content_chars:
            raise ProtocolError(
                TOO_LARGE, f"Message is {len(content)} characters; the limit is {max_content_chars}"
            )
    after = _optional_int(data, "after", -1)
    return ClientEvent(
        type=event_type,
        content=content,
        conversation_id=_optional_int(data, "conversation_id"),
        message_id=_optional_int(data, "message_id"),
        after=-1 if after is None else after,
    )
