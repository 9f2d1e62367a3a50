"""fakeai's Realtime endpoint, driven with a plain websockets client: the GA protocol it speaks."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
import websockets
from aiohttp.test_utils import TestClient, TestServer
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from fakeai import Behaviour, create_app, resolve_behaviour
from fakeai.behaviour import Fault, parse_fault
from fakeai.speech import RATE, EnergyGate, load_tape, tone_tape

FAST = Behaviour(ttft_ms=0, tokens_per_second=0, tokens=12)
SILENCE_1S = b"\0\0" * RATE
LOCAL_VAD = {"turn_detection": None}


def pcm_tone(seconds: float, *, amplitude: float = 0.3, hz: float = 220.0) -> bytes:
    t = np.arange(int(RATE * seconds)) / RATE
    return (amplitude * 32767 * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()


def b64(pcm: bytes) -> str:
    return base64.b64encode(pcm).decode()


@pytest_asyncio.fixture
async def http() -> AsyncIterator[TestClient]:
    client = TestClient(TestServer(create_app(FAST)))
    await client.start_server()
    yield client
    await client.close()


class Realtime:
    """A bare client of the endpoint: JSON events out, JSON events in."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.session: dict[str, Any] = {}

    async def send(self, type_: str, **fields: Any) -> None:
        await self.ws.send(json.dumps({"type": type_, **fields}))

    async def next(self, timeout: float = 5.0) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def until(self, type_: str, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Every event up to and including the first of `type_`."""
        events = []
        async with asyncio.timeout(timeout):
            while True:
                events.append(await self.next(timeout))
                if events[-1]["type"] == type_:
                    return events

    async def configure(self, **session: Any) -> dict[str, Any]:
        audio = {"input": session.pop("input", LOCAL_VAD)}
        await self.send("session.update", session={"type": "realtime", "audio": audio, **session})
        (updated,) = await self.until("session.updated")
        return updated["session"]


@pytest_asyncio.fixture
async def connect(http: TestClient):
    """connect(model, headers=...) → an open `Realtime` (session.created already read)."""
    sockets = []

    async def open_(model: str = "fakeai", **kwargs: Any) -> Realtime:
        url = str(http.make_url("/v1/realtime")).replace("http", "ws", 1)
        ws = await websockets.connect(f"{url}?model={model}", **kwargs)
        sockets.append(ws)
        client = Realtime(ws)
        created = await client.next()
        assert created["type"] == "session.created"
        client.session = created["session"]
        return client

    yield open_
    for ws in sockets:
        await ws.close()


async def get_json(http: TestClient, path: str) -> Any:
    response = await http.get(path)
    return await response.json()


async def client_events(http: TestClient, session_id: str) -> list[dict[str, Any]]:
    return await get_json(http, f"/_fakeai/realtime/events?session={session_id}")


def types(events: list[dict[str, Any]]) -> list[str]:
    """Event types, runs of the same delta type collapsed to one."""
    out: list[str] = []
    for event in events:
        if not (out and out[-1] == event["type"] and event["type"].endswith(".delta")):
            out.append(event["type"])
    return out


async def commit_one_second(rt: Realtime) -> str:
    await rt.send("input_audio_buffer.append", audio=b64(SILENCE_1S))
    await rt.send("input_audio_buffer.commit")
    committed = await rt.until("input_audio_buffer.committed")
    return committed[-1]["item_id"]


# --- the session ----------------------------------------------------------------------
async def test_a_session_opens_with_the_ga_defaults_and_needs_no_beta_header(connect):
    rt = await connect()
    session = rt.session
    assert session["type"] == "realtime" and session["id"].startswith("sess_")
    assert session["output_modalities"] == ["audio"]
    assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
    # As the GA API: the server's VAD decides turns until told otherwise; no transcript.
    assert session["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert session["audio"]["input"]["transcription"] is None


async def test_session_update_is_applied_echoed_and_logged(connect, http):
    rt = await connect()
    session = await rt.configure(
        instructions="Be brief.",
        output_modalities=["text"],
        input={"turn_detection": None, "transcription": {"model": "gpt-4o-mini-transcribe"}},
    )
    assert session["instructions"] == "Be brief."
    assert session["output_modalities"] == ["text"]
    assert session["audio"]["input"]["turn_detection"] is None
    assert session["audio"]["input"]["transcription"] == {"model": "gpt-4o-mini-transcribe"}
    assert session["audio"]["output"]["voice"] == "marin"  # untouched keys stay
    logged = [
        e for e in await client_events(http, rt.session["id"]) if e["type"] != "fakeai.connect"
    ]
    assert logged[0]["type"] == "session.update"
    assert logged[0]["session"]["instructions"] == "Be brief."


@pytest.mark.parametrize(
    ("session", "code", "param"),
    [
        ({"instructions": "no type"}, "missing_required_parameter", "session.type"),
        ({"type": "transcription"}, "invalid_value", "session.type"),
        # Beta-protocol field names are refused, as the GA API does.
        ({"type": "realtime", "modalities": ["audio"]}, "unknown_parameter", "session.modalities"),
        ({"type": "realtime", "input_audio_format": "pcm16"}, "unknown_parameter", None),
        (
            {
                "type": "realtime",
                "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}},
            },
            "invalid_value",
            "session.audio.input.format.rate",
        ),
        ({"type": "realtime", "output_modalities": ["audio", "text"]}, "invalid_value", None),
    ],
)
async def test_a_bad_session_update_gets_an_error_naming_the_client_event(
    connect, session, code, param
):
    rt = await connect()
    await rt.send("session.update", session=session, event_id="evt_client_1")
    error = await rt.next()
    assert error["type"] == "error" and error["event_id"].startswith("event_")
    assert error["error"]["type"] == "invalid_request_error"
    assert error["error"]["code"] == code
    assert error["error"]["event_id"] == "evt_client_1"
    if param is not None:
        assert error["error"]["param"] == param
    assert error["error"]["message"]


async def test_bad_frames_get_errors_and_the_socket_stays_open(connect):
    rt = await connect()
    await rt.ws.send("{not json")
    assert (await rt.next())["error"]["code"] == "invalid_json"
    await rt.send("no.such.event")
    unknown = await rt.next()
    assert (unknown["error"]["code"], unknown["error"]["param"]) == ("invalid_value", "type")
    await rt.ws.send(b"\x00\x01")
    assert (await rt.next())["type"] == "error"
    await rt.configure()  # still answering


async def test_a_socket_without_a_model_is_refused(http):
    url = str(http.make_url("/v1/realtime")).replace("http", "ws", 1)
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(url)
    assert refused.value.response.status_code == 400


# --- input audio --------------------------------------------------------------------
async def test_commit_makes_a_user_item_of_the_buffered_audio(connect, http):
    rt = await connect()
    await rt.configure()
    pcm = pcm_tone(0.5)
    await rt.send("input_audio_buffer.append", audio=b64(pcm[: len(pcm) // 2]))
    await rt.send("input_audio_buffer.append", audio=b64(pcm[len(pcm) // 2 :]))
    await rt.send("input_audio_buffer.commit")
    events = await rt.until("conversation.item.done")
    assert types(events) == [
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
    ]
    item_id = events[0]["item_id"]
    assert events[1]["item"]["id"] == item_id
    assert events[1]["item"]["role"] == "user"
    assert events[1]["item"]["content"] == [{"type": "input_audio", "transcript": None}]
    # What the client sent, as fakeai heard it.
    audio = await http.get(f"/_fakeai/realtime/audio/{item_id}")
    assert await audio.read() == pcm
    logged = await client_events(http, rt.session["id"])
    appends = [e for e in logged if e["type"] == "input_audio_buffer.append"]
    assert [e["_fakeai"]["audio_bytes"] for e in appends] == [len(pcm) // 2] * 2
    assert all("audio" not in e for e in appends)
    (commit,) = [e for e in logged if e["type"] == "input_audio_buffer.commit"]
    assert commit["_fakeai"]["audio_ms"] == 500.0


async def test_too_little_audio_is_not_committed_and_clear_empties_the_buffer(connect):
    rt = await connect()
    await rt.configure()
    await rt.send("input_audio_buffer.commit")
    assert (await rt.next())["error"]["code"] == "input_audio_buffer_commit_empty"
    await rt.send("input_audio_buffer.append", audio=b64(SILENCE_1S))
    await rt.send("input_audio_buffer.clear")
    assert (await rt.next())["type"] == "input_audio_buffer.cleared"
    await rt.send("input_audio_buffer.commit")
    assert (await rt.next())["error"]["code"] == "input_audio_buffer_commit_empty"


async def test_audio_that_is_not_base64_is_refused(connect):
    rt = await connect()
    await rt.send("input_audio_buffer.append", audio="not base64!")
    error = await rt.next()
    assert (error["error"]["param"], error["error"]["type"]) == ("audio", "invalid_request_error")


async def test_the_user_transcript_comes_only_when_transcription_is_enabled(connect):
    plain = await connect()
    await plain.configure()
    await commit_one_second(plain)
    await plain.send("response.create")
    events = await plain.until("response.done")
    assert not [e for e in events if "input_audio_transcription" in e["type"]]

    heard = await connect()
    await heard.configure(input={"turn_detection": None, "transcription": {"model": "whisper-1"}})
    item_id = await commit_one_second(heard)
    events = await heard.until("conversation.item.input_audio_transcription.completed")
    deltas = [e for e in events if e["type"].endswith("input_audio_transcription.delta")]
    completed = events[-1]
    assert "".join(d["delta"] for d in deltas) == "heard 1.00 s of audio"
    assert completed["transcript"] == "heard 1.00 s of audio"
    assert completed["item_id"] == item_id and completed["content_index"] == 0
    assert completed["usage"] == {"type": "duration", "seconds": 1.0}


# --- responses ----------------------------------------------------------------------
async def test_a_turn_streams_its_answer_in_the_order_of_the_ga_protocol(connect, http):
    rt = await connect("fakeai:tokens=0,pace=0")
    await rt.configure()
    user_item = await commit_one_second(rt)
    await rt.until("conversation.item.done")
    await rt.send("response.create")
    events = await rt.until("response.done")
    assert types(events) == [
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
        "response.output_audio_transcript.delta",
        "response.output_audio.delta",
        # … transcript and audio deltas interleave, a word at a time …
        *types(events)[6:-6],
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    created, done = events[0]["response"], events[-1]["response"]
    assert created["status"] == "in_progress" and created["id"] == done["id"]
    assert events[2]["previous_item_id"] == user_item
    item_id = events[1]["item"]["id"]
    deltas = [e for e in events if e["type"].endswith(".delta")]
    assert {(e["item_id"], e["response_id"]) for e in deltas} == {(item_id, done["id"])}
    transcript = "".join(
        e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta"
    )
    assert transcript == "Echo: heard 1.00 s of audio (turn 1)"
    assert events[-5]["transcript"] == transcript
    audio = b"".join(
        base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta"
    )
    tape = await load_tape()
    assert len(audio) == round(8 * tape.seconds_per_word * RATE) * 2  # 8 words of speech
    assert done["status"] == "completed" and done["status_details"] is None
    assert done["output"][0]["content"] == [{"type": "output_audio", "transcript": transcript}]
    assert done["usage"]["output_token_details"]["text_tokens"] == 8
    assert done["usage"]["total_tokens"] > 0
    stats = await get_json(http, "/_fakeai/realtime/stats")
    assert (stats["responses"], stats["completed"], stats["commits"]) == (1, 1, 1)


async def test_audio_streams_in_real_time_after_the_first_delta_wait(connect):
    rt = await connect("fakeai:tokens=0,ttft=200")
    await rt.configure()
    await rt.send(
        "conversation.item.create",
        item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
    )
    await rt.until("conversation.item.done")
    asked = time.monotonic()
    await rt.send("response.create")
    arrivals, audio_bytes = [], 0
    while True:
        event = await rt.next()
        if event["type"] == "response.output_audio.delta":
            arrivals.append(time.monotonic())
            audio_bytes += len(base64.b64decode(event["delta"]))
        if event["type"] == "response.done":
            break
    audio_s = audio_bytes / 2 / RATE
    assert arrivals[0] - asked >= 0.19
    # Each 100 ms delta goes out when its audio is due: no burst, no lag.
    assert arrivals[-1] - arrivals[0] >= 0.9 * (audio_s - 0.1)
    assert arrivals[-1] - arrivals[0] <= audio_s + 0.3


async def test_a_text_message_is_answered_with_its_echo(connect):
    rt = await connect("fakeai:tokens=0,pace=0")
    await rt.configure()
    item = {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "hello there"}],
    }
    await rt.send("conversation.item.create", item=item)
    added = await rt.next()
    assert added["type"] == "conversation.item.added"
    assert added["item"]["content"] == [{"type": "input_text", "text": "hello there"}]
    assert (await rt.next())["type"] == "conversation.item.done"
    await rt.send("response.create")
    events = await rt.until("response.done")
    transcript_done = next(e for e in events if e["type"].endswith("transcript.done"))
    assert transcript_done["transcript"] == "Echo: hello there (turn 1)"


async def test_text_output_streams_text_deltas_and_no_audio(connect):
    rt = await connect("fakeai:tokens=0,pace=0")
    await rt.configure(output_modalities=["text"])
    await commit_one_second(rt)
    await rt.send("response.create")
    events = await rt.until("response.done")
    assert not [e for e in events if "audio" in e["type"]]
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text == next(e["text"] for e in events if e["type"] == "response.output_text.done")
    assert text.startswith("Echo: heard 1.00 s of audio")
    assert events[-1]["response"]["output_modalities"] == ["text"]


async def test_cancel_stops_the_deltas_at_once_and_the_answer_ends_cancelled(connect, http):
    rt = await connect("fakeai:tokens=40,pace=1")
    await rt.configure()
    await commit_one_second(rt)
    await rt.send("response.create")
    audio_deltas = 0
    while audio_deltas < 3:
        event = await rt.next()
        audio_deltas += event["type"] == "response.output_audio.delta"
    cancelled_at = time.monotonic()
    await rt.send("response.cancel")
    after = await rt.until("response.done")
    assert time.monotonic() - cancelled_at < 0.3
    assert sum(e["type"] == "response.output_audio.delta" for e in after) <= 1  # one in flight
    assert after[-1]["response"]["status"] == "cancelled"
    assert after[-1]["response"]["status_details"] == {
        "type": "cancelled",
        "reason": "client_cancelled",
    }
    item_done = next(e for e in after if e["type"] == "response.output_item.done")
    assert item_done["item"]["status"] == "incomplete"
    # Nothing more comes: the next event is the answer to the next request.
    await rt.send("input_audio_buffer.clear")
    assert (await rt.next())["type"] == "input_audio_buffer.cleared"
    (cancel,) = [
        e for e in await client_events(http, rt.session["id"]) if e["type"] == "response.cancel"
    ]
    assert cancel["_fakeai"]["active"] is True
    assert 250 <= cancel["_fakeai"]["audio_ms_sent"] <= 500
    assert (await get_json(http, "/_fakeai/realtime/stats"))["cancelled"] == 1


async def test_cancel_without_an_answer_and_a_second_answer_at_once_are_refused(connect):
    rt = await connect("fakeai:pace=1")
    await rt.configure()
    await rt.send("response.cancel")
    assert (await rt.next())["error"]["code"] == "response_cancel_not_active"
    await commit_one_second(rt)
    await rt.until("conversation.item.done")
    await rt.send("response.create")
    await rt.until("response.created")
    await rt.send("response.create")
    errors = [e for e in await rt.until("error") if e["type"] == "error"]
    assert errors[0]["error"]["code"] == "conversation_already_has_active_response"


async def test_truncate_is_acknowledged_and_logged_with_its_audio_end(connect, http):
    rt = await connect("fakeai:tokens=40,pace=2")
    await rt.configure()
    await commit_one_second(rt)
    await rt.send("response.create")
    events = await rt.until("response.output_audio.delta")
    item_id = next(e for e in events if e["type"] == "response.output_item.added")["item"]["id"]
    for _ in range(4):
        await rt.until("response.output_audio.delta")
    await rt.send("response.cancel")
    await rt.until("response.done")
    await rt.send("conversation.item.truncate", item_id=item_id, content_index=0, audio_end_ms=250)
    truncated = await rt.next()
    assert truncated == {
        "type": "conversation.item.truncated",
        "event_id": truncated["event_id"],
        "item_id": item_id,
        "content_index": 0,
        "audio_end_ms": 250,
    }
    # Past the audio sent, or an item that does not exist: refused.
    await rt.send(
        "conversation.item.truncate", item_id=item_id, content_index=0, audio_end_ms=60_000
    )
    assert (await rt.next())["error"]["param"] == "audio_end_ms"
    await rt.send(
        "conversation.item.truncate", item_id="item_nope", content_index=0, audio_end_ms=0
    )
    assert (await rt.next())["error"]["code"] == "item_not_found"
    logged = [
        e
        for e in await client_events(http, rt.session["id"])
        if e["type"] == "conversation.item.truncate"
    ]
    assert [(e["item_id"], e["audio_end_ms"]) for e in logged][0] == (item_id, 250)
    assert (await get_json(http, "/_fakeai/realtime/stats"))["truncates"] == 1


# --- server VAD ------------------------------------------------------------------------
async def test_server_vad_hears_speech_commits_it_and_answers(connect):
    rt = await connect("fakeai:tokens=0,pace=0")
    await rt.configure(input={"transcription": None})  # server VAD stays on (the default)
    speech = b"\0\0" * int(RATE * 0.5) + pcm_tone(0.6) + b"\0\0" * int(RATE * 0.7)
    await rt.send("input_audio_buffer.append", audio=b64(speech))
    events = await rt.until("response.done")
    assert types(events)[:5] == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
    ]
    started, stopped, committed = events[:3]
    assert started["audio_start_ms"] == 500 - 300  # speech at 500 ms, 300 ms of padding
    assert stopped["audio_end_ms"] == 1100 + 500  # speech ended at 1100 ms, then 500 ms quiet
    assert started["item_id"] == stopped["item_id"] == committed["item_id"]
    assert "response.created" in types(events)
    assert events[-1]["response"]["status"] == "completed"


async def test_with_server_vad_speech_during_an_answer_interrupts_it(connect):
    rt = await connect("fakeai:tokens=40,pace=1")
    await rt.configure(input={"transcription": None})
    turn = pcm_tone(0.3) + b"\0\0" * int(RATE * 0.6)
    await rt.send("input_audio_buffer.append", audio=b64(turn))
    await rt.until("response.output_audio.delta")
    await rt.send("input_audio_buffer.append", audio=b64(pcm_tone(0.1)))
    events = await rt.until("response.done")
    assert "input_audio_buffer.speech_started" in types(events)
    assert events[-1]["response"]["status_details"] == {
        "type": "cancelled",
        "reason": "turn_detected",
    }


def test_the_energy_gate_reports_speech_with_sample_exact_times():
    gate = EnergyGate(threshold=0.5, silence_ms=200, prefix_padding_ms=100)
    assert gate.feed(b"\0\0" * int(RATE * 0.3)) == []
    assert gate.feed(pcm_tone(0.25)) == [("started", 200)]
    assert gate.feed(b"\0\0" * int(RATE * 0.1)) == []
    assert gate.feed(b"\0\0" * int(RATE * 0.1)) == [("stopped", 750)]


# --- the voice ------------------------------------------------------------------------
async def test_the_voice_is_speech_from_espeak_ng():
    # `make test` installs espeak-ng (`make speech`): without it fakeai falls back to a
    # tone, and the echo and barge-in tests downstream would not hear speech.
    tape = await load_tape()
    assert tape.source == "espeak-ng", "espeak-ng is not installed: run `make speech`"
    samples = np.frombuffer(tape.pcm, dtype="<i2").astype(float) / 32768
    assert 0.2 < tape.seconds_per_word < 0.8
    assert np.sqrt(np.mean(samples**2)) > 0.02  # audible, not silence


def test_the_fallback_voice_rises_and_falls_like_syllables():
    tape = tone_tape()
    frames = np.frombuffer(tape.pcm, dtype="<i2").astype(float).reshape(-1, 240)
    loud = np.sqrt(np.mean(frames**2, axis=1)) > 1000
    assert 0.5 < loud.mean() < 0.8  # sound, then a gap, every word
    assert tape.audio(len(tape.pcm) - 4, 8) == tape.pcm[-4:] + tape.pcm[:4]  # it loops


# --- faults -------------------------------------------------------------------------
@pytest.mark.parametrize("status", [401, 429, 500])
async def test_a_status_fault_refuses_the_handshake(connect, http, status):
    with pytest.raises(InvalidStatus) as refused:
        await connect(f"fakeai:fault={status}")
    response = refused.value.response
    assert response.status_code == status
    assert json.loads(response.body)["error"]["message"]
    if status == 429:
        assert response.headers["Retry-After"] == "1"
    assert (await get_json(http, "/_fakeai/realtime/stats"))["faults"] == 1


async def test_a_fault_for_the_first_k_connections_only(connect):
    with pytest.raises(InvalidStatus):
        await connect("fakeai:fault=500x1")
    rt = await connect("fakeai:fault=500x1")
    assert rt.session["type"] == "realtime"


async def test_an_error_fault_sends_an_error_event_and_fails_the_answer(connect, http):
    rt = await connect("fakeai:pace=0,fault=error-2")
    await rt.configure()
    await commit_one_second(rt)
    await rt.send("response.create")
    events = await rt.until("response.done")
    assert sum(e["type"] == "response.output_audio.delta" for e in events) == 2
    (error,) = [e for e in events if e["type"] == "error"]
    assert error["error"]["type"] == "server_error"
    assert error["error"]["code"] == "server_error"
    done = events[-1]["response"]
    assert done["status"] == "failed"
    assert done["status_details"]["error"]["type"] == "server_error"
    assert (await get_json(http, "/_fakeai/realtime/stats"))["failed"] == 1
    await rt.configure()  # the session goes on


async def test_a_cut_fault_drops_the_connection_without_a_close_frame(connect, http):
    rt = await connect("fakeai:pace=0,fault=cut-3")
    await rt.configure()
    await commit_one_second(rt)
    await rt.send("response.create")
    audio_deltas = 0
    with pytest.raises(ConnectionClosedError) as closed:
        while True:
            audio_deltas += (await rt.next())["type"] == "response.output_audio.delta"
    assert audio_deltas == 3
    assert closed.value.rcvd is None
    await asyncio.sleep(0.1)
    assert (await get_json(http, "/_fakeai/realtime/stats"))["active"] == 0


async def test_a_hang_fault_stops_the_deltas_until_cancelled(connect):
    rt = await connect("fakeai:pace=0,fault=hang-2")
    await rt.configure()
    await commit_one_second(rt)
    await rt.send("response.create")
    await rt.until("response.output_audio.delta")
    await rt.until("response.output_audio.delta")
    with pytest.raises(TimeoutError):
        await rt.next(timeout=0.3)
    await rt.send("response.cancel")
    assert (await rt.until("response.done"))[-1]["response"]["status"] == "cancelled"


async def test_a_plain_hang_fault_accepts_the_socket_and_says_nothing(http):
    url = str(http.make_url("/v1/realtime")).replace("http", "ws", 1)
    async with websockets.connect(f"{url}?model=fakeai:fault=hang") as ws:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.3)


async def test_a_malformed_fault_sends_a_frame_that_is_not_json(connect):
    rt = await connect("fakeai:pace=0,fault=malformed-1")
    await rt.configure()
    await commit_one_second(rt)
    await rt.send("response.create")
    frames = []
    while not frames or frames[-1] != "{not json":
        frames.append(await asyncio.wait_for(rt.ws.recv(), 5))
    assert sum('"response.output_audio.delta"' in f for f in frames) == 1


async def test_a_closed_socket_is_logged_and_no_longer_active(connect, http):
    rt = await connect("fakeai:pace=1")
    await rt.configure()
    await commit_one_second(rt)
    await rt.send("response.create")
    await rt.until("response.output_audio.delta")
    await rt.ws.close()
    await asyncio.sleep(0.1)
    stats = await get_json(http, "/_fakeai/realtime/stats")
    assert (stats["sessions"], stats["active"]) == (1, 0)
    logged = await client_events(http, rt.session["id"])
    assert logged[0]["type"] == "fakeai.connect"
    assert logged[0]["_fakeai"]["openai_beta"] is None
    assert logged[-1]["type"] == "fakeai.close"
    assert logged[-1]["_fakeai"] | {"session": None, "at_ms": None} == {
        "session": None,
        "at_ms": None,
        "by": "client",
        "response_active": True,
    }


async def test_reset_clears_the_realtime_counters_and_log(connect, http):
    rt = await connect()
    await rt.configure()
    await http.post("/_fakeai/reset")
    assert (await get_json(http, "/_fakeai/realtime/stats"))["sessions"] == 0
    assert await client_events(http, rt.session["id"]) == []


# --- behaviour: the controls it reads ---------------------------------------------------
def test_realtime_controls_parse_from_the_model_name_and_headers():
    resolved = resolve_behaviour(
        FAST, "gpt-realtime:pace=2,fault=error-3", {"X-Fakeai-Ttft-Ms": "50"}
    )
    assert (resolved.pace, resolved.ttft_ms) == (2.0, 50.0)
    assert resolved.fault == Fault("error", tokens=3)
    assert resolve_behaviour(FAST, "fakeai", {"X-Fakeai-Pace": "0"}).pace == 0
    assert parse_fault("401x2") == Fault("401", times=2)
    with pytest.raises(ValueError):
        resolve_behaviour(FAST, "fakeai:pace=-1", {})
