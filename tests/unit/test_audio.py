"""voice/audio.py: PCM16, Realtime API framing, levels, and the resampler's accuracy."""

from math import ceil

import numpy as np
import pytest

from voice import audio

RATES = [16_000, 24_000, 48_000]
PAIRS = [(a, b) for a in RATES for b in RATES if a != b]


def tone(freq: float, rate: int, seconds: float = 0.5, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def middle_level_db(samples: np.ndarray) -> float:
    """dBFS of the middle half: the edges hold the filter's start and end."""
    quarter = samples.size // 4
    return audio.dbfs(samples[quarter:-quarter])


# --- PCM16 --------------------------------------------------------------------------
def test_pcm16_bytes_survive_a_round_trip_through_float_exactly():
    data = np.random.default_rng(1).integers(-32768, 32768, 4000).astype("<i2").tobytes()

    assert audio.float_to_pcm16(audio.pcm16_to_float(data)) == data


def test_pcm16_is_little_endian_and_scaled_by_32768():
    samples = audio.pcm16_to_float(b"\x00\x80\xff\xff\x00\x00\x00\x40\xff\x7f")

    assert samples.dtype == np.float32
    assert samples.tolist() == [-1.0, -1 / 32768, 0.0, 0.5, 32767 / 32768]


def test_float_to_pcm16_rounds_and_clips_to_the_16_bit_range():
    data = audio.float_to_pcm16(np.array([1.5, -1.5, 0.5, 1 / 65536 + 1e-9, -1e-9]))

    assert np.frombuffer(data, "<i2").tolist() == [32767, -32768, 16384, 1, 0]


def test_an_odd_number_of_pcm16_bytes_is_refused():
    with pytest.raises(ValueError, match="even number of bytes"):
        audio.pcm16_to_float(b"\x00\x01\x02")


def test_as_float_takes_bytes_int16_and_float_arrays_alike():
    pcm = np.array([-16384, 0, 16384], dtype=np.int16)

    expected = [-0.5, 0.0, 0.5]
    assert audio.as_float(pcm.astype("<i2").tobytes()).tolist() == expected
    assert audio.as_float(pcm).tolist() == expected
    assert audio.as_float(np.array(expected, dtype=np.float64)).dtype == np.float32


def test_as_float_refuses_more_than_one_channel():
    with pytest.raises(ValueError, match="mono"):
        audio.as_float(np.zeros((2, 10), dtype=np.float32))


# --- Realtime API framing -----------------------------------------------------------
def test_base64_framing_round_trips_pcm16():
    data = audio.float_to_pcm16(tone(440, 24_000, 0.02))

    text = audio.pcm16_to_base64(data)

    assert isinstance(text, str)
    assert audio.base64_to_pcm16(text) == data
    assert audio.pcm16_to_base64(b"\x01\x00\xff\x7f") == "AQD/fw=="


def test_base64_audio_that_is_not_base64_or_not_whole_samples_is_refused():
    with pytest.raises(ValueError):
        audio.base64_to_pcm16("not base64!")
    with pytest.raises(ValueError, match="even number of bytes"):
        audio.base64_to_pcm16("AQD/")


def test_milliseconds_and_samples_convert_on_the_audio_clock():
    assert audio.samples_to_ms(240, 24_000) == 10.0
    assert audio.ms_to_samples(300, 16_000) == 4800
    assert audio.ms_to_samples(10.02, 48_000) == 481


# --- levels -------------------------------------------------------------------------
def test_rms_and_dbfs_of_reference_signals():
    square = np.where(np.arange(480) % 48 < 24, 1.0, -1.0)

    assert audio.rms(square) == 1.0
    assert audio.dbfs(square) == 0.0
    assert audio.dbfs(0.1 * square) == pytest.approx(-20.0)
    assert audio.dbfs(tone(1000, 48_000, amplitude=1.0)) == pytest.approx(-3.0103, abs=1e-3)


def test_silence_has_a_floor_level_not_minus_infinity():
    assert audio.rms(np.zeros(100)) == 0.0
    assert audio.rms(np.zeros(0)) == 0.0
    assert audio.dbfs(np.zeros(100)) == audio.SILENCE_DBFS


# --- resampling: length, alignment --------------------------------------------------
@pytest.mark.parametrize(("rate_in", "rate_out"), PAIRS)
@pytest.mark.parametrize("length", [0, 1, 2, 7, 1000, 16_001])
def test_resampled_length_is_exactly_the_duration_at_the_new_rate(rate_in, rate_out, length):
    out = audio.resample(np.ones(length, dtype=np.float32), rate_in, rate_out)

    assert out.size == ceil(length * rate_out / rate_in)
    assert out.dtype == np.float32


def test_resampling_to_the_same_rate_returns_the_samples_unchanged():
    samples = tone(1000, 24_000)

    assert np.array_equal(audio.resample(samples, 24_000, 24_000), samples)


@pytest.mark.parametrize(("rate_in", "rate_out"), PAIRS)
def test_resampling_keeps_time_an_impulse_stays_at_its_instant(rate_in, rate_out):
    samples = np.zeros(rate_in // 10, dtype=np.float32)
    samples[rate_in // 20] = 1.0  # at 50 ms

    out = audio.resample(samples, rate_in, rate_out)

    assert int(np.argmax(out)) == rate_out // 20


@pytest.mark.parametrize(("rate_in", "rate_out"), PAIRS)
def test_a_resampled_tone_matches_the_same_tone_sampled_at_the_new_rate(rate_in, rate_out):
    out = audio.resample(tone(1000, rate_in), rate_in, rate_out)

    expected = tone(1000, rate_out)
    edge = rate_out // 100  # the first and last 10 ms meet the silence around the signal
    assert np.max(np.abs(out - expected)[edge:-edge]) < 1e-3


# --- resampling: frequency response ---------------------------------------------------
def passband_tones(rate_in: int, rate_out: int) -> list[float]:
    nyquist = min(rate_in, rate_out) / 2
    return [100.0, 1000.0, 0.5 * nyquist, 0.85 * nyquist]


@pytest.mark.parametrize(("rate_in", "rate_out"), PAIRS)
def test_tones_below_the_new_nyquist_pass_within_half_a_decibel(rate_in, rate_out):
    for freq in passband_tones(rate_in, rate_out):
        samples = tone(freq, rate_in)

        out = audio.resample(samples, rate_in, rate_out)

        gain_db = middle_level_db(out) - middle_level_db(samples)
        assert abs(gain_db) <= 0.5, f"{freq} Hz: {gain_db:+.2f} dB"


@pytest.mark.parametrize(
    ("rate_in", "rate_out", "freq"),
    [
        (48_000, 16_000, 8_100.0),
        (48_000, 16_000, 12_000.0),
        (48_000, 16_000, 20_000.0),
        (48_000, 24_000, 12_200.0),
        (48_000, 24_000, 18_000.0),
        (24_000, 16_000, 8_100.0),
        (24_000, 16_000, 11_000.0),
    ],
)
def test_tones_above_the_new_nyquist_are_removed_by_40_db_not_aliased(rate_in, rate_out, freq):
    samples = tone(freq, rate_in)

    out = audio.resample(samples, rate_in, rate_out)

    assert middle_level_db(out) - middle_level_db(samples) <= -40.0


@pytest.mark.parametrize(("rate_in", "rate_out"), [(16_000, 48_000), (16_000, 24_000)])
def test_upsampling_leaves_no_image_above_the_old_nyquist(rate_in, rate_out):
    out = audio.resample(tone(3000, rate_in, seconds=1.0), rate_in, rate_out)

    middle = out[rate_out // 4 : -rate_out // 4]
    spectrum = np.abs(np.fft.rfft(middle * np.hanning(middle.size)))
    freqs = np.fft.rfftfreq(middle.size, 1 / rate_out)
    image = spectrum[freqs >= rate_in / 2].max()
    assert 20 * np.log10(image / spectrum.max()) <= -40.0


# --- resampling: streaming ----------------------------------------------------------
@pytest.mark.parametrize(("rate_in", "rate_out"), PAIRS)
def test_streaming_in_random_chunk_sizes_equals_resampling_at_once(rate_in, rate_out):
    rng = np.random.default_rng(rate_in + rate_out)
    samples = rng.standard_normal(rate_in // 2).astype(np.float32) * 0.3
    resampler = audio.Resampler(rate_in, rate_out)
    pieces, position = [], 0
    while position < samples.size:
        size = int(rng.integers(0, 700))
        pieces.append(resampler.process(samples[position : position + size]))
        position += size
    pieces.append(resampler.flush())

    streamed = np.concatenate(pieces)

    np.testing.assert_allclose(streamed, audio.resample(samples, rate_in, rate_out), atol=1e-6)


@pytest.mark.parametrize(("rate_in", "rate_out"), PAIRS)
def test_chunk_boundaries_leave_no_click_in_a_streamed_tone(rate_in, rate_out):
    samples = tone(440, rate_in, seconds=1.0)
    chunk = rate_in // 50  # 20 ms, as a browser sends
    resampler = audio.Resampler(rate_in, rate_out)

    streamed = np.concatenate(
        [resampler.process(samples[i : i + chunk]) for i in range(0, samples.size, chunk)]
    )

    expected = tone(440, rate_out, seconds=1.0)[: streamed.size]
    edge = rate_out // 100
    assert np.max(np.abs(streamed - expected)[edge:]) < 1e-3
    # The largest step between samples is the tone's own, nowhere larger.
    steepest = 0.5 * 2 * np.pi * 440 / rate_out
    assert np.max(np.abs(np.diff(streamed[edge:]))) <= steepest * 1.01


@pytest.mark.parametrize(("rate_in", "rate_out"), PAIRS)
def test_a_streaming_resampler_holds_back_only_a_few_milliseconds(rate_in, rate_out):
    resampler = audio.Resampler(rate_in, rate_out)

    out = resampler.process(np.zeros(rate_in // 50, dtype=np.float32))

    held_back_ms = 20.0 - audio.samples_to_ms(out.size, rate_out)
    assert 0 < held_back_ms <= 3.0


def test_resamplers_accept_pcm16_bytes():
    samples = tone(500, 16_000)
    resampler = audio.Resampler(16_000, 24_000)

    out = np.concatenate([resampler.process(audio.float_to_pcm16(samples)), resampler.flush()])

    np.testing.assert_allclose(out, audio.resample(samples, 16_000, 24_000), atol=1e-4)


def test_resampling_from_espeak_ngs_22050_hz_to_16_khz():
    out = audio.resample(tone(1000, 22_050), 22_050, 16_000)

    assert out.size == 8000
    edge = 160
    assert np.max(np.abs(out - tone(1000, 16_000))[edge:-edge]) < 1e-3
