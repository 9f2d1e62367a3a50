"""The voice protocol: every voice event is built here, every voice client frame parsed here.

docs/protocol.md ("Voice") documents exactly these. Audio travels as binary
frames (PCM16 mono little-endian, 24 kHz, both ways); everything else is JSON.
Generic pieces (error codes, the `error` event, frame validation) come from
realtime.wire.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from realtime import wire

SAMPLE_RATE = 24_000
BYTES_PER_MS = SAMPLE_RATE * 2 // 1000
# What the browser may tune (the rest of the VAD stays the server's settings).
THRESHOLD_RANGE = (0.1, 0.95)
MIN_SILENCE_RANGE_MS = (200, 3000)


# --- server -> client ------------------------------------------------------------
def session(*, session_id: int, model: str, vad_backend: str, demo: bool) -> dict:
    return {
        "type": "session",
        "session_id": session_id,
        "model": model,
        "vad_backend": vad_backend,
        "sample_rate": SAMPLE_RATE,
        "demo": demo,
    }


def vad(*, state: str, at_ms: float) -> dict:
    """`speech_started` / `speech_stopped` at `at_ms` of the microphone's own sample clock."""
    return {"type": "vad", "state": state, "at_ms": round(at_ms, 1)}


def transcript(*, role: str, item_id: str, delta: str, final: bool, text: str = "") -> dict:
    event = {"type": "transcript", "role": role, "item_id": item_id, "delta": delta}
    event["final"] = final
    if final:
        event["text"] = text
    return event


def response_text(*, item_id: str, delta: str) -> dict:
    return {"type": "response_text", "item_id": item_id, "delta": delta}


def audio_start(*, item_id: str, turn: int) -> dict:
    """The next binary frames are a new assistant item: its played clock starts at 0."""
    return {"type": "audio_start", "item_id": item_id, "turn": turn}


def response(*, status: str, turn: int) -> dict:
    """An answer `started`, or ended `completed`, `cancelled` or `failed`."""
    return {"type": "response", "status": status, "turn": turn}


def interrupted(*, turn: int, item_id: str | None, played_ms: int) -> dict:
    """The person spoke over the answer: drop every queued frame of it now."""
    return {"type": "interrupted", "turn": turn, "item_id": item_id, "played_ms": played_ms}


def latency(*, turn: int, voice_to_voice_ms: float | None, **parts: float | None) -> dict:
    event: dict[str, Any] = {"type": "latency", "turn": turn}
    event["voice_to_voice_ms"] = None if voice_to_voice_ms is None else round(voice_to_voice_ms, 1)
    for key, value in parts.items():
        event[key] = None if value is None else round(value, 1)
    return event


def fatal_error(code: str, message: str, *, retryable: bool) -> dict:
    """The voice session ended (the upstream failed): the socket closes after this."""
    return wire.error(code, message, retryable=retryable, fatal=True)


# --- client -> server ------------------------------------------------------------
CLIENT_TYPES = frozenset({"text", "cancel", "config", "playback", "ping"})


@dataclass(frozen=True)
class ClientEvent:
    type: str
    content: str = ""
    item_id: str = ""
    played_ms: int = 0
    vad: dict[str, float] = field(default_factory=dict)


def client_event(data: dict, *, max_content_chars: int) -> ClientEvent:
    """Validate a client frame into a ClientEvent, or raise wire.ProtocolError."""
    kind = wire.event_type(data, allowed=CLIENT_TYPES)
    if kind == "text":
        return ClientEvent(
            kind, content=wire.text_field(data, "content", max_chars=max_content_chars)
        )
    if kind == "playback":
        played = wire.int_field(data, "played_ms", minimum=0)
        if played is None:
            raise wire.ProtocolError(wire.INVALID_EVENT, "'played_ms' is required")
        item_id = wire.text_field(data, "item_id", max_chars=100, required=False)
        return ClientEvent(kind, item_id=item_id, played_ms=played)
    if kind == "config":
        return ClientEvent(kind, vad=_vad_config(data.get("vad")))
    return ClientEvent(kind)


def _vad_config(value: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        raise wire.ProtocolError(wire.INVALID_EVENT, "'vad' must be an object")
    unknown = set(value) - {"threshold", "min_silence_ms"}
    if unknown:
        raise wire.ProtocolError(
            wire.INVALID_EVENT, f"Unknown VAD setting '{sorted(unknown)[0][:40]}'"
        )
    config: dict[str, float] = {}
    for key, (low, high) in (
        ("threshold", THRESHOLD_RANGE),
        ("min_silence_ms", MIN_SILENCE_RANGE_MS),
    ):
        if key not in value:
            continue
        number = value[key]
        if (
            isinstance(number, bool)
            or not isinstance(number, int | float)
            or not (low <= number <= high)
        ):
            raise wire.ProtocolError(
                wire.INVALID_EVENT, f"'{key}' must be between {low} and {high}"
            )
        config[key] = float(number)
    if not config:
        raise wire.ProtocolError(wire.INVALID_EVENT, "'vad' sets nothing")
    return config
