"""Reads for chat pages."""

from __future__ import annotations

from django.db.models import QuerySet

from chat.models import Conversation, Message


def conversations_for(user, *, limit: int = 100) -> QuerySet[Conversation]:
    return Conversation.objects.filter(owner=user).order_by("-updated_at")[:limit]


def messages_for_page(conversation: Conversation) -> list[Message]:
    """Messages in order; assistant messages carry their stored sanitized `html`."""
    return list(conversation.messages.all())
