"""The benchmark's pure parts: statistics, arrivals, comparisons with the baselines, the verdict."""

import psutil
import pytest

from bench.chat_load import (
    TARGET_USERS,
    add_comparisons,
    judge,
    parse_args,
    round_robin,
)
from bench.clients import MessageResult, token_index
from bench.harness import Server, log_problems
from bench.soak import SoakProgress, memory_line
from bench.stats import fmt_ratio, percentile, ratio, slope_per_thousand
from chat import events
from realtime import wire


# --- statistics -------------------------------------------------------------------
def test_percentile_interpolates_between_closest_ranks():
    assert percentile([10, 20, 30, 40], 50) == 25
    assert percentile([10, 20, 30, 40], 99) == pytest.approx(39.7)


def test_percentile_of_nothing_is_none():
    assert percentile([], 50) is None


def test_ratio_is_ours_over_the_baseline():
    assert ratio(260.0, 200.0) == 1.3


def test_ratio_without_a_usable_baseline_is_none():
    assert [ratio(None, 200.0), ratio(260.0, None), ratio(260.0, 0.0)] == [None, None, None]


def test_fmt_ratio_prints_two_decimals_and_a_dash_for_none():
    assert (fmt_ratio(1.2749), fmt_ratio(None)) == ("1.27x", "-")


def test_slope_per_thousand_of_a_steady_leak():
    points = [(1000, 100.0), (2000, 101.0), (3000, 102.0), (4000, 103.0)]

    assert slope_per_thousand(points) == pytest.approx(1.0)


def test_slope_per_thousand_needs_two_points():
    assert slope_per_thousand([(1000, 100.0)]) is None


# --- clients ----------------------------------------------------------------------
def test_token_index_reads_the_index_field_of_our_token_frame():
    frame = wire.dumps(events.token(content="hi ", index=41, timestamp=1_700_000_000_000))

    assert token_index(frame) == 41


def test_token_index_is_not_fooled_by_content_that_looks_like_the_field():
    content = 'say ,"index":99, please'
    frame = wire.dumps(events.token(content=content, index=7, timestamp=1_700_000_000_000))

    assert token_index(frame) == 7


def test_tokens_per_second_counts_the_tokens_after_the_first_frame():
    result = MessageResult()
    result.received(3, at=10.0)  # a late reader's backlog: tokens 0-2 in one frame
    result.received(4, at=10.5)
    result.received(8, at=11.0)

    assert (result.tokens, result.frames) == (8, 3)
    assert result.tokens_per_s == 5.0


def test_tokens_per_second_needs_a_second_frame():
    result = MessageResult()
    result.received(1, at=10.0)

    assert result.tokens_per_s is None


# --- memory line ------------------------------------------------------------------
def samples(*rss_mb: float) -> list[dict]:
    """RSS before the load, then after every 1,000 replies."""
    return [{"replies": 1000 * i, "rss_mb": rss} for i, rss in enumerate(rss_mb)]


def test_memory_growth_is_measured_from_the_first_thousand_replies():
    line = memory_line(samples(80.0, 100.0, 101.0, 102.0))

    assert (line["from_replies"], line["to_replies"]) == (1000, 3000)
    assert line["growth_mb"] == 2.0
    assert line["growth_percent"] == 2.0
    assert line["flat"] is True


def test_memory_growing_more_than_five_percent_is_not_flat():
    line = memory_line(samples(80.0, 100.0, 104.0, 108.0))

    assert line["growth_percent"] == 8.0
    assert line["flat"] is False


def test_memory_line_without_two_samples_after_warm_up_is_not_judged():
    assert memory_line(samples(80.0, 100.0))["flat"] is None


def test_soak_progress_hands_out_exactly_the_total():
    progress = SoakProgress(total=3, server=psutil.Process())

    assert [progress.claim() for _ in range(5)] == [True, True, True, False, False]


def test_soak_progress_samples_every_n_replies_and_at_the_end():
    progress = SoakProgress(total=5, server=psutil.Process(), sample_every=2)
    for _ in range(5):
        progress.finish(MessageResult(status="ok"))

    assert [s["replies"] for s in progress.samples] == [2, 4, 5]


# --- parameters and arrivals ------------------------------------------------------
def test_redis_postgres_mode_runs_two_daphne_processes_by_default():
    assert parse_args(["--redis-postgres"]).processes == 2
    assert parse_args([]).processes == 1


def test_several_processes_need_the_shared_redis_and_postgres():
    with pytest.raises(SystemExit):
        parse_args(["--processes", "2"])


def test_both_arrival_modes_run_each_size_in_turn():
    params = parse_args(["--users", "1,5", "--repeat-largest", "2", "--arrival", "steady,burst"])

    assert params.plan() == [
        ("steady", 1),
        ("steady", 5),
        ("steady", 5),
        ("burst", 1),
        ("burst", 5),
        ("burst", 5),
    ]


def test_burst_users_all_start_at_once():
    params = parse_args([])

    assert {params.start_offset_s(user, "burst") for user in range(50)} == {0.0}


def test_steady_users_start_within_one_reply_and_the_same_in_every_baseline():
    params = parse_args(["--ttft-ms", "200", "--tps", "50", "--tokens", "50"])
    offsets = [params.start_offset_s(user, "steady") for user in range(200)]

    assert all(0 <= offset < 1.2 for offset in offsets)
    assert offsets == [params.start_offset_s(user, "steady") for user in range(200)]


def test_users_are_dealt_round_robin_to_the_servers():
    servers = [Server(name=f"daphne-{i}", url="", pid=0, log_path=None) for i in (1, 2)]

    assert [round_robin(user, servers).name for user in range(4)] == [
        "daphne-1",
        "daphne-2",
        "daphne-1",
        "daphne-2",
    ]


# --- comparison and verdict -------------------------------------------------------
def row(mode, ttft_p99, *, users=TARGET_USERS, errors=0, tps_p50=50.0, arrival="steady"):
    return {
        "mode": mode,
        "arrival": arrival,
        "users": users,
        "repeat": 1,
        "errors": errors,
        "ttft_ms": {"p50": 210.0, "p95": 220.0, "p99": ttft_p99},
        "tokens_per_s_delivered": {"p5": tps_p50, "p50": tps_p50},
    }


def compared(*rows: dict) -> list[dict]:
    rows = list(rows)
    add_comparisons(rows)
    return rows


def test_ours_is_compared_with_the_lean_relay_and_the_direct_baseline():
    direct, lean, ours = compared(row("direct", 205.0), row("lean", 210.0), row("ws-sqlite", 273.0))

    assert ours["ratio_to_lean"]["p99"] == 1.3
    assert ours["added_b_ms"]["p99"] == 68.0
    assert lean["added_b_ms"]["p99"] == 5.0
    assert "ratio_to_lean" not in lean and "added_b_ms" not in direct


def test_comparisons_stay_within_an_arrival_mode():
    rows = compared(
        row("lean", 200.0, arrival="steady"),
        row("lean", 400.0, arrival="burst"),
        row("ws-sqlite", 400.0, arrival="burst"),
    )

    assert rows[2]["ratio_to_lean"]["p99"] == 1.0


def verdict(*rows: dict, mode="ws-sqlite", tps=50.0, server_errors=0) -> dict:
    return judge(compared(*rows), mode=mode, tps=tps, server_errors=server_errors)


def test_target_passes_at_the_ratio_limit_with_zero_errors():
    assert verdict(row("lean", 200.0), row("ws-sqlite", 260.0))["verdict"] == "PASS"


def test_target_fails_above_the_embedded_ratio_limit():
    target = verdict(row("lean", 200.0), row("ws-sqlite", 262.0))

    assert target["verdict"] == "FAIL"
    assert target["runs"][0]["checks"]["p99_ratio"] is False


def test_redis_mode_is_allowed_one_point_six_times_the_lean_relay():
    rows = (row("lean", 200.0), row("ws-redis-pg", 320.0))

    assert verdict(*rows, mode="ws-redis-pg")["verdict"] == "PASS"


def test_target_fails_on_a_single_error():
    target = verdict(row("lean", 200.0), row("ws-sqlite", 210.0, errors=1))

    assert target["runs"][0]["checks"]["zero_errors"] is False
    assert target["verdict"] == "FAIL"


def test_target_fails_on_errors_in_the_server_log():
    rows = (row("lean", 200.0), row("ws-sqlite", 210.0))

    assert verdict(*rows, server_errors=1)["verdict"] == "FAIL"


def test_target_fails_when_streams_are_slower_than_the_model():
    target = verdict(row("lean", 200.0), row("ws-sqlite", 210.0, tps_p50=46.0))

    assert target["runs"][0]["checks"]["tokens_per_s"] is False


def test_target_is_not_evaluated_without_its_number_of_streams():
    rows = (row("lean", 200.0, users=50), row("ws-sqlite", 210.0, users=50))

    assert verdict(*rows)["verdict"] == "NOT EVALUATED"


def test_target_is_not_evaluated_at_another_model_speed():
    target = verdict(row("lean", 200.0), row("ws-sqlite", 210.0), tps=20.0)

    assert target["verdict"] == "NOT EVALUATED"
    assert "20" in target["note"]


# --- server logs ------------------------------------------------------------------
def test_log_problems_count_only_the_requested_part_of_the_log(tmp_path):
    log = tmp_path / "daphne-1.log"
    during = "2026-01-01 10:00:00,000 INFO chat reply started\n"
    log.write_text(during + "2026-01-01 10:05:00,000 ERROR asyncio Unclosed client session\n")

    assert log_problems(log, end=len(during))["error_lines"] == 0
    assert log_problems(log, start=len(during))["error_lines"] == 1
