"""The voice latency benchmark's pure parts: its model, its audio, differences, the verdict."""

import numpy as np
import pytest

from bench.voice_latency import (
    FRAME_SAMPLES,
    LEAD_SILENCE_S,
    RATE,
    STAGGER_S,
    TARGET_ADDED_P99_MS,
    TurnResult,
    differences,
    frames_of,
    judge,
    last_speech_frame,
    model_name,
    parse_args,
    spoken_turn_audio,
    start_offset_s,
)


def test_fakeai_controls_ride_on_the_model_name():
    assert model_name(ttft_ms=200.0, pace=1.0, words=4) == "fakeai:ttft=200,pace=1,tokens=4"


def test_defaults_measure_three_concurrencies_and_two_spoken():
    params = parse_args([])

    assert (params.sockets, params.spoken_sockets, params.modes) == (
        [1, 10, 50],
        [1, 10],
        ("embedded",),
    )
    assert params.pg_database == "bench_voice" and params.redis_url.endswith("/3")


def test_quick_runs_two_small_levels_and_keeps_no_spoken_turns_if_asked():
    assert parse_args(["--quick"]).sockets == [1, 2]
    assert parse_args(["--quick", "--spoken-sockets", "0"]).spoken_sockets == []


@pytest.mark.parametrize(
    "argv",
    [["--sockets", "0"], ["--sockets", "a"], ["--modes", "cloud"], ["--pg-database", "prod"]],
)
def test_parse_args_refuses(argv):
    with pytest.raises(SystemExit):
        parse_args(argv)


def test_relay_and_direct_client_i_start_together_spread_over_the_stagger():
    offsets = [start_offset_s(i, 10) for i in range(10)]

    assert offsets[0] == 0.0 and max(offsets) < STAGGER_S
    assert start_offset_s(0, 1) == 0.0


def test_the_last_speech_frame_holds_the_utterance_s_last_sample():
    lead = FRAME_SAMPLES * 3  # the speech starts with frame 3

    assert last_speech_frame(lead, FRAME_SAMPLES) == 3
    assert last_speech_frame(lead, FRAME_SAMPLES + 1) == 4


def test_a_spoken_turn_is_lead_silence_then_the_speech_and_its_last_frame_is_loud():
    speech = np.sin(np.arange(RATE // 2) / 10).astype(np.float32)  # 0.5 s
    pcm, last = spoken_turn_audio(speech)
    frames = frames_of(pcm)

    lead_frames = round(LEAD_SILENCE_S * 1000 / 20)
    assert set(b"".join(frames[:lead_frames])) == {0}
    assert last == len(frames) - 1 == lead_frames + 25 - 1
    assert any(frames[last]) and all(len(f) == FRAME_SAMPLES * 2 for f in frames)


def test_differences_are_ours_minus_the_baseline_percentile_by_percentile():
    ours = {"p50": 210.0, "p95": 230.0, "p99": None}
    direct = {"p50": 205.0, "p95": 212.5, "p99": 220.0}

    assert differences(ours, direct) == {"p50": 5.0, "p95": 17.5, "p99": None}


def test_a_turn_is_timed_from_its_send_to_its_first_audio():
    assert TurnResult(sent=1.0, first_audio=1.2055).ms == pytest.approx(205.5)
    assert TurnResult(sent=1.0).ms is None


def row(sockets, added_p99, *, errors=0):
    return {
        "mode": "embedded",
        "sockets": sockets,
        "added_ms": {"p50": 3.0, "p95": 5.0, "p99": added_p99},
        "errors": errors,
        "client_limited": None,
    }


def test_target_passes_when_every_level_adds_less_than_the_limit():
    assert judge([row(1, 4.0), row(50, TARGET_ADDED_P99_MS - 0.1)])["verdict"] == "PASS"


def test_target_fails_on_one_slow_level_or_one_failed_turn():
    assert judge([row(1, 4.0), row(50, TARGET_ADDED_P99_MS)])["verdict"] == "FAIL"
    assert judge([row(1, 4.0, errors=1)])["verdict"] == "FAIL"


def test_target_without_rows_is_not_evaluated():
    assert judge([])["verdict"] == "NOT EVALUATED"
