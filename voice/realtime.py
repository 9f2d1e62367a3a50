"""A voice conversation's upstream: one OpenAI Realtime API session (the GA protocol).

`RealtimeSession` wraps the `openai` package's realtime client with the
settings chat uses (`OPENAI_API_KEY`, `OPENAI_BASE_URL`: the package connects
to `<base URL>/realtime?model=REALTIME_MODEL`, so fakeai's `/v1` serves it in
the demo and in tests). It sends the few client events a voice consumer needs
and turns the server's events into small typed ones (`events()`). Errors use
the project's codes, like `realtime.llm`: an `error` event the session
survives is yielded as `ErrorEvent`; a failure that ends the session (refused,
dropped, unreadable, silent while an answer is due) is raised as
`RealtimeError` from whichever call met it, and the socket is closed.

Iterate `events()` for as long as the session is open: the session learns
from them whether an answer is in progress. Audio is PCM16 mono 24 kHz both ways.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import openai
from django.conf import settings
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from realtime import llm, wire
from realtime.metrics import RETRIES

logger = logging.getLogger(__name__)

Role = Literal["user", "assistant"]
PCM_FORMAT = {"type": "audio/pcm", "rate": 24000}
# The API takes up to 15 MiB per append event; base64 grows audio by a third.
MAX_APPEND_BYTES = 8 * 1024 * 1024
# Our own frames are small; the server's largest are audio deltas.
MAX_EVENT_BYTES = 32 * 1024 * 1024
CLOSE_TIMEOUT_SECONDS = 2.0
# What the server says when a cancel crosses the answer's end: nothing to report.
_BENIGN_ERROR_CODES = frozenset({"response_cancel_not_active"})


# --- what the session yields ---------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AudioDelta:
    """Assistant audio (PCM16 24 kHz) of one item."""

    item_id: str
    response_id: str
    audio: bytes


@dataclass(frozen=True, slots=True)
class TranscriptDelta:
    """A piece of a transcript; `final` marks the last one, whose `text` is the whole."""

    role: Role
    item_id: str
    delta: str
    final: bool = False
    text: str = ""  # the transcript so far (all of it when final)


@dataclass(frozen=True, slots=True)
class TextDelta:
    """Answer text, when the session's output is text; `final` as for transcripts."""

    item_id: str
    response_id: str
    delta: str
    final: bool = False
    text: str = ""


@dataclass(frozen=True, slots=True)
class ResponseStarted:
    response_id: str


@dataclass(frozen=True, slots=True)
class ResponseDone:
    """An answer ended: `status` completed, cancelled, failed or incomplete."""

    response_id: str
    status: str
    reason: str | None = None  # e.g. client_cancelled, turn_detected
    usage: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class InputCommitted:
    """The input audio buffer became a user item (by `commit()` or the server's VAD)."""

    item_id: str


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """Server VAD only: speech began at `audio_start_ms` of the session's input audio."""

    item_id: str
    audio_start_ms: int


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    item_id: str
    audio_end_ms: int


@dataclass(frozen=True, slots=True)
class Truncated:
    """The server cut an assistant item's audio (and transcript) at `audio_end_ms`."""

    item_id: str
    audio_end_ms: int


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """An error the upstream reported; the session goes on."""

    code: str
    message: str
    retryable: bool


RealtimeEvent = (
    AudioDelta
    | TranscriptDelta
    | TextDelta
    | ResponseStarted
    | ResponseDone
    | InputCommitted
    | SpeechStarted
    | SpeechStopped
    | Truncated
    | ErrorEvent
)


class RealtimeError(llm.LLMError):
    """A failure that ended (or prevented) the session, mapped to a protocol code."""


# --- error mapping -----------------------------------------------------------------
BROKEN_MESSAGE = "The connection to the model service broke."
UNREADABLE_MESSAGE = "The model service sent a response we could not read."
TIMEOUT_MESSAGE = "The model took too long to answer."
CLOSED_MESSAGE = "The voice session is closed."


def map_error(exc: BaseException) -> RealtimeError:
    """Map what connecting or reading raised to one of our codes."""
    if isinstance(exc, RealtimeError):
        return exc
    if isinstance(exc, llm.LLMError):
        return RealtimeError(
            exc.code, exc.message, retryable=exc.retryable, retry_after=exc.retry_after
        )
    if isinstance(exc, InvalidStatus):
        return _status_error(exc)
    if isinstance(exc, ConnectionClosed):
        return RealtimeError(wire.UPSTREAM_ERROR, BROKEN_MESSAGE, retryable=True)
    if isinstance(exc, InvalidHandshake | InvalidURI | ValueError):
        return RealtimeError(wire.UPSTREAM_ERROR, UNREADABLE_MESSAGE, retryable=True)
    if isinstance(exc, TimeoutError):
        return RealtimeError(wire.TIMEOUT, TIMEOUT_MESSAGE, retryable=True)
    if isinstance(exc, OSError):  # refused, no route, DNS: the handshake never happened
        return RealtimeError(wire.UPSTREAM_ERROR, llm.UNREACHABLE_MESSAGE, retryable=True)
    return map_error(llm.map_error(exc))


def _status_error(exc: InvalidStatus) -> RealtimeError:
    status = exc.response.status_code
    if status == 429:
        retry_after = exc.response.headers.get("Retry-After")
        try:
            wait = float(retry_after) if retry_after is not None else None
        except ValueError:
            wait = None
        return RealtimeError(
            wire.RATE_LIMITED,
            "The model is rate limited; try again shortly.",
            retryable=True,
            retry_after=wait,
        )
    if status >= 500 or status == 409:
        return RealtimeError(
            wire.UPSTREAM_ERROR, f"The model service failed (HTTP {status}).", retryable=True
        )
    if status in (401, 403):
        return RealtimeError(
            wire.BAD_REQUEST,
            f"The model service refused the API key (HTTP {status}).",
            retryable=False,
        )
    return RealtimeError(
        wire.BAD_REQUEST,
        f"The model service refused the request (HTTP {status}).",
        retryable=False,
    )


def error_event(error: Any) -> ErrorEvent:
    """The `error {type, code, message}` of a server event, mapped."""
    error = error if isinstance(error, dict) else {}
    kind, code = error.get("type"), error.get("code")
    message = f"The model service reported an error: {error.get('message')}"[:300]
    if code == "rate_limit_exceeded" or kind in ("rate_limit_exceeded", "requests", "tokens"):
        return ErrorEvent(wire.RATE_LIMITED, message, retryable=True)
    if kind in ("invalid_request_error", "authentication_error", "permission_error"):
        return ErrorEvent(wire.BAD_REQUEST, message, retryable=False)
    return ErrorEvent(wire.UPSTREAM_ERROR, message, retryable=True)


# --- the session ---------------------------------------------------------------------
def session_config(
    *,
    instructions: str,
    server_vad: bool,
    transcription: bool,
    output: Literal["audio", "text"],
    voice: str | None,
) -> dict[str, Any]:
    """The `session.update` payload. Turn detection is off unless asked: the GA
    default is server VAD, which would answer on its own."""
    config: dict[str, Any] = {
        "type": "realtime",
        "output_modalities": [output],
        "audio": {
            "input": {
                "format": dict(PCM_FORMAT),
                "turn_detection": (
                    {"type": "server_vad", "create_response": True, "interrupt_response": True}
                    if server_vad
                    else None
                ),
                "transcription": (
                    {"model": settings.REALTIME_TRANSCRIPTION_MODEL} if transcription else None
                ),
            },
            "output": {"format": dict(PCM_FORMAT), "voice": voice or settings.REALTIME_VOICE},
        },
    }
    if instructions:
        config["instructions"] = instructions
    return config


_open_sessions: weakref.WeakSet[RealtimeSession] = weakref.WeakSet()


class RealtimeSession:
    """An open Realtime API session. Create it with `connect()` or `open()`."""

    def __init__(self, connection: Any, *, model: str, session_id: str) -> None:
        self._connection = connection  # openai's AsyncRealtimeConnection
        self.model = model
        self.session_id = session_id
        self.opened_at = time.monotonic()
        self.responses = 0
        # An answer is due from create_response() (until the server starts or refuses
        # it) and while one streams (response.created until response.done).
        self._requested: str | None = None  # event_id of a response.create not yet answered
        self._streaming: str | None = None  # id of the response in progress
        self._closed = False
        self._reading = False
        self._partial: dict[tuple[str, str], str] = {}
        self._handlers: dict[str, Callable[[dict[str, Any]], RealtimeEvent | None]] = {
            "response.created": self._on_response_created,
            "response.output_audio.delta": self._on_audio_delta,
            "response.output_audio_transcript.delta": self._on_transcript_delta,
            "response.output_audio_transcript.done": self._on_transcript_done,
            "response.output_text.delta": self._on_text_delta,
            "response.output_text.done": self._on_text_done,
            "response.done": self._on_response_done,
            "conversation.item.input_audio_transcription.delta": self._on_user_delta,
            "conversation.item.input_audio_transcription.completed": self._on_user_done,
            "conversation.item.input_audio_transcription.failed": self._on_user_failed,
            "conversation.item.truncated": self._on_truncated,
            "input_audio_buffer.committed": self._on_committed,
            "input_audio_buffer.speech_started": self._on_speech_started,
            "input_audio_buffer.speech_stopped": self._on_speech_stopped,
            "error": self._on_error,
        }
        _open_sessions.add(self)

    # --- opening and closing ---------------------------------------------------------
    @classmethod
    async def connect(
        cls,
        *,
        instructions: str = "",
        server_vad: bool = False,
        transcription: bool = True,
        output: Literal["audio", "text"] = "audio",
        voice: str | None = None,
        model: str | None = None,
    ) -> RealtimeSession:
        """Open and configure a session; the caller must `close()` it.

        Refusals and unreachable servers are retried `LLM_MAX_RETRIES` times
        (nothing has been said yet), then raised as `RealtimeError`.
        """
        config = session_config(
            instructions=instructions,
            server_vad=server_vad,
            transcription=transcription,
            output=output,
            voice=voice,
        )
        model = model or settings.REALTIME_MODEL
        attempt = 0
        while True:
            attempt += 1
            try:
                return await cls._connect_once(config, model)
            except Exception as exc:  # noqa: BLE001 - mapped, then retried or raised
                error = map_error(exc)
                if not error.retryable or attempt > settings.LLM_MAX_RETRIES:
                    raise error from exc
                wait = llm.backoff_seconds(attempt, error)
                RETRIES.labels(code=error.code).inc()
                logger.warning(
                    "realtime connect retry attempt=%s code=%s wait_s=%.2f",
                    attempt,
                    error.code,
                    wait,
                )
                await asyncio.sleep(wait)

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        *,
        instructions: str = "",
        server_vad: bool = False,
        transcription: bool = True,
        output: Literal["audio", "text"] = "audio",
        voice: str | None = None,
        model: str | None = None,
    ) -> AsyncIterator[RealtimeSession]:
        """`async with RealtimeSession.open(...) as session:` closes it on the way out."""
        session = await cls.connect(
            instructions=instructions,
            server_vad=server_vad,
            transcription=transcription,
            output=output,
            voice=voice,
            model=model,
        )
        try:
            yield session
        finally:
            await session.close()

    @classmethod
    async def _connect_once(cls, config: dict[str, Any], model: str) -> RealtimeSession:
        started = time.monotonic()
        # No `on_reconnecting`: the package would then reconnect a dropped socket
        # to a new, empty session; a dropped session is an error the caller sees.
        manager = llm.get_client().realtime.connect(
            model=model,
            websocket_connection_options={
                "open_timeout": settings.LLM_CONNECT_TIMEOUT_SECONDS,
                "close_timeout": CLOSE_TIMEOUT_SECONDS,
                "max_size": MAX_EVENT_BYTES,
            },
        )
        try:
            connection = await manager.enter()
        except TimeoutError:
            # The handshake did not finish in time: the model never got the session.
            raise RealtimeError(
                wire.UPSTREAM_ERROR, llm.UNREACHABLE_MESSAGE, retryable=True
            ) from None
        try:
            async with asyncio.timeout(settings.LLM_TIMEOUT_SECONDS):
                created = await _expect(connection, "session.created")
                await connection.session.update(session=config)
                await _expect(connection, "session.updated")
        except BaseException:
            await _abort(connection)
            raise
        session_id = (created.get("session") or {}).get("id") or ""
        logger.info(
            "realtime session opened session=%s model=%s connect_ms=%.0f",
            session_id,
            model,
            (time.monotonic() - started) * 1000,
        )
        return cls(connection, model=model, session_id=session_id)

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        """Close the upstream socket now (idempotent); `events()` then ends."""
        if self._closed:
            return
        self._closed = True
        _open_sessions.discard(self)
        try:
            await self._connection.close()
        except asyncio.CancelledError:
            _abort_transport(self._connection)
            raise
        except Exception:  # noqa: BLE001 - closing a broken socket: drop it
            _abort_transport(self._connection)
        finally:
            logger.info(
                "realtime session closed session=%s seconds=%.1f responses=%s",
                self.session_id,
                time.monotonic() - self.opened_at,
                self.responses,
            )

    async def __aenter__(self) -> RealtimeSession:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- client events ---------------------------------------------------------------
    async def append_audio(self, pcm: bytes) -> None:
        """Add PCM16 24 kHz mono audio to the input buffer."""
        if len(pcm) % 2:
            raise ValueError("PCM16 audio has an even number of bytes")
        for start in range(0, len(pcm), MAX_APPEND_BYTES):
            chunk = base64.b64encode(pcm[start : start + MAX_APPEND_BYTES]).decode()
            # The package's typed helper costs ~10x more CPU per event (its
            # parameter transformation), and audio comes many times a second.
            await self._send(
                self._connection.send_raw,
                json.dumps({"type": "input_audio_buffer.append", "audio": chunk}),
            )

    async def commit(self) -> None:
        """Make the buffered audio a user item (the turn ended)."""
        await self._send(self._connection.input_audio_buffer.commit)

    async def clear(self) -> None:
        """Drop the buffered audio."""
        await self._send(self._connection.input_audio_buffer.clear)

    async def send_text(self, text: str) -> None:
        """Add a user text message to the conversation."""
        content = [{"type": "input_text", "text": text}]
        item = {"type": "message", "role": "user", "content": content}
        await self._send(self._connection.conversation.item.create, item=item)

    async def create_response(self) -> None:
        """Ask for an answer to the conversation so far."""
        # Its id comes back in an `error` that refuses it: then no answer is due.
        self._requested = f"evt_{uuid.uuid4().hex[:20]}"
        await self._send(self._connection.response.create, event_id=self._requested)

    @property
    def response_active(self) -> bool:
        """An answer was asked for or is streaming, as far as the events read so far tell."""
        return self._requested is not None or self._streaming is not None

    async def cancel_response(self) -> bool:
        """Stop the answer in progress; False if there is none to stop."""
        if not self.response_active:
            return False
        await self._send(self._connection.response.cancel)
        return True

    async def truncate(self, item_id: str, audio_end_ms: int) -> None:
        """Tell the server the person heard only `audio_end_ms` of an assistant item."""
        if audio_end_ms < 0:
            raise ValueError("audio_end_ms must be >= 0")
        await self._send(
            self._connection.conversation.item.truncate,
            item_id=item_id,
            content_index=0,
            audio_end_ms=int(audio_end_ms),
        )

    async def _send(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        if self._closed:
            raise RealtimeError(wire.UPSTREAM_ERROR, CLOSED_MESSAGE, retryable=False)
        try:
            await method(*args, **kwargs)
        except (ConnectionClosed, openai.WebSocketConnectionClosedError) as exc:
            if self._closed:
                raise RealtimeError(wire.UPSTREAM_ERROR, CLOSED_MESSAGE, retryable=False) from exc
            await self.close()
            raise map_error(exc) from exc

    # --- server events ---------------------------------------------------------------
    async def events(self) -> AsyncIterator[RealtimeEvent]:
        """The session's events until it is closed; raises `RealtimeError` if it breaks.

        One reader at a time; leaving the loop and iterating again later is fine.
        """
        while True:
            if self._reading:
                raise RuntimeError("events() is already being read")
            try:
                raw = await self._receive()
                event = json.loads(raw)
                handler = self._handlers.get(event.get("type"))
                mapped = handler(event) if handler is not None else None
            except ConnectionClosed as exc:
                if self._closed:
                    return
                await self.close()
                raise map_error(exc) from exc
            except Exception as exc:  # noqa: BLE001 - unreadable or silent: the session ends
                await self.close()
                raise map_error(exc) from exc
            if mapped is not None:
                yield mapped

    async def _receive(self) -> bytes:
        self._reading = True
        try:
            if not self.response_active:
                return await self._connection.recv_bytes()
            # An answer is due: it must keep coming (canceling recv_bytes loses nothing).
            async with asyncio.timeout(settings.LLM_TIMEOUT_SECONDS):
                return await self._connection.recv_bytes()
        finally:
            self._reading = False

    def _on_response_created(self, event: dict[str, Any]) -> RealtimeEvent:
        self._requested = None
        self._streaming = event["response"]["id"]
        self.responses += 1
        return ResponseStarted(response_id=self._streaming)

    def _on_response_done(self, event: dict[str, Any]) -> RealtimeEvent:
        self._streaming = None
        response = event.get("response") or {}
        details = response.get("status_details") or {}
        return ResponseDone(
            response_id=response.get("id", ""),
            status=response.get("status") or "completed",
            reason=details.get("reason"),
            usage=response.get("usage"),
        )

    def _on_audio_delta(self, event: dict[str, Any]) -> RealtimeEvent:
        return AudioDelta(
            item_id=event["item_id"],
            response_id=event["response_id"],
            audio=base64.b64decode(event["delta"]),
        )

    def _delta(self, role: str, item_id: str, delta: str) -> str:
        text = self._partial.get((role, item_id), "") + delta
        self._partial[(role, item_id)] = text
        return text

    def _done(self, role: str, item_id: str, whole: str | None) -> tuple[str, str]:
        """(the part of `whole` not yet told, `whole`) at the end of a transcript."""
        told = self._partial.pop((role, item_id), "")
        whole = told if whole is None else whole
        return (whole[len(told) :] if whole.startswith(told) else "", whole)

    def _on_transcript_delta(self, event: dict[str, Any]) -> RealtimeEvent:
        item_id, delta = event["item_id"], event.get("delta") or ""
        text = self._delta("assistant", item_id, delta)
        return TranscriptDelta("assistant", item_id, delta, text=text)

    def _on_transcript_done(self, event: dict[str, Any]) -> RealtimeEvent:
        rest, whole = self._done("assistant", event["item_id"], event.get("transcript"))
        return TranscriptDelta("assistant", event["item_id"], rest, final=True, text=whole)

    def _on_user_delta(self, event: dict[str, Any]) -> RealtimeEvent:
        item_id, delta = event["item_id"], event.get("delta") or ""
        text = self._delta("user", item_id, delta)
        return TranscriptDelta("user", item_id, delta, text=text)

    def _on_user_done(self, event: dict[str, Any]) -> RealtimeEvent:
        rest, whole = self._done("user", event["item_id"], event.get("transcript"))
        return TranscriptDelta("user", event["item_id"], rest, final=True, text=whole)

    def _on_user_failed(self, event: dict[str, Any]) -> RealtimeEvent:
        self._partial.pop(("user", event.get("item_id", "")), None)
        error = error_event(event.get("error"))
        return ErrorEvent(error.code, "The transcription of your speech failed.", error.retryable)

    def _on_text_delta(self, event: dict[str, Any]) -> RealtimeEvent:
        item_id, delta = event["item_id"], event.get("delta") or ""
        text = self._delta("text", item_id, delta)
        return TextDelta(item_id, event["response_id"], delta, text=text)

    def _on_text_done(self, event: dict[str, Any]) -> RealtimeEvent:
        rest, whole = self._done("text", event["item_id"], event.get("text"))
        return TextDelta(event["item_id"], event["response_id"], rest, final=True, text=whole)

    def _on_truncated(self, event: dict[str, Any]) -> RealtimeEvent:
        return Truncated(item_id=event["item_id"], audio_end_ms=event["audio_end_ms"])

    def _on_committed(self, event: dict[str, Any]) -> RealtimeEvent:
        return InputCommitted(item_id=event["item_id"])

    def _on_speech_started(self, event: dict[str, Any]) -> RealtimeEvent:
        return SpeechStarted(item_id=event["item_id"], audio_start_ms=event["audio_start_ms"])

    def _on_speech_stopped(self, event: dict[str, Any]) -> RealtimeEvent:
        return SpeechStopped(item_id=event["item_id"], audio_end_ms=event["audio_end_ms"])

    def _on_error(self, event: dict[str, Any]) -> RealtimeEvent | None:
        error = event.get("error") if isinstance(event.get("error"), dict) else {}
        if self._requested is not None and error.get("event_id") == self._requested:
            self._requested = None  # that answer will not come
        if error.get("code") in _BENIGN_ERROR_CODES:
            return None
        mapped = error_event(error)
        logger.warning("realtime error event session=%s code=%s", self.session_id, mapped.code)
        return mapped


async def _expect(connection: Any, wanted: str) -> dict[str, Any]:
    """Read until the `wanted` event; an `error` before it ends the opening."""
    while True:
        event = json.loads(await connection.recv_bytes())
        kind = event.get("type")
        if kind == wanted:
            return event
        if kind == "error":
            mapped = error_event(event.get("error"))
            raise RealtimeError(mapped.code, mapped.message, retryable=mapped.retryable)


async def _abort(connection: Any) -> None:
    """Close a socket on the way out of a failure; drop it if that does not go quietly."""
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
            await connection.close()
    except asyncio.CancelledError:
        _abort_transport(connection)
        raise
    except Exception:  # noqa: BLE001 - already failing; make sure the socket is gone
        _abort_transport(connection)


def _abort_transport(connection: Any) -> None:
    """Drop the TCP connection under the package's socket (its `_connection`)."""
    transport = getattr(getattr(connection, "_connection", None), "transport", None)
    if transport is not None:
        transport.abort()


async def close_all_sessions() -> None:
    """Shutdown work: close every session this process has open."""
    sessions = list(_open_sessions)
    await asyncio.gather(*(session.close() for session in sessions), return_exceptions=True)
