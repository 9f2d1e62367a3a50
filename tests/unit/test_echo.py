"""voice/echo.py: the echo gate, on real speech (espeak-ng) played into a simulated room.

The assistant's answer is fed back into the microphone, attenuated, late and
coloured by a room (bench/echo_corpus.py); the gate must call that echo, and
must call a person talking over it, or talking while nothing plays, a person.
"""

import functools
import time

import numpy as np
import pytest

from bench import echo_corpus, vad_corpus
from voice import audio, echo

pytestmark = pytest.mark.skipif(
    not vad_corpus.shutil.which(vad_corpus.ESPEAK), reason="espeak-ng is not installed"
)

RATE = echo_corpus.RATE
WINDOW = audio.ms_to_samples(250.0, RATE)
PREROLL = audio.ms_to_samples(50.0, RATE)
ROOM = echo_corpus.Room(reverb_ms=120.0, reverb_db=-12.0, lowpass_hz=4000.0, highpass_hz=200.0)
DELAYS_MS = (50.0, 100.0, 150.0, 200.0)


@functools.cache
def answer_speech() -> np.ndarray:
    return echo_corpus.speech(echo_corpus.ANSWERS[0], "en-us", level_dbfs=echo_corpus.ANSWER_DBFS)


@functools.cache
def person_speech(level_dbfs: float) -> np.ndarray:
    text = "Wait, stop, I meant the other one, please go back."
    return echo_corpus.speech(text, "en-gb-scotland", level_dbfs=level_dbfs, pitch=35)


@functools.cache
def played(delay_ms: float, room: echo_corpus.Room = ROOM) -> echo_corpus.Answer:
    """The answer at -10 dB, `delay_ms` late, through `room`, with a little noise."""
    return echo_corpus.play(
        answer_speech(), echo_db=-10.0, delay_ms=delay_ms, room=room,
        rng=np.random.default_rng(int(delay_ms)),
    )  # fmt: skip


def reference_of(answer: echo_corpus.Answer) -> echo.PlaybackReference:
    reference = echo.PlaybackReference(RATE)
    reference.add(answer.pcm16())
    return reference


def onsets(answer: echo_corpus.Answer) -> list[int]:
    return echo_corpus.loud_onsets(answer, 4, np.random.default_rng(0))


def judge_at(mic: np.ndarray, reference, onset: int, *, played_error_ms: float = 0.0):
    """The gate on the 250 ms from 50 ms before `onset`, as the voice socket judges."""
    begin = onset - PREROLL
    played_ms = audio.samples_to_ms(begin + WINDOW, RATE) + played_error_ms
    return echo.judge(mic[begin : begin + WINDOW], reference, played_ms=played_ms)


@pytest.mark.parametrize("delay_ms", DELAYS_MS)
def test_the_answer_coming_back_through_the_room_is_echo_wherever_the_speech_starts(delay_ms):
    answer = played(delay_ms)

    verdicts = [judge_at(answer.mic, reference_of(answer), at) for at in onsets(answer)]

    assert [v.echo for v in verdicts] == [True] * 4, verdicts
    assert all(abs(v.delay_ms - delay_ms) <= 15 for v in verdicts), verdicts


@pytest.mark.parametrize("delay_ms", DELAYS_MS)
def test_a_dry_echo_without_a_room_is_echo_too(delay_ms):
    answer = played(delay_ms, echo_corpus.DRY)

    verdicts = [judge_at(answer.mic, reference_of(answer), at) for at in onsets(answer)]

    assert [v.echo for v in verdicts] == [True] * 4, verdicts


@pytest.mark.parametrize("played_error_ms", [-100.0, 100.0])
@pytest.mark.parametrize("delay_ms", [50.0, 200.0])
def test_a_played_position_100_ms_off_still_finds_the_echo(delay_ms, played_error_ms):
    answer = played(delay_ms)

    verdicts = [
        judge_at(answer.mic, reference_of(answer), at, played_error_ms=played_error_ms)
        for at in onsets(answer)
    ]

    assert [v.echo for v in verdicts] == [True] * 4, verdicts
    # The delay is measured from the reported position.
    assert all(abs(v.delay_ms - (delay_ms + played_error_ms)) <= 15 for v in verdicts)


@pytest.mark.parametrize("over_echo_db", [0.0, 6.0])
@pytest.mark.parametrize("delay_ms", DELAYS_MS)
def test_a_person_talking_over_the_echo_is_not_echo(delay_ms, over_echo_db):
    answer = played(delay_ms)
    person = person_speech(echo_corpus.ANSWER_DBFS - 10.0 + over_echo_db)

    verdicts = [
        judge_at(echo_corpus.with_person(answer, person, at=at), reference_of(answer), at)
        for at in onsets(answer)
    ]

    assert [v.echo for v in verdicts] == [False] * 4, verdicts


def test_a_person_speaking_while_nothing_was_played_is_not_echo():
    person = person_speech(-30.0)
    mic = np.concatenate([np.zeros(RATE // 2, dtype=np.float32), person])

    silent = echo.PlaybackReference(RATE)
    silent.add(audio.float_to_pcm16(np.zeros(RATE, dtype=np.float32)))
    verdicts = [
        judge_at(mic, echo.PlaybackReference(RATE), RATE // 2),
        judge_at(mic, silent, RATE // 2),
    ]

    assert [v.echo for v in verdicts] == [False, False], verdicts


def test_a_person_after_the_answer_has_ended_and_its_echo_died_is_not_echo():
    answer = played(100.0)
    end = answer.sent.size + audio.ms_to_samples(100.0 + echo.MAX_DELAY_MS, RATE)
    mic = echo_corpus.with_person(answer, person_speech(-30.0), at=end)

    verdict = judge_at(mic, reference_of(answer), end)

    assert not verdict.echo, verdict


def test_a_new_answer_starts_a_new_playback_clock():
    answer = played(100.0)
    reference = reference_of(answer)
    at = onsets(answer)[1]

    reference.reset()

    assert not judge_at(answer.mic, reference, at).echo
    reference.add(answer.pcm16())
    assert judge_at(answer.mic, reference, at).echo


def test_a_judgement_takes_well_under_5_ms():
    answer = played(150.0)
    reference = reference_of(answer)
    at = onsets(answer)[2]
    judge_at(answer.mic, reference, at)  # the analysis tables are made once

    # The fastest of 20: what a judgement costs when other work leaves the core alone.
    timings = []
    for _ in range(20):
        started = time.perf_counter()
        judge_at(answer.mic, reference, at)
        timings.append((time.perf_counter() - started) * 1000)

    assert min(timings) < 5.0
