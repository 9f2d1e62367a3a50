"""A conversation's own settings: the model it uses and its system prompt."""

from __future__ import annotations

from django.conf import settings

from chat.models import Conversation
from realtime import wire
from realtime.db import on_db_pool
from realtime.model_catalog import catalog


async def update_settings(
    *,
    user,
    conversation_id: int | None,
    model: str | None = None,
    system_prompt: str | None = None,
) -> Conversation:
    """Set the model ('' = the site default) and/or the system prompt ('' = the site's).

    With no conversation id, a new conversation is created with them: a person
    can pick before the first message. Raises ProtocolError: not_found (not the
    user's), invalid_request (a model not offered), too_large (the prompt).
    """
    conversation = None
    if conversation_id is not None:
        conversation = await _own_conversation(user=user, conversation_id=conversation_id)
    if model is not None:
        model = model.strip()
        current = conversation.model if conversation else ""
        # The current model stays choosable even if it is no longer offered.
        max_length = Conversation._meta.get_field("model").max_length
        if (
            model
            and model != current
            and (len(model) > max_length or model not in await catalog.offered())
        ):
            raise wire.ProtocolError(wire.INVALID_REQUEST, "That model is not available.")
    if system_prompt is not None:
        system_prompt = wire.clean_text(system_prompt).strip()
        if len(system_prompt) > settings.CHAT_MAX_SYSTEM_PROMPT_CHARS:
            raise wire.ProtocolError(
                wire.TOO_LARGE,
                f"The system prompt is longer than {settings.CHAT_MAX_SYSTEM_PROMPT_CHARS}"
                " characters.",
            )
    return await _save(user=user, conversation=conversation, model=model, prompt=system_prompt)


@on_db_pool(reads=True)
def _own_conversation(*, user, conversation_id: int) -> Conversation:
    conversation = Conversation.objects.filter(pk=conversation_id, owner=user).first()
    if conversation is None:
        raise wire.ProtocolError(wire.NOT_FOUND, "No such conversation")
    return conversation


@on_db_pool
def _save(
    *, user, conversation: Conversation | None, model: str | None, prompt: str | None
) -> Conversation:
    changes = {
        field: value
        for field, value in (("model", model), ("system_prompt", prompt))
        if value is not None
    }
    if conversation is None:
        return Conversation.objects.create(owner=user, **changes)
    # An update, not save(): the list keeps its order (updated_at is the last message's).
    if changes and not Conversation.objects.filter(pk=conversation.pk, owner=user).update(
        **changes
    ):
        raise wire.ProtocolError(wire.NOT_FOUND, "No such conversation")
    for field, value in changes.items():
        setattr(conversation, field, value)
    return conversation
