"""Hostile frames on the voice socket, against a real daphne and fakeai's Realtime endpoint.

Text and binary: JSON mutations of every voice client frame, and audio frames
of every wrong shape (odd lengths, oversize, empty, random bytes that happen
to be valid PCM, loud noise). Each refused frame gets one documented `error`
and the socket stays open; answers keep streaming meanwhile; the server logs
no traceback. Runs in both passes (SQLite, then PostgreSQL + Redis).
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from realtime.wire import MAX_JSON_DEPTH
from tests.support import processes
from tests.support.fuzz import Hostile, HostileFrames, seed_from_env

pytestmark = [pytest.mark.asyncio, pytest.mark.services]

SOCKETS = 4
CASES_PER_SOCKET = 120
MAX_FRAME_BYTES = 65536
MAX_AUDIO_BYTES = 9600
PING = json.dumps({"type": "ping"})

# docs/protocol.md, "Voice": codes of an `error` refusing one frame.
FRAME_ERROR_CODES = {
    "invalid_json", "invalid_event", "unknown_type", "empty_content", "too_large",
    "not_streaming",
}  # fmt: skip
VOICE_EVENT_TYPES = {
    "vad", "transcript", "response_text", "audio_start", "response", "interrupted", "latency",
}  # fmt: skip

SEED = """
import json
from django.contrib.auth import get_user_model
from accounts.services import create_api_token
User = get_user_model()
print(json.dumps([
    create_api_token(user=User.objects.create_user(f"voice{i}"), name="fuzz")[1]
    for i in range(COUNT)
]))
"""


@dataclass
class VoiceFuzzSite:
    url: str
    log_path: Path
    tokens: list[str]


@pytest.fixture(scope="module")
def voice_fuzz_site(tmp_path_factory, fakeai_url) -> Iterator[VoiceFuzzSite]:
    tmp = tmp_path_factory.mktemp("voice-fuzz")
    extra = {
        "VOICE_MAX_FRAMES_PER_10S": "100000",
        "REALTIME_MODEL": "fakeai:tokens=8,pace=0",
        "LOG_LEVEL": "INFO",
    }
    with processes.site_for_this_pass(
        tmp, fakeai_url=fakeai_url, name="realtime_voice_fuzz_test", extra=extra
    ) as (url, env, log_path):
        tokens = json.loads(
            processes.manage(
                "shell", "--no-imports", "-c", SEED.replace("COUNT", str(SOCKETS)), env=env
            )
        )
        yield VoiceFuzzSite(url=url, log_path=log_path, tokens=tokens)


def voice_frames() -> list[dict]:
    """One valid example of every voice client frame (ping is the test's own marker)."""
    return [
        {"type": "text", "content": "hello there"},
        {"type": "cancel"},
        {"type": "config", "vad": {"threshold": 0.6, "min_silence_ms": 400}},
        {"type": "playback", "item_id": "item_1", "played_ms": 1200},
    ]


def audio_cases(rng: random.Random, count: int) -> list[Hostile]:
    """Binary frames: wrong shapes are refused; any even-length frame is audio."""
    loud = bytes(rng.choice((0x00, 0x7F, 0x80, 0xFF)) for _ in range(960))
    cases = [
        Hostile("audio:one_byte", b"\x01", True),
        Hostile("audio:odd", rng.randbytes(961), True),
        Hostile("audio:over_limit", bytes(MAX_AUDIO_BYTES + 2), True),
        Hostile("audio:far_over_limit", rng.randbytes(MAX_FRAME_BYTES), True),
        Hostile("audio:at_limit", rng.randbytes(MAX_AUDIO_BYTES), False),
        Hostile("audio:clipping", loud, False),
        Hostile("audio:silence", bytes(960), False),
    ]
    while len(cases) < count:
        size = rng.choice((2, 480, 960, 1920, 4800, rng.randrange(1, MAX_AUDIO_BYTES + 200)))
        cases.append(
            Hostile("audio:random", rng.randbytes(size), size % 2 == 1 or size > MAX_AUDIO_BYTES)
        )
    return cases


@dataclass
class SocketRun:
    violations: list[str] = field(default_factory=list)
    refused: int = 0


async def fuzz_socket(site: VoiceFuzzSite, token: str, cases: list[Hostile]) -> SocketRun:
    run = SocketRun()
    url = site.url.replace("http://", "ws://") + "/ws/voice/"
    async with connect(
        url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=None
    ) as ws:
        first = json.loads(await asyncio.wait_for(ws.recv(), timeout=20))
        if first["type"] != "session":
            run.violations.append(f"first event {first}")
            return run
        for case in cases:
            try:
                await ws.send(case.payload)
                await ws.send(PING)
                errors = await errors_until_pong(ws, run)
            except ConnectionClosed as closed:
                run.violations.append(f"socket closed ({closed.rcvd and closed.rcvd.code}) {case}")
                return run
            if len(errors) > 1:
                run.violations.append(f"more than one error {errors} for {case}")
            elif errors:
                run.refused += 1
                if errors[0]["code"] not in FRAME_ERROR_CODES:
                    run.violations.append(f"undocumented error {errors[0]} for {case}")
            elif case.must_refuse:
                run.violations.append(f"accepted: {case}")
    return run


async def errors_until_pong(ws, run: SocketRun) -> list[dict]:
    errors = []
    while True:
        message = await asyncio.wait_for(ws.recv(), timeout=20)
        if isinstance(message, bytes):
            continue  # the assistant's audio
        event = json.loads(message)
        if event["type"] == "pong":
            return errors
        if event["type"] == "error" and event.get("source") != "upstream":
            errors.append(event)
        elif event["type"] == "error" and event.get("fatal"):
            run.violations.append(f"the voice session ended: {event}")
        elif event["type"] not in VOICE_EVENT_TYPES | {"error"}:
            run.violations.append(f"unexpected event {event}")


async def test_fuzzed_voice_frames_get_documented_errors_and_never_crash(voice_fuzz_site):
    site = voice_fuzz_site
    seed = seed_from_env()
    rng = random.Random(seed)
    text_cases = HostileFrames(
        voice_frames(),
        max_frame_bytes=MAX_FRAME_BYTES,
        max_json_depth=MAX_JSON_DEPTH,
        text_limits={"content": 8000, "item_id": 100},
        accepts_binary=True,
        seed=seed,
    ).generate(SOCKETS * CASES_PER_SOCKET * 2 // 3)
    cases = text_cases + audio_cases(rng, SOCKETS * CASES_PER_SOCKET // 3)
    rng.shuffle(cases)

    runs = await asyncio.gather(
        *(fuzz_socket(site, token, cases[i::SOCKETS]) for i, token in enumerate(site.tokens))
    )

    violations = [v for run in runs for v in run.violations]
    assert not violations, f"{len(violations)} violations (FUZZ_SEED={seed}):\n" + "\n".join(
        violations[:15]
    )
    assert sum(run.refused for run in runs) > len(cases) // 3
    log = site.log_path.read_text(errors="replace")
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]
