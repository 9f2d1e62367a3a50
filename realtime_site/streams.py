"""Per-reply event streams: the buffer between a generation task and its readers.

A generation task appends events (tokens, then one terminal event); any number
of readers replay from a sequence number and then follow live. Readers can
come and go, which is what makes resume-after-reconnect work.

Two backends behind one interface, chosen by settings (REDIS_URL):
- `MemoryReplyStreams`: in process, for the embedded mode.
- `RedisReplyStreams`: also mirrors each stream into a Redis Stream with a TTL,
  so a reader connected to another process can resume it. Readers in the
  generating process still read the local mirror: no Redis round trip on the
  hot path, and Redis writes are batched.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from django.conf import settings

from realtime_site import events

logger = logging.getLogger(__name__)


class StreamGone(Exception):
    """The stream is unknown here: never started, expired, or its process died."""


@dataclass
class _Buffer:
    control_channel: str
    events: list[dict] = field(default_factory=list)
    finished: bool = False
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)

    def publish(self, event: dict) -> int:
        self.events.append(event)
        # Swap the event so each waiter wakes once per batch of appends.
        wakeup, self.wakeup = self.wakeup, asyncio.Event()
        wakeup.set()
        return len(self.events) - 1


class MemoryReplyStreams:
    """In-process streams; finished ones are kept for REPLY_STREAM_TTL_SECONDS."""

    def __init__(self) -> None:
        self._buffers: dict[str, _Buffer] = {}

    async def open(self, key: str, *, control_channel: str) -> None:
        self._buffers[key] = _Buffer(control_channel=control_channel)

    async def append(self, key: str, event: dict) -> int:
        return self._buffers[key].publish(event)

    async def finish(self, key: str, event: dict) -> None:
        buffer = self._buffers[key]
        buffer.finished = True
        buffer.publish(event)
        asyncio.get_running_loop().call_later(
            settings.REPLY_STREAM_TTL_SECONDS, self._forget, key, buffer
        )

    def _forget(self, key: str, buffer: _Buffer) -> None:
        if self._buffers.get(key) is buffer:
            del self._buffers[key]

    async def control_channel(self, key: str) -> str | None:
        """The live generator's control channel, or None if nothing generates it."""
        buffer = self._buffers.get(key)
        return buffer.control_channel if buffer and not buffer.finished else None

    async def read(self, key: str, *, after: int = -1) -> AsyncIterator[tuple[int, dict]]:
        """Yield (seq, event) for seq > after, following live until the terminal event."""
        buffer = self._buffers.get(key)
        if buffer is None:
            raise StreamGone(key)
        async for item in self._read_buffer(buffer, after):
            yield item

    @staticmethod
    async def _read_buffer(buffer: _Buffer, after: int) -> AsyncIterator[tuple[int, dict]]:
        seq = after + 1
        while True:
            wakeup = buffer.wakeup
            while seq < len(buffer.events):
                event = buffer.events[seq]
                yield seq, event
                if events.is_terminal(event):
                    return
                seq += 1
            if buffer.finished:
                return
            await wakeup.wait()

    def reset(self) -> None:
        self._buffers.clear()


class RedisReplyStreams(MemoryReplyStreams):
    """Local mirror plus a Redis Stream per reply, for readers on other processes."""

    LIVE_TTL_SECONDS = 30
    HEARTBEAT_SECONDS = 10
    READ_BLOCK_MS = 2000

    def __init__(self, url: str) -> None:
        super().__init__()
        self._url = url
        self._clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._pending: dict[str, list[tuple[int, dict]]] = {}
        self._flushers: dict[str, asyncio.Task] = {}
        self._heartbeats: dict[str, asyncio.Task] = {}

    def _redis(self):
        import redis.asyncio as aioredis

        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            # Longer than READ_BLOCK_MS: redis-py 8 would otherwise time out first.
            client = aioredis.from_url(self._url, socket_timeout=10, decode_responses=True)
            self._clients[loop] = client
        return client

    @staticmethod
    def _stream_key(key: str) -> str:
        return f"rt:stream:{key}"

    @staticmethod
    def _live_key(key: str) -> str:
        return f"rt:live:{key}"

    async def open(self, key: str, *, control_channel: str) -> None:
        await super().open(key, control_channel=control_channel)
        redis = self._redis()
        async with redis.pipeline(transaction=False) as pipe:
            pipe.delete(self._stream_key(key))
            pipe.set(self._live_key(key), control_channel, ex=self.LIVE_TTL_SECONDS)
            await pipe.execute()
        self._heartbeats[key] = asyncio.create_task(self._heartbeat(key, control_channel))

    async def _heartbeat(self, key: str, control_channel: str) -> None:
        while True:
            await asyncio.sleep(self.HEARTBEAT_SECONDS)
            await self._redis().set(self._live_key(key), control_channel, ex=self.LIVE_TTL_SECONDS)

    async def append(self, key: str, event: dict) -> int:
        seq = await super().append(key, event)
        self._pending.setdefault(key, []).append((seq, event))
        if key not in self._flushers:
            self._flushers[key] = asyncio.create_task(self._flush_soon(key))
        return seq

    async def _flush_soon(self, key: str) -> None:
        # The first append flushes at once; later ones ride along for a few ms.
        try:
            await self._flush(key)
            await asyncio.sleep(settings.REPLY_STREAM_FLUSH_MS / 1000)
            await self._flush(key)
        finally:
            self._flushers.pop(key, None)

    async def _flush(self, key: str, *, finished: bool = False) -> None:
        batch = self._pending.pop(key, [])
        if not batch and not finished:
            return
        redis = self._redis()
        stream_key = self._stream_key(key)
        async with redis.pipeline(transaction=False) as pipe:
            for seq, event in batch:
                # Entry ids are 0-(seq+1), so a reader resumes with XREAD from 0-(after+1).
                pipe.xadd(stream_key, {"e": events.dumps(event)}, id=f"0-{seq + 1}")
            pipe.expire(stream_key, settings.REPLY_STREAM_TTL_SECONDS)
            if finished:
                pipe.delete(self._live_key(key))
            await pipe.execute()

    async def finish(self, key: str, event: dict) -> None:
        await super().finish(key, event)
        seq = len(self._buffers[key].events) - 1
        self._pending.setdefault(key, []).append((seq, event))
        flusher = self._flushers.pop(key, None)
        if flusher is not None:
            await asyncio.gather(flusher, return_exceptions=True)
        heartbeat = self._heartbeats.pop(key, None)
        if heartbeat is not None:
            heartbeat.cancel()
        await self._flush(key, finished=True)

    async def control_channel(self, key: str) -> str | None:
        if key in self._buffers:
            return await super().control_channel(key)
        return await self._redis().get(self._live_key(key))

    async def read(self, key: str, *, after: int = -1) -> AsyncIterator[tuple[int, dict]]:
        if key in self._buffers:
            async for item in super().read(key, after=after):
                yield item
            return
        redis = self._redis()
        stream_key = self._stream_key(key)
        if not await redis.exists(stream_key, self._live_key(key)):
            raise StreamGone(key)
        last_id = f"0-{after + 1}"
        while True:
            reply = await redis.xread({stream_key: last_id}, block=self.READ_BLOCK_MS, count=500)
            if not reply:
                if not await redis.exists(self._live_key(key)):
                    # The generator died without a terminal event.
                    raise StreamGone(key)
                continue
            for entry_id, fields in reply[0][1]:
                last_id = entry_id
                event = json.loads(fields["e"])
                yield int(entry_id.split("-")[1]) - 1, event
                if events.is_terminal(event):
                    return

    def reset(self) -> None:
        super().reset()
        self._pending.clear()


_streams: MemoryReplyStreams | None = None


def get_streams() -> MemoryReplyStreams:
    """The process's stream store, picked by settings."""
    global _streams
    if _streams is None:
        _streams = (
            RedisReplyStreams(settings.REDIS_URL) if settings.REDIS_URL else MemoryReplyStreams()
        )
    return _streams


def reset_streams() -> None:
    """Drop all streams and the backend choice (tests change settings)."""
    global _streams
    if _streams is not None:
        _streams.reset()
    _streams = None
