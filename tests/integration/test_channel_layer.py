"""The site's Redis channel layer, on the real Redis on 127.0.0.1.

The sockets of one process share one queue in Redis. With channels_redis's
own layer, a receive cancelled while it pops that queue for everyone (as
Channels cancels the receive of every socket that closes) can lose a message
meant for all of them; these tests fail with it.
"""

from __future__ import annotations

import asyncio
import random

import pytest
import redis

from realtime.channel_layer import RedisChannelLayer
from tests.support import services

pytestmark = pytest.mark.asyncio

REDIS_URL = services.redis_url("streams")


@pytest.fixture
async def layer():
    redis.Redis.from_url(REDIS_URL).flushdb()
    layer = RedisChannelLayer(hosts=[REDIS_URL], capacity=10_000)
    yield layer
    await layer.stop_reader()
    await layer.flush()


async def numbers(layer, channel: str, count: int) -> list[int]:
    """The next `count` notes' numbers; a lost one fails in 5 s instead of hanging."""
    return [(await asyncio.wait_for(layer.receive(channel), 5))["number"] for _ in range(count)]


async def cancelled(task: asyncio.Task) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_receive_cancelled_right_after_a_send_loses_nobody_elses_message(layer):
    listener = await layer.new_channel()
    await layer.group_add("room", listener)
    for number in range(40):
        closing = asyncio.create_task(layer.receive(await layer.new_channel()))
        await asyncio.sleep(0.002)  # it is now waiting on Redis for the process
        await layer.group_send("room", {"type": "note", "number": number})
        await cancelled(closing)  # a socket closing just then
    assert await numbers(layer, listener, 40) == list(range(40))


async def test_sockets_closing_all_the_time_cost_the_others_no_message(layer):
    listeners = [await layer.new_channel() for _ in range(5)]
    for channel in listeners:
        await layer.group_add("room", channel)
    stop = asyncio.Event()

    async def socket_that_comes_and_goes() -> None:
        while not stop.is_set():
            receive = asyncio.create_task(layer.receive(await layer.new_channel()))
            await asyncio.sleep(random.random() * 0.003)
            await cancelled(receive)

    churn = [asyncio.create_task(socket_that_comes_and_goes()) for _ in range(4)]
    for number in range(600):
        await layer.group_send("room", {"type": "note", "number": number})
    stop.set()
    await asyncio.gather(*churn)
    for channel in listeners:
        assert await numbers(layer, channel, 600) == list(range(600))


async def test_a_receive_cancelled_before_its_message_came_leaves_it_for_the_next(layer):
    channel = await layer.new_channel()
    await cancelled(asyncio.create_task(layer.receive(channel)))
    await layer.send(channel, {"type": "note", "number": 1})
    assert await numbers(layer, channel, 1) == [1]
    assert channel not in layer.receive_buffer  # nothing kept for a channel once read


async def test_the_reader_comes_back_after_its_redis_connection_is_killed(layer):
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "note", "number": 1})
    assert await numbers(layer, channel, 1) == [1]
    admin = redis.Redis.from_url(REDIS_URL)
    database = admin.connection_pool.connection_kwargs["db"]

    def blocked_readers() -> list[str]:
        return [
            client["id"]
            for client in admin.client_list()
            if client["cmd"] == "bzpopmin" and int(client["db"]) == database
        ]

    for _ in range(500):  # up to 5 s for the reader to be back on the queue
        if blocked := blocked_readers():
            break
        await asyncio.sleep(0.01)
    assert blocked
    for client_id in blocked:
        admin.client_kill_filter(_id=client_id)
    await layer.send(channel, {"type": "note", "number": 2})
    assert await numbers(layer, channel, 1) == [2]


async def test_a_stop_request_left_by_an_earlier_reader_stops_no_other(layer):
    # One that reached Redis after its reader was given up on, in this process.
    await layer.send(layer._stop_prefix + "of-a-gone-reader", {"type": "layer.reader.stop"})
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "note", "number": 1})
    await layer.send(channel, {"type": "note", "number": 2})
    assert await numbers(layer, channel, 2) == [1, 2]
