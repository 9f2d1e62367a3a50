"""Reply streams over the real Redis on 127.0.0.1 (DB 12), as two processes see them.

The writer is one `RedisReplyStreams`; a second instance, with no local buffer,
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

from realtime_site import events
from realtime_site.streams import RedisReplyStreams, StreamGone

pytestmark = pytest.mark.asyncio

REDIS_URL = "redis://127.0.0.1:6379/12"
KEY = "reply:1"


@pytest.fixture(autouse=True)
def stream_settings(settings):
    settings.REDIS_URL = REDIS_URL
    settings.REPLY_STREAM_FLUSH_MS = 15
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
    return events.token(content=f"t{index}", index=index, timestamp=0)


def terminal(text: str = "done") -> dict:
    return {"type": "complete", "content": text}


async def collect(streams: RedisReplyStreams, key: str, after: int = -1) -> list:
    return [item async for item in streams.read(key, after=after)]


async def stored(raw, key: str) -> list[tuple[int, dict]]:
    """(seq, event) of each entry of the stream in Redis, in stream order."""
    entries = await raw.xrange(f"rt:stream:{key}")
    return [(int(entry_id.split("-")[1]) - 1, json.loads(f["e"])) for entry_id, f in entries]


async def poll(condition, *, timeout: float = 5.0) -> None:
    """Wait for an observation on Redis or on another instance to become true."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def stream_warnings(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "realtime_site.streams" and r.levelno >= 30]


@pytest.mark.parametrize("after", [-1, 4])
async def test_second_instance_follows_a_stream_while_it_is_written(after):
    writer, other = RedisReplyStreams(REDIS_URL), RedisReplyStreams(REDIS_URL)
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
    writer, other = RedisReplyStreams(REDIS_URL), RedisReplyStreams(REDIS_URL)
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
    writer = RedisReplyStreams(REDIS_URL)
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
    monkeypatch.setattr(RedisReplyStreams, "LIVE_TTL_SECONDS", 1)
    monkeypatch.setattr(RedisReplyStreams, "HEARTBEAT_SECONDS", 0.2)
    monkeypatch.setattr(RedisReplyStreams, "READ_BLOCK_MS", 100)
    writer, other = RedisReplyStreams(REDIS_URL), RedisReplyStreams(REDIS_URL)
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
    monkeypatch.setattr(RedisReplyStreams, "LIVE_TTL_SECONDS", 1)
    monkeypatch.setattr(RedisReplyStreams, "HEARTBEAT_SECONDS", 0.2)
    writer, other = RedisReplyStreams(REDIS_URL), RedisReplyStreams(REDIS_URL)
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
        return not any(t.get_name() == "reply-streams-writer" for t in asyncio.all_tasks())

    await poll(writer_stopped, timeout=2)


async def test_failed_writes_are_retried_in_order_and_logged_per_pipeline(raw, pipelines, caplog):
    caplog.set_level(logging.INFO)
    writer = RedisReplyStreams(REDIS_URL)
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
    monkeypatch.setattr(RedisReplyStreams, "MAX_BACKLOG_ENTRIES", 5)
    writer, other = RedisReplyStreams(REDIS_URL), RedisReplyStreams(REDIS_URL)
    await writer.open(KEY, control_channel="ctl")
    pipelines.fail = ["before"] * 1000

    for index in range(12):
        await writer.append(KEY, token(index))
    errors = [r for r in stream_warnings(caplog) if r.levelname == "ERROR"]
    assert len(errors) == 1 and "dropped 6 entries" in errors[0].getMessage()
    pipelines.fail = []  # Redis is back
    await writer.finish(KEY, terminal("full text"))

    assert await collect(other, KEY) == [(12, terminal("full text"))]
