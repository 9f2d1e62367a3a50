"""A conversation as a file: Markdown to read, JSON for programs."""

from __future__ import annotations

from django.utils import timezone
from django.utils.text import slugify

from chat.models import Conversation, Message

MARKERS = {Message.Status.CANCELLED: "stopped", Message.Status.STREAMING: "still generating"}


def filename(conversation: Conversation, extension: str) -> str:
    stem = slugify(conversation.title)[:60] or "conversation"
    return f"{stem}-{conversation.pk}.{extension}"


def as_json(conversation: Conversation, messages: list[Message], *, site_model: str) -> dict:
    return {
        "conversation": {
            "id": conversation.pk,
            "title": conversation.display_title,
            "model": conversation.model or site_model,
            "system_prompt": conversation.system_prompt,
            "created_at": conversation.created_at.isoformat(),
            "updated_at": conversation.updated_at.isoformat(),
        },
        "exported_at": timezone.now().isoformat(),
        "messages": [
            {
                "id": message.pk,
                "role": message.role,
                "content": message.content,
                "status": message.status,
                "error_code": message.error_code,
                "error_message": message.error_text if message.status == "error" else "",
                "model": message.model,
                "created_at": message.created_at.isoformat(),
                "updated_at": message.updated_at.isoformat(),
                "metrics": message.metrics,
            }
            for message in messages
        ],
    }


def as_markdown(conversation: Conversation, messages: list[Message], *, site_model: str) -> str:
    lines = [f"# {conversation.display_title}", ""]
    lines.append(f"- Model: {conversation.model or site_model}")
    lines.append(f"- Started: {_when(conversation.created_at)}")
    lines.append(f"- Exported: {_when(timezone.now())}")
    if conversation.system_prompt:
        lines += ["", "System prompt:", "", *_quoted(conversation.system_prompt)]
    for message in messages:
        who = "You" if message.role == Message.Role.USER else message.role.capitalize()
        details = [_when(message.created_at)]
        if message.role == Message.Role.ASSISTANT and message.model:
            details.append(message.model)
        if message.ttft_ms is not None:
            details.append(f"TTFT {message.ttft_ms:.0f} ms")
        lines += ["", "---", "", f"## {who} · {' · '.join(details)}", ""]
        lines.append(message.content.rstrip() or "*(no text)*")
        if message.status == Message.Status.ERROR:
            lines += ["", f"*Error: {message.error_text}*"]
        elif message.status in MARKERS:
            lines += ["", f"*({MARKERS[message.status]})*"]
    return "\n".join(lines) + "\n"


def _when(moment) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M %Z")


def _quoted(text: str) -> list[str]:
    return [f"> {line}" if line else ">" for line in text.splitlines()]
