"""Voice records: the session row, its turns, and their copy in the chat history.

Writes happen off the audio path: finished turns are queued and one writer
task per session saves them in order (a turn's row, then its messages in the
history), waiting a little for the person's transcript, which the Realtime API
sends after the answer has often begun.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from realtime import history
from realtime.db import on_db_pool
from voice.models import VoiceSession, VoiceTurn

if TYPE_CHECKING:
    from voice.conversation import Turn
    from voice.realtime import RealtimeError

logger = logging.getLogger(__name__)

# Finished turns still being saved when the socket closes get this long.
CLOSE_SAVE_TIMEOUT_SECONDS = 10.0
_HISTORY_STATUS = {"completed": "complete", "failed": "error"}


class SessionRecord:
    """The VoiceSession row of one socket, as the conversation needs it."""

    def __init__(self, *, pk: int, user_id: int, model: str, started_at: datetime) -> None:
        self.pk = pk
        self.user_id = user_id
        self.model = model
        self.started_at = started_at
        self.conversation_id: int | None = None


@on_db_pool
def _create_session(*, user_id: int, model: str, vad_backend: str) -> VoiceSession:
    return VoiceSession.objects.create(user_id=user_id, model=model, vad_backend=vad_backend)


async def open_session(*, user, model: str, vad_backend: str) -> SessionRecord:
    row = await _create_session(user_id=user.pk, model=model, vad_backend=vad_backend)
    return SessionRecord(pk=row.pk, user_id=user.pk, model=model, started_at=row.started_at)


@on_db_pool
def _set_upstream(pk: int, upstream_session_id: str) -> None:
    VoiceSession.objects.filter(pk=pk).update(upstream_session_id=upstream_session_id[:100])


async def upstream_opened(record: SessionRecord, upstream_session_id: str) -> None:
    await _set_upstream(record.pk, upstream_session_id)


@on_db_pool
def _end_session(pk: int, *, error_code: str, error_message: str) -> None:
    VoiceSession.objects.filter(pk=pk).update(
        status=VoiceSession.Status.ERROR if error_code else VoiceSession.Status.ENDED,
        error_code=error_code,
        error_message=error_message[:300],
        ended_at=timezone.now(),
    )


async def end_session(record: SessionRecord, *, error: RealtimeError | None = None) -> None:
    await _end_session(
        record.pk,
        error_code=error.code if error else "",
        error_message=error.message if error else "",
    )


@on_db_pool
def _save_turn(record_pk: int, conversation_id: int | None, turn: Turn) -> None:
    ms = _rounded
    VoiceTurn.objects.update_or_create(
        session_id=record_pk,
        index=turn.index,
        defaults={
            "input": turn.input,
            "status": turn.status,
            "user_transcript": turn.user_text,
            "assistant_transcript": turn.assistant_text,
            "user_speech_ms": ms(turn.user_speech_ms),
            "assistant_audio_ms": ms(turn.audio_ms) if turn.audio_samples else None,
            "played_ms": ms(turn.played_ms),
            "voice_to_voice_ms": turn.voice_to_voice_ms,
            "vad_wait_ms": turn.vad_wait_ms,
            "upstream_ms": turn.upstream_ms,
            "error_code": turn.error_code,
            "started_at": datetime.fromtimestamp(turn.started_at, tz=UTC),
            "ended_at": timezone.now(),
        },
    )
    VoiceSession.objects.filter(pk=record_pk).update(
        turns=F("turns") + 1, conversation_id=conversation_id
    )


def _rounded(value: float | None) -> int | None:
    return None if value is None else max(0, round(value))


class TurnSaver:
    """Saves a session's finished turns in order, on a task of its own."""

    def __init__(self, record: SessionRecord) -> None:
        self.record = record
        self._queue: asyncio.Queue[Turn | None] = asyncio.Queue()
        self._task = asyncio.ensure_future(self._run())

    def save(self, turn: Turn) -> None:
        self._queue.put_nowait(turn)

    async def close(self, *, error: RealtimeError | None = None) -> None:
        """Save what is queued (within CLOSE_SAVE_TIMEOUT_SECONDS), then end the session row."""
        self._queue.put_nowait(None)
        try:
            async with asyncio.timeout(CLOSE_SAVE_TIMEOUT_SECONDS):
                await asyncio.shield(self._task)
        except TimeoutError:
            logger.warning("voice turns not saved in time session=%s", self.record.pk)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await end_session(self.record, error=error)

    async def _run(self) -> None:
        while (turn := await self._queue.get()) is not None:
            try:
                await self._save(turn)
            except Exception:
                logger.exception(
                    "saving a voice turn failed session=%s turn=%s", self.record.pk, turn.index
                )

    async def _save(self, turn: Turn) -> None:
        if not turn.user_transcribed.is_set():
            try:
                async with asyncio.timeout(settings.VOICE_TRANSCRIPT_WAIT_SECONDS):
                    await turn.user_transcribed.wait()
            except TimeoutError:
                pass  # saved without it: transcription is slow or failed
        self.record.conversation_id = await history.record(
            history.SpokenTurn(
                user_id=self.record.user_id,
                conversation_id=self.record.conversation_id,
                title=_title(self.record.started_at),
                user_text=turn.user_text or ("(spoken)" if turn.input == "voice" else ""),
                assistant_text=turn.assistant_text,
                status=_HISTORY_STATUS.get(turn.status or "", "cancelled"),
                model=self.record.model,
                error_code=turn.error_code,
                metrics={"voice_to_voice_ms": turn.voice_to_voice_ms},
            )
        )
        await _save_turn(self.record.pk, self.record.conversation_id, turn)


def _title(started_at: datetime) -> str:
    local = timezone.localtime(started_at)
    return f"Voice conversation, {local:%Y-%m-%d %H:%M}"
