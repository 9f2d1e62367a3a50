"""Per-reply event streams: the buffer between a generation task and its readers.

A generation task appends events (tokens, then one terminal event); any number
of readers replay from a sequence number and then follow live. Readers can
come and go, which is what makes resume-after-reconnect work.

Two backends behind one interface, chosen by settings (REDIS_URL):
- `MemoryReplyStreams`: in process, for the embedded mode.
- `RedisReplyStreams`: also mirrors each stream into a Redis Stream with a TTL,
  so a reader connected to another process can resume it. Readers in the
  generating process still read the local mirror: no Redis round trip on the
  hot path, and one task writes all replies' pending entries in one pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from django.conf import settings

from realtime_site import events
from realtime_site.redis_clients import BLOCKING_READS, get_redis

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
    """Local mirror plus a Redis Stream per reply, for readers on other processes.

    Appends only buffer: one writer per event loop (`_RedisWriter`) writes what
    every stream has pending in one pipeline per REPLY_STREAM_FLUSH_MS, and
    refreshes the live keys of the open streams. `finish` returns once the
    terminal event is in Redis (or, if Redis keeps failing, hands it to the writer).
    """

    LIVE_TTL_SECONDS = 30
    HEARTBEAT_SECONDS = 10
    READ_BLOCK_MS = 2000
    # Past this many unwritten entries (Redis failing for minutes), a stream's
    # backlog is dropped: readers elsewhere get its terminal event only.
    MAX_BACKLOG_ENTRIES = 10_000
    # finish() retries after these pauses, then leaves the write to the writer task.
    FINISH_RETRY_DELAYS_SECONDS = (0.05, 0.2, 0.5)
    # While Redis fails, the writer retries with a pause doubling up to this.
    RETRY_MAX_SECONDS = 1.0

    def __init__(self, url: str) -> None:
        super().__init__()
        self._url = url
        self._writers: dict[asyncio.AbstractEventLoop, _RedisWriter] = {}

    def _writer(self) -> _RedisWriter:
        loop = asyncio.get_running_loop()
        writer = self._writers.get(loop)
        if writer is None:
            self._writers = {old: w for old, w in self._writers.items() if not old.is_closed()}
            writer = self._writers[loop] = _RedisWriter(self, loop)
        return writer

    async def open(self, key: str, *, control_channel: str) -> None:
        await super().open(key, control_channel=control_channel)
        # Awaited, so a reader on another process finds the stream as soon as we return.
        async with get_redis(self._url).pipeline(transaction=False) as pipe:
            pipe.delete(_stream_key(key))
            pipe.set(_live_key(key), control_channel, ex=self.LIVE_TTL_SECONDS)
            await pipe.execute()
        self._writer().watch(key, control_channel)

    async def append(self, key: str, event: dict) -> int:
        seq = await super().append(key, event)
        self._writer().add(key, seq, event)
        return seq

    async def finish(self, key: str, event: dict) -> None:
        await super().finish(key, event)
        seq = len(self._buffers[key].events) - 1
        await self._writer().close(key, seq, event)

    async def control_channel(self, key: str) -> str | None:
        if key in self._buffers:
            return await super().control_channel(key)
        return await get_redis(self._url).get(_live_key(key))

    async def read(self, key: str, *, after: int = -1) -> AsyncIterator[tuple[int, dict]]:
        if key in self._buffers:
            async for item in super().read(key, after=after):
                yield item
            return
        redis = get_redis(self._url, pool=BLOCKING_READS)
        stream_key, live_key = _stream_key(key), _live_key(key)
        if not await redis.exists(stream_key, live_key):
            raise StreamGone(key)
        last_id = f"0-{after + 1}"
        while True:
            reply = await redis.xread({stream_key: last_id}, block=self.READ_BLOCK_MS, count=500)
            if not reply:
                if await redis.exists(live_key):
                    continue
                # The terminal event and the live key's deletion land together:
                # look once more before calling the generator dead.
                reply = await redis.xread({stream_key: last_id}, count=500)
                if not reply:
                    raise StreamGone(key)
            for entry_id, fields in reply[0][1]:
                last_id = entry_id
                event = json.loads(fields["e"])
                yield int(entry_id.split("-")[1]) - 1, event
                if events.is_terminal(event):
                    return

    def reset(self) -> None:
        super().reset()
        for writer in self._writers.values():
            writer.discard()
        self._writers = {}


def _stream_key(key: str) -> str:
    return f"rt:stream:{key}"


def _live_key(key: str) -> str:
    return f"rt:live:{key}"


def _already_written(error: Exception) -> bool:
    # XADD of an id the stream already has: a retried batch that partly landed.
    return "equal or smaller than the target stream top item" in str(error)


class _RedisWriter:
    """What one event loop owes Redis, written by one task, one pipeline per tick.

    `pending` holds each stream's unwritten entries, `closing` the streams whose
    terminal event is among them (their live key goes in the same pipeline),
    `live` the open streams whose live key the heartbeat refreshes. Pipelines
    run under `_lock`, and a failed batch goes back to the front of `pending`
    before the lock is released, so each stream's entries reach Redis in order
    even when finish() writes while the task is mid-pipeline.
    """

    def __init__(self, streams: RedisReplyStreams, loop: asyncio.AbstractEventLoop) -> None:
        self._streams = streams
        self._loop = loop
        self.pending: dict[str, list[tuple[int, dict]]] = {}
        self.closing: set[str] = set()
        self.live: dict[str, str] = {}
        self._overflowed: set[str] = set()
        self._lock = asyncio.Lock()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._failures = 0

    def watch(self, key: str, control_channel: str) -> None:
        self.live[key] = control_channel
        self._kick()

    def add(self, key: str, seq: int, event: dict) -> None:
        if key in self._overflowed:
            return
        entries = self.pending.setdefault(key, [])
        entries.append((seq, event))
        if len(entries) > self._streams.MAX_BACKLOG_ENTRIES:
            self._drop_backlog(key)
        self._kick()

    async def close(self, key: str, seq: int, terminal: dict) -> None:
        """Write the stream's last entries, its terminal event, and delete its live key."""
        self.live.pop(key, None)
        self._overflowed.discard(key)
        self.pending.setdefault(key, []).append((seq, terminal))
        self.closing.add(key)
        try:
            for delay in self._streams.FINISH_RETRY_DELAYS_SECONDS:
                if await self._flush(only=key):
                    return
                await asyncio.sleep(delay)
            if await self._flush(only=key):
                return
            logger.error(
                "reply stream %s: terminal event not in Redis after %d attempts;"
                " the writer keeps retrying",
                key,
                len(self._streams.FINISH_RETRY_DELAYS_SECONDS) + 1,
            )
        finally:
            # Whatever is left (or nothing: the task may stop) is the task's now.
            self._kick()

    def discard(self) -> None:
        """Forget everything unwritten (tests): the task stops at its next wakeup."""
        self.pending.clear()
        self.closing.clear()
        self.live.clear()
        self._overflowed.clear()
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wakeup.set)

    def _kick(self) -> None:
        self._wakeup.set()
        if (self._task is None or self._task.done()) and (self.pending or self.live):
            # The task serves every stream of the loop, so it belongs to no request.
            self._task = self._loop.create_task(
                self._run(), name="reply-streams-writer", context=contextvars.Context()
            )
            self._task.add_done_callback(_log_writer_crash)

    async def _run(self) -> None:
        loop = self._loop
        streams = self._streams
        flush_s = settings.REPLY_STREAM_FLUSH_MS / 1000
        heartbeat_at = loop.time() + streams.HEARTBEAT_SECONDS
        retry_s = 0.0
        while self.pending or self.live:
            if retry_s:
                await asyncio.sleep(retry_s)
            elif self.pending:
                await asyncio.sleep(flush_s)
            else:
                # Only open streams: sleep until the heartbeat, or until an append.
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(heartbeat_at):
                        await self._wakeup.wait()
                if loop.time() < heartbeat_at:
                    continue  # new entries (wait one tick for more), or a stream closed
            heartbeat = loop.time() >= heartbeat_at
            if await self._flush(heartbeat=heartbeat):
                retry_s = 0.0
                if heartbeat:
                    heartbeat_at = loop.time() + streams.HEARTBEAT_SECONDS
            else:
                retry_s = min(max(2 * retry_s, flush_s, 0.05), streams.RETRY_MAX_SECONDS)

    async def _flush(self, *, only: str | None = None, heartbeat: bool = False) -> bool:
        """Write what is pending (all streams, or the closing stream `only`).

        False if Redis failed: the batch is back in `pending` for the next try.
        """
        async with self._lock:
            if only is None:
                batch, self.pending = self.pending, {}
            elif only in self.closing:
                batch = {only: self.pending.pop(only, [])}
            else:
                return True  # the task has written it meanwhile
            closing = self.closing & batch.keys()
            live = dict(self.live) if heartbeat else {}
            if not batch and not live:
                return True
            try:
                await self._write(batch, closing, live)
            except BaseException as exc:
                self._requeue(batch)
                if not isinstance(exc, Exception):
                    raise
                self._failures += 1
                logger.warning(
                    "reply streams: Redis write failed (%d in a row), %d entries of %d streams"
                    " kept for retry: %s: %s",
                    self._failures,
                    sum(len(entries) for entries in batch.values()),
                    len(batch),
                    type(exc).__name__,
                    exc,
                    exc_info=self._failures == 1,
                )
                return False
            self.closing -= closing
            if self._failures:
                logger.info(
                    "reply streams: Redis writes recovered after %d failures", self._failures
                )
                self._failures = 0
            return True

    async def _write(
        self, batch: dict[str, list[tuple[int, dict]]], closing: set[str], live: dict[str, str]
    ) -> None:
        async with get_redis(self._streams._url).pipeline(transaction=False) as pipe:
            for key, entries in batch.items():
                stream_key = _stream_key(key)
                for seq, event in entries:
                    # Entry ids are 0-(seq+1), so a reader resumes with XREAD from 0-(after+1).
                    pipe.xadd(stream_key, {"e": events.dumps(event)}, id=f"0-{seq + 1}")
                pipe.expire(stream_key, settings.REPLY_STREAM_TTL_SECONDS)
                if key in closing:
                    pipe.delete(_live_key(key))
            for key, control_channel in live.items():
                pipe.set(_live_key(key), control_channel, ex=self._streams.LIVE_TTL_SECONDS)
            results = await pipe.execute(raise_on_error=False)
        for result in results:
            if isinstance(result, Exception) and not _already_written(result):
                raise result

    def _requeue(self, batch: dict[str, list[tuple[int, dict]]]) -> None:
        for key, entries in batch.items():
            newer = self.pending.get(key)
            self.pending[key] = entries + newer if newer else entries
            if len(self.pending[key]) > self._streams.MAX_BACKLOG_ENTRIES:
                self._drop_backlog(key)

    def _drop_backlog(self, key: str) -> None:
        entries = self.pending.pop(key)
        if key in self.closing:
            self.pending[key] = entries[-1:]  # keep the terminal event
        else:
            self._overflowed.add(key)  # and stop mirroring it until its terminal event
        logger.error(
            "reply stream %s: dropped %d entries Redis did not take;"
            " readers on other processes will get its terminal event only",
            key,
            len(entries) - len(self.pending.get(key, ())),
        )


def _log_writer_crash(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("reply streams writer failed", exc_info=task.exception())


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
