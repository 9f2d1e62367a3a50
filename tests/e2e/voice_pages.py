"""What the browser tests know about the voice page: test ids, the fake microphone, a fake server.

The data-testid contract lives in templates/voice/voice.html and static/js/voice.js.
Chromium's fake microphone plays a WAV file in a loop (`--use-file-for-fake-audio-capture`);
`speech_wav` makes one with espeak-ng and sox: silence, a sentence, a long silence.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import wave
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import Locator, Page, WebSocketRoute, expect

VOICE_SOCKET = re.compile(r"/ws/voice/?$")
RATE = 24_000
FRAME_BYTES = RATE * 2 * 20 // 1000  # a 20 ms frame of PCM16 at 24 kHz


def fake_microphone_args(wav: Path) -> list[str]:
    """Chromium flags: accept the permission prompt, and a microphone that plays `wav`."""
    return [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}",
    ]


def speech_wav(path: Path, text: str, *, before_s: float, after_s: float) -> Path:
    """espeak-ng saying `text` between two silences: 48 kHz mono PCM16, as a microphone gives."""
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not installed: `make speech` (apt-get install {tool})")
    raw = path.with_suffix(".espeak.wav")
    subprocess.run(
        ["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), text],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    subprocess.run(
        ["sox", str(raw), "-r", "48000", "-c", "1", "-b", "16", str(path),
         "gain", "-n", "-6", "pad", str(before_s), str(after_s)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    raw.unlink()
    return path


def wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as wav:
        return wav.getnframes() / wav.getframerate()


def tone_pcm(seconds: float, *, hz: float = 440.0, level: float = 0.3) -> bytes:
    """A sine tone as PCM16 mono little-endian at 24 kHz (no numpy needed in the page)."""
    import numpy as np

    t = np.arange(round(RATE * seconds)) / RATE
    return (level * 32767 * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()


def frames_of(pcm: bytes, size: int = FRAME_BYTES) -> list[bytes]:
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


# --- the page -------------------------------------------------------------------------------
def layout(page: Page) -> Locator:
    return page.get_by_test_id("voice-layout")


def data_number(page: Page, name: str) -> float:
    """A counter the page keeps on its layout element (data-played-ms, data-frames-sent...)."""
    return float(layout(page).get_attribute(f"data-{name}") or 0)


def turns(page: Page, role: str) -> Locator:
    return page.locator(f'[data-testid=voice-turn][data-role="{role}"]')


def start_talking(page: Page) -> None:
    page.get_by_test_id("mic-button").click()
    expect(page.get_by_test_id("mic-button")).to_have_attribute("aria-pressed", "true")


def wait_for_count(page: Page, name: str, at_least: float, *, timeout_ms: int = 15_000) -> None:
    page.wait_for_function(
        "([name, least]) => Number(document.getElementById('voice-layout').dataset[name]) >= least",
        arg=[name, at_least],
        timeout=timeout_ms,
    )


# --- a stand-in for the server, for what the page alone must get right ----------------------
@dataclass
class FakeVoiceServer:
    """Answers the page's /ws/voice/ itself (Playwright's WebSocket routing): records what
    the page sends, and sends what a test tells it to. Install before the page opens."""

    binary: list[bytes] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    sockets: list[WebSocketRoute] = field(default_factory=list)

    def install(self, page: Page) -> FakeVoiceServer:
        page.route_web_socket(VOICE_SOCKET, self._accept)
        return self

    def _accept(self, socket: WebSocketRoute) -> None:
        self.sockets.append(socket)
        socket.on_message(self._received)
        socket.send(
            json.dumps(
                {
                    "type": "session",
                    "session_id": len(self.sockets),
                    "model": "fake",
                    "vad_backend": "energy",
                    "sample_rate": RATE,
                    "demo": True,
                }
            )
        )

    def _received(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            self.binary.append(message)
        else:
            self.events.append(json.loads(message))

    def send(self, event: dict) -> None:
        self.sockets[-1].send(json.dumps(event))

    def send_audio(self, pcm: bytes) -> None:
        for frame in frames_of(pcm):
            self.sockets[-1].send(frame)

    def of_type(self, kind: str) -> list[dict]:
        return [event for event in self.events if event["type"] == kind]
