"""Rooms: several people and one AI participant, and what they say.

Room messages are their own model, not chat's `Message`: a room message has
an author among many, a turn that answers several people's messages at once,
and a room's own access rules; and rooms never import chat.
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models

from realtime.rendering import render_markdown

# The AI answers a message in a room whose AI mode is "mention" when it contains this.
MENTION = "@ai"


def new_invite_code() -> str:
    return secrets.token_urlsafe(18)


class Room(models.Model):
    class AiMode(models.TextChoices):
        EVERY = "every", "Every message"
        MENTION = "mention", "Only when @ai is mentioned"

    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=60, unique=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="owned_rooms"
    )
    is_private = models.BooleanField(
        default=False, help_text="Only members (who joined by invite link) can enter."
    )
    ai_mode = models.CharField(max_length=16, choices=AiMode.choices, default=AiMode.EVERY)
    system_prompt = models.TextField(blank=True, help_text="Empty: the site default.")
    model = models.CharField(max_length=200, blank=True, help_text="Empty: the site default.")
    # The secret of the invite link; a new one revokes the old link.
    invite_code = models.CharField(max_length=32, unique=True, default=new_invite_code)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["is_private", "-updated_at"])]

    def __str__(self) -> str:
        return self.name

    def triggers_ai(self, content: str) -> bool:
        """Whether a person's message is one the AI answers."""
        return self.ai_mode == self.AiMode.EVERY or MENTION in content.lower()


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner"
        MEMBER = "member"

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="room_memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    joined_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["joined_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["room", "user"], name="one_membership_per_user_and_room"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.room} ({self.role})"


class RoomMessage(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    class Status(models.TextChoices):
        STREAMING = "streaming"
        COMPLETE = "complete"
        CANCELLED = "cancelled"
        ERROR = "error"

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    # Empty for the AI's messages.
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="room_messages",
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    # The sanitized rendering of an AI message, made once when it ends.
    html = models.TextField(blank=True, editable=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    error_code = models.CharField(max_length=32, blank=True)
    error_message = models.CharField(max_length=300, blank=True)
    # A person's message the AI should answer, and the AI message that did.
    triggers_ai = models.BooleanField(default=False)
    answered_by = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="answers"
    )
    model = models.CharField(max_length=200, blank=True)
    ttft_ms = models.FloatField(null=True, blank=True)
    total_ms = models.FloatField(null=True, blank=True)
    tokens = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_second = models.FloatField(null=True, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["room", "created_at"]),
            models.Index(fields=["room", "status"]),
        ]
        constraints = [
            # One AI turn per room, whichever process runs it (the turn lock's backstop).
            models.UniqueConstraint(
                fields=["room"],
                condition=models.Q(status="streaming"),
                name="one_streaming_ai_message_per_room",
            )
        ]

    def __str__(self) -> str:
        return f"{self.role} #{self.pk} in {self.room_id} ({self.status})"

    def save(self, *args, **kwargs) -> None:
        # Rows saved one by one (admin edits, tests) keep `html` true to `content`.
        if self.role == self.Role.ASSISTANT:
            self.html = render_markdown(self.content)
        super().save(*args, **kwargs)

    @property
    def metrics(self) -> dict:
        return {
            "ttft_ms": self.ttft_ms,
            "total_ms": self.total_ms,
            "tokens": self.tokens,
            "tokens_per_second": self.tokens_per_second,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }
