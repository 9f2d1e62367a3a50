"""A labelled speech corpus made at run time: espeak-ng talkers, silences, and noise at a set SNR.

Everything follows from a seed: the sentences, voices, speeds, pitches,
levels, silences and noise. espeak-ng (Debian's package) speaks at 22,050 Hz;
its output is resampled with voice.audio to the corpus rate. The truth of an
utterance is the span from its first to its last audible sample (espeak-ng's
own leading and trailing silence cut off); pauses between its words belong to
it, as they belong to a turn.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voice import audio

ESPEAK = "espeak-ng"
ESPEAK_RATE = 22_050
NOISE_KINDS = ("white", "pink", "babble", "hum")
SNRS_DB = (20, 10, 5, 0)
BABBLE_TALKERS = 6
HUM_HZ = 50.0

SENTENCES = (
    "Could you tell me what the weather will be like tomorrow morning?",
    "Set a timer for twelve minutes.",
    "I would like to book a table for four people at seven thirty.",
    "What is the capital of Australia?",
    "Please read my last three messages out loud.",
    "Yes.",
    "No, that is not what I meant at all.",
    "How long does it take to drive from Paris to Lyon?",
    "Remind me to call my sister when I get home.",
    "Turn the volume down a little.",
    "Explain how a heat pump works, in simple words.",
    "Okay, thanks.",
    "Which of these two laptops has the better battery?",
    "Translate good morning into Spanish and German.",
    "Play something relaxing, maybe some jazz piano.",
    "Can you summarize the meeting notes from Tuesday?",
    "Stop.",
    "Add milk, eggs and a loaf of bread to the shopping list.",
    "What time does the pharmacy on Main Street close today?",
    "Send a message to Alex saying I will be ten minutes late.",
    "Tell me a short story about a lighthouse keeper.",
    "Hmm, let me think about that for a second.",
    "Why is the sky blue during the day and red at sunset?",
    "Cancel my alarm for tomorrow.",
)
VOICES = (
    "en-us",
    "en-gb",
    "en-us+f3",
    "en-gb+f2",
    "en-gb-scotland",
    "en-us+m3",
    "en-029",
    "en-gb-x-rp+f4",
)


class EspeakMissing(RuntimeError):
    pass


@dataclass(frozen=True)
class Voice:
    name: str
    speed_wpm: int
    pitch: int


@dataclass
class Track:
    """Clean speech, its truth segments [start, stop) in samples, and what was said."""

    speech: np.ndarray
    segments: list[tuple[int, int]]
    sample_rate: int
    texts: list[str]

    @property
    def seconds(self) -> float:
        return self.speech.size / self.sample_rate

    def truth_mask(self) -> np.ndarray:
        mask = np.zeros(self.speech.size, dtype=bool)
        for start, stop in self.segments:
            mask[start:stop] = True
        return mask


def require_espeak() -> str:
    path = shutil.which(ESPEAK)
    if path is None:
        raise EspeakMissing(
            "espeak-ng is not installed: `make speech` (apt-get install espeak-ng sox)"
        )
    return path


@functools.lru_cache(maxsize=512)
def _speak_cached(text: str, voice: Voice) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "out.wav"
        subprocess.run(
            [require_espeak(), "-v", voice.name, "-s", str(voice.speed_wpm),
             "-p", str(voice.pitch), "-w", str(path), text],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        with wave.open(str(path), "rb") as wav:
            if (wav.getnchannels(), wav.getsampwidth()) != (1, 2):
                raise RuntimeError("espeak-ng wrote audio that is not mono PCM16")
            if wav.getframerate() != ESPEAK_RATE:
                raise RuntimeError(f"espeak-ng spoke at {wav.getframerate()} Hz")
            return wav.readframes(wav.getnframes())


def speak(text: str, voice: Voice, sample_rate: int) -> np.ndarray:
    """espeak-ng saying `text`, at `sample_rate`, float32, leading and trailing silence cut."""
    samples = audio.resample(
        audio.pcm16_to_float(_speak_cached(text, voice)), ESPEAK_RATE, sample_rate
    )
    return trim(samples)


def trim(samples: np.ndarray, *, relative_db: float = -50.0) -> np.ndarray:
    """Cut what lies before the first and after the last sample within `relative_db` of the peak."""
    peak = np.max(np.abs(samples)) if samples.size else 0.0
    loud = np.flatnonzero(np.abs(samples) >= peak * 10 ** (relative_db / 20)) if peak else []
    if not len(loud):
        return samples[:0]
    return samples[loud[0] : loud[-1] + 1]


def random_voice(rng: np.random.Generator) -> Voice:
    return Voice(
        name=str(rng.choice(VOICES)),
        speed_wpm=int(rng.integers(130, 200)),
        pitch=int(rng.integers(25, 75)),
    )


def make_track(
    rng: np.random.Generator,
    *,
    utterances: int,
    sample_rate: int,
    gap_s: tuple[float, float] = (0.8, 2.5),
    level_dbfs: tuple[float, float] = (-32.0, -20.0),
) -> Track:
    """`utterances` random sentences by random voices at random levels, between silences."""
    pieces: list[np.ndarray] = []
    segments, texts, position = [], [], 0
    for _ in range(utterances):
        gap = np.zeros(round(rng.uniform(*gap_s) * sample_rate), dtype=np.float32)
        text = str(rng.choice(SENTENCES))
        spoken = speak(text, random_voice(rng), sample_rate)
        spoken = spoken * 10 ** ((rng.uniform(*level_dbfs) - audio.dbfs(spoken)) / 20)
        pieces += [gap, spoken.astype(np.float32)]
        position += gap.size
        segments.append((position, position + spoken.size))
        texts.append(text)
        position += spoken.size
    pieces.append(np.zeros(round(rng.uniform(*gap_s) * sample_rate), dtype=np.float32))
    return Track(np.concatenate(pieces), segments, sample_rate, texts)


# --- noise --------------------------------------------------------------------------
def noise(kind: str, size: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """`size` samples of a kind of noise, RMS 1 (before scaling to an SNR)."""
    if kind == "white":
        samples = rng.standard_normal(size)
    elif kind == "pink":
        spectrum = np.fft.rfft(rng.standard_normal(size))
        freqs = np.fft.rfftfreq(size, 1.0 / sample_rate)
        spectrum[1:] /= np.sqrt(freqs[1:])
        spectrum[0] = 0
        samples = np.fft.irfft(spectrum, size)
    elif kind == "babble":
        samples = babble(size, sample_rate, rng)
    elif kind == "hum":
        t = np.arange(size) / sample_rate
        phases = rng.uniform(0, 2 * np.pi, 8)
        samples = sum(np.sin(2 * np.pi * HUM_HZ * k * t + phases[k - 1]) / k for k in range(1, 9))
    else:
        raise ValueError(f"unknown noise {kind!r}: one of {NOISE_KINDS}")
    return (samples / audio.rms(samples)).astype(np.float32)


def babble(size: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """BABBLE_TALKERS other espeak-ng talkers, each talking on and on, at equal levels."""
    total = np.zeros(size)
    for _ in range(BABBLE_TALKERS):
        voice, pieces, length = random_voice(rng), [], 0
        while length < size:
            spoken = speak(str(rng.choice(SENTENCES)), voice, sample_rate)
            pause = np.zeros(round(rng.uniform(0.05, 0.3) * sample_rate), dtype=np.float32)
            pieces += [spoken, pause]
            length += spoken.size + pause.size
        talker = np.concatenate(pieces)
        offset = int(rng.integers(0, talker.size - size + 1))
        talker = talker[offset : offset + size]
        total += talker / max(audio.rms(talker), 1e-9)
    return total


def mix(track: Track, kind: str | None, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """The track with noise whose power is `snr_db` below the speech's (measured over speech)."""
    if kind is None:
        return track.speech.copy()
    speech_power = audio.rms(track.speech[track.truth_mask()]) ** 2
    scale = np.sqrt(speech_power / 10 ** (snr_db / 10))
    mixed = track.speech + scale * noise(kind, track.speech.size, track.sample_rate, rng)
    return np.clip(mixed, -1.0, 1.0).astype(np.float32)
