"""What a client may rely on in a reply's `token` frames (docs/protocol.md).

A frame carries one token, or several when the reader fell behind; `index`
is its last token's. So indices strictly increase, and the last frame's index
is the reply's token count minus one.
"""

from __future__ import annotations


def token_frames(events: list[dict]) -> list[dict]:
    return [event for event in events if event["type"] == "token"]


def assert_tokens_in_order(frames: list[dict], *, after: int = -1, total: int | None = None) -> str:
    """Check the token frames' indices; return their text, joined."""
    indices = [frame["index"] for frame in token_frames(frames)]
    assert indices, "no token frames"
    assert indices[0] > after, (after, indices)
    assert indices == sorted(set(indices)), f"indices not strictly increasing: {indices}"
    if total is not None:
        assert indices[-1] == total - 1, (indices, total)
    return "".join(frame["content"] for frame in token_frames(frames))
