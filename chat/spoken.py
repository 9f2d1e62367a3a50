"""Turns spoken elsewhere (the voice page) written into the chat history.

Registered with realtime.history by chat/apps.py: voice hands over each
finished turn without importing chat, and the spoken conversation appears in
the sidebar like a typed one, with its transcripts as messages.
"""

from __future__ import annotations

from django.db import transaction

from chat.models import Conversation, Message
from realtime.db import on_db_pool
from realtime.history import SpokenTurn

_STATUS = {
    "complete": Message.Status.COMPLETE,
    "cancelled": Message.Status.CANCELLED,
    "error": Message.Status.ERROR,
}


@on_db_pool
def _record(turn: SpokenTurn) -> int:
    with transaction.atomic():
        conversation = None
        if turn.conversation_id is not None:
            conversation = Conversation.objects.filter(
                pk=turn.conversation_id, owner_id=turn.user_id
            ).first()
        if conversation is None:
            conversation = Conversation.objects.create(
                owner_id=turn.user_id, title=turn.title[:200], model=turn.model
            )
        if turn.user_text:
            Message.objects.create(
                conversation=conversation, role=Message.Role.USER, content=turn.user_text
            )
        metrics = turn.metrics
        Message.objects.create(
            conversation=conversation,
            role=Message.Role.ASSISTANT,
            content=turn.assistant_text,
            status=_STATUS.get(turn.status, Message.Status.COMPLETE),
            error_code=turn.error_code,
            model=turn.model,
            ttft_ms=metrics.get("voice_to_voice_ms"),
            total_ms=metrics.get("total_ms"),
        )
        conversation.save(update_fields=["updated_at"])
        return conversation.pk


async def record_spoken_turn(turn: SpokenTurn) -> int:
    return await _record(turn)
