"""The room protocol: every room event is built here, every room client frame parsed here.

docs/protocol.md documents exactly these. Generic pieces (error codes, the
`error` event, framing, frame validation) come from realtime.wire.
"""

from __future__ import annotations

from dataclasses import dataclass

from realtime import wire
from realtime.wire import now_ms


# --- server -> client ------------------------------------------------------------
def user_ref(user) -> dict:
    return {"id": user.pk, "username": user.get_username()}


def message(m) -> dict:
    """One stored room message, as `room_state` and `user_message` carry it."""
    event = {
        "id": m.pk,
        "role": m.role,
        "user": {"id": m.author_id, "username": m.author.get_username()} if m.author_id else None,
        "content": m.content,
        "status": m.status,
        "created_at": m.created_at.isoformat(),
    }
    if m.role == "assistant":
        event["html"] = m.html
        event["metrics"] = m.metrics
        if m.error_code:
            event["error_code"] = m.error_code
    return event


def room_state(
    *, room, messages: list, has_more: bool, participants: list[dict], ai_turn: dict | None
) -> dict:
    return {
        "type": "room_state",
        "room": {
            "id": room.pk,
            "slug": room.slug,
            "name": room.name,
            "is_private": room.is_private,
            "ai_mode": room.ai_mode,
        },
        "conversation": [message(m) for m in messages],
        "has_more": has_more,
        "participants": participants,
        "ai_turn": ai_turn,
    }


def participant_joined(*, user: dict, count: int) -> dict:
    return {"type": "participant_joined", "user": user, "count": count}


def participant_left(*, user: dict, count: int) -> dict:
    return {"type": "participant_left", "user": user, "count": count}


def user_typing(*, user: dict) -> dict:
    return {"type": "user_typing", "user": user}


def user_message(m) -> dict:
    return {"type": "user_message", **message(m)}


def ai_typing(*, status: bool, message_id: int) -> dict:
    return {"type": "ai_typing", "status": status, "message_id": message_id}


def ai_token(*, content: str, index: int, message_id: int, timestamp: int | None = None) -> dict:
    return {
        "type": "ai_token",
        "content": content,
        "index": index,
        "message_id": message_id,
        "timestamp": now_ms() if timestamp is None else timestamp,
    }


def merge_tokens(tokens: list[dict]) -> dict:
    """One `ai_token` frame for consecutive tokens: `index` is the last one's."""
    if len(tokens) == 1:
        return tokens[0]
    return {**tokens[-1], "content": "".join(t["content"] for t in tokens)}


def ai_complete(*, message_id: int, content: str, html: str, metrics: dict) -> dict:
    return {
        "type": "ai_complete",
        "message_id": message_id,
        "content": content,
        "html": html,
        "metrics": metrics,
    }


def ai_cancelled(*, message_id: int, content: str, html: str, metrics: dict) -> dict:
    return {
        "type": "ai_cancelled",
        "message_id": message_id,
        "content": content,
        "html": html,
        "metrics": metrics,
    }


def ai_error(
    code: str, text: str, *, message_id: int, content: str, metrics: dict | None, retryable: bool
) -> dict:
    """An AI turn's terminal error: carries the saved partial text."""
    return wire.error(
        code, text, retryable=retryable, message_id=message_id, content=content, metrics=metrics
    )


TERMINAL_TYPES = frozenset({"ai_complete", "ai_cancelled", "error"})


def is_terminal(event: dict) -> bool:
    return event["type"] in TERMINAL_TYPES and (event["type"] != "error" or "message_id" in event)


# --- client -> server ------------------------------------------------------------
CLIENT_TYPES = frozenset({"message", "typing", "cancel", "resume", "ping"})


@dataclass(frozen=True)
class ClientEvent:
    type: str
    content: str = ""
    message_id: int | None = None
    after: int = -1


def client_event(data: dict, *, max_content_chars: int) -> ClientEvent:
    """The typed room event of a decoded frame."""
    kind = wire.event_type(data, allowed=CLIENT_TYPES)
    content = ""
    if kind == "message":
        content = wire.text_field(data, "content", max_chars=max_content_chars)
    after = wire.int_field(data, "after", -1)
    if after < -1:
        raise wire.ProtocolError(wire.INVALID_EVENT, "'after' must be -1 or more")
    return ClientEvent(
        type=kind, content=content, message_id=wire.int_field(data, "message_id"), after=after
    )
