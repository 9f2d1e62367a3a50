"""Voice test helpers: spoken audio (espeak-ng), a voice socket client, fakeai's Realtime log."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import numpy as np
from channels.testing import WebsocketCommunicator

from bench import vad_corpus
from voice import audio

RATE = 24_000
FRAME_MS = 20
FRAME_BYTES = RATE * 2 * FRAME_MS // 1000
PERSON = vad_corpus.Voice("en-us", 160, 50)
OTHER_PERSON = vad_corpus.Voice("en-gb-x-rp+f3", 150, 70)


def speech(text: str, voice: vad_corpus.Voice = PERSON, *, level_db: float = -20.0) -> bytes:
    """`text` spoken by espeak-ng: PCM16 24 kHz at `level_db` dBFS (RMS)."""
    samples = vad_corpus.speak(text, voice, RATE)
    samples = samples * (10 ** (level_db / 20) / max(audio.rms(samples), 1e-9))
    return audio.float_to_pcm16(samples)


def silence(seconds: float) -> bytes:
    return b"\0\0" * int(RATE * seconds)


def frames(pcm: bytes, frame_bytes: int = FRAME_BYTES) -> list[bytes]:
    return [pcm[i : i + frame_bytes] for i in range(0, len(pcm), frame_bytes)]


def attenuate(pcm: bytes, db: float) -> np.ndarray:
    return audio.pcm16_to_float(pcm) * 10 ** (db / 20)


class VoiceClient:
    """The voice socket as a browser uses it: audio frames out, events and audio in."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.ws = communicator
        self.audio = bytearray()  # every assistant audio byte received
        self.events: list[dict[str, Any]] = []

    async def send(self, frame: dict | str) -> None:
        await self.ws.send_to(text_data=frame if isinstance(frame, str) else json.dumps(frame))

    async def send_audio(self, pcm: bytes, *, paced: bool = False) -> None:
        """Send `pcm` in 20 ms frames: at once, or `paced` as a microphone does (real time)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        for index, frame in enumerate(frames(pcm)):
            if paced:
                await asyncio.sleep(max(0.0, start + index * FRAME_MS / 1000 - loop.time()))
            await self.ws.send_to(bytes_data=frame)

    async def receive(self, timeout: float = 10) -> dict[str, Any]:
        """The next JSON event; audio frames met on the way are kept in `audio`."""
        while True:
            message = await self.ws.receive_output(timeout=timeout)
            if message["type"] == "websocket.close":
                event = {"type": "_closed", "code": message.get("code")}
                self.events.append(event)
                return event
            if message.get("bytes") is not None:
                self.audio += message["bytes"]
                continue
            event = json.loads(message["text"])
            self.events.append(event)
            return event

    async def receive_until(self, predicate, timeout: float = 15) -> list[dict[str, Any]]:
        """Events up to and including the first matching `predicate` (or of that type)."""
        if isinstance(predicate, str):
            kind = predicate
            predicate = lambda event: event["type"] == kind  # noqa: E731
        received = []
        async with asyncio.timeout(timeout):
            while True:
                received.append(await self.receive(timeout=timeout))
                if predicate(received[-1]) or received[-1]["type"] == "_closed":
                    return received

    async def close(self) -> None:
        await self.ws.disconnect()


class RealtimeLog:
    """What fakeai's Realtime endpoint saw."""

    def __init__(self, fakeai_url: str) -> None:
        self.url = fakeai_url.removesuffix("/v1")

    async def _get(self, path: str) -> Any:
        async with aiohttp.ClientSession() as http, http.get(self.url + path) as response:
            return await response.json()

    async def events(self, session_id: str) -> list[dict[str, Any]]:
        return await self._get(f"/_fakeai/realtime/events?session={session_id}")

    async def types(self, session_id: str) -> list[str]:
        return [event["type"] for event in await self.events(session_id)]

    async def first(self, session_id: str, type_: str, timeout: float = 5) -> dict[str, Any]:
        """The first client event of `type_`, waiting for fakeai to have read it."""
        async with asyncio.timeout(timeout):
            while True:
                for event in await self.events(session_id):
                    if event["type"] == type_:
                        return event
                await asyncio.sleep(0.02)

    async def stats(self) -> dict[str, Any]:
        return await self._get("/_fakeai/realtime/stats")

    async def committed_audio(self, item_id: str) -> bytes:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{self.url}/_fakeai/realtime/audio/{item_id}") as response,
        ):
            return await response.read()
