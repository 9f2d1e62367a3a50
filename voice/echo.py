"""Echo gate: is the speech the microphone hears the person, or the assistant coming back?

The browser asks for echo cancellation, but speakers and rooms still leak the
assistant's own voice into the microphone, and a voice bot that interrupts
itself is the commonest complaint about them. The server knows exactly what
it sent and, from the browser's `playback` reports, what has been played. When
the VAD hears speech while the assistant is audible, this gate compares the
microphone's onset with the assistant audio played just before it, at every
delay up to MAX_DELAY_MS: if some delay makes them match (normalized
cross-correlation of their envelopes at or above ECHO_CORRELATION) and the
microphone is not clearly louder than that echo would be, it is echo.
Otherwise it is the person, and they barge in. Pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from voice import audio

MAX_DELAY_MS = 400.0
ECHO_CORRELATION = 0.6
# Louder than the assistant itself, by this much, is a person over the echo.
LOUDER_THAN_ECHO_DB = 6.0
ENVELOPE_MS = 10.0


@dataclass(frozen=True)
class Verdict:
    echo: bool
    correlation: float
    delay_ms: float
    mic_db: float
    reference_db: float


class PlaybackReference:
    """The assistant audio sent to the browser, by position on the playback clock.

    `played_ms` is where the browser says its playback is; the window of
    reference that can be echoing now ends there.
    """

    def __init__(self, sample_rate: int, *, keep_ms: float = 10_000.0) -> None:
        self.sample_rate = sample_rate
        self._keep = audio.ms_to_samples(keep_ms, sample_rate)
        self._samples = np.zeros(0, dtype=np.float32)
        self._start = 0  # playback-clock sample of self._samples[0]
        self.sent = 0  # samples sent so far (the end of the clock)

    def add(self, pcm16: bytes) -> None:
        samples = audio.pcm16_to_float(pcm16)
        self._samples = np.concatenate([self._samples, samples])
        self.sent += len(samples)
        excess = len(self._samples) - self._keep
        if excess > 0:
            self._samples = self._samples[excess:]
            self._start += excess

    def reset(self) -> None:
        """A new answer starts its own playback clock."""
        self._samples = np.zeros(0, dtype=np.float32)
        self._start = 0
        self.sent = 0

    def window(self, *, played_ms: float, length: int) -> np.ndarray:
        """The reference that ended at `played_ms`, `length` samples (zeros before the start)."""
        end = min(audio.ms_to_samples(played_ms, self.sample_rate), self.sent) - self._start
        begin = end - length
        out = np.zeros(length, dtype=np.float32)
        lo, hi = max(begin, 0), max(min(end, len(self._samples)), 0)
        if hi > lo:
            out[lo - begin : hi - begin] = self._samples[lo:hi]
        return out


def _envelope(samples: np.ndarray, step: int) -> np.ndarray:
    usable = len(samples) // step * step
    if usable == 0:
        return np.zeros(0, dtype=np.float32)
    frames = samples[:usable].reshape(-1, step)
    return np.sqrt(np.mean(frames * frames, axis=1) + 1e-12).astype(np.float32)


def judge(mic: np.ndarray, reference: PlaybackReference, *, played_ms: float) -> Verdict:
    """Whether `mic` (the speech onset, float32 at the reference's rate) is the assistant's echo."""
    rate = reference.sample_rate
    step = max(1, audio.ms_to_samples(ENVELOPE_MS, rate))
    max_delay = audio.ms_to_samples(MAX_DELAY_MS, rate)
    ref = reference.window(played_ms=played_ms, length=len(mic) + max_delay)
    mic_env = np.log(_envelope(mic, step))
    ref_env = np.log(_envelope(ref, step))
    mic_db, reference_db = audio.dbfs(mic), audio.dbfs(ref[-len(mic) :] if len(mic) else ref)
    best, best_lag = -1.0, 0
    n = len(mic_env)
    if n >= 4 and np.any(ref):
        centered_mic = mic_env - mic_env.mean()
        mic_norm = float(np.linalg.norm(centered_mic)) or 1e-9
        # The mic heard the reference `lag` envelope steps late.
        for lag in range(0, len(ref_env) - n + 1):
            segment = ref_env[len(ref_env) - n - lag : len(ref_env) - lag]
            centered = segment - segment.mean()
            norm = float(np.linalg.norm(centered)) or 1e-9
            correlation = float(centered_mic @ centered) / (mic_norm * norm)
            if correlation > best:
                best, best_lag = correlation, lag
    echo = best >= ECHO_CORRELATION and mic_db <= reference_db + LOUDER_THAN_ECHO_DB
    return Verdict(
        echo=echo,
        correlation=round(best, 3),
        delay_ms=round(best_lag * ENVELOPE_MS, 1),
        mic_db=round(mic_db, 1),
        reference_db=round(reference_db, 1),
    )
