"""Voice activity detection: when a person starts and stops speaking, on the audio's own clock.

One detector, several backends. A backend scores fixed frames of audio at its
own rate (0: silence, 1: speech); the detector does everything else the same
way for all of them: framing chunks of any size, resampling for the backend,
hysteresis, minimum speech and silence counted in samples (never the wall
clock), event times in samples, and the utterance's audio with its pre-roll.

    detector = VoiceActivityDetector(sample_rate=24_000, config=VadConfig(backend="foreground"))
    for event in detector.process(pcm16_bytes):   # any chunk size, bytes or float32
        ...                                        # VadEvent(type, sample, at_ms, audio)
    detector.flush()                               # end of stream: closes an open utterance

Backends: `energy` (numpy: band energy above an adaptive noise floor),
`silero` (Silero VAD's ONNX model from the silero-vad wheel, run with
onnxruntime; the wheel is installed without its torch dependency) and
`foreground` (the default: silero, gated by the level over a background of
other voices, so a room's talk is not taken for the person's).
Pure numpy (and onnxruntime for silero): nothing here imports Django.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from typing import Protocol

import numpy as np

from voice import audio

SPEECH_STARTED = "speech_started"
SPEECH_STOPPED = "speech_stopped"


@dataclass(frozen=True)
class VadConfig:
    """The tunables, with the defaults of the VAD_* settings (README's configuration table)."""

    backend: str = "foreground"  # VAD_BACKEND: "foreground", "silero" or "energy"
    threshold: float = 0.5  # VAD_THRESHOLD: frame speech score (0-1) that starts speech
    min_speech_ms: float = 100.0  # VAD_MIN_SPEECH_MS: speech this long before speech_started
    min_silence_ms: float = 500.0  # VAD_MIN_SILENCE_MS: silence this long before speech_stopped
    prefix_padding_ms: float = 300.0  # VAD_PREFIX_PADDING_MS: audio kept before the start
    # VAD_FOREGROUND_MARGIN_DB: in a room of voices, how far above their steady level the
    # person must be (the foreground backend only).
    foreground_margin_db: float = 5.0
    # An utterance's audio keeps at most its latest this-long: memory per session stays
    # bounded (about twice this, at the input rate) however long a noisy room "speaks".
    max_utterance_ms: float = 30_000.0

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"VAD threshold must be in (0, 1], not {self.threshold}")
        names = ("min_speech_ms", "min_silence_ms", "prefix_padding_ms", "max_utterance_ms")
        for name in (*names, "foreground_margin_db"):
            if getattr(self, name) < 0:
                raise ValueError(f"VAD {name} must not be negative")


@dataclass(frozen=True, eq=False)
class VadEvent:
    """`speech_started` or `speech_stopped` at input sample `sample` (ms: `at_ms`).

    A start is the first sample of the first speech frame; a stop, the first
    sample after the last one. A stop carries the utterance's audio (float32 at
    the input rate) from `audio_start_sample`: the start minus the pre-roll.
    """

    type: str
    sample: int
    sample_rate: int
    audio: np.ndarray | None = field(default=None, repr=False)
    audio_start_sample: int | None = None

    @property
    def at_ms(self) -> float:
        return audio.samples_to_ms(self.sample, self.sample_rate)


class VadBackendUnavailable(RuntimeError):
    """The backend's package or model file is not installed."""


class Backend(Protocol):
    """Scores frames of `frame_samples` samples at `sample_rate`; keeps its own state."""

    sample_rate: int
    frame_samples: int

    def scores(self, frames: np.ndarray) -> np.ndarray:
        """Speech scores in [0, 1], one per row of `frames` (consecutive frames, in order)."""
        ...


class VoiceActivityDetector:
    """Turns audio chunks of any size into `speech_started` / `speech_stopped` events.

    A frame scoring at least `threshold` is speech; once speech has begun, a
    frame stays speech down to `threshold - HYSTERESIS` (or half the threshold,
    if higher: never zero, so an utterance always can end). A run of speech
    frames lasting `min_speech_ms` starts an utterance (dated from the run's
    first frame); a run of other frames lasting `min_silence_ms` ends it (dated
    from that run's first frame). Events come out when they are certain: a
    start `min_speech_ms` after its date, a stop `min_silence_ms` after its
    date, each rounded up to whole backend frames (10 ms for energy, 32 ms for
    silero and foreground), plus the resampler's ~2 ms lookahead when the backend resamples.
    """

    HYSTERESIS = 0.15

    def __init__(
        self,
        *,
        sample_rate: int,
        config: VadConfig | None = None,
        backend: Backend | None = None,
    ) -> None:
        self.config = config or VadConfig()
        self.sample_rate = sample_rate
        self.backend = backend or make_backend(self.config.backend, sample_rate, self.config)
        rate = self.backend.sample_rate
        self._resampler = None if rate == sample_rate else audio.Resampler(sample_rate, rate)
        self._frame = self.backend.frame_samples
        # Input samples per backend frame, when whole (16, 24, 48 kHz): dates without rounding.
        whole = self._frame * sample_rate % rate == 0
        self._step = self._frame * sample_rate // rate if whole else 0
        self._pending = np.zeros(0, dtype=np.float32)  # backend-rate samples not yet framed
        self._frames_scored = 0
        self._enter = self.config.threshold
        self._exit = max(self.config.threshold - self.HYSTERESIS, self.config.threshold / 2)
        self._min_speech = audio.ms_to_samples(self.config.min_speech_ms, sample_rate)
        self._min_silence = audio.ms_to_samples(self.config.min_silence_ms, sample_rate)
        self._preroll = audio.ms_to_samples(self.config.prefix_padding_ms, sample_rate)
        self._max_audio = audio.ms_to_samples(self.config.max_utterance_ms, sample_rate)
        self._tape = _Tape()  # the input kept for utterances
        self.speaking = False
        # The current run of frames that may change the state (speech while silent,
        # silence while speaking): its first frame and the input sample it starts at.
        self._run_frame: int | None = None
        self._run_start = 0
        self._utterance_start = 0

    # --- feeding --------------------------------------------------------------------
    def process(self, chunk: bytes | np.ndarray) -> list[VadEvent]:
        """Feed the next chunk (PCM16 bytes, int16 or float samples); returns its events."""
        samples = audio.as_float(chunk)
        self._tape.append(samples)
        if self._resampler is not None:
            samples = self._resampler.process(samples)
        return self._score(samples, final=False)

    def flush(self) -> list[VadEvent]:
        """End of stream: score what is buffered (padded with silence) and close an utterance."""
        tail = self._resampler.flush() if self._resampler is not None else np.zeros(0)
        events = self._score(tail.astype(np.float32), final=True)
        if self.speaking:
            end = self._tape.end
            stop = self._run_start if self._run_frame is not None else end
            events.append(self._stopped(min(stop, end)))
        return events

    # --- internals ------------------------------------------------------------------
    def _score(self, samples: np.ndarray, *, final: bool) -> list[VadEvent]:
        pending = np.concatenate((self._pending, samples)) if self._pending.size else samples
        if final and pending.size % self._frame:
            pad = self._frame - pending.size % self._frame
            pending = np.concatenate((pending, np.zeros(pad, dtype=np.float32)))
        count = pending.size // self._frame
        self._pending = pending[count * self._frame :].copy()
        if not count:
            return []
        scores = self.backend.scores(pending[: count * self._frame].reshape(count, self._frame))
        first = self._frames_scored
        self._frames_scored += count
        events = self._decide(np.asarray(scores), first)
        self._trim_tape()
        return events

    def _frame_start(self, index: int) -> int:
        """Input sample where backend frame `index` starts."""
        if self._step:
            return index * self._step
        return round(index * self._frame * self.sample_rate / self.backend.sample_rate)

    def _frame_reaching(self, run_frame: int, run_start: int, length: int) -> int:
        """The first frame from `run_frame` on whose end is `length` samples past `run_start`."""
        if self._step:  # run_start is run_frame's start
            return run_frame + max(1, -(-length // self._step)) - 1
        per_frame = self._frame * self.sample_rate / self.backend.sample_rate
        frame = max(run_frame, run_frame + math.ceil(length / per_frame) - 1)
        while self._frame_start(frame + 1) - run_start < length:
            frame += 1
        while frame > run_frame and self._frame_start(frame) - run_start >= length:
            frame -= 1
        return frame

    def _decide(self, scores: np.ndarray, first: int) -> list[VadEvent]:
        """Apply the rules to frames first, first + 1, ...: jumps from one change to the next."""
        events: list[VadEvent] = []
        # Most chunks: no run under way, and every frame keeps to the current side.
        steady = scores.min() >= self._exit if self.speaking else scores.max() < self._enter
        if self._run_frame is None and steady:
            return events
        voiced = scores >= self._exit
        # Indices of the frames where each kind of run may begin or break.
        entering = np.flatnonzero(scores >= self._enter).tolist()
        above = np.flatnonzero(voiced).tolist()
        below = np.flatnonzero(~voiced).tolist()
        count, k = scores.size, 0
        while k < count:
            if self._run_frame is None:
                # The next frame that may begin a run.
                found = _next(below if self.speaking else entering, k)
                if found is None:
                    break
                k = found
                self._run_frame = first + k
                self._run_start = self._frame_start(first + k)
            # The run goes on while frames keep to its side of the exit threshold.
            broken = _next(above if self.speaking else below, k)
            end = count if broken is None else broken  # the first frame off the run
            length = self._min_silence if self.speaking else self._min_speech
            reached = self._frame_reaching(self._run_frame, self._run_start, length) - first
            if reached < end:
                if self.speaking:
                    events.append(self._stopped(self._run_start))
                else:
                    events.append(self._started(self._run_start))
                self._run_frame = None
                k = reached + 1
            elif broken is not None:
                self._run_frame = None
                k = end if self.speaking else end + 1  # a frame below exit cannot start speech
            else:
                break
        return events

    def _started(self, sample: int) -> VadEvent:
        self.speaking = True
        self._utterance_start = sample
        return VadEvent(SPEECH_STARTED, sample, self.sample_rate)

    def _stopped(self, sample: int) -> VadEvent:
        self.speaking = False
        begin = max(0, self._utterance_start - self._preroll, sample - self._max_audio)
        begin = max(begin, self._tape.start)
        utterance = self._tape.read(begin, sample)
        return VadEvent(SPEECH_STOPPED, sample, self.sample_rate, utterance, begin)

    def _trim_tape(self) -> None:
        """Keep only the input an utterance may still need."""
        if self.speaking:
            # Its start minus the pre-roll, or its latest max_utterance_ms before a stop
            # that may be dated up to min_silence_ms back (and a second to spare).
            needed = max(
                self._utterance_start - self._preroll,
                self._tape.end - self._max_audio - self._min_silence - self.sample_rate,
            )
        else:
            earliest = self._run_start if self._run_frame is not None else None
            if earliest is None:
                earliest = self._frame_start(self._frames_scored)
            needed = earliest - self._preroll
        self._tape.drop_before(needed)


class _Tape:
    """The latest input samples, from input sample `start` to `end`, in a reused array."""

    def __init__(self) -> None:
        self._data = np.empty(1 << 16, dtype=np.float32)
        self._first = 0  # index in _data of sample `start`
        self._size = 0
        self.start = 0

    @property
    def end(self) -> int:
        return self.start + self._size

    def append(self, samples: np.ndarray) -> None:
        needed = self._size + samples.size
        if self._first + needed > self._data.size:
            if needed > self._data.size // 2:  # grow, or just slide back to the front
                grown = np.empty(max(2 * self._data.size, 2 * needed), dtype=np.float32)
                grown[: self._size] = self._data[self._first : self._first + self._size]
                self._data = grown
            else:
                self._data[: self._size] = self._data[self._first : self._first + self._size]
            self._first = 0
        self._data[self._first + self._size : self._first + needed] = samples
        self._size = needed

    def drop_before(self, sample: int) -> None:
        drop = min(max(0, sample - self.start), self._size)
        self._first += drop
        self._size -= drop
        self.start += drop

    def read(self, begin: int, end: int) -> np.ndarray:
        """A copy of input samples [begin, end), clipped to what is kept."""
        begin, end = max(begin, self.start), min(end, self.end)
        return self._data[self._first + begin - self.start : self._first + end - self.start].copy()


def _next(indices: list[int], at: int) -> int | None:
    """The first of the sorted `indices` at or after `at`."""
    position = bisect.bisect_left(indices, at)
    return indices[position] if position < len(indices) else None


BACKENDS = ("foreground", "silero", "energy")


def make_backend(name: str, sample_rate: int, config: VadConfig | None = None) -> Backend:
    """A backend by its VAD_BACKEND name, for audio arriving at `sample_rate`."""
    config = config or VadConfig()
    if name == "foreground":
        return ForegroundBackend(margin_db=config.foreground_margin_db)
    if name == "energy":
        return EnergyBackend(sample_rate)
    if name == "silero":
        return SileroBackend()
    raise ValueError(f"unknown VAD backend {name!r}: use one of {', '.join(BACKENDS)}")


class _BandPower:
    """Each frame's power between `band_hz` under a Hann window (1.0: a full-scale sine)."""

    def __init__(self, frame_samples: int, sample_rate: int, band_hz: tuple[float, float]) -> None:
        freqs = np.fft.rfftfreq(frame_samples, 1.0 / sample_rate)
        low, high = band_hz
        self._band = slice(int(np.searchsorted(freqs, low)), int(np.searchsorted(freqs, high)))
        window = np.hanning(frame_samples)
        # |rfft|^2 of a full-scale sine's band bins sums to this: folded into the window.
        norm = float(np.sum(window**2)) * frame_samples / 2
        self._window = (window / math.sqrt(norm)).astype(np.float32)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        # pocketfft: one thread, steady cost (a BLAS product of the band's bins is cheaper
        # alone but spawns threads that contend with everything else on a busy server).
        spectrum = np.fft.rfft(frames * self._window, axis=1)[:, self._band]
        parts = spectrum.view(np.float32)  # real and imaginary parts side by side
        return np.einsum("ij,ij->i", parts, parts).astype(np.float64) + 1e-12


# --- energy -------------------------------------------------------------------------
class EnergyBackend:
    """Speech-band energy above an adaptive noise floor, in 10 ms frames at the input rate.

    The power between BAND_HZ (voices, without mains hum or rumble) is
    averaged over LEVEL_MS for the frame's level, and over FLOOR_LEVEL_MS for
    the noise floor, which follows that slower level down at once and up by at
    most FLOOR_RISE_DB_PER_S: it tracks the quietest recent level, and an
    utterance barely lifts it (its pauses pull it back). The score is the
    level's height above the floor over SCORE_SPAN_DB (the default threshold
    0.5 enters speech 3 dB above the floor, and the hysteresis leaves it below
    2.1 dB); it is zero below MIN_LEVEL_DBFS, so near-silence is never speech.
    A start shows in its first frame; the average holds a sharp stop up to
    LEVEL_MS - FRAME_MS late (a gradual one, as most voices end, much less).

    A level cannot tell a voice from other voices: in babble (several people
    talking around) this backend takes the babble for speech (silero too, once
    the babble is within 10 dB of the person: docs/benchmarks.md).
    """

    FRAME_MS = 10
    BAND_HZ = (200.0, 4000.0)
    LEVEL_MS = 50
    FLOOR_LEVEL_MS = 100
    FLOOR_RISE_DB_PER_S = 3.0
    SCORE_SPAN_DB = 6.0
    MIN_LEVEL_DBFS = -65.0

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.frame_samples = sample_rate * self.FRAME_MS // 1000
        self.band_power = _BandPower(self.frame_samples, sample_rate, self.BAND_HZ)
        self._rise = self.FLOOR_RISE_DB_PER_S * self.FRAME_MS / 1000
        self._averages = _MovingAverages(
            self.LEVEL_MS // self.FRAME_MS, self.FLOOR_LEVEL_MS // self.FRAME_MS
        )
        self.floor_db: float | None = None
        self._steps = np.zeros(0)  # rise * 0, 1, 2, ...: the floor's tilt

    def scores(self, frames: np.ndarray) -> np.ndarray:
        power = self.band_power(frames)
        level_power, floor_power = self._averages(power)
        level = 10.0 * np.log10(level_power)
        floor = self._track_floor(10.0 * np.log10(floor_power))
        score = np.clip((level - floor) / self.SCORE_SPAN_DB, 0.0, 1.0)
        score[level < self.MIN_LEVEL_DBFS] = 0.0
        return score

    def _track_floor(self, level: np.ndarray) -> np.ndarray:
        """floor[k] = min(level[k], floor[k-1] + rise), vectorized: a running minimum of
        the levels tilted down by the rise, tilted back up."""
        if self._steps.size < level.size:
            self._steps = self._rise * np.arange(max(level.size, 2 * self._steps.size))
        steps = self._steps[: level.size]
        tilted = np.minimum.accumulate(level - steps)
        if self.floor_db is not None:
            np.minimum(tilted, self.floor_db + self._rise, out=tilted)
        floor = tilted + steps
        self.floor_db = float(floor[-1])
        return floor


class _MovingAverages:
    """The means of the last `widths` values, value by value, across calls."""

    def __init__(self, *widths: int) -> None:
        self.widths = widths
        self._keep = max(widths)
        self._tail: np.ndarray | None = None  # the previous values the widest mean needs

    def __call__(self, values: np.ndarray) -> list[np.ndarray]:
        if self._tail is None:  # the stream's start: as if its first value had lasted
            self._tail = np.full(self._keep, values[0])
        joined = np.concatenate((self._tail, values))
        self._tail = joined[values.size :]
        # The mean of the `width` values up to joined[keep + i], from running sums (the
        # tail's oldest value is in no mean: it gives the widest its left end).
        sums = np.cumsum(joined)
        keep, size = self._keep, values.size
        return [
            (sums[keep:] - sums[keep - width : keep - width + size]) / width
            for width in self.widths
        ]


# --- silero -------------------------------------------------------------------------
class SileroBackend:
    """Silero VAD (v6, ONNX) on 512-sample windows at 16 kHz, its recurrent state kept.

    One InferenceSession per process is shared (run() is thread-safe), one
    thread each; each detector keeps its own recurrent state and context.
    """

    sample_rate = 16_000
    frame_samples = 512
    CONTEXT_SAMPLES = 64  # the model sees the previous window's last 64 samples too
    MODEL_FILE = "silero_vad_16k_op15.onnx"  # the 16 kHz graph: the same scores, faster

    def __init__(self) -> None:
        self._session = _silero_session(self.MODEL_FILE)
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._context = np.zeros(self.CONTEXT_SAMPLES, dtype=np.float32)
        self._sr = np.array(self.sample_rate, dtype=np.int64)

    def scores(self, frames: np.ndarray) -> np.ndarray:
        out = np.empty(len(frames), dtype=np.float32)
        window = np.empty((1, self.CONTEXT_SAMPLES + self.frame_samples), dtype=np.float32)
        for index, frame in enumerate(frames):
            window[0, : self.CONTEXT_SAMPLES] = self._context
            window[0, self.CONTEXT_SAMPLES :] = frame
            probability, self._state = self._session.run(
                None, {"input": window, "state": self._state, "sr": self._sr}
            )
            out[index] = probability[0, 0]
            self._context = frame[-self.CONTEXT_SAMPLES :].copy()
        return out


# --- foreground -----------------------------------------------------------------------
class ForegroundBackend:
    """Silero's speech probability, kept only where the voice stands out of a voice bed.

    Other people talking around (babble) are voices to silero too. What sets the
    person apart is that they are much louder than the babble's steady level and
    come and go. So the backend keeps the recent speech-band levels of silero's
    windows: the background is their BACKGROUND_PERCENTILE over BACKGROUND_S,
    and the bed is voices when silero's mean probability over the quietest
    BED_PERCENTILE of the windows of the last BED_S stays above BED_VOICE (over
    a steady noise or silence it is near 0: those windows are the pauses). Over
    a voice bed a window scores at most its gate: 0.5 (the default threshold)
    where its level, averaged over LEVEL_WINDOWS, is `margin_db` above the
    background, 0 to 1 over GATE_SPAN_DB around that. Elsewhere the score is
    silero's. The statistics are updated every UPDATE_WINDOWS windows of the
    stream (never by chunk), so events do not depend on chunking, and no bed is
    called before BACKGROUND_S has been heard (a room's first seconds are
    speech). Levels are measured only when needed: at an update, or over a bed.
    """

    sample_rate = SileroBackend.sample_rate
    frame_samples = SileroBackend.frame_samples
    BAND_HZ = EnergyBackend.BAND_HZ
    LEVEL_WINDOWS = 5  # 160 ms
    BACKGROUND_S = 3.0
    BACKGROUND_PERCENTILE = 20.0
    BED_S = 10.0
    BED_PERCENTILE = 20.0
    BED_VOICE = 0.5
    GATE_SPAN_DB = 6.0
    UPDATE_WINDOWS = 8  # 256 ms

    def __init__(self, *, margin_db: float = 5.0, voice: Backend | None = None) -> None:
        self.margin_db = margin_db
        self._voice = voice or SileroBackend()  # the probabilities (tests script them)
        self._power = _BandPower(self.frame_samples, self.sample_rate, self.BAND_HZ)
        self._kernel = np.full(self.LEVEL_WINDOWS, 1.0 / self.LEVEL_WINDOWS)
        window_s = self.frame_samples / self.sample_rate
        self._background_windows = round(self.BACKGROUND_S / window_s)
        self._bed_windows = round(self.BED_S / window_s)
        self._keep = max(self._background_windows, self._bed_windows)
        # The latest windows' band powers and probabilities (oldest first), and the
        # windows not measured yet: measured together when they are needed.
        self._powers = np.zeros(0)
        self._probabilities = np.zeros(0, dtype=np.float32)
        self._unmeasured: list[tuple[np.ndarray, np.ndarray]] = []
        self._windows = 0  # scored so far
        self.background_db = -math.inf
        self.voice_bed = False

    def scores(self, frames: np.ndarray) -> np.ndarray:
        probability = self._voice.scores(frames)
        count, first = len(frames), self._windows
        self._windows += count
        self._unmeasured.append((frames.copy(), probability))
        updates = range(-first % self.UPDATE_WINDOWS, count, self.UPDATE_WINDOWS)
        if not updates and not self.voice_bed:
            return probability  # nothing to gate (most windows: no voice bed, no update)
        powers, probabilities = self._measure()
        background, bed = self.background_db, self.voice_bed  # unless updated on the way
        if updates:
            background, bed = np.full(count, background), np.full(count, bed)
        for index in updates:
            end = powers.size - count + index + 1  # up to and with the batch's window `index`
            heard = min(first + index + 1, self._keep)
            self._update(powers[end - heard : end], probabilities[end - heard : end])
            background[index:], bed[index:] = self.background_db, self.voice_bed
        self._powers, self._probabilities = powers[-self._keep :], probabilities[-self._keep :]
        if not (bed.any() if updates else bed):
            return probability
        recent = powers[powers.size - count - self.LEVEL_WINDOWS + 1 :]
        level = 10.0 * np.log10(np.convolve(recent, self._kernel, "valid"))
        gate = (level - (background + self.margin_db)) / self.GATE_SPAN_DB + 0.5
        gated = np.maximum(np.minimum(probability, gate), 0.0)  # never above 1: a probability
        return np.where(bed, gated, probability) if updates else gated

    def _measure(self) -> tuple[np.ndarray, np.ndarray]:
        """(powers, probabilities): the kept windows', then the unmeasured ones'."""
        if len(self._unmeasured) == 1:
            frames, probability = self._unmeasured[0]
        else:
            frames, probability = (np.concatenate(a) for a in zip(*self._unmeasured, strict=True))
        self._unmeasured.clear()
        power = self._power(frames)
        if not self._powers.size:  # the stream's start: as if its first window had lasted
            self._powers = np.full(self.LEVEL_WINDOWS - 1, power[0])
            self._probabilities = np.full(self.LEVEL_WINDOWS - 1, probability[0])
        powers = np.concatenate((self._powers, power))
        return powers, np.concatenate((self._probabilities, probability))

    def _update(self, powers: np.ndarray, probabilities: np.ndarray) -> None:
        """The statistics over the windows heard up to the current one (the last)."""
        recent = powers[-self._background_windows :]
        self.background_db = 10.0 * math.log10(_percentile(recent, self.BACKGROUND_PERCENTILE))
        # Too little heard yet to tell a bed from a person talking from the first word on.
        if powers.size < self._background_windows:
            self.voice_bed = False
            return
        powers, probabilities = powers[-self._bed_windows :], probabilities[-self._bed_windows :]
        quiet = powers <= _percentile(powers, self.BED_PERCENTILE)
        self.voice_bed = bool(probabilities[quiet].mean() > self.BED_VOICE)


def _percentile(values: np.ndarray, percent: float) -> float:
    """The value `percent` % of the way up the sorted values (np.percentile's cost is 20x)."""
    rank = round(percent / 100 * (values.size - 1))
    return float(np.partition(values, rank)[rank])


def silero_model_path(name: str = SileroBackend.MODEL_FILE) -> str:
    """The model file inside the installed silero-vad wheel.

    Found through the wheel's file list: importing the `silero_vad` package
    would import torch, which is deliberately not installed.
    """
    try:
        files = metadata.distribution("silero-vad").files or []
    except metadata.PackageNotFoundError:
        raise VadBackendUnavailable(
            "VAD_BACKEND=foreground or silero needs the silero-vad wheel (installed without its "
            "torch dependency from requirements-nodeps.lock by `make install`), or "
            "VAD_BACKEND=energy"
        ) from None
    for entry in files:
        if entry.parts[:2] == ("silero_vad", "data") and entry.name == name:
            return str(entry.locate())
    raise VadBackendUnavailable(f"the silero-vad wheel has no {name}")


@cache
def _silero_session(name: str):
    """One ONNX session per process (run() is thread-safe); one thread: many run at once."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(
        silero_model_path(name), sess_options=options, providers=["CPUExecutionProvider"]
    )
