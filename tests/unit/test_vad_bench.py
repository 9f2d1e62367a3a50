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


# --- bench/turn_bench.py ----------------------------------------------------------
def test_a_comma_turn_is_a_prefix_of_its_sentence_ending_on_a_comma():
    from bench.turn_bench import comma_text

    sentence = "Add milk, eggs and a loaf of bread to the shopping list."
    for seed in range(20):
        text = comma_text(sentence, np.random.default_rng(seed))

        assert text.endswith(",") and not text.endswith(",,")
        words = text[:-1].split()
        assert 2 <= len(words) <= len(sentence.split()) - 2
        assert sentence.startswith(text[:-1])


def test_a_cut_turn_ends_at_its_quietest_20_ms_between_40_and_70_percent():
    from bench.turn_bench import RATE, cut_mid_sentence

    samples = np.full(RATE, 0.5, dtype=np.float32)  # 50 frames of 20 ms
    samples[27 * 320 : 28 * 320] = 0.01

    assert cut_mid_sentence(samples).size == 27 * 320


def test_smart_turns_files_are_read_from_the_wheel_without_importing_pipecat():
    import sys

    from bench.turn_bench import MODEL_FILE, _features_module, _wheel_file

    assert _wheel_file(MODEL_FILE).endswith("pipecat/audio/turn/smart_turn/data/" + MODEL_FILE)
    features = _features_module().compute_whisper_log_mel_features(np.zeros(16_000))
    assert features.shape == (80, 800)
    assert "pipecat" not in sys.modules
