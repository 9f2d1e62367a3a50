"""bench/vad_bench.py and bench/vad_corpus.py: the metrics and the corpus, on small exact cases."""

import numpy as np
import pytest

from bench import vad_bench, vad_corpus
from voice import audio
from voice.vad import SPEECH_STARTED, SPEECH_STOPPED, VadEvent

RATE = vad_bench.SAMPLE_RATE
FRAME = RATE // 100


def test_a_frame_is_speech_when_most_of_its_samples_are():
    labels = vad_bench.frame_labels([(FRAME // 2 - 1, 3 * FRAME + FRAME // 2)], 5 * FRAME)

    assert labels.tolist() == [True, True, True, False, False]


def test_frame_scores_count_speech_frames_found_and_missed():
    truth = np.array([True, True, True, True, False, False, False, False])
    found = np.array([False, True, True, True, True, True, False, False])

    result = vad_bench.scores(truth, found)

    assert result == {"precision": 0.6, "recall": 0.75, "f1": pytest.approx(2 / 3)}


def test_segments_pair_each_start_with_its_stop():
    events = [
        VadEvent(SPEECH_STARTED, 100, RATE),
        VadEvent(SPEECH_STOPPED, 900, RATE),
        VadEvent(SPEECH_STARTED, 1500, RATE),
        VadEvent(SPEECH_STOPPED, 2000, RATE),
    ]

    assert vad_bench.segments_of(events) == [(100, 900), (1500, 2000)]


def test_boundary_errors_are_signed_ms_from_the_overlapping_detections():
    truth = [(24_000, 48_000), (72_000, 96_000), (120_000, 130_000)]
    detected = [(23_760, 30_000), (31_000, 48_480), (72_480, 95_040)]

    onsets, offsets, missed = vad_bench.boundary_errors(truth, detected)

    assert onsets == [-10.0, 20.0]
    assert offsets == [20.0, -40.0]
    assert missed == 1


def test_the_corpus_is_the_same_for_the_same_seed():
    first = vad_corpus.make_track(np.random.default_rng(3), utterances=2, sample_rate=16_000)
    second = vad_corpus.make_track(np.random.default_rng(3), utterances=2, sample_rate=16_000)

    assert first.segments == second.segments
    assert np.array_equal(first.speech, second.speech)


def test_truth_segments_hold_the_spoken_audio_and_only_silence_lies_between():
    track = vad_corpus.make_track(np.random.default_rng(4), utterances=3, sample_rate=16_000)

    for start, stop in track.segments:
        spoken = track.speech[start:stop]
        assert spoken[0] != 0 and spoken[-1] != 0
    assert not np.any(track.speech[~track.truth_mask()])


@pytest.mark.parametrize("kind", vad_corpus.NOISE_KINDS)
def test_noise_is_mixed_at_the_asked_snr_over_the_speech(kind):
    rng = np.random.default_rng(6)
    track = vad_corpus.make_track(rng, utterances=2, sample_rate=16_000)

    mixed = vad_corpus.mix(track, kind, 5, rng)

    noise = mixed - track.speech
    speech = track.speech[track.truth_mask()]
    snr = 20 * np.log10(audio.rms(speech) / audio.rms(noise))
    assert snr == pytest.approx(5, abs=0.05)


def test_quick_runs_have_four_utterances_and_unknown_backends_are_refused():
    assert vad_bench.parse_args(["--quick"]).utterances == 4
    with pytest.raises(SystemExit):
        vad_bench.parse_args(["--backends", "energy,nope"])
