"""The Realtime API's GA wire shapes, as the installed ``openai`` package models them.

Server events, conversation items, responses and the session object, and the
checks of what a client sends, live here, apart from the socket handling in
``fakeai/realtime.py``, so the shapes are in one place
(``openai/types/realtime/`` is the reference). Every event builder returns an
event without its ``event_id``; the sender adds it.
"""

from __future__ import annotations

import base64
import binascii
import copy
import time
import uuid
from typing import Any

PCM_FORMAT = {"type": "audio/pcm", "rate": 24000}
DEFAULT_INSTRUCTIONS = "You are a helpful, witty and friendly AI. Answer briefly."
DEFAULT_VOICE = "marin"
# The GA default: the server's VAD decides turns and answers on its own.
DEFAULT_SERVER_VAD = {
    "type": "server_vad",
    "threshold": 0.5,
    "prefix_padding_ms": 300,
    "silence_duration_ms": 500,
    "idle_timeout_ms": None,
    "create_response": True,
    "interrupt_response": True,
}
SEMANTIC_VAD_DEFAULTS = {
    "type": "semantic_vad",
    "eagerness": "auto",
    "create_response": True,
    "interrupt_response": True,
}
# Keys a client may set in session.update (what RealtimeSessionCreateRequest declares).
SESSION_KEYS = frozenset(
    {
        "type", "audio", "include", "instructions", "max_output_tokens", "model",
        "output_modalities", "parallel_tool_calls", "prompt", "reasoning", "tool_choice",
        "tools", "tracing", "truncation",
    }
)  # fmt: skip


def new_id(prefix: str) -> str:
    """An id like the API's (``sess_``, ``item_``, ``resp_``, ``event_``…)."""
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def default_session(session_id: str, model: str) -> dict[str, Any]:
    """The session object of ``session.created``: audio out, server VAD, no transcription."""
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": session_id,
        "model": model,
        "output_modalities": ["audio"],
        "instructions": DEFAULT_INSTRUCTIONS,
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "expires_at": int(time.time()) + 3600,
        "include": None,
        "audio": {
            "input": {
                "format": dict(PCM_FORMAT),
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": dict(DEFAULT_SERVER_VAD),
            },
            "output": {"format": dict(PCM_FORMAT), "voice": DEFAULT_VOICE, "speed": 1.0},
        },
    }


def session_event(kind: str, session: dict[str, Any]) -> dict[str, Any]:
    """``session.created`` or ``session.updated``."""
    return {"type": f"session.{kind}", "session": copy.deepcopy(session)}


def error_event(
    message: str,
    *,
    type_: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    client_event_id: str | None = None,
) -> dict[str, Any]:
    """``error``: ``error.event_id`` names the client event that caused it."""
    return {
        "type": "error",
        "error": {
            "type": type_,
            "code": code,
            "message": message,
            "param": param,
            "event_id": client_event_id,
        },
    }


# --- items ----------------------------------------------------------------------------
def user_audio_item(item_id: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "status": "completed",
        "role": "user",
        "content": [{"type": "input_audio", "transcript": None}],
    }


def assistant_item(item_id: str, *, status: str, modality: str, text: str | None) -> dict[str, Any]:
    """An assistant message; no content part until the first one is added."""
    content: list[dict[str, Any]] = []
    if text is not None:
        part_type = "output_audio" if modality == "audio" else "output_text"
        field = "transcript" if modality == "audio" else "text"
        content.append({"type": part_type, field: text})
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    }


def item_event(kind: str, item: dict[str, Any], previous_item_id: str | None) -> dict[str, Any]:
    """``conversation.item.added`` or ``conversation.item.done``."""
    return {
        "type": f"conversation.item.{kind}",
        "previous_item_id": previous_item_id,
        "item": copy.deepcopy(item),
    }


# --- input audio ----------------------------------------------------------------------
def committed(item_id: str, previous_item_id: str | None) -> dict[str, Any]:
    return {
        "type": "input_audio_buffer.committed",
        "item_id": item_id,
        "previous_item_id": previous_item_id,
    }


def speech_started(item_id: str, audio_start_ms: int) -> dict[str, Any]:
    return {
        "type": "input_audio_buffer.speech_started",
        "item_id": item_id,
        "audio_start_ms": audio_start_ms,
    }


def speech_stopped(item_id: str, audio_end_ms: int) -> dict[str, Any]:
    return {
        "type": "input_audio_buffer.speech_stopped",
        "item_id": item_id,
        "audio_end_ms": audio_end_ms,
    }


def transcription_delta(item_id: str, delta: str) -> dict[str, Any]:
    return {
        "type": "conversation.item.input_audio_transcription.delta",
        "item_id": item_id,
        "content_index": 0,
        "delta": delta,
    }


def transcription_completed(item_id: str, transcript: str, seconds: float) -> dict[str, Any]:
    return {
        "type": "conversation.item.input_audio_transcription.completed",
        "item_id": item_id,
        "content_index": 0,
        "transcript": transcript,
        "usage": {"type": "duration", "seconds": seconds},
    }


def truncated(item_id: str, content_index: int, audio_end_ms: int) -> dict[str, Any]:
    return {
        "type": "conversation.item.truncated",
        "item_id": item_id,
        "content_index": content_index,
        "audio_end_ms": audio_end_ms,
    }


# --- responses ------------------------------------------------------------------------
def response_object(
    response_id: str,
    *,
    conversation_id: str,
    modality: str,
    voice: str,
    status: str = "in_progress",
    status_details: dict[str, Any] | None = None,
    output: list[dict[str, Any]] | None = None,
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "realtime.response",
        "status": status,
        "status_details": status_details,
        "output": copy.deepcopy(output or []),
        "conversation_id": conversation_id,
        "output_modalities": [modality],
        "max_output_tokens": "inf",
        "audio": {"output": {"format": dict(PCM_FORMAT), "voice": voice}},
        "usage": usage,
        "metadata": None,
    }


def usage(
    *, input_text: int, input_audio: int, output_text: int, output_audio: int
) -> dict[str, Any]:
    """A ``RealtimeResponseUsage`` (token counts)."""
    input_tokens = input_text + input_audio
    output_tokens = output_text + output_audio
    return {
        "total_tokens": input_tokens + output_tokens,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "input_token_details": {
            "text_tokens": input_text,
            "audio_tokens": input_audio,
            "cached_tokens": 0,
            "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
        },
        "output_token_details": {"text_tokens": output_text, "audio_tokens": output_audio},
    }


class ResponseFrames:
    """The events of one response: ids filled in once, the part that varies passed in."""

    def __init__(self, response_id: str, item_id: str, modality: str) -> None:
        self.response_id = response_id
        self.item_id = item_id
        self.modality = modality
        self._where = {
            "response_id": response_id,
            "item_id": item_id,
            "output_index": 0,
            "content_index": 0,
        }

    def _event(self, type_: str, **fields: Any) -> dict[str, Any]:
        return {"type": type_, **self._where, **fields}

    def output_item(self, kind: str, item: dict[str, Any]) -> dict[str, Any]:
        """``response.output_item.added`` / ``.done``."""
        return {
            "type": f"response.output_item.{kind}",
            "response_id": self.response_id,
            "output_index": 0,
            "item": copy.deepcopy(item),
        }

    def content_part(self, kind: str, text: str) -> dict[str, Any]:
        """``response.content_part.added`` / ``.done``."""
        if self.modality == "audio":
            part = {"type": "audio", "transcript": text}
        else:
            part = {"type": "text", "text": text}
        return self._event(f"response.content_part.{kind}", part=part)

    def audio_delta(self, b64: str) -> dict[str, Any]:
        return self._event("response.output_audio.delta", delta=b64)

    def audio_done(self) -> dict[str, Any]:
        return self._event("response.output_audio.done")

    def transcript_delta(self, delta: str) -> dict[str, Any]:
        return self._event("response.output_audio_transcript.delta", delta=delta)

    def transcript_done(self, transcript: str) -> dict[str, Any]:
        return self._event("response.output_audio_transcript.done", transcript=transcript)

    def text_delta(self, delta: str) -> dict[str, Any]:
        return self._event("response.output_text.delta", delta=delta)

    def text_done(self, text: str) -> dict[str, Any]:
        return self._event("response.output_text.done", text=text)


# --- what clients send ------------------------------------------------------------------
class Refused(Exception):
    """A client event the API would refuse; becomes one ``error`` event."""

    def __init__(
        self, message: str, *, code: str = "invalid_value", param: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param


def modalities(value: Any, param: str) -> list[str]:
    if value not in (["audio"], ["text"]):
        raise Refused(
            f"Invalid '{param}': expected ['audio'] or ['text'], got {value!r}.", param=param
        )
    return list(value)


def merge_audio(audio: dict[str, Any], update: Any) -> None:
    if not isinstance(update, dict):
        raise Refused("'session.audio' must be an object.", param="session.audio")
    for direction in update:
        if direction not in ("input", "output"):
            raise Refused(
                f"Unknown parameter: 'session.audio.{direction}'.",
                code="unknown_parameter",
                param=f"session.audio.{direction}",
            )
        values = update[direction]
        if not isinstance(values, dict):
            raise Refused(
                f"'session.audio.{direction}' must be an object.",
                param=f"session.audio.{direction}",
            )
        for key, value in values.items():
            param = f"session.audio.{direction}.{key}"
            audio[direction][key] = _audio_setting(direction, key, value, param)


def _audio_setting(direction: str, key: str, value: Any, param: str) -> Any:
    if key == "format":
        if not isinstance(value, dict) or value.get("type") != "audio/pcm":
            raise Refused(
                f"Invalid '{param}': fakeai speaks only {{'type': 'audio/pcm', 'rate': 24000}}.",
                param=param,
            )
        if value.get("rate", 24000) != 24000:
            raise Refused(
                f"Invalid '{param}.rate': only 24000 is supported.", param=f"{param}.rate"
            )
        return dict(PCM_FORMAT)
    known = {
        "input": {"transcription", "turn_detection", "noise_reduction"},
        "output": {"voice", "speed"},
    }[direction]
    if key not in known:
        raise Refused(f"Unknown parameter: '{param}'.", code="unknown_parameter", param=param)
    if key == "turn_detection" and value is not None:
        if not isinstance(value, dict) or value.get("type") not in ("server_vad", "semantic_vad"):
            raise Refused(
                f"Invalid '{param}.type': expected 'server_vad' or 'semantic_vad'.",
                param=f"{param}.type",
            )
        if value["type"] == "server_vad":
            return {**DEFAULT_SERVER_VAD, **value}
        return {**SEMANTIC_VAD_DEFAULTS, **value}
    if key == "transcription" and value is not None and not isinstance(value, dict):
        raise Refused(f"'{param}' must be an object or null.", param=param)
    return value


_CONTENT_TYPES = {
    "user": ("input_text", "input_audio"),
    "system": ("input_text",),
    "assistant": ("output_text", "output_audio"),
}


def client_item(item: Any) -> dict[str, Any]:
    """The item of a ``conversation.item.create`` (messages only), as the server stores it."""
    if not isinstance(item, dict):
        raise Refused("Missing required parameter: 'item'.", param="item")
    if item.get("type") != "message":
        raise Refused("fakeai supports only items of type 'message'.", param="item.type")
    role = item.get("role")
    if role not in _CONTENT_TYPES:
        raise Refused(
            f"Invalid value: '{role}'. Supported values are: 'user', 'system', 'assistant'.",
            param="item.role",
        )
    content = item.get("content")
    if not isinstance(content, list) or not content:
        raise Refused("'item.content' must be a non-empty array.", param="item.content")
    parts = []
    audio_bytes = None
    for index, part in enumerate(content):
        param = f"item.content[{index}]"
        if not isinstance(part, dict) or part.get("type") not in _CONTENT_TYPES[role]:
            allowed = ", ".join(f"'{t}'" for t in _CONTENT_TYPES[role])
            raise Refused(f"Invalid '{param}.type': expected one of {allowed}.", param=param)
        if part["type"] == "input_audio":
            try:
                pcm = base64.b64decode(part.get("audio") or "", validate=True)
            except (binascii.Error, ValueError):
                raise Refused(f"Invalid '{param}.audio': not base64.", param=param) from None
            audio_bytes = len(pcm)
            parts.append({"type": "input_audio", "transcript": part.get("transcript")})
            continue
        field_name = "transcript" if part["type"] == "output_audio" else "text"
        text = part.get(field_name)
        if not isinstance(text, str):
            raise Refused(f"Missing required parameter: '{param}.{field_name}'.", param=param)
        parts.append({"type": part["type"], field_name: text})
    built = {
        "id": item.get("id") if isinstance(item.get("id"), str) else new_id("item"),
        "object": "realtime.item",
        "type": "message",
        "status": "completed",
        "role": role,
        "content": parts,
    }
    if audio_bytes is not None:
        built["_audio_bytes"] = audio_bytes  # how much audio the item carries
    return built
