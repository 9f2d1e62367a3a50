"""Event streams: the buffer between a run that produces events and its readers.

A producer (a run: realtime.runs) appends events, then one terminal event;
any number of readers replay from a sequence number and then follow live.
Readers come and go, which is what makes resume-after-reconnect work. This
module knows nothing of what the events mean: the terminal event is the one
passed to `finish`.

The interface is `Streams`; the backend is chosen by settings (`STREAMS_BACKEND`,
by default Redis when REDIS_URL is set) and `get_streams()` returns the
process's instance, reset when settings change (as Channels does for layers):
- `MemoryStreams`: in process, for the embedded mode.
- `RedisStreams`: also mirrors each stream into a Redis Stream with a TTL, so
  a reader connected to another process can resume it. Readers in the
  producing process read the local buffer (no Redis round trip on the hot
  path); one writer task per process writes every stream's pending events in
  one pipeline (at once after a quiet spell, then at most once per
  STREAM_FLUSH_MS), several events per entry; on other
  processes one reader task per stream (`XREAD`) feeds all local readers, so a
  hundred readers of one stream on one process cost one `XREAD`, not a hundred.

Memory stays bounded: a finished stream is dropped from process memory
STREAM_RETAIN_SECONDS after its terminal event (Redis keeps it for
STREAM_TTL_SECONDS; the app's database serves later resumes).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
from collections.abc import AsyncIterator

from django.conf import settings
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from realtime import wire
from realtime.redis_clients import BLOCKING_READS, get_redis

logger = logging.getLogger(__name__)


class StreamGone(Exception):
    """The stream is unknown here: never started, dropped, or its producer died."""


class Streams:
    """The interface every backend implements."""

    async def open(self, key: str, *, control_channel: str) -> None:
        """Create the stream; readers can find it once this returns."""
        raise NotImplementedError

    def bind(self, key: str, producer: asyncio.Task) -> None:
        """Tie the stream to the task producing it (a reader's liveness check)."""
        raise NotImplementedError

    async def append(self, key: str, event: dict) -> int:
        """Add an event; return its sequence number (0, 1, 2, …). Never waits on I/O."""
        raise NotImplementedError

    async def finish(self, key: str, event: dict) -> int:
        """Add the terminal event; the stream takes no more."""
        raise NotImplementedError

    async def control_channel(self, key: str) -> str | None:
        """The live producer's control channel, or None if nothing produces the stream."""
        raise NotImplementedError

    def read_batches(self, key: str, *, after: int = -1) -> AsyncIterator[list[tuple[int, dict]]]:
        """Yield lists of (seq, event) for seq > after, live, through the terminal event.

        Each list holds every event available when the reader got to run: one
        event when it keeps up, the whole backlog when it fell behind. Raises
        StreamGone if the stream is unknown, or its producer dies first.
        """
        raise NotImplementedError

    async def read(self, key: str, *, after: int = -1) -> AsyncIterator[tuple[int, dict]]:
        """(seq, event) one by one: `read_batches` flattened."""
        async for batch in self.read_batches(key, after=after):
            for item in batch:
                yield item

    def reset(self) -> None:
        """Forget everything (tests)."""
        raise NotImplementedError


class _Buffer:
    """One stream's events in process memory, and the readers waiting on it."""

    __slots__ = ("control_channel", "events", "finished", "gone", "wakeup", "producer", "readers")

    def __init__(self, control_channel: str) -> None:
        self.control_channel = control_channel
        self.events: list[dict | None] = []
        self.finished = False
        self.gone = False
        self.wakeup = asyncio.Event()
        self.producer: asyncio.Task | None = None
        self.readers = 0

    def publish(self, event: dict) -> int:
        self.events.append(event)
        self.wake()
        return len(self.events) - 1

    def wake(self) -> None:
        # Swap the event so each waiter wakes once per batch of appends.
        wakeup, self.wakeup = self.wakeup, asyncio.Event()
        wakeup.set()

    def alive(self) -> bool:
        return not self.gone and (self.producer is None or not self.producer.done())

    async def read_batches(self, after: int) -> AsyncIterator[list[tuple[int, dict]]]:
        idle_s = settings.STREAM_READER_IDLE_SECONDS
        seq = max(after, -1) + 1  # a negative index would read from the end
        self.readers += 1
        try:
            while True:
                wakeup = self.wakeup
                end = len(self.events)
                if seq < end:
                    # None: a gap Redis never got (see _RemoteMirror).
                    batch = [(n, self.events[n]) for n in range(seq, end)]
                    seq = end
                    batch = [item for item in batch if item[1] is not None]
                    if batch:
                        yield batch
                    continue
                if self.finished:
                    return
                if not self.alive():
                    raise StreamGone("its producer stopped without a terminal event")
                with contextlib.suppress(TimeoutError):
                    # The timeout only re-checks liveness: a producer may be silent
                    # for long (a slow model), but a dead one must not hold readers.
                    async with asyncio.timeout(idle_s):
                        await wakeup.wait()
        finally:
            self.readers -= 1


class MemoryStreams(Streams):
    """In-process streams."""

    def __init__(self) -> None:
        self._buffers: dict[str, _Buffer] = {}

    async def open(self, key: str, *, control_channel: str) -> None:
        self._buffers[key] = _Buffer(control_channel)

    def bind(self, key: str, producer: asyncio.Task) -> None:
        self._buffers[key].producer = producer

    async def append(self, key: str, event: dict) -> int:
        return self._buffers[key].publish(event)

    async def finish(self, key: str, event: dict) -> int:
        buffer = self._buffers[key]
        buffer.finished = True
        seq = buffer.publish(event)
        self._forget_later(key, buffer)
        return seq

    def _forget_later(self, key: str, buffer: _Buffer) -> None:
        asyncio.get_running_loop().call_later(
            settings.STREAM_RETAIN_SECONDS, self._forget, key, buffer
        )

    def _forget(self, key: str, buffer: _Buffer) -> None:
        if self._buffers.get(key) is buffer:
            del self._buffers[key]

    async def control_channel(self, key: str) -> str | None:
        buffer = self._buffers.get(key)
        return buffer.control_channel if buffer and not buffer.finished else None

    async def read_batches(
        self, key: str, *, after: int = -1
    ) -> AsyncIterator[list[tuple[int, dict]]]:
        buffer = self._buffers.get(key)
        if buffer is None:
            raise StreamGone(key)
        async for batch in buffer.read_batches(after):
            yield batch

    def reset(self) -> None:
        self._buffers.clear()

    def buffered_streams(self) -> int:
        """How many streams this process holds in memory (metrics, tests)."""
        return len(self._buffers)


class RedisStreams(MemoryStreams):
    """Local buffers plus a Redis Stream per stream, for readers on other processes.

    Appends only buffer: one writer per event loop (`_RedisWriter`) writes what
    every stream has pending in one pipeline per STREAM_FLUSH_MS, and
    refreshes the live keys of the open streams. `finish` returns once the
    terminal event is in Redis (or, if Redis keeps failing, hands it to the
    writer). A reader on another process starts one `_RemoteMirror` per
    stream, which copies the Redis Stream into a local buffer for every local
    reader of it.
    """

    # A live key outlives three missed heartbeats: a killed producer is found out within it.
    LIVE_TTL_SECONDS = 10
    HEARTBEAT_SECONDS = 3
    READ_BLOCK_MS = 2000
    # Past this many unwritten events (Redis failing for minutes), a stream's
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
        self._mirrors: dict[str, _RemoteMirror] = {}

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

    async def finish(self, key: str, event: dict) -> int:
        seq = await super().finish(key, event)
        await self._writer().close(key, seq, event)
        return seq

    async def control_channel(self, key: str) -> str | None:
        if key in self._buffers and key not in self._mirrors:
            return await super().control_channel(key)
        return await get_redis(self._url).get(_live_key(key))

    async def read_batches(
        self, key: str, *, after: int = -1
    ) -> AsyncIterator[list[tuple[int, dict]]]:
        buffer = self._buffers.get(key)
        if buffer is None or buffer.gone:
            buffer = await self._mirror(key)
        async for batch in buffer.read_batches(after):
            yield batch

    async def _mirror(self, key: str) -> _Buffer:
        """A local buffer fed from Redis by one task, shared by this process's readers."""
        redis = get_redis(self._url)
        stream_key, live_key = _stream_key(key), _live_key(key)
        async with redis.pipeline(transaction=False) as pipe:
            pipe.exists(stream_key)
            pipe.get(live_key)
            has_entries, control = await pipe.execute()
        if not has_entries and control is None:
            raise StreamGone(key)
        buffer = self._buffers.get(key)  # another reader may have started it meanwhile
        if buffer is None or buffer.gone:
            buffer = self._buffers[key] = _Buffer(control or "")
            mirror = self._mirrors[key] = _RemoteMirror(self, key, buffer)
            buffer.producer = mirror.start()
        return buffer

    def _mirror_done(self, key: str, buffer: _Buffer) -> None:
        self._mirrors.pop(key, None)
        if buffer.finished:
            self._forget_later(key, buffer)
        else:
            self._forget(key, buffer)

    def _forget(self, key: str, buffer: _Buffer) -> None:
        super()._forget(key, buffer)
        mirror = self._mirrors.get(key)
        if mirror is not None and mirror.buffer is buffer:
            mirror.stop()

    def reset(self) -> None:
        super().reset()
        for mirror in list(self._mirrors.values()):
            mirror.stop()
        self._mirrors.clear()
        for writer in self._writers.values():
            writer.discard()
        self._writers = {}


def _stream_key(key: str) -> str:
    return f"rt:stream:{key}"


def _live_key(key: str) -> str:
    return f"rt:live:{key}"


class _RemoteMirror:
    """Copies one Redis Stream into a local buffer while this process has readers of it.

    Entries carry several events each: `s` is the first event's sequence number,
    `e` the events as a JSON list, and `t` marks the entry ending with the
    terminal event. A retried write can repeat events; their sequence numbers
    make the copy skip them.
    """

    # With no local reader for this long, the copy stops (the next reader starts another).
    IDLE_STOP_SECONDS = 5.0

    def __init__(self, streams: RedisStreams, key: str, buffer: _Buffer) -> None:
        self.streams = streams
        self.key = key
        self.buffer = buffer
        self._task: asyncio.Task | None = None

    def start(self) -> asyncio.Task:
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"stream-mirror:{self.key}", context=contextvars.Context()
        )
        self._task.add_done_callback(self._done)
        return self._task

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def _done(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error("stream mirror %s failed", self.key, exc_info=task.exception())
        if not self.buffer.finished:
            self.buffer.gone = True
            self.buffer.wake()
        self.streams._mirror_done(self.key, self.buffer)

    async def _run(self) -> None:
        streams, buffer = self.streams, self.buffer
        redis = get_redis(streams._url, pool=BLOCKING_READS)
        stream_key, live_key = _stream_key(self.key), _live_key(self.key)
        last_id, idle_since = "0-0", None
        loop = asyncio.get_running_loop()
        while not buffer.finished:
            if buffer.readers:
                idle_since = None
            elif idle_since is None:
                idle_since = loop.time()
            elif loop.time() - idle_since > self.IDLE_STOP_SECONDS:
                return
            reply = await redis.xread({stream_key: last_id}, block=streams.READ_BLOCK_MS, count=500)
            if not reply:
                if await redis.exists(live_key):
                    continue
                # The terminal entry and the live key's deletion land together:
                # look once more before calling the producer dead.
                reply = await redis.xread({stream_key: last_id}, count=500)
                if not reply:
                    return  # gone: _done tells the readers
            for entry_id, fields in reply[0][1]:
                last_id = entry_id
                seq = int(fields["s"])
                for event in json.loads(fields["e"]):
                    if seq >= len(buffer.events):
                        # Events lost to a dropped backlog leave a gap readers skip.
                        buffer.events.extend([None] * (seq - len(buffer.events)))
                        buffer.events.append(event)
                    seq += 1
                if "t" in fields:
                    buffer.finished = True
            buffer.wake()


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

    # Events of one stream per Redis entry, at most.
    EVENTS_PER_ENTRY = 200

    def __init__(self, streams: RedisStreams, loop: asyncio.AbstractEventLoop) -> None:
        self._streams = streams
        self._loop = loop
        self.pending: dict[str, list[tuple[int, dict]]] = {}
        self.closing: set[str] = set()
        self.live: dict[str, str] = {}
        self._overflowed: set[str] = set()
        self._with_ttl: set[str] = set()
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
                "stream %s: terminal event not in Redis after %d attempts;"
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
        self._with_ttl.clear()
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wakeup.set)

    def _kick(self) -> None:
        self._wakeup.set()
        if (self._task is None or self._task.done()) and (self.pending or self.live):
            # The task serves every stream of the loop, so it belongs to no request.
            self._task = self._loop.create_task(
                self._run(), name="streams-writer", context=contextvars.Context()
            )
            self._task.add_done_callback(_log_writer_crash)

    async def _run(self) -> None:
        loop = self._loop
        streams = self._streams
        flush_s = settings.STREAM_FLUSH_MS / 1000
        heartbeat_at = loop.time() + streams.HEARTBEAT_SECONDS
        retry_s = 0.0
        last_flush_at = -flush_s
        while self.pending or self.live:
            if retry_s:
                await asyncio.sleep(retry_s)
            elif self.pending:
                # Leading edge: what comes after a quiet spell is written at once
                # (other processes' readers wait for it); under load, one write per
                # STREAM_FLUSH_MS carries everything that came meanwhile.
                await asyncio.sleep(max(0.0, last_flush_at + flush_s - loop.time()))
            else:
                # Only open streams: sleep until the heartbeat, or until an append.
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(heartbeat_at):
                        await self._wakeup.wait()
                if loop.time() < heartbeat_at:
                    continue  # new entries (wait one tick for more), or a stream closed
            heartbeat = loop.time() >= heartbeat_at
            last_flush_at = loop.time()
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
                    "streams: Redis write failed (%d in a row), %d entries of %d streams"
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
                logger.info("streams: Redis writes recovered after %d failures", self._failures)
                self._failures = 0
            return True

    async def _write(
        self, batch: dict[str, list[tuple[int, dict]]], closing: set[str], live: dict[str, str]
    ) -> None:
        async with get_redis(self._streams._url).pipeline(transaction=False) as pipe:
            for key, entries in batch.items():
                stream_key = _stream_key(key)
                for start in range(0, len(entries), self.EVENTS_PER_ENTRY):
                    chunk = entries[start : start + self.EVENTS_PER_ENTRY]
                    fields = {"s": chunk[0][0], "e": wire.dumps([event for _, event in chunk])}
                    last = start + len(chunk) == len(entries)
                    if last and key in closing:
                        fields["t"] = 1
                    # Entry ids follow the last event's seq, so a retried entry is refused.
                    pipe.xadd(stream_key, fields, id=f"0-{chunk[-1][0] + 1}")
                # A TTL once the stream exists, renewed by the heartbeat and at its
                # end: not on every tick, where it was half of all commands.
                if key not in self._with_ttl or key in closing:
                    pipe.expire(stream_key, settings.STREAM_TTL_SECONDS)
                if key in closing:
                    pipe.delete(_live_key(key))
            for key, control_channel in live.items():
                pipe.set(_live_key(key), control_channel, ex=self._streams.LIVE_TTL_SECONDS)
                if key in self._with_ttl:
                    pipe.expire(_stream_key(key), settings.STREAM_TTL_SECONDS)
            results = await pipe.execute(raise_on_error=False)
        for result in results:
            if isinstance(result, Exception) and not _already_written(result):
                raise result
        self._with_ttl.update(batch.keys() - closing)
        self._with_ttl -= closing

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
            "stream %s: dropped %d entries Redis did not take;"
            " readers on other processes will get its terminal event only",
            key,
            len(entries) - len(self.pending.get(key, ())),
        )


def _log_writer_crash(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("streams writer failed", exc_info=task.exception())


_streams: Streams | None = None


def get_streams() -> Streams:
    """The process's stream store, picked by settings."""
    global _streams
    if _streams is None:
        default = RedisStreams if settings.REDIS_URL else MemoryStreams
        backend = import_string(settings.STREAMS_BACKEND) if settings.STREAMS_BACKEND else default
        _streams = backend(settings.REDIS_URL) if issubclass(backend, RedisStreams) else backend()
    return _streams


def reset_streams() -> None:
    """Drop all streams and the backend choice."""
    global _streams
    if _streams is not None:
        _streams.reset()
    _streams = None


def _settings_changed(*, setting: str, **kwargs) -> None:
    if setting in {"STREAMS_BACKEND", "REDIS_URL"}:
        reset_streams()


setting_changed.connect(_settings_changed)
