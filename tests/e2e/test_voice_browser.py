"""The voice page in real headless Chromium with a fake microphone that speaks (espeak-ng).

Against the live daphne + fakeai site, and, for what the page alone decides
(framing, resampling, playback reports, flushing), against a stand-in server
routed by Playwright.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.chat_pages import LAPTOP, PHONE, sign_up, unique_username
from tests.e2e.conftest import _watched_page, launch_chromium
from tests.e2e.voice_pages import (
    FRAME_BYTES,
    VOICE_SOCKET,
    FakeVoiceServer,
    data_number,
    fake_microphone_args,
    layout,
    speech_wav,
    start_talking,
    tone_pcm,
    turns,
    wait_for_count,
)

pytestmark = pytest.mark.e2e

BUILD = Path(__file__).resolve().parents[2] / "build"
# The microphone says this, then stays quiet long enough for an answer to start;
# the file loops, so it speaks again while the answer is still playing.
SENTENCE = "Hello there, could you tell me what the weather will be like tomorrow?"
SILENCE_BEFORE_S = 0.8
SILENCE_AFTER_S = 2.0


@pytest.fixture(scope="module")
def speech_file() -> Path:
    BUILD.mkdir(exist_ok=True)
    return speech_wav(
        BUILD / "voice-microphone.wav",
        SENTENCE,
        before_s=SILENCE_BEFORE_S,
        after_s=SILENCE_AFTER_S,
    )


@pytest.fixture(scope="module")
def voice_browser(playwright, speech_file):
    """Chromium whose microphone plays `speech_file` (flags are per launch: its own browser)."""
    browser = launch_chromium(playwright, *fake_microphone_args(speech_file))
    yield browser
    browser.close()


@pytest.fixture
def voice_page(voice_browser):
    """A laptop page with the speaking microphone; fails the test as `page` does."""
    context, watch = _watched_page(voice_browser, viewport=LAPTOP)
    yield watch.page
    context.close()
    watch.assert_clean()


@pytest.fixture
def voice_phone(voice_browser):
    context, watch = _watched_page(voice_browser, viewport=PHONE, is_mobile=True, has_touch=True)
    yield watch.page
    context.close()
    watch.assert_clean()


def open_voice(page, site, *, server: FakeVoiceServer | None = None) -> None:
    sign_up(page, site.url, unique_username("vi"))
    if server is not None:
        server.install(page)
    nav = page.get_by_test_id("nav-voice")
    if not nav.is_visible():  # a phone: the top bar's links are in its menu
        page.get_by_test_id("nav-toggle").click()
    nav.click()
    expect(page).to_have_url(f"{site.url}/voice/")
    expect(page.get_by_test_id("connection-state")).to_have_attribute("data-state", "connected")


# --- signal processing, in the browser that runs it -------------------------------------------
RESAMPLER_GAINS_JS = """async ([inRate, outRate, freqs]) => {
  const { Resampler, rmsDbfs } = await import('/static/js/voice-dsp.js');
  const gains = {};
  for (const f of freqs) {
    const input = new Float32Array(Math.round(inRate / 2));
    for (let i = 0; i < input.length; i++) input[i] = 0.5 * Math.sin(2 * Math.PI * f * i / inRate);
    const resampler = new Resampler(inRate, outRate);
    const parts = [];
    for (let i = 0; i < input.length; i += 128) {
      parts.push(resampler.process(input.subarray(i, i + 128)));
    }
    const output = Float32Array.from(parts.flatMap((part) => Array.from(part)));
    gains[f] = rmsDbfs(output.subarray(1000, output.length - 1000)) - rmsDbfs(input);
  }
  return gains;
}"""


@pytest.mark.parametrize("context_rate", [48_000, 44_100])
def test_the_microphone_resampler_keeps_speech_and_removes_what_would_alias(
    page, live_site, context_rate
):
    page.goto(f"{live_site.url}/accounts/login/")

    gains = page.evaluate(
        RESAMPLER_GAINS_JS, [context_rate, 24_000, [300, 3000, 8000, 14_000, 20_000]]
    )

    for kept in ("300", "3000", "8000"):
        assert abs(gains[kept]) < 0.5, gains
    # Above 12 kHz a tone would fold back into the voice band: it must be gone.
    for removed in ("14000", "20000"):
        assert gains[removed] < -70, gains


def test_the_playback_resampler_plays_24_khz_at_the_context_rate(page, live_site):
    page.goto(f"{live_site.url}/accounts/login/")

    gains = page.evaluate(RESAMPLER_GAINS_JS, [24_000, 48_000, [200, 1000, 5000, 9000]])

    assert all(abs(gain) < 0.5 for gain in gains.values()), gains


# --- the page against a stand-in server ----------------------------------------------------
# An answer much longer than any test waits, so that dropping it shows (the machine may be slow:
# assertions on time are loose, assertions on counted samples exact).
QUEUED_S = 8.0


def test_the_microphone_goes_up_as_20_ms_pcm16_frames_and_moves_the_meter(voice_page, live_site):
    server = FakeVoiceServer()
    open_voice(voice_page, live_site, server=server)

    start_talking(voice_page)
    expect(voice_page.get_by_test_id("vad-state")).to_have_attribute("data-state", "listening")
    wait_for_count(voice_page, "framesSent", 100)  # two seconds of audio

    assert {len(frame) for frame in server.binary} == {FRAME_BYTES}
    # The file speaks within its first seconds: the meter saw a voice-like level.
    voice_page.wait_for_function(
        "() => Number(document.getElementById('level-meter').dataset.dbfs) > -40"
    )
    context_rate = float(layout(voice_page).get_attribute("data-context-rate"))
    assert context_rate >= 24_000

    voice_page.get_by_test_id("mic-button").click()
    expect(voice_page.get_by_test_id("vad-state")).to_have_attribute("data-state", "off")
    sent = len(server.binary)
    voice_page.wait_for_timeout(300)
    assert len(server.binary) <= sent + 1  # at most one frame was already on its way


def test_the_page_plays_the_answer_and_reports_how_much_was_heard(voice_page, live_site):
    server = FakeVoiceServer()
    open_voice(voice_page, live_site, server=server)
    start_talking(voice_page)

    server.send({"type": "response", "status": "started", "turn": 1})
    server.send({"type": "audio_start", "item_id": "item_a", "turn": 1})
    server.send_audio(tone_pcm(1.0))
    server.send({"type": "transcript", "role": "assistant", "item_id": "item_a",
                 "delta": "A tone.", "final": False})  # fmt: skip
    server.send({"type": "response", "status": "completed", "turn": 1})

    expect(voice_page.get_by_test_id("playback-state")).to_have_attribute("data-state", "playing")
    expect(voice_page.get_by_test_id("playback-state")).to_have_attribute("data-state", "idle")
    reports = server.of_type("playback")
    assert {report["item_id"] for report in reports} == {"item_a"}
    played = [report["played_ms"] for report in reports]
    assert played == sorted(played)
    assert len(played) >= 8  # about every 100 ms for a second, and once at the end
    assert abs(played[-1] - 1000) <= 5, played
    assert abs(data_number(voice_page, "played-ms") - 1000) <= 5
    expect(turns(voice_page, "assistant").get_by_test_id("turn-text")).to_have_text("A tone.")
    expect(voice_page.get_by_test_id("stop-button")).to_be_disabled()


def test_an_interruption_drops_the_queued_answer_at_once(voice_page, live_site):
    server = FakeVoiceServer()
    open_voice(voice_page, live_site, server=server)
    start_talking(voice_page)
    server.send({"type": "response", "status": "started", "turn": 1})
    server.send({"type": "audio_start", "item_id": "item_a", "turn": 1})
    server.send_audio(tone_pcm(QUEUED_S))
    wait_for_count(voice_page, "playedMs", 500)

    server.send({"type": "interrupted", "turn": 1, "item_id": "item_a", "played_ms": 600})
    server.send_audio(tone_pcm(0.5))  # late frames of the cut answer: never played

    expect(voice_page.get_by_test_id("interrupted-marker")).to_have_text("Interrupted after 0.6 s")
    expect(voice_page.get_by_test_id("playback-state")).to_have_attribute("data-state", "idle")
    wait_for_count(voice_page, "flushes", 1)  # the playback worklet's last word on it
    heard = data_number(voice_page, "played-ms")
    voice_page.wait_for_timeout(500)
    assert data_number(voice_page, "played-ms") == heard
    assert heard < (QUEUED_S - 2) * 1000  # what was queued was dropped, not played out
    assert data_number(voice_page, "interruptions") == 1
    expect(voice_page.get_by_test_id("stop-button")).to_be_disabled()

    # The next answer plays from its own start.
    server.send({"type": "audio_start", "item_id": "item_b", "turn": 2})
    server.send_audio(tone_pcm(0.3))
    voice_page.wait_for_function(
        "() => document.getElementById('voice-layout').dataset.playedItem === 'item_b'"
    )
    expect(voice_page.get_by_test_id("playback-state")).to_have_attribute("data-state", "idle")
    last_b = [r for r in server.of_type("playback") if r["item_id"] == "item_b"][-1]
    assert abs(last_b["played_ms"] - 300) <= 5


def test_speech_over_the_answer_shows_as_speech_only_once_the_server_interrupts(
    voice_page, live_site
):
    server = FakeVoiceServer()
    open_voice(voice_page, live_site, server=server)
    start_talking(voice_page)
    vad = voice_page.get_by_test_id("vad-state")
    server.send({"type": "vad", "state": "speech_started", "at_ms": 100.0})
    expect(vad).to_have_attribute("data-state", "speech")
    server.send({"type": "vad", "state": "speech_stopped", "at_ms": 900.0})
    expect(vad).to_have_attribute("data-state", "listening")
    server.send({"type": "response", "status": "started", "turn": 1})
    server.send({"type": "audio_start", "item_id": "item_a", "turn": 1})
    server.send_audio(tone_pcm(QUEUED_S))
    expect(voice_page.get_by_test_id("playback-state")).to_have_attribute("data-state", "playing")

    # It may be the answer's own echo: the server's gate decides.
    server.send({"type": "vad", "state": "speech_started", "at_ms": 2000.0})
    voice_page.wait_for_timeout(200)
    expect(vad).to_have_attribute("data-state", "listening")
    server.send({"type": "interrupted", "turn": 1, "item_id": "item_a", "played_ms": 1000})

    expect(vad).to_have_attribute("data-state", "speech")


def test_the_latency_of_a_turn_shows_on_its_answer_with_its_parts(voice_page, live_site):
    server = FakeVoiceServer()
    open_voice(voice_page, live_site, server=server)

    server.send({"type": "latency", "turn": 1, "voice_to_voice_ms": 742.3, "vad_wait_ms": 512.0,
                 "upstream_ms": 221.4, "server_ms": 0.3})  # fmt: skip
    server.send({"type": "response", "status": "started", "turn": 1})
    server.send({"type": "latency", "turn": 2, "voice_to_voice_ms": None})  # a typed turn

    badge = turns(voice_page, "assistant").get_by_test_id("voice-latency")
    expect(badge).to_have_text("Voice-to-voice 742 ms")
    expect(badge).to_have_attribute("data-ms", "742")
    expect(badge).to_have_attribute("title", re.compile(r"waiting for the end of speech 512 ms"))
    expect(voice_page.get_by_test_id("last-latency")).to_have_text("742 ms")


def test_stop_cancels_the_answer_and_silences_it(voice_page, live_site):
    server = FakeVoiceServer()
    open_voice(voice_page, live_site, server=server)
    start_talking(voice_page)
    server.send({"type": "response", "status": "started", "turn": 1})
    server.send({"type": "audio_start", "item_id": "item_a", "turn": 1})
    server.send_audio(tone_pcm(QUEUED_S))
    expect(voice_page.get_by_test_id("playback-state")).to_have_attribute("data-state", "playing")

    voice_page.get_by_test_id("stop-button").click()

    expect(voice_page.get_by_test_id("playback-state")).to_have_attribute("data-state", "idle")
    wait_for_count(voice_page, "flushes", 1)
    assert server.of_type("cancel") == [{"type": "cancel"}]
    # After the flush the page told the server exactly how much was heard.
    heard = data_number(voice_page, "played-ms")
    assert server.of_type("playback")[-1] == {
        "type": "playback",
        "item_id": "item_a",
        "played_ms": heard,
    }
    assert heard < (QUEUED_S - 2) * 1000
    server.send({"type": "interrupted", "turn": 1, "item_id": "item_a", "played_ms": 200})
    expect(voice_page.get_by_test_id("stopped-marker")).to_have_text("Stopped after 0.2 s")
    expect(voice_page.get_by_test_id("stop-button")).to_be_disabled()


def test_typed_text_goes_up_as_a_text_event(voice_page, live_site):
    server = FakeVoiceServer()
    open_voice(voice_page, live_site, server=server)

    voice_page.get_by_test_id("text-input").fill("What time is it?")
    voice_page.get_by_test_id("text-input").press("Enter")

    expect(turns(voice_page, "user").get_by_test_id("turn-text")).to_have_text("What time is it?")
    voice_page.wait_for_function("() => true")
    assert server.of_type("text") == [{"type": "text", "content": "What time is it?"}]


def test_a_fatal_error_is_shown_and_reconnect_opens_a_new_session(voice_page, live_site):
    server = FakeVoiceServer()
    open_voice(voice_page, live_site, server=server)

    server.send({"type": "error", "code": "upstream_error", "retryable": True, "fatal": True,
                 "message": "The voice service closed the connection"})  # fmt: skip
    server.sockets[-1].close(code=4503, reason="upstream failed")

    expect(voice_page.get_by_test_id("fatal-error")).to_contain_text(
        "The voice service closed the connection"
    )
    expect(voice_page.get_by_test_id("connection-state")).to_have_attribute("data-state", "offline")
    voice_page.wait_for_timeout(1500)
    assert len(server.sockets) == 1  # no reconnecting on its own after a fatal error

    voice_page.get_by_test_id("reconnect-button").click()

    expect(voice_page.get_by_test_id("connection-state")).to_have_attribute(
        "data-state", "connected"
    )
    expect(voice_page.get_by_test_id("fatal-error")).to_be_hidden()
    assert len(server.sockets) == 2


def answer_with_text(server: FakeVoiceServer, turn: int, item_id: str, text: str) -> None:
    server.send({"type": "response", "status": "started", "turn": turn})
    server.send({"type": "transcript", "role": "assistant", "item_id": item_id,
                 "delta": text, "final": False})  # fmt: skip


def test_a_dropped_socket_reconnects_with_backoff_into_a_new_session(voice_page, live_site):
    server = FakeVoiceServer()
    open_voice(voice_page, live_site, server=server)
    answer_with_text(server, 1, "item_a", "cut short")
    expect(turns(voice_page, "assistant")).to_have_count(1)

    server.sockets[-1].close(code=1011, reason="gone")

    expect(voice_page.get_by_test_id("connection-state")).to_have_attribute(
        "data-state", "reconnecting"
    )
    expect(voice_page.get_by_test_id("connection-state")).to_have_attribute(
        "data-state", "connected"
    )
    assert len(server.sockets) == 2
    expect(turns(voice_page, "assistant").first.get_by_test_id("stopped-marker")).to_be_visible()
    # The new session counts its turns from 1 again: its answer is a turn of its own.
    answer_with_text(server, 1, "item_b", "a new answer")
    expect(turns(voice_page, "assistant").get_by_test_id("turn-text")).to_have_text(
        ["cut short", "a new answer"]
    )
    expect(voice_page.get_by_test_id("session-divider")).to_have_count(1)


def test_without_a_microphone_permission_the_page_says_so_and_typing_still_works(page, live_site):
    # The ordinary browser has no fake microphone and answers no permission prompt.
    server = FakeVoiceServer()
    open_voice(page, live_site, server=server)

    page.get_by_test_id("mic-button").click()

    expect(page.get_by_test_id("mic-problem")).to_be_visible()
    expect(page.get_by_test_id("mic-problem")).to_contain_text(
        re.compile("Microphone access was denied|No microphone was found")
    )
    expect(page.get_by_test_id("mic-button")).to_have_attribute("aria-pressed", "false")
    page.get_by_test_id("text-input").fill("typing instead")
    page.get_by_test_id("send-button").click()
    expect(turns(page, "user").get_by_test_id("turn-text")).to_have_text("typing instead")


def test_the_voice_page_fits_a_phone(voice_phone, live_site):
    server = FakeVoiceServer()
    open_voice(voice_phone, live_site, server=server)

    start_talking(voice_phone)

    width = voice_phone.evaluate("() => document.documentElement.scrollWidth")
    assert width <= PHONE["width"]
    for test_id in ("mic-button", "stop-button", "text-input", "vad-state"):
        box = voice_phone.get_by_test_id(test_id).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], test_id
    BUILD.mkdir(exist_ok=True)
    voice_phone.screenshot(path=BUILD / "voice-phone.png", animations="disabled")
    voice_phone.emulate_media(color_scheme="dark")
    background = voice_phone.evaluate("() => getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(15, 17, 21)"  # --bg of the dark theme
    voice_phone.screenshot(path=BUILD / "voice-phone-dark.png", animations="disabled")


# --- the page against the real voice socket (daphne + fakeai's Realtime endpoint) -------------
def record_sent_events(page) -> list[dict]:
    """Every JSON frame the page sends on /ws/voice/, appended as it goes."""
    sent: list[dict] = []

    def watch(socket) -> None:
        if VOICE_SOCKET.search(socket.url):
            socket.on(
                "framesent",
                lambda payload: sent.append(json.loads(payload))
                if isinstance(payload, str)
                else None,
            )

    page.on("websocket", watch)
    return sent


def test_a_spoken_question_is_heard_answered_aloud_and_talked_over(voice_page, live_site):
    sent = record_sent_events(voice_page)
    open_voice(voice_page, live_site)
    expect(voice_page.get_by_test_id("voice-subtitle")).to_contain_text("demo model")

    start_talking(voice_page)

    # The fake microphone speaks: the server's VAD hears it start.
    wait_for_count(voice_page, "speechStarts", 1)
    # fakeai transcribes the committed audio as "heard N.NN s of audio".
    user = turns(voice_page, "user").first.get_by_test_id("turn-text")
    expect(user).to_have_text(re.compile(r"^heard \d+\.\d\d s of audio$"))
    answer = turns(voice_page, "assistant").first
    expect(answer.get_by_test_id("turn-text")).to_contain_text("Echo:")
    latency = answer.get_by_test_id("voice-latency")
    expect(latency).to_have_text(re.compile(r"^Voice-to-voice [\d,]+ ms$"))
    assert 0 < float(latency.get_attribute("data-ms")) < 10_000
    expect(voice_page.get_by_test_id("last-latency")).to_be_visible()
    # The answer was played, and the page said how much of it.
    wait_for_count(voice_page, "playedMs", 500)
    reports = [event for event in sent if event["type"] == "playback"]
    assert reports and reports[-1]["item_id"] == answer.get_attribute("data-item-id")

    # The file loops: it speaks again while the answer plays, which cuts the answer.
    expect(voice_page.get_by_test_id("interrupted-marker")).to_have_text(
        re.compile(r"^Interrupted after \d+\.\d s$"), timeout=30_000
    )
    expect(voice_page.get_by_test_id("playback-state")).to_have_attribute("data-state", "idle")
    assert data_number(voice_page, "interruptions") >= 1
    BUILD.mkdir(exist_ok=True)
    voice_page.screenshot(path=BUILD / "voice-desktop.png", animations="disabled")


def test_a_typed_question_is_answered_aloud_and_stop_silences_it(voice_page, live_site):
    sent = record_sent_events(voice_page)
    open_voice(voice_page, live_site)  # the microphone stays off

    voice_page.get_by_test_id("text-input").fill("what time is it")
    voice_page.get_by_test_id("send-button").click()

    expect(turns(voice_page, "user").get_by_test_id("turn-text")).to_have_text("what time is it")
    answer = turns(voice_page, "assistant").first
    expect(answer.get_by_test_id("turn-text")).to_contain_text("Echo: what time is it")
    expect(voice_page.get_by_test_id("playback-state")).to_have_attribute("data-state", "playing")
    wait_for_count(voice_page, "playedMs", 300)

    voice_page.get_by_test_id("stop-button").click()

    expect(answer.get_by_test_id("stopped-marker")).to_have_text(re.compile(r"^Stopped after "))
    expect(voice_page.get_by_test_id("playback-state")).to_have_attribute("data-state", "idle")
    expect(voice_page.get_by_test_id("stop-button")).to_be_disabled()
    assert [event for event in sent if event["type"] == "cancel"] == [{"type": "cancel"}]
    expect(voice_page.get_by_test_id("notice")).to_be_hidden()
