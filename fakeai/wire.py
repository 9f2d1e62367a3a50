"""OpenAI wire format: chat objects, SSE frames and error bodies.

Kept apart from the HTTP handling so the shapes the ``openai`` client parses
live in one place. Stream frames are pre-rendered around the per-token part,
so a token costs one small ``json.dumps`` — this keeps hundreds of concurrent
streams cheap.
"""

import json
from typing import Any

DONE_FRAME = b"data: [DONE]\n\n"
MALFORMED_FRAME = b"data: {not json\n\n"


def dumps(obj: Any) -> bytes:
    """Compact JSON encoding used for every body and frame."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """Build an OpenAI ``usage`` object."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def error_body(
    message: str, type_: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """Build an OpenAI-style error body."""
    return {"error": {"message": message, "type": type_, "code": code, "param": param}}


def error_frame(message: str) -> bytes:
    """An SSE frame carrying an error in the middle of a stream."""
    return b"data: " + dumps(error_body(message, "server_error")) + b"\n\n"


def chat_completion(
    completion_id: str,
    created: int,
    model: str,
    text: str,
    finish_reason: str,
    usage_: dict[str, int],
) -> dict[str, Any]:
    """Build a non-streaming ``chat.completion`` object."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage_,
    }


class ChunkFrames:
    """Renders the SSE frames of one ``chat.completion.chunk`` stream."""

    def __init__(self, completion_id: str, created: int, model: str) -> None:
        head = dumps(
            {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
            }
        )
        self._head = b"data: " + head[:-1]  # drop "}" so fields can follow
        self._content_prefix = self._head + b',"choices":[{"index":0,"delta":{"content":'
        self._content_suffix = b'},"finish_reason":null}]}\n\n'

    def _frame(self, rest: dict[str, Any]) -> bytes:
        return self._head + b"," + dumps(rest)[1:] + b"\n\n"

    def role(self) -> bytes:
        """First frame: assistant role with empty content."""
        delta = {"role": "assistant", "content": ""}
        return self._frame({"choices": [{"index": 0, "delta": delta, "finish_reason": None}]})

    def content(self, token: str) -> bytes:
        """One content-token frame."""
        return self._content_prefix + dumps(token) + self._content_suffix

    def finish(self, reason: str) -> bytes:
        """Empty-delta frame carrying ``finish_reason``."""
        return self._frame({"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]})

    def usage(self, usage_: dict[str, int]) -> bytes:
        """Trailing usage frame (``stream_options.include_usage``)."""
        return self._frame({"choices": [], "usage": usage_})
