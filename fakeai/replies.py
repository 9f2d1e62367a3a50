"""Deterministic reply text, so tests can predict exactly what a stream yields.

Nothing here does I/O or reads the clock: the same ``messages`` and token target
always produce the same tokens.
"""

import math
import re
from collections.abc import Sequence
from typing import Any

# NATO words are easy to spot in a UI and never collide with echoed user text.
FILLER_WORDS: tuple[str, ...] = (
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
    "india", "juliett", "kilo", "lima", "mike", "november", "oscar", "papa",
    "quebec", "romeo", "sierra", "tango", "uniform", "victor", "whiskey",
    "xray", "yankee", "zulu",
)  # fmt: skip

# A token is a word plus the whitespace after it; a text made only of
# whitespace is one token, so "".join(tokenize(t)) == t always holds.
_TOKEN_RE = re.compile(r"\s*\S+\s*|\s+")


def tokenize(text: str) -> list[str]:
    """Split ``text`` into word-plus-following-space tokens (lossless)."""
    return _TOKEN_RE.findall(text)


def message_text(message: Any) -> str:
    """Return the plain text of one chat message (string or content-part list)."""
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict)]
        return " ".join(p for p in parts if isinstance(p, str))
    return ""


def _is_user(message: Any) -> bool:
    return isinstance(message, dict) and message.get("role") == "user"


def reply_tokens(messages: Sequence[Any], target_tokens: int) -> list[str]:
    """Return the reply to ``messages`` as tokens, padded to ``target_tokens``.

    The reply is ``"Echo: <last user text> (turn <n>)"`` followed by cycled
    filler words; the echo part is never truncated, so the result may be
    longer than ``target_tokens`` but never shorter than the echo.
    """
    user_messages = [m for m in messages if _is_user(m)]
    last_user_text = message_text(user_messages[-1]) if user_messages else ""
    echo = f"Echo: {last_user_text} (turn {len(user_messages)})"
    missing = target_tokens - len(tokenize(echo))
    if missing <= 0:
        return tokenize(echo)
    filler = (FILLER_WORDS[i % len(FILLER_WORDS)] for i in range(missing))
    # The echo ends with ")", so the joining space belongs to its last token.
    return tokenize(echo + " " + " ".join(filler))


def count_prompt_tokens(messages: Sequence[Any]) -> int:
    """Roughly estimate prompt tokens (chars/4, at least 1 per message) for usage."""
    return sum(max(1, math.ceil(len(message_text(m)) / 4)) for m in messages)
