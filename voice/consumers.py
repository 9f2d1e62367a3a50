"""The voice WebSocket: microphone audio in, the assistant's voice and transcripts out.

Thin: it checks frames and hands them to the conversation (voice/conversation.py).
The upstream Realtime session opens only for a signed-in person (an anonymous
socket is closed 4401 before anything is opened) and closes the moment the
socket does. If the upstream breaks, the person gets one `error {fatal: true}`
and the socket closes with CLOSE_UPSTREAM_FAILED; every bad frame of theirs
gets an `error` and the conversation goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable

from django.conf import settings

from realtime import wire
from realtime.consumers import RealtimeConsumer
from voice import events, services
from voice.conversation import VoiceConversation
from voice.realtime import RealtimeError, RealtimeSession
from voice.vad import VadConfig

logger = logging.getLogger(__name__)

# The voice session could not go on: the upstream refused, broke or went silent.
CLOSE_UPSTREAM_FAILED = 4503


def vad_config() -> VadConfig:
    return VadConfig(
        backend=settings.VAD_BACKEND,
        threshold=settings.VAD_THRESHOLD,
        min_speech_ms=settings.VAD_MIN_SPEECH_MS,
        min_silence_ms=settings.VAD_MIN_SILENCE_MS,
        prefix_padding_ms=settings.VAD_PREFIX_PADDING_MS,
        foreground_margin_db=settings.VAD_FOREGROUND_MARGIN_DB,
    )


class VoiceConsumer(RealtimeConsumer):
    route = "voice"
    client_types = events.CLIENT_TYPES

    async def connect(self) -> None:
        self.conversation: VoiceConversation | None = None
        server_vad = settings.VOICE_TURN_DETECTION == "server"
        record = await services.open_session(
            user=self.user, model=settings.REALTIME_MODEL, vad_backend=settings.VAD_BACKEND
        )
        try:
            upstream = await RealtimeSession.connect(
                instructions=settings.VOICE_INSTRUCTIONS, server_vad=server_vad
            )
        except RealtimeError as exc:
            await services.end_session(record, error=exc)
            await self._fail(exc)
            return
        await services.upstream_opened(record, upstream.session_id)
        self.conversation = VoiceConversation(
            record=record,
            upstream=upstream,
            outbox=self,
            vad_config=vad_config(),
            server_vad=server_vad,
        )
        if self.closing:  # the person left while the upstream was opening
            await self.conversation.close()
            return
        await self.send_event(
            events.session(
                session_id=record.pk,
                model=upstream.model,
                vad_backend="server" if server_vad else settings.VAD_BACKEND,
                demo=settings.DEMO_MODE,
            )
        )
        self.conversation.start(on_fatal=self._fail)

    async def disconnect(self, code: int) -> None:
        if getattr(self, "conversation", None) is not None:
            await self.conversation.close()

    async def _fail(self, exc: RealtimeError) -> None:
        if self.closing:
            return
        if self.conversation is not None:
            self.conversation.fatal = exc
        logger.warning("voice upstream failed code=%s: %s", exc.code, exc.message)
        await self.send_event(events.fatal_error(exc.code, exc.message, retryable=exc.retryable))
        await self.close(code=CLOSE_UPSTREAM_FAILED)
        if self.conversation is not None:
            await self.conversation.close()  # records end now, not at the disconnect

    # --- frames -------------------------------------------------------------------------
    def max_frames_per_10s(self) -> int:
        return settings.VOICE_MAX_FRAMES_PER_10S

    def parse_event(self, data: dict) -> tuple[str, events.ClientEvent]:
        event = events.client_event(data, max_content_chars=settings.CHAT_MAX_MESSAGE_CHARS)
        return event.type, event

    async def receive_binary(self, data: bytes) -> None:
        if not data or len(data) % 2:
            raise wire.ProtocolError(
                wire.INVALID_EVENT,
                "Audio frames are PCM16 mono at 24 kHz: a whole, non-zero number of 2-byte samples",
            )
        if len(data) > settings.VOICE_MAX_FRAME_BYTES:
            raise wire.ProtocolError(
                wire.TOO_LARGE,
                f"An audio frame is {len(data)} bytes; the limit is "
                f"{settings.VOICE_MAX_FRAME_BYTES} (send 20-40 ms frames)",
            )
        await self._upstream_call(self._live().feed(data))

    async def handle_text(self, event: events.ClientEvent) -> None:
        await self._upstream_call(self._live().say(event.content))

    async def handle_cancel(self, event: events.ClientEvent) -> None:
        await self._upstream_call(self._live().stop())

    async def handle_playback(self, event: events.ClientEvent) -> None:
        self._live().playback(item_id=event.item_id, played_ms=event.played_ms)

    async def handle_config(self, event: events.ClientEvent) -> None:
        self._live().configure(event.vad)

    async def _upstream_call(self, call: Awaitable[None]) -> None:
        """A call that talks to the upstream: if the session breaks, it ends here."""
        try:
            await call
        except RealtimeError as exc:
            await self._fail(exc)

    def _live(self) -> VoiceConversation:
        if self.conversation is None or self.conversation.ended.is_set():
            raise wire.ProtocolError(wire.UPSTREAM_ERROR, "The voice session has ended")
        return self.conversation
