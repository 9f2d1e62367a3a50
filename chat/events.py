"""The chat protocol: every chat event is built here, every chat client frame parsed here.

docs/protocol.md documents exactly these. Generic pieces (error codes, the
`error` event, framing, frame validation) come from realtime.wire.
"""

from __future__ import annotations

from dataclasses import dataclass

from realtime import wire
from realtime.wire import now_ms


# --- server -> client ------------------------------------------------------------
def ack(
    *,
    message_id: int,
    conversation_id: int,
    user_message_id: int,
    replaces: int | None = None,
    version_of: int | None = None,
    versions: list[int] | None = None,
) -> dict:
    event = {
        "type": "ack",
        "status": "processing",
        "message_id": message_id,
        "conversation_id": conversation_id,
        "user_message_id": user_message_id,
    }
    if replaces is not None:
        event["replaces"] = replaces  # a retry: the failed reply this one takes the place of
    if version_of is not None:
        # A regenerate (the old reply) or an edit (the old user message): the new
        # message is its sibling, shown in its place; `versions` are theirs, oldest first.
        event["version_of"] = version_of
        event["versions"] = versions or []
    return event


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


def merge_tokens(tokens: list[dict]) -> dict:
    """One `token` frame for consecutive token events: a reader's backlog.

    `index` is the last token's, so a client resumes with `after` = the index
    it holds, exactly as with single tokens.
    """
    if len(tokens) == 1:
        return tokens[0]
    last = tokens[-1]
    return {
        "type": "token",
        "content": "".join(t["content"] for t in tokens),
        "index": last["index"],
        "timestamp": last["timestamp"],
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


def reply_error(
    code: str,
    message: str,
    *,
    message_id: int,
    content: str,
    metrics: dict | None,
    retryable: bool | None = None,
) -> dict:
    """A reply's terminal error: carries the saved partial text."""
    return wire.error(
        code, message, retryable=retryable, message_id=message_id, content=content, metrics=metrics
    )


TERMINAL_TYPES = frozenset({"complete", "cancelled", "error"})


def is_terminal(event: dict) -> bool:
    """True for the last event of a reply (only reply errors carry a message_id)."""
    return event["type"] in TERMINAL_TYPES and (event["type"] != "error" or "message_id" in event)


def sse(event: dict, *, event_id: int | None = None) -> bytes:
    """One chat SSE frame; legacy fields stay for the first client.

    `token` on token events and `done: true` on the last event of a reply.
    """
    payload = dict(event)
    if event["type"] == "token":
        payload["token"] = event["content"]
    if is_terminal(event):
        payload["done"] = True
    return wire.sse(payload, event_id=event_id)


# --- server -> every chat socket of the user ---------------------------------------------
# What one tab (or device, or API client) changes, the user's other tabs are told,
# on every server process: a channel-layer group per user that every chat socket
# joins. Tokens never go through it: a tab that shows the conversation follows
# the reply's stream with `resume`, as after a reconnect.
LAYER_MESSAGE = "chat.event"  # handled by ChatConsumer.chat_event


def user_group(user_id: int) -> str:
    """The channel-layer group of every chat socket of one user."""
    return f"chat.user.{user_id}"


def to_user_sockets(event: dict, *, origin: str | None) -> dict:
    """The layer message carrying `event`; the socket named `origin` (the sender) skips it."""
    return {"type": LAYER_MESSAGE, "event": event, "origin": origin}


def user_message(
    *, conversation_id: int, title: str, user_message_id: int, content: str, message_id: int
) -> dict:
    """A message was sent (from another tab or an API client) and its reply started."""
    return {
        "type": "user_message",
        "conversation_id": conversation_id,
        "title": title,
        "user_message_id": user_message_id,
        "content": content,
        "message_id": message_id,
    }


def reply_retried(
    *, conversation_id: int, user_message_id: int, message_id: int, replaces: int
) -> dict:
    """A failed reply was deleted and a new one started for the same user message."""
    return {
        "type": "reply_retried",
        "conversation_id": conversation_id,
        "user_message_id": user_message_id,
        "message_id": message_id,
        "replaces": replaces,
    }


def reply_regenerated(
    *,
    conversation_id: int,
    user_message_id: int,
    message_id: int,
    version_of: int,
    versions: list[int],
) -> dict:
    """A new version of reply `version_of` started; the old one is kept on its branch."""
    return {
        "type": "reply_regenerated",
        "conversation_id": conversation_id,
        "user_message_id": user_message_id,
        "message_id": message_id,
        "version_of": version_of,
        "versions": versions,
    }


def message_edited(
    *,
    conversation_id: int,
    user_message_id: int,
    content: str,
    message_id: int,
    version_of: int,
    versions: list[int],
) -> dict:
    """User message `version_of` was edited: a new version of it was sent and its reply started."""
    return {
        "type": "message_edited",
        "conversation_id": conversation_id,
        "user_message_id": user_message_id,
        "content": content,
        "message_id": message_id,
        "version_of": version_of,
        "versions": versions,
    }


def version_switched(*, conversation_id: int, message_id: int) -> dict:
    """Message `message_id` is shown instead of its siblings, with the path chosen below it."""
    return {
        "type": "version_switched",
        "conversation_id": conversation_id,
        "message_id": message_id,
    }


def conversation_renamed(*, conversation_id: int, title: str) -> dict:
    return {"type": "conversation_renamed", "conversation_id": conversation_id, "title": title}


def conversation_deleted(*, conversation_id: int) -> dict:
    return {"type": "conversation_deleted", "conversation_id": conversation_id}


# --- client -> server ------------------------------------------------------------
CLIENT_TYPES = frozenset(
    {"message", "cancel", "resume", "retry", "regenerate", "edit", "switch", "ping"}
)
WITH_CONTENT = frozenset({"message", "edit"})


@dataclass(frozen=True)
class ClientEvent:
    type: str
    content: str = ""
    conversation_id: int | None = None
    message_id: int | None = None
    after: int = -1


def parse_client_event(
    raw: str | bytes,
    *,
    allowed_types: frozenset[str] = CLIENT_TYPES,
    max_frame_bytes: int,
    max_content_chars: int,
) -> ClientEvent:
    """Validate one chat frame; raise ProtocolError with a precise code."""
    return client_event(
        wire.parse_frame(raw, max_frame_bytes=max_frame_bytes),
        allowed_types=allowed_types,
        max_content_chars=max_content_chars,
    )


def client_event(
    data: dict, *, allowed_types: frozenset[str] = CLIENT_TYPES, max_content_chars: int
) -> ClientEvent:
    """The typed chat event of a decoded frame."""
    # A bare {"content": ...} is a message: the first clients sent only that.
    kind = wire.event_type(
        data, allowed=allowed_types, default="message" if "content" in data else None
    )
    content = ""
    if kind in WITH_CONTENT:
        try:
            content = wire.text_field(data, "content", max_chars=max_content_chars)
        except wire.ProtocolError as exc:
            if exc.code != wire.EMPTY_CONTENT:
                raise
            raise wire.ProtocolError(wire.EMPTY_CONTENT, "Message is empty") from None
    elif not isinstance(data.get("content", ""), str):
        raise wire.ProtocolError(wire.INVALID_EVENT, "'content' must be a string")
    return ClientEvent(
        type=kind,
        content=content,
        conversation_id=wire.int_field(data, "conversation_id"),
        message_id=wire.int_field(data, "message_id"),
        # -1: from the first token; lower would index the stream from its end.
        after=wire.int_field(data, "after", -1, minimum=-1),
    )
