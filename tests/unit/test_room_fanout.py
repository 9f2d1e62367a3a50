"""The room fan-out benchmark's pure parts: attribution, spread, delay, loss, reorder, verdict."""

import pytest

from bench.room_fanout import (
    LAYERS,
    TARGET_PARTICIPANTS,
    Attributed,
    Combo,
    TokenFrame,
    analyze_room,
    attribute,
    check_delivery,
    client_limited,
    fastest_process,
    frame_type,
    judge,
    parse_args,
    parse_frames,
    receipt_delays_ms,
    settings_notes,
    token_spreads_ms,
    token_stamps,
)
from realtime import wire
from rooms import events


def token(index: int, content: str, *, message_id: int = 7, stamp: int = 1_000) -> dict:
    return events.ai_token(content=content, index=index, message_id=message_id, timestamp=stamp)


def frame(at: float, event: dict) -> tuple[float, bytes]:
    return at, wire.dumps(event).encode()


def complete(content: str, *, message_id: int = 7) -> dict:
    return events.ai_complete(message_id=message_id, content=content, html="", metrics={})


# --- attribution across coalesced frames --------------------------------------------------
def test_a_coalesced_frame_covers_the_tokens_after_the_previous_frame():
    att = attribute(
        [
            TokenFrame(at=10.0, index=0, content="a", timestamp_ms=100),
            TokenFrame(at=10.5, index=3, content="bcd", timestamp_ms=130),
            TokenFrame(at=11.0, index=4, content="e", timestamp_ms=140),
        ]
    )

    assert att.arrivals == {0: 10.0, 1: 10.5, 2: 10.5, 3: 10.5, 4: 11.0}
    assert att.text == "abcde"
    assert (att.frames, att.reordered, att.last_index) == (3, 0, 4)


def test_the_first_frame_covers_the_tokens_from_index_zero():
    att = attribute([TokenFrame(at=5.0, index=2, content="abc", timestamp_ms=100)])

    assert att.arrivals == {0: 5.0, 1: 5.0, 2: 5.0}


def test_only_a_frame_s_last_token_gets_the_frame_s_timestamp_as_its_own():
    att = attribute(
        [
            TokenFrame(at=10.0, index=0, content="a", timestamp_ms=100),
            TokenFrame(at=10.5, index=2, content="bc", timestamp_ms=130),
        ]
    )

    assert att.own_stamps == {0: 100, 2: 130}
    assert att.frame_stamps == {0: 100, 1: 130, 2: 130}


def test_a_frame_whose_index_goes_back_is_reordered_and_covers_nothing():
    att = attribute(
        [
            TokenFrame(at=1.0, index=0, content="a", timestamp_ms=1),
            TokenFrame(at=2.0, index=2, content="c", timestamp_ms=3),
            TokenFrame(at=3.0, index=1, content="b", timestamp_ms=2),
        ]
    )

    assert att.reordered == 1
    assert att.arrivals == {0: 1.0, 1: 2.0, 2: 2.0}
    assert att.text == "acb"


def test_a_repeated_index_is_reordered():
    att = attribute(
        [
            TokenFrame(at=1.0, index=0, content="a", timestamp_ms=1),
            TokenFrame(at=2.0, index=0, content="a", timestamp_ms=1),
        ]
    )

    assert att.reordered == 1


# --- loss and reorder ------------------------------------------------------------------------
def test_tokens_that_add_up_to_the_complete_content_are_intact():
    att = attribute(
        [TokenFrame(1.0, 0, "Hel", 1), TokenFrame(2.0, 2, "lo!", 2)]
    )  # "Hel" + "lo!" (tokens 1 and 2 coalesced)

    delivery = check_delivery(att, complete("Hello!"), last_index=2)

    assert delivery.intact
    assert (delivery.lost, delivery.reordered, delivery.missing_tokens) == (False, 0, 0)


def test_a_frame_lost_in_the_middle_shows_in_the_text_though_the_indices_look_whole():
    # Frame with index 1 never came; the next frame's range would cover index 1.
    att = attribute([TokenFrame(1.0, 0, "a", 1), TokenFrame(2.0, 2, "c", 3)])

    delivery = check_delivery(att, complete("abc"), last_index=2)

    assert delivery.lost and not delivery.text_matches
    assert delivery.missing_tokens == 0


def test_tokens_missing_at_the_end_are_counted():
    att = attribute([TokenFrame(1.0, 0, "a", 1)])

    delivery = check_delivery(att, complete("abc"), last_index=2)

    assert delivery.lost
    assert delivery.missing_tokens == 2


def test_a_participant_without_the_terminal_event_lost_the_message():
    att = attribute([TokenFrame(1.0, 0, "a", 1)])

    delivery = check_delivery(att, None, last_index=0)

    assert delivery.lost and delivery.terminal is None


def test_reordered_frames_make_a_delivery_not_intact_even_if_nothing_is_lost():
    att = Attributed(arrivals={0: 1.0}, text="a", reordered=1, last_index=0)

    delivery = check_delivery(att, complete("a"), last_index=0)

    assert not delivery.lost
    assert not delivery.intact


def test_a_token_after_the_terminal_event_makes_a_delivery_not_intact():
    received = parse_frames(
        [frame(1.0, token(0, "a")), frame(1.1, complete("ab")), frame(1.2, token(1, "b"))]
    )
    att = attribute(received.tokens[7])

    delivery = check_delivery(
        att, received.terminals[7], last_index=1, after_terminal=received.after_terminal[7]
    )

    assert delivery.after_terminal == 1
    assert not delivery.lost  # every token came, one of them too late
    assert not delivery.intact


# --- spread and delay --------------------------------------------------------------------------
def test_spread_is_last_receipt_minus_first_per_token():
    spreads = token_spreads_ms(
        [{0: 10.000, 1: 10.020}, {0: 10.004, 1: 10.021}, {0: 10.001, 1: 10.030}]
    )

    assert spreads == {0: pytest.approx(4.0), 1: pytest.approx(10.0)}


def test_a_token_only_one_participant_received_has_no_spread():
    assert token_spreads_ms([{0: 1.0, 1: 2.0}, {0: 1.001}]) == {0: pytest.approx(1.0)}


def test_delay_uses_the_token_s_own_stamp_from_any_participant():
    keeps_up = attribute([TokenFrame(10.002, 0, "a", 10_000), TokenFrame(10.021, 1, "b", 10_020)])
    behind = attribute([TokenFrame(10.030, 1, "ab", 10_020)])
    stamps = token_stamps([keeps_up, behind])

    delays, inexact = receipt_delays_ms(behind, stamps)

    assert stamps == {0: 10_000, 1: 10_020}
    assert delays == [pytest.approx(30.0), pytest.approx(10.0)]
    assert inexact == 0


def test_a_token_never_last_in_a_frame_is_measured_from_its_frame_s_stamp():
    behind = attribute([TokenFrame(10.030, 1, "ab", 10_020)])

    delays, inexact = receipt_delays_ms(behind, token_stamps([behind]))

    assert delays == [pytest.approx(10.0), pytest.approx(10.0)]
    assert inexact == 1


def test_frames_without_a_timestamp_give_no_delay():
    att = attribute([TokenFrame(1.0, 0, "a", None)])

    assert receipt_delays_ms(att, token_stamps([att])) == ([], 0)


def test_the_fastest_process_is_the_one_whose_participants_got_the_tokens_soonest():
    assert fastest_process({"daphne-1": [18.0, 20.0, 25.0], "daphne-2": [1.0, 2.0, 40.0]}) == (
        "daphne-2"
    )
    assert fastest_process({}) is None


# --- parsing frames as recorded ----------------------------------------------------------------
def test_parse_frames_groups_tokens_and_terminals_by_message():
    received = parse_frames(
        [
            frame(1.0, events.ai_typing(status=True, message_id=7)),
            frame(1.1, token(0, "a")),
            frame(1.2, events.merge_tokens([token(1, "b"), token(2, "c", stamp=1_002)])),
            frame(1.3, complete("abc")),
            frame(1.4, wire.error("rate_limited", "slow down")),
            frame(1.5, wire.error("upstream_error", "gone", message_id=8, content="x")),
        ]
    )

    assert [(f.at, f.index, f.content, f.timestamp_ms) for f in received.tokens[7]] == [
        (1.1, 0, "a", 1_000),
        (1.2, 2, "bc", 1_002),
    ]
    assert received.terminals[7]["type"] == "ai_complete"
    assert received.terminals[8]["type"] == "error"
    assert received.first_seen == {7: 1.1, 8: 1.5}
    assert received.other == {"ai_typing": 1, "error": 1}


def test_frame_type_reads_our_frames_without_parsing_them():
    assert frame_type(wire.dumps(token(0, '"type":"x"')).encode()) == b"ai_token"
    assert frame_type(b'{"index":1,"type":"ai_complete"}') == b"ai_complete"


def test_analyze_room_over_participants_on_two_processes():
    fast = parse_frames(
        [
            frame(10.001, token(0, "a", stamp=10_000)),
            frame(10.021, token(1, "b", stamp=10_020)),
            frame(10.030, complete("ab")),
        ]
    )
    slow = parse_frames(
        [
            frame(10.031, events.merge_tokens([token(0, "a"), token(1, "b", stamp=10_020)])),
            frame(10.040, complete("ab")),
        ]
    )
    lost = parse_frames([frame(10.002, token(0, "a", stamp=10_000))])

    result = analyze_room([fast, slow, lost], ["daphne-1", "daphne-2", "daphne-1"], ["daphne-1"])

    assert result["tokens"] == 2
    assert result["spread_ms"]["max"] == pytest.approx(30.0)  # token 0: 10.001 -> 10.031
    assert (result["lost"], result["reordered"], result["missing_tokens"]) == (1, 0, 1)
    assert result["terminals"] == {"ai_complete": 2, "none": 1}
    # Token 0 from its own stamp (seen by `fast`): 31 ms; token 1: 11 ms.
    assert result["delay_ms_by_process"]["daphne-2"]["p50"] == pytest.approx(21.0)
    assert result["messages"][0]["sender_process"] == "daphne-1"
    assert result["messages"][0]["fastest_process"] == "daphne-1"
    assert result["delay_ms_sender_process"]["p50"] == pytest.approx(1.0)
    assert result["delay_ms_other_processes"]["p50"] == pytest.approx(21.0)
    assert result["tokens_after_terminal"] == 0
    assert result["receipts"] == 5
    assert result["frames_per_token"] == pytest.approx(4 / 5)
    assert result["problems"][0]["participant"] == 2


def test_without_a_sender_the_fastest_process_counts_as_the_sender_s():
    near = parse_frames([frame(1.001, token(0, "a", stamp=1_000)), frame(1.1, complete("a"))])
    far = parse_frames([frame(1.020, token(0, "a", stamp=1_000)), frame(1.1, complete("a"))])

    result = analyze_room([near, far], ["daphne-1", "daphne-2"])

    assert result["messages"][0]["sender_process"] == "daphne-1"
    assert result["delay_ms_other_processes"]["p50"] == pytest.approx(20.0)


def test_analyze_room_orders_messages_by_their_first_frame():
    a = parse_frames(
        [
            frame(1.0, token(0, "x", message_id=9)),
            frame(1.1, complete("x", message_id=9)),
            frame(2.0, token(0, "y", message_id=3)),
            frame(2.1, complete("y", message_id=3)),
        ]
    )

    result = analyze_room([a, a], ["daphne-1", "daphne-1"])

    assert [m["message_id"] for m in result["messages"]] == [9, 3]
    assert result["lost"] == 0


# --- verdict and options --------------------------------------------------------------------
def row(fanout: str, spread_p99: float, *, intact: bool = True, mode: str = "redis-pg") -> dict:
    return {
        "mode": mode,
        "fanout": fanout,
        "layer": "core",
        "participants": TARGET_PARTICIPANTS,
        "spread_ms": {"p99": spread_p99},
        "intact": intact,
        "client_limited": None,
        "settings_notes": [],
    }


def test_judge_passes_a_spread_below_the_target_with_nothing_lost():
    assert judge([row("streams", 12.0)], processes=2)["verdict"] == "PASS"


def test_judge_fails_a_slow_spread_or_a_lost_token():
    target = judge([row("streams", 12.0, intact=False), row("group", 30.0)], processes=2)

    assert target["verdict"] == "FAIL"
    assert [run["checks"] for run in target["runs"]] == [
        {"spread_p99": True, "intact": False},
        {"spread_p99": False, "intact": True},
    ]


def test_judge_ignores_embedded_rows_and_other_process_counts():
    assert judge([row("streams", 30.0, mode="embedded")], processes=2)["verdict"] == (
        "NOT EVALUATED"
    )
    assert judge([row("streams", 12.0)], processes=3)["verdict"] == "NOT EVALUATED"


def test_client_limited_by_its_own_cpu_or_late_waiting_for_a_core():
    assert [client_limited(20, 1.0), client_limited(90, 9.0), client_limited(20, 9.0)] == [
        None,
        "client-limited",
        "client loop late",
    ]


def test_combinations_of_a_full_run():
    params = parse_args([])

    assert [c.label for c in params.combos("redis-pg")] == [
        "redis-pg-streams-core",
        "redis-pg-streams-pubsub",
        "redis-pg-group-core",
        "redis-pg-group-pubsub",
    ]
    assert [c.label for c in params.combos("embedded")] == [
        "embedded-streams-memory",
        "embedded-group-memory",
    ]
    assert (params.participants, params.turns, params.processes) == ([10, 50, 100], 5, 2)


def test_a_combination_passes_its_settings_to_the_site():
    assert Combo("redis-pg", "group", "pubsub").env == {
        "ROOM_FANOUT": "group",
        "CHANNEL_LAYER_BACKEND": LAYERS["pubsub"],
    }
    assert Combo("embedded", "streams", "memory").env == {"ROOM_FANOUT": "streams"}


def test_settings_notes_flag_what_the_site_ignored():
    combo = Combo("redis-pg", "group", "pubsub")
    core = {"CHANNEL_LAYER_BACKEND": LAYERS["core"]}

    assert settings_notes(combo, {"ROOM_FANOUT": None, **core}) == [
        "ROOM_FANOUT unknown to the site (ignored)",
        f"layer is {LAYERS['core']} (not switched)",
    ]
    assert (
        settings_notes(combo, {"ROOM_FANOUT": "group", "CHANNEL_LAYER_BACKEND": LAYERS["pubsub"]})
        == []
    )


@pytest.mark.parametrize(
    "argv",
    [["--layer", "memcached"], ["--fanout", "broadcast"], ["--participants", "1"],
     ["--pg-database", "production"], ["--redis-url", "redis://127.0.0.1:6379"]],
)  # fmt: skip
def test_parse_args_refuses(argv):
    with pytest.raises(SystemExit):
        parse_args(argv)
