"""The in-process stream: replay from a sequence number, follow live, end, be dropped."""

from __future__ import annotations

import asyncio

import pytest

from realtime import streams as streams_module
from realtime.streams import MemoryStreams, RedisStreams, StreamGone, get_streams

pytestmark = pytest.mark.asyncio


def tok(index: int) -> dict:
    return {"type": "token", "index": index}


DONE = {"type": "done"}


async def collect(streams, key, after=-1):
    return [item async for item in streams.read(key, after=after)]


async def test_reader_replays_then_follows_until_the_terminal_event():
    streams = MemoryStreams()
    await streams.open("r", control_channel="c")
    await streams.append("r", tok(0))
    reader = asyncio.create_task(collect(streams, "r"))
    await asyncio.sleep(0)
    await streams.append("r", tok(1))
    await streams.finish("r", DONE)
    assert await reader == [(0, tok(0)), (1, tok(1)), (2, DONE)]


async def test_reader_starts_after_the_given_sequence():
    streams = MemoryStreams()
    await streams.open("r", control_channel="c")
    for index in range(5):
        await streams.append("r", tok(index))
    await streams.finish("r", DONE)
    assert [seq for seq, _ in await collect(streams, "r", after=2)] == [3, 4, 5]


async def test_an_after_below_minus_one_reads_from_the_start_not_from_the_end():
    streams = MemoryStreams()
    await streams.open("r", control_channel="c")
    for index in range(3):
        await streams.append("r", tok(index))
    await streams.finish("r", DONE)
    assert [seq for seq, _ in await collect(streams, "r", after=-3)] == [0, 1, 2, 3]
    assert [seq for seq, _ in await collect(streams, "r", after=-(2**53))] == [0, 1, 2, 3]


async def test_several_readers_see_the_same_events():
    streams = MemoryStreams()
    await streams.open("r", control_channel="c")
    readers = [asyncio.create_task(collect(streams, "r")) for _ in range(3)]
    await asyncio.sleep(0)
    await streams.append("r", tok(0))
    await streams.finish("r", DONE)
    results = await asyncio.gather(*readers)
    assert results[0] == results[1] == results[2] == [(0, tok(0)), (1, DONE)]


async def test_unknown_stream_is_gone():
    with pytest.raises(StreamGone):
        await collect(MemoryStreams(), "missing")


async def test_control_channel_is_none_once_finished():
    streams = MemoryStreams()
    await streams.open("r", control_channel="ctl")
    assert await streams.control_channel("r") == "ctl"
    await streams.finish("r", DONE)
    assert await streams.control_channel("r") is None


async def test_a_reader_of_a_producer_that_died_without_finishing_gets_stream_gone(settings):
    settings.STREAM_READER_IDLE_SECONDS = 0.05
    streams = MemoryStreams()
    await streams.open("r", control_channel="c")
    producer = asyncio.create_task(asyncio.sleep(0.01))
    streams.bind("r", producer)
    await streams.append("r", tok(0))
    seen = []
    with pytest.raises(StreamGone):
        async for item in streams.read("r"):
            seen.append(item)
    assert seen == [(0, tok(0))]


async def test_a_silent_but_live_producer_keeps_its_readers(settings):
    settings.STREAM_READER_IDLE_SECONDS = 0.02
    streams = MemoryStreams()
    await streams.open("r", control_channel="c")
    streams.bind("r", asyncio.create_task(asyncio.sleep(1)))
    reader = asyncio.create_task(collect(streams, "r"))
    await asyncio.sleep(0.2)  # ten idle periods
    await streams.finish("r", DONE)
    assert await reader == [(0, DONE)]


async def test_a_finished_stream_is_dropped_from_memory_after_the_retain_time(settings):
    settings.STREAM_RETAIN_SECONDS = 0.05
    streams = MemoryStreams()
    await streams.open("r", control_channel="c")
    await streams.append("r", tok(0))
    await streams.finish("r", DONE)
    assert await collect(streams, "r") == [(0, tok(0)), (1, DONE)]
    await asyncio.sleep(0.1)
    assert streams.buffered_streams() == 0
    with pytest.raises(StreamGone):
        await collect(streams, "r")


async def test_the_backend_follows_settings_and_is_reset_when_they_change(settings):
    settings.REDIS_URL = ""
    assert type(get_streams()) is MemoryStreams
    settings.REDIS_URL = "redis://127.0.0.1:6379/12"
    assert type(get_streams()) is RedisStreams
    settings.STREAMS_BACKEND = "realtime.streams.MemoryStreams"
    assert type(get_streams()) is MemoryStreams
    streams_module.reset_streams()
