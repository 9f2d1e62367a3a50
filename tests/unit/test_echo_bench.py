"""bench/echo_bench.py: how a canceller is fed the reference, and the oracle threshold."""

import numpy as np

from bench import echo_bench, echo_corpus


def test_the_oracle_threshold_error_is_the_best_balance_of_the_two_errors():
    echo_scores = [0.05, 0.1, 0.3]
    person_scores = [0.2, 0.5, 0.6]

    # Threshold 0.2: one echo of three (0.3) barges in, no person is missed.
    assert echo_bench.best_threshold_error(echo_scores, person_scores) == 1 / 6


def test_a_canceller_gets_the_reference_where_the_server_believes_it_plays():
    sent = np.arange(1, 2401, dtype=np.float32)
    answer = echo_corpus.Answer(sent=sent, mic=np.zeros(4800), echo_db=-10.0, delay_ms=0.0)
    ahead = {"answer": answer, "error_ms": 10.0}  # believed 10 ms (240 samples) further on

    far = echo_bench.far_end(ahead, 4800)

    assert far[0] == sent[240]
    assert far[2159] == sent[-1]
    assert not far[2160:].any()
