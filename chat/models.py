"""Conversations and their messages."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from chat.branches import Tree
from realtime.rendering import render_markdown

DEFAULT_ERROR_MESSAGES = {
    "interrupted": "The reply was interrupted; the partial answer is saved.",
    "abandoned": "Nobody was reading, so the reply was stopped.",
    "rate_limited": "The model was rate limited.",
    "timeout": "The model took too long to answer.",
    "bad_request": "The model service refused the request.",
    "upstream_error": "The model service failed.",
}


class Conversation(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=200, blank=True)
    model = models.CharField(max_length=200, blank=True, help_text="Empty: the site default.")
    # A database default too: replies insert conversations with plain SQL (chat.persistence).
    system_prompt = models.TextField(
        blank=True, default="", db_default="", help_text="Empty: the site default."
    )
    # A read-only link for anyone who has it; None: not shared (revoking clears it).
    share_token = models.CharField(max_length=64, null=True, blank=True, unique=True)
    shared_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["owner", "-updated_at"])]

    def __str__(self) -> str:
        return self.title or f"Conversation {self.pk}"

    @property
    def display_title(self) -> str:
        return self.title or "New conversation"


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"
        SYSTEM = "system"

    class Status(models.TextChoices):
        STREAMING = "streaming"
        COMPLETE = "complete"
        CANCELLED = "cancelled"
        ERROR = "error"

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    # The message this one answers or follows; siblings are versions (chat.branches).
    # A message is deleted only with its conversation, or as a failed reply that
    # nothing follows (retry): no orphan is left, and DO_NOTHING keeps those
    # deletes single statements (a cascade would read the rows first).
    parent = models.ForeignKey(
        "self", on_delete=models.DO_NOTHING, null=True, blank=True, related_name="children"
    )
    # At a fork, the child chosen last is shown: a new message is chosen as it is made.
    chosen_at = models.DateTimeField(default=timezone.now)
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    # The sanitized rendering of an assistant message, made once when it ends.
    html = models.TextField(blank=True, editable=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMPLETE)
    error_code = models.CharField(max_length=32, blank=True)
    error_message = models.CharField(max_length=300, blank=True)
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
        indexes = [models.Index(fields=["conversation", "status"])]
        constraints = [
            # One reply generating per conversation, whichever process starts it.
            models.UniqueConstraint(
                fields=["conversation"],
                condition=models.Q(status="streaming"),
                name="one_streaming_reply_per_conversation",
            )
        ]

    def __str__(self) -> str:
        return f"{self.role} #{self.pk} ({self.status})"

    def save(self, *args, **kwargs) -> None:
        if self._state.adding and self.parent_id is None:
            # Rows made one by one (spoken turns, the admin, tests) continue the
            # path shown; the chat services always name the parent themselves.
            shown = Message.objects.filter(conversation_id=self.conversation_id)
            self.parent_id = Tree(shown.values_list("id", "parent_id", "chosen_at")).leaf()
        # Rows saved one by one (admin edits, tests) keep `html` true to `content`;
        # the streaming path writes both itself, in batches.
        if self.role == self.Role.ASSISTANT:
            self.html = render_markdown(self.content)
            if kwargs.get("update_fields") is not None and "content" in kwargs["update_fields"]:
                kwargs["update_fields"] = {*kwargs["update_fields"], "html"}
        super().save(*args, **kwargs)

    @property
    def error_text(self) -> str:
        """What to tell the person about a failed or stopped reply."""
        return self.error_message or DEFAULT_ERROR_MESSAGES.get(
            self.error_code, "The reply failed."
        )

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
