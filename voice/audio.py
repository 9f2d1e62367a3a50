"""Audio basics for voice: PCM16 <-> float32, resampling, Realtime API framing, levels.

Pure numpy; nothing here knows about Django or sockets. Samples are mono.
Float audio is float32 in [-1, 1); PCM16 is signed 16-bit little-endian, the
format of the voice socket's binary frames and of the Realtime API (24 kHz).
"""

from __future__ import annotations

import base64
from functools import cache
from math import ceil, gcd

import numpy as np

REALTIME_SAMPLE_RATE = 24_000
PCM16_BYTES_PER_SAMPLE = 2
_PCM16_SCALE = 32768.0
# dBFS of digital silence (an RMS of 0), instead of -inf.
SILENCE_DBFS = -120.0


# --- PCM16 <-> float32 --------------------------------------------------------------
def pcm16_to_float(data: bytes | bytearray | memoryview) -> np.ndarray:
    """Little-endian PCM16 bytes -> float32 samples in [-1, 1)."""
    if len(data) % PCM16_BYTES_PER_SAMPLE:
        raise ValueError(f"PCM16 audio must have an even number of bytes, not {len(data)}")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / _PCM16_SCALE


def float_to_pcm16(samples: np.ndarray) -> bytes:
    """Float samples -> little-endian PCM16 bytes, clipped to the 16-bit range and rounded."""
    scaled = np.rint(np.asarray(samples, dtype=np.float64) * _PCM16_SCALE)
    return np.clip(scaled, -32768, 32767).astype("<i2").tobytes()


def as_float(audio: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """PCM16 bytes or an array (float, or int16 PCM) -> one-dimensional float32 samples."""
    if isinstance(audio, bytes | bytearray | memoryview):
        return pcm16_to_float(audio)
    array = np.asarray(audio)
    if array.ndim != 1:
        raise ValueError(f"audio must be mono (one dimension), not shape {array.shape}")
    if array.dtype == np.int16:
        return array.astype(np.float32) / _PCM16_SCALE
    return array.astype(np.float32, copy=False)


# --- Realtime API framing -----------------------------------------------------------
def pcm16_to_base64(data: bytes) -> str:
    """PCM16 bytes as the base64 text of `input_audio_buffer.append`'s `audio` field."""
    return base64.b64encode(data).decode("ascii")


def base64_to_pcm16(text: str) -> bytes:
    """The base64 `delta` of a `response.output_audio.delta` event -> PCM16 bytes."""
    data = base64.b64decode(text, validate=True)
    if len(data) % PCM16_BYTES_PER_SAMPLE:
        raise ValueError(f"PCM16 audio must have an even number of bytes, not {len(data)}")
    return data


def samples_to_ms(samples: int, sample_rate: int) -> float:
    return samples * 1000.0 / sample_rate


def ms_to_samples(ms: float, sample_rate: int) -> int:
    """A duration in whole samples (rounded to the nearest)."""
    return round(ms * sample_rate / 1000.0)


# --- levels -------------------------------------------------------------------------
def rms(samples: np.ndarray) -> float:
    """Root mean square of float samples (0 for no samples)."""
    samples = np.asarray(samples, dtype=np.float64)
    return float(np.sqrt(np.mean(samples * samples))) if samples.size else 0.0


def dbfs(samples: np.ndarray) -> float:
    """RMS level in dB relative to full scale: a full-scale square wave is 0, a sine -3.01."""
    level = rms(samples)
    return 20.0 * np.log10(level) if level > 0 else SILENCE_DBFS


# --- resampling ---------------------------------------------------------------------
class Resampler:
    """Streaming rational resampler: a Kaiser-windowed-sinc low-pass run as a polyphase filter.

    The low-pass passes everything below `PASSBAND` of the lower Nyquist
    frequency (within 0.01 dB) and stops everything above that Nyquist by at
    least `STOPBAND_DB`: what would alias is removed before downsampling, and
    the images are removed after upsampling. The filter is linear-phase and
    its delay is compensated: output sample n is the input's value at time
    n / rate_out, so events keep their times across rates.

    Compensating the delay means looking ahead: `process` returns only the
    output samples whose filter window it has fully received (a few
    milliseconds are held back), and `flush` returns the rest as though the
    input ended in silence. The concatenated outputs of any chunking followed by
    `flush` equal `resample` on the whole input (same length: ceil(n * out / in)).
    """

    PASSBAND = 0.86
    STOPBAND_DB = 80.0

    def __init__(self, rate_in: int, rate_out: int) -> None:
        if rate_in <= 0 or rate_out <= 0:
            raise ValueError(f"sample rates must be positive, not {rate_in} -> {rate_out}")
        self.rate_in, self.rate_out = rate_in, rate_out
        divisor = gcd(rate_in, rate_out)
        self._up, self._down = rate_out // divisor, rate_in // divisor
        self._phases, self._delay = _polyphase_filter(self._up, self._down, self.PASSBAND)
        self._taps = self._phases.shape[1]
        self._buffer = np.zeros(0, dtype=np.float32)
        self._buffer_start = 0  # input index of _buffer[0]
        self._received = 0  # input samples received
        self._produced = 0  # output samples returned

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Resample the next chunk; returns the output samples it completes."""
        samples = as_float(samples)
        if self._up == self._down:
            self._received += samples.size
            self._produced += samples.size
            return samples.copy()
        self._buffer = np.concatenate((self._buffer, samples))
        self._received += samples.size
        # Output n needs input up to index (n * down + delay) // up.
        ready = (self._received * self._up - self._delay + self._down - 1) // self._down
        return self._emit(max(ready, self._produced))

    def flush(self) -> np.ndarray:
        """The output still held back, computed as if silence followed; the stream then ends."""
        if self._up == self._down:
            return np.zeros(0, dtype=np.float32)
        total = ceil(self._received * self._up / self._down)
        # Pad with the silence the remaining windows reach into.
        last_needed = ((total - 1) * self._down + self._delay) // self._up if total else 0
        pad = max(0, last_needed + 1 - (self._buffer_start + self._buffer.size))
        self._buffer = np.concatenate((self._buffer, np.zeros(pad, dtype=np.float32)))
        return self._emit(total)

    def _emit(self, end: int) -> np.ndarray:
        """Output samples [produced, end) from the buffer; drops input no longer needed."""
        start, count = self._produced, end - self._produced
        out = np.empty(count, dtype=np.float32)
        if count:
            # Prepend zeros for windows reaching before the stream's first sample.
            first_low = (start * self._down + self._delay) // self._up - self._taps + 1
            lead = max(0, self._buffer_start - first_low)
            if lead:
                self._buffer = np.concatenate((np.zeros(lead, dtype=np.float32), self._buffer))
                self._buffer_start -= lead
            buffer, step = self._buffer, self._buffer.strides[0]
            for j in range(min(self._up, count)):
                position = (start + j) * self._down + self._delay
                first = position // self._up - self._taps + 1 - self._buffer_start
                rows = -(-(count - j) // self._up)
                # Row q: the window of taps input samples ending at output start + j + q * up
                # (a strided view made directly: as_strided costs more than the product).
                windows = np.ndarray(
                    (rows, self._taps),
                    dtype=np.float32,
                    buffer=buffer,
                    offset=first * step,
                    strides=(step * self._down, step),
                )
                out[j :: self._up] = windows @ self._phases[position % self._up]
        self._produced = end
        # Keep what the next output's window starts at.
        keep_from = (end * self._down + self._delay) // self._up - self._taps + 1
        drop = min(max(0, keep_from - self._buffer_start), self._buffer.size)
        if drop:
            self._buffer = self._buffer[drop:]
            self._buffer_start += drop
        return out


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Resample a whole signal (what a `Resampler` gives for it, flushed)."""
    resampler = Resampler(rate_in, rate_out)
    return np.concatenate((resampler.process(samples), resampler.flush()))


@cache
def _polyphase_filter(up: int, down: int, passband: float) -> tuple[np.ndarray, int]:
    """(phases, delay): the low-pass at `up` x the input rate, split into `up` phases.

    phases[p] holds taps p, p + up, p + 2 up, ... reversed, so a window of
    input samples ending at the newest one is dotted with it directly; delay
    is the filter's group delay in upsampled samples.
    """
    # Frequencies as fractions of the upsampled rate's Nyquist.
    nyquist = 1.0 / max(up, down)
    cutoff = nyquist * (1 + passband) / 2  # the transition band ends at the Nyquist
    transition = nyquist * (1 - passband)
    attenuation = Resampler.STOPBAND_DB
    beta = 0.1102 * (attenuation - 8.7)  # Kaiser's formula, attenuation > 50 dB
    length = ceil((attenuation - 7.95) / (2.285 * np.pi * transition)) + 1
    length += (length + 1) % 2  # odd: the delay is a whole number of samples
    delay = (length - 1) // 2
    t = np.arange(length) - delay
    taps = cutoff * np.sinc(cutoff * t) * np.kaiser(length, beta) * up
    width = ceil(length / up)
    padded = np.zeros(width * up)
    padded[:length] = taps
    phases = padded.reshape(width, up).T[:, ::-1]
    return np.ascontiguousarray(phases, dtype=np.float32), delay
