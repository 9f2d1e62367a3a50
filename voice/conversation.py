"""One voice conversation: the person's microphone, our VAD, the Realtime session, the answer.

Knows nothing of sockets: the consumer feeds it microphone frames and client
events and gives it an `Outbox` to talk back through. What it does:

- **Turns.** Our VAD decides them (VOICE_TURN_DETECTION=local): the
  utterance's audio goes upstream as it is spoken, from the pre-roll on, and
  at the VAD's `speech_stopped` the buffer is committed and an answer asked
  for. With VOICE_TURN_DETECTION=server every frame goes upstream and the
  Realtime server's own VAD decides (and cancels answers it talks over).
- **The answer** streams back as it arrives: audio as binary frames,
  transcripts and text as events. Nothing is buffered to the end.
- **Barge-in.** Speech while the answer is audible (still generating, or sent
  and not yet played, plus the echo's tail) cancels the answer, truncates the
  assistant item at the position the browser reports it has played, and
  tells the browser to drop its queue. **Echo-safe**: speech that starts while
  the assistant is audible is first compared with what was played
  (voice/echo.py); the assistant's own voice coming back through the speakers
  is ignored, the person speaking over it is not.
- **Latency.** Voice-to-voice: from the arrival of the audio where the
  person stopped speaking to the answer's first audio leaving the server, with
  its parts (the VAD's wait for silence, the upstream's time to first audio).
- **Records.** Each finished turn is saved (VoiceTurn) and appended to the
  person's chat history (realtime.history), off the audio path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from django.conf import settings

from realtime import metrics, wire
from voice import audio, echo, events, services
from voice.realtime import (
    AudioDelta,
    ErrorEvent,
    InputCommitted,
    RealtimeError,
    RealtimeEvent,
    RealtimeSession,
    ResponseDone,
    ResponseStarted,
    SpeechStarted,
    SpeechStopped,
    TextDelta,
    TranscriptDelta,
)
from voice.vad import VadConfig, VadEvent, VoiceActivityDetector

logger = logging.getLogger(__name__)

RATE = events.SAMPLE_RATE
# After the last sample played, its echo can still be in the room this long.
ECHO_TAIL_MS = echo.MAX_DELAY_MS
# Microphone kept for pre-roll and the echo gate while nobody speaks.
MIC_KEEP_MS = 2_000


class Outbox(Protocol):
    async def send_event(self, event: dict) -> None: ...

    async def send_binary(self, data: bytes) -> None: ...


@dataclass
class Turn:
    """One exchange: the person's utterance (or typed text) and the answer to it."""

    index: int
    input: str  # "voice" or "text"
    started_at: float = field(default_factory=time.time)
    user_text: str = ""
    user_item_id: str | None = None
    user_transcribed: asyncio.Event = field(default_factory=asyncio.Event)
    user_speech_ms: float | None = None
    speech_end_arrived_at: float | None = None  # monotonic: the stop sample's arrival
    vad_wait_ms: float | None = None
    requested_at: float | None = None  # monotonic: response.create sent
    response_id: str | None = None
    item_id: str | None = None  # the assistant's audio item
    assistant_parts: list[str] = field(default_factory=list)
    audio_samples: int = 0
    first_audio_at: float | None = None  # monotonic: first answer audio sent
    voice_to_voice_ms: float | None = None
    upstream_ms: float | None = None
    played_ms: float | None = None
    answer_status: str | None = None  # how the upstream's answer ended
    status: str | None = None  # the turn's end as recorded: set once
    error_code: str = ""
    cut: bool = False  # interrupted or stopped: later deltas of its answer are dropped

    @property
    def assistant_text(self) -> str:
        return "".join(self.assistant_parts)

    @property
    def audio_ms(self) -> float:
        return audio.samples_to_ms(self.audio_samples, RATE)


class MicTape:
    """Recent microphone audio by sample index, with when each frame arrived."""

    def __init__(self) -> None:
        self._data = bytearray()
        self.start = 0  # sample index of _data[0]
        self.end = 0
        self._arrivals: deque[tuple[int, float]] = deque()  # (end sample, monotonic)

    def append(self, pcm: bytes, arrived_at: float) -> None:
        self._data += pcm
        self.end += len(pcm) // 2
        self._arrivals.append((self.end, arrived_at))

    def read(self, begin: int, end: int | None = None) -> bytes:
        begin = max(begin, self.start)
        end = self.end if end is None else min(end, self.end)
        if end <= begin:
            return b""
        return bytes(self._data[(begin - self.start) * 2 : (end - self.start) * 2])

    def arrival(self, sample: int) -> float | None:
        """When the frame holding `sample` arrived (None if forgotten)."""
        for end, at in self._arrivals:
            if sample < end:
                return at
        return self._arrivals[-1][1] if self._arrivals else None

    def keep_from(self, sample: int) -> None:
        drop = min(max(0, sample - self.start), self.end - self.start)
        if drop:
            del self._data[: drop * 2]
            self.start += drop
        while len(self._arrivals) > 1 and self._arrivals[0][0] <= self.start:
            self._arrivals.popleft()


class VoiceConversation:
    """The live state of one voice socket's conversation (see the module docstring)."""

    def __init__(
        self,
        *,
        record: services.SessionRecord,
        upstream: RealtimeSession,
        outbox: Outbox,
        vad_config: VadConfig,
        server_vad: bool = False,
    ) -> None:
        self.record = record
        self.upstream = upstream
        self.outbox = outbox
        self.server_vad = server_vad
        self.vad_config = vad_config
        self._pending_vad_config: VadConfig | None = None
        self.mic = MicTape()
        self._vad = VoiceActivityDetector(sample_rate=RATE, config=vad_config)
        self._vad_offset = 0  # mic sample where the current detector's clock starts
        # idle | judging (speech during the answer: echo or person?) | speaking | ignoring
        self.state = "idle"
        self._utterance_start = 0  # mic sample of the VAD's speech start
        self._judged_from = 0  # mic sample from which the echo gate judges next
        self._server_speech_end: int | None = None  # server VAD: where speech stopped
        self.turns: list[Turn] = []
        self._awaiting_commit: deque[Turn] = deque()
        self._answering: Turn | None = None  # the turn whose answer is due, streaming or playing
        self.reference = echo.PlaybackReference(RATE)
        self._played_report: tuple[float, float] | None = None  # (played ms, monotonic)
        self.ended = asyncio.Event()
        self.fatal: RealtimeError | None = None
        self._saver = services.TurnSaver(record)
        self._pump_task: asyncio.Task | None = None
        self._closing = False

    # --- lifecycle ---------------------------------------------------------------------
    def start(self, on_fatal: Callable[[RealtimeError], Awaitable[None]]) -> None:
        """Start reading the upstream; `on_fatal` runs if the session breaks."""
        self._pump_task = asyncio.ensure_future(self._pump(on_fatal))

    async def close(self) -> None:
        """The person left: close the upstream at once, finish the records, leave no task.

        Idempotent; callable from the upstream reader itself (a fatal error).
        """
        if self._closing:
            return
        self._closing = True
        current = self._answering
        if current is not None and current.status is None:
            current.cut = True
            self._finish(current, "completed" if current.answer_status else "cancelled")
        await self.upstream.close()
        if self._pump_task is not None and self._pump_task is not asyncio.current_task():
            self._pump_task.cancel()
            await asyncio.gather(self._pump_task, return_exceptions=True)
        await self._saver.close(error=self.fatal)

    # --- the microphone --------------------------------------------------------------------
    async def feed(self, pcm: bytes) -> None:
        """One microphone frame (PCM16 24 kHz, already validated)."""
        now = time.monotonic()
        self.mic.append(pcm, now)
        if self.server_vad:
            await self.upstream.append_audio(pcm)
            self._forget_old_audio()
            return
        if self.state == "speaking":
            await self.upstream.append_audio(pcm)
        for event in self._vad.process(pcm):
            await self._on_vad(event, now)
        if self.state in ("judging", "ignoring"):
            await self._gate(now)
        if self.state == "idle":
            self._apply_pending_vad_config()
            self._forget_old_audio()

    def _forget_old_audio(self) -> None:
        """Keep the last MIC_KEEP_MS of microphone; trimmed once a second, not every frame."""
        keep = audio.ms_to_samples(MIC_KEEP_MS, RATE)
        if self.mic.end - self.mic.start >= keep + RATE:
            self.mic.keep_from(self.mic.end - keep)

    async def _on_vad(self, event: VadEvent, now: float) -> None:
        sample = event.sample + self._vad_offset
        await self.outbox.send_event(events.vad(state=event.type, at_ms=_ms(sample)))
        if event.type == "speech_started":
            self._utterance_start = self._judged_from = sample
            if self._audible(now):
                self.state = "judging"
            else:
                await self._person_speaks(now)
            return
        # speech_stopped
        if self.state == "judging" and self.mic.end > self._judged_from:
            await self._judge(now, self.mic.end)  # shorter than a judgement's window
        if self.state == "speaking":
            await self._commit_turn(stop_sample=sample, now=now)
        self.state = "idle"

    async def _gate(self, now: float) -> None:
        """Speech while the assistant is audible: judge it a window at a time.

        Echo is ignored, window after window, for as long as the assistant can
        be heard; a window that is not echo, or speech going on once the
        assistant has gone quiet, is the person.
        """
        window = audio.ms_to_samples(settings.VOICE_ECHO_JUDGE_MS, RATE)
        if not self._audible(now):
            self._utterance_start = self._judged_from
            await self._person_speaks(now)
            return
        while self.state in ("judging", "ignoring") and self.mic.end - self._judged_from >= window:
            await self._judge(now, self._judged_from + window)

    async def _judge(self, now: float, end: int) -> None:
        """Is the speech from `_judged_from` to `end` the person, or the assistant's echo?"""
        begin = self._judged_from
        mic = audio.pcm16_to_float(self.mic.read(begin, end))
        # The window's last sample arrived with the latest frame: the playback clock
        # then is where the reference window ends.
        played = self._played_ms(now, capped=False) - _ms(self.mic.end - end)
        verdict = echo.judge(mic, self.reference, played_ms=played)
        logger.info(
            "voice echo gate session=%s echo=%s correlation=%.2f delay_ms=%.0f mic_db=%.1f "
            "reference_db=%.1f",
            self.record.pk,
            verdict.echo,
            verdict.correlation,
            verdict.delay_ms,
            verdict.mic_db,
            verdict.reference_db,
        )
        if verdict.echo:
            metrics.VOICE_ECHO_IGNORED.inc()
            self.state = "ignoring"
            self._judged_from = end
            preroll = audio.ms_to_samples(self.vad_config.prefix_padding_ms, RATE)
            self.mic.keep_from(end - preroll)
            return
        self._utterance_start = begin
        await self._person_speaks(now)

    async def _person_speaks(self, now: float) -> None:
        """A real utterance: interrupt what is audible, then send the speech upstream."""
        if self._answer_live(now):
            await self._interrupt(now, status="interrupted")
        self.state = "speaking"
        preroll = audio.ms_to_samples(self.vad_config.prefix_padding_ms, RATE)
        await self.upstream.append_audio(self.mic.read(self._utterance_start - preroll))

    async def _commit_turn(self, *, stop_sample: int, now: float) -> None:
        turn = self._new_turn("voice")
        turn.user_speech_ms = _ms(stop_sample - self._utterance_start)
        arrived = self.mic.arrival(stop_sample)
        turn.speech_end_arrived_at = arrived
        turn.vad_wait_ms = None if arrived is None else (now - arrived) * 1000
        self._awaiting_commit.append(turn)
        await self.upstream.commit()
        await self._request_answer(turn)

    # --- client events -------------------------------------------------------------------
    async def say(self, text: str) -> None:
        """Typed input: it interrupts an answer in progress, and is answered."""
        now = time.monotonic()
        if self._answer_live(now):
            await self._interrupt(now, status="interrupted")
        turn = self._new_turn("text")
        turn.user_text = text
        turn.user_transcribed.set()
        await self.upstream.send_text(text)
        await self._request_answer(turn)

    async def stop(self) -> None:
        """The person pressed Stop."""
        now = time.monotonic()
        if not self._answer_live(now):
            raise wire.ProtocolError(wire.NOT_STREAMING, "No answer is playing", retryable=False)
        await self._interrupt(now, status="cancelled")

    def playback(self, *, item_id: str, played_ms: int) -> None:
        """The browser's report of how much of the current answer it has played."""
        turn = self._answering
        if turn is None or turn.item_id is None or (item_id and item_id != turn.item_id):
            return  # about an earlier answer: stale
        played = min(float(played_ms), turn.audio_ms)
        self._played_report = (played, time.monotonic())
        turn.played_ms = played
        if turn.answer_status == "completed" and played >= turn.audio_ms:
            self._finish(turn, "completed")  # heard to the end

    def configure(self, changes: dict[str, float]) -> None:
        """New VAD settings from the browser; they apply from the next silence."""
        self._pending_vad_config = VadConfig(**{**self.vad_config.__dict__, **changes})
        if self.state == "idle":
            self._apply_pending_vad_config()

    def _apply_pending_vad_config(self) -> None:
        if self._pending_vad_config is None:
            return
        self.vad_config, self._pending_vad_config = self._pending_vad_config, None
        self._vad = VoiceActivityDetector(sample_rate=RATE, config=self.vad_config)
        self._vad_offset = self.mic.end

    # --- answers -------------------------------------------------------------------------
    def _new_turn(self, input_kind: str) -> Turn:
        turn = Turn(index=len(self.turns) + 1, input=input_kind)
        self.turns.append(turn)
        return turn

    async def _request_answer(self, turn: Turn) -> None:
        self._take_over(turn)
        turn.requested_at = time.monotonic()
        await self.upstream.create_response()

    def _take_over(self, turn: Turn) -> None:
        """`turn`'s answer becomes the current one; the previous one was heard out."""
        previous = self._answering
        if previous is not None and previous.status is None:
            self._finish(previous, "completed" if previous.answer_status else "cancelled")
        self._answering = turn
        self.reference.reset()
        self._played_report = None

    def _played_ms(self, now: float, *, capped: bool = True) -> float:
        """Where the browser's playback of the current answer is now (estimated between reports)."""
        turn = self._answering
        if turn is None or turn.first_audio_at is None:
            return 0.0
        if self._played_report is not None:
            played, at = self._played_report
        else:  # no report yet: assume it plays from when its first audio left
            played, at = 0.0, turn.first_audio_at
        estimate = played + (now - at) * 1000
        return min(estimate, turn.audio_ms) if capped else estimate

    def _answer_live(self, now: float) -> bool:
        """An answer is due, streaming, or still being played."""
        turn = self._answering
        if turn is None or turn.status is not None:
            return False
        if turn.answer_status is None:
            return True
        return self._played_ms(now) < turn.audio_ms

    def _audible(self, now: float) -> bool:
        """The assistant's voice may be in the microphone now (playing, or its echo's tail)."""
        turn = self._answering
        if turn is None or turn.cut or turn.audio_samples == 0:
            return False
        return self._played_ms(now, capped=False) < turn.audio_ms + ECHO_TAIL_MS

    async def _interrupt(self, now: float, *, status: str) -> None:
        """Cut the current answer where the person stopped hearing it."""
        turn = self._answering
        if turn is None:
            return
        played = int(self._played_ms(now))
        turn.cut = True
        turn.played_ms = played
        if self.upstream.response_active:
            await self.upstream.cancel_response()
        # Unheard audio is cut from the item: what was not sent yet (still generating)
        # or sent and not played.
        if turn.item_id is not None and (turn.answer_status is None or played < turn.audio_ms):
            await self.upstream.truncate(turn.item_id, played)
        await self.outbox.send_event(
            events.interrupted(turn=turn.index, item_id=turn.item_id, played_ms=played)
        )
        self.reference.reset()
        self._played_report = None
        self._finish(turn, status)

    def _finish(self, turn: Turn, status: str) -> None:
        """The turn is over (answered and heard, interrupted, stopped or failed): save it once."""
        if turn.status is not None:
            return
        turn.status = status
        self._saver.save(turn)

    async def _pump(self, on_fatal: Callable[[RealtimeError], Awaitable[None]]) -> None:
        try:
            async for event in self.upstream.events():
                await self._on_upstream(event)
        except RealtimeError as exc:
            self.ended.set()
            await on_fatal(exc)
        else:
            # The session ended under us (a send found it closed), not by close().
            self.ended.set()
            if not self._closing:
                await on_fatal(
                    RealtimeError(
                        wire.UPSTREAM_ERROR,
                        "The voice service closed the connection",
                        retryable=True,
                    )
                )
        finally:
            self.ended.set()

    async def _on_upstream(self, event: RealtimeEvent) -> None:
        turn = self._answering
        match event:
            case AudioDelta():
                if self._streaming(turn, event.response_id):
                    await self._forward_audio(turn, event)
            case TranscriptDelta(role="assistant"):
                # Its first words may come before its first audio (and item id).
                if self._streaming(turn, turn and turn.response_id) and turn.item_id in (
                    None,
                    event.item_id,
                ):
                    turn.assistant_parts.append(event.delta)
                    await self.outbox.send_event(
                        events.transcript(
                            role="assistant",
                            item_id=event.item_id,
                            delta=event.delta,
                            final=event.final,
                            text=event.text,
                        )
                    )
            case TranscriptDelta(role="user"):
                await self._on_user_transcript(event)
            case TextDelta(final=False):
                if self._streaming(turn, event.response_id):
                    turn.assistant_parts.append(event.delta)
                    await self.outbox.send_event(
                        events.response_text(item_id=event.item_id, delta=event.delta)
                    )
            case ResponseStarted():
                if turn is not None and turn.response_id is None and not turn.cut:
                    turn.response_id = event.response_id
                    await self.outbox.send_event(events.response(status="started", turn=turn.index))
            case ResponseDone():
                await self._on_response_done(event)
            case InputCommitted():
                await self._on_committed(event)
            case SpeechStarted():
                await self._on_server_speech(event.audio_start_ms, started=True)
            case SpeechStopped():
                await self._on_server_speech(event.audio_end_ms, started=False)
            case ErrorEvent():
                await self._on_upstream_error(turn, event)

    @staticmethod
    def _streaming(turn: Turn | None, response_id: str) -> bool:
        """A delta of the current answer, which nobody cut short."""
        return turn is not None and not turn.cut and response_id == turn.response_id

    async def _on_upstream_error(self, turn: Turn | None, event: ErrorEvent) -> None:
        # Said by the Realtime service, not a refusal of one of the person's frames.
        await self.outbox.send_event(
            wire.error(event.code, event.message, retryable=event.retryable, source="upstream")
        )
        refused = turn is not None and turn.response_id is None
        if refused and turn.status is None and not self.upstream.response_active:
            # Its response.create was refused: no answer is coming.
            turn.error_code = event.code
            turn.answer_status = "failed"
            self._finish(turn, "failed")

    async def _forward_audio(self, turn: Turn, event: AudioDelta) -> None:
        if turn.item_id != event.item_id:
            turn.item_id = event.item_id
            await self.outbox.send_event(events.audio_start(item_id=event.item_id, turn=turn.index))
        received_at = time.monotonic()
        await self.outbox.send_binary(event.audio)
        self.reference.add(event.audio)
        turn.audio_samples += len(event.audio) // 2
        if turn.first_audio_at is None:
            sent_at = time.monotonic()
            turn.first_audio_at = sent_at
            if turn.requested_at is not None:
                turn.upstream_ms = (received_at - turn.requested_at) * 1000
            if turn.speech_end_arrived_at is not None:
                turn.voice_to_voice_ms = (sent_at - turn.speech_end_arrived_at) * 1000
                metrics.VOICE_TO_VOICE.observe(turn.voice_to_voice_ms / 1000)
            await self.outbox.send_event(
                events.latency(
                    turn=turn.index,
                    voice_to_voice_ms=turn.voice_to_voice_ms,
                    vad_wait_ms=turn.vad_wait_ms,
                    upstream_ms=turn.upstream_ms,
                    server_ms=(sent_at - received_at) * 1000,
                )
            )

    async def _on_response_done(self, event: ResponseDone) -> None:
        turn = self._answering
        if turn is None or event.response_id != turn.response_id:
            return
        status = {"completed": "completed", "cancelled": "cancelled"}.get(event.status, "failed")
        turn.answer_status = status
        if not turn.cut:
            await self.outbox.send_event(events.response(status=status, turn=turn.index))
        if status == "failed" and not turn.error_code:
            turn.error_code = wire.UPSTREAM_ERROR
        if status != "completed" or turn.audio_samples == 0:
            self._finish(turn, status)
        # A completed answer with audio ends when it has been heard (or a new turn starts).

    async def _on_committed(self, event: InputCommitted) -> None:
        if self.server_vad:
            # The server's VAD ended a turn and is answering it.
            turn = self._new_turn("voice")
            turn.user_item_id = event.item_id
            self._take_over(turn)
            turn.requested_at = time.monotonic()
            if self._server_speech_end is not None:
                turn.speech_end_arrived_at = self.mic.arrival(self._server_speech_end)
            return
        if self._awaiting_commit:
            self._awaiting_commit.popleft().user_item_id = event.item_id

    async def _on_user_transcript(self, event: TranscriptDelta) -> None:
        await self.outbox.send_event(
            events.transcript(
                role="user",
                item_id=event.item_id,
                delta=event.delta,
                final=event.final,
                text=event.text,
            )
        )
        if not event.final:
            return
        for turn in reversed(self.turns):
            if turn.user_item_id == event.item_id:
                turn.user_text = event.text
                turn.user_transcribed.set()
                break

    async def _on_server_speech(self, at_ms: int, *, started: bool) -> None:
        """Server VAD's view of a turn (VOICE_TURN_DETECTION=server): the server cancels
        its own answer; we truncate what was played and tell the browser."""
        state = "speech_started" if started else "speech_stopped"
        await self.outbox.send_event(events.vad(state=state, at_ms=float(at_ms)))
        if not started:
            self._server_speech_end = audio.ms_to_samples(at_ms, RATE)
        now = time.monotonic()
        if started and self._answer_live(now):
            await self._interrupt(now, status="interrupted")


def _ms(samples: int) -> float:
    return audio.samples_to_ms(samples, RATE)
