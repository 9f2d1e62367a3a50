"""The voice WebSocket against the real app and fakeai's Realtime endpoint.

Microphone audio is real speech from espeak-ng; the VAD is the configured
default (`foreground`: Silero with a level gate over talking backgrounds).
fakeai answers with speech of its own (espeak-ng too), paced in real time
where a test needs the answer to be playing.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from channels.testing import WebsocketCommunicator

from chat.models import Conversation
from realtime_site.asgi import application
from tests.consumers.conftest import make_user_with_token
from tests.support.voice import (
    FRAME_MS,
    OTHER_PERSON,
    RATE,
    RealtimeLog,
    VoiceClient,
    attenuate,
    silence,
    speech,
)
from voice import audio
from voice.consumers import CLOSE_UPSTREAM_FAILED
from voice.models import VoiceSession, VoiceTurn

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

QUICK = "fakeai:tokens=6,pace=0"
# Long enough to be talked over: ~20 words of speech, streamed in real time.
PLAYING = "fakeai:tokens=20,pace=1"
QUESTION = "what is the weather like in paris today"


@pytest.fixture(autouse=True)
def voice_settings(settings):
    settings.REALTIME_MODEL = QUICK
    settings.LLM_MAX_RETRIES = 0
    settings.VOICE_TRANSCRIPT_WAIT_SECONDS = 2
    return settings


@pytest.fixture
def fakeai(fakeai_url) -> RealtimeLog:
    return RealtimeLog(fakeai_url)


async def open_voice(token: str | None) -> tuple[VoiceClient, dict]:
    headers = [(b"host", b"testserver")]
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    communicator = WebsocketCommunicator(application, "/ws/voice/", headers=headers)
    connected, _ = await communicator.connect()
    assert connected
    client = VoiceClient(communicator)
    return client, await client.receive()


@pytest.fixture
async def voice(voice_settings):
    """A signed-in person's voice socket, open, its `session` event read."""
    _, token = await make_user_with_token("speaker")
    client, first = await open_voice(token)
    assert first["type"] == "session", first
    client.session = first
    yield client
    await client.close()


async def upstream_id(client: VoiceClient) -> str:
    row = await VoiceSession.objects.aget(pk=client.session["session_id"])
    return row.upstream_session_id


async def speak_turn(client: VoiceClient, text: str = QUESTION, **kwargs) -> None:
    """Silence, an utterance, and enough silence after it to end the turn."""
    await client.send_audio(silence(0.4) + speech(text, **kwargs) + silence(0.8))


# --- opening and closing ---------------------------------------------------------------
async def test_anonymous_socket_is_closed_4401_and_opens_no_upstream(fakeai):
    before = (await fakeai.stats())["sessions"]
    communicator = WebsocketCommunicator(
        application,
        "/ws/voice/",
        headers=[(b"host", b"testserver"), (b"origin", b"http://testserver")],
    )
    connected, _ = await communicator.connect()
    assert connected
    closed = await communicator.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": 4401}
    assert (await fakeai.stats())["sessions"] == before
    assert await VoiceSession.objects.acount() == 0


async def test_session_event_names_model_vad_and_audio_format(voice):
    assert voice.session["model"] == QUICK
    assert voice.session["vad_backend"] == "foreground"
    assert voice.session["sample_rate"] == RATE
    row = await VoiceSession.objects.aget(pk=voice.session["session_id"])
    assert row.status == VoiceSession.Status.ACTIVE
    assert row.upstream_session_id


async def test_leaving_closes_the_upstream_at_once_and_leaves_no_task(voice, fakeai):
    session_id = await upstream_id(voice)
    tasks_before = asyncio.all_tasks()
    await voice.close()
    stats = await fakeai.stats()
    assert stats["active"] == 0
    assert "_closed" in await fakeai.types(session_id) or stats["active"] == 0
    row = await VoiceSession.objects.aget(pk=voice.session["session_id"])
    assert row.status == VoiceSession.Status.ENDED and row.ended_at is not None
    left = {t for t in asyncio.all_tasks() - tasks_before if not t.done()}
    assert left == set()


# --- a spoken turn ---------------------------------------------------------------------------
async def test_a_spoken_turn_goes_vad_commit_answer_in_order(voice, fakeai):
    await speak_turn(voice)
    events = await voice.receive_until(
        lambda e: e["type"] == "response" and e["status"] == "completed"
    )
    kinds = [e["type"] if e["type"] != "vad" else e["state"] for e in events]
    order = ["speech_started", "speech_stopped", "response", "audio_start", "latency"]
    positions = [kinds.index(kind) for kind in order]
    assert positions == sorted(positions), kinds
    assert kinds[-1] == "response"
    assert len(voice.audio) > 0 and len(voice.audio) % 2 == 0
    started, stopped = (e for e in events if e["type"] == "vad")
    # The utterance starts 0.4 s in and lasts about 2 s, on the audio's own clock.
    assert 300 <= started["at_ms"] <= 600
    assert started["at_ms"] + 1000 <= stopped["at_ms"] <= started["at_ms"] + 4000
    # Upstream: the speech went up while spoken, then one commit, then one response.create.
    sent = await fakeai.types(await upstream_id(voice))
    assert sent.index("input_audio_buffer.commit") < sent.index("response.create")
    assert sent.count("input_audio_buffer.commit") == 1
    last_append = len(sent) - 1 - sent[::-1].index("input_audio_buffer.append")
    assert last_append < sent.index("input_audio_buffer.commit")


async def test_the_assistant_transcript_streams_and_matches_the_final_text(voice):
    await speak_turn(voice)
    events = await voice.receive_until(
        lambda e: e["type"] == "response" and e["status"] == "completed"
    )
    said = [e for e in events if e["type"] == "transcript" and e["role"] == "assistant"]
    assert len(said) >= 2 and said[-1]["final"] is True
    assert "".join(e["delta"] for e in said[:-1]) + said[-1]["delta"] == said[-1]["text"]


async def test_the_user_transcript_arrives_for_the_spoken_turn(voice):
    await speak_turn(voice)
    events = await voice.receive_until(
        lambda e: e["type"] == "transcript" and e["role"] == "user" and e["final"]
    )
    assert events[-1]["text"].startswith("heard ")


async def test_latency_is_sent_per_turn_with_its_parts(voice):
    await voice.send_audio(silence(0.4) + speech(QUESTION))
    await voice.send_audio(silence(0.8), paced=True)
    latency = (await voice.receive_until("latency"))[-1]
    assert latency["turn"] == 1
    # The VAD's wait for 500 ms of silence (as the paced frames were handled: less
    # on a busy machine, where frames queue), then the upstream's time, then ours.
    assert 0 < latency["vad_wait_ms"] < 2000
    assert latency["upstream_ms"] > 0 and latency["server_ms"] >= 0
    parts = latency["vad_wait_ms"] + latency["upstream_ms"] + latency["server_ms"]
    assert parts <= latency["voice_to_voice_ms"] <= parts + 50


async def test_a_finished_turn_is_stored_and_appears_in_the_chat_history(voice):
    await speak_turn(voice)
    await voice.receive_until(
        lambda e: e["type"] == "transcript" and e["role"] == "user" and e["final"]
    )
    await voice.receive_until(lambda e: e["type"] == "response" and e["status"] == "completed")
    await voice.close()
    turn = await VoiceTurn.objects.aget(session_id=voice.session["session_id"])
    assert turn.status == VoiceTurn.Status.COMPLETED
    assert turn.user_transcript.startswith("heard ")
    assert turn.assistant_transcript
    assert turn.voice_to_voice_ms is not None and turn.user_speech_ms > 1000
    session = await VoiceSession.objects.aget(pk=voice.session["session_id"])
    assert session.turns == 1
    conversation = await Conversation.objects.aget(pk=session.conversation_id)
    messages = [(m.role, m.content) async for m in conversation.messages.order_by("id")]
    assert messages == [
        ("user", turn.user_transcript),
        ("assistant", turn.assistant_transcript),
    ]


async def test_typed_text_is_answered_in_the_same_session(voice, fakeai):
    await voice.send({"type": "text", "content": "Say hello"})
    events = await voice.receive_until(
        lambda e: e["type"] == "response" and e["status"] == "completed"
    )
    assert any(e["type"] == "transcript" and e["role"] == "assistant" for e in events)
    logged = await fakeai.events(await upstream_id(voice))
    created = [e for e in logged if e["type"] == "conversation.item.create"]
    assert created[0]["item"]["content"][0]["text"] == "Say hello"


# --- barge-in -------------------------------------------------------------------------------
async def playing_answer(client: VoiceClient, settings) -> dict:
    """Ask (typed, to keep the microphone free) for a long answer and wait for its audio."""
    await client.send({"type": "text", "content": "Tell me a long story"})
    return (await client.receive_until("audio_start"))[-1]


async def test_speaking_over_the_answer_cancels_and_truncates_it_where_it_was_heard(
    voice, fakeai, settings
):
    settings.REALTIME_MODEL = PLAYING
    await voice.close()
    _, token = await make_user_with_token("talker")
    client, _ = await open_voice(token)
    try:
        start = await playing_answer(client, settings)
        await asyncio.sleep(0.5)
        await client.send({"type": "playback", "item_id": start["item_id"], "played_ms": 400})
        await client.send_audio(
            speech("stop please, I have another question", OTHER_PERSON), paced=True
        )
        interrupted = (await client.receive_until("interrupted"))[-1]
        assert interrupted["item_id"] == start["item_id"]
        # Where the report said, advanced by the time since: the VAD's 100 ms of speech
        # and a 250 ms echo-gate window into the utterance.
        assert 400 + 300 <= interrupted["played_ms"] <= 400 + 1500
        session_id = (await VoiceSession.objects.alatest("started_at")).upstream_session_id
        truncate = await fakeai.first(session_id, "conversation.item.truncate")
        assert "response.cancel" in await fakeai.types(session_id)
        assert truncate["item_id"] == start["item_id"]
        assert truncate["audio_end_ms"] == interrupted["played_ms"]
        # The interrupting utterance is answered.
        await client.send_audio(silence(0.8))
        events = await client.receive_until(
            lambda e: e["type"] == "response" and e["status"] == "started"
        )
        assert events[-1]["turn"] == 2
    finally:
        await client.close()


async def test_the_assistant_echo_in_the_microphone_does_not_interrupt_it(voice, fakeai, settings):
    """The answer comes back into the mic at -10 dB, 120 ms late, as speakers do."""
    settings.REALTIME_MODEL = PLAYING
    await voice.close()
    _, token = await make_user_with_token("listener")
    client, _ = await open_voice(token)
    try:
        start = await playing_answer(client, settings)
        heard = await echo_back(client, start["item_id"], seconds=3.0, delay_ms=120, level_db=-10)
        assert heard > 2 * RATE
        # The VAD heard the echo as speech; the gate kept it from interrupting.
        assert any(e.get("state") == "speech_started" for e in client.events)
        assert not any(e["type"] == "interrupted" for e in client.events)
        session_id = (await VoiceSession.objects.alatest("started_at")).upstream_session_id
        kinds = await fakeai.types(session_id)
        assert "response.cancel" not in kinds and "conversation.item.truncate" not in kinds
        assert kinds.count("input_audio_buffer.commit") == 0
    finally:
        await client.close()


async def echo_back(
    client: VoiceClient,
    item_id: str,
    *,
    seconds: float,
    delay_ms: float,
    level_db: float,
    person: bytes = b"",
    person_at_s: float = 0.0,
    until_interrupted: bool = False,
) -> int:
    """Play the answer as it arrives and feed it back as the microphone, in real time.

    Reports `playback` every 100 ms like the page; mixes `person` in from
    `person_at_s`; returns the samples echoed.
    """
    voice_over = audio.pcm16_to_float(person)
    person_from = int(person_at_s * RATE)
    loop = asyncio.get_running_loop()
    started = loop.time()
    delay = int(RATE * delay_ms / 1000)
    frame = RATE * FRAME_MS // 1000
    echoed = 0
    for index in range(int(seconds * 1000 / FRAME_MS)):
        await asyncio.sleep(max(0.0, started + index * FRAME_MS / 1000 - loop.time()))
        while not await client.ws.receive_nothing(timeout=0, interval=0):
            await client.receive()  # what has arrived (audio is kept in client.audio)
        played = index * frame
        begin, end = max(0, played - delay), max(0, played + frame - delay)
        chunk = attenuate(bytes(client.audio[begin * 2 : end * 2]), level_db)
        chunk = np.concatenate([np.zeros(frame - len(chunk), dtype=np.float32), chunk])
        echoed += int(np.count_nonzero(chunk))
        spoken = voice_over[max(0, played - person_from) : max(0, played + frame - person_from)]
        chunk[frame - len(spoken) :] += spoken
        if until_interrupted and any(e["type"] == "interrupted" for e in client.events):
            break
        await client.ws.send_to(bytes_data=audio.float_to_pcm16(chunk))
        if index % 5 == 0:
            played_ms = min(played, len(client.audio) // 2) * 1000 // RATE
            await client.send({"type": "playback", "item_id": item_id, "played_ms": played_ms})
    return echoed


async def test_a_person_speaking_over_the_echo_still_interrupts(voice, fakeai, settings):
    settings.REALTIME_MODEL = PLAYING
    await voice.close()
    _, token = await make_user_with_token("barger")
    client, _ = await open_voice(token)
    try:
        start = await playing_answer(client, settings)
        interruption = speech("wait, that is not what I asked", OTHER_PERSON, level_db=-18)
        await echo_back(
            client,
            start["item_id"],
            seconds=4.0,
            delay_ms=120,
            level_db=-10,
            person=interruption,
            person_at_s=1.0,
            until_interrupted=True,
        )
        interrupted = [e for e in client.events if e["type"] == "interrupted"]
        assert len(interrupted) == 1
        # Cut after the person began (1 s in), within a few judgement windows.
        assert 1000 <= interrupted[0]["played_ms"] <= 2500
        session_id = (await VoiceSession.objects.alatest("started_at")).upstream_session_id
        truncate = await fakeai.first(session_id, "conversation.item.truncate")
        assert truncate["audio_end_ms"] == interrupted[0]["played_ms"]
    finally:
        await client.close()


# --- bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"\x01\x02\x03", "invalid_event"),
        (b"\0" * 9602, "too_large"),
    ],
    ids=["odd-bytes", "oversize"],
)
async def test_a_bad_audio_frame_gets_an_error_and_the_session_goes_on(voice, frame, code):
    await voice.ws.send_to(bytes_data=frame)
    error = await voice.receive()
    assert error["type"] == "error" and error["code"] == code
    await voice.send({"type": "ping"})
    assert (await voice.receive())["type"] == "pong"


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "invalid_json"),
        ({"type": "shout"}, "unknown_type"),
        ({"type": "text", "content": ""}, "empty_content"),
        ({"type": "playback"}, "invalid_event"),
        ({"type": "playback", "played_ms": -5}, "invalid_event"),
        ({"type": "config", "vad": {"threshold": 7}}, "invalid_event"),
        ({"type": "config", "vad": {"volume": 1}}, "invalid_event"),
        ({"type": "cancel"}, "not_streaming"),
    ],
    ids=["garbage", "unknown", "empty-text", "no-played", "negative", "threshold", "unknown-vad",
         "cancel-idle"],
)  # fmt: skip
async def test_a_bad_event_gets_an_error_and_the_session_goes_on(voice, frame, code):
    await voice.send(frame)
    error = await voice.receive()
    assert error["type"] == "error" and error["code"] == code, error
    await speak_turn(voice)
    events = await voice.receive_until(
        lambda e: e["type"] == "response" and e["status"] == "completed"
    )
    assert [e for e in events if e["type"] == "error"] == []


async def test_vad_config_applies_to_the_next_utterance(voice):
    await voice.send({"type": "config", "vad": {"min_silence_ms": 1500}})
    # 0.8 s of silence no longer ends the turn.
    await speak_turn(voice)
    await voice.receive_until(lambda e: e.get("state") == "speech_started")
    assert await voice.ws.receive_nothing(timeout=0.5)
    await voice.send_audio(silence(1.0))
    stopped = (await voice.receive_until(lambda e: e.get("state") == "speech_stopped"))[-1]
    assert stopped["type"] == "vad"


async def test_stop_cancels_the_answer_and_tells_the_browser_to_drop_its_audio(voice, settings):
    settings.REALTIME_MODEL = PLAYING
    await voice.close()
    _, token = await make_user_with_token("stopper")
    client, _ = await open_voice(token)
    try:
        start = await playing_answer(client, settings)
        await client.send({"type": "cancel"})
        interrupted = (await client.receive_until("interrupted"))[-1]
        assert interrupted["item_id"] == start["item_id"]
        await client.close()
        turn = await VoiceTurn.objects.alatest("ended_at")
        assert turn.status == VoiceTurn.Status.CANCELLED and turn.input == "text"
    finally:
        await client.close()


# --- upstream faults ---------------------------------------------------------------------------
async def test_an_upstream_error_event_fails_the_answer_but_not_the_session(voice, settings):
    settings.REALTIME_MODEL = "fakeai:tokens=6,pace=0,fault=error-2"
    await voice.close()
    _, token = await make_user_with_token("unlucky")
    client, _ = await open_voice(token)
    try:
        await client.send({"type": "text", "content": "hello"})
        events = await client.receive_until(
            lambda e: e["type"] == "response" and e["status"] != "started"
        )
        assert events[-1]["status"] == "failed"
        error = next(e for e in events if e["type"] == "error")
        assert error["code"] and not error.get("fatal")
        await client.send({"type": "ping"})
        assert (await client.receive_until("pong"))[-1] == {"type": "pong"}
    finally:
        await client.close()


async def test_an_upstream_that_drops_mid_answer_ends_the_session_clearly(voice, settings, fakeai):
    settings.REALTIME_MODEL = "fakeai:tokens=6,pace=0,fault=cut-2"
    await voice.close()
    _, token = await make_user_with_token("dropped")
    client, _ = await open_voice(token)
    await client.send({"type": "text", "content": "hello"})
    events = await client.receive_until(lambda e: e.get("fatal") is True)
    assert events[-1]["code"] == "upstream_error" and events[-1]["retryable"] is True
    assert (await client.receive())["code"] == CLOSE_UPSTREAM_FAILED
    row = await VoiceSession.objects.alatest("started_at")
    for _ in range(50):
        if row.ended_at is not None:
            break
        await asyncio.sleep(0.05)
        row = await VoiceSession.objects.aget(pk=row.pk)
    assert row.status == VoiceSession.Status.ERROR and row.error_code == "upstream_error"
    assert (await fakeai.stats())["active"] == 0


async def test_an_upstream_that_refuses_the_session_gets_a_fatal_error(voice, settings):
    settings.REALTIME_MODEL = "fakeai:fault=500"
    await voice.close()
    _, token = await make_user_with_token("refused")
    client, first = await open_voice(token)
    assert first["type"] == "error" and first["fatal"] is True
    assert first["code"] == "upstream_error"
    assert (await client.receive())["code"] == CLOSE_UPSTREAM_FAILED
    row = await VoiceSession.objects.alatest("started_at")
    assert row.status == VoiceSession.Status.ERROR


# --- the Realtime service's own VAD ------------------------------------------------------------
async def test_with_server_turn_detection_the_services_vad_ends_the_turn(voice, settings, fakeai):
    settings.VOICE_TURN_DETECTION = "server"
    await voice.close()
    _, token = await make_user_with_token("server-vad")
    client, first = await open_voice(token)
    try:
        assert first["vad_backend"] == "server"
        await speak_turn(client)
        events = await client.receive_until(
            lambda e: e["type"] == "response" and e["status"] == "completed"
        )
        states = [e["state"] for e in events if e["type"] == "vad"]
        assert states[:2] == ["speech_started", "speech_stopped"]
        assert any(e["type"] == "audio_start" for e in events)
        latency = next(e for e in events if e["type"] == "latency")
        assert latency["voice_to_voice_ms"] > 0  # from the service's speech_stopped
        session_id = (await VoiceSession.objects.alatest("started_at")).upstream_session_id
        kinds = await fakeai.types(session_id)
        # Every frame went up; the service committed and answered on its own.
        assert "input_audio_buffer.commit" not in kinds and "response.create" not in kinds
        update = await fakeai.first(session_id, "session.update")
        assert update["session"]["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    finally:
        await client.close()
