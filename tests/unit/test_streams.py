"""The in-process reply stream: replay from a sequence number, then follow live."""

from __future__ import annotations

import asyncio

import pytest

from realtime_site import events
from realtime_site.streams import MemoryReplyStreams, StreamGone

pytestmark = pytest.mark.asyncio


async def collect(streams, key, after=-1):
    return [item async for item in streams.read(key, after=after)]


async def test_reader_replays_then_follows_until_terminal():
    streams = MemoryReplyStreams()
    await streams.open("r", control_channel="c")
    await streams.append("r", events.token(content="a", index=0))
    reader = asyncio.create_task(collect(streams, "r"))
    await asyncio.sleep(0)
    await streams.append("r", events.token(content="b", index=1))
    await streams.finish("r", {"type": "complete"})
    items = await reader
    assert [seq for seq, _ in items] == [0, 1, 2]
    assert [e["type"] for _, e in items] == ["token", "token", "complete"]


async def test_reader_starts_after_the_given_sequence():
    streams = MemoryReplyStreams()
    await streams.open("r", control_channel="c")
    for index in range(5):
        await streams.append("r", events.token(content=str(index), index=index))
    await streams.finish("r", {"type": "complete"})
    assert [seq for seq, _ in await collect(streams, "r", after=2)] == [3, 4, 5]


async def test_several_readers_see_the_same_events():
    streams = MemoryReplyStreams()
    await streams.open("r", control_channel="c")
    readers = [asyncio.create_task(collect(streams, "r")) for _ in range(3)]
    await asyncio.sleep(0)
    await streams.append("r", events.token(content="x", index=0))
    await streams.finish("r", {"type": "complete"})
    results = await asyncio.gather(*readers)
    assert results[0] == results[1] == results[2] and len(results[0]) == 2


async def test_unknown_stream_is_gone():
    with pytest.raises(StreamGone):
        await collect(MemoryReplyStreams(), "missing")


async def test_control_channel_is_none_once_finished():
    streams = MemoryReplyStreams()
    await streams.open("r", control_channel="ctl")
    assert await streams.control_channel("r") == "ctl"
    await streams.finish("r", {"type": "complete"})
    assert await streams.control_channel("r") is None
