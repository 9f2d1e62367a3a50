"""The voice page: talk with the AI through the microphone (static/js/voice.js)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from voice import events

# The microphone goes up in frames of this length (the server takes 20–40 ms).
FRAME_MS = 20


@login_required
@require_GET
def voice_page(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "voice/voice.html",
        {
            "client_config": {
                "wsPath": "/ws/voice/",
                "sampleRate": events.SAMPLE_RATE,
                "frameMs": FRAME_MS,
                # Typed input is a chat message to the voice model (voice/consumers.py).
                "maxTextChars": settings.CHAT_MAX_MESSAGE_CHARS,
            },
        },
    )
