"""Echo cases made at run time: the assistant's answer, its echo in a room, and a person over it.

A case is what the echo gate sees when the VAD hears speech during an answer:
the microphone's window (the answer's echo, delayed, attenuated and coloured
by a room, with a little noise, and in a barge-in case a person's voice
starting in it), the answer as sent (the reference), and the playback
position when the window's last sample was captured.

The answer plays from sample 0 of the playback clock, which is the
microphone's clock too: the echo of answer sample k reaches the microphone
at sample k + delay. Speech is espeak-ng's (bench/vad_corpus.py), at 24 kHz.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench import vad_corpus
from voice import audio

RATE = 24_000
ANSWER_DBFS = -20.0  # the assistant's answer as sent, over its speech
NOISE_BELOW_ECHO_DB = 30.0  # the room's noise, under an echo at -10 dB
WINDOW_MS = 250.0  # what the product judges at a time (VOICE_ECHO_JUDGE_MS)

ANSWERS = (
    "The weather tomorrow will be mostly sunny, with a light breeze from the west "
    "and temperatures around eighteen degrees in the afternoon.",
    "A heat pump moves warmth from the outside air into your home, a bit like a "
    "fridge working backwards, which is why it uses so little electricity.",
    "Your next meeting is at half past two with the design team, and after that "
    "you have a call with Alex about the budget for next quarter.",
    "Canberra is the capital of Australia. It was chosen as a compromise between "
    "Sydney and Melbourne, and the city was planned from scratch.",
)
ASSISTANT_VOICES = ("en-us", "en-us+f3", "en-gb+f2")
PERSON_VOICES = ("en-gb", "en-gb-scotland", "en-us+m3", "en-029", "en-gb-x-rp+f4")


@dataclass(frozen=True)
class Room:
    """The path from the speakers to the microphone: a little reverb, a low-pass, a high-pass."""

    reverb_ms: float = 120.0  # time for the tail to decay by 60 dB
    reverb_db: float = -12.0  # the tail's energy against the direct sound's
    lowpass_hz: float = 4000.0  # small speakers and the distance dull the top
    highpass_hz: float = 200.0  # and lose the bottom

    def colour(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = samples.astype(np.float64)
        if self.reverb_ms > 0:
            length = audio.ms_to_samples(self.reverb_ms, RATE)
            t = np.arange(1, length + 1) / RATE
            tail = rng.standard_normal(length) * 10 ** (-3 * t / (self.reverb_ms / 1000))
            tail *= np.sqrt(10 ** (self.reverb_db / 10) / np.sum(tail**2))
            impulse = np.concatenate([[1.0], tail])
            out = _convolve(out, impulse)[: out.size]
        out = _one_pole(out, self.lowpass_hz, low=True)
        out = _one_pole(out, self.highpass_hz, low=False)
        return out.astype(np.float32)


DRY = Room(reverb_ms=0.0, lowpass_hz=11_000.0, highpass_hz=20.0)


def _convolve(signal: np.ndarray, impulse: np.ndarray) -> np.ndarray:
    size = 1 << int(np.ceil(np.log2(signal.size + impulse.size)))
    return np.fft.irfft(np.fft.rfft(signal, size) * np.fft.rfft(impulse, size), size)


def _one_pole(samples: np.ndarray, cutoff_hz: float, *, low: bool) -> np.ndarray:
    """A one-pole low-pass (or its complement, a high-pass), as its truncated impulse response."""
    a = np.exp(-2 * np.pi * cutoff_hz / RATE)
    length = int(np.ceil(np.log(1e-6) / np.log(a))) if a > 0 else 1
    impulse = (1 - a) * a ** np.arange(max(length, 1))
    smooth = _convolve(samples, impulse)[: samples.size]
    return smooth if low else samples - smooth


def speech(text: str, voice: str, *, level_dbfs: float, speed_wpm: int = 165, pitch: int = 50):
    """espeak-ng saying `text` with `voice`, float32 at RATE, scaled to `level_dbfs`."""
    spoken = vad_corpus.speak(text, vad_corpus.Voice(voice, speed_wpm, pitch), RATE)
    return (spoken * 10 ** ((level_dbfs - audio.dbfs(spoken)) / 20)).astype(np.float32)


@dataclass
class Answer:
    """The assistant's answer as sent, and the microphone while it plays (its echo and noise)."""

    sent: np.ndarray
    mic: np.ndarray
    echo_db: float
    delay_ms: float

    def pcm16(self) -> bytes:
        return audio.float_to_pcm16(self.sent)


def play(
    sent: np.ndarray,
    *,
    echo_db: float,
    delay_ms: float,
    room: Room,
    rng: np.random.Generator,
    noise_dbfs: float | None = None,
    tail_ms: float = 1000.0,
) -> Answer:
    """The microphone while `sent` plays: its echo, `echo_db` under it and `delay_ms` late."""
    delay = audio.ms_to_samples(delay_ms, RATE)
    size = sent.size + delay + audio.ms_to_samples(tail_ms, RATE)
    mic = np.zeros(size, dtype=np.float32)
    coloured = room.colour(sent, rng)
    # `echo_db` is the echo's loudness (after the room) against the answer's.
    coloured *= 10 ** ((echo_db + audio.dbfs(sent) - audio.dbfs(coloured)) / 20)
    mic[delay : delay + sent.size] += coloured
    if noise_dbfs is None:
        noise_dbfs = ANSWER_DBFS - 10.0 - NOISE_BELOW_ECHO_DB
    mic += 10 ** (noise_dbfs / 20) * vad_corpus.noise("pink", size, RATE, rng)
    return Answer(sent=sent, mic=mic, echo_db=echo_db, delay_ms=delay_ms)


def with_person(answer: Answer, person: np.ndarray, *, at: int) -> np.ndarray:
    """The microphone with the person starting to speak at sample `at`."""
    mic = answer.mic.copy()
    end = min(mic.size, at + person.size)
    mic[at:end] += person[: end - at]
    return mic


def loud_onsets(
    answer: Answer, count: int, rng: np.random.Generator, *, window_ms: float = WINDOW_MS
) -> list[int]:
    """`count` microphone samples where a window of echo starts loud enough for a VAD to start.

    The VAD starts on speech: a window is taken where the echo's first 50 ms
    are within 10 dB of the answer's speech level (a syllable, not a pause),
    spread over the answer.
    """
    delay = audio.ms_to_samples(answer.delay_ms, RATE)
    window = audio.ms_to_samples(window_ms, RATE)
    head = audio.ms_to_samples(50.0, RATE)
    level = audio.dbfs(answer.sent)
    candidates = [
        start
        for start in range(0, answer.sent.size - window, RATE // 100)
        if audio.dbfs(answer.sent[start : start + head]) > level - 10.0
    ]
    if not candidates:
        raise ValueError("the answer has no loud enough stretch")
    spread = np.array_split(np.array(candidates), count)
    return [int(rng.choice(part)) + delay for part in spread if part.size]
