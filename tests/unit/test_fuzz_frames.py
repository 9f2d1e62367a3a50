"""The hostile-frame generator of the fuzz tests: reproducible, covering every field."""

from __future__ import annotations

from tests.support.fuzz import HostileFrames

VALID = [{"type": "message", "content": "hi", "conversation_id": 1}, {"type": "ping"}]


def frames(seed: int) -> HostileFrames:
    return HostileFrames(
        VALID, max_frame_bytes=2000, max_json_depth=8, text_limits={"content": 100}, seed=seed
    )


def test_the_same_seed_gives_the_same_cases_in_the_same_order():
    assert frames(7).generate(300) == frames(7).generate(300)
    assert frames(7).generate(300) != frames(8).generate(300)


def test_every_field_of_every_frame_gets_a_wrong_type():
    cases = frames(1).systematic()
    kinds = {case.kind for case in cases}
    assert {"field:type", "field:content", "field:conversation_id", "missing:content"} <= kinds
    wrong_ids = {case.payload for case in cases if case.kind == "field:conversation_id"}
    for value in ("null", "true", '"42"', "1.5", "-1", "9007199254740993", "NaN", "1e999"):
        assert any(f'"conversation_id": {value}' in payload for payload in wrong_ids), value


def test_frames_that_no_protocol_may_accept_are_marked():
    cases = {case.kind: case for case in frames(1).systematic()}
    assert cases["too_deep:arrays"].must_refuse and cases["size:frame_over_limit"].must_refuse
    assert len(cases["size:frame_over_limit"].payload.encode()) == 2001
    assert len(cases["size:frame_at_limit"].payload.encode()) == 2000
    assert not cases["size:frame_at_limit"].must_refuse
    assert cases["binary:empty"].binary and cases["binary:empty"].must_refuse


def test_lone_surrogates_travel_escaped_and_other_text_raw():
    payloads = [c.payload for c in frames(1).systematic() if c.kind == "field:content"]
    assert any('"\\ud800"' in p for p in payloads)
    assert any("😀" in p for p in payloads)
    for payload in payloads:
        payload.encode()  # every text frame is valid UTF-8 (raises otherwise)
