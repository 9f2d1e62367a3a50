"""Voice conversations and their turns, as admins and the latency dashboard see them.

Audio is never stored: a turn keeps its transcripts, how long each side spoke,
and its latency. The transcript also lands in the person's chat history
(`conversation_id`, through realtime.history), so a spoken conversation can be
read and continued as text.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class VoiceSession(models.Model):
    """One voice socket's conversation with the Realtime model, from open to close."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        ENDED = "ended"
        ERROR = "error"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="voice_sessions"
    )
    model = models.CharField(max_length=200)
    vad_backend = models.CharField(max_length=32)
    # The upstream's id for the session (in its logs and fakeai's event log).
    upstream_session_id = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    error_code = models.CharField(max_length=32, blank=True)
    error_message = models.CharField(max_length=300, blank=True)
    # The chat conversation holding this session's transcript (chat's id; voice
    # never imports chat, so this is a plain number).
    conversation_id = models.PositiveIntegerField(null=True, blank=True)
    turns = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["user", "-started_at"])]

    def __str__(self) -> str:
        return f"voice #{self.pk} ({self.status})"


class VoiceTurn(models.Model):
    """What the person said (or typed) and the answer to it."""

    class Input(models.TextChoices):
        VOICE = "voice"
        TEXT = "text"

    class Status(models.TextChoices):
        COMPLETED = "completed"
        INTERRUPTED = "interrupted"  # the person spoke over the answer
        CANCELLED = "cancelled"  # Stop, or the socket closed
        FAILED = "failed"

    session = models.ForeignKey(VoiceSession, on_delete=models.CASCADE, related_name="turn_set")
    index = models.PositiveIntegerField()
    input = models.CharField(max_length=8, choices=Input.choices, default=Input.VOICE)
    status = models.CharField(max_length=16, choices=Status.choices)
    user_transcript = models.TextField(blank=True)
    assistant_transcript = models.TextField(blank=True)
    # How long the person spoke (VAD start to stop) and how much answer was sent
    # and played, in ms of audio.
    user_speech_ms = models.PositiveIntegerField(null=True, blank=True)
    assistant_audio_ms = models.PositiveIntegerField(null=True, blank=True)
    played_ms = models.PositiveIntegerField(null=True, blank=True)
    # End of the person's speech (the audio's arrival) to the answer's first audio
    # leaving the server; its parts: the VAD's wait for silence, and the upstream.
    voice_to_voice_ms = models.FloatField(null=True, blank=True)
    vad_wait_ms = models.FloatField(null=True, blank=True)
    upstream_ms = models.FloatField(null=True, blank=True)
    error_code = models.CharField(max_length=32, blank=True)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField()

    class Meta:
        ordering = ["session", "index"]
        constraints = [
            models.UniqueConstraint(fields=["session", "index"], name="one_turn_per_index")
        ]

    def __str__(self) -> str:
        return f"turn {self.index} of voice #{self.session_id}"

    @property
    def interrupted(self) -> bool:
        return self.status == self.Status.INTERRUPTED
