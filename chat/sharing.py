"""Read-only share links: opt-in, revocable at once, one unguessable token per conversation."""

from __future__ import annotations

import re
import secrets

from django.utils import timezone

from chat import selectors
from chat.models import Conversation, Message

TOKEN_BYTES = 24  # 192 random bits, 32 URL-safe characters
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{32}")


def share(conversation: Conversation) -> str:
    """The conversation's share token, made now if it has none."""
    if conversation.share_token is None:
        conversation.share_token = secrets.token_urlsafe(TOKEN_BYTES)
        conversation.shared_at = timezone.now()
        # Not save(): sharing must not move the conversation up the list.
        Conversation.objects.filter(pk=conversation.pk).update(
            share_token=conversation.share_token, shared_at=conversation.shared_at
        )
    return conversation.share_token


def revoke(conversation: Conversation) -> None:
    """The link stops working at once; sharing again makes a new one."""
    conversation.share_token = conversation.shared_at = None
    Conversation.objects.filter(pk=conversation.pk).update(share_token=None, shared_at=None)


def shared_conversation(token: str) -> Conversation | None:
    """The conversation shared under `token`, if it still is."""
    if not _TOKEN_SHAPE.fullmatch(token):
        return None
    return Conversation.objects.filter(share_token=token).first()


def shared_messages(conversation: Conversation) -> list[Message]:
    """What a share shows: the path shown (chat.branches), finished messages only (a reply
    still generating is left out)."""
    return [
        message
        for message in selectors.shown_messages(conversation)
        if message.status != Message.Status.STREAMING
    ]
