"""voice/realtime.py: a Realtime API session through the openai package, against real fakeai."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import numpy as np
import pytest

from realtime import llm
from tests.support import processes
from tests.support.voice import RealtimeLog, silence
from voice import realtime
from voice.realtime import (
    AudioDelta,
    ErrorEvent,
    InputCommitted,
    RealtimeError,
    RealtimeSession,
    ResponseDone,
    ResponseStarted,
    SpeechStarted,
    SpeechStopped,
    TextDelta,
    TranscriptDelta,
    Truncated,
)

RATE = 24_000
TENTH_OF_SILENCE = b"\0\0" * (RATE // 10)


def tone(seconds: float) -> bytes:
    t = np.arange(int(RATE * seconds)) / RATE
    return (0.3 * 32767 * np.sin(2 * np.pi * 220 * t)).astype("<i2").tobytes()


@pytest.fixture
async def upstream(settings, fakeai_url):
    """The session's settings point at fakeai, with no retries and short timeouts."""
    settings.OPENAI_BASE_URL = fakeai_url
    settings.OPENAI_API_KEY = "test-key"
    settings.REALTIME_MODEL = "fakeai"
    settings.LLM_MAX_RETRIES = 0
    settings.LLM_RETRY_BASE_SECONDS = 0.01
    settings.LLM_TIMEOUT_SECONDS = 2
    settings.LLM_CONNECT_TIMEOUT_SECONDS = 2
    llm.reset_clients()
    yield Upstream(fakeai_url)
    await llm.close_client()
    llm.reset_clients()


class Upstream(RealtimeLog):
    """What fakeai saw, asked about a session object."""

    async def events(self, session: RealtimeSession) -> list[dict[str, Any]]:
        return await super().events(session.session_id)

    async def sent(self, session: RealtimeSession, type_: str) -> list[dict[str, Any]]:
        return [e for e in await self.events(session) if e["type"] == type_]


def unique_model(controls: str) -> str:
    """A model name of its own, so fakeai's "first K" fault counts start afresh."""
    return f"fakeai-{uuid.uuid4().hex[:8]}:{controls}"


async def collect(session: RealtimeSession, until=ResponseDone, timeout: float = 15.0):
    """[(arrival time, event)] up to and including the first `until` event."""
    got: list[tuple[float, Any]] = []
    async with asyncio.timeout(timeout):
        async for event in session.events():
            got.append((time.monotonic(), event))
            if isinstance(event, until):
                return got
    raise AssertionError(f"events ended before {until.__name__}: {got}")


def only(got, kind) -> list[Any]:
    return [event for _, event in got if isinstance(event, kind)]


async def speak(session: RealtimeSession, pcm: bytes) -> None:
    """Send audio as a microphone would: a tenth of a second at a time."""
    step = len(TENTH_OF_SILENCE)
    for start in range(0, len(pcm), step):
        await session.append_audio(pcm[start : start + step])


# --- turns -------------------------------------------------------------------------
async def test_a_spoken_turn_streams_audio_in_real_time_then_completes_in_order(upstream):
    async with RealtimeSession.open(model="fakeai:tokens=0", transcription=True) as session:
        await speak(session, silence(1.0))
        await session.commit()
        asked = time.monotonic()
        await session.create_response()
        got = await collect(session)
    events = [event for _, event in got]
    kinds = [type(event).__name__ for event in events]
    first_audio = kinds.index("AudioDelta")
    assert isinstance(events[0], InputCommitted)
    assert kinds.index("ResponseStarted") < first_audio < len(kinds) - 1
    assert isinstance(events[-1], ResponseDone) and events[-1].status == "completed"
    assert events[-1].usage["output_tokens"] > 0

    user = [e for e in only(got, TranscriptDelta) if e.role == "user"]
    assert user[-1].final and user[-1].text == "heard 1.00 s of audio"
    assert user[-1].item_id == events[0].item_id
    assistant = [e for e in only(got, TranscriptDelta) if e.role == "assistant"]
    assert [e.final for e in assistant] == [False] * (len(assistant) - 1) + [True]
    assert "".join(e.delta for e in assistant) == "Echo: heard 1.00 s of audio (turn 1)"
    assert assistant[-1].text == "Echo: heard 1.00 s of audio (turn 1)"
    assert kinds.index("TranscriptDelta", first_audio) < len(kinds) - 1

    audio = [(at, e) for at, e in got if isinstance(e, AudioDelta)]
    assert len({e.item_id for _, e in audio}) == 1
    assert audio[0][1].item_id == assistant[0].item_id
    seconds = sum(len(e.audio) for _, e in audio) / 2 / RATE
    assert seconds > 2  # eight words of speech
    # Real time: each 100 ms of audio arrives when it is due, not in a burst.
    span = audio[-1][0] - audio[0][0]
    assert 0.9 * (seconds - 0.1) <= span <= seconds + 0.5
    assert audio[0][0] - asked < 0.5


async def test_a_text_message_gets_a_spoken_answer(upstream):
    async with RealtimeSession.open(model="fakeai:tokens=0,pace=0") as session:
        await session.send_text("hello")
        await session.create_response()
        got = await collect(session)
    final = only(got, TranscriptDelta)[-1]
    assert (final.role, final.final, final.text) == ("assistant", True, "Echo: hello (turn 1)")
    assert only(got, AudioDelta)


async def test_text_output_streams_text_and_no_audio(upstream):
    async with RealtimeSession.open(model="fakeai:tokens=0,pace=0", output="text") as session:
        await session.send_text("hello")
        await session.create_response()
        got = await collect(session)
    texts = only(got, TextDelta)
    assert "".join(t.delta for t in texts) == "Echo: hello (turn 1)"
    assert texts[-1].final and texts[-1].text == "Echo: hello (turn 1)"
    assert not only(got, AudioDelta)


async def test_the_user_transcript_comes_only_when_transcription_is_enabled(upstream):
    async with RealtimeSession.open(model="fakeai:pace=0", transcription=False) as session:
        await speak(session, silence(0.5))
        await session.commit()
        await session.create_response()
        got = await collect(session)
        (update,) = await upstream.sent(session, "session.update")
    assert only(got, InputCommitted)
    assert [e.role for e in only(got, TranscriptDelta)] == ["assistant"] * len(
        only(got, TranscriptDelta)
    )
    assert update["session"]["audio"]["input"]["transcription"] is None

    async with RealtimeSession.open(model="fakeai:pace=0", transcription=True) as session:
        await speak(session, silence(0.5))
        await session.commit()
        got = await collect(session, until=TranscriptDelta)
        while not got[-1][1].final:
            got += await collect(session, until=TranscriptDelta)
    assert got[-1][1].role == "user" and got[-1][1].text == "heard 0.50 s of audio"


async def test_the_session_speaks_the_ga_protocol(upstream, settings):
    settings.REALTIME_VOICE = "cedar"
    async with RealtimeSession.open(instructions="Be brief.", model="fakeai:pace=0") as session:
        await session.append_audio(silence(0.2))
        sent = await upstream.events(session)
    connect, update, append = sent[0], sent[1], sent[2]
    assert connect["_fakeai"]["model"] == "fakeai:pace=0"
    assert connect["_fakeai"]["authorization"] is True
    assert connect["_fakeai"]["openai_beta"] is None  # GA: no beta header
    config = update["session"]
    assert config["type"] == "realtime"
    assert config["instructions"] == "Be brief."
    assert config["output_modalities"] == ["audio"]
    pcm = {"type": "audio/pcm", "rate": 24000}
    assert config["audio"]["input"]["format"] == pcm
    assert config["audio"]["output"] == {"format": pcm, "voice": "cedar"}
    # Local VAD decides turns: the server's (the GA default) is switched off.
    assert config["audio"]["input"]["turn_detection"] is None
    assert config["audio"]["input"]["transcription"] == {"model": "gpt-4o-mini-transcribe"}
    assert append["type"] == "input_audio_buffer.append"
    assert append["_fakeai"]["audio_bytes"] == len(silence(0.2))


async def test_with_server_vad_the_upstream_reports_speech_and_answers_on_its_own(upstream):
    async with RealtimeSession.open(
        model="fakeai:tokens=0,pace=0", server_vad=True, transcription=False
    ) as session:
        await speak(session, silence(0.5) + tone(0.6) + silence(0.7))
        got = await collect(session)
    events = [event for _, event in got]
    started, stopped, committed = events[:3]
    assert started == SpeechStarted(item_id=committed.item_id, audio_start_ms=200)
    assert stopped == SpeechStopped(item_id=committed.item_id, audio_end_ms=1600)
    assert isinstance(committed, InputCommitted)
    assert isinstance(events[3], ResponseStarted)
    assert events[-1].status == "completed"


# --- barge-in ----------------------------------------------------------------------
async def test_cancel_stops_the_audio_at_once(upstream):
    async with RealtimeSession.open(model="fakeai:tokens=40") as session:
        await session.send_text("tell me a long story")
        await session.create_response()
        got = await collect(session, until=AudioDelta)
        got += await collect(session, until=AudioDelta)
        got += await collect(session, until=AudioDelta)
        cancelled_at = time.monotonic()
        assert await session.cancel_response() is True
        after = await collect(session)
        assert await session.cancel_response() is False  # nothing left to stop
        (cancel,) = await upstream.sent(session, "response.cancel")
    done = after[-1][1]
    assert (done.status, done.reason) == ("cancelled", "client_cancelled")
    assert after[-1][0] - cancelled_at < 0.3
    assert len(only(after, AudioDelta)) <= 1  # at most one already on its way
    assert 250 <= cancel["_fakeai"]["audio_ms_sent"] <= 500


async def test_truncate_tells_the_upstream_how_much_was_played(upstream):
    async with RealtimeSession.open(model="fakeai:tokens=40,pace=2") as session:
        await session.send_text("tell me a long story")
        await session.create_response()
        got = await collect(session, until=AudioDelta)
        for _ in range(4):
            got += await collect(session, until=AudioDelta)
        await session.cancel_response()
        await collect(session)
        item_id = only(got, AudioDelta)[0].item_id
        await session.truncate(item_id, 240)
        (truncated,) = only(await collect(session, until=Truncated), Truncated)
        (sent,) = await upstream.sent(session, "conversation.item.truncate")
    assert truncated == Truncated(item_id=item_id, audio_end_ms=240)
    assert (sent["item_id"], sent["content_index"], sent["audio_end_ms"]) == (item_id, 0, 240)


async def test_a_refused_answer_is_not_awaited(upstream, settings):
    settings.LLM_TIMEOUT_SECONDS = 0.5
    async with RealtimeSession.open(model="fakeai:tokens=0,pace=4") as session:
        await session.send_text("hi")
        await session.create_response()
        await collect(session, until=ResponseStarted)
        await session.create_response()  # refused: one answer at a time
        got = await collect(session)
        (refused,) = only(got, ErrorEvent)
        assert refused.code == "bad_request"
        assert got[-1][1].status == "completed"  # the first answer was not disturbed
        assert not session.response_active
        # Idle, nothing due: no timeout however long nothing comes.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(collect(session, until=ErrorEvent), 1.0)
        assert not session.closed


async def test_a_refused_configuration_fails_the_opening(upstream):
    with pytest.raises(RealtimeError) as raised:
        await RealtimeSession.connect(output="video")  # type: ignore[arg-type]
    assert (raised.value.code, raised.value.retryable) == ("bad_request", False)
    assert "output_modalities" in raised.value.message
    await asyncio.sleep(0.1)
    assert (await upstream.stats())["active"] == 0


async def test_one_reader_at_a_time(upstream):
    async with RealtimeSession.open(model="fakeai:pace=0") as session:
        first = asyncio.create_task(collect(session))
        await asyncio.sleep(0.05)
        with pytest.raises(RuntimeError, match="already being read"):
            await collect(session)
        await session.send_text("hi")
        await session.create_response()
        assert (await first)[-1][1].status == "completed"  # the first reader carries on


# --- faults ------------------------------------------------------------------------
async def test_an_upstream_error_event_is_mapped_and_the_session_goes_on(upstream):
    async with RealtimeSession.open(model="fakeai:pace=0,fault=error-2") as session:
        await session.send_text("hi")
        await session.create_response()
        got = await collect(session)
        assert len(only(got, AudioDelta)) == 2
        (error,) = only(got, ErrorEvent)
        assert (error.code, error.retryable) == ("upstream_error", True)
        assert "fakeai injected fault" in error.message
        assert got[-1][1].status == "failed"
        # Still open: a refused event is a bad request, not a broken session.
        await session.truncate("item_unknown", 0)
        (refused,) = only(await collect(session, until=ErrorEvent), ErrorEvent)
    assert (refused.code, refused.retryable) == ("bad_request", False)


async def test_a_connection_dropped_mid_answer_is_a_mapped_error(upstream):
    async with RealtimeSession.open(model="fakeai:pace=0,fault=cut-3") as session:
        await session.send_text("hi")
        await session.create_response()
        audio = 0
        with pytest.raises(RealtimeError) as raised:
            async for event in session.events():
                audio += isinstance(event, AudioDelta)
        assert session.closed
    assert audio == 3
    error = raised.value
    assert (error.code, error.message, error.retryable) == (
        "upstream_error",
        "The connection to the model service broke.",
        True,
    )


async def test_an_answer_that_stops_coming_is_a_timeout(upstream, settings):
    settings.LLM_TIMEOUT_SECONDS = 0.5
    async with RealtimeSession.open(model="fakeai:pace=0,fault=hang-2") as session:
        await session.send_text("hi")
        await session.create_response()
        with pytest.raises(RealtimeError) as raised:
            await collect(session)
    assert (raised.value.code, raised.value.message) == (
        "timeout",
        "The model took too long to answer.",
    )


async def test_an_unreadable_frame_ends_the_session_with_an_upstream_error(upstream):
    async with RealtimeSession.open(model="fakeai:pace=0,fault=malformed-1") as session:
        await session.send_text("hi")
        await session.create_response()
        with pytest.raises(RealtimeError) as raised:
            await collect(session)
        assert session.closed
    assert raised.value.message == "The model service sent a response we could not read."


async def test_a_refused_connection_is_an_unreachable_model(upstream, settings):
    settings.OPENAI_BASE_URL = f"http://127.0.0.1:{processes.free_port()}/v1"
    llm.reset_clients()
    with pytest.raises(RealtimeError) as raised:
        await RealtimeSession.connect()
    assert (raised.value.code, raised.value.message, raised.value.retryable) == (
        "upstream_error",
        "Cannot reach the model service.",
        True,
    )


async def test_a_session_that_never_starts_is_a_timeout(upstream, settings):
    settings.LLM_TIMEOUT_SECONDS = 0.5
    with pytest.raises(RealtimeError) as raised:
        await RealtimeSession.connect(model="fakeai:fault=hang")
    assert raised.value.code == "timeout"


@pytest.mark.parametrize(
    ("fault", "code", "retryable", "message"),
    [
        ("401", "bad_request", False, "The model service refused the API key (HTTP 401)."),
        ("429-retry=0.05", "rate_limited", True, "The model is rate limited; try again shortly."),
        ("500", "upstream_error", True, "The model service failed (HTTP 500)."),
    ],
)
async def test_a_refused_handshake_is_mapped(upstream, fault, code, retryable, message):
    with pytest.raises(RealtimeError) as raised:
        await RealtimeSession.connect(model=unique_model(f"fault={fault}"))
    assert (raised.value.code, raised.value.retryable, raised.value.message) == (
        code,
        retryable,
        message,
    )
    if code == "rate_limited":
        assert raised.value.retry_after == 0.05


async def test_a_refused_handshake_is_retried_only_when_retrying_can_help(upstream, settings):
    settings.LLM_MAX_RETRIES = 2
    before = (await upstream.stats())["faults"]
    async with RealtimeSession.open(model=unique_model("fault=429-retry=0.01x2")) as session:
        assert session.session_id.startswith("sess_")
    assert (await upstream.stats())["faults"] - before == 2

    before = (await upstream.stats())["faults"]
    with pytest.raises(RealtimeError, match="API key"):
        await RealtimeSession.connect(model=unique_model("fault=401"))
    assert (await upstream.stats())["faults"] - before == 1


# --- closing -----------------------------------------------------------------------
async def test_closing_mid_answer_closes_the_upstream_at_once_and_leaves_no_task(upstream):
    before = asyncio.all_tasks()
    session = await RealtimeSession.connect(model="fakeai:tokens=40")
    await session.send_text("tell me a long story")
    await session.create_response()
    speaking = asyncio.Event()

    async def read() -> None:
        async for event in session.events():
            if isinstance(event, AudioDelta):
                speaking.set()

    reader = asyncio.create_task(read())
    await asyncio.wait_for(speaking.wait(), 5)
    closing = time.monotonic()
    await session.close()
    assert time.monotonic() - closing < 0.5
    await asyncio.wait_for(reader, 1)  # the reader ends quietly
    stats = await upstream.stats()
    assert stats["active"] == 0
    (closed,) = await upstream.sent(session, "fakeai.close")
    assert (closed["_fakeai"]["by"], closed["_fakeai"]["response_active"]) == ("client", True)
    with pytest.raises(RealtimeError, match="closed") as raised:
        await session.append_audio(TENTH_OF_SILENCE)
    assert raised.value.retryable is False
    await asyncio.sleep(0)
    assert asyncio.all_tasks() - before == set()


async def test_shutdown_closes_every_open_session(upstream):
    sessions = [await RealtimeSession.connect(model="fakeai") for _ in range(2)]
    await realtime.close_all_sessions()
    assert all(session.closed for session in sessions)
    assert (await upstream.stats())["active"] == 0
