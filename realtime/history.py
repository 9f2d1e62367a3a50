"""The person's conversation history, for apps that talk but do not own it.

Chat owns the history (its conversations list). Voice, which must not import
chat, hands each finished turn to whatever recorder is registered here; chat
registers one when it loads (chat/apps.py). With no recorder (an app set
without chat), turns are simply not mirrored.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SpokenTurn:
    """One exchange to append to a conversation of the history."""

    user_id: int
    # The conversation to append to; None starts a new one titled `title`.
    conversation_id: int | None
    title: str
    user_text: str
    assistant_text: str
    # "complete", "cancelled" (interrupted or stopped) or "error": the answer's end.
    status: str
    model: str = ""
    error_code: str = ""
    metrics: dict[str, float | None] = field(default_factory=dict)


# Records a turn; returns the conversation's id (new or the one given).
Recorder = Callable[[SpokenTurn], Awaitable[int]]

_recorder: Recorder | None = None


def register(recorder: Recorder) -> None:
    """Set the history's recorder (one per site: the app owning the history)."""
    global _recorder
    _recorder = recorder


async def record(turn: SpokenTurn) -> int | None:
    """Append a turn to the history; its conversation's id, or None if there is no history."""
    if _recorder is None:
        return None
    return await _recorder(turn)
