"""fakeai's Realtime endpoint: ``GET /v1/realtime?model=...``, a WebSocket speaking the GA protocol.

One socket is one session. Client events are handled in order by one loop;
an answer streams from a task of its own, so ``response.cancel`` (or speech,
with server VAD) stops it between two deltas. Audio and transcript deltas are
paced by the audio's own duration on a schedule anchored at
``response.create`` (the ``pace`` control speeds it up), like chat's tokens.

What the client sent is kept for tests: counters at ``/_fakeai/realtime/stats``,
the client events (audio left out, with fakeai's notes under ``_fakeai``) at
``/_fakeai/realtime/events``, and the audio of recent commits at
``/_fakeai/realtime/audio/{item_id}``. ``POST /_fakeai/reset`` clears them.

Faults (model suffix or ``X-Fakeai-Fault``): ``401``, ``429``, ``500`` refuse
the handshake with that status; ``hang`` accepts the socket and says nothing;
after N deltas of an answer ``hang-N`` stops, ``cut-N`` drops the connection
without a close frame, ``malformed-N`` sends a frame that is not JSON, and
``error-N`` sends an ``error`` event and fails the response.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from fakeai import realtime_wire as rw
from fakeai import wire
from fakeai.behaviour import HEADER_FAULT, Behaviour, Fault, resolve_behaviour
from fakeai.realtime_wire import Refused
from fakeai.replies import reply_tokens, tokenize
from fakeai.speech import BYTES_PER_MS, RATE, EnergyGate, Tape, duration_ms, load_tape

EVENT_LOG_SIZE = 2000
KEPT_COMMITS = 20
# The API takes up to 15 MiB of audio per append, base64-encoded.
MAX_MESSAGE_BYTES = 24 * 1024 * 1024
CHUNK_MS = 100  # audio per output delta
MIN_COMMIT_MS = 100  # the API refuses to commit less
AUDIO_TOKENS_PER_SECOND = 10  # for usage only
REFUSED_HANDSHAKES = ("401", "429", "500")


@dataclass
class RealtimeState:
    """Counters, the client-event log and the open sockets of the Realtime endpoint."""

    defaults: Behaviour
    sessions: int = 0
    active: int = 0
    responses: int = 0
    completed: int = 0
    cancelled: int = 0
    failed: int = 0
    commits: int = 0
    truncates: int = 0
    faults: int = 0
    voice: str = ""
    fault_counts: dict[tuple[str, str], int] = field(default_factory=dict)
    events: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=EVENT_LOG_SIZE))
    committed_audio: OrderedDict[str, bytes] = field(default_factory=OrderedDict)
    sockets: dict[web.WebSocketResponse, Session] = field(default_factory=dict)

    def reset(self) -> None:
        """Zero counters, xK fault counters, the event log and kept audio."""
        self.sessions = self.responses = self.completed = self.cancelled = self.failed = 0
        self.commits = self.truncates = self.faults = 0
        self.fault_counts.clear()
        self.events.clear()
        self.committed_audio.clear()

    def stats(self) -> dict[str, Any]:
        return {
            "sessions": self.sessions,
            "active": self.active,
            "responses": self.responses,
            "completed": self.completed,
            "cancelled": self.cancelled,
            "failed": self.failed,
            "commits": self.commits,
            "truncates": self.truncates,
            "faults": self.faults,
            "voice": self.voice,
        }

    def active_fault(self, behaviour: Behaviour, model: str, request: web.Request) -> Fault | None:
        """The fault for this connection (xK: only the first K identical ones)."""
        fault = behaviour.fault
        if fault is None or fault.times is None:
            return fault
        key = (model, request.headers.get(HEADER_FAULT, ""))
        count = self.fault_counts.get(key, 0) + 1
        self.fault_counts[key] = count
        return fault if count <= fault.times else None

    def keep_audio(self, item_id: str, pcm: bytes) -> None:
        self.committed_audio[item_id] = pcm
        while len(self.committed_audio) > KEPT_COMMITS:
            self.committed_audio.popitem(last=False)


STATE_KEY = web.AppKey("fakeai_realtime", RealtimeState)


def _http_error(
    status: int, message: str, type_: str, code: str | None = None, param: str | None = None
) -> web.Response:
    headers = {"Retry-After": "1"} if status == 429 else None
    return web.Response(
        status=status,
        body=wire.dumps(wire.error_body(message, type_, code, param)),
        content_type="application/json",
        headers=headers,
    )


def _refusal(fault: Fault) -> web.Response:
    if fault.kind == "401":
        return _http_error(
            401,
            "Incorrect API key provided (fakeai injected fault).",
            "invalid_request_error",
            "invalid_api_key",
        )
    if fault.kind == "429":
        response = _http_error(
            429, "Rate limit reached (fakeai injected fault).", "requests", "rate_limit_exceeded"
        )
        response.headers["Retry-After"] = f"{fault.retry_after:g}"
        return response
    return _http_error(500, "The server had an error (fakeai injected fault).", "server_error")


async def realtime_socket(request: web.Request) -> web.StreamResponse:
    """``GET /v1/realtime?model=...``: one Realtime session per WebSocket."""
    state = request.app[STATE_KEY]
    model = request.query.get("model", "")
    if not model:
        return _http_error(
            400,
            "Missing required parameter: 'model'.",
            "invalid_request_error",
            "missing_required_parameter",
            "model",
        )
    try:
        behaviour = resolve_behaviour(state.defaults, model, request.headers)
    except ValueError as exc:
        return _http_error(400, str(exc), "invalid_request_error", param="model")
    fault = state.active_fault(behaviour, model, request)
    if fault is not None:
        state.faults += 1
        if fault.kind in REFUSED_HANDSHAKES:
            return _refusal(fault)
    tape = await load_tape()  # rendered at start-up: at once
    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, heartbeat=None)
    await ws.prepare(request)
    session = Session(ws, request, state, behaviour=behaviour, fault=fault, tape=tape)
    state.sockets[ws] = session
    state.sessions += 1
    state.active += 1
    try:
        await session.run()
    finally:
        state.active -= 1
        state.sockets.pop(ws, None)
    return ws


class Session:
    """One Realtime session: its configuration, conversation, input buffer and answer."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        request: web.Request,
        state: RealtimeState,
        *,
        behaviour: Behaviour,
        fault: Fault | None,
        tape: Tape,
    ) -> None:
        self.ws = ws
        self.request = request
        self.state = state
        self.behaviour = behaviour
        self.fault = fault
        self.tape = tape
        self.model = request.query["model"]
        self.id = rw.new_id("sess")
        self.conversation_id = rw.new_id("conv")
        self.config = rw.default_session(self.id, self.model)
        self.items: list[dict[str, Any]] = []
        self.items_by_id: dict[str, dict[str, Any]] = {}
        self.item_audio_ms: dict[str, float] = {}  # audio of assistant items, as sent
        self.buffer = bytearray()
        self.gate: EnergyGate | None = None
        self.speech_item_id: str | None = None
        self.response: Response | None = None
        self.opened_at = asyncio.get_running_loop().time()
        self.closed_by = "client"
        self._configure_gate()
        self._handlers: dict[str, Callable[[dict[str, Any]], Awaitable[None]]] = {
            "session.update": self.on_session_update,
            "input_audio_buffer.append": self.on_append,
            "input_audio_buffer.commit": self.on_commit,
            "input_audio_buffer.clear": self.on_clear,
            "conversation.item.create": self.on_item_create,
            "conversation.item.truncate": self.on_truncate,
            "response.create": self.on_response_create,
            "response.cancel": self.on_response_cancel,
        }

    # --- the socket -------------------------------------------------------------------
    async def run(self) -> None:
        self.log({"type": "fakeai.connect"}, **self._connection_notes())
        try:
            if self.fault is not None and self.fault.kind == "hang" and self.fault.tokens is None:
                async for _ in self.ws:  # accepted, then silence
                    pass
                return
            await self.send(rw.session_event("created", self.config))
            async for message in self.ws:
                if message.type == WSMsgType.TEXT:
                    await self.receive(message.data)
                elif message.type == WSMsgType.BINARY:
                    await self.send_error(
                        "Binary frames are not supported: send JSON events.", code="invalid_value"
                    )
        finally:
            response_active = self.response is not None
            if self.response is not None:
                self.response.abandon()
            self.log({"type": "fakeai.close"}, by=self.closed_by, response_active=response_active)

    def _connection_notes(self) -> dict[str, Any]:
        headers = self.request.headers
        return {
            "model": self.model,
            "authorization": headers.get("Authorization") is not None,
            "openai_beta": headers.get("OpenAI-Beta"),
        }

    def log(self, event: dict[str, Any], **notes: Any) -> None:
        entry = dict(event)
        at_ms = (asyncio.get_running_loop().time() - self.opened_at) * 1000
        entry["_fakeai"] = {"session": self.id, "at_ms": round(at_ms, 1), **notes}
        self.state.events.append(entry)

    async def send(self, event: dict[str, Any]) -> None:
        if self.ws.closed:
            return
        event = {"event_id": rw.new_id("event"), **event}
        try:
            await self.ws.send_str(json.dumps(event, separators=(",", ":")))
        except ConnectionResetError:
            pass  # the client went away; the receive loop ends the session

    async def send_error(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        client_event_id: str | None = None,
        type_: str = "invalid_request_error",
    ) -> None:
        await self.send(
            rw.error_event(
                message, type_=type_, code=code, param=param, client_event_id=client_event_id
            )
        )

    async def receive(self, data: str) -> None:
        try:
            event = json.loads(data)
        except ValueError:
            self.log({"type": "fakeai.invalid_json", "bytes": len(data)})
            await self.send_error("The event is not valid JSON.", code="invalid_json")
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            await self.send_error(
                "An event must be a JSON object with a 'type'.",
                code="missing_required_parameter",
                param="type",
            )
            return
        client_event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
        handler = self._handlers.get(event["type"])
        try:
            if handler is None:
                self.log(event)
                raise Refused(
                    f"Invalid value: '{event['type']}'. Supported values are: "
                    + ", ".join(f"'{name}'" for name in self._handlers)
                    + ".",
                    param="type",
                )
            await handler(event)
        except Refused as refused:
            await self.send_error(
                refused.message,
                code=refused.code,
                param=refused.param,
                client_event_id=client_event_id,
            )

    # --- session ----------------------------------------------------------------------
    async def on_session_update(self, event: dict[str, Any]) -> None:
        self.log(event)
        update = event.get("session")
        if not isinstance(update, dict):
            raise Refused("Missing required parameter: 'session'.", param="session")
        if "type" not in update:
            raise Refused(
                "Missing required parameter: 'session.type'.",
                code="missing_required_parameter",
                param="session.type",
            )
        if update["type"] != "realtime":
            raise Refused(
                f"Invalid value: '{update['type']}'. Supported values are: 'realtime'.",
                param="session.type",
            )
        unknown = sorted(set(update) - rw.SESSION_KEYS)
        if unknown:
            raise Refused(
                f"Unknown parameter: 'session.{unknown[0]}'.",
                code="unknown_parameter",
                param=f"session.{unknown[0]}",
            )
        config = json.loads(json.dumps(self.config))  # a deep copy; applied only if valid
        for key, value in update.items():
            if key == "audio":
                rw.merge_audio(config["audio"], value)
            elif key == "output_modalities":
                config[key] = rw.modalities(value, "session.output_modalities")
            elif key == "instructions":
                if not isinstance(value, str):
                    raise Refused(
                        "'session.instructions' must be a string.", param="session.instructions"
                    )
                config[key] = value
            elif key != "type":
                config[key] = value
        self.config = config
        self._configure_gate()
        await self.send(rw.session_event("updated", self.config))

    def _configure_gate(self) -> None:
        detection = self.config["audio"]["input"]["turn_detection"]
        if detection is None:
            self.gate = None
            self.speech_item_id = None
            return
        fed_ms = self.gate.fed_ms if self.gate is not None else 0
        self.gate = EnergyGate(
            threshold=detection.get("threshold") or 0.5,
            silence_ms=detection.get("silence_duration_ms") or 500,
            prefix_padding_ms=detection.get("prefix_padding_ms") or 300,
        )
        self.gate.fed_ms = fed_ms

    @property
    def modality(self) -> str:
        return self.config["output_modalities"][0]

    @property
    def transcription(self) -> dict[str, Any] | None:
        return self.config["audio"]["input"]["transcription"]

    # --- input audio ------------------------------------------------------------------
    async def on_append(self, event: dict[str, Any]) -> None:
        audio = event.get("audio")
        entry = {k: v for k, v in event.items() if k != "audio"}
        if not isinstance(audio, str):
            self.log(entry)
            raise Refused("Missing required parameter: 'audio'.", param="audio")
        try:
            pcm = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            self.log(entry)
            raise Refused("Invalid 'audio': not base64.", param="audio") from None
        self.log(entry, audio_bytes=len(pcm))
        self.buffer += pcm
        if self.gate is not None:
            for kind, at_ms in self.gate.feed(pcm):
                await self._on_speech(kind, at_ms)

    async def _on_speech(self, kind: str, at_ms: int) -> None:
        detection = self.config["audio"]["input"]["turn_detection"] or {}
        if kind == "started":
            self.speech_item_id = rw.new_id("item")
            await self.send(rw.speech_started(self.speech_item_id, at_ms))
            if self.response is not None and detection.get("interrupt_response", True):
                await self.cancel_response("turn_detected")
            return
        item_id = self.speech_item_id or rw.new_id("item")
        self.speech_item_id = None
        await self.send(rw.speech_stopped(item_id, at_ms))
        await self.commit(item_id)
        if detection.get("create_response", True) and self.response is None:
            await self.start_response({})

    async def on_commit(self, event: dict[str, Any]) -> None:
        self.log(event, audio_ms=round(duration_ms(len(self.buffer)), 1))
        buffered_ms = duration_ms(len(self.buffer))
        if buffered_ms < MIN_COMMIT_MS:
            raise Refused(
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"{MIN_COMMIT_MS}ms of audio, but buffer only has {buffered_ms:.2f}ms of audio.",
                code="input_audio_buffer_commit_empty",
            )
        await self.commit(self.speech_item_id or rw.new_id("item"))
        self.speech_item_id = None

    async def commit(self, item_id: str) -> None:
        pcm = bytes(self.buffer)
        self.buffer.clear()
        seconds = round(duration_ms(len(pcm)) / 1000, 2)
        self.state.commits += 1
        self.state.keep_audio(item_id, pcm)
        self.log({"type": "fakeai.committed", "item_id": item_id}, audio_ms=seconds * 1000)
        previous = self.items[-1]["id"] if self.items else None
        item = rw.user_audio_item(item_id)
        item["_heard"] = _heard(seconds)
        self._add_item(item)
        await self.send(rw.committed(item_id, previous))
        await self.send(rw.item_event("added", _public(item), previous))
        await self.send(rw.item_event("done", _public(item), previous))
        if self.transcription is not None:
            transcript = item["_heard"]
            for token in tokenize(transcript):
                await self.send(rw.transcription_delta(item_id, token))
            item["content"][0]["transcript"] = transcript
            await self.send(rw.transcription_completed(item_id, transcript, seconds))

    async def on_clear(self, event: dict[str, Any]) -> None:
        self.log(event, audio_ms=round(duration_ms(len(self.buffer)), 1))
        self.buffer.clear()
        await self.send({"type": "input_audio_buffer.cleared"})

    # --- conversation -----------------------------------------------------------------
    async def on_item_create(self, event: dict[str, Any]) -> None:
        self.log(event)
        item = rw.client_item(event.get("item"))
        if "_audio_bytes" in item:
            item["_heard"] = _heard(round(duration_ms(item.pop("_audio_bytes")) / 1000, 2))
        if item["id"] in self.items_by_id:
            raise Refused(f"Item with id '{item['id']}' already exists.", param="item.id")
        previous = self.items[-1]["id"] if self.items else None
        self._add_item(item)
        await self.send(rw.item_event("added", _public(item), previous))
        await self.send(rw.item_event("done", _public(item), previous))

    async def on_truncate(self, event: dict[str, Any]) -> None:
        item_id = event.get("item_id")
        audio_end_ms = event.get("audio_end_ms")
        content_index = event.get("content_index", 0)
        item = self.items_by_id.get(item_id) if isinstance(item_id, str) else None
        self.log(event, known_item=item is not None)
        if item is None:
            raise Refused(
                f"Conversation item with id '{item_id}' not found.",
                code="item_not_found",
                param="item_id",
            )
        if not isinstance(audio_end_ms, int) or isinstance(audio_end_ms, bool) or audio_end_ms < 0:
            raise Refused("'audio_end_ms' must be a non-negative integer.", param="audio_end_ms")
        if content_index != 0:
            raise Refused("Invalid 'content_index': the item has one part.", param="content_index")
        if item["role"] != "assistant" or item_id not in self.item_audio_ms:
            raise Refused("Only assistant messages with audio can be truncated.", param="item_id")
        sent_ms = self.item_audio_ms[item_id]
        if audio_end_ms > sent_ms:
            raise Refused(
                f"Audio content of {sent_ms:.0f}ms is already shorter than {audio_end_ms}ms.",
                param="audio_end_ms",
            )
        if self.response is not None and self.response.item_id == item_id:
            await self.cancel_response("client_cancelled")
        self.state.truncates += 1
        words = item.get("_words", [])
        heard = words[: int(audio_end_ms / 1000 / self.tape.seconds_per_word)]
        item["content"] = [{"type": "output_audio", "transcript": "".join(heard)}]
        self.item_audio_ms[item_id] = audio_end_ms
        await self.send(rw.truncated(item_id, 0, audio_end_ms))

    def _add_item(self, item: dict[str, Any]) -> None:
        self.items.append(item)
        self.items_by_id[item["id"]] = item

    # --- responses --------------------------------------------------------------------
    async def on_response_create(self, event: dict[str, Any]) -> None:
        self.log(event)
        if self.response is not None:
            raise Refused(
                "Conversation already has an active response in progress: "
                f"{self.response.id}. Wait until the response is finished before creating "
                "a new one.",
                code="conversation_already_has_active_response",
            )
        params = event.get("response") or {}
        if not isinstance(params, dict):
            raise Refused("'response' must be an object.", param="response")
        await self.start_response(params)

    async def start_response(self, params: dict[str, Any]) -> None:
        modality = self.modality
        if "output_modalities" in params:
            modality = rw.modalities(params["output_modalities"], "response.output_modalities")[0]
        words = reply_tokens(self._messages(), self.behaviour.tokens)
        response = Response(self, modality=modality, words=words)
        self.response = response
        self.state.responses += 1
        await response.start()

    async def on_response_cancel(self, event: dict[str, Any]) -> None:
        response = self.response
        sent_ms = round(duration_ms(response.audio_bytes_sent), 1) if response else None
        self.log(event, active=response is not None, audio_ms_sent=sent_ms)
        wanted = event.get("response_id")
        if response is None or (wanted is not None and wanted != response.id):
            raise Refused(
                "Cancellation failed: no active response found.",
                code="response_cancel_not_active",
            )
        await self.cancel_response("client_cancelled")

    async def cancel_response(self, reason: str) -> None:
        response = self.response
        if response is not None:
            await response.stop()
            if not response.finished:
                await response.finish("cancelled", reason=reason)

    def _messages(self) -> list[dict[str, str]]:
        """The conversation as chat messages, for the deterministic answer."""
        messages = []
        for item in self.items:
            if item.get("type") != "message":
                continue
            text = item.get("_heard") or " ".join(
                part.get("text") or part.get("transcript") or ""
                for part in item["content"]
                if isinstance(part, dict)
            )
            messages.append({"role": item["role"], "content": text})
        return messages


class Response:
    """One answer: its opening events, its paced deltas, and how it ended."""

    def __init__(self, session: Session, *, modality: str, words: list[str]) -> None:
        self.session = session
        self.modality = modality
        self.words = words
        self.id = rw.new_id("resp")
        self.item_id = rw.new_id("item")
        self.frames = rw.ResponseFrames(self.id, self.item_id, modality)
        self.started = asyncio.get_running_loop().time()
        self.sent_words: list[str] = []
        self.audio_bytes_sent = 0
        self.deltas = 0
        self.finished = False
        self.finishing = False
        self.item = rw.assistant_item(
            self.item_id, status="in_progress", modality=modality, text=None
        )
        self.previous_item_id = session.items[-1]["id"] if session.items else None
        self.task: asyncio.Task[None] | None = None

    def _object(self, **fields: Any) -> dict[str, Any]:
        return rw.response_object(
            self.id,
            conversation_id=self.session.conversation_id,
            modality=self.modality,
            voice=self.session.config["audio"]["output"]["voice"],
            **fields,
        )

    async def start(self) -> None:
        session = self.session
        session._add_item(self.item)
        if self.modality == "audio":
            session.item_audio_ms[self.item_id] = 0.0
        await session.send({"type": "response.created", "response": self._object()})
        await session.send(self.frames.output_item("added", self.item))
        await session.send(rw.item_event("added", _public(self.item), self.previous_item_id))
        await session.send(self.frames.content_part("added", ""))
        self.item["content"] = [self._part("")]
        self.task = asyncio.create_task(self._run())

    def _part(self, text: str) -> dict[str, Any]:
        if self.modality == "audio":
            return {"type": "output_audio", "transcript": text}
        return {"type": "output_text", "text": text}

    async def _run(self) -> None:
        fault = self.session.fault
        ended = await self._stream(fault)
        if ended == "complete":
            await self.finish("completed")

    def _schedule(self) -> list[tuple[float, int, Any]]:
        """(due seconds, order, what) of every delta: words, and audio chunks between them."""
        spw = self.session.tape.seconds_per_word
        due: list[tuple[float, int, Any]] = [(k * spw, 0, w) for k, w in enumerate(self.words)]
        if self.modality == "audio":
            total = round(len(self.words) * spw * RATE) * 2
            chunk = CHUNK_MS * BYTES_PER_MS
            for i in range(math.ceil(total / chunk)):
                due.append((i * CHUNK_MS / 1000, 1, (i * chunk, min(chunk, total - i * chunk))))
        due.sort(key=lambda entry: (entry[0], entry[1]))
        return due

    async def _stream(self, fault: Fault | None) -> str:
        behaviour = self.session.behaviour
        loop = asyncio.get_running_loop()
        origin = self.started + behaviour.ttft_ms / 1000
        limit = math.inf if fault is None or fault.tokens is None else fault.tokens
        primary = 1 if self.modality == "audio" else 0
        for due_s, order, what in self._schedule():
            if order == primary and self.deltas >= limit:
                return await self._fault(fault)
            if behaviour.pace > 0:
                delay = origin + due_s / behaviour.pace - loop.time()
            else:
                delay = origin - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await self._send_delta(order, what)
            if order == primary:
                self.deltas += 1
        if self.deltas >= limit:
            return await self._fault(fault)
        return "complete"

    async def _send_delta(self, order: int, what: Any) -> None:
        session = self.session
        if order == 1:
            start, length = what
            pcm = session.tape.audio(start, length)
            self.audio_bytes_sent += length
            session.item_audio_ms[self.item_id] = duration_ms(self.audio_bytes_sent)
            await session.send(self.frames.audio_delta(base64.b64encode(pcm).decode()))
            return
        self.sent_words.append(what)
        if self.modality == "audio":
            await session.send(self.frames.transcript_delta(what))
        else:
            await session.send(self.frames.text_delta(what))

    async def _fault(self, fault: Fault | None) -> str:
        assert fault is not None
        session = self.session
        if fault.kind == "hang":
            await asyncio.Event().wait()  # until cancelled
        if fault.kind == "cut":
            self.finished = True
            session.closed_by = "fault"
            if session.request.transport is not None:
                session.request.transport.close()  # written frames go out, then FIN
            return "cut"
        if fault.kind == "malformed":
            await session.ws.send_str("{not json")
            await self.finish("completed")
            return "malformed"
        await session.send_error(
            "The server had an error while processing your request (fakeai injected fault).",
            type_="server_error",
            code="server_error",
        )
        await self.finish("failed", error={"type": "server_error", "code": "server_error"})
        return "failed"

    async def stop(self) -> None:
        """Stop the deltas now (between two of them); the caller then finishes it."""
        task = self.task
        if task is None or task.done():
            return
        if not self.finishing:
            task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            if not task.cancelled():
                raise  # our own caller is being cancelled

    def abandon(self) -> None:
        """The socket is gone: stop without a word."""
        self.finished = True
        if self.task is not None:
            self.task.cancel()
        if self.session.response is self:
            self.session.response = None

    async def finish(self, status: str, *, reason: str | None = None, error: Any = None) -> None:
        """Send the closing events of the answer, whatever ended it."""
        self.finishing = True
        self.finished = True
        session = self.session
        text = "".join(self.sent_words)
        if self.modality == "audio":
            await session.send(self.frames.audio_done())
            await session.send(self.frames.transcript_done(text))
        else:
            await session.send(self.frames.text_done(text))
        await session.send(self.frames.content_part("done", text))
        self.item["status"] = "completed" if status == "completed" else "incomplete"
        self.item["content"] = [self._part(text)]
        self.item["_words"] = list(self.sent_words)
        public = _public(self.item)
        await session.send(self.frames.output_item("done", public))
        await session.send(rw.item_event("done", public, self.previous_item_id))
        details: dict[str, Any] | None = None
        if status == "cancelled":
            details = {"type": "cancelled", "reason": reason}
        elif status == "failed":
            details = {"type": "failed", "error": error}
        input_text = sum(len(tokenize(m["content"])) for m in session._messages())
        audio_s = duration_ms(self.audio_bytes_sent) / 1000
        usage = rw.usage(
            input_text=input_text,
            input_audio=0,
            output_text=len(self.sent_words),
            output_audio=math.ceil(audio_s * AUDIO_TOKENS_PER_SECOND),
        )
        if session.response is self:
            session.response = None
        counter = {"completed": "completed", "cancelled": "cancelled"}.get(status, "failed")
        setattr(session.state, counter, getattr(session.state, counter) + 1)
        done = self._object(status=status, status_details=details, output=[public], usage=usage)
        await session.send({"type": "response.done", "response": done})


# --- helpers -------------------------------------------------------------------------
def _public(item: dict[str, Any]) -> dict[str, Any]:
    """An item without fakeai's own bookkeeping keys."""
    return {k: v for k, v in item.items() if not k.startswith("_")}


def _heard(seconds: float) -> str:
    return f"heard {seconds:.2f} s of audio"


# --- test endpoints and lifecycle -------------------------------------------------------
async def get_stats(request: web.Request) -> web.Response:
    """``GET /_fakeai/realtime/stats``: counters of sessions, answers and what clients sent."""
    return web.json_response(request.app[STATE_KEY].stats())


async def get_events(request: web.Request) -> web.Response:
    """``GET /_fakeai/realtime/events[?session=sess_...]``: client events, oldest first."""
    session = request.query.get("session")
    events = [
        event
        for event in request.app[STATE_KEY].events
        if session is None or event["_fakeai"]["session"] == session
    ]
    return web.json_response(events)


async def get_audio(request: web.Request) -> web.Response:
    """``GET /_fakeai/realtime/audio/{item_id}``: the PCM16 of a recent commit."""
    pcm = request.app[STATE_KEY].committed_audio.get(request.match_info["item_id"])
    if pcm is None:
        raise web.HTTPNotFound()
    return web.Response(body=pcm, content_type="application/octet-stream")


async def _render_voice(app: web.Application) -> None:
    app[STATE_KEY].voice = (await load_tape()).source


async def _close_sockets(app: web.Application) -> None:
    sockets = list(app[STATE_KEY].sockets.items())
    for _, session in sockets:
        session.closed_by = "shutdown"
    await asyncio.gather(
        *(ws.close(code=1001, message=b"fakeai is shutting down") for ws, _ in sockets),
        return_exceptions=True,
    )


def setup(app: web.Application, defaults: Behaviour) -> None:
    """Give the application the endpoint's state and voice; routes are added by the server."""
    app[STATE_KEY] = RealtimeState(defaults=defaults)
    app.on_startup.append(_render_voice)
    app.on_shutdown.append(_close_sockets)
