"""Reads for chat pages."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import Q, QuerySet

from chat.models import Conversation, Message

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_CURSOR = re.compile(r"([0-9]{1,20})_([0-9]{1,20})")


@dataclass(frozen=True)
class ConversationCursor:
    """Where a list of conversations (newest first) stopped: its last one's (updated_at, id).

    Written as `<updated_at in µs since the epoch>_<id>`: exact, and the same
    for SQLite and PostgreSQL, which both keep microseconds.
    """

    updated_at: datetime
    id: int

    @classmethod
    def after(cls, conversation: Conversation) -> ConversationCursor:
        return cls(updated_at=conversation.updated_at, id=conversation.pk)

    @classmethod
    def parse(cls, text: str) -> ConversationCursor:
        """Raises ValueError for anything this class did not write."""
        match = _CURSOR.fullmatch(text)
        if match is None:
            raise ValueError(f"not a conversation cursor: {text[:40]!r}")
        try:
            updated_at = _EPOCH + int(match[1]) * _MICROSECOND
        except OverflowError as exc:
            raise ValueError("cursor out of range") from exc
        return cls(updated_at=updated_at, id=int(match[2]))

    def __str__(self) -> str:
        return f"{(self.updated_at - _EPOCH) // _MICROSECOND}_{self.id}"

    def older(self) -> Q:
        """The conversations that come after this cursor, newest first."""
        return Q(updated_at__lt=self.updated_at) | Q(updated_at=self.updated_at, pk__lt=self.id)


@dataclass(frozen=True)
class ConversationPage:
    """Conversations newest first; `next_cursor` reads the next page (None: this is the last)."""

    conversations: list[Conversation]
    next_cursor: ConversationCursor | None


def newest_first(query: QuerySet[Conversation]) -> QuerySet[Conversation]:
    return query.order_by("-updated_at", "-id")


def page_of(
    query: QuerySet[Conversation], *, after: ConversationCursor | None, limit: int
) -> ConversationPage:
    """One keyset page of `query`, newest first, after `after` (or from the newest)."""
    if after is not None:
        query = query.filter(after.older())
    rows = list(newest_first(query)[: limit + 1])
    page = rows[:limit]
    more = len(rows) > limit and page
    return ConversationPage(
        conversations=page, next_cursor=ConversationCursor.after(page[-1]) if more else None
    )


def conversations_for(user, *, limit: int = 100) -> QuerySet[Conversation]:
    return newest_first(Conversation.objects.filter(owner=user))[:limit]


def conversation_page(
    user, *, after: ConversationCursor | None = None, limit: int
) -> ConversationPage:
    """A page of the sidebar: `user`'s conversations, the most recently active first."""
    return page_of(Conversation.objects.filter(owner=user), after=after, limit=limit)


@dataclass(frozen=True)
class MessagePage:
    """Messages in display order (oldest first); `has_more` if older ones exist."""

    messages: list[Message]
    has_more: bool

    @property
    def oldest_id(self) -> int | None:
        return self.messages[0].pk if self.messages else None


def message_page(conversation: Conversation, *, before: int | None, limit: int) -> MessagePage:
    """The `limit` newest messages older than message `before` (or the newest ones).

    Assistant messages carry their stored, sanitized `html`: nothing is rendered here.
    """
    query = conversation.messages.order_by("-created_at", "-id")
    if before is not None:
        anchor = conversation.messages.filter(pk=before).values("created_at").first()
        if anchor is None:
            return MessagePage(messages=[], has_more=False)
        at = anchor["created_at"]
        query = query.filter(Q(created_at__lt=at) | Q(created_at=at, pk__lt=before))
    newest_first = list(query[: limit + 1])
    return MessagePage(messages=newest_first[:limit][::-1], has_more=len(newest_first) > limit)
