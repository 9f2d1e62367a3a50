"""Reads for chat pages."""

from __future__ import annotations

from django.db.models import QuerySet

from chat.models import Conversation, Message
from chat.rendering import render_markdown


def conversations_for(user, *, limit: int = 100) -> QuerySet[Conversation]:
    return Conversation.objects.filter(owner=user).order_by("-updated_at")[:limit]


def messages_for_page(conversation: Conversation) -> list[Message]:
    """Messages in order, each with sanitized `html` for assistant text."""
    result = list(conversation.messages.all())
    for message in result:
        message.html = render_markdown(message.content) if message.role == "assistant" else ""
    return result
