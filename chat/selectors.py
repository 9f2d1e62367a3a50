"""Reads for chat pages."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q, QuerySet

from chat.models import Conversation, Message


def conversations_for(user, *, limit: int = 100) -> QuerySet[Conversation]:
    return Conversation.objects.filter(owner=user).order_by("-updated_at")[:limit]


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
