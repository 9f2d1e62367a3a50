"""The audio side of fakeai's Realtime endpoint: a voice to speak with and an ear.

The voice is one recording ("the tape") that every answer loops over, paced by
a fixed time per word. It is real speech from `espeak-ng` when that is
installed, so echo and VAD tests downstream hear something voice-like, and
else a tone that rises and falls like syllables. The ear is a plain energy
gate, enough to play the server's VAD when a client asks for it.

All audio is PCM16 mono little-endian at 24 kHz, the Realtime API's only PCM format.
"""

from __future__ import annotations

import asyncio
import io
import logging
import shutil
import wave
from dataclasses import dataclass

import numpy as np

log = logging.getLogger("fakeai")

RATE = 24_000
BYTES_PER_MS = RATE * 2 // 1000  # 48
TAPE_TEXT = "alpha bravo charlie delta echo foxtrot golf hotel india juliett"
_TONE_SECONDS_PER_WORD = 0.35
_ESPEAK_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Tape:
    """The voice: PCM16 audio looped by every answer, and how long a word takes."""

    pcm: bytes
    seconds_per_word: float
    source: str  # "espeak-ng" or "tone"

    def audio(self, start_byte: int, length: int) -> bytes:
        """`length` bytes of the looped tape from `start_byte` (both even)."""
        out = bytearray()
        size = len(self.pcm)
        position = start_byte % size
        while len(out) < length:
            piece = self.pcm[position : position + length - len(out)]
            out += piece
            position = (position + len(piece)) % size
        return bytes(out)


def duration_ms(pcm_bytes: int) -> float:
    """Milliseconds of PCM16 24 kHz audio in `pcm_bytes` bytes."""
    return pcm_bytes / BYTES_PER_MS


def tone_tape() -> Tape:
    """A 220 Hz voice-band tone, loud for 0.25 s of every 0.35 s word, like syllables."""
    samples = int(RATE * _TONE_SECONDS_PER_WORD * len(TAPE_TEXT.split()))
    t = np.arange(samples) / RATE
    phase = (t % _TONE_SECONDS_PER_WORD) / 0.25
    envelope = np.where(phase < 1.0, np.sin(np.pi * np.minimum(phase, 1.0)), 0.0)
    wave_ = 0.6 * np.sin(2 * np.pi * 220 * t) + 0.3 * np.sin(2 * np.pi * 440 * t)
    pcm = (0.5 * envelope * wave_ * 32767).astype("<i2").tobytes()
    return Tape(pcm=pcm, seconds_per_word=_TONE_SECONDS_PER_WORD, source="tone")


def resample(pcm: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Linear-interpolation resampling (good enough for a test voice)."""
    if rate_in == rate_out or len(pcm) == 0:
        return pcm
    count = round(len(pcm) * rate_out / rate_in)
    positions = np.arange(count) * (rate_in / rate_out)
    return np.interp(positions, np.arange(len(pcm)), pcm)


def tape_from_wav(data: bytes, words: int) -> Tape:
    """A tape from espeak-ng's WAV output (its header's length is bogus on stdout)."""
    with wave.open(io.BytesIO(data)) as reader:
        if reader.getsampwidth() != 2 or reader.getnchannels() != 1:
            raise ValueError("expected 16-bit mono WAV")
        rate = reader.getframerate()
        frames = reader.readframes(reader.getnframes())
    samples = np.frombuffer(frames[: len(frames) // 2 * 2], dtype="<i2").astype(np.float64)
    samples = resample(samples, rate, RATE)
    pcm = np.clip(np.round(samples), -32768, 32767).astype("<i2").tobytes()
    if not pcm:
        raise ValueError("espeak-ng produced no audio")
    return Tape(pcm=pcm, seconds_per_word=duration_ms(len(pcm)) / 1000 / words, source="espeak-ng")


async def _render_espeak(text: str) -> Tape | None:
    executable = shutil.which("espeak-ng")
    if executable is None:
        return None
    try:
        process = await asyncio.create_subprocess_exec(
            executable, "--stdout", "-v", "en-us", text,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        async with asyncio.timeout(_ESPEAK_TIMEOUT_S):
            data, _ = await process.communicate()
        return tape_from_wav(data, len(text.split()))
    except (OSError, ValueError, EOFError, wave.Error, TimeoutError) as exc:
        log.warning("espeak-ng failed (%s); fakeai speaks with a tone", exc)
        return None


_tape: Tape | None = None
_tape_lock: asyncio.Lock | None = None


async def load_tape() -> Tape:
    """The process's voice, rendered once (espeak-ng if installed, else a tone)."""
    global _tape, _tape_lock
    if _tape is None:
        if _tape_lock is None:
            _tape_lock = asyncio.Lock()
        async with _tape_lock:
            if _tape is None:
                _tape = await _render_espeak(TAPE_TEXT) or tone_tape()
    return _tape


class EnergyGate:
    """A server VAD stand-in: speech is any 10 ms frame louder than `threshold` / 10 full scale.

    Speech starts on the first loud frame and stops after `silence_ms` of quiet
    frames. Times are milliseconds of audio fed so far (the session's timeline).
    """

    FRAME_BYTES = 10 * BYTES_PER_MS

    def __init__(self, *, threshold: float, silence_ms: int, prefix_padding_ms: int) -> None:
        self.level = max(threshold, 0.0) / 10 * 32768
        self.silence_ms = silence_ms
        self.prefix_padding_ms = prefix_padding_ms
        self.fed_ms = 0
        self.in_speech = False
        self._quiet_ms = 0
        self._pending = b""

    def feed(self, pcm: bytes) -> list[tuple[str, int]]:
        """Feed audio; return ("started", audio_start_ms) / ("stopped", audio_end_ms) events."""
        data = self._pending + pcm
        whole = len(data) - len(data) % self.FRAME_BYTES
        self._pending = data[whole:]
        if not whole:
            return []
        frames = np.frombuffer(data[:whole], dtype="<i2").astype(np.float64)
        rms = np.sqrt(np.mean(frames.reshape(-1, self.FRAME_BYTES // 2) ** 2, axis=1))
        events: list[tuple[str, int]] = []
        for loud in rms > self.level:
            self.fed_ms += 10
            if loud:
                self._quiet_ms = 0
                if not self.in_speech:
                    self.in_speech = True
                    start = self.fed_ms - 10 - self.prefix_padding_ms
                    events.append(("started", max(start, 0)))
            elif self.in_speech:
                self._quiet_ms += 10
                if self._quiet_ms >= self.silence_ms:
                    self.in_speech = False
                    self._quiet_ms = 0
                    events.append(("stopped", self.fed_ms))
        return events
