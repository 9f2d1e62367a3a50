"""Echo gate: is the speech the microphone hears the person, or the assistant coming back?

The browser asks for echo cancellation, but speakers and rooms still leak the
assistant's own voice into the microphone, and a voice bot that interrupts
itself is the commonest complaint about them. The server knows exactly what
it sent and, from the browser's `playback` reports, what has been played.

When the VAD hears speech while the assistant is audible, `judge` takes the
microphone's window and the assistant audio played up to then, as power
spectra (20 ms frames every 10 ms), and:

1. finds the delay (from PLAYED_SLACK_MS early, for reports that run ahead,
   to MAX_DELAY_MS late) at which the two agree best: the correlation of
   their log energies in BANDS bands over time, each band's mean removed so
   that a room's colouring does not matter;
2. predicts the echo at that delay: the reference's spectrum with a reverb
   tail (each bin decays by at most REVERB_DECAY_DB_PER_FRAME), times a gain
   per band (least squares, so the reference's strongest bins weigh most);
3. measures what the echo does not explain: the microphone's energy above
   ECHO_MARGIN_DB over the prediction, as a share of all its energy. An echo
   leaves little (its bins follow the reference's); a person talking over it
   brings harmonics and syllables of their own.

It is echo when the residual is at most MAX_RESIDUAL and the correlation at
least MIN_CORRELATION. Pure numpy, about a millisecond a judgement.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from voice import audio

# The echo's delay behind the playback position, at most (the browser's output
# buffering plus the room); also how long an answer can still be heard after its end.
MAX_DELAY_MS = 400.0
# How far ahead of the truth a played position may be (reports come ~100 ms apart
# and are extrapolated): the echo may seem this much early.
PLAYED_SLACK_MS = 150.0
FRAME_MS = 20.0
HOP_MS = 10.0
LOW_HZ, HIGH_HZ = 150.0, 7000.0
BANDS = 16
REVERB_DECAY_DB_PER_FRAME = 5.0  # 60 dB in 120 ms: a small room
REVERB_FRAMES = 12
ECHO_MARGIN_DB = 3.0
MAX_RESIDUAL = 0.2
MIN_CORRELATION = 0.5
MIN_FRAMES = 4  # shorter windows are judged by level alone
_FLOOR = 1e-10


@dataclass(frozen=True)
class Verdict:
    echo: bool
    correlation: float  # best band-energy correlation with the reference (-1..1)
    delay_ms: float  # the echo's delay behind played_ms at that correlation
    mic_db: float
    reference_db: float  # the reference over the matched stretch, as sent
    residual: float = 1.0  # share of the microphone's energy the echo does not explain


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


@cache
def _analysis(sample_rate: int) -> tuple[int, int, int, np.ndarray, np.ndarray, np.ndarray]:
    """(frame, hop, fft size, window, kept bins, bins x bands one-hot) for a rate."""
    frame = audio.ms_to_samples(FRAME_MS, sample_rate)
    hop = audio.ms_to_samples(HOP_MS, sample_rate)
    size = 1 << int(np.ceil(np.log2(frame)))
    freqs = np.fft.rfftfreq(size, 1.0 / sample_rate)
    kept = np.flatnonzero((freqs >= LOW_HZ) & (freqs <= min(HIGH_HZ, sample_rate / 2)))
    edges = np.geomspace(LOW_HZ, min(HIGH_HZ, sample_rate / 2), BANDS + 1)
    band = np.clip(np.searchsorted(edges, freqs[kept]) - 1, 0, BANDS - 1)
    onehot = np.zeros((kept.size, BANDS))
    onehot[np.arange(kept.size), band] = 1.0
    return frame, hop, size, np.hanning(frame), kept, onehot


def _power(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Power spectrum of each frame (frames x kept bins)."""
    frame, hop, size, window, kept, _ = _analysis(sample_rate)
    count = (samples.size - frame) // hop + 1
    if count <= 0:
        return np.zeros((0, kept.size))
    frames = np.lib.stride_tricks.sliding_window_view(samples, frame)[::hop][:count]
    spectrum = np.fft.rfft(frames * window, size)[:, kept]
    return spectrum.real**2 + spectrum.imag**2


def judge(mic: np.ndarray, reference: PlaybackReference, *, played_ms: float) -> Verdict:
    """Whether `mic` (the speech, float32 at the reference's rate) is the assistant's echo.

    `played_ms` is the playback position when the microphone's last sample
    was captured; the echo of what played then arrives up to MAX_DELAY_MS later.
    """
    rate = reference.sample_rate
    mic = np.asarray(mic, dtype=np.float32)
    slack = audio.ms_to_samples(PLAYED_SLACK_MS, rate)
    max_delay = audio.ms_to_samples(MAX_DELAY_MS, rate)
    ref = reference.window(
        played_ms=played_ms + PLAYED_SLACK_MS, length=mic.size + max_delay + slack
    )
    mic_db = audio.dbfs(mic)
    mic_power, ref_power = _power(mic, rate), _power(ref, rate)
    frames = mic_power.shape[0]
    if not np.any(ref):
        return Verdict(False, 0.0, 0.0, round(mic_db, 1), audio.SILENCE_DBFS)
    if frames < MIN_FRAMES:
        # Too short to compare: echo unless louder than the assistant itself.
        reference_db = audio.dbfs(ref[max_delay + slack :] if mic.size else ref)
        return Verdict(mic_db <= reference_db, 0.0, 0.0, round(mic_db, 1), round(reference_db, 1))
    _, hop, _, _, _, onehot = _analysis(rate)

    # 1. The delay: band log-energies correlated over time, each band's mean removed.
    mic_bands = np.log(mic_power @ onehot + _FLOOR)
    mic_bands -= mic_bands.mean(axis=0)
    ref_bands = np.log(ref_power @ onehot + _FLOOR)
    candidates = np.lib.stride_tricks.sliding_window_view(ref_bands, frames, axis=0)
    candidates = candidates - candidates.mean(axis=2, keepdims=True)  # lags x bands x frames
    products = np.einsum("lbt,tb->l", candidates, mic_bands)
    norms = np.linalg.norm(candidates, axis=(1, 2)) * np.linalg.norm(mic_bands)
    correlations = products / np.maximum(norms, 1e-12)
    start = int(np.argmax(correlations))
    correlation = float(correlations[start])
    # Reference sample start * hop lines up with the microphone's first sample.
    lag = ref.size - mic.size - slack - start * hop

    # 2. The echo predicted there: the reference with a reverb tail, a gain per band.
    decay = 10 ** (-REVERB_DECAY_DB_PER_FRAME / 10)
    # Older frames have decayed by 60 dB: REVERB_FRAMES is enough of the past.
    first = max(start - REVERB_FRAMES, 0)
    tail = ref_power[first : start + frames].copy()
    for t in range(1, tail.shape[0]):
        np.maximum(tail[t], decay * tail[t - 1], out=tail[t])
    aligned = tail[start - first :]
    # Least squares weighs the reference's strong bins most: where the echo is surest.
    gains = ((mic_power * aligned).sum(axis=0) @ onehot) / np.maximum(
        (aligned * aligned).sum(axis=0) @ onehot, _FLOOR
    )
    echo_power = aligned * (onehot @ gains)

    # 3. What the echo leaves unexplained.
    margin = 10 ** (ECHO_MARGIN_DB / 10)
    residual = float(
        np.maximum(mic_power - margin * echo_power, 0.0).sum() / max(mic_power.sum(), _FLOOR)
    )
    reference_db = audio.dbfs(ref[start * hop : start * hop + mic.size])
    return Verdict(
        echo=residual <= MAX_RESIDUAL and correlation >= MIN_CORRELATION,
        correlation=round(correlation, 3),
        delay_ms=round(audio.samples_to_ms(lag, rate), 1),
        mic_db=round(mic_db, 1),
        reference_db=round(reference_db, 1),
        residual=round(residual, 3),
    )
