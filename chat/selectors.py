"""Reads for chat pages."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import Q, QuerySet

from chat.branches import Tree, Versions
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
    """The `limit` last messages of the path shown (chat.branches), before message `before`.

    Each carries `versions` (chat.branches.Versions) if it has siblings.
    Assistant messages carry their stored, sanitized `html`: nothing is rendered here.
    """
    tree = _tree(conversation)
    path = tree.path()
    if before is not None:
        if before not in path:  # another branch is shown now
            return MessagePage(messages=[], has_more=False)
        path = path[: path.index(before)]
    return MessagePage(
        messages=_messages(conversation, tree, path[-limit:]), has_more=len(path) > limit
    )


def shown_messages(conversation: Conversation) -> list[Message]:
    """Every message of the path shown, first to last (shares and exports show this)."""
    tree = _tree(conversation)
    return _messages(conversation, tree, tree.path())


def path_from(conversation: Conversation, message_id: int) -> list[Message] | None:
    """Message `message_id` and the path shown below it; None if no such message."""
    tree = _tree(conversation)
    if message_id not in tree:
        return None
    return _messages(conversation, tree, tree.path_from(message_id))


def _tree(conversation: Conversation) -> Tree:
    return Tree(conversation.messages.values_list("id", "parent_id", "chosen_at"))


def _messages(conversation: Conversation, tree: Tree, ids: list[int]) -> list[Message]:
    rows = conversation.messages.in_bulk(ids)
    messages = [rows[pk] for pk in ids]
    for message in messages:
        versions = tree.versions(message.pk)
        message.versions = Versions(versions, message.pk) if len(versions) > 1 else None
    return messages
