"""Streams over the real Redis on 127.0.0.1, as two processes see them.

The writer is one `RedisStreams`; a second instance, with no local buffer,
stands for a reader connected to another process.
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from realtime.streams import RedisStreams, StreamGone
from tests.support import services

pytestmark = pytest.mark.asyncio

REDIS_URL = services.redis_url("streams")
KEY = "reply:1"


@pytest.fixture(autouse=True)
def stream_settings(settings):
    settings.REDIS_URL = REDIS_URL
    settings.STREAM_FLUSH_MS = 15
    settings.REDIS_MAX_CONNECTIONS = 50
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield settings
    client.flushdb()
    client.close()


@pytest.fixture
async def raw():
    """A plain client to look at what the streams wrote."""
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
def pipelines(monkeypatch):
    """Count pipelines sent to Redis; `fail` makes the next ones raise ConnectionError.

    "before" fails without sending; "after" fails once Redis has applied it.
    """

    class Pipelines:
        executed = 0
        fail: list[str] = []

    real_execute = Pipeline.execute

    async def execute(pipe, *args, **kwargs):
        Pipelines.executed += 1
        mode = Pipelines.fail.pop(0) if Pipelines.fail else None
        if mode == "before":
            raise redis.ConnectionError("injected: Redis unreachable")
        result = await real_execute(pipe, *args, **kwargs)
        if mode == "after":
            raise redis.ConnectionError("injected: connection lost after the write")
        return result

    monkeypatch.setattr(Pipeline, "execute", execute)
    return Pipelines


def token(index: int) -> dict:
    return {"type": "token", "content": f"t{index}", "index": index}


def terminal(text: str = "done") -> dict:
    return {"type": "complete", "content": text}


async def collect(streams: RedisStreams, key: str, after: int = -1) -> list:
    return [item async for item in streams.read(key, after=after)]


async def stored(raw, key: str) -> list[tuple[int, dict]]:
    """(seq, event) of every event of the stream in Redis, in stream order, repeats dropped."""
    events, next_seq = [], 0
    for _, fields in await raw.xrange(f"rt:stream:{key}"):
        for offset, event in enumerate(json.loads(fields["e"])):
            seq = int(fields["s"]) + offset
            if seq >= next_seq:
                events.append((seq, event))
                next_seq = seq + 1
    return events


async def poll(condition, *, timeout: float = 5.0) -> None:
    """Wait for an observation on Redis or on another instance to become true."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def stream_warnings(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "realtime.streams" and r.levelno >= 30]


@pytest.mark.parametrize("after", [-1, 4])
async def test_second_instance_follows_a_stream_while_it_is_written(after):
    writer, other = RedisStreams(REDIS_URL), RedisStreams(REDIS_URL)
    await writer.open(KEY, control_channel="ctl")
    for index in range(3):
        await writer.append(KEY, token(index))
    reader = asyncio.create_task(collect(other, KEY, after=after))
    for index in range(3, 10):
        await writer.append(KEY, token(index))
    assert await other.control_channel(KEY) == "ctl"
    await writer.finish(KEY, terminal())

    items = await asyncio.wait_for(reader, timeout=10)

    assert [seq for seq, _ in items] == list(range(after + 1, 11))
    assert [event for _, event in items] == [token(i) for i in range(after + 1, 10)] + [terminal()]
    assert await other.control_channel(KEY) is None


async def test_second_instance_reads_a_finished_stream_after_a_sequence_number():
    writer, other = RedisStreams(REDIS_URL), RedisStreams(REDIS_URL)
    await writer.open(KEY, control_channel="ctl")
    for index in range(6):
        await writer.append(KEY, token(index))
    await writer.finish(KEY, terminal())

    assert await collect(other, KEY) == [(i, token(i)) for i in range(6)] + [(6, terminal())]
    assert await collect(other, KEY, after=3) == [(4, token(4)), (5, token(5)), (6, terminal())]


async def test_many_concurrent_streams_are_written_completely_in_few_pipelines(
    settings, raw, pipelines, caplog
):
    settings.REDIS_MAX_CONNECTIONS = 10
    caplog.set_level(logging.INFO)
    writer = RedisStreams(REDIS_URL)
    streams, tokens = 300, 50

    async def reply(number: int) -> None:
        key = f"reply:{number}"
        await writer.open(key, control_channel=f"ctl-{number}")
        for index in range(tokens):
            await writer.append(key, token(index))
            await asyncio.sleep(0.002)  # tokens trickle in, as from a model
        await writer.finish(key, terminal(f"reply {number}"))

    await asyncio.gather(*(reply(number) for number in range(streams)))

    assert stream_warnings(caplog) == []
    for number in range(streams):
        expected = [(i, token(i)) for i in range(tokens)] + [(tokens, terminal(f"reply {number}"))]
        assert await stored(raw, f"reply:{number}") == expected
    assert await raw.keys("rt:live:*") == []
    # One pipeline per open and per finish, then one per tick for all streams.
    appends = streams * tokens
    assert pipelines.executed < appends / 10, pipelines.executed
    print(f"{appends} appends, {pipelines.executed} pipelines")


async def test_remote_reader_gets_stream_gone_when_the_generator_dies(monkeypatch):
    monkeypatch.setattr(RedisStreams, "LIVE_TTL_SECONDS", 1)
    monkeypatch.setattr(RedisStreams, "HEARTBEAT_SECONDS", 0.2)
    monkeypatch.setattr(RedisStreams, "READ_BLOCK_MS", 100)
    writer, other = RedisStreams(REDIS_URL), RedisStreams(REDIS_URL)
    await writer.open(KEY, control_channel="ctl")
    for index in range(3):
        await writer.append(KEY, token(index))
    seen = []

    async def follow() -> None:
        async for seq, _ in other.read(KEY):
            seen.append(seq)

    reader = asyncio.create_task(follow())

    async def read_all_tokens():
        return seen == [0, 1, 2]

    await poll(read_all_tokens)
    writer.reset()  # the generating process dies: no terminal event, no more heartbeats

    with pytest.raises(StreamGone):
        await asyncio.wait_for(reader, timeout=5)
    assert seen == [0, 1, 2]


async def test_live_key_is_refreshed_while_a_stream_is_open_without_tokens(monkeypatch, raw):
    monkeypatch.setattr(RedisStreams, "LIVE_TTL_SECONDS", 1)
    monkeypatch.setattr(RedisStreams, "HEARTBEAT_SECONDS", 0.2)
    writer, other = RedisStreams(REDIS_URL), RedisStreams(REDIS_URL)
    await writer.open(KEY, control_channel="ctl")
    loop = asyncio.get_running_loop()

    # Watch the key for 2.5 times its TTL: it must never expire.
    refreshes, last_ttl = 0, await raw.pttl(f"rt:live:{KEY}")
    deadline = loop.time() + 2.5
    while loop.time() < deadline:
        await asyncio.sleep(0.05)
        ttl = await raw.pttl(f"rt:live:{KEY}")
        assert ttl > 0
        refreshes += ttl > last_ttl
        last_ttl = ttl
    assert refreshes >= 3
    assert await other.control_channel(KEY) == "ctl"

    await writer.finish(KEY, terminal())
    assert await raw.exists(f"rt:live:{KEY}") == 0

    async def writer_stopped():
        return not any(t.get_name() == "streams-writer" for t in asyncio.all_tasks())

    await poll(writer_stopped, timeout=2)


async def test_failed_writes_are_retried_in_order_and_logged_per_pipeline(raw, pipelines, caplog):
    caplog.set_level(logging.INFO)
    writer = RedisStreams(REDIS_URL)
    await writer.open(KEY, control_channel="ctl")
    pipelines.fail = ["before", "after", "before"]

    for index in range(20):
        await writer.append(KEY, token(index))  # never raises
        await asyncio.sleep(0.002)
    await writer.finish(KEY, terminal())

    assert await stored(raw, KEY) == [(i, token(i)) for i in range(20)] + [(20, terminal())]
    assert await raw.exists(f"rt:live:{KEY}") == 0
    warnings = stream_warnings(caplog)
    assert [r.levelname for r in warnings] == ["WARNING"] * 3
    assert all("injected" in r.getMessage() for r in warnings)


async def test_backlog_past_the_bound_is_dropped_but_the_terminal_event_arrives(
    monkeypatch, raw, pipelines, caplog
):
    monkeypatch.setattr(RedisStreams, "MAX_BACKLOG_ENTRIES", 5)
    writer, other = RedisStreams(REDIS_URL), RedisStreams(REDIS_URL)
    await writer.open(KEY, control_channel="ctl")
    pipelines.fail = ["before"] * 1000

    for index in range(12):
        await writer.append(KEY, token(index))
    errors = [r for r in stream_warnings(caplog) if r.levelname == "ERROR"]
    assert len(errors) == 1 and "dropped 6 entries" in errors[0].getMessage()
    pipelines.fail = []  # Redis is back
    await writer.finish(KEY, terminal("full text"))

    assert await collect(other, KEY) == [(12, terminal("full text"))]


async def test_readers_on_another_process_share_one_redis_reader(monkeypatch):
    reads = 0
    real_xread = aioredis.Redis.xread

    def counting_xread(self, *args, **kwargs):
        nonlocal reads
        reads += 1
        return real_xread(self, *args, **kwargs)

    monkeypatch.setattr(aioredis.Redis, "xread", counting_xread)
    writer, other = RedisStreams(REDIS_URL), RedisStreams(REDIS_URL)
    await writer.open(KEY, control_channel="ctl")
    readers = [asyncio.create_task(collect(other, KEY)) for _ in range(100)]
    for index in range(20):
        await writer.append(KEY, token(index))
        await asyncio.sleep(0.005)
    await writer.finish(KEY, terminal())

    results = await asyncio.wait_for(asyncio.gather(*readers), timeout=10)

    expected = [(i, token(i)) for i in range(20)] + [(20, terminal())]
    assert all(result == expected for result in results)
    # One XREAD per batch the writer flushed, for all 100 readers together.
    assert reads < 30, reads


async def test_a_late_reader_on_another_process_gets_the_whole_finished_stream():
    writer, other = RedisStreams(REDIS_URL), RedisStreams(REDIS_URL)
    await writer.open(KEY, control_channel="ctl")
    for index in range(3):
        await writer.append(KEY, token(index))
    first = asyncio.create_task(collect(other, KEY, after=1))
    await writer.finish(KEY, terminal())
    assert await first == [(2, token(2)), (3, terminal())]
    # The finished copy is kept locally for a while and serves any offset.
    assert await collect(other, KEY) == [(i, token(i)) for i in range(3)] + [(3, terminal())]


async def test_a_retried_write_does_not_repeat_events_for_readers(raw, pipelines):
    writer, other = RedisStreams(REDIS_URL), RedisStreams(REDIS_URL)
    await writer.open(KEY, control_channel="ctl")
    pipelines.fail = ["after"]  # Redis applies the batch, then the reply is lost
    for index in range(5):
        await writer.append(KEY, token(index))
    await asyncio.sleep(0.1)  # the failed flush, and its retry with nothing new
    for index in range(5, 8):
        await writer.append(KEY, token(index))
    await writer.finish(KEY, terminal())
    assert await collect(other, KEY) == [(i, token(i)) for i in range(8)] + [(8, terminal())]
